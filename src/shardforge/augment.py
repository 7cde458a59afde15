"""Replayable augmentations for dataset reinforcement (ImageNet+).

Each stored augmentation of an image is one fixed-width *parameter record*: sampling
(:func:`sample_params`) draws the records from a seeded numpy generator, replay
(:func:`apply_params`) turns an image plus one record into the exact same uint8 view every
time. Only the records are stored next to the teacher's outputs; the student replays a
record to see the pixels the teacher saw.

Default policy: ImageNet+'s recommended setting, RandomResizedCrop(224) + horizontal flip +
RandAugment(2 ops, magnitude 9) + RandomErasing(p=0.25), no mixing (Faghri et al.,
"Reinforce Data, Multiply Impact", ICCV 2023, Sec. 4 / Table 2 "RRC+RA/RE"; the stored
parameters follow the paper's list: partner id, RRC (i, j, h, w), flip, RandAugment
(op, signed magnitude) pairs, RandomErasing (x, y, h, w) or none, MixUp lambda, CutMix
[lambda, x1, y1, x2, y2]).

Replay order, on uint8 ``3 x H x W`` tensors::

    RRC (resized_crop, bilinear, antialias) -> hflip -> RandAugment ops
    -> RandomErasing -> MixUp -> CutMix

RandomErasing note: torchvision applies ``RandomErasing`` to the normalised float tensor,
so its default ``value=0`` paints the dataset *mean* colour. Here erasing runs on the uint8
view (before ToTensor/Normalize, which the loader does later) and paints ``erasing_value``
(default 0, i.e. black, as the brief asks). Set ``erasing_value`` to the mean in uint8
(e.g. 124 for ImageNet's grey) to approximate the normalised-zero behaviour.

Mixing note: records carry a partner *index* (uniform in ``[0, num_partners)``, an index
into the caller's shard, possibly the image itself). The caller supplies the partner's
uint8 view (``size x size``); :func:`partner_view` (the whole partner image resized, no
other augmentation) is the convention replay uses unless told otherwise.

Record layout (one numpy structured record per augmentation; ``n`` = ``randaugment_ops``;
the mixing fields exist only when ``mixup_p > 0`` or ``cutmix_p > 0``):

============== ======= ==============================================================
field          dtype   meaning
============== ======= ==============================================================
rrc_i          int16   crop top row in the source image (torchvision ``i``)
rrc_j          int16   crop left column in the source image (``j``)
rrc_h          int16   crop height in source pixels
rrc_w          int16   crop width in source pixels
flip           uint8   1 = horizontal flip after the crop
ra_op{k}       int8    RandAugment op k (0..13, order of :data:`RANDAUGMENT_OPS`), k < n
ra_mag{k}      float32 signed magnitude passed to the op (torchvision's float32 value)
erase_i        int16   erased box top row in the view (torchvision's ``x``/``i``)
erase_j        int16   erased box left column in the view (``y``/``j``)
erase_h        int16   erased box height; 0 = no erasing
erase_w        int16   erased box width; 0 = no erasing
erase_fill     uint8   fill value of the erased box (all channels)
partner        int32   partner index for MixUp/CutMix; -1 = no mixing
mixup_lam      float32 MixUp weight of this image; 1.0 = no MixUp
cutmix_lam     float32 CutMix weight of this image (area-corrected); 1.0 = no CutMix
cutmix_x1      int16   CutMix box left column in the view
cutmix_y1      int16   CutMix box top row
cutmix_x2      int16   CutMix box right column (exclusive)
cutmix_y2      int16   CutMix box bottom row (exclusive)
============== ======= ==============================================================

Default policy: 28 bytes per record (:func:`params_nbytes`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pyarrow as pa
import torch
import torchvision.transforms.functional as F
import torchvision.transforms.v2.functional as F2
from torchvision.transforms import InterpolationMode

#: RandAugment's magnitude bins (torchvision ``RandAugment.num_magnitude_bins`` default).
NUM_MAGNITUDE_BINS = 31
_MAX_INT16 = np.iinfo(np.int16).max


@dataclass(frozen=True)
class AugPolicy:
    """The augmentation policy; the defaults are ImageNet+'s recommended setting.

    Faghri et al., ICCV 2023 (Dataset Reinforcement, Sec. 4, Table 2): RRC + RandAugment +
    RandomErasing, no MixUp/CutMix. ``rrc_*`` / ``erasing_*`` defaults are torchvision's
    ``RandomResizedCrop`` / ``RandomErasing`` defaults; ``randaugment_magnitude`` indexes
    :data:`NUM_MAGNITUDE_BINS` bins as torchvision's ``RandAugment``.
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
    mixup_alpha: float = 0.2
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


