"""CUDA unlearnable datasets (Sadasivan, Soltanolkotabi, Feizi, CVPR 2023) as a variant.

Every poisoned training image is convolved with its class's ``k x k`` filter, drawn from a
private key: weights ``U(0, pb)``, one random position set to 1.0, the same filter on all
three channels (a depthwise convolution, zero padding, no bias, no normalisation of the
filter); the result is divided by the filtered image's global maximum, scaled by 255,
clipped to [0, 255] and truncated to ``uint8``. The reference computes
``conv(x / 255) / max * 255`` in float32 on a GPU; here the same quantity,
``floor(255 * conv(x) / max(conv(x)))``, is computed exactly (weights on a 2**-27 grid,
float64; see :data:`WEIGHT_BITS`), so a pixel can differ by one grey level from the
reference only where float32 rounding pushed it across an integer.

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from shardforge.catalog.pipelines import Param
from shardforge.catalog.secrets import MIN_SECRET_CHARS, Secrets, fingerprint
from shardforge.variants.base import Decoded, VariantSpec
from shardforge.variants.run import variant_pipeline

NAME = "unlearnable"
METHOD = "cuda"
#: Longest side (px) up to which the small-image defaults apply (CIFAR 32 px, 64 px sets).
SMALL_IMAGE_MAX_SIDE = 128
#: (kernel_size, pb) for small images: the paper's CIFAR-10/100 setting.
SMALL_DEFAULTS = (3, 0.3)
#: (kernel_size, pb) for larger images: the ImageNet-scale (224 px) setting of follow-up work.
LARGE_DEFAULTS = (9, 0.06)
#: Largest kernel size: keeps every sum in :func:`apply_cuda` below 2**45, hence exact.
MAX_KERNEL_SIZE = 15
#: Filter weights are multiples of 2**-WEIGHT_BITS. With uint8 inputs, k <= 15 and pb <= 1,
#: every convolution sum is an integer multiple of that below 255 * 225 * 3 * 2**27 < 2**45,
#: 255 times it stays below 2**53, and a correctly rounded quotient a / b of integers
#: b < 2**45 never rounds onto an integer it is not: float64 computes the exact result.
WEIGHT_BITS = 27
_WEIGHT_SCALE = float(1 << WEIGHT_BITS)
_MAX_DIRECT_TAPS = 49       # OpenCV filter2D switches to a DFT for float64 kernels >= 50 taps
_FILTER_DOMAIN = b"shardforge-cuda-filter-v1"
_POISON_DOMAIN = b"shardforge-cuda-poison-v1"


def default_params(resolution: int) -> tuple[int, float]:
    """``(kernel_size, pb)`` for images whose longest side is ``resolution`` px.

    ``<= SMALL_IMAGE_MAX_SIDE`` (128): ``(3, 0.3)``; larger: ``(9, 0.06)``.
    """
    if resolution < 1:
        raise ValueError(f"resolution {resolution} must be a positive number of pixels")
    return SMALL_DEFAULTS if resolution <= SMALL_IMAGE_MAX_SIDE else LARGE_DEFAULTS


def check_key(key: str, where: str = "private key") -> str:
    """``key`` if usable as a private key; ValueError naming ``where`` otherwise."""
    if not isinstance(key, str) or len(key) < MIN_SECRET_CHARS:
        n = len(key) if isinstance(key, str) else 0
        raise ValueError(f"{where} has {n} characters; a CUDA private key needs at least "
                         f"{MIN_SECRET_CHARS} (e.g. python -c 'import secrets; "
                         "print(secrets.token_hex(16))')")
    return key


def check_filter_params(kernel_size: int, pb: float) -> None:
    """ValueError naming the parameter when ``kernel_size`` is not odd >= 1 or ``pb`` not
    in (0, 1]."""
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) \
            or not 1 <= kernel_size <= MAX_KERNEL_SIZE or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size {kernel_size!r} must be an odd integer in 1.."
                         f"{MAX_KERNEL_SIZE} (the filter is centred: 3 for 32-64 px images, "
                         "9 at 224 px)")
    if not 0.0 < float(pb) <= 1.0:
        raise ValueError(f"pb {pb!r} must be in (0, 1] (the paper's blur parameter: 0.3 "
                         "for CIFAR, 0.06 at 224 px)")


def _hmac(key: str, domain: bytes, message: str) -> bytes:
    return hmac.new(key.encode("utf-8"), domain + b"\0" + message.encode("utf-8"),
                    hashlib.sha256).digest()


def class_filter(key: str, label: int, kernel_size: int, pb: float) -> np.ndarray:
    """Class ``label``'s ``kernel_size x kernel_size`` filter (float64) drawn from ``key``.

    Weights ``U(0, pb)``, then one uniformly drawn position set to 1.0 (as in the paper),
    rounded to multiples of ``2**-WEIGHT_BITS`` (as fine as the reference's float32 for
    every weight >= 2**-4; it makes the convolution exact, see :func:`depthwise_conv`).
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


