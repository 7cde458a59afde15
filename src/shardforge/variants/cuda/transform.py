"""CUDA unlearnable datasets (Sadasivan, Soltanolkotabi, Feizi, CVPR 2023) as a variant.

Every poisoned training image is convolved with its class's ``k x k`` filter, drawn from a
private key: weights ``U(0, pb)``, one random position set to 1.0, the same filter on all
three channels (a depthwise convolution, zero padding, no bias, no normalisation of the
filter); the result is divided by the filtered image's global maximum, scaled by 255,
clipped to [0, 255] and truncated to ``uint8``. The reference computes
``conv(x / 255) / max * 255`` in float32 on a GPU; here the same quantity,
``floor(255 * conv(x) / max(conv(x)))``, is computed exactly (weights on a 2**-27 grid;
see :data:`WEIGHT_BITS` and :func:`apply_cuda`), so a pixel can differ by one grey level
from the reference only where float32 rounding pushed it across an integer.

Determinism: the filters depend only on ``(key, class, kernel_size, pb)`` and whether a
sample is poisoned only on ``(key, sample key, p)`` (both via HMAC-SHA256 of the key), so
any number of workers, any shard layout and any rerun give the same bytes; the arithmetic
is exact, so every CPU and library version gives the same bytes too.

Defaults follow the image size (:func:`default_params`): ``k=3, pb=0.3`` (the paper's
CIFAR setting) for images whose longest side is at most :data:`SMALL_IMAGE_MAX_SIDE`
px, ``k=9, pb=0.06`` (the ImageNet-scale setting of follow-up work) above it.

``grayscale``: the reference implementation's grayscale option: after the convolution
every channel is replaced by the mean of the three (then normalised as above).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from shardforge.build.transform import Decoded
from shardforge.formats.image import resize_center_crop
from shardforge.variants.cuda.key import KeyedHmac
from shardforge.variants.cuda.spec import MAX_KERNEL_SIZE, check_filter_params, default_params

#: Filter weights are multiples of 2**-WEIGHT_BITS. With uint8 inputs, k <= 15 and pb <= 1,
#: every convolution sum is an integer multiple of that below 255 * 225 * 3 * 2**27 < 2**45,
#: 255 times it stays below 2**53, and a correctly rounded quotient a / b of integers
#: b < 2**45 never rounds onto an integer it is not: float64 computes the exact result.
WEIGHT_BITS = 27
_WEIGHT_SCALE = float(1 << WEIGHT_BITS)
_F32_EXACT = 1 << 24        # float32 holds every integer below 2**24 exactly
_MAX_DIRECT_TAPS_32F = 129  # OpenCV filter2D switches to a DFT for float32 kernels >= 130 taps
#: Up to this many taps one uint8 -> float64 filter2D pass: measured faster than the float32
#: parts (:func:`conv_units`) for k <= 5 (k=3, 64 px: 0.03 vs 0.08 ms; k=5, 256 px: 0.84 vs
#: 0.90 ms), slower from k = 7 (1.60 vs 1.38 ms).
_MAX_TAPS_ONE_PASS_64F = 25
_U32 = 2.0 ** -24           # float32 unit roundoff
_FILTER_DOMAIN = b"shardforge-cuda-filter-v1"
_POISON_DOMAIN = b"shardforge-cuda-poison-v1"


def _hmac(key: str | KeyedHmac, domain: bytes, message: str) -> bytes:
    data = domain + b"\0" + message.encode("utf-8")
    if isinstance(key, KeyedHmac):     # in tasks: the key's midstates, never the key
        return key.digest(data)
    return hmac.new(key.encode("utf-8"), data, hashlib.sha256).digest()


def class_filter(key: str | KeyedHmac, label: int, kernel_size: int, pb: float) -> np.ndarray:
    """Class ``label``'s ``kernel_size x kernel_size`` filter (float64) drawn from ``key``.

    Weights ``U(0, pb)``, then one uniformly drawn position set to 1.0 (as in the paper),
    rounded to multiples of ``2**-WEIGHT_BITS`` (as fine as the reference's float32 for
    every weight >= 2**-4; it makes the convolution exact, see :func:`conv_units`).
    The generator is seeded by HMAC-SHA256(key, class, kernel_size, pb): independent of the
    number of classes, and different for every key.
    """
    check_filter_params(kernel_size, pb)
    seed = _hmac(key, _FILTER_DOMAIN, f"{int(label)}:{kernel_size}:{float(pb)!r}")
    rng = np.random.Generator(np.random.PCG64(int.from_bytes(seed, "little")))
    w = rng.uniform(0.0, float(pb), size=(kernel_size, kernel_size))
    w.flat[int(rng.integers(kernel_size * kernel_size))] = 1.0
    return np.round(w * _WEIGHT_SCALE) / _WEIGHT_SCALE


def class_filters(key: str, num_classes: int, kernel_size: int = 3,
                  pb: float = 0.3) -> np.ndarray:
    """The filters of classes ``0 .. num_classes-1``: ``(num_classes, k, k)`` float64."""
    return np.stack([class_filter(key, c, kernel_size, pb) for c in range(num_classes)])


class Scratch:
    """Work arrays and per-filter kernels reused from image to image (one per transform;
    not thread-safe).

    Measured on the 2-core benchmark VM: allocated afresh for every image, the work arrays
    cost page faults (glibc hands freed blocks back to the OS): 1.6 instead of 0.8 ms per
    256 px demo image at k = 9. A filter's checked integer weights and their float kernels
    are derived once per filter (:meth:`kernel`), not once per image: 0.041 -> 0.033 ms per
    64 px image at k = 3, 1.13 -> 0.97 ms per 256 px image at k = 9 (one core).
    """

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}
        self._kernels: dict[tuple, Any] = {}

    def kernel(self, filt: np.ndarray, form: Any = "int") -> Any:
        """``filt``'s :func:`integer_weights` (``form`` "int"), as float64 / float32 arrays
        ("f64", "f32"), or its :func:`weight_parts` for ``("parts", taps)``; cached."""
        key = (filt.tobytes(), filt.shape, form)
        if key not in self._kernels:
            w = (integer_weights(filt) if form == "int" else self.kernel(filt))
            self._kernels[key] = (w if form == "int" else
                                  w.astype(np.float64) if form == "f64" else
                                  w.astype(np.float32) if form == "f32" else
                                  weight_parts(w, form[1]))
        return self._kernels[key]

    def get(self, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        """An uninitialised C-contiguous ``shape`` array of ``dtype``, reusing ``name``'s."""
        n = int(np.prod(shape))
        buf = self._arrays.get(name)
        if buf is None or buf.size < n or buf.dtype != dtype:
            buf = self._arrays[name] = np.empty(n, dtype)
        return buf[:n].reshape(shape)


