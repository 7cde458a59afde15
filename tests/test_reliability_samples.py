"""Issue #13, items 1, 3 and 4 (labels): one sample never fails a job.

The malformed-input matrix: 12 image faults x 4 entry paths (class folder, WebDataset tar,
parquet, a variant's parent samples; plus the style-image input of stylize), all faults of
a path in ONE shard next to good samples, built with ``build_shard`` directly (the code a
Ray task runs). Each fault is a reject with a reason, or, where the input is a valid image
(16-bit PNG within the pixel limit, a multi-frame GIF/TIFF, a raw sample over the page,
which falls back to JPEG), an accepted sample read back by the real clients; the good
samples are read back by webdataset, ffcv's Loader and pyarrow, their stored pixels
byte-equal to the source. Good inputs: crops of scikit-image's natural sample photos.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import struct
import tarfile
import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import ffcv_labels, wds_samples
from PIL import Image

from shardforge.build.config import ShardJob
from shardforge.build.guard import SampleFault, label_problem
from shardforge.build.shard import build_shard
from shardforge.build.transform import VariantSpec
from shardforge.formats import beton
from shardforge.formats.image import ImageParams, process_image
from shardforge.formats.wds import write_tar
from shardforge.sources import ShardSpec, SourceOptions, plan_source

PAGE = beton.MIN_PAGE_SIZE          # 2 MiB: small, so "raw over the page" is cheap to make
# --no-resize --write-mode raw: the setting in which a raw sample can exceed the page.
PARAMS = ImageParams(max_resolution=None, write_mode="raw", jpeg_quality=100)
OPTIONS = SourceOptions(shard_size=1000, seed=None)   # one shard per split

# A TIFF found by a seeded fuzz of PIL 13 (formats/image.py decode_rgb on main let it
# escape): PIL raises TypeError ("'IFDRational' object cannot be interpreted as an
# integer"), outside the decoder's (OSError, SyntaxError, ValueError, EOFError) list.
FUZZED_TIFF = zlib.decompress(base64.b64decode(
    "eNrz9NRi4GBgYOBnYGBkYWAEsgSAmBHK5gFiJkZmBmYgfQiImYFskDgIs0HZTCDdjEwMLEA6OTGXQZCRFSx+A4iF"
    "oGrYgFgUygaZJcbI8gBmvjjULgegQVJQvSeAWBrKvgDEMkj2aiDZCwIcYOgBlYXRcY0Hb5x7xbdI4dqNxu97+F22"
    "Pz/ju8KmhlPmvaPQVjUrZquAu9rllYbnfaXtl1ZErHxRt/FNfUGV9yyXmY3f4zz279xXd3vBMwatrjf7QvvYnse/"
    "8zZz8zl26/z6/r2r0ss3vf/yNHnf9dpbclOe9RTxz2CvuHTuENumkzuXqu247nH4mzZv3S1RS68ft3UrlrPcMJrT"
    "aS44RVj+1Q7vD1dVq85ZmmRzL7JMs/lix5Z+MpYhnu2C3PJXsowrONeu2vWwt9XSdO0Sg9S7Du/vd8xJkZxxyGiD"
    "eaLkl78lNaoe/+yOCJ0NZRX/pVOgnvBpTd0626MWn47WNS/dvUT2Wj2X7fp1GRabd0f2J+204rxvu26Kogiz0eQd"
    "JZu2W2UWXP8wt6ZV3Fcq/gtjtp84j1v2gc1x1U6bmLe3Vmx5NHHpasGLFTLvZsuztnuXTY+6sMR8ddYxv4lv7uo4"
    "eLOnBi66arD9B5fydMfJCg1zIxpCd0/cebBP2SH5pQdTsCTLi0eLdvY7MalZ7ma8vDXEoGPeu84c7glsjSK7tbvj"
    "t2mqX/F7Oyc1wLXuRLwPU8ANfzcbZrnVJx0/JNzP/u0tPNH/L+/aF9dWtR7mCt2++OZEoW3lqqKLtW5fyvcoWucp"
    "+8Tj+a1T2SETNqvHclm174k8PNM5gGfVtg8TZmzpT9stovzPYv8Fw/uFfh8Lp1mJSVm1zzu5on+yoqPC046IMm/h"
    "hLdPzW6xrX7L+eHRxgIho8fq0gdVg3Q/CF/N51a/XRbzuuHjQrE9DFJtzZMaw614FvQ9nHzIKPLNZueX6QDHGh9w"))


# ----------------------------------------------------------------------------- inputs

def photo(h: int, w: int, which: str = "astronaut") -> np.ndarray:
    """A natural photo (scikit-image sample), area-resized to ``h x w`` RGB uint8."""
    import cv2
    from skimage import data

    img = getattr(data, which)()[:, :, :3]
    return np.ascontiguousarray(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))


def encode(px: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(px).save(buf, fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width x height`` (8-bit RGB) with one tiny IDAT: enough
    for a decoder to read the size; nothing that large is ever allocated."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _chunk(b"IEND", b""))


def jpeg_with_corrupt_exif() -> bytes:
    """A JPEG whose APP1 Exif block points its first IFD far past its end."""
    jpg = encode(photo(48, 64, "coffee"), "JPEG", quality=90)
    tiff = b"II*\x00" + struct.pack("<I", 0x7FFFFF00) + b"\x01\x12\x00\x03" * 3
    app1 = b"Exif\x00\x00" + tiff
    return jpg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpg[2:]


def jpeg_zero_height() -> bytes:
    """A JPEG whose SOF header says height 0 (an out-of-range header field)."""
    jpg = bytearray(encode(photo(48, 64, "coffee"), "JPEG", quality=90))
    sof = jpg.find(b"\xff\xc0")
    jpg[sof + 5:sof + 7] = b"\x00\x00"
    return bytes(jpg)


def multi_frame(fmt: str) -> bytes:
    frames = [Image.fromarray(photo(40, 56, w)) for w in ("chelsea", "coffee")]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:])
    return buf.getvalue()


def tiff_overflow() -> bytes:
    """A BigTIFF whose StripOffsets entry is a LONG8 of 2**64 - 1: PIL seeks there and
    raises OverflowError ("Python int too large to convert to C ssize_t"), which escaped
    decode_rgb's except list on main."""
    buf = io.BytesIO()
    Image.fromarray(photo(8, 8, "chelsea")).save(buf, "TIFF", big_tiff=True)
    b = bytearray(buf.getvalue())
    ifd = struct.unpack_from("<Q", b, 8)[0]
    for i in range(struct.unpack_from("<Q", b, ifd)[0]):
        entry = ifd + 8 + 20 * i
        if struct.unpack_from("<H", b, entry)[0] == 273:          # StripOffsets
            struct.pack_into("<HHQQ", b, entry, 273, 16, 1, 2**64 - 1)
    return bytes(b)


