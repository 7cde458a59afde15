"""A teacher ensemble for dataset reinforcement: the mean of its members' softmax at T=1.

Members are :class:`~shardforge.models.reference.ObserverRef` references (a jobs/train.py
checkpoint, or a model constructor + local weights file), loaded once per actor. ImageNet+
(Faghri et al., ICCV 2023, Sec. 3) averages the probabilities of four IG-ResNeXt-101
models; one member is a plain teacher.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from shardforge.models.reference import ObserverRef, load_checked, observer_identity


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
    members = [load_checked(ref, dataset_classes, f"teacher {ref.location!r}", dataset)
               for ref in refs]
    return Ensemble(members).eval()


def ensemble_identity(refs: Sequence[ObserverRef]) -> list[dict]:
    """Per member: reference, resolved file and its sha256 (what lineage records)."""
    out = []
    for ref in refs:
        ident = observer_identity(ref)
        out.append({k.replace("observer", "teacher"): v for k, v in ident.items()})
    return out