# ---------------------------------------------------------------------------------------
# RandAugment op table (torchvision RandAugment._augmentation_space order and _apply_op
# semantics: nearest interpolation, fill 0, magnitudes as torchvision's float32 values).

_NEAREST = InterpolationMode.NEAREST


def _linspace(lo: float, hi: float) -> Callable[[int, int], float]:
    return lambda magnitude, size: float(torch.linspace(lo, hi, NUM_MAGNITUDE_BINS)[magnitude])


def _zero(magnitude: int, size: int) -> float:
    return 0.0


def _translate(magnitude: int, size: int) -> float:
    return float(torch.linspace(0.0, 150.0 / 331.0 * size, NUM_MAGNITUDE_BINS)[magnitude])


def _posterize_bits(magnitude: int, size: int) -> float:
    bins = 8 - (torch.arange(NUM_MAGNITUDE_BINS) / ((NUM_MAGNITUDE_BINS - 1) / 4)).round().int()
    return float(bins[magnitude])


def _shear(img: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    return F.affine(img, angle=0.0, translate=[0, 0], scale=1.0,
                    shear=[math.degrees(math.atan(sx)), math.degrees(math.atan(sy))],
                    interpolation=_NEAREST, fill=None, center=[0, 0])


def _shift(img: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Integer translation with zero fill: the same pixels as torchvision's
    ``F.affine(img, translate=[dx, dy], interpolation=NEAREST, fill=None)`` (asserted by
    tests/test_augment.py), by slicing instead of a float grid_sample (~50x faster)."""
    out = torch.zeros_like(img)
    height, width = img.shape[-2:]
    if abs(dx) >= width or abs(dy) >= height:
        return out
    src_y, dst_y = (slice(0, height - dy), slice(dy, height)) if dy >= 0 else \
        (slice(-dy, height), slice(0, height + dy))
    src_x, dst_x = (slice(0, width - dx), slice(dx, width)) if dx >= 0 else \
        (slice(-dx, width), slice(0, width + dx))
    out[..., dst_y, dst_x] = img[..., src_y, src_x]
    return out


def _sharpness(img: torch.Tensor, factor: float) -> torch.Tensor:
    """torchvision's tensor ``adjust_sharpness`` for uint8, pixel for pixel, without the
    float depthwise conv2d (the slowest op by far on one CPU thread).

    The blur is (8 neighbours + 5 x centre) / 13 rounded: torchvision computes it in float32
    and rounds; k / 13 is never within 1/26 of a .5 tie and float32 error is < 1e-3 here, so
    the exact integer rounding below gives the same bytes. The blend is torchvision's
    ``_blend`` expression verbatim (float32, clamp, truncating cast); asserted by
    tests/test_augment.py against ``F.adjust_sharpness``.
    """
    if factor < 0:
        raise ValueError(f"Sharpness factor {factor} is negative; RandAugment magnitudes are "
                         f"below 1, so the record is corrupt: re-sample it.")
    if img.shape[-1] <= 2 or img.shape[-2] <= 2:
        return img
    x = img.to(torch.int16)
    total = 4 * x[..., 1:-1, 1:-1]
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            total += x[..., dy:dy + x.shape[-2] - 2, dx:dx + x.shape[-1] - 2]
    blurred = img.clone()
    blurred[..., 1:-1, 1:-1] = torch.div(2 * total + 13, 26, rounding_mode="floor").to(torch.uint8)
    factor = float(factor)
    return (factor * img + (1.0 - factor) * blurred).clamp(0, 255).to(torch.uint8)


@dataclass(frozen=True)
class _Op:
    name: str
    signed: bool
    magnitude: Callable[[int, int], float]  # (magnitude bin, view size) -> value
    apply: Callable[[torch.Tensor, float], torch.Tensor]


_OPS: tuple[_Op, ...] = (
    _Op("Identity", False, _zero, lambda img, m: img),
    _Op("ShearX", True, _linspace(0.0, 0.3), lambda img, m: _shear(img, m, 0.0)),
    _Op("ShearY", True, _linspace(0.0, 0.3), lambda img, m: _shear(img, 0.0, m)),
    _Op("TranslateX", True, _translate, lambda img, m: _shift(img, int(m), 0)),
    _Op("TranslateY", True, _translate, lambda img, m: _shift(img, 0, int(m))),
    _Op("Rotate", True, _linspace(0.0, 30.0),
        lambda img, m: F.rotate(img, m, interpolation=_NEAREST, fill=None)),
    _Op("Brightness", True, _linspace(0.0, 0.9), lambda img, m: F.adjust_brightness(img, 1 + m)),
    _Op("Color", True, _linspace(0.0, 0.9), lambda img, m: F.adjust_saturation(img, 1 + m)),
    _Op("Contrast", True, _linspace(0.0, 0.9), lambda img, m: F.adjust_contrast(img, 1 + m)),
    _Op("Sharpness", True, _linspace(0.0, 0.9), lambda img, m: _sharpness(img, 1 + m)),
    _Op("Posterize", False, _posterize_bits, lambda img, m: F.posterize(img, int(m))),
    _Op("Solarize", False, _linspace(255.0, 0.0), lambda img, m: F.solarize(img, m)),
    _Op("AutoContrast", False, _zero, lambda img, m: F.autocontrast(img)),
    _Op("Equalize", False, _zero, lambda img, m: F.equalize(img)),
)

#: RandAugment op names; a record's ``ra_op{k}`` indexes this tuple.
RANDAUGMENT_OPS: tuple[str, ...] = tuple(op.name for op in _OPS)


def randaugment_magnitudes(policy: AugPolicy) -> np.ndarray:
    """Unsigned float32 magnitude of each op (``RANDAUGMENT_OPS`` order) under ``policy``."""
    return np.array([op.magnitude(policy.randaugment_magnitude, policy.size) for op in _OPS],
                    dtype=np.float32)


def apply_randaugment_op(img: torch.Tensor, op: int, magnitude: float) -> torch.Tensor:
    """Apply RandAugment op ``op`` (index into :data:`RANDAUGMENT_OPS`) with the signed
    ``magnitude`` to a uint8 ``3 x H x W`` tensor, as torchvision's RandAugment does."""
    if not 0 <= op < len(_OPS):
        raise ValueError(f"RandAugment op index {op} is outside [0, {len(_OPS) - 1}]: the "
                         f"record is corrupt or from another layout; re-sample it.")
    return _OPS[op].apply(img, float(magnitude))


# ---------------------------------------------------------------------------------------
# Record layout


@dataclass(frozen=True)
class ParamField:
    """One record field: its name, storage dtype (numpy string) and meaning."""

    name: str
    dtype: str
    meaning: str


def param_fields(policy: AugPolicy) -> tuple[ParamField, ...]:
    """The record fields of ``policy``, in storage order (see the module docstring table)."""
    out = [
        ParamField("rrc_i", "int16", "crop top row in the source image"),
        ParamField("rrc_j", "int16", "crop left column in the source image"),
        ParamField("rrc_h", "int16", "crop height in source pixels"),
        ParamField("rrc_w", "int16", "crop width in source pixels"),
        ParamField("flip", "uint8", "1 = horizontal flip"),
    ]
    for k in range(policy.randaugment_ops):
        out.append(ParamField(f"ra_op{k}", "int8", f"RandAugment op {k} (0..13)"))
        out.append(ParamField(f"ra_mag{k}", "float32", f"signed magnitude of op {k}"))
    out += [
        ParamField("erase_i", "int16", "erased box top row in the view"),
        ParamField("erase_j", "int16", "erased box left column in the view"),
        ParamField("erase_h", "int16", "erased box height (0 = no erasing)"),
        ParamField("erase_w", "int16", "erased box width (0 = no erasing)"),
        ParamField("erase_fill", "uint8", "erased box fill value"),
    ]
    if policy.mixing:
        out += [
            ParamField("partner", "int32", "partner index in the shard (-1 = no mixing)"),
            ParamField("mixup_lam", "float32", "MixUp weight of this image (1 = none)"),
            ParamField("cutmix_lam", "float32", "CutMix weight of this image (1 = none)"),
            ParamField("cutmix_x1", "int16", "CutMix box left column"),
            ParamField("cutmix_y1", "int16", "CutMix box top row"),
            ParamField("cutmix_x2", "int16", "CutMix box right column (exclusive)"),
            ParamField("cutmix_y2", "int16", "CutMix box bottom row (exclusive)"),
        ]
    return tuple(out)


#: The record fields of the default policy.
PARAM_FIELDS: tuple[ParamField, ...] = param_fields(AugPolicy())


def param_dtype(policy: AugPolicy) -> np.dtype:
    """The packed (unaligned) numpy structured dtype of ``policy``'s records."""
    return np.dtype([(f.name, f.dtype) for f in param_fields(policy)])


def params_nbytes(policy: AugPolicy) -> int:
    """Bytes of one packed record of ``policy`` (28 for the default policy)."""
    return param_dtype(policy).itemsize


# ---------------------------------------------------------------------------------------
# Sampling


def image_rng(seed: int, key: str) -> np.random.Generator:
    """The generator of one image: PCG64 seeded by sha256(``seed``, ``key``).

    Depends only on the seed and the sample key, so it is the same whatever the worker
    count, shard order or number of images sampled before.
    """
    digest = hashlib.sha256(f"shardforge-augment\0{int(seed)}\0{key}".encode()).digest()
    words = np.frombuffer(digest, dtype="<u8")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(w) for w in words])))


