"""Image decoding, conversion and encoding with FFCV's ``RGBImageField`` semantics.

Decoding is strict: a file that is not a complete, decodable image raises
:class:`RejectedImage` with a reason. Every decodable image becomes an RGB ``uint8``
array: EXIF orientation applied; CMYK, grayscale, palette and 16-bit images converted;
transparency composited over white. The longest side is then shrunk to
``max_resolution`` with area interpolation (``cv2.INTER_AREA``, as FFCV's writer does)
and the result stored as JPEG or raw pixels according to FFCV's write modes.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from shardforge.formats.area import resize_area
from shardforge.formats.jpeg_keep import keepable_jpeg

WriteMode = Literal["jpg", "raw", "proportion", "smart"]
WRITE_MODES: tuple[str, ...] = ("jpg", "raw", "proportion", "smart")

# PIL's own default bomb limit (Image.MAX_IMAGE_PIXELS); passed explicitly, never set globally.
DEFAULT_MAX_PIXELS = 89_478_485
# FFCV's .beton stores width and height as uint16: a longer side cannot be stored.
MAX_SIDE = 65535
# Peak RSS per source pixel while decoding + converting one image, measured on 81 MP PNGs
# (docs/reliability.md): 16-bit gray 10 B/px, RGB 10 B/px, RGBA 22 B/px (PIL's alpha
# composite). Tasks reserve ``decode_memory_bytes(max_pixels)`` so Ray runs no more
# decodes on a node than its memory holds.
PEAK_BYTES_PER_PIXEL = 24
BASE_TASK_MEMORY = 256 << 20


def decode_memory_bytes(max_pixels: int) -> int:
    """Memory a task that decodes images of up to ``max_pixels`` pixels should reserve."""
    return BASE_TASK_MEMORY + PEAK_BYTES_PER_PIXEL * max_pixels


class RejectedImage(Exception):
    """A source file that cannot become a training image; ``str(exc)`` is the reason."""


@dataclass(frozen=True)
class ImageParams:
    """How images are stored, mirroring ``ffcv.fields.RGBImageField``.

    ``write_mode``: ``jpg`` always JPEG; ``raw`` always raw pixels; ``proportion`` JPEG
    with probability ``compress_probability`` (decided from the sample key, so reruns
    agree); ``smart`` JPEG when the raw pixels would exceed ``smart_threshold`` bytes.
    """

    max_resolution: int | None = 256
    jpeg_quality: int = 90
    write_mode: str = "jpg"
    compress_probability: float = 0.5
    smart_threshold: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    # A source JPEG that needs no resize or rotation and is not of higher quality than
    # ``jpeg_quality`` is stored as it is, metadata dropped (formats/jpeg_keep.py); False:
    # every image is decoded and re-encoded, as FFCV's writer does.
    keep_source_jpeg: bool = True

    def __post_init__(self) -> None:
        if self.write_mode not in WRITE_MODES:
            raise ValueError(f"write_mode {self.write_mode!r} is not one of {WRITE_MODES}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality {self.jpeg_quality} is outside 1..100")
        if self.max_resolution is not None and self.max_resolution < 8:
            raise ValueError(f"max_resolution {self.max_resolution} is below 8 px")
        if not 0.0 <= self.compress_probability <= 1.0:
            raise ValueError(f"compress_probability {self.compress_probability} is outside [0, 1]")
        if self.write_mode == "smart" and self.smart_threshold is None:
            raise ValueError("write_mode 'smart' needs smart_threshold (bytes of raw pixels)")


@dataclass(frozen=True)
class StoredImage:
    """One processed image: the bytes to store and what describes them."""

    data: bytes            # JPEG bytes, or raw H*W*3 RGB bytes
    is_jpeg: bool
    width: int             # stored size
    height: int
    orig_width: int        # size of the decoded source, after EXIF orientation
    orig_height: int

    def pixels(self) -> np.ndarray:
        """Raw pixels as HxWx3 uint8 (decoding the JPEG when needed)."""
        if not self.is_jpeg:
            return np.frombuffer(self.data, np.uint8).reshape(self.height, self.width, 3)
        return np.asarray(Image.open(io.BytesIO(self.data)).convert("RGB"))


def decode_rgb(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
               draft_to: int | None = None) -> tuple[np.ndarray, int, int]:
    """Decode image bytes to ``(HxWx3 uint8 RGB, orig_width, orig_height)``.

    The original size is the source's full size after EXIF orientation. Raises
    :class:`RejectedImage` with a reason for anything that is not a complete image.

    ``draft_to``: when set and the image is a JPEG, let libjpeg downscale in the DCT
    domain (by 1/2, 1/4 or 1/8) while keeping the longest side >= ``draft_to``; the
    area resize afterwards then works on fewer pixels. It applies only when the longest
    side is >= 2 x ``draft_to`` (e.g. 640 px -> 256 px decodes at 320 px); see
    BENCHMARKS.md for the measured decode rates.
    """
    return _decode(data, max_pixels, draft_to, bgr=False)


def decode_bgr(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
               draft_to: int | None = None) -> tuple[np.ndarray, int, int]:
    """:func:`decode_rgb` with the channels in OpenCV's order (B, G, R): what
    :func:`encode_jpeg_bgr` takes, so a decode-resize-encode never swaps channels."""
    return _decode(data, max_pixels, draft_to, bgr=True)


def _decode(data: bytes, max_pixels: int, draft_to: int | None,
            bgr: bool) -> tuple[np.ndarray, int, int]:
    if not data:
        raise RejectedImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # ``max_pixels`` is the limit, checked below: PIL's warning at its global
            # MAX_IMAGE_PIXELS must not reject images the caller allowed. (PIL still
            # raises DecompressionBombError above twice its global limit.)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if max(w, h) > MAX_SIDE:
                raise RejectedImage(
                    f"side too long: {w}x{h} px; a .beton stores sides up to {MAX_SIDE} px")
            if w * h > max_pixels:
                raise RejectedImage(
                    f"decompression bomb: {w}x{h} = {w * h} pixels > limit {max_pixels}")
            orientation = img.getexif().get(0x0112, 1)
            reduce, draft = 1, None
            if draft_to is not None and img.format == "JPEG":
                scale = max(w, h) // draft_to
                if scale >= 2:   # max(1, ..): a very thin image must not ask for 0 px
                    draft = (max(1, w // scale), max(1, h // scale))
                    reduce = _draft_reduction(w, h, *draft)
            pixels = _opencv_jpeg(img, data, reduce, orientation, bgr)
            if pixels is None:
                if draft is not None:
                    img.draft(None, draft)
                img.load()
                if orientation != 1:   # exif_transpose copies even when there is nothing to do
                    img = ImageOps.exif_transpose(img)
                pixels = _to_rgb(img)
                if bgr:
                    pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    except RejectedImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise RejectedImage(f"decompression bomb: {exc}") from exc
    except UnidentifiedImageError:
        raise RejectedImage("not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise RejectedImage(f"corrupt image: {exc}") from exc
    except Exception as exc:   # one file must not end a job (e.g. OverflowError in a plugin)
        raise RejectedImage(f"undecodable image: {type(exc).__name__}: {exc}") from exc
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    return pixels, w, h


def _draft_reduction(w: int, h: int, want_w: int, want_h: int) -> int:
    """The DCT reduction (1, 2, 4 or 8) PIL's ``JpegImageFile.draft`` picks for this
    requested size (its rule: the largest that keeps both sides >= the request)."""
    scale = min(w // want_w, h // want_h)
    return next((d for d in (8, 4, 2) if scale >= d), 1)


_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2,
            4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def _opencv_jpeg(img: Image.Image, data: bytes, reduce: int, orientation: int,
                 bgr: bool) -> np.ndarray | None:
    """A plain RGB or grey JPEG decoded by OpenCV, else None (PIL decodes it).

    Why: OpenCV's decode of the same libjpeg-turbo stream is ~1.9x PIL's here (1,365 vs
    715 images/s on the natural-photo corpus, bench/ingest.py) and gives the same pixels
    (checked byte for byte on 500 photos at reductions 1, 2 and 4; tests/test_image.py).
    PIL still parses the header (size and bomb checks, EXIF orientation) and decodes
    everything else: CMYK, odd modes, and any file that does not end with the JPEG end
    marker (a truncated file: PIL rejects it, where OpenCV would pad it with grey).
    """
    if img.format != "JPEG" or img.mode not in ("RGB", "L") or data[-2:] != b"\xff\xd9":
        return None
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8),
                           _REDUCED[reduce] | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:
        return None
    w, h = img.size
    if arr is None or arr.shape != (-(-h // reduce), -(-w // reduce), 3):
        return None
    arr = _orient(arr, orientation)
    return np.ascontiguousarray(arr) if bgr else cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to H x W x C pixels, as ``ImageOps.exif_transpose``."""
    if orientation == 2:
        return a[:, ::-1]
    if orientation == 3:
        return a[::-1, ::-1]
    if orientation == 4:
        return a[::-1]
    if orientation == 5:
        return a.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(a, -1)
    if orientation == 7:
        return np.rot90(a, -1)[::-1]
    if orientation == 8:
        return np.rot90(a, 1)
    return a


