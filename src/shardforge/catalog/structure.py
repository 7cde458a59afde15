"""Structural checks of a build's files without hashing them (``catalog verify --quick``).

- a WebDataset tar: every member header parses (checksum, size, name) up to the end of
  archive marker, and the tar holds as many samples (distinct keys) as its record says;
- a ``.beton``: header, field descriptors, metadata and allocation table parse
  (:func:`shardforge.formats.beton.read_head`), the table ends the file, holds each
  sample once, inside the data pages and inside one page each, and the sample count is
  the split's;
- a wids shard index (``wds/NAME-SPLIT.wids.json``): it parses, and its shards hold
  as many samples as the split;
- the index (parquet): the footer parses and has one row per sample of the build.

Only headers, tables and footers are read (by range: local files and ``s3://`` alike),
never the samples' bytes, so a same-size corruption inside a sample is left to the full
verify (sha256).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shardforge.formats.beton import BetonError, read_head
from shardforge.storage import Location

TAR_BLOCK = 512
READ_BLOCK = 1 << 20        # range reads of 1 MiB: few requests on an object store
_META_TYPES = frozenset(b"xgLK")   # pax and GNU long-name headers: not members


class _BlockReader:
    """Reads of one file through a cache of :data:`READ_BLOCK`-aligned blocks."""

    def __init__(self, loc: Location) -> None:
        self._file = loc.fs.open_input_file(loc.path)
        self._blocks: dict[int, bytes] = {}

    def read(self, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` (fewer at the end of the file)."""
        out = bytearray()
        while size > 0:
            index, skip = divmod(offset, READ_BLOCK)
            block = self._blocks.get(index)
            if block is None:
                if len(self._blocks) >= 4:
                    self._blocks.clear()
                block = self._blocks[index] = self._file.read_at(READ_BLOCK,
                                                                  index * READ_BLOCK)
            piece = block[skip:skip + size]
            if not piece:
                break
            out += piece
            offset += len(piece)
            size -= len(piece)
        return bytes(out)

    def close(self) -> None:
        self._file.close()


def check_structure(label: str, loc: Location, size: int,
                    expected: int | None) -> str | None:
    """What is structurally wrong with the file ``loc`` of ``size`` bytes (None:
    nothing). ``label`` says its kind (``wds[SPLIT]``, ``beton[SPLIT]``, ``index``);
    ``expected`` is the number of samples it should hold (None: unknown)."""
    reader = _BlockReader(loc)
    try:
        if label.startswith("wds["):
            return _tar_problem(reader, size, expected)
        if label.startswith("beton["):
            return _beton_problem(reader, size, loc.url, expected)
        if label.startswith("wids["):
            return _wids_problem(reader, size, expected)
        if label == "index":
            return _parquet_problem(loc, expected)
        return None
    finally:
        reader.close()


def _tar_problem(reader: _BlockReader, size: int, expected: int | None) -> str | None:
    """Walk the tar's member headers; the first problem found, or None."""
    offset, keys, members = 0, set(), 0
    while True:
        head = reader.read(offset, TAR_BLOCK)
        if len(head) < TAR_BLOCK:
            return f"tar ends inside a header at byte {offset:,} (no end-of-archive marker)"
        if head == bytes(TAR_BLOCK):
            if reader.read(offset + TAR_BLOCK, TAR_BLOCK) != bytes(TAR_BLOCK):
                return f"tar has a zero block at byte {offset:,} not followed by another"
            break
        problem = _header_problem(head)
        if problem:
            return f"tar member header at byte {offset:,} is damaged ({problem})"
        length = int(head[124:136].split(b"\0")[0].strip() or b"0", 8)
        data_end = offset + TAR_BLOCK + length
        if data_end > size:
            return (f"tar member at byte {offset:,} ends at byte {data_end:,}, past the end "
                    f"of the file ({size:,} B)")
        if head[156] not in _META_TYPES:
            name = _member_name(head)
            members += 1
            if head[156] in (0, ord("0")):
                keys.add(name.rsplit("/", 1)[-1].split(".", 1)[0])
        offset = data_end + (-length % TAR_BLOCK)
    if expected is not None and len(keys) != expected:
        return (f"tar holds {len(keys):,} samples ({members:,} members), its record says "
                f"{expected:,}")
    return None


def _header_problem(head: bytes) -> str | None:
    """Why a 512-byte tar header is invalid (checksum, size field), or None."""
    try:
        recorded = int(head[148:156].replace(b"\0", b" ").strip() or b"-1", 8)
        int(head[124:136].split(b"\0")[0].strip() or b"0", 8)
    except ValueError:
        return "a number field is not octal"
    computed = sum(head[:148]) + 8 * 32 + sum(head[156:])
    if recorded != computed:
        return f"checksum {recorded}, computed {computed}"
    return None


def _member_name(head: bytes) -> str:
    name = head[:100].split(b"\0")[0].decode("utf-8", "replace")
    prefix = head[345:500].split(b"\0")[0].decode("utf-8", "replace")
    return f"{prefix}/{name}" if prefix else name


def _beton_problem(reader: _BlockReader, size: int, url: str,
                   expected: int | None) -> str | None:
    """Parse the .beton's tables; the first problem found, or None."""
    try:
        head = read_head(reader.read, size, url)
    except BetonError as exc:
        return str(exc).replace(f"{url}: ", "", 1)
    if expected is not None and head.num_samples != expected:
        return f".beton holds {head.num_samples:,} samples, the split has {expected:,}"
    a = head.allocs
    ids = np.sort(a["sample_id"].astype(np.int64))
    if not np.array_equal(ids, np.arange(head.num_samples)):
        return ".beton allocation table does not list each sample once"
    ptr, length = a["ptr"].astype(np.int64), a["size"].astype(np.int64)
    if len(a) and (ptr.min() < head.data_start or (ptr + length).max() > head.alloc_ptr):
        return ".beton allocation table points outside the data pages"
    first = (ptr - head.data_start) // head.page_size
    last = (ptr + np.maximum(length, 1) - 1 - head.data_start) // head.page_size
    if np.any(first != last):
        return ".beton has a sample that crosses a page boundary"
    return None


def _wids_problem(reader: _BlockReader, size: int, expected: int | None) -> str | None:
    """Parse the wids shard index; the first problem found, or None."""
    try:
        doc = json.loads(reader.read(0, size))
        counts = [int(shard["nsamples"]) for shard in doc["shardlist"]]
    except (ValueError, KeyError, TypeError) as exc:
        return f"wids index is not a shard list ({type(exc).__name__}: {exc})"
    if expected is not None and sum(counts) != expected:
        return f"wids index lists {sum(counts):,} samples, the split has {expected:,}"
    return None


def _parquet_problem(loc: Location, expected: int | None) -> str | None:
    """Read the parquet footer; the first problem found, or None."""
    try:
        with loc.fs.open_input_file(loc.path) as f:
            rows = pq.ParquetFile(f).metadata.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        return f"parquet footer unreadable ({' '.join(str(exc).split())})"
    if expected is not None and rows != expected:
        return f"index has {rows:,} rows, the build has {expected:,} samples"
    return None
