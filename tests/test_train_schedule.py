"""LR and progressive-resizing schedules, and the recipe configs that use them."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest

from shardforge.train.config import load_config
from shardforge.train.schedule import RAMPS, iteration_lrs, lr_at, resolution_at

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "jobs", "configs")


def test_lr_triangle_known_points():
    assert lr_at(0, 0.5, 16) == pytest.approx(0.5e-4)
    assert lr_at(1, 0.5, 16) == pytest.approx((0.5e-4 + 0.5) / 2)
    assert lr_at(2, 0.5, 16) == pytest.approx(0.5)
    assert lr_at(9, 0.5, 16) == pytest.approx(0.25)      # halfway down from epoch 2 to 16
    assert lr_at(16, 0.5, 16) == 0.0
    assert lr_at(20, 1.7, 88) == pytest.approx(1.7 * (88 - 20) / 86)


def test_lr_per_iteration_interpolates_within_epoch():
    lrs = iteration_lrs(epoch=2, iters=4, lr=0.5, epochs=16)
    expected = [lr_at(2 + i / 4, 0.5, 16) for i in range(4)]
    np.testing.assert_allclose(lrs, expected)
    assert len(iteration_lrs(0, 0, 0.5, 16)) == 0


def test_lr_rejects_bad_peak():
    with pytest.raises(ValueError, match="lr_peak_epoch"):
        lr_at(0, 0.5, epochs=2, peak_epoch=3)


# First epoch (0-based) trained at 192 px for each ffcv-imagenet recipe length.
FIRST_192 = {16: 12, 24: 19, 32: 25, 40: 32, 56: 45, 88: 71}


@pytest.mark.parametrize("epochs", sorted(RAMPS))
def test_progressive_resizing_per_recipe(epochs):
    start, end = RAMPS[epochs]
    res = [resolution_at(e, 160, 192, start, end) for e in range(epochs)]
    first = FIRST_192[epochs]
    assert res == [160] * first + [192] * (epochs - first)
    assert all(r % 32 == 0 for r in res)


def test_resolution_rounds_to_multiples_of_32():
    assert [resolution_at(e, 128, 256, 0, 4) for e in range(5)] == [128, 160, 192, 224, 256]
    with pytest.raises(ValueError):
        resolution_at(0, 192, 160, 0, 1)


@pytest.mark.parametrize("arch,epochs", [(a, e) for a in ("rn18", "rn50") for e in sorted(RAMPS)])
def test_recipe_configs_match_ffcv_imagenet(arch, epochs):
    cfg = load_config(os.path.join(CONFIGS, f"{arch}_{epochs}ep.yaml"))
    assert cfg.training.epochs == epochs
    assert (cfg.resolution.start_ramp, cfg.resolution.end_ramp) == RAMPS[epochs]
    assert (cfg.resolution.min_res, cfg.resolution.max_res) == (160, 192)
    assert cfg.validation.res == 256 and cfg.validation.crop_ratio == pytest.approx(224 / 256)
    assert cfg.optim.label_smoothing == 0.1 and cfg.optim.momentum == 0.9
    assert not cfg.optim.nesterov and cfg.model.blurpool and cfg.optim.lr_peak_epoch == 2
    assert cfg.data.card == ("imagenet-rn18" if arch == "rn18" else "imagenet")
    if arch == "rn18":
        assert (cfg.model.arch, cfg.scaling.num_workers, cfg.training.batch_size) == \
            ("resnet18", 1, 1024)
        assert (cfg.optim.lr, cfg.optim.weight_decay) == (0.5, 5e-5)
    else:
        assert (cfg.model.arch, cfg.scaling.num_workers, cfg.training.batch_size) == \
            ("resnet50", 8, 512)
        assert (cfg.optim.lr, cfg.optim.weight_decay) == (1.7, 1e-4)


def test_every_config_file_loads():
    paths = sorted(glob.glob(os.path.join(CONFIGS, "*.yaml")))
    assert len(paths) >= 13
    for path in paths:
        load_config(path)


def _info(name, reinforce=None):
    from shardforge.layout.info import DatasetInfo

    return DatasetInfo(url=f"/data/{name}", name=name, classes=("a", "b"), reinforce=reinforce)


def test_config_and_card_mismatch_warns_naming_both():
    from shardforge.train.runner import card_mismatch

    cfg = load_config(os.path.join(CONFIGS, "rn18_88ep.yaml"))
    assert card_mismatch(cfg, _info("imagenet-rn18"), "rn18_88ep.yaml") is None
    text = card_mismatch(cfg, _info("imagenet-256"), "rn18_88ep.yaml")
    assert "rn18_88ep.yaml" in text and "'imagenet-rn18'" in text and "'imagenet-256'" in text
    assert "shardforge build imagenet-rn18" in text
    # a reinforced dataset replays its parent's images: it matches by the parent
    plus = _info("imagenet-plus", reinforce={"parent_name": "imagenet-rn18"})
    assert card_mismatch(cfg, plus, "rn18_88ep.yaml") is None
    demo = load_config(os.path.join(CONFIGS, "demo_cpu.yaml"))
    assert demo.data.card is None and card_mismatch(demo, _info("anything"), "x") is None


def test_launch_warns_of_the_mismatch(demo_dataset, tmp_path, caplog):
    """A WARNING of the shardforge logger (entry points print it on stderr: test_logs)."""
    import logging

    from shardforge.train.runner import prepare_run

    cfg = load_config(os.path.join(CONFIGS, "demo_cpu.yaml"), ["data.card=imagenet"])
    logger = logging.getLogger("shardforge")    # an in-process CLI test may have stopped
    logger.addHandler(caplog.handler)           # its propagation to the root: listen here
    try:
        prepare_run(cfg, demo_dataset, "demo_cpu.yaml", storage_path=str(tmp_path))
    finally:
        logger.removeHandler(caplog.handler)
    assert "warning: demo_cpu.yaml is the recipe for data from card 'imagenet'" in caplog.text
