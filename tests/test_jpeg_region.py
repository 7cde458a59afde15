"""The partial JPEG decoder (formats/_jpeg_region.c) and the training crop path using it:
pixels equal to a whole decode's, on natural photos in every common JPEG layout, and
every bad input refused with JpegError (never a crash, never wrong pixels)."""

from __future__ import annotations

import io
import random
import threading

import cv2
import numpy as np
import pytest
import simplejpeg
from PIL import Image
from shardforge.formats._jpeg_region import JpegError, decode_region

from shardforge.formats.decode import (
    DecodeError,
    decode_crop,
    decode_full,
    decode_jpeg_region,
    random_resized_crop_box,
)


def _photo(name: str = "astronaut", h: int = 257, w: int = 331) -> np.ndarray:
    from skimage import data
    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    return np.ascontiguousarray(img[:h, :w, :3])


def _jpeg(pixels: np.ndarray, mode: str = "RGB", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buf, "JPEG", **{"quality": 90, **kw})
    return buf.getvalue()


LAYOUTS = {
    "4:2:0": {"subsampling": 2},
    "4:2:2": {"subsampling": 1},
    "4:4:4": {"subsampling": 0},
    "progressive 4:2:0": {"subsampling": 2, "progressive": True},
    "q50": {"subsampling": 2, "quality": 50},
}


