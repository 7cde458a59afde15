"""What is wrong with a catalog database file, in one line: the file, the problem, the fix.

:mod:`shardforge.catalog.store` raises :class:`CatalogUnavailable` with these messages for
a damaged, truncated or newer-schema ``catalog.db``, a read-only home, a lock held past the
timeout and a full disk (the CLI prints the line and exits 1).
"""

from __future__ import annotations

import errno
import os
import shutil
import struct
from pathlib import Path

from shardforge.catalog.errors import RegistrationError
from shardforge.catalog.home import HOME_ENV, TIMEOUT_ENV

_MAGIC = b"SQLite format 3\0"
_LOW_SPACE = 64 * 1024


class CatalogUnavailable(RegistrationError):
    """The catalog database cannot be read or written as asked: damaged or truncated,
    written by a newer shardforge, read-only, locked past the timeout, or on a full disk.
    The message is one line naming the file, the problem and the fix (the CLI exits 1)."""


def damaged(path: Path, problem: str) -> str:
    """The message for a catalog file that is not a usable SQLite database."""
    return (f"catalog {path} is damaged ({problem}); move it aside (mv {path} {path}.damaged) "
            "and register the builds again with `shardforge catalog register OUT` (their "
            "files are not affected)")


def newer_schema(path: Path, version: int, known: int) -> str:
    """The message for a catalog written by a newer shardforge (never modified)."""
    return (f"catalog {path} was written by a newer shardforge (schema version {version}; "
            f"this one knows up to {known}); upgrade shardforge (pip install -U shardforge) "
            "to use it; it was left unchanged")


def explain(exc: BaseException, path: Path, timeout: float, writing: bool) -> str:
    """One line for a SQLite or OS error met while reading (``writing`` False) or writing
    the catalog ``path``, classified by SQLite's message and the state of the home."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    low = text.lower()
    home = path.parent
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        return damaged(path, text)
    if "locked" in low or "busy" in low:
        return (f"catalog {path} stayed locked for {timeout:g} s ({text}): another process "
                "holds it; retry when it has finished, or wait longer with "
                f"{TIMEOUT_ENV}=SECONDS")
    if "full" in low or getattr(exc, "errno", None) == errno.ENOSPC or (
            "i/o error" in low and free_bytes(home) < _LOW_SPACE):
        return (f"catalog {path} cannot be written: the disk is full ({text}); free space on "
                f"the filesystem of {home} and retry (nothing was registered)")
    if writing and ("readonly" in low or "read-only" in low or "permission" in low
                    or not os.access(_existing(home), os.W_OK)):
        return (f"catalog {path} cannot be written ({text}): {home} is read-only; make it "
                f"writable, or use a writable home (--home DIR or {HOME_ENV}=DIR)")
    return (f"cannot {'write' if writing else 'read'} the catalog {path} ({text}); check "
            f"that {home} is a {'writable' if writing else 'readable'} local directory")


def header_problem(path: Path) -> str | None:
    """What is wrong with the SQLite header of ``path`` (None: fine, empty or absent).

    Checks the magic string and, for a WAL-mode file with no ``-wal`` next to it (so no
    checkpoint can be under way), that the file holds as many pages as its header says.
    """
    try:
        size = path.stat().st_size
        if size == 0:
            return None
        with open(path, "rb") as f:
            head = f.read(100)
    except FileNotFoundError:
        return None
    if len(head) < 100 or not head.startswith(_MAGIC):
        return f"{size:,} B, not a SQLite database"
    page_size = struct.unpack(">H", head[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    changes, pages, valid_for = (struct.unpack(">I", head[i:i + 4])[0] for i in (24, 28, 92))
    if (head[18:20] == b"\x02\x02" and changes == valid_for and pages
            and not nonempty(f"{path}-wal") and size < pages * page_size):
        return f"truncated: {size:,} B, its header says {pages * page_size:,} B"
    return None


def header_user_version(path: Path) -> int:
    """The schema version (``PRAGMA user_version``) in the file's header; 0 when absent."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except FileNotFoundError:
        return 0
    return struct.unpack(">i", head[60:64])[0] if len(head) == 64 else 0


def nonempty(path: str) -> bool:
    """Whether ``path`` exists and has bytes (a ``-wal`` that holds pages)."""
    try:
        return os.path.getsize(path) > 0
    except OSError:
        return False


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem of ``path`` (or its nearest existing parent)."""
    try:
        return shutil.disk_usage(_existing(path)).free
    except OSError:
        return 1 << 62


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


__all__ = ["CatalogUnavailable", "damaged", "explain", "header_problem",
           "header_user_version", "newer_schema", "nonempty", "free_bytes"]