def gray16_png() -> bytes:
    g = (photo(48, 64).astype(np.uint32).sum(axis=2) * 85).astype(np.uint16)
    return encode(g, "PNG")     # mode I;16: 16-bit gray


@dataclass(frozen=True)
class Fault:
    """One malformed (or unusual) input; ``reject``: regex the reason must match, or None
    when the right outcome is an accepted sample (then ``check`` describes it)."""

    name: str
    ext: str
    data: bytes
    reject: str | None
    label: int = 1


def image_faults() -> list[Fault]:
    """The 11 image faults (the 12th, the label, depends on the entry path); the fuzzed
    TIFF and raw-over-the-page come in two variants each (13 inputs)."""
    good_jpg = encode(photo(96, 128, "chelsea"), "JPEG", quality=90)
    good_png = encode(photo(96, 128, "coffee"), "PNG")
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (1100, 1100, 3), dtype=np.uint8)
    return [
        Fault("f01_empty", "jpg", b"", r"empty file|no image|holds no bytes"),
        Fault("f02_not_image", "jpg", b"this is not an image\n" * 20, r"not an image"),
        Fault("f03_truncated_jpeg", "jpg", good_jpg[: len(good_jpg) // 2],
              r"corrupt image|truncated"),
        Fault("f04_truncated_png", "png", good_png[: len(good_png) // 2],
              r"corrupt image|truncated"),
        Fault("f05_over_pixel_limit", "png", png_header_only(10_000, 10_000),
              r"decompression bomb: 10000x10000"),
        Fault("f06_gray16_within_limit", "png", gray16_png(), None),
        Fault("f07_corrupt_exif", "jpg", jpeg_with_corrupt_exif(), None),
        Fault("f08_multi_frame_gif", "gif", multi_frame("GIF"), None),
        Fault("f09a_fuzzed_tiff_overflow", "tif", tiff_overflow(),
              r"undecodable image: OverflowError"),
        Fault("f09b_fuzzed_tiff_typeerror", "tif", FUZZED_TIFF, r"undecodable image: TypeError"),
        # raw over the page, twice: a photo falls back to JPEG (accepted, reason recorded);
        # noise whose JPEG does not fit either is rejected.
        Fault("f10a_raw_over_page_photo", "png", encode(photo(800, 1000), "PNG"), None),
        Fault("f10b_raw_over_page_noise", "png", encode(noise, "PNG"),
              r"does not fit the \.beton page"),
        Fault("f11_side_over_65535", "png", png_header_only(70_000, 10), r"side too long: 70000x10"),
    ]


GOOD = {f"good{i}": photo(40 + 8 * i, 56 + 4 * i, w)
        for i, w in enumerate(("astronaut", "chelsea", "coffee", "astronaut"))}


def good_bytes(name: str) -> bytes:
    return encode(GOOD[name], "PNG")


# ----------------------------------------------------------------------------- checks

def check_shard(out: str, name: str, result, faults: list[Fault], origin_of) -> None:
    """Every fault is one reject with a matching reason or an accepted sample; every good
    sample (and accepted fault) is written and read back by webdataset, ffcv and pyarrow."""
    rejected = {r["origin"]: r["reason"] for r in result.rejects}
    assert len(rejected) == len(result.rejects), result.rejects
    expect_rejected = [f for f in faults if f.reject is not None]
    for f in expect_rejected:
        origin = origin_of(f.name)
        assert origin in rejected, f"{f.name}: not rejected ({sorted(rejected)})"
        assert re.search(f.reject, rejected[origin]), (f.name, rejected[origin])
    assert len(rejected) == len(expect_rejected), rejected
    accepted = [f for f in faults if f.reject is None]
    assert result.num_samples == len(GOOD) + len(accepted)
    # webdataset reads the tar; the json names each sample's origin
    samples = wds_samples(out, name, "train")
    origins = [meta["origin"] for _key, _label, meta in samples]
    want = sorted([origin_of(g) for g in GOOD] + [origin_of(f.name) for f in accepted])
    assert sorted(origins) == want
    fallback = [meta for _k, _l, meta in samples if "f10a" in meta["origin"]]
    assert len(fallback) == 1 and "exceed the .beton page" in fallback[0]["stored_as_jpeg"]
    # ffcv's Loader reads the .beton part (raw and JPEG samples mixed)
    part = os.path.join(out, "_work", "train-000000.beton")
    labels = ffcv_labels(part)
    assert labels == [label for _k, label, _m in samples]
    # pyarrow reads the index; good samples' stored pixels equal the source pixels
    rows = pq.read_table(os.path.join(out, "_work", "train-000000.parquet")).to_pylist()
    stored = beton.read_sample_bytes(part)
    by_origin = {r["origin"]: (r, data) for r, data in zip(rows, stored, strict=True)}
    for g, px in GOOD.items():
        row, data = by_origin[origin_of(g)]
        assert (row["format"], row["width"], row["height"]) == ("png", px.shape[1], px.shape[0])
        assert data == px.tobytes()
    row, data = by_origin[origin_of("f10a_raw_over_page_photo")]
    assert row["format"] == "jpg" and data[:3] == b"\xff\xd8\xff" and len(data) <= PAGE


def job_for(out: str, variant: VariantSpec | None = None) -> ShardJob:
    return ShardJob(out, "m", PARAMS, OPTIONS, PAGE, variant)


def only_spec(source: str, kind: str):
    plan = plan_source(source, OPTIONS, kind)
    assert len(plan.shards) == 1, plan.shards
    return plan.shards[0]


# ----------------------------------------------------------------------------- entry paths

def test_matrix_class_folder(tmp_path):
    """Folder source. The label fault cannot occur (labels are folder indices); its
    nearest equivalent here is an out-of-range header field: a JPEG whose SOF says
    height 0."""
    src = tmp_path / "src"
    faults = image_faults() + [Fault("f12_zero_height_header", "jpg", jpeg_zero_height(),
                                     r"not an image|corrupt image")]
    (src / "bad").mkdir(parents=True)
    (src / "good").mkdir()
    for f in faults:
        (src / "bad" / f"{f.name}.{f.ext}").write_bytes(f.data)
    for g in GOOD:
        (src / "good" / f"{g}.png").write_bytes(good_bytes(g))
    out = str(tmp_path / "out")

    def origin_of(n: str) -> str:
        return f"good/{n}.png" if n in GOOD else next(
            f"bad/{f.name}.{f.ext}" for f in faults if f.name == n)

    result = build_shard(only_spec(str(src), "folder"), job_for(out))
    check_shard(out, "m", result, faults, origin_of)


def _tar(path: str, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def test_matrix_webdataset_tar(tmp_path):
    """WebDataset tar: the label fault is a ``.cls`` of 2**64 (OverflowError on main)."""
    faults = image_faults() + [Fault("f12_label_2pow64", "png", good_bytes("good0"),
                                     r"label 18446744073709551616 is outside", 2**64)]
    members = []
    for f in faults:
        members += [(f"{f.name}.{f.ext}", f.data), (f"{f.name}.cls", str(f.label).encode())]
    for g in GOOD:
        members += [(f"{g}.png", good_bytes(g)), (f"{g}.cls", b"0")]
    src = tmp_path / "src"
    src.mkdir()
    _tar(str(src / "data.tar"), members)
    out = str(tmp_path / "out")
    result = build_shard(only_spec(str(src), "wds"), job_for(out))
    check_shard(out, "m", result, faults, lambda n: f"data.tar#{n}")


def test_matrix_parquet(tmp_path):
    """Parquet: the label fault is -7 (accepted on main)."""
    faults = image_faults() + [Fault("f12_label_negative", "png", good_bytes("good1"),
                                     r"label -7 is outside", -7)]
    rows = [{"key": f.name, "image": f.data, "label": f.label} for f in faults]
    rows += [{"key": g, "image": good_bytes(g), "label": 0} for g in GOOD]
    src = tmp_path / "src"
    src.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), str(src / "train.parquet"))
    out = str(tmp_path / "out")
    options = SourceOptions(shard_size=1000, seed=None, key_column="key")
    spec = plan_source(str(src), options, "parquet").shards[0]
    job = ShardJob(out, "m", PARAMS, options, PAGE)
    result = build_shard(spec, job)
    check_shard(out, "m", result, faults, lambda n: f"train.parquet#{n}")


class _ProbeTransform:
    """A variant transform: identity, except that it raises for any batch holding a key
    with ``bomb`` in it (a transform failing for one sample)."""

    def __call__(self, samples, split):
        for d in samples:
            if "bomb" in d.key:
                raise ZeroDivisionError(f"cannot transform {d.key}")
        return list(samples)


def _parent(tmp_path, faults: list[Fault]) -> ShardSpec:
    """A parent dataset shard holding the faults (as a damaged or foreign parent would)."""
    members, labels = [], {}
    for f in faults:
        members.append((f"{f.name}.{f.ext}", f.data))
        labels[f.name] = f.label
    for g in GOOD:
        members.append((f"{g}.png", good_bytes(g)))
        labels[g] = 0
    tar_bytes, offsets = write_tar(members)
    root = tmp_path / "parent"
    (root / "wds").mkdir(parents=True)
    (root / "wds" / "p.tar").write_bytes(tar_bytes)
    items = tuple(("p.tar", m.offset, m.size, name.rsplit(".", 1)[0],
                   labels[name.rsplit(".", 1)[0]])
                  for (name, _), m in zip(members, offsets, strict=True))
    return ShardSpec("dataset", str(root), "train", 0, items)


def test_matrix_variant_parent(tmp_path):
    """A variant's parent samples: the label fault is 2**31 (the first label out of
    range), plus a 13th fault only a variant has: the transform raising for one sample
    (rule: the batch is retried per sample, the failing one rejected, the rest
    transformed as one batch)."""
    faults = image_faults() + [
        Fault("f12_label_2pow31", "png", good_bytes("good2"), r"label 2147483648 is outside",
              2**31),
        Fault("f13_transform_bomb", "png", good_bytes("good3"),
              r"ZeroDivisionError: cannot transform f13_transform_bomb")]
    variant = VariantSpec("probe", {}, _ProbeTransform, image=PARAMS)
    out = str(tmp_path / "out")
    result = build_shard(_parent(tmp_path, faults), job_for(out, variant), _ProbeTransform())
    check_shard(out, "m", result, faults, lambda n: f"p.tar#{n}")


def test_style_inputs_rejected_with_reasons(tmp_path):
    """Stylize's style images: every image fault is a reject with a reason, the good
    styles load. Raw-over-page and labels do not apply to style inputs (styles are
    preprocessed to 224 px and carry no label); the 16-bit, EXIF, multi-frame and
    big-photo inputs are valid styles when their short side is >= 224 px."""
    from shardforge.variants.stylize.styles import load_style_set

    styles = tmp_path / "styles"
    styles.mkdir()
    faults = [f for f in image_faults() if f.reject is not None and "f10" not in f.name]
    for f in faults:
        (styles / f"{f.name}.{f.ext}").write_bytes(f.data)
    for i in range(2):
        (styles / f"ok{i}.png").write_bytes(encode(photo(240, 260 + i), "PNG"))
    got = load_style_set(str(styles), threads=1)
    assert sorted(s.key for s in got.styles) == ["ok0.png", "ok1.png"]
    reasons = {r["style"]: r["reason"] for r in got.rejects}
    assert len(reasons) == len(faults)
    for f in faults:
        assert re.search(f.reject, reasons[f"{f.name}.{f.ext}"]), (f.name, reasons)


# ----------------------------------------------------------------------------- rules

def test_label_rule():
    assert label_problem(0) is None and label_problem(2**31 - 1) is None
    assert label_problem(np.int64(5)) is None
    for bad, why in [(-1, "outside"), (2**31, "outside"), (2**64, "outside"),
                     (True, "not an integer"), (1.0, "not an integer"), ("3", "not an integer")]:
        assert why in label_problem(bad), bad


def test_a_fault_hitting_every_sample_ends_the_shard(tmp_path):
    """The same unexpected error for every sample is a bug, not bad samples: the shard
    raises SampleFault (one line) instead of writing an empty shard."""

    class Broken:
        def __call__(self, samples, split):
            raise KeyError("model not loaded")

    faults: list[Fault] = []
    variant = VariantSpec("broken", {}, Broken, image=PARAMS)
    with pytest.raises(SampleFault, match=r"every one of its 4 samples failed with KeyError"):
        build_shard(_parent(tmp_path, faults), job_for(str(tmp_path / "out"), variant),
                    Broken())


def test_batch_only_failure_is_not_blamed_on_a_sample(tmp_path):
    """A transform that fails for the batch but for no sample alone: re-raised."""

    class NeedsPairs:
        def __call__(self, samples, split):
            if len(samples) > 1:
                raise RuntimeError("batch too large for the device")
            return list(samples)

    variant = VariantSpec("pairs", {}, NeedsPairs, image=PARAMS)
    with pytest.raises(RuntimeError, match="batch too large"):
        build_shard(_parent(tmp_path, []), job_for(str(tmp_path / "out"), variant),
                    NeedsPairs())


def test_good_shard_bytes_unchanged_by_the_guard(tmp_path):
    """Stored bytes of good samples are exactly what process_image makes of each alone."""
    src = tmp_path / "src" / "c"
    src.mkdir(parents=True)
    for g in GOOD:
        (src / f"{g}.jpg").write_bytes(encode(GOOD[g], "JPEG", quality=92))
    params = ImageParams(max_resolution=32)
    out = str(tmp_path / "out")
    spec = only_spec(str(tmp_path / "src"), "folder")
    result = build_shard(spec, ShardJob(out, "m", params, OPTIONS, PAGE))
    assert result.rejects == [] and result.num_samples == len(GOOD)
    stored = beton.read_sample_bytes(os.path.join(out, "_work", "train-000000.beton"))
    want = [process_image(encode(GOOD[rel.split("/")[-1][:-4]], "JPEG", quality=92), "k",
                          params).data for rel, _ in spec.items]
    assert stored == want


def test_job_failure_is_one_line_and_exit_1(monkeypatch, capsys, tmp_path):
    """A failure not about one sample: the CLI prints one line and exits 1."""
    from shardforge import cli
    from shardforge.build import job as job_mod
    from shardforge.engine.runner import TaskFailed

    cause = SampleFault("shard train-000000: every one of its 4 samples failed with\nKeyError")
    failed = job_mod.JobFailed(f"m: {TaskFailed('task for train-000000', cause)}; fix it")
    assert "\n" not in str(failed)

    def boom(config, log=None, hooks=None):
        raise failed

    monkeypatch.setattr(job_mod, "run_ingest", boom)
    src = tmp_path / "src" / "c"
    src.mkdir(parents=True)
    rc = cli.main(["ingest", str(tmp_path / "src"), "--name", "m", "--out",
                   str(tmp_path / "out"), "--no-register"])
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert len(err.splitlines()) == 1 and "SampleFault" in err and "train-000000" in err


def test_ingest_with_ray_rejects_and_summarises(tmp_path, ray_local):
    """Through run_ingest and a Ray task: a tar of faults and goods commits; rejects.jsonl
    and the summary carry each reason; the merged .beton is read by ffcv's Loader."""
    from shardforge.build.config import IngestConfig
    from shardforge.build.job import run_ingest

    faults = image_faults() + [Fault("f12_label_2pow64", "png", good_bytes("good0"),
                                     r"outside", 2**64)]
    members = []
    for f in faults:
        members += [(f"{f.name}.{f.ext}", f.data), (f"{f.name}.cls", str(f.label).encode())]
    for g in GOOD:
        members += [(f"{g}.png", good_bytes(g)), (f"{g}.cls", b"0")]
    (tmp_path / "src").mkdir()
    _tar(str(tmp_path / "src" / "data.tar"), members)
    out = str(tmp_path / "out")
    summary = run_ingest(IngestConfig(str(tmp_path / "src"), "m", out, image=PARAMS,
                                      source_options=OPTIONS, page_size=PAGE),
                         log=io.StringIO())
    n_reject = sum(f.reject is not None for f in faults)
    n_ok = len(GOOD) + len(faults) - n_reject
    assert summary["rejects"]["count"] == n_reject and summary["samples"] == n_ok
    lines = [json.loads(x) for x in open(os.path.join(out, "rejects.jsonl"))]
    assert sorted(r["origin"] for r in lines) == sorted(
        f"data.tar#{f.name}" for f in faults if f.reject is not None)
    assert all(r["reason"] for r in lines)
    merged = os.path.join(out, summary["formats"]["beton"]["train"]["path"])
    assert len(ffcv_labels(merged)) == n_ok


# ----------------------------------------------------------------------------- memory

def test_gray16_conversion_is_the_float_formula_exactly():
    """The integer 16-bit -> 8-bit conversion (lower peak memory) gives the bytes the
    float64 formula gave, for every 16-bit value and for 32-bit 'I' images."""
    from shardforge.formats.image import _to_rgb

    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    want = np.clip(np.rint(values.astype(np.float64) * (255.0 / 65535.0)), 0, 255)
    got = _to_rgb(Image.fromarray(values))           # mode I;16
    assert np.array_equal(got[:, :, 0], want.astype(np.uint8))
    wide = np.array([[-5, 0, 255, 256, 40000, 70000]], dtype=np.int32)
    want = np.clip(np.rint(wide.astype(np.float64) * (255.0 / 65535.0)), 0, 255)
    assert np.array_equal(_to_rgb(Image.fromarray(wide, "I"))[:, :, 0], want.astype(np.uint8))
    narrow = np.array([[-5, 0, 17, 255]], dtype=np.int32)
    assert _to_rgb(Image.fromarray(narrow, "I"))[0, :, 0].tolist() == [0, 0, 17, 255]


def test_task_memory_request(ray_local):
    """Shard tasks reserve memory for the largest allowed decode, capped at a node's."""
    from shardforge.build.job import task_memory
    from shardforge.formats.image import DEFAULT_MAX_PIXELS, decode_memory_bytes

    assert decode_memory_bytes(1_000_000) < decode_memory_bytes(DEFAULT_MAX_PIXELS)
    assert task_memory(1_000_000) == decode_memory_bytes(1_000_000)
    node = max(n["Resources"].get("memory", 0) for n in __import__("ray").nodes())
    assert task_memory(10**12) == int(node)


_PEAK_SCRIPT = """
import resource, sys
import numpy as np
from PIL import Image
import io
a = np.zeros((9000, 9000), np.uint16); a[::7, ::3] = 40000
buf = io.BytesIO(); Image.fromarray(a).save(buf, "PNG"); data = buf.getvalue(); del a, buf
from shardforge.formats.image import ImageParams, process_image
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
process_image(data, "k", ImageParams(max_resolution=256))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(len(data), (peak - base) * 1024)
"""


@pytest.mark.slow
def test_peak_memory_of_an_81mp_16bit_png_within_the_request():
    """An 81 MP 16-bit PNG (~170 kB) decodes within PEAK_BYTES_PER_PIXEL per pixel
    (2.0 GB on main's float64 conversion, ~0.8 GB now)."""
    import subprocess
    import sys

    from shardforge.formats.image import PEAK_BYTES_PER_PIXEL

    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT], capture_output=True,
                         text=True, check=True, timeout=120).stdout.split()
    size, delta = int(out[0]), int(out[1])
    assert size < 400_000
    assert delta < 12 * 81_000_000 <= PEAK_BYTES_PER_PIXEL * 81_000_000, delta


