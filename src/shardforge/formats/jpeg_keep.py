"""Keep a source JPEG as it is when re-encoding it would only lose quality.

FFCV's writer decodes and re-encodes every image. When a source JPEG already fits
(``max_resolution``), is plain 3-component colour, needs no EXIF rotation, and is not of
higher quality than ``jpeg_quality`` asks for, a re-encode costs a full decode plus an
encode and adds a generation of JPEG loss for no gain. ingest then stores the source's
own entropy-coded data, with its metadata segments dropped (EXIF, XMP, ICC, comments:
what a re-encode drops too, so a user's GPS tags never reach a shard).

Why not always: a source of higher quality than asked is re-encoded (stored bytes and
decode cost stay what ``jpeg_quality`` sets); an image with an EXIF orientation other
than 1 must be rotated; CMYK, grey and 12-bit JPEGs take the decode path.

Measured (bench/ingest_cli.py, natural photos 254-650 px at q90, ``--max-res 512``):
53% of the images need no resize and keep their bytes; see BENCHMARKS.md "Ingest through
the CLI" for the speed-up. The stream is still checked: it is decoded once at 1/8 scale, strictly
(libjpeg-turbo reads every entropy-coded block to do that, so damaged data is found as in
a full decode, at a fraction of its cost).
"""

from __future__ import annotations

import io
import warnings

import simplejpeg
from PIL import Image

# The JPEG standard's example tables (ITU T.81, Annex K.1 and K.2), which libjpeg scales
# for its ``quality`` setting (jcparam.c, jpeg_quality_scaling): what OpenCV's and FFCV's
# encoders write at ``jpeg_quality``.
_LUMA = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
         14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
         18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
         49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
_CHROMA = (17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
           24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99) + (99,) * 32

_EOI = b"\xff\xd9"
_STANDALONE = {0x01, *range(0xD0, 0xD8)}    # TEM, RST0-7: markers without a length
_APP14_ADOBE = 0xEE                         # says how the colour components are coded: kept


def libjpeg_table_sum(base: tuple[int, ...], quality: int) -> int:
    """Sum of ``base`` scaled as libjpeg does for ``quality`` (1..100, baseline tables)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return sum(min(255, max(1, (q * scale + 50) // 100)) for q in base)


def not_finer_than(tables: dict[int, list[int]], quality: int) -> bool:
    """Whether quantisation ``tables`` (PIL's ``img.quantization``) are at least as coarse,
    in sum, as libjpeg's at ``quality``: the source is not of higher quality than that.

    Compared per table (luma: table 0, chroma: table 1 when present); a sum is a fair
    ordering of any encoder's tables, not only libjpeg's (a coarser table loses more).
    """
    if 0 not in tables:
        return False
    if sum(tables[0]) < libjpeg_table_sum(_LUMA, quality):
        return False
    return 1 not in tables or sum(tables[1]) >= libjpeg_table_sum(_CHROMA, quality)


def strip_metadata(data: bytes) -> bytes | None:
    """``data`` without its APP1-APP13 and APP15 segments (EXIF, XMP, ICC, ...) and
    comments, everything from the first scan on unchanged; None when the marker structure
    before the scan is not well formed (the caller re-encodes instead)."""
    if data[:2] != b"\xff\xd8":
        return None
    out, i, n = [data[:2]], 2, len(data)
    while i < n:
        if data[i] != 0xFF:
            return None
        while i < n and data[i] == 0xFF:      # fill bytes before a marker
            i += 1
        if i >= n:
            return None
        marker = data[i]
        i += 1
        if marker == 0xDA:                    # start of scan: the rest is kept verbatim
            out.append(b"\xff\xda" + data[i:])
            return b"".join(out)
        if marker in _STANDALONE:
            out.append(bytes((0xFF, marker)))
            continue
        if i + 2 > n:
            return None
        length = int.from_bytes(data[i:i + 2], "big")
        if length < 2 or i + length > n:
            return None
        segment = data[i:i + length]
        i += length
        if (0xE1 <= marker <= 0xEF and marker != _APP14_ADOBE) or marker == 0xFE:
            continue
        out.append(bytes((0xFF, marker)) + segment)
    return None


def keepable_jpeg(data: bytes, max_resolution: int | None, max_pixels: int, max_side: int,
                  quality: int) -> tuple[bytes, int, int] | None:
    """``(bytes to store, width, height)`` for source ``data`` kept without a re-encode,
    or None when it must be decoded (and resized, rotated, re-encoded) instead.

    Kept only when all hold: a baseline or progressive 8-bit YCbCr JPEG whose sides fit
    ``max_resolution`` (None: any), ``max_side`` and ``max_pixels``; no EXIF orientation
    other than 1; ending with the end-of-image marker; quantisation not finer than
    ``quality`` (:func:`not_finer_than`); well-formed markers; and a strict 1/8-scale
    decode of the stripped stream (simplejpeg, libjpeg-turbo) succeeding without a
    warning at the size its header gives: a stream libjpeg decodes only with "corrupt
    data" warnings is re-encoded, as before, so the loaders' strict decode never meets it.
    Never raises for a bad file: the decode path names the problem.
    """
    try:
        h, w, colorspace, _ = simplejpeg.decode_jpeg_header(data)   # ~2 us; PIL's ~20
    except ValueError:
        return None
    longest = max(w, h)
    if (colorspace != "YCbCr" or longest > (max_resolution or max_side) or longest > max_side
            or w * h > max_pixels or data[-2:] != _EOI):
        return None
    try:
        with warnings.catch_warnings():     # w * h <= max_pixels, checked above
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        if (img.format != "JPEG" or img.mode != "RGB" or img.size != (w, h)
                or img.getexif().get(0x0112, 1) != 1
                or not not_finer_than(getattr(img, "quantization", None) or {}, quality)):
            return None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        return None
    kept = strip_metadata(data)
    if kept is None:
        return None
    try:    # strict: libjpeg's warnings about damaged data fail the check too
        check = simplejpeg.decode_jpeg(kept, "rgb", min_height=1, min_width=1, strict=True)
    except ValueError:
        return None
    if check.shape != (-(-h // 8), -(-w // 8), 3):
        return None
    return kept, w, h
