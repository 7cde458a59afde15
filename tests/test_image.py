"""formats.image: decoding to RGB, EXIF orientation, rejects, resizing and write modes."""

from __future__ import annotations

import io
import random
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from shardforge.formats.image import (
    ImageParams,
    RejectedImage,
    choose_jpeg,
    decode_rgb,
    process_image,
    resize_max_side,
    target_size,
)

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 128, 0), (0, 0, 255), (255, 255, 255)


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def gradient(w: int, h: int) -> np.ndarray:
    """A smooth RGB test pattern (JPEG-friendly), HxWx3 uint8."""
    x = np.linspace(0, 255, w)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h)[:, None].repeat(w, 1)
    return np.stack([x, y, 255 - (x + y) / 2], axis=2).astype(np.uint8)


def decode(data: bytes, **kw) -> np.ndarray:
    pixels, _w, _h = decode_rgb(data, **kw)
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
    return pixels


def close(pixel, expected, tol: int = 0) -> bool:
    return bool(np.all(np.abs(np.asarray(pixel, int) - np.asarray(expected, int)) <= tol))


# --- colour modes -------------------------------------------------------------------------


def test_cmyk_jpeg_becomes_rgb():
    img = Image.new("CMYK", (16, 8), (0, 255, 255, 0))          # pure red in CMYK
    img.paste((255, 0, 255, 0), (8, 0, 16, 8))                  # pure green on the right
    pixels, w, h = decode_rgb(encode(img, "JPEG", quality=95))
    assert pixels.shape == (8, 16, 3) and (w, h) == (16, 8)
    assert close(pixels[4, 2], RED, 12)
    assert close(pixels[4, 13], (0, 255, 0), 12)


def test_grayscale_jpeg_and_png():
    gray = Image.new("L", (10, 6), 100)
    gray.putpixel((0, 0), 250)
    assert close(decode(encode(gray, "JPEG", quality=95))[5, 9], (100,) * 3, 3)
    png = decode(encode(gray, "PNG"))
    assert png.shape == (6, 10, 3)
    assert tuple(png[0, 0]) == (250,) * 3 and tuple(png[5, 9]) == (100,) * 3


def test_one_bit_png():
    img = Image.new("1", (4, 2), 0)
    img.putpixel((1, 0), 1)
    pixels = decode(encode(img, "PNG"))
    assert tuple(pixels[0, 1]) == WHITE and tuple(pixels[0, 0]) == (0, 0, 0)


def _palette_image() -> Image.Image:
    img = Image.new("P", (4, 1))
    img.putpalette([0, 0, 255, 255, 0, 0, 0, 128, 0] + [0] * (256 - 3) * 3)
    for x, index in enumerate([0, 1, 2, 1]):
        img.putpixel((x, 0), index)
    return img


def test_palette_png_without_transparency():
    pixels = decode(encode(_palette_image(), "PNG"))
    assert [tuple(p) for p in pixels[0]] == [BLUE, RED, GREEN, RED]


def test_palette_png_with_transparency_composited_over_white():
    pixels = decode(encode(_palette_image(), "PNG", transparency=0))   # index 0 transparent
    assert [tuple(p) for p in pixels[0]] == [WHITE, RED, GREEN, RED]


def test_palette_gif_with_transparency():
    pixels = decode(encode(_palette_image(), "GIF", transparency=0))
    assert tuple(pixels[0, 0]) == WHITE and tuple(pixels[0, 1]) == RED


def test_rgba_png_composited_over_white():
    arr = np.array([[[0, 0, 255, 0], [0, 128, 0, 255], [255, 0, 0, 128]]], np.uint8)
    pixels = decode(encode(Image.fromarray(arr, "RGBA"), "PNG"))
    assert tuple(pixels[0, 0]) == WHITE          # fully transparent -> white
    assert tuple(pixels[0, 1]) == GREEN          # opaque keeps its colour
    assert close(pixels[0, 2], (255, 127, 127), 1)   # half alpha: red over white


def test_la_png_composited_over_white():
    arr = np.array([[[0, 0], [50, 255]]], np.uint8)
    pixels = decode(encode(Image.fromarray(arr, "LA"), "PNG"))
    assert tuple(pixels[0, 0]) == WHITE and tuple(pixels[0, 1]) == (50, 50, 50)


@pytest.mark.parametrize("mode,colour,other", [("RGB", (10, 20, 30), (200, 0, 0)),
                                                ("L", 7, 90)])