def _boxes(w: int, h: int, rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    corners = [(0, 0, h, w), (0, 0, 1, 1), (h - 1, w - 1, 1, 1), (0, w - 17, h, 17),
               (h - 9, 0, 9, w), (15, 15, 2, 2), (16, 16, 16, 16)]
    return corners + [random_resized_crop_box(w, h, rng) for _ in range(60)]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("name,size", [("astronaut", (257, 331)), ("coffee", (400, 600)),
                                       ("chelsea", (31, 47))])
def test_region_pixels_equal_the_whole_decode(layout, name, size):
    data = _jpeg(_photo(name, *size), **LAYOUTS[layout])
    whole = simplejpeg.decode_jpeg(data, "rgb")
    h, w = whole.shape[:2]
    rng = np.random.default_rng(7)
    for box in _boxes(w, h, rng):
        top, left, bh, bw = box
        got = decode_jpeg_region(data, w, h, box, None)
        assert got is not None, box
        assert np.array_equal(got, whole[top:top + bh, left:left + bw]), (layout, box)


def test_grayscale_jpegs_decode_to_equal_rgb():
    data = _jpeg(_photo("camera", 200, 300), mode="L")
    whole = simplejpeg.decode_jpeg(data, "rgb")
    box = (13, 29, 101, 77)
    got = decode_jpeg_region(data, 300, 200, box, np.empty(300 * 200 * 3, np.uint8))
    assert np.array_equal(got, whole[13:114, 29:106])


def test_decode_crop_output_equals_whole_decode_then_resize_and_flip():
    data = _jpeg(_photo("coffee", 300, 400))
    whole = decode_full(data)
    out, ref = np.empty((64, 80, 3), np.uint8), np.empty((64, 80, 3), np.uint8)
    scratch = np.empty(300 * 400 * 3, np.uint8)
    rng = np.random.default_rng(3)
    for i in range(40):
        top, left, bh, bw = box = random_resized_crop_box(400, 300, rng)
        flip = i % 2 == 1
        assert decode_crop(data, False, 400, 300, box, out, flip, dct=False, scratch=scratch) == 1
        cv2.resize(whole[top:top + bh, left:left + bw], (80, 64), dst=ref,
                   interpolation=cv2.INTER_AREA)
        assert np.array_equal(out, ref[:, ::-1] if flip else ref)


def test_the_index_size_is_checked():
    data = _jpeg(_photo(h=100, w=120))
    out = np.empty((32, 32, 3), np.uint8)
    with pytest.raises(DecodeError, match="120x100"):     # box inside both: the region decodes
        decode_crop(data, False, 110, 100, (0, 0, 50, 50), out, dct=False)
    with pytest.raises(DecodeError, match="120x100"):     # box outside the real image
        decode_crop(data, False, 200, 100, (0, 150, 50, 50), out, dct=False)


def test_bad_rectangles_and_buffers_are_refused():
    data = _jpeg(_photo(h=64, w=80))
    buf = np.empty(64 * 80 * 3, np.uint8)
    for rect in [(0, 0, 65, 80), (0, 0, 64, 81), (63, 0, 2, 1), (0, 79, 1, 2), (0, 0, 0, 5)]:
        with pytest.raises(JpegError, match="outside the 80x64 image"):
            decode_region(data, *rect, buf)
    with pytest.raises(JpegError, match="smaller than 64 rows"):
        decode_region(data, 0, 0, 64, 80, np.empty(100, np.uint8))
    with pytest.raises(TypeError):
        decode_region(data, 0, 0, 1, 1, b"read-only")


@pytest.mark.parametrize("data", [b"", b"\xff\xd8", b"not a jpeg at all" * 10,
                                  b"\x89PNG\r\n\x1a\n" + bytes(64)])
def test_non_jpeg_bytes_are_refused(data):
    with pytest.raises(JpegError):
        decode_region(data, 0, 0, 1, 1, np.empty(64, np.uint8))
    assert decode_jpeg_region(data, 8, 8, (0, 0, 1, 1), None) is None


def test_truncated_and_damaged_jpegs_are_refused_then_left_to_whole_decoders():
    data = _jpeg(_photo(h=120, w=160))
    buf = np.empty(120 * 160 * 3, np.uint8)
    cut = data[: len(data) // 2]
    with pytest.raises(JpegError):                       # libjpeg's warning is an error
        decode_region(cut, 100, 0, 20, 160, buf)
    assert decode_jpeg_region(cut, 160, 120, (100, 0, 20, 160), None) is None
    # decode_crop falls back to the whole-image decoders: their answer, as before
    out = np.empty((16, 16, 3), np.uint8)
    try:
        whole = decode_full(cut)
    except DecodeError:
        with pytest.raises(DecodeError):
            decode_crop(cut, False, 160, 120, (100, 0, 20, 160), out, dct=False)
    else:
        decode_crop(cut, False, 160, 120, (100, 0, 20, 160), out, dct=False)
        ref = cv2.resize(whole[100:120], (16, 16), interpolation=cv2.INTER_AREA)
        assert np.array_equal(out, ref)


def test_cmyk_jpegs_fall_back_to_opencv():
    data = _jpeg(_photo(h=64, w=64), mode="CMYK")
    with pytest.raises(JpegError):
        decode_region(data, 0, 0, 8, 8, np.empty(64 * 64 * 3, np.uint8))
    out = np.empty((8, 8, 3), np.uint8)
    decode_crop(data, False, 64, 64, (0, 0, 64, 64), out, dct=False)
    ref = cv2.resize(decode_full(data), (8, 8), interpolation=cv2.INTER_AREA)
    assert np.array_equal(out, ref)


def test_fuzzed_jpegs_never_crash_and_what_decodes_matches_whole_decoders():
    data = bytearray(_jpeg(_photo(h=96, w=128)))
    rng = random.Random(11)
    buf = np.empty(96 * 128 * 3, np.uint8)
    decoded = 0
    for _ in range(300):
        bad = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            bad[rng.randrange(len(bad))] = rng.randrange(256)
        try:
            w, h, row_w, x_off = decode_region(bytes(bad), 10, 20, 40, 50, buf)
        except JpegError:
            continue
        assert row_w * 40 * 3 <= buf.size
        if (w, h) != (128, 96):                          # a damaged header: the index disagrees
            with pytest.raises(DecodeError):
                decode_jpeg_region(bytes(bad), 128, 96, (10, 20, 40, 50), None)
            continue
        decoded += 1
        # No warning up to the crop's last row: a whole decode agrees on those rows. (Damage
        # below the crop is never read; the loader's sha256 check catches damaged storage.)
        whole = simplejpeg.decode_jpeg(bytes(bad), "rgb", strict=False)
        region = buf[:40 * row_w * 3].reshape(40, row_w, 3)
        # the crop's inner pixels (one pixel in from each edge; see decode_jpeg_region)
        assert np.array_equal(region[1:-1, x_off + 1:x_off + 49], whole[11:49, 21:69])
    assert decoded > 0                                   # some mutations hit pixels only


def test_threads_decode_concurrently_with_equal_results():
    data = _jpeg(_photo("coffee", 300, 400))
    rng = np.random.default_rng(5)
    boxes = [random_resized_crop_box(400, 300, rng) for _ in range(200)]
    whole = simplejpeg.decode_jpeg(data, "rgb")
    bad: list[tuple[int, int, int, int]] = []

    def work(part):
        scratch = np.empty(300 * 400 * 3, np.uint8)
        for box in part:
            top, left, bh, bw = box
            if not np.array_equal(decode_jpeg_region(data, 400, 300, box, scratch),
                                  whole[top:top + bh, left:left + bw]):
                bad.append(box)

    threads = [threading.Thread(target=work, args=(boxes[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []
