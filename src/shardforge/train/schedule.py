"""The ffcv-imagenet schedules: triangular learning rate and progressive resizing."""

from __future__ import annotations

import numpy as np

#: (start_ramp, end_ramp) of the 160 -> 192 px resize ramp for each ffcv-imagenet recipe length.
RAMPS: dict[int, tuple[int, int]] = {
    16: (11, 13), 24: (17, 20), 32: (23, 27), 40: (29, 34), 56: (41, 48), 88: (65, 76),
}


def lr_at(epoch: float, lr: float, epochs: int, peak_epoch: float = 2.0) -> float:
    """Learning rate at fractional ``epoch`` of the ffcv-imagenet "cyclic" (triangular) schedule.

    Linear from ``1e-4 * lr`` at epoch 0 to ``lr`` at ``peak_epoch``, then linear to 0 at
    ``epochs``: ``np.interp(epoch, [0, peak_epoch, epochs], [1e-4 * lr, lr, 0])``. The
    training loop evaluates it per iteration at ``epoch + i / iters_per_epoch``.
    """
    if epochs <= 0:
        raise ValueError(f"epochs must be > 0, got {epochs}")
    if not 0 <= peak_epoch <= epochs:
        raise ValueError(f"lr_peak_epoch {peak_epoch} must lie in [0, epochs={epochs}]")
    return float(np.interp(epoch, [0.0, peak_epoch, float(epochs)], [1e-4 * lr, lr, 0.0]))


#: ``optim.schedule`` values: ffcv-imagenet's triangular, RDED's half cosine.
SCHEDULES = ("triangular", "half_cosine")


def half_cosine_lr_at(epoch: float, lr: float, epochs: int) -> float:
    """RDED's schedule (Sun et al. 2024, training code): the first half of a cosine,
    ``lr * 0.5 * (1 + cos(pi * epoch / (2 * epochs)))``: ``lr`` at epoch 0 down to
    ``lr / 2`` at ``epochs``."""
    if epochs <= 0:
        raise ValueError(f"epochs must be > 0, got {epochs}")
    return float(lr * 0.5 * (1.0 + np.cos(np.pi * min(epoch, epochs) / (2.0 * epochs))))


def iteration_lrs(epoch: int, iters: int, lr: float, epochs: int,
                  peak_epoch: float = 2.0, schedule: str = "triangular") -> np.ndarray:
    """Per-iteration learning rates of ``epoch`` (``iters`` steps), as ffcv-imagenet does.

    Step ``i`` gets ``lr_at(epoch + i / iters)``: the interpolation between the epoch's start
    and end rate. Returns an array of length ``iters`` (empty when ``iters`` is 0).
    ``schedule`` ``half_cosine``: :func:`half_cosine_lr_at` of the epoch for every step (RDED's
    ``validation/main.py`` steps its scheduler once per epoch; ``peak_epoch`` unused).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"optim.schedule must be one of {SCHEDULES}, got {schedule!r}")
    if schedule == "half_cosine":    # RDED steps its LambdaLR once per epoch: constant within
        return np.full(iters, half_cosine_lr_at(epoch, lr, epochs))
    start, end = lr_at(epoch, lr, epochs, peak_epoch), lr_at(epoch + 1, lr, epochs, peak_epoch)
    return np.interp(np.arange(iters), [0, iters], [start, end]) if iters else np.zeros(0)


def resolution_at(epoch: int, min_res: int, max_res: int, start_ramp: int, end_ramp: int,
                  multiple: int = 32) -> int:
    """Training resolution of ``epoch`` under progressive resizing (ffcv-imagenet rule).

    ``min_res`` up to and including ``start_ramp``, ``max_res`` from ``end_ramp`` on, and in
    between the linear interpolation rounded to the nearest multiple of ``multiple`` (32).
    """
    if min_res > max_res:
        raise ValueError(f"min_res {min_res} must be <= max_res {max_res}")
    if epoch <= start_ramp:
        return min_res
    if epoch >= end_ramp:
        return max_res
    value = float(np.interp(epoch, [start_ramp, end_ramp], [min_res, max_res]))
    return int(np.round(value / multiple)) * multiple
