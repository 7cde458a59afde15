"""The one-call Python API: shardforge.ingest and shardforge.open, read back by the real
clients (webdataset tars through the index, FFCV's reader through the .beton)."""

from __future__ import annotations

import pytest
from helpers import ffcv_labels

import shardforge


def test_ingest_then_open_by_name_and_by_location(demo_tree, ray_local, tmp_path):
    out = str(tmp_path / "pets")
    summary = shardforge.ingest(demo_tree, out, max_res=48, shard_size=25, seed=3,
                                home=str(tmp_path / "home"))
    assert summary["name"] == "pets" and summary["catalog"] == "pets@v1"
    assert summary["splits"]["train"]["samples"] == 60 and summary["splits"]["val"]["samples"] == 20
    assert summary["params"]["image"]["max_resolution"] == 48
    by_name = shardforge.open("pets", home=str(tmp_path / "home"))
    by_path = shardforge.open(out)
    assert by_name.url == by_path.url and len(by_name.split("train")) == 60
    assert len(by_name.classes) == 10
    train = by_path.split("train")
    assert ffcv_labels(summary["formats"]["beton"]["train"]["url"]) == train.label.tolist()
    from shardforge.stream import RandomResizedCrop

    loader = by_name.loader("train", 16, transform=RandomResizedCrop(32), num_workers=0,
                            with_ids=True)
    seen = []
    for images, labels, ids in loader:
        assert images.shape[1:] == (32, 32, 3) and str(images.dtype) == "torch.uint8"
        assert labels.tolist() == train.label[ids.numpy()].tolist()
        seen += ids.tolist()
    assert sorted(seen) == list(range(60))
    with pytest.raises(KeyError, match="no split 'test'"):
        by_name.loader("test")


def test_unknown_options_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown options \\['maxres'\\]"):
        shardforge.ingest("x", str(tmp_path / "y"), maxres=3)


def test_open_names_both_lookups(tmp_path):
    from shardforge.layout.dataset import DatasetNotFoundError

    with pytest.raises(DatasetNotFoundError):
        shardforge.open("no-such-dataset", home=str(tmp_path))
