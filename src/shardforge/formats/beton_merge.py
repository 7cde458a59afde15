"""Merge .beton parts (:func:`shardforge.formats.beton.write_part`) into one .beton.

The merge re-packs the samples' bytes into pages exactly as FFCV's writer fills them and
rewrites the pointers; nothing is decoded or encoded (see :func:`merge_betons`).
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shardforge.formats.beton import (
    ALLOC,
    DEFAULT_PAGE_SIZE,
    FIELDS,
    HEADER,
    SAMPLE_META,
    VERSION,
    BetonError,
    BetonPart,
    check_page_size,
    field_descriptors,
    metadata_start,
    read_part,
    round_up,
)


@dataclass(frozen=True)
class MergedBeton:
    """What :func:`merge_betons` wrote: its samples and the sha256 of its bytes."""

    num_samples: int
    sha256: str


def merge_betons(parts: Sequence[str], out_path: str,
                 page_size: int | None = None) -> MergedBeton:
    """Merge part files into one .beton at ``out_path`` with pages of ``page_size``
    (default: the parts' page size, which must then be the same in every part); return
    its samples and sha256. A part's page may be smaller than ``page_size``, never larger.

    Sample order is the order of ``parts``, then each part's own order. Samples are
    re-packed into pages in that order exactly as FFCV's writer fills pages (the next
    sample goes into the current page if it fits, else it starts a new one), so every
    sample stays inside one page (FFCV's page reader), the parts' partly filled pages
    leave no tails (the merged file is FFCV's writer's size; issue #16), and no byte is
    re-encoded: only the bytes move and the pointers in the metadata and allocation table
    change. Not atomic: callers rename.

    The file is written front to back, so its sha256 is computed as it is written, on a
    second thread (hashlib releases the GIL), instead of reading the file again: the
    pointers come first from the parts' sizes alone (the packing depends on nothing
    else), then the header and metadata, then the pages (each part page read once).

    Memory: one part's tables at a time plus 32 B per sample (the allocation table,
    written after the last page, and the new pointers); each part's metadata rows go to
    their place as they are made (issue #16: holding every part's tables and the merged
    ones cost ~150 B per sample of driver memory).
    """
    heads = [_part_shape(path, page_size) for path in parts]
    sizes = {h[1] for h in heads}
    if page_size is None:
        if len(sizes) > 1:
            raise BetonError(f"parts have different page sizes {sorted(sizes)}; pass "
                             "the merged file's page_size or rebuild them with one --page-size")
        page_size = sizes.pop() if sizes else DEFAULT_PAGE_SIZE
    check_page_size(page_size)
    total = sum(h[0] for h in heads)
    meta_start = metadata_start(len(FIELDS))
    data_start = round_up(meta_start + SAMPLE_META.itemsize * total, page_size)
    # 1. Pointers, from sizes only.
    packer = _PagePacker(data_start, page_size)
    pointers = [packer.place(_read_same(path, n).allocs) for path, (n, _) in zip(
        parts, heads, strict=True)]
    alloc_ptr = packer.end()
    hasher = _Hasher()
    allocs = np.zeros(total, dtype=ALLOC)   # 24 B a sample: written last, after the pages
    try:
        with open(out_path, "wb") as out:
            # 2. Header, field descriptors, metadata rows, zeros to the first page.
            header = np.zeros(1, dtype=HEADER)
            header[0] = (VERSION, len(FIELDS), page_size, total, alloc_ptr)
            hasher.write(out, header.tobytes())
            hasher.write(out, field_descriptors().tobytes())
            first = 0
            for path, (n, _), new_ptr in zip(parts, heads, pointers, strict=True):
                h = _read_same(path, n)
                a = allocs[first:first + n]
                a[:] = h.allocs
                a["ptr"] = new_ptr.astype(np.uint64)
                a["sample_id"] += np.uint64(first)
                by_sample = np.zeros(n, np.int64)
                by_sample[h.allocs["sample_id"].astype(np.int64)] = new_ptr
                h.meta["f0"]["data_ptr"] = by_sample.astype(np.uint64)
                rows = np.zeros(n, dtype=SAMPLE_META)
                rows[:] = h.meta  # by field: padding stays 0 (a copy leaves h.meta's undefined)
                hasher.write(out, rows.tobytes())
                first += n
            hasher.zeros(out, data_start - out.tell())
            # 3. The pages, in order; then the allocation table.
            for path, (n, _), new_ptr in zip(parts, heads, pointers, strict=True):
                packer.copy(_read_same(path, n), new_ptr, out, hasher)
            packer.flush(out, hasher)
            hasher.zeros(out, alloc_ptr - out.tell())
            hasher.write(out, allocs.view(np.uint8).data)
            out.truncate()
    finally:
        digest = hasher.close()
    return MergedBeton(total, digest)


def _part_shape(path: str, page_size: int | None) -> tuple[int, int]:
    """``(samples, page size)`` of a part; BetonError if its pages exceed ``page_size``."""
    head = read_part(path)
    if page_size is not None and head.page_size > page_size:
        raise BetonError(f"part {path} has pages larger than the merged file's "
                         f"{page_size} B ({head.page_size} B); rebuild it with this "
                         "--page-size")
    return head.num_samples, head.page_size


def _read_same(path: str, n: int) -> BetonPart:
    head = read_part(path)
    if head.num_samples != n:
        raise BetonError(f"part {path} changed during the merge ({n} samples, now "
                         f"{head.num_samples}); rerun the merge")
    return head


class _Hasher:
    """sha256 of what is written, in order, computed on a second thread."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._queue: queue.Queue = queue.Queue(maxsize=8)     # <= 8 pages in flight
        self._thread = threading.Thread(target=self._run, name="beton-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (block := self._queue.get()) is not None:
            self._sha.update(block)

    def write(self, out, block) -> None:
        """Write ``block`` to ``out`` at its position and hash it."""
        out.write(block)
        self._queue.put(block)

    def zeros(self, out, n: int) -> None:
        """Skip ``n`` bytes of ``out`` (a hole, read as zeros) and hash ``n`` zeros."""
        if n < 0:
            raise AssertionError(f"merge wrote {-n} B past a page boundary")
        out.seek(n, os.SEEK_CUR)
        while n:
            step = min(n, len(_ZEROS))
            self._queue.put(_ZEROS[:step])
            n -= step

    def close(self) -> str:
        self._queue.put(None)
        self._thread.join()
        return self._sha.hexdigest()


_ZEROS = memoryview(bytes(1 << 22))


class _PagePacker:
    """Fills output pages with sample bytes in order, FFCV's writer rule (a sample that
    does not fit the current page starts the next one)."""

    def __init__(self, data_start: int, page_size: int) -> None:
        self.page_size = page_size
        self.data_start = data_start
        self.page_base = data_start     # where the page being filled starts
        self.used = 0                   # its bytes so far
        self.page = bytearray()

    def place(self, allocs: np.ndarray) -> np.ndarray:
        """The new pointer of each allocation row of a part (pass 1: sizes only)."""
        ptrs = allocs["ptr"].astype(np.int64)
        sizes = allocs["size"].astype(np.int64)
        new_ptr = np.zeros(len(ptrs), np.int64)
        base, used, page = self.page_base, self.used, self.page_size
        for r in np.argsort(ptrs, kind="stable").tolist():
            size = int(sizes[r])
            if used + size > page:
                base += page
                used = 0
            new_ptr[r] = base + used
            used += size
        self.page_base, self.used = base, used
        return new_ptr

    def end(self) -> int:
        """Where the allocation table starts: the page after the last one filled (all
        pointers placed); resets the packer for :meth:`copy`."""
        end = self.page_base + self.page_size if self.used else self.page_base
        self.page_base, self.used = self.data_start, 0
        return end

    def copy(self, part: BetonPart, new_ptr: np.ndarray, out, hasher: _Hasher) -> None:
        """Copy ``part``'s sample bytes to the places :meth:`place` gave them (pass 2)."""
        ptrs = part.allocs["ptr"].astype(np.int64)
        sizes = part.allocs["size"].astype(np.int64)
        pages = (ptrs - part.data_start) // part.page_size
        with open(part.path, "rb") as src:
            block_page, block, block_start = -1, memoryview(b""), 0
            for r in np.argsort(ptrs, kind="stable").tolist():
                if pages[r] != block_page:      # read the part page's used bytes once
                    rows = pages == pages[r]
                    block_page = int(pages[r])
                    block_start = part.data_start + block_page * part.page_size
                    src.seek(block_start)
                    block = memoryview(src.read(
                        int((ptrs[rows] + sizes[rows]).max() - block_start)))
                target = int(new_ptr[r])
                if target >= self.page_base + self.page_size:   # the next page
                    self.flush(out, hasher)
                    hasher.zeros(out, target - self.page_base)
                    self.page_base = target
                if target != self.page_base + len(self.page):
                    raise AssertionError(f"{part.path}: sample bytes out of place")
                offset = int(ptrs[r]) - block_start
                self.page += block[offset:offset + int(sizes[r])]

    def flush(self, out, hasher: _Hasher) -> None:
        """Write the page being filled, then the zeros to its end."""
        if not self.page:
            return
        hasher.write(out, self.page)    # never changed after: a new page is a new object
        hasher.zeros(out, self.page_size - len(self.page))
        self.page_base += self.page_size
        self.page = bytearray()
