"""The augmentation policy: ImageNet+'s default, and its validation."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

#: RandAugment's magnitude bins (torchvision ``RandAugment.num_magnitude_bins`` default).
NUM_MAGNITUDE_BINS = 31
_MAX_INT16 = np.iinfo(np.int16).max


@dataclass(frozen=True)
class AugPolicy:
    """The augmentation policy; the defaults are ImageNet+'s recommended setting.

    Faghri et al., ICCV 2023 (Dataset Reinforcement, Sec. 4, Table 2): RRC + RandAugment +
    RandomErasing, no MixUp/CutMix. ``rrc_*`` / ``erasing_*`` defaults are torchvision's
    ``RandomResizedCrop`` / ``RandomErasing`` defaults; ``randaugment_magnitude`` indexes
    :data:`NUM_MAGNITUDE_BINS` bins as torchvision's ``RandAugment``. Mixing (off by default,
    as the recommended setting) follows ml-dr's ``configs/imagenet/reinforce/
    randaug_mixing.yaml`` when switched on with ``mixup_p = cutmix_p = 0.5``: MixUp
    ``lam = Beta(mixup_alpha, mixup_alpha) / mixup_div_by`` (alpha 1.0, div_by 2.0) and
    CutMix Beta(1.0, 1.0), each with its own probability, MixUp first.
    """

    size: int = 224
    rrc_scale: tuple[float, float] = (0.08, 1.0)
    rrc_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    flip_p: float = 0.5
    randaugment_ops: int = 2
    randaugment_magnitude: int = 9
    erasing_p: float = 0.25
    erasing_scale: tuple[float, float] = (0.02, 0.33)
    erasing_ratio: tuple[float, float] = (0.3, 3.3)
    erasing_value: int = 0
    mixup_p: float = 0.0
    mixup_alpha: float = 1.0
    mixup_div_by: float = 2.0
    cutmix_p: float = 0.0
    cutmix_alpha: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.size <= _MAX_INT16:
            problems.append(f"size={self.size} must be in [1, {_MAX_INT16}]")
        for name in ("rrc_scale", "rrc_ratio", "erasing_scale", "erasing_ratio"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                problems.append(f"{name}={(lo, hi)} must be (min, max) with 0 < min <= max")
        if self.rrc_scale[1] > 1 or self.erasing_scale[1] > 1:
            problems.append("rrc_scale and erasing_scale maxima must be <= 1")
        for name in ("flip_p", "erasing_p", "mixup_p", "cutmix_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name}={getattr(self, name)} must be a probability in [0, 1]")
        if not 0 <= self.randaugment_ops <= 16:
            problems.append(f"randaugment_ops={self.randaugment_ops} must be in [0, 16]")
        if not 0 <= self.randaugment_magnitude < NUM_MAGNITUDE_BINS:
            problems.append(f"randaugment_magnitude={self.randaugment_magnitude} must be in "
                            f"[0, {NUM_MAGNITUDE_BINS - 1}]")
        if not 0 <= self.erasing_value <= 255:
            problems.append(f"erasing_value={self.erasing_value} must be a uint8 in [0, 255]")
        if self.mixup_alpha <= 0 or self.cutmix_alpha <= 0:
            problems.append("mixup_alpha and cutmix_alpha must be > 0")
        if self.mixup_div_by < 1:
            problems.append(f"mixup_div_by={self.mixup_div_by} must be >= 1 (ml-dr: 2.0)")
        if problems:
            raise ValueError("AugPolicy: " + "; ".join(problems) + ". Fix the policy fields.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields (tuples as lists): store it with the records to replay them."""
        return {f.name: list(v) if isinstance(v, tuple) else v
                for f in fields(self) for v in [getattr(self, f.name)]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AugPolicy:
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing keys take defaults."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"AugPolicy.from_dict: unknown fields {unknown}; known fields are "
                             f"{sorted(known)}.")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    @property
    def mixing(self) -> bool:
        """Whether records carry the partner/MixUp/CutMix fields."""
        return self.mixup_p > 0 or self.cutmix_p > 0
