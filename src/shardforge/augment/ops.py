"""Pixels: the RandAugment op table and replaying a record onto an image."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.functional as F
import torchvision.transforms.v2.functional as F2
from torchvision.transforms import InterpolationMode

from shardforge.augment.policy import NUM_MAGNITUDE_BINS, AugPolicy
from shardforge.augment.records import param_dtype

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


def partner_view(image: np.ndarray | torch.Tensor, params_row: np.void | np.ndarray,
                 policy: AugPolicy) -> torch.Tensor:
    """The partner's own view of a mixing record: the partner's source image through the
    record's ``p_*`` fields (crop, flip, RandAugment, erasing), uint8 ``3 x size x size``,
    as ml-dr augments the second image of a pair with its own parameters."""
    if not policy.mixing:
        raise ValueError("partner_view: the policy does not mix (mixup_p = cutmix_p = 0), so "
                         "its records hold no partner view; replay with apply_params.")
    return _view(_as_chw(image), params_row, policy, "p_")


def _field(row: np.void | np.ndarray, name: str) -> int | float:
    return row[name].item()


def apply_params(image: np.ndarray | torch.Tensor, params_row: np.void | np.ndarray,
                 policy: AugPolicy, *, partner: np.ndarray | torch.Tensor | None = None
                 ) -> torch.Tensor:
    """Replay one record: the uint8 ``3 x size x size`` view, bit-identical on every call.

    ``image``: the source image (uint8 ``H x W x 3`` array or ``3 x H x W`` tensor) the
    record was sampled for. ``params_row``: one record of dtype :func:`param_dtype`
    (``policy``). ``partner``: the partner's source image (same forms), required when the
    record mixes (``partner >= 0``): its view comes from the record (:func:`partner_view`),
    then MixUp and CutMix as ml-dr. The MixUp result is rounded to uint8 (ml-dr mixes
    normalised floats): a deliberate deviation, so that the stored view replays exactly.
    """
    names = params_row.dtype.names or ()
    if params_row.dtype != param_dtype(policy):
        raise ValueError(f"apply_params: record fields {names} do not match the policy's "
                         f"layout {param_dtype(policy).names}; replay with the policy the "
                         f"records were sampled with.")
    out = _view(_as_chw(image), params_row, policy, "")
    if policy.mixing and _field(params_row, "partner") >= 0:
        if partner is None:
            raise ValueError(f"apply_params: the record mixes with partner "
                             f"{_field(params_row, 'partner')} but no partner image was "
                             "given; pass partner=<that sample's source image>.")
        out = _mix(out, params_row, policy, partner_view(partner, params_row, policy))
    return out.contiguous()


def _view(img: torch.Tensor, row: np.void | np.ndarray, policy: AugPolicy,
          prefix: str) -> torch.Tensor:
    """One image's view from the record fields named ``prefix + field``: RandomResizedCrop,
    flip, RandAugment, RandomErasing (ml-dr's order)."""
    _, height, width = img.shape
    i, j, h, w = (_field(row, prefix + n) for n in ("rrc_i", "rrc_j", "rrc_h", "rrc_w"))
    if not (0 <= i and 0 <= j and 0 < h and 0 < w and i + h <= height and j + w <= width):
        whose = "the partner's crop box" if prefix else "crop box"
        raise ValueError(f"apply_params: {whose} (i={i}, j={j}, h={h}, w={w}) is outside the "
                         f"{width}x{height} image; the record belongs to another image.")
    size = policy.size
    out = F2.resized_crop(img, i, j, h, w, [size, size], antialias=True)
    if _field(row, prefix + "flip"):
        out = F2.horizontal_flip(out)
    for k in range(policy.randaugment_ops):
        out = apply_randaugment_op(out, _field(row, f"{prefix}ra_op{k}"),
                                   _field(row, f"{prefix}ra_mag{k}"))
    eh, ew = _field(row, prefix + "erase_h"), _field(row, prefix + "erase_w")
    if eh > 0 and ew > 0:
        fill = torch.tensor(_field(row, prefix + "erase_fill"), dtype=torch.uint8)
        out = F2.erase(out, _field(row, prefix + "erase_i"), _field(row, prefix + "erase_j"),
                       eh, ew, fill)
    return out


def _mix(out: torch.Tensor, row: np.void, policy: AugPolicy,
         partner: torch.Tensor) -> torch.Tensor:
    """MixUp then CutMix of ``out`` with the partner's view (uint8 in, uint8 out)."""
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
                partners: Sequence[np.ndarray | torch.Tensor | None] | None = None
                ) -> torch.Tensor:
    """Replay ``params[n]`` on ``images[n]``: a uint8 ``N x 3 x size x size`` tensor.

    ``partners``: per record the partner's source image (or None), when the policy mixes.
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


