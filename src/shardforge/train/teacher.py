"""Building the configured :class:`~shardforge.train.targets.Targets`, teachers included."""

from __future__ import annotations

from torch import nn

from shardforge.layout.info import DatasetInfo
from shardforge.models.archs import build_model
from shardforge.models.checkpoint import load_state, model_from_state
from shardforge.storage import resolve
from shardforge.torch_files import load_torch_bytes
from shardforge.train.config import TrainConfig
from shardforge.train.targets import (
    HardTargets,
    ReplayedTargets,
    StoredDenseTargets,
    StoredTopKTargets,
    Targets,
    TeacherTargets,
    load_stored_targets,
)


def load_teacher(checkpoint: str | None, arch: str | None, weights: str | None,
                 num_classes: int) -> nn.Module:
    """A frozen teacher in eval mode (CPU).

    Either ``checkpoint`` (a jobs/train.py checkpoint: state.pt, checkpoint dir or run dir)
    or ``arch`` (``small_cnn`` or a torchvision name) with ``weights`` (a local/URL file with
    a state dict, e.g. downloaded torchvision weights). Raises ValueError when the teacher's
    class count differs from ``num_classes``.
    """
    if checkpoint:
        state = load_state(checkpoint)
        model = model_from_state(state)
        teacher_classes = state["model_spec"]["num_classes"]
    else:
        if not arch:
            raise ValueError("a teacher needs targets.teacher_checkpoint or targets.teacher_arch")
        model = build_model(arch, num_classes)
        if weights:
            sd = load_torch_bytes(resolve(weights).read_bytes(), f"teacher weights {weights}")
            model.load_state_dict(sd.get("model", sd) if isinstance(sd, dict) else sd)
        teacher_classes = num_classes
    if teacher_classes != num_classes:
        raise ValueError(f"the teacher predicts {teacher_classes} classes, the dataset has "
                         f"{num_classes}; use a teacher trained on the same classes")
    return model.eval()


def build_targets(cfg: TrainConfig, info: DatasetInfo) -> Targets:
    """The :class:`Targets` that ``cfg.targets`` selects (on CPU; call ``.to(device)``)."""
    t = cfg.targets
    if t.kind == "hard":
        return HardTargets(cfg.optim.label_smoothing)
    if t.kind == "reinforced":
        return ReplayedTargets()
    if t.kind in ("topk", "dense"):
        stored = load_stored_targets(t.path, info.num_classes, info.counts.get("train"))
        expected = StoredTopKTargets if t.kind == "topk" else StoredDenseTargets
        if not isinstance(stored, expected):
            raise ValueError(f"targets.kind={t.kind} but {t.path} holds "
                             f"{'dense probs' if t.kind == 'topk' else 'top-K arrays'}; "
                             "set targets.kind to match the file")
        return stored
    teacher = load_teacher(t.teacher_checkpoint, t.teacher_arch, t.teacher_weights,
                           info.num_classes)
    return TeacherTargets(teacher, t.temperature, t.alpha, cfg.optim.label_smoothing)
