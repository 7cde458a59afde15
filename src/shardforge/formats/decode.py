"""Crop-aware image decoding for training batches: pick the crop first, then decode only
as finely as the crop needs.

For a random-resized crop to ``S x S`` the crop box is drawn first on the *stored*
width/height (known from the index; torchvision ``RandomResizedCrop.get_params``
semantics, ``scale=(0.08, 1)``, ``ratio=(3/4, 4/3)``). A JPEG is then decoded with
libjpeg's DCT-domain scaling at the largest reduction ``r`` in {8, 4, 2} that keeps the
crop box at least ``S`` px on both sides once scaled (``w // r >= S`` and ``h // r >= S``),
else at full size; the box is mapped to the reduced image, cropped, resized to ``S``
with ``cv2.INTER_AREA`` (as FFCV's ``resize_crop``) and flipped with probability 1/2.
Validation uses FFCV's ``CenterCropRGBImageDecoder`` rule: a centred square of side
``int(ratio * min(h, w))`` (``ratio=224/256``), resized to ``S``.

The DCT scaling is libjpeg's ``scale_denom``, the mechanism behind PIL's
``Image.draft``; it is reached through ``cv2.imdecode(IMREAD_REDUCED_COLOR_r)``, which
gives bit-identical pixels to ``PIL draft('RGB', (w // r, h // r))`` (tested) and,
like the rest of OpenCV's JPEG path, decodes faster here than PIL (BENCHMARKS.md).
A crop at full scale decodes only the crop's rectangle (:mod:`._jpeg_region`,
libjpeg's ``jpeg_crop_scanline``/``jpeg_skip_scanlines``: rows above it are entropy
decoded only, columns beside it are not inverse-transformed, rows below it not read),
with the same pixels as a whole decode (tested): 14% less CPU per training sample on
the loader benchmark's photos (BENCHMARKS.md "Loaders"). Damage below the crop is
therefore not seen here; the loader's sha256 check is what catches damaged storage.
Whatever the region decoder refuses or warns about (CMYK, damaged data) and every other
full-size decode goes through ``simplejpeg`` (libjpeg-turbo, the same accurate integer
IDCT and fancy upsampling as OpenCV's, so bit-identical pixels, tested) into a caller's
reusable buffer, about 12% less CPU per sample than ``cv2.imdecode``; whatever that
refuses is left to OpenCV, so what decodes and what fails is OpenCV's call. PNG samples
(raw write mode) are decoded in full. Output: ``uint8`` ``H x W x 3`` RGB.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import simplejpeg
from PIL import Image

from shardforge.formats._jpeg_region import JpegError, decode_region
from shardforge.formats.area import resize_area

_IMREAD_RGB = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION
# IMREAD_REDUCED_COLOR_r without its BGR bit (IMREAD_COLOR), plus the RGB one.
_IMREAD_REDUCED_RGB = {
    r: (flag & ~cv2.IMREAD_COLOR) | _IMREAD_RGB
    for r, flag in ((2, cv2.IMREAD_REDUCED_COLOR_2), (4, cv2.IMREAD_REDUCED_COLOR_4),
                    (8, cv2.IMREAD_REDUCED_COLOR_8))
}
REDUCTIONS: tuple[int, ...] = (8, 4, 2)


class DecodeError(ValueError):
    """A sample's bytes do not decode to the image the index describes."""


# ----------------------------------------------------------------------------------------
# Crop boxes: (top, left, height, width) in stored-image pixels
# ----------------------------------------------------------------------------------------