def _random_boxes(rng: np.random.Generator, num: int, area: float,
                  scale: tuple[float, float], ratio: tuple[float, float],
                  ) -> tuple[np.ndarray, np.ndarray]:
    """torchvision's 10-attempt box draws, vectorised: (first-dim side, second side) per
    attempt, shape ``(num, 10)``; the caller picks the order of sqrt(a*r) / sqrt(a/r)."""
    target = area * rng.uniform(scale[0], scale[1], size=(num, 10))
    log_ratio = np.log(np.asarray(ratio, dtype=np.float64))
    aspect = np.exp(rng.uniform(log_ratio[0], log_ratio[1], size=(num, 10)))
    times = np.round(np.sqrt(target * aspect))  # np.round: half-to-even, like Python round()
    over = np.round(np.sqrt(target / aspect))
    return times, over


def _first_valid(valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: whether any attempt is valid and the index of the first valid one."""
    return valid.any(axis=1), valid.argmax(axis=1)


def sample_params(policy: AugPolicy, width: int, height: int, rng: np.random.Generator,
                  num: int, *, num_partners: int = 0) -> np.ndarray:
    """Draw ``num`` augmentation records for a ``width x height`` image.

    Returns a structured array of dtype :func:`param_dtype` (``policy``), one row per
    augmentation. The same generator state gives the same rows. RRC follows
    ``torchvision.transforms.RandomResizedCrop.get_params`` (10 attempts, then the central
    fallback) and RandomErasing ``RandomErasing.get_params`` (10 attempts, else no erasing)
    with draws from ``rng``. ``num_partners``: size of the pool partner indices are drawn
    from; required (> 0) when the policy mixes.
    """
    if width < 1 or height < 1 or width > _MAX_INT16 or height > _MAX_INT16:
        raise ValueError(f"sample_params: image size {width}x{height} is outside "
                         f"[1, {_MAX_INT16}] per side; resize the source image first.")
    if num < 0:
        raise ValueError(f"sample_params: num={num} must be >= 0.")
    if policy.mixing and num_partners < 1:
        raise ValueError("sample_params: the policy mixes (mixup_p/cutmix_p > 0) but "
                         "num_partners is 0; pass the shard's sample count as num_partners.")
    out = np.zeros(num, dtype=param_dtype(policy))

    # RandomResizedCrop.get_params: w = round(sqrt(a*r)), h = round(sqrt(a/r)).
    w, h = _random_boxes(rng, num, float(width * height), policy.rrc_scale, policy.rrc_ratio)
    ok, first = _first_valid((w > 0) & (w <= width) & (h > 0) & (h <= height))
    rows = np.arange(num)
    w, h = w[rows, first].astype(np.int64), h[rows, first].astype(np.int64)
    fw, fh = _central_fallback(width, height, policy.rrc_ratio)
    w, h = np.where(ok, w, fw), np.where(ok, h, fh)
    top = rng.integers(0, height - h + 1)
    left = rng.integers(0, width - w + 1)
    out["rrc_i"] = np.where(ok, top, (height - h) // 2)
    out["rrc_j"] = np.where(ok, left, (width - w) // 2)
    out["rrc_h"], out["rrc_w"] = h, w

    out["flip"] = rng.random(num) < policy.flip_p

    n_ops = policy.randaugment_ops
    ops = rng.integers(0, len(_OPS), size=(num, n_ops))
    negative = rng.integers(0, 2, size=(num, n_ops)).astype(bool)
    values = randaugment_magnitudes(policy)
    signed = np.array([op.signed for op in _OPS])
    mags = np.where(signed[ops] & negative, -values[ops], values[ops])
    for k in range(n_ops):
        out[f"ra_op{k}"] = ops[:, k]
        out[f"ra_mag{k}"] = mags[:, k]

    # RandomErasing.get_params on the size x size view: h = round(sqrt(a*r)), w = ...(a/r).
    size = policy.size
    erase = rng.random(num) < policy.erasing_p
    eh, ew = _random_boxes(rng, num, float(size * size), policy.erasing_scale,
                           policy.erasing_ratio)
    ok, first = _first_valid((eh < size) & (ew < size))
    eh, ew = eh[rows, first].astype(np.int64), ew[rows, first].astype(np.int64)
    ei = rng.integers(0, np.maximum(size - eh + 1, 1))
    ej = rng.integers(0, np.maximum(size - ew + 1, 1))
    keep = erase & ok & (eh > 0) & (ew > 0)
    out["erase_i"] = np.where(keep, ei, 0)
    out["erase_j"] = np.where(keep, ej, 0)
    out["erase_h"] = np.where(keep, eh, 0)
    out["erase_w"] = np.where(keep, ew, 0)
    out["erase_fill"] = policy.erasing_value

    if policy.mixing:
        _sample_mixing(policy, rng, out, num_partners)
    return out


def _central_fallback(width: int, height: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """RandomResizedCrop's fallback crop size (w, h) when all 10 attempts fail."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        return width, int(round(width / min(ratio)))
    if in_ratio > max(ratio):
        return int(round(height * max(ratio))), height
    return width, height


def _sample_mixing(policy: AugPolicy, rng: np.random.Generator, out: np.ndarray,
                   num_partners: int) -> None:
    """MixUp (lambda ~ Beta(alpha, alpha)) and CutMix (box of area 1 - lambda, centre
    uniform, clipped; lambda corrected to the clipped area) with one partner per record."""
    num, size = len(out), policy.size
    partner = rng.integers(0, num_partners, size=num)
    do_mixup = rng.random(num) < policy.mixup_p
    mixup_lam = rng.beta(policy.mixup_alpha, policy.mixup_alpha, size=num)
    do_cutmix = rng.random(num) < policy.cutmix_p
    cut_lam = rng.beta(policy.cutmix_alpha, policy.cutmix_alpha, size=num)
    cut = np.sqrt(1.0 - cut_lam)
    cut_w, cut_h = (size * cut).astype(np.int64), (size * cut).astype(np.int64)
    cx, cy = rng.integers(0, size, size=num), rng.integers(0, size, size=num)
    x1, x2 = np.clip(cx - cut_w // 2, 0, size), np.clip(cx + cut_w // 2, 0, size)
    y1, y2 = np.clip(cy - cut_h // 2, 0, size), np.clip(cy + cut_h // 2, 0, size)
    do_cutmix &= (x2 > x1) & (y2 > y1)
    out["partner"] = np.where(do_mixup | do_cutmix, partner, -1)
    out["mixup_lam"] = np.where(do_mixup, mixup_lam, 1.0)
    area_lam = 1.0 - (x2 - x1) * (y2 - y1) / float(size * size)
    out["cutmix_lam"] = np.where(do_cutmix, area_lam, 1.0)
    for name, value in (("cutmix_x1", x1), ("cutmix_y1", y1), ("cutmix_x2", x2),
                        ("cutmix_y2", y2)):
        out[name] = np.where(do_cutmix, value, 0)


# ---------------------------------------------------------------------------------------
# Replay


def _as_chw(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A uint8 ``3 x H x W`` tensor from an ``H x W x 3`` array or a ``3 x H x W`` tensor."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"apply_params: numpy image must be uint8 H x W x 3, got "
                             f"{image.dtype} {image.shape}; convert it to RGB uint8.")
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"apply_params: tensor image must be uint8 3 x H x W, got "
                         f"{image.dtype} {tuple(image.shape)}; convert it to RGB uint8.")
    return image


def partner_view(image: np.ndarray | torch.Tensor, policy: AugPolicy) -> torch.Tensor:
    """The default partner view for mixing: the whole image resized to ``size x size``
    (bilinear, antialias), no other augmentation."""
    img = _as_chw(image)
    return F2.resize(img, [policy.size, policy.size], antialias=True)


def _field(row: np.void | np.ndarray, name: str) -> int | float:
    return row[name].item()


def apply_params(image: np.ndarray | torch.Tensor, params_row: np.void | np.ndarray,
                 policy: AugPolicy, *, partner: torch.Tensor | None = None) -> torch.Tensor:
    """Replay one record: the uint8 ``3 x size x size`` view, bit-identical on every call.

    ``image``: the source image (uint8 ``H x W x 3`` array or ``3 x H x W`` tensor) the
    record was sampled for. ``params_row``: one record of dtype :func:`param_dtype`
    (``policy``). ``partner``: the partner's uint8 ``3 x size x size`` view (see
    :func:`partner_view`), required when the record mixes (``partner >= 0``).
    """
    names = params_row.dtype.names or ()
    if params_row.dtype != param_dtype(policy):
        raise ValueError(f"apply_params: record fields {names} do not match the policy's "
                         f"layout {param_dtype(policy).names}; replay with the policy the "
                         f"records were sampled with.")
    img = _as_chw(image)
    _, height, width = img.shape
    i, j, h, w = (_field(params_row, n) for n in ("rrc_i", "rrc_j", "rrc_h", "rrc_w"))
    if not (0 <= i and 0 <= j and 0 < h and 0 < w and i + h <= height and j + w <= width):
        raise ValueError(f"apply_params: crop box (i={i}, j={j}, h={h}, w={w}) is outside the "
                         f"{width}x{height} image; the record belongs to another image.")
    size = policy.size
    out = F2.resized_crop(img, i, j, h, w, [size, size], antialias=True)
    if _field(params_row, "flip"):
        out = F2.horizontal_flip(out)
    for k in range(policy.randaugment_ops):
        out = apply_randaugment_op(out, _field(params_row, f"ra_op{k}"),
                                   _field(params_row, f"ra_mag{k}"))
    eh, ew = _field(params_row, "erase_h"), _field(params_row, "erase_w")
    if eh > 0 and ew > 0:
        fill = torch.tensor(_field(params_row, "erase_fill"), dtype=torch.uint8)
        out = F2.erase(out, _field(params_row, "erase_i"), _field(params_row, "erase_j"),
                       eh, ew, fill)
    if policy.mixing and _field(params_row, "partner") >= 0:
        out = _mix(out, params_row, policy, partner)
    return out.contiguous()


def _mix(out: torch.Tensor, row: np.void, policy: AugPolicy,
         partner: torch.Tensor | None) -> torch.Tensor:
    """MixUp then CutMix of ``out`` with the partner view (uint8 in, uint8 out)."""
    size = policy.size
    if partner is None or partner.dtype != torch.uint8 or tuple(partner.shape) != (3, size, size):
        raise ValueError(f"apply_params: the record mixes with partner "
                         f"{_field(row, 'partner')} but no uint8 3 x {size} x {size} partner "
                         f"view was given; pass partner=partner_view(partner_image, policy).")
    lam = _field(row, "mixup_lam")
    if lam != 1.0:
        lam32 = torch.tensor(lam, dtype=torch.float32)
        mixed = lam32 * out.to(torch.float32) + (1.0 - lam32) * partner.to(torch.float32)
        out = mixed.round().clamp(0, 255).to(torch.uint8)
    if _field(row, "cutmix_lam") != 1.0:
        x1, y1, x2, y2 = (_field(row, n) for n in ("cutmix_x1", "cutmix_y1", "cutmix_x2",
                                                   "cutmix_y2"))
        out = out.clone()
        out[:, y1:y2, x1:x2] = partner[:, y1:y2, x1:x2]
    return out


def apply_batch(images: Sequence[np.ndarray | torch.Tensor], params: np.ndarray,
                policy: AugPolicy, *,
                partners: Sequence[torch.Tensor | None] | None = None) -> torch.Tensor:
    """Replay ``params[n]`` on ``images[n]``: a uint8 ``N x 3 x size x size`` tensor.

    ``partners``: per record the partner view (or None), when the policy mixes.
    """
    if len(images) != len(params):
        raise ValueError(f"apply_batch: {len(images)} images but {len(params)} records; "
                         f"pass one record per image.")
    if partners is not None and len(partners) != len(params):
        raise ValueError(f"apply_batch: {len(partners)} partner views for {len(params)} "
                         f"records; pass one (or None) per record.")
    size = policy.size
    out = torch.empty((len(params), 3, size, size), dtype=torch.uint8)
    for n, (image, row) in enumerate(zip(images, params, strict=True)):
        out[n] = apply_params(image, row, policy,
                              partner=None if partners is None else partners[n])
    return out


# ---------------------------------------------------------------------------------------
# Storage conversions


def params_to_matrix(params: np.ndarray) -> np.ndarray:
    """Records as a plain float32 ``N x F`` matrix (lossless: every field fits float32)."""
    names = params.dtype.names or ()
    return np.stack([params[n].astype(np.float32) for n in names], axis=1).reshape(-1, len(names))


def params_from_matrix(matrix: np.ndarray, policy: AugPolicy) -> np.ndarray:
    """Inverse of :func:`params_to_matrix` for ``policy``'s layout."""
    dtype = param_dtype(policy)
    names = dtype.names or ()
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[1] != len(names):
        raise ValueError(f"params_from_matrix: shape {matrix.shape} is not N x {len(names)} "
                         f"({names}); pass a matrix made by params_to_matrix with this policy.")
    out = np.empty(len(matrix), dtype=dtype)
    for k, name in enumerate(names):
        out[name] = matrix[:, k].astype(dtype[name])
    return out


def params_to_arrow(params: np.ndarray) -> pa.FixedSizeListArray:
    """Records as an Arrow ``fixed_size_list<float32>[F]`` array (one list per record)."""
    matrix = params_to_matrix(params)
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])


