"""The .beton part writer and merge, read back by ffcv.loader.Loader."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from helpers import ffcv_labels

from shardforge.formats import beton
from shardforge.formats.beton_merge import merge_betons
from shardforge.formats.image import encode_jpeg


def _samples(n: int, seed: int, big: bool = False) -> list[beton.BetonSample]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = (int(x) for x in rng.integers(20, 60, 2))
        pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        if big and i % 2:
            data, is_jpeg = pixels.tobytes(), False
        else:
            data, is_jpeg = encode_jpeg(pixels, 90), True
        out.append(beton.BetonSample(data, is_jpeg, w, h, int(rng.integers(0, 1000))))
    return out


def test_layout_matches_ffcv_types():
    from ffcv.types import ALLOC_TABLE_TYPE, FieldDescType, HeaderType

    assert beton.HEADER == HeaderType and beton.HEADER.itemsize == 24
    assert beton.FIELD_DESC == FieldDescType and beton.FIELD_DESC.itemsize == 1041
    assert beton.ALLOC == ALLOC_TABLE_TYPE
    assert beton.SAMPLE_META.itemsize == 24


def test_ffcv_writer_and_ours_agree_on_metadata(tmp_path):
    """FFCV's own DatasetWriter and ours describe the same samples identically."""
    from ffcv.fields import IntField, RGBImageField
    from ffcv.reader import Reader
    from ffcv.writer import DatasetWriter

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (17 + i, 23, 3), dtype=np.uint8) for i in range(5)]
    ffcv_path = str(tmp_path / "ffcv.beton")
    writer = DatasetWriter(ffcv_path, {"image": RGBImageField(write_mode="raw"),
                                       "label": IntField()}, num_workers=1)
    writer.from_indexed_dataset([(im, i) for i, im in enumerate(images)])
    ours = str(tmp_path / "ours.beton")
    beton.write_beton(ours, [beton.BetonSample(im.tobytes(), False, 23, 17 + i, i)
                             for i, im in enumerate(images)])
    a, b = Reader(ffcv_path), Reader(ours)
    assert a.metadata.dtype == b.metadata.dtype
    assert np.array_equal(a.metadata["f1"], b.metadata["f1"])
    for f in ("mode", "width", "height"):
        assert np.array_equal(a.metadata["f0"][f], b.metadata["f0"][f])
    assert beton.read_sample_bytes(ours) == [im.tobytes() for im in images]


@pytest.mark.parametrize("sizes", [(7, 0, 13), (1,), (40, 40)])
def test_merge_preserves_samples_and_order(tmp_path, sizes):
    parts, expected = [], []
    for k, n in enumerate(sizes):
        samples = _samples(n, k, big=True)
        path = str(tmp_path / f"p{k}.beton")
        beton.write_beton(path, samples, page_size=beton.MIN_PAGE_SIZE)
        parts.append(path)
        expected.extend(samples)
    merged = str(tmp_path / "merged.beton")
    result = merge_betons(parts, merged)
    assert result.num_samples == len(expected)
    # The digest made while writing is the file's (holes read as zeros included).
    assert result.sha256 == hashlib.sha256(open(merged, "rb").read()).hexdigest()
    assert beton.read_sample_bytes(merged) == [s.data for s in expected]
    if expected:
        assert ffcv_labels(merged) == [s.label for s in expected]


def test_samples_span_many_pages(tmp_path):
    """Raw 60x60 images fill 2 MiB pages quickly: many pages per part, still exact."""
    samples = [beton.BetonSample(bytes([i % 251]) * (500_000), False, 500, 333, i)
               for i in range(12)]
    a, b = str(tmp_path / "a.beton"), str(tmp_path / "b.beton")
    beton.write_beton(a, samples[:5], page_size=beton.MIN_PAGE_SIZE)
    beton.write_beton(b, samples[5:], page_size=beton.MIN_PAGE_SIZE)
    merged = str(tmp_path / "m.beton")
    digest = merge_betons([a, b], merged).sha256
    assert digest == hashlib.sha256(open(merged, "rb").read()).hexdigest()
    assert beton.read_sample_bytes(merged) == [s.data for s in samples]
    head = beton.read_part(merged)
    ptrs = head.allocs["ptr"].astype(np.int64)
    sizes = head.allocs["size"].astype(np.int64)
    # every allocation lies inside one page, as FFCV's page reader requires
    assert np.all(ptrs // beton.MIN_PAGE_SIZE == (ptrs + sizes - 1) // beton.MIN_PAGE_SIZE)


def test_rejects_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="page size"):
        beton.write_beton(str(tmp_path / "x"), [], page_size=12345)
    too_big = beton.BetonSample(b"x" * (beton.MIN_PAGE_SIZE + 1), False, 1, 1, 0)
    with pytest.raises(beton.BetonError, match="larger than the page size"):
        beton.write_beton(str(tmp_path / "y"), [too_big], page_size=beton.MIN_PAGE_SIZE)
    half = str(tmp_path / "half.beton")
    beton.write_beton(half, _samples(3, 0))
    with open(half, "r+b") as f:
        f.seek(16)
        f.write(b"\0" * 8)  # alloc_table_ptr = 0: the writer never finished
    with pytest.raises(beton.BetonError, match="incomplete"):
        beton.read_part(half)
    a = str(tmp_path / "a.beton")
    b = str(tmp_path / "b.beton")
    beton.write_beton(a, _samples(2, 1), page_size=beton.MIN_PAGE_SIZE)
    beton.write_beton(b, _samples(2, 2), page_size=2 * beton.MIN_PAGE_SIZE)
    with pytest.raises(beton.BetonError, match="different page sizes"):
        merge_betons([a, b], str(tmp_path / "m.beton"))


