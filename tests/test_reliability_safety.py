"""Issue 13, item 5: no code runs from a data file. A crafted ``state.pt`` (a pickle whose
``__reduce__`` opens a marker file for writing) is offered at every place shardforge loads a
PyTorch file; each refuses it with one clear line and the marker never appears. A control
shows the crafted file does create the marker when loaded unsafely (so these tests can fail).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from shardforge.models.archs import build_model
from shardforge.models.checkpoint import STATE_FILE, STATE_FORMAT, checkpoint_name, save_state
from shardforge.torch_files import UnsafeTorchFileError, plain_state
from shardforge.train.config import TrainConfig


class _Evil:
    """Unpickling calls ``open(marker, "w")``: creates the marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _crafted(path: Path, marker: Path, *, checkpoint: bool = True) -> str:
    """A torch.save file at ``path``: a shardforge-looking checkpoint dict (or a state dict)
    with one value whose unpickling would create ``marker``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = {"arch": "small_cnn", "num_classes": 3, "blurpool": False, "width": 8}
    body = ({"format": STATE_FORMAT, "epochs_done": 1, "model_spec": spec,
             "classes": ["a", "b", "c"], "model": build_model(**spec).state_dict(),
             "config": {}, "metrics": _Evil(str(marker))} if checkpoint
            else {"weight": torch.zeros(1), "evil": _Evil(str(marker))})
    torch.save(body, str(path))
    return str(path)


def _refused(exc: BaseException, path: str) -> None:
    msg = str(exc)
    assert "\n" not in msg
    assert path in msg and "refused to load" in msg
    assert re.search(r"Unsupported global: GLOBAL \S*open\b", msg), msg
    assert "re-save it" in msg


@pytest.fixture
def marker(tmp_path) -> Path:
    m = tmp_path / "PWNED"
    yield m
    assert not m.exists(), "a crafted file ran code"


def test_control_the_crafted_file_runs_code_when_loaded_unsafely(tmp_path):
    m = tmp_path / "PWNED"
    path = _crafted(tmp_path / "state.pt", m)
    torch.load(path, weights_only=False)
    assert m.exists()


def test_training_resume_refuses(tmp_path, marker):
    from shardforge.train.session import LocalSession

    run = tmp_path / "run"
    path = _crafted(run / checkpoint_name(1) / STATE_FILE, marker)
    with pytest.raises(UnsafeTorchFileError) as err:
        LocalSession(str(run)).resume_state()
    _refused(err.value, path)


def test_recipe_reuse_check_refuses(tmp_path, marker):
    from shardforge.train.experiment import run_identity

    run = tmp_path / "run"
    path = _crafted(run / checkpoint_name(3) / STATE_FILE, marker)
    with pytest.raises(UnsafeTorchFileError) as err:
        run_identity(str(run))
    _refused(err.value, path)


def test_config_teacher_checkpoint_refuses(tmp_path, marker):
    from shardforge.train.teacher import load_teacher

    path = _crafted(tmp_path / "teacher" / STATE_FILE, marker)
    with pytest.raises(UnsafeTorchFileError) as err:
        load_teacher(str(tmp_path / "teacher"), None, None, ["a", "b", "c"])
    _refused(err.value, path)


def test_config_teacher_weights_refuse(tmp_path, marker):
    from shardforge.train.teacher import load_teacher

    path = _crafted(tmp_path / "rn.pth", marker, checkpoint=False)
    with pytest.raises(UnsafeTorchFileError) as err:
        load_teacher(None, "small_cnn", path, ["a", "b", "c"])
    _refused(err.value, path)


def test_shardforge_eval_refuses_exit_2(tmp_path, marker, capsys):
    from shardforge.cli import main

    path = _crafted(tmp_path / "run" / checkpoint_name(1) / STATE_FILE, marker)
    assert main(["eval", str(tmp_path / "run"), "--data", str(tmp_path / "nodata")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("shardforge eval: error:")
    assert path in err and "refused to load" in err


@pytest.mark.parametrize("form", ["checkpoint", "weights"])
def test_teacher_member_and_rded_observer_refuse(tmp_path, marker, form):
    """Reinforce's teacher members and RDED's observer both load through load_observer."""
    from shardforge.models.reference import load_observer, parse_member
    from shardforge.variants.reinforce.teacher import load_ensemble

    if form == "checkpoint":
        path = _crafted(tmp_path / "obs" / STATE_FILE, marker)
        ref = parse_member(str(tmp_path / "obs"))
    else:
        path = _crafted(tmp_path / "obs.pth", marker, checkpoint=False)
        ref = parse_member(f"small_cnn={path}")
    for load in (lambda: load_observer(ref, ["a", "b", "c"]),
                 lambda: load_ensemble([ref], ["a", "b", "c"], "parent")):
        with pytest.raises(UnsafeTorchFileError) as err:
            load()
        _refused(err.value, path)


def test_soft_label_export_refuses(tmp_path, marker):
    from shardforge.train.soft_labels import export_soft_labels

    path = _crafted(tmp_path / STATE_FILE, marker)
    with pytest.raises(UnsafeTorchFileError) as err:
        export_soft_labels(path, str(tmp_path / "nodata"), str(tmp_path / "out.npz"))
    _refused(err.value, path)
    assert not (tmp_path / "out.npz").exists()


def test_shape_bias_eval_refuses(tmp_path, marker):
    from shardforge.variants.stylize.shape_bias import evaluate_shape_bias

    stimuli = tmp_path / "stimuli"
    stimuli.mkdir()
    (stimuli / "cat1-dog2.png").write_bytes(b"not read before the checkpoint")
    path = _crafted(tmp_path / STATE_FILE, marker)
    with pytest.raises(UnsafeTorchFileError) as err:
        evaluate_shape_bias(path, str(stimuli))
    _refused(err.value, path)


def test_adain_weights_refuse(tmp_path, marker):
    from shardforge.variants.stylize import adain as A

    weights = tmp_path / "adain"
    A.save_random_weights(str(weights))
    path = _crafted(weights / A.DECODER_FILE, marker, checkpoint=False)
    with pytest.raises(A.WeightsError) as err:
        A.load_adain(str(weights))
    _refused(err.value, path)


def test_no_unsafe_load_in_the_code():
    """Every torch.load goes through torch_files.load_torch_bytes (weights_only=True), and
    nothing reads pickles, joblib or yaml.load."""
    root = Path(__file__).resolve().parents[1]
    offenders = []
    for sub in ("src", "pipelines", "jobs", "bench"):
        for py in (root / sub).rglob("*.py"):
            text = py.read_text()
            for needle in ("torch.load(", "pickle.load", "joblib", "allow_pickle=True",
                           "yaml.load(", "yaml.unsafe_load", "weights_only=False"):
                if needle in text and not (py.name == "torch_files.py" and needle == "torch.load("):
                    offenders.append(f"{py.relative_to(root)}: {needle}")
    assert offenders == []


def test_project_checkpoint_round_trips_weights_only(tmp_path):
    """What the training loop saves (model, optimizer with momentum, GradScaler, loader
    state, config dict, metrics with numpy values) loads weights-only and resumes."""
    from shardforge.models.checkpoint import load_state
    from shardforge.train.session import LocalSession

    spec = {"arch": "small_cnn", "num_classes": 3, "blurpool": True, "width": 8}
    model = build_model(**spec)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    state = {"format": STATE_FORMAT, "epochs_done": 2, "model": model.state_dict(),
             "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
             "loader": {"kind": "wds", "epoch": np.int64(2), "seed": np.uint32(7),
                        "order": "shuffle", "next_epoch": 2},
             "model_spec": spec, "classes": ["a", "b", "c"],
             "config": TrainConfig().to_dict(), "dataset": "/d",
             "metrics": [{"epoch": 1, "res": np.int64(160), "top1": np.float32(0.5)}]}
    run = tmp_path / "run"
    save_state(str(run / checkpoint_name(2)), state)
    loaded = LocalSession(str(run)).resume_state()
    assert loaded["epochs_done"] == 2 and loaded["loader"]["epoch"] == 2
    assert type(loaded["loader"]["seed"]) is int and loaded["metrics"][0]["res"] == 160
    assert TrainConfig.from_dict(loaded["config"]).to_dict() == TrainConfig().to_dict()
    fresh = build_model(**spec)
    fresh.load_state_dict(loaded["model"])
    for a, b in zip(fresh.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    opt2 = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(loaded["optimizer"])
    assert torch.equal(opt2.state_dict()["state"][0]["momentum_buffer"],
                       opt.state_dict()["state"][0]["momentum_buffer"])
    assert load_state(str(run))["classes"] == ["a", "b", "c"]


def test_saving_a_custom_object_is_refused_naming_the_key(tmp_path):
    from dataclasses import dataclass

    @dataclass
    class Cfg:
        x: int = 1

    with pytest.raises(TypeError, match=r"state.pt\['config'\].*Cfg.*asdict"):
        save_state(str(tmp_path / "c"), {"format": STATE_FORMAT, "config": Cfg()})
    assert not os.path.exists(tmp_path / "c" / STATE_FILE)
    assert plain_state({"a": (np.float64(1.5),)}) == {"a": (1.5,)}


def test_stored_soft_targets_with_object_arrays_refuse(tmp_path, marker):
    """targets.stored_path: an .npz whose array is pickled objects is refused (numpy's
    allow_pickle=False) with one line naming the file; nothing is unpickled."""
    from shardforge.train.targets import load_stored_targets

    path = str(tmp_path / "soft.npz")
    evil = np.empty(2, dtype=object)
    evil[0], evil[1] = _Evil(str(marker)), 1
    np.savez(path, topk_indices=evil, topk_probs=np.zeros((2, 1), np.float16))
    with pytest.raises(ValueError) as err:
        load_stored_targets(path, num_classes=3)
    msg = str(err.value)
    assert "\n" not in msg and path in msg and "refused to load" in msg
