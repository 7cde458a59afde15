"""Area-interpolated downscaling: ``cv2.resize(..., interpolation=cv2.INTER_AREA)``, byte
for byte, through shardforge's own kernel where that is faster.

FFCV's writer (``resize_crop``'s ``cv2.INTER_AREA``) and its training decoder shrink
images this way, and so does every shardforge stage that stores or serves pixels. At a
non-integer factor OpenCV runs a scalar loop that dominated ingest at 512 px and the
loader's per-sample cost; :mod:`._area_resize` computes the same floats in the same
order about 5x faster (its source says how, tests/test_area_resize.py compares bytes).
Everything it does not cover (other dtypes or channel counts, upscales, integer
factors, which OpenCV already does fast) goes to OpenCV itself, as does everything on
machines other than x86-64, where the kernel is not built (setup.py).
"""

from __future__ import annotations

import cv2
import numpy as np

try:
    from shardforge.formats._area_resize import resize_area as _resize_area_rgb8
except ImportError:         # not x86-64: the kernel is not built (setup.py)
    _resize_area_rgb8 = None


def resize_area(pixels: np.ndarray, size: tuple[int, int],
                out: np.ndarray | None = None) -> np.ndarray:
    """``pixels`` resized to ``size`` = ``(width, height)`` with area interpolation.

    Returns exactly what ``cv2.resize(pixels, size, dst=out,
    interpolation=cv2.INTER_AREA)`` returns (the same bytes), written into ``out`` when
    given (C-contiguous, ``height x width`` x the channels of ``pixels``, its dtype).
    ``pixels`` may be a strided view (a crop of a larger image).
    """
    w, h = size
    packed_rgb8 = (pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
                   and pixels.strides[1:] == (3, 1))
    if _resize_area_rgb8 is not None and packed_rgb8:
        dst = out if out is not None else np.empty((h, w, 3), np.uint8)
        if dst.shape == (h, w, 3) and dst.flags.c_contiguous and _resize_area_rgb8(pixels, dst):
            return dst
    if out is None:
        return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    return cv2.resize(pixels, size, dst=out, interpolation=cv2.INTER_AREA)
