"""The FFCV loader on a tiny ingested dataset: shapes, labels, order, resizing, remainder."""

from __future__ import annotations

import os

import pytest
import torch
from helpers import ffcv_labels

from shardforge.ops.normalize import IMAGENET_MEAN, IMAGENET_STD
from shardforge.stream.ffcv_loader import make_ffcv_loader


@pytest.fixture(scope="module")
def tiny(demo_dataset) -> str:
    """The session demo tree (10 classes, 60 train / 20 val) ingested at max-res 96."""
    return demo_dataset


def _beton(out: str, split: str) -> str:
    return os.path.join(out, "beton", f"demo-{split}.beton")


def test_train_loader_shapes_labels_and_remainder(tiny):
    batches = make_ffcv_loader(_beton(tiny, "train"), batch_size=16, num_workers=1, train=True,
                               res=32, seed=3)
    assert len(batches) == 60 // 16                       # drop_last: 3 full batches of 60
    seen = []
    for images, labels in batches:
        assert images.shape == (16, 3, 32, 32) and images.dtype == torch.float32
        assert labels.shape == (16,) and labels.dtype == torch.int64
        seen.extend(labels.tolist())
    assert len(seen) == 48
    all_labels = ffcv_labels(_beton(tiny, "train"))
    assert set(seen) <= set(all_labels) == set(range(10))
    # normalised with the ImageNet mean/std: values lie within the mapped 0..255 range
    lo = float(((0 - IMAGENET_MEAN) / IMAGENET_STD).min())
    hi = float(((255 - IMAGENET_MEAN) / IMAGENET_STD).max())
    assert lo - 1e-4 <= float(images.min()) and float(images.max()) <= hi + 1e-4

    batches.set_resolution(64)                            # progressive resizing
    batches.set_epoch(5)
    images, _ = next(iter(batches))
    assert images.shape == (16, 3, 64, 64)


def test_train_order_depends_only_on_seed_and_epoch(tiny):
    batches = make_ffcv_loader(_beton(tiny, "train"), 20, 1, train=True, res=32, seed=7)

    def epoch_labels(epoch: int) -> list[int]:
        batches.set_epoch(epoch)
        return [x for _, labels in batches for x in labels.tolist()]

    assert epoch_labels(2) == epoch_labels(2)          # what resume relies on
    assert epoch_labels(2) != epoch_labels(3)


def test_val_loader_sees_every_sample_in_order(tiny):
    batches = make_ffcv_loader(_beton(tiny, "val"), batch_size=8, num_workers=1, train=False,
                               res=40)
    assert len(batches) == 3                              # 20 samples: 8 + 8 + 4, no drop
    labels = []
    for images, y in batches:
        assert images.shape[1:] == (3, 40, 40)
        labels.extend(y.tolist())
    assert labels == ffcv_labels(_beton(tiny, "val"))


def test_loader_argument_errors(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match="ingest"):
        make_ffcv_loader(str(tmp_path / "none.beton"), 8, 1, True, 32)
    with pytest.raises(ValueError, match="local"):
        make_ffcv_loader("s3://bucket/x.beton", 8, 1, True, 32)
    with pytest.raises(ValueError, match="issue #92"):
        make_ffcv_loader(_beton(tiny, "train"), 8, 1, True, 32, distributed=True,
                         order="quasi_random")