def integer_weights(filt: np.ndarray) -> np.ndarray:
    """``filt * 2**WEIGHT_BITS`` as int64; ValueError unless ``filt`` is on that grid in
    [0, 1] (as :func:`class_filter`'s are: what makes the convolution exact)."""
    w = np.rint(np.asarray(filt, np.float64) * _WEIGHT_SCALE)
    if w.min() < 0 or w.max() > _WEIGHT_SCALE or not np.array_equal(w / _WEIGHT_SCALE, filt):
        raise ValueError(f"filter weights must be multiples of 2**-{WEIGHT_BITS} in [0, 1] "
                         "(draw filters with class_filter)")
    return w.astype(np.int64)


def weight_parts(w: np.ndarray, taps: int) -> tuple[int, list[np.ndarray]]:
    """``(bits, parts)``: integer weights ``w`` (from :func:`integer_weights`) split into
    float32 integer kernels, high first, ``w = sum(part_i * 2**(bits * (n - 1 - i)))``, with
    ``255 * taps * max(part_i) < 2**24``: a float32 sum of up to ``taps`` uint8 x part
    products is an integer below 2**24 at every step, so exact in any order."""
    bits = 0
    while (255 * taps) << (bits + 1) < _F32_EXACT:
        bits += 1
    shift = 0                                   # top part may hold 2**bits (w = 2**27)
    while int(w.max()) >> shift > 1 << bits:
        shift += bits
    mask = (1 << bits) - 1
    parts = [(w >> shift).astype(np.float32)]
    for s in range(shift - bits, -1, -bits):
        parts.append(((w >> s) & mask).astype(np.float32))
    return bits, parts