def test_trns_colour_key_composited_over_white(mode, colour, other):
    """A PNG tRNS colour key (L / RGB): that colour is transparent, so it becomes white."""
    img = Image.new(mode, (2, 1), colour)
    img.putpixel((1, 0), other)
    pixels = decode(encode(img, "PNG", transparency=colour))
    assert tuple(pixels[0, 0]) == WHITE
    expected = other if isinstance(other, tuple) else (other,) * 3
    assert tuple(pixels[0, 1]) == expected


def test_16bit_grayscale_png_scaled_to_8bit():
    arr = np.array([[65535, 32768, 0, 257, 200]], dtype=np.uint16)
    data = encode(Image.fromarray(arr), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    pixels = decode(data)
    assert pixels.shape == (1, 5, 3)
    assert list(pixels[0, :, 0]) == [255, 128, 0, 1, 1]
    assert np.all(pixels == pixels[:, :, :1])      # gray in all three channels


def test_16bit_rgb_png():
    arr = np.zeros((2, 2, 3), np.uint16)
    arr[0, 0] = (65535, 0, 0)
    # PIL cannot build 16-bit RGB from an array: write it with OpenCV (BGR order).
    ok, buf = cv2.imencode(".png", arr[:, :, ::-1])
    assert ok
    pixels = decode(buf.tobytes())
    assert tuple(pixels[0, 0]) == RED and tuple(pixels[1, 1]) == (0, 0, 0)


# --- EXIF orientation ---------------------------------------------------------------------


def _exif_jpeg(w: int, h: int, orientation: int) -> bytes:
    """A JPEG whose stored left half is red and right half blue, with EXIF orientation."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = RED
    arr[:, w // 2:] = BLUE
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = orientation
    return encode(img, "JPEG", quality=95, exif=exif.tobytes())


@pytest.mark.parametrize("orientation,size,red_at,blue_at", [
    (1, (40, 20), (10, 5), (10, 35)),     # as stored: red left
    (6, (20, 40), (5, 10), (35, 10)),     # rotate 90 CW for display: red on top
    (8, (20, 40), (35, 10), (5, 10)),     # rotate 90 CCW for display: red at the bottom
    (3, (40, 20), (10, 35), (10, 5)),     # rotate 180: red on the right
])
def test_exif_orientation_applied(orientation, size, red_at, blue_at):
    pixels, w, h = decode_rgb(_exif_jpeg(40, 20, orientation))
    assert (w, h) == size                       # displayed size
    assert pixels.shape == (size[1], size[0], 3)
    assert close(pixels[red_at], RED, 10)
    assert close(pixels[blue_at], BLUE, 10)


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_with_draft_and_resize(orientation):
    stored = process_image(_exif_jpeg(1200, 600, orientation), "k",
                           ImageParams(max_resolution=256, write_mode="raw"))
    assert (stored.orig_width, stored.orig_height) == (600, 1200)
    assert (stored.width, stored.height) == (128, 256)
    top, bottom = stored.pixels()[40, 64], stored.pixels()[216, 64]
    red, blue = (top, bottom) if orientation == 6 else (bottom, top)
    assert close(red, RED, 10) and close(blue, BLUE, 10)


# --- rejects ------------------------------------------------------------------------------


def _png_with_header_size(width: int, height: int) -> bytes:
    """A small valid PNG whose IHDR claims ``width`` x ``height`` (CRC fixed up)."""
    data = bytearray(encode(Image.new("L", (8, 8), 0), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_decompression_bomb_header_rejected():
    data = _png_with_header_size(10_000, 10_000)
    with pytest.raises(RejectedImage, match="decompression bomb"):
        decode_rgb(data, max_pixels=1_000_000)
    with pytest.raises(RejectedImage, match="decompression bomb"):
        decode_rgb(data)                                   # default limit (89.5 Mpx) too
    with pytest.raises(RejectedImage, match="decompression bomb"):
        process_image(data, "k", ImageParams(max_pixels=1_000_000))


def test_decompression_bomb_real_png_rejected():
    data = encode(Image.new("L", (2000, 1000), 0), "PNG")   # 2 Mpx of zeros, a few KB
    assert len(data) < 20_000
    with pytest.raises(RejectedImage, match="decompression bomb"):
        process_image(data, "k", ImageParams(max_pixels=1_000_000))
    assert process_image(data, "k", ImageParams(max_pixels=2_000_000)).width == 256


def test_max_pixels_above_pil_default_is_honoured():
    """90 Mpx > PIL's 89.5 Mpx default: allowed by max_pixels=100M, so not a 'bomb'."""
    data = _png_with_header_size(10_000, 9_000)
    with pytest.raises(RejectedImage) as info:
        decode_rgb(data, max_pixels=100_000_000)
    assert "decompression bomb" not in str(info.value)   # fails later: data is missing


def test_truncated_jpeg_rejected():
    data = encode(Image.fromarray(gradient(200, 120)), "JPEG", quality=90)
    decode_rgb(data)                                    # the whole file is fine
    with pytest.raises(RejectedImage, match="corrupt") as info:
        decode_rgb(data[: len(data) // 2])
    assert str(info.value)
    with pytest.raises(RejectedImage):
        process_image(data[: len(data) // 2], "k", ImageParams())


def test_truncated_png_rejected():
    data = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 50, 3),
                                                                        dtype=np.uint8)), "PNG")
    with pytest.raises(RejectedImage):
        decode_rgb(data[: len(data) // 2])


def test_empty_and_text_rejected():
    with pytest.raises(RejectedImage, match="empty"):
        decode_rgb(b"")
    with pytest.raises(RejectedImage, match="not an image"):
        decode_rgb(b"hello, this is a text file\n" * 10)
    with pytest.raises(RejectedImage, match="not an image"):
        process_image(b"\x00" * 100, "k", ImageParams())


@pytest.mark.filterwarnings("ignore::UserWarning")     # PIL's TIFF/EXIF parser complaints
def test_mutated_files_only_ever_rejected():
    """Random truncations and byte flips: process_image succeeds or raises RejectedImage."""
    rng = random.Random(0)
    sources = [encode(Image.fromarray(gradient(60, 40)), fmt)
               for fmt in ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")]
    sources.append(_exif_jpeg(60, 40, 6))
    params = ImageParams(max_resolution=32)
    for data in sources:
        for trial in range(40):
            mutated = bytearray(data)
            if trial % 2:
                mutated = mutated[: rng.randrange(len(mutated))]
            else:
                for _ in range(rng.randint(1, 6)):
                    mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            try:
                process_image(bytes(mutated), "k", params)
            except RejectedImage:
                pass


# --- valid images are never rejected -------------------------------------------------------


@pytest.mark.parametrize("fmt,kw,size", [
    ("JPEG", {"progressive": True}, (300, 200)),
    ("JPEG", {}, (1, 1)),
    ("JPEG", {}, (3, 500)),
    ("JPEG", {}, (4, 3000)),          # thin: the draft must not ask for a 0 px side
    ("JPEG", {}, (3000, 2)),
    ("JPEG", {"subsampling": 0}, (17, 9)),
    ("WEBP", {}, (64, 48)),
    ("WEBP", {"lossless": True}, (5, 7)),
    ("BMP", {}, (13, 11)),
    ("GIF", {}, (20, 10)),
    ("TIFF", {}, (20, 10)),
    ("PNG", {}, (1, 1)),
])
def test_valid_images_accepted(fmt, kw, size):
    w, h = size
    img = Image.fromarray(gradient(w, h))
    data = encode(img if fmt != "GIF" else img.convert("P"), fmt, **kw)
    pixels, ow, oh = decode_rgb(data)
    assert (ow, oh) == (w, h) and pixels.shape == (h, w, 3)
    for mode in ("jpg", "raw"):
        stored = process_image(data, "k", ImageParams(max_resolution=256, write_mode=mode))
        assert (stored.width, stored.height) == target_size(w, h, 256)
        assert (stored.orig_width, stored.orig_height) == (w, h)
        assert stored.pixels().shape == (stored.height, stored.width, 3)


def test_animated_gif_first_frame():
    frames = [Image.new("RGB", (8, 8), c).convert("P") for c in (RED, BLUE)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert close(decode(buf.getvalue())[4, 4], RED, 2)


# --- resizing -----------------------------------------------------------------------------


def test_target_size_longest_side_exact_and_aspect_kept():
    rng = random.Random(1)
    sizes = [(rng.randint(1, 5000), rng.randint(1, 5000)) for _ in range(2000)]
    sizes += [(322, 100), (100, 322), (1024, 683), (500, 375), (257, 256)]
    for w, h in sizes:
        for r in (32, 224, 256, 512):
            tw, th = target_size(w, h, r)
            if max(w, h) <= r:
                assert (tw, th) == (w, h)             # never upscaled
                continue
            longest, short = (tw, th) if w >= h else (th, tw)
            assert longest == r
            # FFCV's int(side * ratio), in exact arithmetic: floor(short * r / longest)
            assert short == max(1, min(w, h) * r // max(w, h))


def test_target_size_vs_ffcv_resizer():
    """FFCV computes ``(r / longest * size).astype(int)``; float truncation sometimes lands
    one pixel short (322 px * (256 / 322) = 255.99999 -> 255). Ours is the exact value:
    equal to FFCV's, or one more where FFCV's float came out short."""
    same = total = 0
    for w in range(257, 1300, 3):
        for h in (1, 99, 256, 300, 757, 1299):
            orig = np.array([w, h])
            ffcv = (256 / orig.max() * orig).astype(int) if orig.max() > 256 else orig
            ffcv = np.maximum(ffcv, 1)
            ours = np.array(target_size(w, h, 256))
            assert set((ours - ffcv).tolist()) <= {0, 1}
            same += bool(np.array_equal(ours, ffcv))
            total += 1
    assert same > 0.7 * total
    assert target_size(322, 100, 256) == (256, 79)


def test_resize_max_side():
    arr = gradient(600, 300)
    out = resize_max_side(arr, 256)
    assert out.shape == (128, 256, 3) and out.dtype == np.uint8
    expected = cv2.resize(arr, (256, 128), interpolation=cv2.INTER_AREA)
    assert np.array_equal(out, expected)
    assert resize_max_side(arr, 600) is arr           # no-op at the limit
    assert resize_max_side(arr, 1000) is arr          # never upscales
    assert resize_max_side(arr, None) is arr
    assert resize_max_side(gradient(322, 100), 256).shape == (79, 256, 3)


@pytest.mark.parametrize("w,h", [(1000, 600), (1024, 683), (683, 1024), (2000, 300)])
def test_draft_path_matches_full_decode(w, h):
    data = encode(Image.fromarray(gradient(w, h)), "JPEG", quality=95)
    drafted, dw, dh = decode_rgb(data, draft_to=256)
    assert (dw, dh) == (w, h)                         # original size, not the draft's
    assert drafted.shape[0] < h                        # libjpeg did downscale
    full, _, _ = decode_rgb(data)
    assert full.shape == (h, w, 3)
    expected = cv2.resize(full, target_size(w, h, 256), interpolation=cv2.INTER_AREA)
    stored = process_image(data, "k", ImageParams(max_resolution=256, write_mode="raw"))
    assert (stored.width, stored.height) == target_size(w, h, 256)
    diff = np.abs(stored.pixels().astype(int) - expected.astype(int))
    assert diff.mean() < 1.0 and diff.max() <= 8


# --- write modes --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def png_src() -> tuple[bytes, np.ndarray]:
    arr = gradient(300, 200)
    return encode(Image.fromarray(arr), "PNG"), arr


def test_write_mode_jpg(png_src):
    data, arr = png_src
    stored = process_image(data, "k", ImageParams(max_resolution=None, jpeg_quality=95))
    assert stored.is_jpeg and stored.data[:2] == b"\xff\xd8"
    assert (stored.width, stored.height, stored.orig_width, stored.orig_height) == (
        300, 200, 300, 200)
    assert np.abs(stored.pixels().astype(int) - arr.astype(int)).mean() < 2


def test_write_mode_raw(png_src):
    data, arr = png_src
    stored = process_image(data, "k", ImageParams(max_resolution=None, write_mode="raw"))
    assert not stored.is_jpeg and len(stored.data) == 200 * 300 * 3
    assert np.array_equal(stored.pixels(), arr)           # lossless: exactly the source
    resized = process_image(data, "k", ImageParams(max_resolution=150, write_mode="raw"))
    assert len(resized.data) == 100 * 150 * 3
    assert np.array_equal(resized.pixels(), resize_max_side(arr, 150))


def test_write_mode_proportion():
    params = ImageParams(write_mode="proportion", compress_probability=0.3)
    keys = [f"sample-{i:04d}" for i in range(1000)]
    first = [choose_jpeg(params, k, 10_000) for k in keys]
    assert first == [choose_jpeg(params, k, 10_000) for k in keys]   # deterministic
    assert 0.25 < sum(first) / len(first) < 0.35
    never = ImageParams(write_mode="proportion", compress_probability=0.0)
    always = ImageParams(write_mode="proportion", compress_probability=1.0)
    assert not any(choose_jpeg(never, k, 1) for k in keys)
    assert all(choose_jpeg(always, k, 1) for k in keys)


def test_write_mode_proportion_in_process_image(png_src):
    data, _ = png_src
    params = ImageParams(max_resolution=32, write_mode="proportion", compress_probability=0.5)
    kinds = {process_image(data, f"k{i}", params).is_jpeg for i in range(40)}
    assert kinds == {True, False}
    for i in range(10):
        assert process_image(data, f"k{i}", params).is_jpeg == choose_jpeg(params, f"k{i}", 0)


def test_write_mode_smart(png_src):
    data, _ = png_src
    raw_nbytes = 64 * 96 * 3        # 300x200 resized to 96x64
    at = ImageParams(max_resolution=96, write_mode="smart", smart_threshold=raw_nbytes)
    below = ImageParams(max_resolution=96, write_mode="smart", smart_threshold=raw_nbytes - 1)
    assert not process_image(data, "k", at).is_jpeg        # not above the threshold: raw
    assert process_image(data, "k", below).is_jpeg
    assert choose_jpeg(at, "k", raw_nbytes + 1) and not choose_jpeg(at, "k", raw_nbytes)


@pytest.mark.parametrize("kwargs", [
    {"jpeg_quality": 0}, {"jpeg_quality": 101}, {"write_mode": "png"},
    {"write_mode": "smart"}, {"compress_probability": 1.5}, {"compress_probability": -0.1},
    {"max_resolution": 4},
])
def test_bad_params_raise(kwargs):
    with pytest.raises(ValueError):
        ImageParams(**kwargs)


def test_good_params_edges():
    ImageParams(jpeg_quality=1)
    ImageParams(jpeg_quality=100)
    ImageParams(max_resolution=None)
    ImageParams(write_mode="smart", smart_threshold=0)


# --- the OpenCV JPEG path (formats.image._opencv_jpeg) ---------------------------------------


def _pil_reference(data: bytes, draft: tuple[int, int] | None = None) -> np.ndarray:
    """What PIL alone decodes (the path every non-plain JPEG still takes)."""
    from PIL import ImageOps

    img = Image.open(io.BytesIO(data))
    if draft is not None:
        img.draft(None, draft)
    return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))


def _photo(h: int, w: int) -> np.ndarray:
    from skimage import data as skdata

    img = skdata.astronaut()
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pil_pixel_for_pixel(orientation):
    """All eight orientations: OpenCV-decoded pixels, turned by _orient, equal PIL's
    exif_transpose of its own decode, exactly (a natural photo, 45 x 70 px)."""
    img = Image.fromarray(_photo(45, 70))
    exif = img.getexif()
    exif[0x0112] = orientation
    data = encode(img, "JPEG", quality=92, exif=exif.tobytes())
    pixels, w, h = decode_rgb(data)
    ref = _pil_reference(data)
    assert pixels.shape == ref.shape and (h, w) == ref.shape[:2]
    assert np.array_equal(pixels, ref)


@pytest.mark.parametrize("side,draft_to", [(300, None), (700, 256), (1100, 256), (2100, 256)])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_opencv_decode_equals_pil_decode_including_dct_reductions(side, draft_to, mode):
    """Plain JPEGs (colour and grey, 1/1 to 1/8 DCT reductions) decode to exactly PIL's
    pixels, and process_image stores the same bytes either way."""
    from shardforge.formats import image as image_mod

    img = Image.fromarray(_photo(side * 3 // 4, side)).convert(mode)
    data = encode(img, "JPEG", quality=90)
    pixels, _, _ = decode_rgb(data, draft_to=draft_to)
    draft = None
    if draft_to is not None:
        scale = side // draft_to
        draft = (side // scale, (side * 3 // 4) // scale)
    assert np.array_equal(pixels, _pil_reference(data, draft))
    params = ImageParams(max_resolution=256)
    fast = process_image(data, "k", params)
    orig = image_mod._opencv_jpeg
    try:
        image_mod._opencv_jpeg = lambda *a: None      # force the PIL path
        slow = process_image(data, "k", params)
    finally:
        image_mod._opencv_jpeg = orig
    assert fast == slow


def test_truncated_jpeg_still_rejected_not_grey_padded():
    """OpenCV pads a truncated JPEG with grey; a file without the end marker goes to PIL,
    which rejects it, as before."""
    data = encode(Image.fromarray(_photo(240, 320)), "JPEG", quality=90)
    with pytest.raises(RejectedImage, match="truncated"):
        decode_rgb(data[: len(data) * 2 // 3])
