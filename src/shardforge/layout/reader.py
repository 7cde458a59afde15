"""Byte-range reads of tar members, as the index locates them.

One :class:`RangeReader` lives in each loader worker process (never shared across a
fork). Local tars are read with ``os.pread`` on a kept-open descriptor; object-store tars
(``s3://``) with ``read_at`` on a kept-open pyarrow input file (a ranged GET each).
:meth:`RangeReader.read` sorts a batch's requests by (shard, offset) and merges requests
in the same tar that lie less than ``gap`` bytes apart into one read, so samples that sit
together in a tar (``order="shards"``) cost one request, not one each.

Each tar is checked once, when first opened: it must exist and be exactly the size
``summary.json`` records (``sizes``), or at least as long as its last sample's bytes in
the index (``min_sizes``). A failed check, like a read that comes back short, raises
:class:`ShardReadError`: one line with the tar, what is wrong and the fix. (A size check
costs a ``fstat``, or nothing on object stores, whose open already fetched the size;
hashing whole tars at open would cost a full read of every tar, so sample bytes are
checked one by one against the index's sha256 instead, see ``WdsStream(verify=...)``.)
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from shardforge.storage import resolve

LOCAL_GAP = 64 * 1024          # bytes: merging nearby local reads saves syscalls only
REMOTE_GAP = 1024 * 1024       # bytes: a ranged GET costs about as much as ~1 MiB more data
MAX_SPAN = 16 * 1024 * 1024    # never merge into one read larger than this


SHARD_FIX = ("re-stage the dataset's wds/ files from a good copy, or rebuild it (rerun the "
             "same ingest: it rebuilds missing or damaged shards); `shardforge catalog verify "
             "NAME` checks every file of a registered build")


class ShardReadError(OSError):
    """A tar is missing, not the size the dataset records, or shorter than the index says."""


def shard_min_sizes(num_shards: int, shard: np.ndarray, offset: np.ndarray,
                    size: np.ndarray) -> np.ndarray:
    """Per tar, the bytes the index needs: the end of its last sample's image data."""
    need = np.zeros(num_shards, np.int64)
    # In runs of _RUN rows: temporaries of one run, not of the whole split (16 B per row
    # of fresh memory at each loader's start otherwise, 224 MB at 14M rows; docs/scale.md).
    for lo in range(0, len(shard), _RUN):
        run = slice(lo, lo + _RUN)
        np.maximum.at(need, shard[run], offset[run] + size[run])
    return need


_RUN = 1 << 20


def check_shards(shard_urls: Sequence[str], sizes: Sequence[int | None],
                 min_sizes: Sequence[int], threads: int = 16) -> None:
    """Raise :class:`ShardReadError` for the first tar that is missing, shorter than
    ``min_sizes`` or not its recorded size (``sizes``, None = unknown): a ``stat`` per
    local tar, a metadata request per object-store tar (``threads`` at a time)."""
    def size_of(url: str) -> int | None:
        return resolve(url).size()

    urls = list(shard_urls)
    if not urls or resolve(urls[0]).is_local:
        actual = [size_of(u) for u in urls]
    else:
        with ThreadPoolExecutor(max(1, threads)) as pool:
            actual = list(pool.map(size_of, urls))
    for url, got, want, need in zip(urls, actual, sizes, min_sizes, strict=True):
        if got is None:
            raise ShardReadError(f"shard {url} is missing; {SHARD_FIX}")
        check_size(url, got, want, need)


def check_size(url: str, actual: int, want: int | None, need: int) -> None:
    """Raise :class:`ShardReadError` when a tar of ``actual`` bytes is shorter than the
    ``need`` bytes the index needs, or not the ``want`` bytes recorded (None: unknown)."""
    if actual < need:
        recorded = f", summary.json records {want}" if want is not None else ""
        raise ShardReadError(f"shard {url} is truncated: {actual} bytes, shorter than the "
                             f"{need} that index.parquet needs{recorded}; {SHARD_FIX}")
    if want is not None and actual < want:
        raise ShardReadError(f"shard {url} is truncated: {actual} of the {want} bytes "
                             f"summary.json records; {SHARD_FIX}")
    if want is not None and actual != want:
        raise ShardReadError(f"shard {url} has {actual} bytes but summary.json records "
                             f"{want}: it is not the tar this dataset was built with; "
                             f"{SHARD_FIX}")