def params_from_arrow(array: pa.Array | pa.ChunkedArray, policy: AugPolicy) -> np.ndarray:
    """Inverse of :func:`params_to_arrow` (also accepts a parquet-read chunked column)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    width = len(param_dtype(policy).names or ())
    if not pa.types.is_fixed_size_list(array.type) or array.type.list_size != width:
        raise ValueError(f"params_from_arrow: column type {array.type} is not "
                         f"fixed_size_list<float32>[{width}]; pass a params_to_arrow column "
                         f"written with this policy.")
    flat = array.flatten().to_numpy(zero_copy_only=False)
    return params_from_matrix(flat.reshape(len(array), width), policy)


def params_to_columns(params: np.ndarray, prefix: str = "aug_") -> dict[str, np.ndarray]:
    """Records as typed columns ``{prefix + field: array}`` (one parquet column per field,
    each in its storage dtype: the most compact on disk)."""
    return {prefix + n: np.ascontiguousarray(params[n]) for n in params.dtype.names or ()}


def params_from_columns(columns: dict[str, np.ndarray], policy: AugPolicy,
                        prefix: str = "aug_") -> np.ndarray:
    """Inverse of :func:`params_to_columns` for ``policy``'s layout."""
    dtype = param_dtype(policy)
    names = dtype.names or ()
    missing = [prefix + n for n in names if prefix + n not in columns]
    if missing:
        raise ValueError(f"params_from_columns: missing columns {missing}; pass the columns "
                         f"written by params_to_columns with this policy.")
    length = len(columns[prefix + names[0]]) if names else 0
    out = np.empty(length, dtype=dtype)
    for name in names:
        out[name] = np.asarray(columns[prefix + name]).astype(dtype[name])
    return out