def conv_units(pixels: np.ndarray, filt: np.ndarray, scratch: Scratch) -> np.ndarray:
    """The depthwise convolution of ``pixels`` (uint8 ``H x W x C``) with ``filt`` (``k x k``,
    from :func:`class_filter`; zero padding ``k // 2``, output the input's size: the
    semantics of ``torch.nn.functional.conv2d(x, w, padding=k // 2, groups=C)`` with one
    filter on all channels) times ``2**WEIGHT_BITS``: exact integers below 2**45, float64,
    in ``scratch``'s ``"acc"`` array (valid until the next call with the same scratch).
    Exact, so independent of the CPU and the library.

    Measured (one core, 256 x 244 x 3, k = 9): OpenCV's float32 -> float32 ``filter2D`` is
    SIMD, ~4x faster per tap than its uint8/float64 -> float64 paths. So from k = 7 the
    weights go in float32 parts that keep every sum an exact integer (:func:`weight_parts`,
    3 passes at k <= 11), combined exactly in float64; at most 129 taps per pass (filter2D's
    DFT, inexact, starts at 130 for float32), so k >= 13 runs in chunks of filter rows.
    k <= 5: one uint8 -> float64 pass (faster there; exact as well).
    """
    if pixels.dtype != np.uint8 or pixels.ndim != 3:
        raise ValueError(f"pixels must be uint8 H x W x C, got {pixels.dtype} {pixels.shape}")
    k = filt.shape[0]
    if filt.shape != (k, k) or not 1 <= k <= MAX_KERNEL_SIZE:
        raise ValueError(f"filter of shape {filt.shape} must be k x k with odd k <= "
                         f"{MAX_KERNEL_SIZE}")
    h = pixels.shape[0]
    r = k // 2
    acc = scratch.get("acc", pixels.shape, np.float64)
    if k * k <= _MAX_TAPS_ONE_PASS_64F:   # exact too: sums < 2**45, < 50 taps (no DFT)
        cv2.filter2D(pixels, cv2.CV_64F, scratch.kernel(filt, "f64"), dst=acc, anchor=(r, r),
                     borderType=cv2.BORDER_CONSTANT)
        return acc
    rows = min(k, _MAX_DIRECT_TAPS_32F // k)     # filter rows per filter2D call
    bits, parts = scratch.kernel(filt, ("parts", rows * k))
    pad = 0 if rows == k else r                  # chunks: zero rows above and below, each
    x = scratch.get("x", (h + 2 * pad,) + pixels.shape[1:], np.float32)  # chunk anchored on
    x[:pad] = 0.0                                # its first row
    x[h + pad:] = 0.0
    x[pad:h + pad] = pixels
    y = scratch.get("y", x.shape, np.float32)
    for n, part in enumerate(parts):
        if n:
            acc *= float(1 << bits)
        for i0 in range(0, k, rows):
            chunk = part if rows == k else np.ascontiguousarray(part[i0:i0 + rows])
            cv2.filter2D(x, cv2.CV_32F, chunk, dst=y,
                         anchor=(r, r if rows == k else 0), borderType=cv2.BORDER_CONSTANT)
            rows_out = y[i0:i0 + h] if pad else y
            if n == 0 and i0 == 0:
                acc[...] = rows_out
            else:
                acc += rows_out
    return acc


def apply_cuda(pixels: np.ndarray, filt: np.ndarray, grayscale: bool = False,
               scratch: Scratch | None = None) -> np.ndarray:
    """One image through CUDA: ``uint8 H x W x 3`` in, ``uint8 H x W x 3`` out.

    ``floor(255 * y / max(y))`` with ``y`` the depthwise convolution (:func:`conv_units`)
    or, with ``grayscale``, its channel mean on all channels: the reference's division by
    the global maximum, x255, clip to [0, 255] and ``astype(uint8)``, in exact arithmetic.
    An all-black image (maximum 0) stays all black. ``scratch``: work arrays to reuse
    across calls (:class:`Scratch`).

    7 <= k <= 11 (not grayscale): one float32 pass with a proven error bound, the pixels it
    leaves undecided computed exactly (:func:`_apply_one_pass`); otherwise, or when too many
    are undecided, the exact integer convolution (:func:`conv_units`), then
    ``255 * y / max(y)`` in float64. Same bytes either way.
    """
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"pixels must be uint8 H x W x 3, got {pixels.dtype} {pixels.shape}")
    scratch = scratch if scratch is not None else Scratch()
    k = filt.shape[0]
    if not grayscale and _MAX_TAPS_ONE_PASS_64F < k * k <= _MAX_DIRECT_TAPS_32F \
            and filt.shape == (k, k):
        out = _apply_one_pass(pixels, filt, scratch)
        if out is not None:
            return out
    y = conv_units(pixels, filt, scratch)
    if grayscale:   # the mean's 1/3 cancels in y / max(y): the channel sum, kept exact
        y = y.sum(axis=2)
    top = y.max()
    if top <= 0:
        return np.zeros_like(pixels)
    y *= 255.0       # exact (< 2**53); the one rounding left, the division, cannot cross
    y /= top         # an integer (see WEIGHT_BITS); truncation (y >= 0) is the floor.
    out = y.astype(np.uint8)  # y is in units of 2**-WEIGHT_BITS: the quotient is the same
    return np.repeat(out[:, :, None], 3, axis=2) if grayscale else out


