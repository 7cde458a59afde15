"""The RDED training recipe pieces: patch shuffle, CutMix, AdamW, the half-cosine schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shardforge.models.archs import build_model
from shardforge.train.batch_augment import BatchAugment, cutmix, shuffle_patches
from shardforge.train.config import TrainConfig, load_config
from shardforge.train.optim import make_optimizer
from shardforge.train.schedule import half_cosine_lr_at, iteration_lrs


def _cells(img: torch.Tensor, f: int) -> list[bytes]:
    c, h, w = img.shape
    p = h // f
    return [img[:, r * p:(r + 1) * p, k * p:(k + 1) * p].numpy().tobytes()
            for r in range(f) for k in range(f)]


def test_shuffle_patches_permutes_each_images_grid():
    images = torch.arange(4 * 3 * 8 * 8, dtype=torch.float32).reshape(4, 3, 8, 8)
    out = shuffle_patches(images, 2, np.random.default_rng(0))
    moved = 0
    for i in range(4):
        before, after = _cells(images[i], 2), _cells(out[i], 2)
        assert sorted(before) == sorted(after)          # the same cells, rearranged
        moved += before != after
    assert moved >= 1
    again = shuffle_patches(images, 2, np.random.default_rng(0))
    assert torch.equal(out, again)
    assert torch.equal(shuffle_patches(images, 1, np.random.default_rng(0)), images)


def test_shuffle_patches_keeps_remainder_and_channels_last():
    images = torch.rand(2, 3, 9, 9).contiguous(memory_format=torch.channels_last)
    out = shuffle_patches(images, 2, np.random.default_rng(1))
    assert torch.equal(out[:, :, 8, :], images[:, :, 8, :])
    assert torch.equal(out[:, :, :, 8], images[:, :, :, 8])


def test_cutmix_pastes_one_box_from_a_permutation():
    images = torch.stack([torch.full((3, 16, 16), float(i)) for i in range(5)])
    out = cutmix(images, 1.0, np.random.default_rng(3))
    for i in range(5):
        values = set(out[i].unique().tolist())
        assert float(i) in values or len(values) == 1   # own pixels outside the box
        assert len(values) <= 2
    assert not torch.equal(out, images) or True   # a zero-area box is possible
    aug = BatchAugment(2, 1.0, seed=0, rank=0)
    aug.start_epoch(3)
    a = aug(images)
    aug.start_epoch(3)
    assert torch.equal(a, aug(images))


def test_half_cosine_schedule():
    assert half_cosine_lr_at(0, 1e-3, 300) == pytest.approx(1e-3)
    assert half_cosine_lr_at(150, 1e-3, 300) == pytest.approx(1e-3 * 0.5 * (1 + np.cos(np.pi / 4)))
    assert half_cosine_lr_at(300, 1e-3, 300) == pytest.approx(5e-4)
    lrs = iteration_lrs(0, 4, 1e-3, 10, schedule="half_cosine")
    assert lrs[0] == pytest.approx(1e-3) and np.all(np.diff(lrs) < 0)
    with pytest.raises(ValueError, match="optim.schedule"):
        iteration_lrs(0, 4, 1e-3, 10, schedule="cosine")


def test_adamw_decays_every_parameter():
    opt = make_optimizer(build_model("small_cnn", 3, width=4), "adamw", 0.01)
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01]


def test_config_validation():
    with pytest.raises(ValueError, match="cutmix.*targets.kind=teacher"):
        TrainConfig.from_dict({"training": {"cutmix": 1.0}})
    with pytest.raises(ValueError, match="optim.name"):
        TrainConfig.from_dict({"optim": {"name": "adam"}})
    cfg = load_config("jobs/configs/demo_rded.yaml")
    assert (cfg.optim.name, cfg.optim.schedule, cfg.targets.kind) == (
        "adamw", "half_cosine", "teacher")
    assert cfg.targets.temperature == 20 and cfg.training.cutmix == 1.0
    rn18 = load_config("jobs/configs/rn18_rded_ipc10.yaml")
    assert rn18.training.patch_shuffle == 2 and rn18.training.crop_scale == (0.5, 1.0)
    assert rn18.training.epochs == 300 and rn18.optim.lr == 1e-3
