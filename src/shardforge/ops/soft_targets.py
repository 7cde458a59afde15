"""Soft targets, the one copy: sparse teacher top-K probabilities to dense distributions."""

from __future__ import annotations

import torch

#: Tolerance for probability rows that should sum to 1 (float16 storage rounds).
MASS_TOLERANCE = 1e-2


def densify_topk(indices: torch.Tensor, probs: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Dense float32 distributions (B x C) from sparse top-K teacher probabilities (B x K).

    The K stored probabilities are kept at their classes; the leftover mass
    ``1 - sum(probs)`` is spread evenly over the ``C - K`` other classes, so each row sums
    to 1. Rows whose stored mass exceeds 1 (float16 rounding) are rescaled to sum to 1 and
    get no leftover. Raises ValueError for mismatched shapes, K > C, indices outside
    ``[0, C)``, repeated indices in a row or negative probabilities.
    """
    if indices.shape != probs.shape or indices.dim() != 2:
        raise ValueError(f"top-K indices {tuple(indices.shape)} and probs {tuple(probs.shape)} "
                         "must both be (batch, K)")
    k = indices.shape[1]
    if k > num_classes:
        raise ValueError(f"K={k} stored probabilities for only {num_classes} classes")
    idx = indices.long()
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= num_classes):
        raise ValueError(f"top-K class indices must lie in [0, {num_classes})")
    if k > 1 and (idx.sort(dim=1).values.diff(dim=1) == 0).any():
        raise ValueError("top-K indices repeat a class within a row")
    p = probs.float()
    if (p < 0).any():
        raise ValueError("top-K probabilities must be >= 0")
    mass = p.sum(dim=1, keepdim=True)
    over = mass > 1.0
    p = torch.where(over, p / mass.clamp_min(1e-12), p)
    leftover = torch.where(over, torch.zeros_like(mass), 1.0 - mass)
    rest = num_classes - k
    if rest:
        dense = (leftover / rest).expand(-1, num_classes).clone()
    else:  # all classes stored: renormalise instead of spreading
        dense = torch.zeros(p.shape[0], num_classes, dtype=torch.float32, device=p.device)
        p = p / p.sum(dim=1, keepdim=True).clamp_min(1e-12)
    dense.scatter_(1, idx, p)
    return dense
