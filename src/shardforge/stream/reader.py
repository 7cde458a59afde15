"""Byte-range reads of tar members, as the index locates them.

One :class:`RangeReader` lives in each loader worker process (never shared across a
fork). Local tars are read with ``os.pread`` on a kept-open descriptor; object-store tars
(``s3://``) with ``read_at`` on a kept-open pyarrow input file (a ranged GET each).
:meth:`RangeReader.read` sorts a batch's requests by (shard, offset) and merges requests
in the same tar that lie less than ``gap`` bytes apart into one read, so samples that sit
together in a tar (``order="shards"``) cost one request, not one each.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from shardforge.storage import resolve

LOCAL_GAP = 64 * 1024          # bytes: merging nearby local reads saves syscalls only
REMOTE_GAP = 1024 * 1024       # bytes: a ranged GET costs about as much as ~1 MiB more data
MAX_SPAN = 16 * 1024 * 1024    # never merge into one read larger than this


class ShardReadError(OSError):
    """A tar is missing or shorter than the index says."""


class RangeReader:
    """Reads ``(shard, offset, size)`` ranges from the tars ``shard_urls`` (see module doc).

    ``max_open`` handles stay open (least recently used closed first). ``gap`` overrides
    the merge distance (``LOCAL_GAP`` / ``REMOTE_GAP`` by location; 0 merges only
    touching ranges, a negative value never merges).
    """

    def __init__(self, shard_urls: Sequence[str], max_open: int = 64, gap: int | None = None):
        self.shard_urls = tuple(shard_urls)
        self.max_open = max(1, max_open)
        self.gap = gap
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
            raise ShardReadError(f"reading {length} bytes at {start} of "
                                 f"{self.shard_urls[sid]}: {exc}") from exc
        if len(data) != length:
            raise ShardReadError(f"{self.shard_urls[sid]} ends before byte {start + length} "
                                 f"(got {len(data)} of {length} bytes at {start}); the tar "
                                 "is truncated or does not match index.parquet")
        return data

    def _handle(self, sid: int) -> tuple[str, object]:
        if sid in self._open:
            self._open.move_to_end(sid)
            return self._open[sid]
        url = self.shard_urls[sid]
        loc = resolve(url)
        try:
            if loc.is_local:
                entry: tuple[str, object] = ("local", os.open(loc.path, os.O_RDONLY))
            else:
                entry = ("remote", loc.fs.open_input_file(loc.path))
        except OSError as exc:
            raise ShardReadError(f"cannot open shard {url}: {exc}") from exc
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