class RangeReader:
    """Reads ``(shard, offset, size)`` ranges from the tars ``shard_urls`` (see module doc).

    ``max_open`` handles stay open (least recently used closed first). ``gap`` overrides
    the merge distance (``LOCAL_GAP`` / ``REMOTE_GAP`` by location; 0 merges only
    touching ranges, a negative value never merges). ``sizes`` (exact size per tar, or
    None where unknown) and ``min_sizes`` (bytes the index needs per tar) are checked
    when a tar is first opened (see module doc).
    """

    def __init__(self, shard_urls: Sequence[str], max_open: int = 64, gap: int | None = None,
                 sizes: Sequence[int | None] | None = None,
                 min_sizes: Sequence[int] | None = None):
        self.shard_urls = tuple(shard_urls)
        self.max_open = max(1, max_open)
        self.gap = gap
        self.sizes = tuple(sizes) if sizes is not None else (None,) * len(self.shard_urls)
        self.min_sizes = tuple(min_sizes) if min_sizes is not None else (0,) * len(self.shard_urls)
        self._open: OrderedDict[int, tuple[str, object]] = OrderedDict()
        self.requests = 0           # reads issued (for tests and benchmarks)

    def read(self, shard: np.ndarray, offset: np.ndarray, size: np.ndarray) -> list[memoryview]:
        """The bytes of each range, in the order given."""
        n = len(shard)
        out: list[memoryview | None] = [None] * n
        order = np.lexsort((offset, shard))
        i = 0
        while i < n:
            first = order[i]
            sid = int(shard[first])
            kind, handle = self._handle(sid)
            gap = self.gap if self.gap is not None else (LOCAL_GAP if kind == "local" else REMOTE_GAP)
            start, end = int(offset[first]), int(offset[first] + size[first])
            j = i + 1
            while j < n:
                nxt = order[j]
                if (int(shard[nxt]) != sid or gap < 0 or int(offset[nxt]) - end > gap
                        or int(offset[nxt] + size[nxt]) - start > MAX_SPAN):
                    break
                end = max(end, int(offset[nxt] + size[nxt]))
                j += 1
            block = memoryview(self._read(sid, kind, handle, start, end - start))
            for k in order[i:j]:
                lo = int(offset[k]) - start
                out[k] = block[lo:lo + int(size[k])]
            i = j
        return out  # type: ignore[return-value]

    def _read(self, sid: int, kind: str, handle, start: int, length: int) -> bytes:
        self.requests += 1
        try:
            data = os.pread(handle, length, start) if kind == "local" else handle.read_at(length, start)
        except OSError as exc:
            raise ShardReadError(f"shard {self.shard_urls[sid]}: reading {length} bytes at "
                                 f"{start} failed ({exc}); {SHARD_FIX}") from exc
        if len(data) != length:
            raise ShardReadError(f"shard {self.shard_urls[sid]} is truncated: it ends before "
                                 f"byte {start + length} that index.parquet needs (got "
                                 f"{len(data)} of {length} bytes at {start}); {SHARD_FIX}")
        return data

    def _handle(self, sid: int) -> tuple[str, object]:
        if sid in self._open:
            self._open.move_to_end(sid)
            return self._open[sid]
        url = self.shard_urls[sid]
        loc = resolve(url)
        try:
            if loc.is_local:
                fd = os.open(loc.path, os.O_RDONLY)
                entry: tuple[str, object] = ("local", fd)
                actual = os.fstat(fd).st_size
            else:
                handle = loc.fs.open_input_file(loc.path)
                entry, actual = ("remote", handle), handle.size()
        except FileNotFoundError as exc:
            raise ShardReadError(f"shard {url} is missing ({exc.strerror or exc}); "
                                 f"{SHARD_FIX}") from exc
        except OSError as exc:
            raise ShardReadError(f"cannot open shard {url}: {exc}; {SHARD_FIX}") from exc
        try:
            check_size(url, actual, self.sizes[sid], self.min_sizes[sid])
        except ShardReadError:
            self._close(*entry)
            raise
        self._open[sid] = entry
        while len(self._open) > self.max_open:
            self._close(*self._open.popitem(last=False)[1])
        return entry

    @staticmethod
    def _close(kind: str, handle) -> None:
        if kind == "local":
            os.close(handle)
        else:
            handle.close()

    def close(self) -> None:
        """Close every open handle (also done when the reader is garbage-collected)."""
        while self._open:
            self._close(*self._open.popitem()[1])

    def __del__(self) -> None:
        try:
            self.close()
        except (OSError, AttributeError):   # AttributeError: at interpreter exit
            pass