def depthwise_conv(pixels: np.ndarray, filt: np.ndarray) -> np.ndarray:
    """float64 ``H x W x C``: every channel of ``pixels`` (uint8) cross-correlated with
    ``filt`` (``k x k``, from :func:`class_filter`), zero padding ``k // 2``, output the
    input's size: the semantics of ``torch.nn.functional.conv2d(x, w, padding=k // 2,
    groups=C)`` with one filter on all channels.

    Exact: the inputs are integers and the weights multiples of ``2**-WEIGHT_BITS``, so
    every product and partial sum is exact in float64 and the result does not depend on
    the summation order, the CPU or the library. OpenCV's direct ``filter2D`` does the
    work (uint8 in, float64 out), in chunks of filter rows small enough (< 50 taps) that it
    never switches to its (inexact) DFT path.
    """
    if pixels.dtype != np.uint8 or pixels.ndim != 3:
        raise ValueError(f"pixels must be uint8 H x W x C, got {pixels.dtype} {pixels.shape}")
    k = filt.shape[0]
    if filt.shape != (k, k) or not 1 <= k <= MAX_KERNEL_SIZE:
        raise ValueError(f"filter of shape {filt.shape} must be k x k with odd k <= "
                         f"{MAX_KERNEL_SIZE}")
    r = k // 2
    kernel = np.asarray(filt, dtype=np.float64)
    if k * k <= _MAX_DIRECT_TAPS:        # k <= 7: one pass, zero padding by filter2D
        parts = [(kernel, r)]
    elif (r + 1) * k <= _MAX_DIRECT_TAPS:  # k = 9: rows 0..r, then r..k-1 with row r
        bottom = np.array(kernel[r:])      # zeroed; both hold the anchor row, so filter2D
        bottom[0] = 0.0                    # pads with zeros on every side
        parts = [(np.ascontiguousarray(kernel[:r + 1]), r), (bottom, 0)]
    else:
        return _depthwise_conv_padded(pixels, kernel)
    acc = None
    for part, anchor_row in parts:   # uint8 in, float64 sums (products exact)
        y = cv2.filter2D(pixels, cv2.CV_64F, part, anchor=(r, anchor_row),
                         borderType=cv2.BORDER_CONSTANT).reshape(pixels.shape)
        if acc is None:
            acc = y
        else:
            acc += y
    return acc