def _apply_one_pass(pixels: np.ndarray, filt: np.ndarray,
                    scratch: Scratch) -> np.ndarray | None:
    """:func:`apply_cuda` (not grayscale; 7 <= k <= 11) from one float32 ``filter2D`` pass,
    ~2x faster than :func:`conv_units`' three (measured: 0.9 vs 2.0 ms, 256 x 244 px, k=9);
    None when over 1/32 of the pixels are left undecided (call the exact path).

    Every term ``w * x`` is >= 0, so in any order of direct summation (filter2D below 130
    taps: no DFT) the float32 result ``z`` is within ``eps = gamma(n + 1)`` (n taps;
    roundings of the weight, the product and n - 1 sums, unit 2**-24 each) of the exact
    ``Y``, relatively (measured: at most 0.21 eps on 100 demo images). The exact maximum
    ``T`` is among the pixels with ``z >= max(z) (1 - 3 eps)``, computed exactly
    (:func:`_exact_units`; the 3 eps, not 2, leave room for rounding the threshold). Then
    ``255 z / T`` in float32 (two more roundings) is within ``255 (eps + 3 * 2**-24)`` of
    ``255 Y / T`` (<= 255), below ``m = 255 (eps + 4 * 2**-24)``: its floor is the answer
    wherever its fraction lies in ``[m, 1 - m]``; the other pixels (~0.1% on the demo images; more
    where flat areas make ``255 Y / T`` an integer) are computed exactly.
    """
    w = scratch.kernel(filt)
    k = w.shape[0]
    eps = (k * k + 1) * _U32 / (1 - (k * k + 1) * _U32)
    x = scratch.get("x", pixels.shape, np.float32)
    x[...] = pixels
    z = scratch.get("y", pixels.shape, np.float32)
    cv2.filter2D(x, cv2.CV_32F, scratch.kernel(filt, "f32"), dst=z, anchor=(k // 2, k // 2),
                 borderType=cv2.BORDER_CONSTANT)
    z_top = float(z.max())
    if z_top == 0.0:                    # z = 0 exactly where every term is 0
        return np.zeros_like(pixels)
    flags = scratch.get("flags", pixels.shape, np.bool_)
    limit = max(16, pixels.size // 32)  # measured: ~0.2 us a pixel, below the exact path
    maybe_top = np.flatnonzero(np.greater_equal(z, z_top * (1 - 3 * eps), out=flags))
    if maybe_top.size > limit:
        return None
    top = int(_exact_units(pixels, w, maybe_top, scratch).max())
    v = np.multiply(z, np.float32(255.0 / top), out=z)
    out = v.astype(np.uint8)            # the floor: 0 <= v < 256
    v -= out                            # its fraction (exact), then |fraction - 1/2|
    v -= 0.5
    frac = np.abs(v, out=v)
    undecided = np.flatnonzero(np.greater(frac, 0.5 - 255 * (eps + 4 * _U32), out=flags))
    if undecided.size > limit:
        return None
    if undecided.size:
        out.flat[undecided] = 255 * _exact_units(pixels, w, undecided, scratch) // top
    return out


def _exact_units(pixels: np.ndarray, w: np.ndarray, where: np.ndarray,
                 scratch: Scratch) -> np.ndarray:
    """int64 :func:`conv_units` at the flat indices ``where`` of ``pixels`` (exact: integer
    products and sums below 2**45)."""
    k = w.shape[0]
    r = k // 2
    h, wd, c = pixels.shape
    padded = scratch.get("padded", (h + 2 * r, wd + 2 * r, c), np.uint8)
    cv2.copyMakeBorder(pixels, r, r, r, r, cv2.BORDER_CONSTANT, dst=padded, value=0)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(0, 1))
    rows, cols, chans = np.unravel_index(where, pixels.shape)
    return windows[rows, cols, chans].reshape(len(where), k * k).astype(np.int64) @ w.ravel()


def poison_draw(key: str | KeyedHmac, sample_key: str) -> float:
    """A uniform number in [0, 1) fixed by ``(key, sample_key)`` (HMAC-SHA256, 53 bits)."""
    digest = _hmac(key, _POISON_DOMAIN, sample_key)
    return (int.from_bytes(digest[:8], "little") >> 11) / float(1 << 53)


def is_poisoned(key: str | KeyedHmac, sample_key: str, p: float) -> bool:
    """Whether sample ``sample_key`` is poisoned at poison fraction ``p``: each sample
    independently with probability ``p``, decided by the key (p=1: all, p=0: none)."""
    if p >= 1.0 or p <= 0.0:    # the draw is in [0, 1): the same answer without computing it
        return p >= 1.0
    return poison_draw(key, sample_key) < p


@dataclass
class CudaTransform:
    """The variant's transform (picklable; never in params). ``key``: the private key, or
    (as :func:`make_variant` ships it to tasks) its :class:`KeyedHmac` midstates.

    ``kernel_size``/``pb`` None: per image from its longest side (:func:`default_params`).
    Filters are drawn once per (class, kernel_size, pb) and cached.
    """

    key: str | KeyedHmac = field(repr=False)
    p: float = 1.0
    kernel_size: int | None = None
    pb: float | None = None
    grayscale: bool = False
    num_classes: int | None = None
    #: ``(resize, crop)``: train images go through Resize(resize) (short side) then
    #: CenterCrop(crop) before the filter (the training resolution); None: stored size.
    content: tuple[int, int] | None = None
    _filters: dict = field(default_factory=dict, repr=False, compare=False)
    _scratch: Scratch = field(default_factory=Scratch, repr=False, compare=False)

    def filter_for(self, label: int, height: int, width: int) -> np.ndarray:
        """The filter applied to an image of class ``label`` and size ``height x width``."""
        k_auto, pb_auto = default_params(max(height, width))
        k = self.kernel_size if self.kernel_size is not None else k_auto
        pb = self.pb if self.pb is not None else pb_auto
        cache_key = (int(label), k, float(pb))
        if cache_key not in self._filters:
            self._filters[cache_key] = class_filter(self.key, label, k, pb)
        return self._filters[cache_key]

    def __call__(self, samples: list[Decoded], split: str) -> list[Decoded]:
        """Train samples poisoned (each with probability ``p``), other splits unchanged;
        with ``num_classes``, samples of labels >= ``num_classes`` dropped from every split."""
        out = []
        for s in samples:
            if self.num_classes is not None and s.label >= self.num_classes:
                continue
            poisoned = split == "train" and is_poisoned(self.key, s.key, self.p)
            pixels = s.pixels
            if split == "train" and self.content is not None:
                pixels = resize_center_crop(pixels, *self.content)
            if poisoned:
                filt = self.filter_for(s.label, pixels.shape[0], pixels.shape[1])
                pixels = apply_cuda(pixels, filt, self.grayscale, self._scratch)
            out.append(Decoded(s.key, s.label, pixels, {**s.meta, "poisoned": poisoned}))
        return out
