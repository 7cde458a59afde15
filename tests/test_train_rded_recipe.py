"""The RDED training recipe pieces against its training code (validation/main.py, utils.py):
strip shuffle before the crop, CutMix, AdamW groups, KL without T^2, the schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shardforge.train.batch_augment import (
    BatchAugment,
    cutmix,
    random_resized_crops,
    shuffle_strips,
    strip_order,
)
from shardforge.train.config import TrainConfig, load_config
from shardforge.train.optim import make_optimizer
from shardforge.train.schedule import half_cosine_lr_at, iteration_lrs


def test_strip_order_by_hand():
    assert strip_order(4, 2, np.array([1, 0])).tolist() == [2, 3, 0, 1]
    assert strip_order(6, 3, np.array([2, 0, 1])).tolist() == [4, 5, 0, 1, 2, 3]
    assert strip_order(5, 2, np.array([1, 0])).tolist() == [2, 3, 0, 1, 4]   # remainder kept


def test_shuffle_strips_columns_then_rows_as_the_reference():
    """A 4 x 4 image with factor 2, pixel values = 10 * row + column. RDED's ShufflePatches
    permutes the 2 column strips, then the 2 row strips (not all 4 cells freely)."""
    image = torch.tensor([[10.0 * r + c for c in range(4)] for r in range(4)])[None, None]
    rng = np.random.default_rng(0)
    cols, rows = rng.permutation(2), rng.permutation(2)
    out = shuffle_strips(image, 2, np.random.default_rng(0))[0, 0]
    col_idx = [2 * k + j for k in cols for j in range(2)]
    row_idx = [2 * k + j for k in rows for j in range(2)]
    expected = torch.tensor([[10.0 * r + c for c in col_idx] for r in row_idx])
    assert torch.equal(out, expected)
    # by hand, with both permutations swapping: columns [2, 3, 0, 1], rows [2, 3, 0, 1]
    swapped = image[0, 0][:, [2, 3, 0, 1]][[2, 3, 0, 1], :]
    assert swapped[0].tolist() == [22.0, 23.0, 20.0, 21.0]
    assert swapped[3].tolist() == [12.0, 13.0, 10.0, 11.0]
    # every output is a row permutation of a column permutation: each row holds one source
    # row's values and each 2 x 2 cell stays whole
    many = shuffle_strips(image.repeat(16, 3, 1, 1), 2, np.random.default_rng(1))
    for img in many[:, 0]:
        assert {int(v) // 10 for v in img[0]} == {int(img[0, 0]) // 10}
        assert sorted(img.flatten().tolist()) == sorted(image.flatten().tolist())
    assert torch.equal(shuffle_strips(image, 1, rng), image)


def test_crop_comes_after_the_shuffle_and_the_loader_gives_whole_images():
    cfg = load_config("jobs/configs/rn18_rded_ipc10.yaml")
    assert cfg.training.loader_crop_scale == (1.0, 1.0) and cfg.training.crop_scale == (0.5, 1)
    aug = BatchAugment(2, 0.0, seed=0, rank=0, crop_scale=(0.5, 1.0))
    aug.start_epoch(0)
    images = torch.rand(3, 3, 16, 16)
    out = aug(images)
    rng = np.random.default_rng([0, 0, 0])
    expected = random_resized_crops(shuffle_strips(images, 2, rng), (0.5, 1.0), rng)
    assert out.shape == images.shape and torch.equal(out, expected)
    assert torch.equal(random_resized_crops(images, (1.0, 1.0), rng), images)


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
    lrs = iteration_lrs(3, 4, 1e-3, 10, schedule="half_cosine")    # stepped per epoch
    assert np.all(lrs == half_cosine_lr_at(3, 1e-3, 10))
    with pytest.raises(ValueError, match="optim.schedule"):
        iteration_lrs(0, 4, 1e-3, 10, schedule="cosine")


def test_adamw_decays_only_weights_of_two_or_more_dimensions():
    """RDED's get_parameters: conv and linear weights decay; biases and BatchNorm don't."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                                torch.nn.Flatten(), torch.nn.Linear(4, 2))
    opt = make_optimizer(model, "adamw", 0.01)
    assert isinstance(opt, torch.optim.AdamW)
    decay, rest = opt.param_groups
    assert (decay["weight_decay"], rest["weight_decay"]) == (0.01, 0.0)
    by_id = {id(p): n for n, p in model.named_parameters()}
    assert sorted(by_id[id(p)] for p in decay["params"]) == ["0.weight", "3.weight"]
    assert sorted(by_id[id(p)] for p in rest["params"]) == ["0.bias", "1.bias", "1.weight",
                                                            "3.bias"]
    assert opt.defaults["betas"] == (0.9, 0.999)


def test_kl_without_t_squared_by_hand():
    """Two classes, T = 2: student logits (0, 0), teacher (2, 0). softmax(t / T) = (e/(e+1),
    1/(e+1)); KL = sum p log(p / 0.5). RDED's loss has no T^2; Hinton's has."""
    from shardforge.train.targets import DistillationLoss

    p = torch.tensor([np.e / (np.e + 1), 1 / (np.e + 1)], dtype=torch.float64)
    kl = float((p * torch.log(p / 0.5)).sum())
    s, t = torch.zeros(1, 2), torch.tensor([[2.0, 0.0]])
    assert float(DistillationLoss(2.0, t_squared=False)(s, t)) == pytest.approx(kl, rel=1e-5)
    assert float(DistillationLoss(2.0)(s, t)) == pytest.approx(4 * kl, rel=1e-5)


def test_config_validation():
    with pytest.raises(ValueError, match="cutmix.*targets.kind=teacher"):
        TrainConfig.from_dict({"training": {"cutmix": 1.0}})
    with pytest.raises(ValueError, match="optim.name"):
        TrainConfig.from_dict({"optim": {"name": "adam"}})
    cfg = load_config("jobs/configs/demo_rded.yaml")
    assert (cfg.optim.name, cfg.optim.schedule, cfg.targets.kind) == (
        "adamw", "half_cosine", "teacher")
    assert cfg.targets.temperature == 20 and cfg.training.cutmix == 1.0
    assert cfg.training.crop_scale == (1.0, 1.0) and not cfg.targets.t_squared   # factor 1
    rn18 = load_config("jobs/configs/rn18_rded_ipc10.yaml")
    assert rn18.training.patch_shuffle == 2 and rn18.training.crop_scale == (0.5, 1.0)
    assert rn18.training.epochs == 300 and rn18.optim.lr == 1e-3
    assert not rn18.targets.t_squared
    # validation as the reference: Resize 256 -> CenterCrop 224 (= 224/256 of the short
    # side, at 224 px)
    assert (rn18.validation.res, rn18.validation.crop_ratio) == (224, 0.875)