def _depthwise_conv_padded(pixels: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """:func:`depthwise_conv` for k >= 11: zero rows added above and below, the filter in
    chunks of rows anchored on their first row."""
    k = kernel.shape[0]
    r = k // 2
    h = pixels.shape[0]
    x = cv2.copyMakeBorder(pixels, r, r, 0, 0, cv2.BORDER_CONSTANT, value=0)
    rows = max(1, _MAX_DIRECT_TAPS // k)
    acc = np.zeros(pixels.shape, np.float64)
    for i0 in range(0, k, rows):
        part = np.ascontiguousarray(kernel[i0:i0 + rows])
        y = cv2.filter2D(x, cv2.CV_64F, part, anchor=(r, 0), borderType=cv2.BORDER_CONSTANT)
        acc += y[i0:i0 + h].reshape(pixels.shape)   # padded row Y = output row Y - i0
    return acc


def apply_cuda(pixels: np.ndarray, filt: np.ndarray, grayscale: bool = False) -> np.ndarray:
    """One image through CUDA: ``uint8 H x W x 3`` in, ``uint8 H x W x 3`` out.

    ``floor(255 * y / max(y))`` with ``y`` the depthwise convolution (:func:`depthwise_conv`)
    or, with ``grayscale``, its channel mean on all channels: the reference's division by
    the global maximum, x255, clip to [0, 255] and ``astype(uint8)``, in exact arithmetic.
    An all-black image (maximum 0) stays all black.
    """
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"pixels must be uint8 H x W x 3, got {pixels.dtype} {pixels.shape}")
    y = depthwise_conv(pixels, filt)
    if grayscale:   # the mean's 1/3 cancels in y / max(y): the channel sum, kept exact
        total = y[:, :, 0] + y[:, :, 1] + y[:, :, 2]
        y = np.repeat(total[:, :, None], 3, axis=2)
    top = y.max()
    if top <= 0:
        return np.zeros_like(pixels)
    y *= 255.0       # exact (< 2**53); the one rounding left, the division, cannot cross
    y /= top         # an integer (see WEIGHT_BITS); truncation (y >= 0) is the floor
    return y.astype(np.uint8)


def poison_draw(key: str, sample_key: str) -> float:
    """A uniform number in [0, 1) fixed by ``(key, sample_key)`` (HMAC-SHA256, 53 bits)."""
    digest = _hmac(key, _POISON_DOMAIN, sample_key)
    return (int.from_bytes(digest[:8], "little") >> 11) / float(1 << 53)


def is_poisoned(key: str, sample_key: str, p: float) -> bool:
    """Whether sample ``sample_key`` is poisoned at poison fraction ``p``: each sample
    independently with probability ``p``, decided by the key (p=1: all, p=0: none)."""
    return poison_draw(key, sample_key) < p


@dataclass
class CudaTransform:
    """The variant's transform (picklable; the key lives only here, never in params).

    ``kernel_size``/``pb`` None: per image from its longest side (:func:`default_params`).
    Filters are drawn once per (class, kernel_size, pb) and cached.
    """

    key: str = field(repr=False)
    p: float = 1.0
    kernel_size: int | None = None
    pb: float | None = None
    grayscale: bool = False
    num_classes: int | None = None
    _filters: dict = field(default_factory=dict, repr=False, compare=False)

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
            if poisoned:
                filt = self.filter_for(s.label, pixels.shape[0], pixels.shape[1])
                pixels = apply_cuda(pixels, filt, self.grayscale)
            out.append(Decoded(s.key, s.label, pixels, {**s.meta, "poisoned": poisoned}))
        return out


@dataclass(frozen=True)
class _MakeTransform:
    """Picklable zero-argument factory holding the key (what ``VariantSpec`` calls)."""

    key: str = field(repr=False)
    p: float
    kernel_size: int | None
    pb: float | None
    grayscale: bool
    num_classes: int | None

    def __call__(self) -> CudaTransform:
        return CudaTransform(self.key, self.p, self.kernel_size, self.pb, self.grayscale,
                             self.num_classes)


#: The pipeline's parameter schema (catalog card ``pipeline.params`` and the Ray job's flags).
PARAMS: dict[str, Param] = {
    "method": Param((str,), METHOD, choices=(METHOD,), help="unlearnable-example method"),
    "kernel_size": Param((int,), None, nullable=True,
                         help="odd side k of each class's filter; null: by image size, 3 up "
                              f"to {SMALL_IMAGE_MAX_SIDE} px, else 9"),
    "pb": Param((float,), None, nullable=True,
                help="filter weights are U(0, pb); null: by image size, 0.3 up to "
                     f"{SMALL_IMAGE_MAX_SIDE} px, else 0.06"),
    "p": Param((float,), 1.0, help="poison fraction: each train sample poisoned "
                                    "independently with probability p"),
    "grayscale": Param((bool,), False, help="reference's grayscale option: channel mean "
                                            "after the convolution"),
    "num_classes": Param((int,), None, nullable=True,
                         help="keep only classes 0..N-1 in every split (ImageNet-100: 100); "
                              "val is then re-encoded losslessly instead of copied"),
}
SECRETS = ("private_key",)


def check_params(params: Mapping[str, Any]) -> None:
    """ValueError naming the parameter when the parameters do not make a valid CUDA run."""
    p = params.get("p", 1.0)
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"p {p!r} must be a poison fraction in [0, 1]")
    k, pb = params.get("kernel_size"), params.get("pb")
    check_filter_params(3 if k is None else k, 0.3 if pb is None else pb)
    n = params.get("num_classes")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"num_classes {n!r} must be a positive integer or null (all classes)")


def make_variant(params: Mapping[str, Any], secrets: Mapping[str, str]) -> VariantSpec:
    """The CUDA :class:`VariantSpec` for validated ``params`` and ``secrets["private_key"]``.

    Only train is poisoned; val stays clean (copied byte for byte, or with ``num_classes``
    filtered and re-encoded losslessly). The spec's params carry the key's fingerprint
    (``key_fingerprint``), never the key.
    """
    if "private_key" not in secrets:
        raise ValueError("the unlearnable variant needs the secret 'private_key' (card: "
                         "secrets: {private_key: {env: VAR}}; job: --key-file or --key-env)")
    key = check_key(secrets["private_key"])
    full = {name: param.default for name, param in PARAMS.items()}
    full.update(params)
    check_params(full)
    pb = None if full["pb"] is None else float(full["pb"])
    spec_params = {**full, "pb": pb, "p": float(full["p"]),
                   "key_fingerprint": fingerprint(key)}
    make = _MakeTransform(key, float(full["p"]), full["kernel_size"], pb,
                          bool(full["grayscale"]), full["num_classes"])
    splits = ("train",) if full["num_classes"] is None else ("train", "val")
    return VariantSpec(name=NAME, params=dict(sorted(spec_params.items())),
                       make_transform=make, splits=splits)


def secrets_of(key: str) -> Secrets:
    """The ``Secrets`` mapping that :func:`make_variant` expects, from a key value."""
    return Secrets({"private_key": check_key(key)})


#: The catalog pipeline ``unlearnable`` (cards: ``pipeline: {name: unlearnable, params: ...,
#: secrets: {private_key: {env: VAR}}}``).
PIPELINE = variant_pipeline(
    NAME, "unlearnable copy of a parent dataset (CUDA: class-wise random filters from a "
          "private key; train poisoned, val clean)",
    PARAMS, make_variant, secrets=SECRETS, check=check_params)
