"""Byte windows of a seekable file: read a member of an archive in place, nothing extracted.

A :class:`Window` is bytes ``[start, start + size)`` of an open seekable file (a local
file, or a pyarrow random-access file on an object store, where every read is one range
request) as a raw stream; :func:`window` wraps it in a buffer so that ``tarfile``'s small
reads become a few large ones (on S3: one ranged GET per ``buffer_size`` bytes).
"""

from __future__ import annotations

import io
import tarfile
from typing import BinaryIO

#: Buffer for streaming a member (a per-class tar, a run of images): 4 MiB per read.
STREAM_BUFFER = 4 << 20


class Window(io.RawIOBase):
    """Bytes ``[start, start + size)`` of the seekable file ``f``, readable and seekable.

    Positions are relative to ``start``; reads stop at ``size`` (a short read at the end
    of ``f`` means the file is shorter than the window: the caller's truncation check).
    ``f`` stays open (it is the caller's): closing the window does not close it.
    """

    def __init__(self, f: BinaryIO, start: int, size: int) -> None:
        super().__init__()
        if start < 0 or size < 0:
            raise ValueError(f"byte window [{start}, {start + size}) is negative")
        self.f, self.start, self.size, self.pos = f, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self.size - self.pos)
        if n <= 0:
            return 0
        self.f.seek(self.start + self.pos)
        data = self.f.read(n)
        b[:len(data)] = data
        self.pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"seek to {base + offset} before the window's start")
        self.pos = base + offset
        return self.pos

    def tell(self) -> int:
        return self.pos


def window(f: BinaryIO, start: int, size: int,
           buffer_size: int = STREAM_BUFFER) -> io.BufferedReader:
    """A buffered, seekable reader of bytes ``[start, start + size)`` of ``f``."""
    return io.BufferedReader(Window(f, start, size), buffer_size=buffer_size)


def block_after(f: BinaryIO, offset: int, end: int) -> bytes:
    """The tar block at ``offset`` when it lies before ``end`` (else ``b""``): what a
    ``tarfile`` that stopped at ``offset`` left unread. ``tarfile`` ends silently at an
    invalid header after the first one, so a non-zero block there is damage."""
    if offset + tarfile.BLOCKSIZE > end:
        return b""
    f.seek(offset)
    return f.read(tarfile.BLOCKSIZE)
