"""Sampling the parameter records of an image's augmentations, seeded per image
(:func:`image_rng`): what the teacher sees and the student replays."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np

from shardforge.augment.ops import _OPS, randaugment_magnitudes
from shardforge.augment.policy import _MAX_INT16, AugPolicy
from shardforge.augment.records import param_dtype

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


def _random_boxes(rng: np.random.Generator, num: int, area: float | np.ndarray,
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
                  num: int, *, partner_sizes: np.ndarray | None = None) -> np.ndarray:
    """Draw ``num`` augmentation records for a ``width x height`` image.

    Returns a structured array of dtype :func:`param_dtype` (``policy``), one row per
    augmentation. The same generator state gives the same rows. RRC follows
    ``torchvision.transforms.RandomResizedCrop.get_params`` (10 attempts, then the central
    fallback) and RandomErasing ``RandomErasing.get_params`` (10 attempts, else no erasing)
    with draws from ``rng``. ``partner_sizes``: ``(P, 2)`` ``(width, height)`` of the pool
    partners are drawn from (the shard's samples, in order); required when the policy
    mixes: a mixing record stores the partner's index and the partner's own view (crop,
    flip, RandAugment, erasing drawn for the partner's size, ``p_*`` fields), as ml-dr
    augments both images of a pair (``dr/transforms.py`` ``Compose.__call__``).
    """
    if width < 1 or height < 1 or width > _MAX_INT16 or height > _MAX_INT16:
        raise ValueError(f"sample_params: image size {width}x{height} is outside "
                         f"[1, {_MAX_INT16}] per side; resize the source image first.")
    if num < 0:
        raise ValueError(f"sample_params: num={num} must be >= 0.")
    if policy.mixing:
        partner_sizes = _checked_sizes(partner_sizes)
    out = np.zeros(num, dtype=param_dtype(policy))
    views = _draw_views(policy, np.full(num, width, np.int64), np.full(num, height, np.int64),
                        rng)
    for name in views.dtype.names or ():
        out[name] = views[name]

    if policy.mixing:
        _sample_mixing(policy, rng, out, partner_sizes)
    return out


def _checked_sizes(partner_sizes: np.ndarray | None) -> np.ndarray:
    """``partner_sizes`` as an int64 ``(P, 2)`` array, P >= 1, every side in [1, 32767];
    ValueError naming the problem and the fix otherwise."""
    if partner_sizes is None:
        raise ValueError("sample_params: the policy mixes (mixup_p/cutmix_p > 0) but no "
                         "partner_sizes were given; pass the (width, height) of the shard's "
                         "samples as partner_sizes.")
    sizes = np.asarray(partner_sizes)
    if sizes.ndim != 2 or sizes.shape[1] != 2 or len(sizes) < 1 \
            or not np.issubdtype(sizes.dtype, np.integer):
        raise ValueError(f"sample_params: partner_sizes {sizes.dtype} {sizes.shape} is not an "
                         "integer (P, 2) array with P >= 1; pass one (width, height) per "
                         "sample of the shard.")
    if (sizes < 1).any() or (sizes > _MAX_INT16).any():
        raise ValueError(f"sample_params: a partner size is outside [1, {_MAX_INT16}] per "
                         "side; resize or reject that sample first.")
    return sizes.astype(np.int64)


def _draw_views(policy: AugPolicy, widths: np.ndarray, heights: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """One view record (crop, flip, RandAugment, erasing) per row, for images of per-row
    size ``widths x heights``, vectorised over the rows; the draw order is fixed."""
    num = len(widths)
    view = replace(policy, mixup_p=0.0, cutmix_p=0.0)
    out = np.zeros(num, dtype=param_dtype(view))
    width, height = widths[:, None], heights[:, None]

    # RandomResizedCrop.get_params: w = round(sqrt(a*r)), h = round(sqrt(a/r)).
    w, h = _random_boxes(rng, num, (width * height).astype(np.float64), policy.rrc_scale,
                         policy.rrc_ratio)
    ok, first = _first_valid((w > 0) & (w <= width) & (h > 0) & (h <= height))
    rows = np.arange(num)
    w, h = w[rows, first].astype(np.int64), h[rows, first].astype(np.int64)
    fw, fh = _central_fallback(widths, heights, policy.rrc_ratio)
    w, h = np.where(ok, w, fw), np.where(ok, h, fh)
    top = rng.integers(0, heights - h + 1)
    left = rng.integers(0, widths - w + 1)
    out["rrc_i"] = np.where(ok, top, (heights - h) // 2)
    out["rrc_j"] = np.where(ok, left, (widths - w) // 2)
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
    return out


def _central_fallback(widths: np.ndarray, heights: np.ndarray,
                      ratio: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """RandomResizedCrop's fallback crop size (w, h) per row when all 10 attempts fail."""
    in_ratio = widths / heights
    narrow, wide = in_ratio < min(ratio), in_ratio > max(ratio)
    fw = np.where(wide, np.round(heights * max(ratio)), widths).astype(np.int64)
    fh = np.where(narrow, np.round(widths / min(ratio)), heights).astype(np.int64)
    return fw, fh


def _sample_mixing(policy: AugPolicy, rng: np.random.Generator, out: np.ndarray,
                   partner_sizes: np.ndarray) -> None:
    """ml-dr's pair transforms, one partner per record: MixUp (``lam = Beta(alpha, alpha) /
    div_by``, ``mixed = lam * x + (1 - lam) * partner``) and CutMix (box of area 1 - lambda,
    centre uniform, clipped; lambda corrected to the clipped area), each with its own
    probability; then the partner's own view for every record that mixes."""
    num, size = len(out), policy.size
    partner = rng.integers(0, len(partner_sizes), size=num)
    do_mixup = rng.random(num) < policy.mixup_p
    mixup_lam = rng.beta(policy.mixup_alpha, policy.mixup_alpha, size=num) / policy.mixup_div_by
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
    # The partners' views, each for its partner's size: one vectorised draw for all the
    # records that mix (the hot path at 400 augmentations per image).
    rows = np.flatnonzero(out["partner"] >= 0)
    sizes = partner_sizes[out["partner"][rows]]
    views = _draw_views(policy, sizes[:, 0], sizes[:, 1], rng)
    for name in views.dtype.names or ():
        out["p_" + name][rows] = views[name]
