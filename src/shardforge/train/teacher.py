"""Building the configured :class:`~shardforge.train.targets.Targets`, teachers included."""

from __future__ import annotations

from torch import nn

from shardforge.layout.info import DatasetInfo
from shardforge.models.archs import build_model
from shardforge.models.reference import SORTED, ObserverRef, load_checked
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
                 classes: tuple[str, ...] | list[str], dataset: str = "the dataset"
                 ) -> nn.Module:
    """A frozen teacher in eval mode (CPU), loaded the one way model references are
    (:func:`shardforge.models.reference.load_checked`: its class order checked against
    ``classes``, the dataset's).

    Either ``checkpoint`` (a jobs/train.py checkpoint: state.pt, checkpoint dir or run dir)
    or ``arch`` (``small_cnn`` or a torchvision name) with ``weights`` (a local/URL file with
    a state dict, e.g. downloaded torchvision weights; its logit order is taken as the
    sorted class names, the ImageFolder convention torchvision's weights follow). Raises
    ValueError naming both orders when they differ.
    """
    if checkpoint:
        ref = ObserverRef(checkpoint)
    elif arch and weights:
        ref = ObserverRef(arch, weights, SORTED)
    elif arch:   # an untrained constructor (tests, ablations): no file to check
        return build_model(arch, len(classes)).eval()
    else:
        raise ValueError("a teacher needs targets.teacher_checkpoint or targets.teacher_arch")
    return load_checked(ref, classes, f"teacher {checkpoint or arch}", dataset)


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
                           info.classes, info.url)
    return TeacherTargets(teacher, t.temperature, t.alpha, cfg.optim.label_smoothing,
                          t.t_squared)