def _to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        gray = _gray16_to_u8(np.asarray(img), wide=mode.startswith("I;16"))
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        gray = np.clip(np.rint(np.asarray(img)), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    # "transparency" in info: a palette's alpha, or a tRNS colour key in an L / RGB PNG.
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(img if mode == "RGB" else img.convert("RGB"))


def _gray16_to_u8(arr: np.ndarray, wide: bool) -> np.ndarray:
    """16/32-bit gray -> uint8 in integers (peak ~4 B/px instead of float64's ~24 B/px).

    Same values as ``rint(clip(v) * 255 / 65535)``: ``v / 257`` never ends in .5 for an
    integer ``v`` (257 is odd), so ``(v + 128) // 257`` is its exact rounding.
    """
    if not wide and int(arr.max(initial=0)) <= 255:
        return np.clip(arr, 0, 255).astype(np.uint8)
    v = np.clip(arr, 0, 65535).astype(np.uint32)
    v += 128
    v //= 257
    return v.astype(np.uint8)


def target_size(width: int, height: int, max_resolution: int | None) -> tuple[int, int]:
    """``(width, height)`` after shrinking the longest side to ``max_resolution``.

    FFCV's rule (``int(side * max_resolution / longest)``, never upscaling), computed in
    integers: the longest side is exactly ``max_resolution``, where FFCV's float ratio
    sometimes truncates it (or the short side) one pixel short (e.g. 322 px -> 255).
    """
    longest = max(width, height)
    if max_resolution is None or longest <= max_resolution:
        return width, height
    return (max(1, width * max_resolution // longest),
            max(1, height * max_resolution // longest))


def resize_max_side(pixels: np.ndarray, max_resolution: int | None,
                    size: tuple[int, int] | None = None) -> np.ndarray:
    """Shrink so the longest side is <= ``max_resolution`` (area interpolation, as FFCV).

    ``size``: the ``(width, height)`` to use instead of ``target_size`` of the array's own
    size (process_image passes the target of the full-size source when the JPEG was
    decoded at a reduced scale, so the stored size never depends on the draft).
    """
    h, w = pixels.shape[:2]
    size = size or target_size(w, h, max_resolution)
    if size == (w, h):
        return pixels
    return resize_area(pixels, size)


def encode_jpeg(pixels: np.ndarray, quality: int) -> bytes:
    """JPEG-encode an RGB uint8 array the way FFCV's writer does (OpenCV, libjpeg-turbo)."""
    # cvtColor: 15x cheaper than a numpy channel flip + copy (bench/ingest.py profile).
    return encode_jpeg_bgr(cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), quality)


def encode_jpeg_bgr(pixels: np.ndarray, quality: int) -> bytes:
    """:func:`encode_jpeg` of pixels already in OpenCV's channel order (B, G, R)."""
    ok, buf = cv2.imencode(".jpg", pixels, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise RejectedImage("JPEG encoding failed")
    return buf.tobytes()


def choose_jpeg(params: ImageParams, key: str, raw_nbytes: int) -> bool:
    """Whether a sample is stored as JPEG under ``params.write_mode``.

    ``proportion`` is decided by a hash of the sample key, so the choice is the same on
    every run and every worker (FFCV draws it from a process RNG).
    """
    if params.write_mode == "jpg":
        return True
    if params.write_mode == "raw":
        return False
    if params.write_mode == "smart":
        return raw_nbytes > (params.smart_threshold or 0)
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") / 2**64 < params.compress_probability


def process_image(data: bytes, key: str, params: ImageParams) -> StoredImage:
    """Decode, convert, resize and encode one source image (raises :class:`RejectedImage`).

    With ``params.keep_source_jpeg``, a JPEG that :func:`~shardforge.formats.jpeg_keep.
    keepable_jpeg` accepts is stored as its own bytes (metadata dropped) instead.
    """
    if params.keep_source_jpeg and params.write_mode != "raw":
        kept = keepable_jpeg(data, params.max_resolution, params.max_pixels, MAX_SIDE,
                             params.jpeg_quality)
        if kept is not None and choose_jpeg(params, key, kept[1] * kept[2] * 3):
            return StoredImage(kept[0], True, kept[1], kept[2], kept[1], kept[2])
    # B, G, R throughout: OpenCV decodes and encodes in that order (no channel swaps).
    pixels, orig_w, orig_h = decode_bgr(data, params.max_pixels, draft_to=params.max_resolution)
    # Target from the full (oriented) source size, so it is the same with or without the
    # draft; from the pixels if they came out smaller than the header said (never upscale).
    size = target_size(orig_w, orig_h, params.max_resolution)
    if size[0] > pixels.shape[1] or size[1] > pixels.shape[0]:
        size = None
    pixels = resize_max_side(pixels, params.max_resolution, size)
    h, w = pixels.shape[:2]
    if choose_jpeg(params, key, pixels.nbytes):
        return StoredImage(encode_jpeg_bgr(pixels, params.jpeg_quality), True, w, h,
                           orig_w, orig_h)
    rgb = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    return StoredImage(rgb.tobytes(), False, w, h, orig_w, orig_h)


def resize_center_crop(pixels: np.ndarray, resize: int, crop: int) -> np.ndarray:
    """torchvision ``Resize(resize)`` (short side; long side ``int(resize * long / short)``,
    PIL bilinear with antialiasing) then ``CenterCrop(crop)`` of a uint8 H x W x 3 image:
    the standard ImageNet evaluation geometry (Resize 256 -> CenterCrop 224), asserted
    against torchvision by tests/test_variant_stylize.py."""
    h, w = pixels.shape[:2]
    if w <= h:
        size = (resize, int(resize * h / w))
    else:
        size = (int(resize * w / h), resize)
    img = Image.fromarray(pixels)
    if (w, h) != size:
        img = img.resize(size, Image.BILINEAR)
    a = np.asarray(img)
    top = int(round((a.shape[0] - crop) / 2.0))
    left = int(round((a.shape[1] - crop) / 2.0))
    return np.ascontiguousarray(a[top:top + crop, left:left + crop])