def random_resized_crop_boxes(widths: np.ndarray, heights: np.ndarray,
                              rng: np.random.Generator,
                              scale: tuple[float, float] = (0.08, 1.0),
                              ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> np.ndarray:
    """``[n, 4]`` int64 boxes ``(top, left, h, w)``: torchvision
    ``RandomResizedCrop.get_params`` semantics for each image, drawn at once from ``rng``.

    Per image, up to 10 draws of an area fraction uniform in ``scale`` and an aspect ratio
    log-uniform in ``ratio`` (``w = round(sqrt(area * aspect))``,
    ``h = round(sqrt(area / aspect))``); the first box that fits is placed uniformly at
    random. If none fits: the largest centred box with its aspect ratio clamped into
    ``ratio``. (The same distribution as torchvision; the random stream is numpy's.)
    """
    wid = np.asarray(widths, np.int64)
    hei = np.asarray(heights, np.int64)
    n = len(wid)
    area = (wid * hei).astype(np.float64)[:, None]
    target = area * rng.uniform(scale[0], scale[1], (n, 10))
    aspect = np.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]), (n, 10)))
    w = np.round(np.sqrt(target * aspect)).astype(np.int64)
    h = np.round(np.sqrt(target / aspect)).astype(np.int64)
    fits = (w > 0) & (w <= wid[:, None]) & (h > 0) & (h <= hei[:, None])
    first = fits.argmax(axis=1)
    found = fits.any(axis=1)
    rows = np.arange(n)
    in_ratio = wid / hei
    narrow, wide = in_ratio < min(ratio), in_ratio > max(ratio)
    fall_w = np.where(wide, np.round(hei * max(ratio)).astype(np.int64), wid)
    fall_h = np.where(narrow, np.round(wid / min(ratio)).astype(np.int64), hei)
    bw = np.where(found, w[rows, first], fall_w)
    bh = np.where(found, h[rows, first], fall_h)
    u = rng.random((n, 2))
    top = np.where(found, np.floor(u[:, 0] * (hei - bh + 1)).astype(np.int64), (hei - bh) // 2)
    left = np.where(found, np.floor(u[:, 1] * (wid - bw + 1)).astype(np.int64), (wid - bw) // 2)
    return np.stack([top, left, bh, bw], axis=1)


def random_resized_crop_box(width: int, height: int, rng: np.random.Generator,
                            scale: tuple[float, float] = (0.08, 1.0),
                            ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """One box of :func:`random_resized_crop_boxes`, as ``(top, left, h, w)``."""
    box = random_resized_crop_boxes(np.array([width]), np.array([height]), rng, scale, ratio)[0]
    return tuple(int(v) for v in box)  # type: ignore[return-value]


def center_crop_box(width: int, height: int, ratio: float = 224 / 256) -> tuple[int, int, int, int]:
    """``(top, left, c, c)`` with ``c = int(ratio * min(h, w))``: FFCV ``get_center_crop``."""
    c = max(1, int(ratio * min(height, width)))
    return (height - c) // 2, (width - c) // 2, c, c


def dct_reduction(box_h: int, box_w: int, out_h: int, out_w: int) -> int:
    """The largest ``r`` in {8, 4, 2} with ``box_w // r >= out_w`` and ``box_h // r >= out_h``,
    else 1: the coarsest JPEG DCT scaling that still leaves the crop >= the output size."""
    for r in REDUCTIONS:
        if box_w // r >= out_w and box_h // r >= out_h:
            return r
    return 1


# ----------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------

def scaled_box(box: tuple[int, int, int, int], reduction: int, width: int,
               height: int) -> tuple[int, int, int, int]:
    """``(y0, x0, y1, x1)``: ``box`` (top, left, h, w) mapped onto the image decoded at
    ``1/reduction`` (``ceil(height/r) x ceil(width/r)``), rounded to whole pixels."""
    top, left, h, w = box
    if reduction == 1:
        return top, left, top + h, left + w
    r = reduction
    y0, x0 = round(top / r), round(left / r)
    y1 = max(y0 + 1, min(-(-height // r), round((top + h) / r)))
    x1 = max(x0 + 1, min(-(-width // r), round((left + w) / r)))
    return y0, x0, y1, x1


def decode_full(data: bytes | memoryview, is_png: bool = False, reduction: int = 1,
                scratch: np.ndarray | None = None) -> np.ndarray:
    """Decode to ``H x W x 3`` uint8 RGB; JPEGs at DCT scale ``1/reduction`` (1, 2, 4, 8).

    PNGs are always decoded at full size. A full-size JPEG is decoded into ``scratch``
    (a 1-D uint8 array) when it is large enough: the result is then a view of it, valid
    until ``scratch`` is reused. Raises :class:`DecodeError` on bad bytes.
    """
    if not is_png and reduction == 1:
        pixels = _decode_jpeg_into(data, scratch)
        if pixels is not None:
            return pixels
    buf = np.frombuffer(data, np.uint8)
    flags = _IMREAD_RGB if is_png or reduction == 1 else _IMREAD_REDUCED_RGB[reduction]
    pixels = cv2.imdecode(buf, flags)
    if pixels is None:
        raise DecodeError(f"cannot decode {len(buf)} bytes as {'PNG' if is_png else 'JPEG'}")
    return pixels


def _decode_jpeg_into(data: bytes | memoryview, scratch: np.ndarray | None) -> np.ndarray | None:
    """A full-size RGB decode by ``simplejpeg`` (into ``scratch`` when it fits), or None
    when it declines the data (then OpenCV decides). ``strict``: any libjpeg warning
    (damaged or truncated data, which OpenCV may refuse) declines too."""
    try:
        h, w, _, _ = simplejpeg.decode_jpeg_header(data)
        fits = scratch is not None and scratch.size >= h * w * 3
        return simplejpeg.decode_jpeg(data, "rgb", buffer=scratch if fits else None,
                                      strict=True)
    except ValueError:
        return None


def decode_full_pil(data: bytes, reduction: int = 1) -> np.ndarray:
    """Reference decoder: PIL, with ``Image.draft`` for DCT scaling ``1/reduction``."""
    img = Image.open(io.BytesIO(data))
    if reduction > 1:
        w, h = img.size
        img.draft("RGB", (w // reduction, h // reduction))
    return np.asarray(img.convert("RGB"))


def decode_crop(data: bytes | memoryview, is_png: bool, width: int, height: int,
                box: tuple[int, int, int, int], out: np.ndarray, flip: bool = False,
                dct: bool = True, scratch: np.ndarray | None = None) -> int:
    """Decode the ``box`` of a ``width x height`` stored image into ``out`` (``S_h x S_w x 3``).

    ``box`` is ``(top, left, h, w)`` in stored pixels. With ``dct``, a JPEG is decoded
    at :func:`dct_reduction` scale and the box mapped onto it (rounded to whole reduced
    pixels). ``scratch``: a uint8 buffer of at least ``width * height * 3`` bytes that a
    full-size decode may use (reused across calls, saving an allocation each). Returns
    the reduction used. Raises :class:`DecodeError` when the decoded size is not the one
    the index gives.
    """
    out_h, out_w = out.shape[:2]
    _, _, h, w = box
    r = dct_reduction(h, w, out_h, out_w) if dct and not is_png else 1
    region = None if is_png or r > 1 else decode_jpeg_region(data, width, height, box, scratch)
    if region is not None:
        _resize_flip(region, out, flip)
        return 1
    pixels = decode_full(data, is_png, r, scratch)
    exp_h, exp_w = -(-height // r), -(-width // r)
    if pixels.shape[:2] != (exp_h, exp_w):
        raise DecodeError(f"decoded {pixels.shape[1]}x{pixels.shape[0]} px at 1/{r}, "
                          f"the index says {width}x{height} (expected {exp_w}x{exp_h})")
    y0, x0, y1, x1 = scaled_box(box, r, width, height)
    _resize_flip(pixels[y0:y1, x0:x1], out, flip)
    return r


def _resize_flip(region: np.ndarray, out: np.ndarray, flip: bool) -> None:
    resize_area(region, (out.shape[1], out.shape[0]), out)
    if flip:
        cv2.flip(out, 1, dst=out)      # in place: no temporary image


def decode_jpeg_region(data: bytes | memoryview, width: int, height: int,
                       box: tuple[int, int, int, int],
                       scratch: np.ndarray | None) -> np.ndarray | None:
    """The ``box`` (top, left, h, w) of a ``width x height`` JPEG, decoded alone by
    :mod:`._jpeg_region` (into ``scratch`` when it fits), as an ``h x w x 3`` view; or
    None when libjpeg refuses or warns about the data (the whole-image decoders then
    decide, as for any other sample). The rectangle decoded is one pixel wider on each
    side than the box, so that chroma upsampling at the box's edges sees the neighbours
    a whole decode sees: the pixels equal the whole decode's (tested). Raises
    :class:`DecodeError` when the JPEG's size is not the index's."""
    top, left, h, w = box
    t, lft = max(0, top - 1), max(0, left - 1)
    rows, cols = min(height, top + h + 1) - t, min(width, left + w + 1) - lft
    need = rows * width * 3                # a row is never wider than the image
    buf = scratch if scratch is not None and scratch.size >= need else np.empty(need, np.uint8)
    try:
        image_w, image_h, row_w, x_off = decode_region(data, t, lft, rows, cols, buf)
    except JpegError:
        return None
    if (image_w, image_h) != (width, height):
        raise DecodeError(f"decoded {image_w}x{image_h} px, the index says {width}x{height}")
    x0 = x_off + left - lft
    return buf[:rows * row_w * 3].reshape(rows, row_w, 3)[top - t:top - t + h, x0:x0 + w]


# ----------------------------------------------------------------------------------------
# Per-batch transforms
# ----------------------------------------------------------------------------------------

class BatchTransform(Protocol):
    """What a stream needs from a transform: an output size ``(H, W)`` and, for a batch of
    stored sizes, crop boxes ``[n, 4]`` (top, left, h, w) and flips ``[n]`` (bool), drawn
    from the batch's generator."""

    @property
    def output_size(self) -> tuple[int, int]: ...

    def plan(self, widths: np.ndarray, heights: np.ndarray,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]: ...

    @property
    def dct(self) -> bool: ...


def _size2(size: int | tuple[int, int]) -> tuple[int, int]:
    out = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if min(out) < 1:
        raise ValueError(f"output size must be positive, got {size}")
    return out


@dataclass(frozen=True)
class RandomResizedCrop:
    """Training decode: random-resized crop to ``size`` (int or (H, W)) and a horizontal
    flip with probability ``flip_p``; ``dct=False`` always decodes JPEGs at full size."""

    size: int | tuple[int, int] = 224
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    dct: bool = True

    def __post_init__(self) -> None:
        _size2(self.size)
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale must satisfy 0 < min <= max, got {self.scale}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {self.ratio}")

    @property
    def output_size(self) -> tuple[int, int]:
        return _size2(self.size)

    def plan(self, widths: np.ndarray, heights: np.ndarray,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        boxes = random_resized_crop_boxes(widths, heights, rng, self.scale, self.ratio)
        return boxes, rng.random(len(boxes)) < self.flip_p


@dataclass(frozen=True)
class CenterCrop:
    """Validation decode: centred square of ``ratio * min side`` (FFCV's
    ``CenterCropRGBImageDecoder``, default 224/256), resized to ``size``; no flip."""

    size: int | tuple[int, int] = 224
    ratio: float = 224 / 256
    dct: bool = True

    def __post_init__(self) -> None:
        _size2(self.size)
        if not 0 < self.ratio <= 1:
            raise ValueError(f"ratio must be in (0, 1], got {self.ratio}")

    @property
    def output_size(self) -> tuple[int, int]:
        return _size2(self.size)

    def plan(self, widths: np.ndarray, heights: np.ndarray,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        boxes = np.array([center_crop_box(int(w), int(h), self.ratio)
                          for w, h in zip(widths, heights, strict=True)], np.int64)
        return boxes.reshape(-1, 4), np.zeros(len(boxes), bool)
