"""Recipe configs: validation, overrides, and jobs/train.py's argument errors (exit 2)."""

from __future__ import annotations

import importlib.util
import os

import pytest

from shardforge.train.config import TrainConfig, apply_overrides, load_config
from shardforge.train.runner import absolutize_paths

ROOT = os.path.join(os.path.dirname(__file__), "..")


def _train_main():
    spec = importlib.util.spec_from_file_location("jobs_train", os.path.join(ROOT, "jobs",
                                                                             "train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_defaults_are_the_rn18_recipe_and_round_trip():
    cfg = TrainConfig()
    assert (cfg.model.arch, cfg.optim.lr, cfg.training.batch_size) == ("resnet18", 0.5, 1024)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("data,match", [
    ({"modle": {}}, "unknown section"),
    ({"optim": {"learning_rate": 1}}, "unknown key"),
    ({"data": {"loader": "tfrecord"}}, "data.loader"),
    ({"training": {"crop_scale": [0.5, 0.2]}}, "crop_scale"),
    ({"targets": {"kind": "topk"}}, "targets.path"),
    ({"targets": {"kind": "teacher"}}, "exactly one"),
    ({"training": {"epochs": 1}}, "lr_peak_epoch"),
])
def test_invalid_configs_name_the_problem(data, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_dict(data)


def test_overrides_use_yaml_values():
    data = apply_overrides({"training": {"epochs": 16}},
                           ["training.epochs=4", "training.crop_scale=[0.3, 1]",
                            "scaling.use_gpu=false"])
    cfg = TrainConfig.from_dict(data)
    assert cfg.training.epochs == 4 and cfg.training.crop_scale == (0.3, 1.0)
    assert cfg.scaling.use_gpu is False
    with pytest.raises(ValueError, match="section.key=value"):
        apply_overrides({}, ["epochs=4"])


def test_local_target_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = TrainConfig.from_dict({"targets": {"kind": "teacher", "teacher_checkpoint": "runs/a"}})
    assert absolutize_paths(cfg).targets.teacher_checkpoint == str(tmp_path / "runs" / "a")
    remote = TrainConfig.from_dict({"targets": {"kind": "dense", "path": "s3://b/t.npz"}})
    assert absolutize_paths(remote) == remote


def test_train_cli_errors_exit_2(tmp_path, capsys):
    main = _train_main()
    demo = os.path.join(ROOT, "jobs", "configs", "demo_cpu.yaml")
    assert main(["--config", demo, "--data", str(tmp_path / "missing")]) == 2
    assert "not a shardforge dataset" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "none.yaml"), "--data", "x"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["--config", demo, "--data", "x", "--set", "optim.lr"]) == 2
    assert "section.key=value" in capsys.readouterr().err
    assert main(["--config", demo, "--data", "x", "--set", "targets.kind=topk",
                 "--set", "targets.path=t.npz"]) == 2
    assert "sample ids" in capsys.readouterr().err
    cfg = load_config(demo, ["training.epochs=3"])
    assert cfg.training.epochs == 3 and cfg.scaling.num_workers == 2
