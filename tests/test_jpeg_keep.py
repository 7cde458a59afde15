"""Source JPEGs kept as they are (formats/jpeg_keep.py): when, what is dropped, and that
every reader decodes them to the source's own pixels."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import simplejpeg
from PIL import Image

from shardforge.formats.image import ImageParams, decode_rgb, process_image
from shardforge.formats.jpeg_keep import libjpeg_table_sum, not_finer_than, strip_metadata


def _photo(h: int = 300, w: int = 400) -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:h, :w])


def _jpeg(pixels: np.ndarray, quality: int = 90, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality, **kw)
    return buf.getvalue()


def _with_metadata(pixels: np.ndarray, quality: int = 90, orientation: int = 1) -> bytes:
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = orientation
    exif[0x010F] = "CameraMaker"                     # Make
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 0.0)}    # GPS IFD
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, exif=exif.tobytes(), icc_profile=b"\0" * 600,
             comment=b"private comment")
    return buf.getvalue()


def test_a_fitting_q90_photo_is_kept_without_its_metadata():
    pixels = _photo()
    src = _with_metadata(pixels)
    stored = process_image(src, "k", ImageParams(max_resolution=512, jpeg_quality=90))
    assert stored.is_jpeg and (stored.width, stored.height) == (400, 300)
    assert (stored.orig_width, stored.orig_height) == (400, 300)
    kept = stored.data
    assert len(kept) < len(src)
    for secret in (b"Exif", b"CameraMaker", b"private comment", b"ICC_PROFILE"):
        assert secret in src and secret not in kept
    # The entropy-coded data (from the scan on) is the source's, byte for byte.
    assert kept[kept.index(b"\xff\xda"):] == src[src.index(b"\xff\xda"):]
    # Every reader gets the source's own pixels.
    want = decode_rgb(src)[0]
    assert np.array_equal(decode_rgb(kept)[0], want)
    assert np.array_equal(simplejpeg.decode_jpeg(kept, "rgb"), want)
    assert not Image.open(io.BytesIO(kept)).getexif()


@pytest.mark.parametrize("why,src,params", [
    ("higher quality than asked", _jpeg(_photo(), 95), ImageParams(512, jpeg_quality=90)),
    ("needs a resize", _jpeg(_photo(), 90), ImageParams(256, jpeg_quality=90)),
    ("EXIF rotation", _with_metadata(_photo(), orientation=6), ImageParams(512)),
    ("grey", _jpeg(_photo()[:, :, 0]), ImageParams(512)),
    ("switched off", _jpeg(_photo(), 90), ImageParams(512, keep_source_jpeg=False)),
])
def test_re_encoded_when_keeping_would_be_wrong(why, src, params):
    stored = process_image(src, "k", params)
    assert stored.is_jpeg
    scan = stored.data[stored.data.index(b"\xff\xda"):]
    assert scan != src[src.index(b"\xff\xda"):], why
    # What it is re-encoded at: the asked quality's tables.
    tables = Image.open(io.BytesIO(stored.data)).quantization
    assert sum(tables[0]) == libjpeg_table_sum(
        (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40,
         57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24,
         35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98,
         112, 100, 103, 99), params.jpeg_quality)


def test_a_lower_quality_source_is_kept_and_raw_mode_never_keeps():
    src = _jpeg(_photo(), 75)
    kept = process_image(src, "k", ImageParams(512, jpeg_quality=90))
    assert kept.data[kept.data.index(b"\xff\xda"):] == src[src.index(b"\xff\xda"):]
    raw = process_image(src, "k", ImageParams(512, write_mode="raw"))
    assert not raw.is_jpeg and np.array_equal(raw.pixels(), decode_rgb(src)[0])


def test_quality_order_of_tables():
    q = {quality: Image.open(io.BytesIO(_jpeg(_photo(64, 64), quality))).quantization
         for quality in (50, 89, 90, 91, 100)}
    assert not_finer_than(q[90], 90) and not_finer_than(q[89], 90) and not_finer_than(q[50], 90)
    assert not not_finer_than(q[91], 90) and not not_finer_than(q[100], 90)
    assert not not_finer_than({}, 90)


def test_damaged_streams_are_re_encoded_or_rejected_never_kept_damaged():
    """Mutations after the header: libjpeg decodes many with 'corrupt data' warnings.
    Such a stream must not be stored as it is (the loader decodes strictly)."""
    src = _jpeg(_photo(), 90)
    rng = random.Random(0)
    kept = 0
    for _ in range(300):
        d = bytearray(src)
        for _ in range(rng.randint(1, 4)):
            d[rng.randrange(len(d) // 4, len(d) - 2)] = rng.randrange(256)
        try:
            stored = process_image(bytes(d), "k", ImageParams(512))
        except Exception as exc:       # a reject is fine; only RejectedImage may escape
            assert type(exc).__name__ == "RejectedImage", exc
            continue
        try:
            simplejpeg.decode_jpeg(stored.data, "rgb", strict=True)
        except ValueError as exc:
            pytest.fail(f"stored a stream that a strict decode refuses: {exc}")
        kept += stored.data.endswith(bytes(d[d.index(b"\xff\xda"):]))
    assert kept > 0            # some mutations are harmless (and kept), so this can fail


@pytest.mark.parametrize("data", [
    b"", b"\xff\xd8", b"\xff\xd8\xff\xe1\x00", b"\xff\xd8\xff\xe1\xff\xff" + b"x" * 10,
    b"\xff\xd8\x00\x00", b"\x89PNG\r\n",
])
def test_strip_metadata_refuses_malformed_marker_structures(data):
    assert strip_metadata(data) is None


def test_strip_metadata_keeps_jfif_adobe_and_tables():
    src = _with_metadata(_photo(32, 32))
    out = strip_metadata(src)
    markers = []
    i = 2
    while out[i + 1] != 0xDA:
        markers.append(out[i + 1])
        i += 2 + int.from_bytes(out[i + 2:i + 4], "big")
    assert 0xE0 in markers and 0xDB in markers and 0xC4 in markers and 0xC0 in markers
    assert not {0xE1, 0xE2, 0xFE} & set(markers)


def test_ingest_keeps_fitting_photos_and_ffcv_and_the_tars_read_them(ray_local, tmp_path):
    """Natural-photo crops through a real ingest: the kept ones are the same bytes in the
    tar and the .beton, carry no EXIF, and FFCV's Loader decodes the source's pixels."""
    from ffcv.fields.decoders import IntDecoder, SimpleRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from helpers import index_rows, tar_images

    from shardforge.build.config import IngestConfig
    from shardforge.build.job import run_ingest
    from shardforge.sources.base import SourceOptions

    photo = _photo(512, 512)
    sources = {}
    for i in range(8):            # 6 kept (q90 / q80, EXIF or not), 2 re-encoded
        crop = np.ascontiguousarray(photo[i * 40:i * 40 + 96, i * 50:i * 50 + 128])
        data = (_with_metadata(crop) if i % 2 else _jpeg(crop, 80 if i == 2 else 90)) \
            if i < 6 else _jpeg(crop, 97) if i == 6 else _with_metadata(crop, orientation=3)
        cls = tmp_path / "src" / f"c{i % 2}"
        cls.mkdir(parents=True, exist_ok=True)
        (cls / f"img{i}.jpg").write_bytes(data)
        sources[f"c{i % 2}/img{i}.jpg"] = data
    out = str(tmp_path / "out")
    run_ingest(IngestConfig(source=str(tmp_path / "src"), name="keep", out=out,
                            image=ImageParams(max_resolution=128),
                            source_options=SourceOptions(shard_size=4)),
               log=io.StringIO())
    rows = sorted((r for r in index_rows(out) if r["split"] == "train"),
                  key=lambda r: r["beton_index"])
    assert len(rows) == 8
    images = tar_images(out)
    loader = Loader(f"{out}/beton/keep-train.beton", batch_size=1, num_workers=1,
                    order=OrderOption.SEQUENTIAL,
                    pipelines={"image": [SimpleRGBImageDecoder()], "label": [IntDecoder()]})
    decoded = [np.array(batch[0][0]) for batch in loader]    # FFCV reuses its buffers
    kept = 0
    for row, ffcv_pixels in zip(rows, decoded, strict=True):
        src = sources[row["origin"]]
        stored = images[row["key"]]
        i = int(row["origin"].rsplit("img", 1)[1][0])
        is_kept = stored.endswith(src[src.index(b"\xff\xda"):])
        assert is_kept == (i < 6), row["origin"]
        kept += is_kept
        if is_kept:
            assert b"Exif" not in stored
            want = simplejpeg.decode_jpeg(src, "rgb", fastdct=True)   # FFCV's fast IDCT
            diff = np.abs(np.asarray(ffcv_pixels, int) - want)
            assert ffcv_pixels.shape == want.shape and diff.mean() < 0.5 and diff.max() <= 8
    assert kept == 6