def test_reinforce_rejects_bad_parent_samples(tmp_path):
    """Reinforce's own shard loop: each bad parent sample is a reject with a reason; the
    good ones decode (no exception escapes ``_decode``)."""
    from shardforge.variants.reinforce.transform import _decode

    faults = image_faults()
    samples, rejects = _decode(_parent(tmp_path, faults))
    keys = {raw.key for raw, _ in samples}
    assert set(GOOD) <= keys
    assert all(r["reason"] for r in rejects)
    assert len(samples) + len(rejects) == len(GOOD) + len(faults)
    for name in ("f01_empty", "f02_not_image", "f09b_fuzzed_tiff_typeerror"):
        assert f"p.tar#{name}" in {r["origin"] for r in rejects}, rejects


def test_bug_hitting_every_sample_ends_the_job_in_one_line(demo_dataset, tmp_path, ray_local):
    """Through run_ingest and Ray: the shard's SampleFault ends the job as JobFailed, one
    line naming the shard, the error and the fix; nothing is committed."""
    from shardforge.build.config import IngestConfig
    from shardforge.build.job import JobFailed, run_ingest

    def broken(samples, split):      # local: Ray pickles it by value
        raise KeyError("model not loaded")

    out = tmp_path / "out"
    variant = VariantSpec("broken", {}, lambda: broken)
    config = IngestConfig(demo_dataset, "broken", str(out), image=variant.image,
                          variant=variant)
    with pytest.raises(JobFailed) as info:
        run_ingest(config, log=io.StringIO())
    message = str(info.value)
    assert "\n" not in message
    assert re.search(r"task for train-\d{6}: SampleFault: shard train-\d{6}: every one of "
                     r"its \d+ samples failed with KeyError", message), message
    assert "rerun the same command" in message
    assert not (out / "summary.json").exists()