def test_merge_packs_partly_filled_pages_to_ffcvs_own_size(tmp_path):
    """Six parts, each less than a page of raw images: the merge packs their pages together,
    so the merged file is no bigger than FFCV's DatasetWriter writing the same samples
    (within 2%), every sample stays inside one page, and FFCV's Loader reads it."""
    import os

    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter

    rng = np.random.default_rng(7)
    images = [rng.integers(0, 255, (int(rng.integers(150, 260)), 300, 3), dtype=np.uint8)
              for _ in range(36)]
    samples = [beton.BetonSample(im.tobytes(), False, im.shape[1], im.shape[0], i)
               for i, im in enumerate(images)]
    parts = []
    for k in range(6):
        path = str(tmp_path / f"p{k}.beton")
        beton.write_beton(path, samples[6 * k:6 * k + 6], page_size=beton.MIN_PAGE_SIZE)
        parts.append(path)
    merged = str(tmp_path / "merged.beton")
    merge_betons(parts, merged)
    ffcv_path = str(tmp_path / "ffcv.beton")
    DatasetWriter(ffcv_path, {"image": RGBImageField(write_mode="raw"), "label": IntField()},
                  num_workers=1, page_size=beton.MIN_PAGE_SIZE).from_indexed_dataset(
        [(im, i) for i, im in enumerate(images)])
    assert os.path.getsize(merged) <= 1.02 * os.path.getsize(ffcv_path)
    unpacked = sum(os.path.getsize(p) for p in parts)
    assert os.path.getsize(merged) < 0.5 * unpacked          # 6 page tails -> shared pages
    assert beton.read_sample_bytes(merged) == [s.data for s in samples]
    head = beton.read_part(merged)
    ptrs, sizes = head.allocs["ptr"].astype(np.int64), head.allocs["size"].astype(np.int64)
    assert np.all(ptrs // beton.MIN_PAGE_SIZE == (ptrs + sizes - 1) // beton.MIN_PAGE_SIZE)
    assert ffcv_labels(merged) == list(range(36))


def test_compact_parts_merge_to_the_same_bytes(tmp_path):
    """write_part uses small pages (64 KiB .. the largest sample's power of two): the
    parts are a fraction of page-sized parts, and merging them into 8 MiB pages gives a
    file byte-identical to merging page-sized parts; a part with pages larger than the
    merged file's is refused."""
    import os

    rng = np.random.default_rng(3)
    sizes = [int(x) for x in rng.integers(1_000, 300_000, 40)]
    samples = [beton.BetonSample(bytes(rng.integers(0, 255, n, dtype=np.uint8)), True, 9, 9, i)
               for i, n in enumerate(sizes)]
    compact, full = [], []
    for k in range(4):
        chunk = samples[10 * k:10 * k + 10]
        c, f = str(tmp_path / f"c{k}"), str(tmp_path / f"f{k}")
        beton.write_part(c, chunk, beton.DEFAULT_PAGE_SIZE)
        beton.write_beton(f, chunk, beton.DEFAULT_PAGE_SIZE)
        assert beton.read_part(c).page_size == beton.part_page_size(chunk, beton.DEFAULT_PAGE_SIZE)
        assert beton.read_part(c).page_size <= 1 << 19          # largest sample < 512 KiB
        assert os.path.getsize(c) < 0.3 * os.path.getsize(f)
        compact.append(c)
        full.append(f)
    a, b = str(tmp_path / "a.beton"), str(tmp_path / "b.beton")
    merge_betons(compact, a, beton.DEFAULT_PAGE_SIZE)
    merge_betons(full, b)
    assert open(a, "rb").read() == open(b, "rb").read()
    assert ffcv_labels(a) == list(range(40))
    with pytest.raises(beton.BetonError, match="pages larger than the merged file"):
        merge_betons(full, str(tmp_path / "m"), beton.MIN_PAGE_SIZE)
    assert beton.part_page_size([], beton.DEFAULT_PAGE_SIZE) == beton.MIN_PART_PAGE_SIZE
    big = [beton.BetonSample(b"x" * (3 << 20), False, 1, 1, 0)]
    assert beton.part_page_size(big, beton.DEFAULT_PAGE_SIZE) == 4 << 20
