"""A teacher ensemble for dataset reinforcement: the mean of its members' softmax at T=1.

Members are :class:`~shardforge.variants.observer.ObserverRef` references (a jobs/train.py
checkpoint, or a model constructor + local weights file), loaded once per actor. ImageNet+
(Faghri et al., ICCV 2023, Sec. 3) averages the probabilities of four IG-ResNeXt-101
models; one member is a plain teacher.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from shardforge.variants.observer import (
    ObserverRef,
    check_class_order,
    load_observer,
    observer_identity,
)


def parse_member(text: str, classes: str | None = "sorted") -> ObserverRef:
    """``PATH`` (a jobs/train.py checkpoint, run dir or state.pt) or ``ARCH=WEIGHTS`` (a
    ``small_cnn``/torchvision constructor and a local state-dict file, whose class order is
    ``classes``: ``sorted`` or a file of class names)."""
    arch, sep, weights = text.partition("=")
    if sep:
        if not arch or not weights:
            raise ValueError(f"teacher {text!r}: write ARCH=WEIGHTS_FILE (e.g. "
                             "resnet50=/weights/rn50.pth) or a checkpoint path")
        return ObserverRef(arch, weights, classes)
    return ObserverRef(text)


class Ensemble(nn.Module):
    """``forward(x)``: mean over members of ``softmax(member(x))`` (float32, B x C)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("a teacher ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = None
        for m in self.members:
            p = torch.softmax(m(x).float(), dim=1)
            total = p if total is None else total + p
        return total / len(self.members)


def load_ensemble(refs: Sequence[ObserverRef], dataset_classes: Sequence[str],
                  dataset: str) -> Ensemble:
    """Load every member (CPU, eval mode) and check each one's class order against the
    dataset's (ValueError naming the member and both orders on a mismatch)."""
    members = []
    for ref in refs:
        obs = load_observer(ref, tuple(dataset_classes))
        check_class_order(obs.classes, dataset_classes, f"teacher {ref.location!r}", dataset)
        members.append(obs.model)
    return Ensemble(members).eval()


def ensemble_identity(refs: Sequence[ObserverRef]) -> list[dict]:
    """Per member: reference, resolved file and its sha256 (what lineage records)."""
    out = []
    for ref in refs:
        ident = observer_identity(ref)
        out.append({k.replace("observer", "teacher"): v for k, v in ident.items()})
    return out