def test_one_line_keeps_the_error_of_a_traceback():
    from shardforge.engine.runner import one_line

    tb = ("System error: No module named 'x'\ntraceback: Traceback (most recent call last):\n"
          "  File \"a.py\", line 1, in f\n    g()\nModuleNotFoundError: No module named 'x'\n")
    assert one_line(tb) == ("System error: No module named 'x' "
                            "ModuleNotFoundError: No module named 'x'")
    assert one_line("a\n  b") == "a b"
    assert len(one_line("x" * 1000)) == 400


def test_unusable_transform_outputs_are_rejects(tmp_path):
    """One bad output of a transform (wrong dtype, repeated key, label out of range, meta
    that is not JSON) is a reject naming the variant and sample; the rest are written."""
    from shardforge.build.transform import Decoded

    class Sloppy:
        def __call__(self, samples, split):
            out = []
            for d in samples:
                if d.key == "good0":
                    out.append(Decoded(d.key, d.label, d.pixels.astype(np.float32)))
                elif d.key == "good1":
                    out += [d, Decoded(d.key, d.label, d.pixels)]      # key twice
                elif d.key == "good2":
                    out.append(Decoded(d.key, -1, d.pixels))
                else:
                    out.append(Decoded(d.key, d.label, d.pixels, {"x": object()}))
            return out

    variant = VariantSpec("sloppy", {}, Sloppy, image=PARAMS)
    out = str(tmp_path / "out")
    result = build_shard(_parent(tmp_path, []), job_for(out, variant), Sloppy())
    reasons = sorted(r["reason"] for r in result.rejects)
    assert result.num_samples == 1 and len(reasons) == 4, reasons
    for needle in ("pixels must be a uint8", "returned this key twice",
                   "label -1 is outside", "TypeError"):
        assert any(needle in r for r in reasons), (needle, reasons)
    assert [k for k, _l, _m in wds_samples(out, "m", "train")] == ["good1"]
