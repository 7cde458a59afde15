"""FFCV ``.beton`` (layout v2) written in parallel: per-shard part files plus a merge.

Why our own writer: ``ffcv.writer.DatasetWriter`` encodes every image itself in the
processes of one machine. We encode each image once in a Ray task (the same bytes go
into the WebDataset tar), so each task writes a *part*: a complete, valid .beton of its
own samples. The driver then merges parts (``formats/beton_merge.py``), which re-packs
the samples' bytes into pages as FFCV's writer would and rewrites the pointers; no image
is decoded or encoded again.

A part (:func:`write_part`) uses the smallest page, a power of two >= 64 KiB, that holds
its largest sample, not the dataset's page (8 MiB by default): only the merge reads parts,
and with 8 MiB pages every part was at least 16 MiB of mostly zeros, all of it hashed for
the shard's manifest and again at every resume check (25-35 ms per shard, a fifth of a
64-image shard's time on natural photos; bench/ingest_cli.py).

Layout (little-endian), as ``ffcv/types.py`` and ``ffcv/writer.py`` define it:
header (24 B) | field descriptors (1041 B each) | metadata table (one row a sample) |
zero pad to a page boundary | data pages (``page_size`` each; all allocations of one
sample inside one page) | allocation table {sample_id, ptr, size} to EOF.
Pointers are absolute file offsets. Zero-filled page tails are left as holes
(sparse files): they cost no disk on filesystems that support them and read as zeros.

Fields written: ``image`` (RGBImageField) and ``label`` (IntField), the two fields of
FFCV's ImageNet example, so FFCV recipes read our files unchanged. Everything else about
a sample (key, original size, checksums) lives in the parquet index, row ``i`` <->
sample ``i``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

VERSION = 2
DEFAULT_PAGE_SIZE = 1 << 23   # 8 MiB: FFCV's default
MIN_PAGE_SIZE = 1 << 21       # 2 MiB: FFCV's lower bound

HEADER = np.dtype([("version", "<u2"), ("num_fields", "<u2"), ("page_size", "<u4"),
                   ("num_samples", "<u8"), ("alloc_table_ptr", "<u8")], align=True)
FIELD_DESC = np.dtype([("type_id", "<u1"), ("name", ("<u1", 16)),
                       ("arguments", ("<u1", 1024))], align=True)
ALLOC = np.dtype([("sample_id", "<u8"), ("ptr", "<u8"), ("size", "<u8")])
RGB_META = np.dtype([("mode", "<u1"), ("width", "<u2"), ("height", "<u2"), ("data_ptr", "<u8")])
INT_META = np.dtype("<i8")
# One aligned struct per sample: [image, label] -> 24 B rows, as ffcv.types.get_metadata_type.
SAMPLE_META = np.dtype([("f0", RGB_META), ("f1", INT_META)], align=True)

TYPE_INT = 1
TYPE_RGB = 2
FIELDS = (("image", TYPE_RGB), ("label", TYPE_INT))

MODE_JPEG = 0
MODE_RAW = 1


class BetonError(ValueError):
    """A .beton file that is not what this module writes or can merge."""


@dataclass(frozen=True)
class BetonSample:
    """What one sample needs in a .beton: stored image bytes and their description."""

    data: bytes
    is_jpeg: bool
    width: int
    height: int
    label: int


def round_up(x: int, multiple: int) -> int:
    """``x`` rounded up to a multiple of ``multiple``."""
    return (x + multiple - 1) // multiple * multiple


def field_descriptors() -> np.ndarray:
    """The descriptors of :data:`FIELDS` as FFCV writes them."""
    descs = np.zeros(len(FIELDS), dtype=FIELD_DESC)
    for i, (name, type_id) in enumerate(FIELDS):
        descs[i]["type_id"] = type_id
        raw = name.encode("ascii")[:16]
        descs[i]["name"][: len(raw)] = np.frombuffer(raw, np.uint8)
    return descs


def metadata_start(num_fields: int) -> int:
    """Where the metadata table starts: after the header and field descriptors."""
    return HEADER.itemsize + FIELD_DESC.itemsize * num_fields


MIN_PART_PAGE_SIZE = 1 << 16   # 64 KiB


def part_page_size(samples: Sequence[BetonSample], page_size: int) -> int:
    """The page of a part holding ``samples``: the smallest power of two >= 64 KiB that
    holds the largest sample, at most ``page_size`` (the dataset's page)."""
    largest = max((len(s.data) for s in samples), default=0)
    return min(page_size, max(MIN_PART_PAGE_SIZE, 1 << max(0, largest - 1).bit_length()))


def write_part(path: str, samples: Sequence[BetonSample], page_size: int) -> None:
    """Write ``samples`` as a part for ``beton_merge.merge_betons`` into a .beton of ``page_size``
    (not atomic: callers rename). A sample larger than ``page_size`` raises BetonError."""
    check_page_size(page_size)
    _write(path, samples, part_page_size(samples, page_size), page_size)


def check_page_size(page_size: int) -> None:
    """Raise ValueError unless ``page_size`` is a power of two >= 2 MiB (FFCV's rule)."""
    if page_size < MIN_PAGE_SIZE or page_size & (page_size - 1):
        raise ValueError(f"page size {page_size} must be a power of two >= {MIN_PAGE_SIZE}")


def write_beton(path: str, samples: Sequence[BetonSample],
                page_size: int = DEFAULT_PAGE_SIZE) -> None:
    """Write ``samples`` as one complete .beton at ``path`` (not atomic: callers rename)."""
    check_page_size(page_size)
    _write(path, samples, page_size, page_size)


def _write(path: str, samples: Sequence[BetonSample], page_size: int, limit: int) -> None:
    n = len(samples)
    meta = np.zeros(n, dtype=SAMPLE_META)
    data_start = round_up(metadata_start(len(FIELDS)) + meta.nbytes, page_size)
    allocs = np.zeros(n, dtype=ALLOC)
    page_base = data_start
    used = 0
    with open(path, "wb") as f:
        f.seek(data_start)
        for i, s in enumerate(samples):
            size = len(s.data)
            if size > limit:
                raise BetonError(f"sample {i} ({size} B) is larger than the page size "
                                 f"{limit}; raise the page size")
            if used + size > page_size:
                page_base += page_size
                used = 0
                f.seek(page_base)
            ptr = page_base + used
            f.write(s.data)
            used += size
            meta[i]["f0"] = (MODE_JPEG if s.is_jpeg else MODE_RAW, s.width, s.height, ptr)
            meta[i]["f1"] = s.label
            allocs[i] = (i, ptr, size)
        alloc_ptr = page_base + page_size if n else data_start
        _write_head(f, n, page_size, alloc_ptr, meta)
        f.seek(alloc_ptr)
        f.write(allocs.tobytes())
        f.truncate(alloc_ptr + allocs.nbytes)


def _write_head(f, n: int, page_size: int, alloc_ptr: int, meta: np.ndarray | None) -> None:
    """Header and field descriptors at byte 0, then ``meta`` (None: written already)."""
    header = np.zeros(1, dtype=HEADER)
    header[0] = (VERSION, len(FIELDS), page_size, n, alloc_ptr)
    f.seek(0)
    f.write(header.tobytes())
    f.write(field_descriptors().tobytes())
    if meta is not None:
        f.write(meta.tobytes())


@dataclass(frozen=True)
class BetonPart:
    """The parsed head of a .beton written by :func:`write_beton`."""

    path: str
    num_samples: int
    page_size: int
    data_start: int
    alloc_ptr: int
    meta: np.ndarray
    allocs: np.ndarray


def read_part(path: str) -> BetonPart:
    """Parse header, metadata and allocation table; raise :class:`BetonError` if invalid."""
    file_size = os.path.getsize(path)
    with open(path, "rb") as f:
        def read_at(offset: int, size: int) -> bytes:
            f.seek(offset)
            return f.read(size)

        return read_head(read_at, file_size, path)


def read_head(read_at: Callable[[int, int], bytes], file_size: int, name: str) -> BetonPart:
    """:func:`read_part` for a file read through ``read_at(offset, size) -> bytes`` (a
    local file, or an object store's range reads), ``file_size`` bytes long; ``name``
    names it in errors (and is the part's ``path``). Reads the header, field descriptors,
    metadata table and allocation table only, never the data pages. Raises
    :class:`BetonError` when they are not what :func:`write_beton` writes, or when the
    header promises more than the file holds."""
    header = np.frombuffer(read_at(0, HEADER.itemsize), dtype=HEADER)
    if len(header) != 1 or int(header[0]["version"]) != VERSION:
        raise BetonError(f"{name}: not a .beton v{VERSION} file")
    _version, num_fields, page_size, n, alloc_ptr = (int(x) for x in header[0].tolist())
    if num_fields != len(FIELDS):
        raise BetonError(f"{name}: fields differ from (image: RGBImage, label: Int)")
    descs = np.frombuffer(read_at(HEADER.itemsize, FIELD_DESC.itemsize * num_fields),
                          dtype=FIELD_DESC)
    if not np.array_equal(descs, field_descriptors()):
        raise BetonError(f"{name}: fields differ from (image: RGBImage, label: Int)")
    meta_start = metadata_start(num_fields)
    if meta_start + SAMPLE_META.itemsize * n > file_size:
        raise BetonError(f"{name}: header says {n:,} samples, more than its "
                         f"{file_size:,} B hold")
    meta = np.frombuffer(read_at(meta_start, SAMPLE_META.itemsize * n),
                         dtype=SAMPLE_META).copy()
    if alloc_ptr == 0 or alloc_ptr > file_size or len(meta) != n:
        raise BetonError(f"{name}: incomplete file (writer did not finish)")
    raw = read_at(alloc_ptr, file_size - alloc_ptr)
    if len(raw) != n * ALLOC.itemsize:
        rows = len(raw) / ALLOC.itemsize
        raise BetonError(f"{name}: allocation table has {rows:g} rows, expected {n}")
    allocs = np.frombuffer(raw, dtype=ALLOC).copy()
    data_start = round_up(meta_start + meta.nbytes, page_size)
    return BetonPart(name, n, page_size, data_start, alloc_ptr, meta, allocs)


def read_sample_bytes(path: str) -> list[bytes]:
    """Every sample's stored image bytes, in order (for tests and verification)."""
    head = read_part(path)
    with open(path, "rb") as f:
        out = []
        for ptr, size in zip(head.meta["f0"]["data_ptr"].tolist(),
                             _sizes_by_sample(head).tolist(), strict=True):
            f.seek(ptr)
            out.append(f.read(size))
    return out


def _sizes_by_sample(head: BetonPart) -> np.ndarray:
    sizes = np.zeros(head.num_samples, dtype=np.uint64)
    sizes[head.allocs["sample_id"].astype(np.int64)] = head.allocs["size"]
    return sizes
