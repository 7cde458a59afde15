"""Local source trees: listing that never hangs, and opening only regular files.

:func:`walk_local` lists a local tree itself (``os.scandir`` + ``lstat``) instead of
pyarrow's recursive ``FileSelector``, which follows directory symlinks without loop
detection (two ``..`` links make it never return) and reports FIFOs as files. Object
stores have no symlinks or special files and keep pyarrow's listing.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO


def stat_stamp(st: os.stat_result) -> str:
    """``size:mtime_ns:inode`` of a local file's stat."""
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


class NotRegularFile(OSError):
    """A source path that is not (or no longer) a regular file: never read."""


def file_type(mode: int) -> str:
    """A readable name of a file type from ``st_mode``."""
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "not a regular file"


def open_local_regular(path: str) -> BinaryIO:
    """Open a local file for reading only if it is a regular file, without blocking.

    ``stat`` first (so a device is never opened), then ``open(O_NONBLOCK | O_NOFOLLOW)``
    and ``fstat`` on the descriptor (so a path swapped for a FIFO or a symlink after the
    check cannot block or redirect the read). Raises :class:`NotRegularFile` naming the
    path and its type, or the OSError of the open.
    """
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(f"{path} is {file_type(st.st_mode)}; only regular files are read")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(f"{path} is {file_type(st.st_mode)}; only regular files "
                                 "are read")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def inside(path: str, real_root: str) -> bool:
    return path == real_root or path.startswith(real_root.rstrip(os.sep) + os.sep)


def walk_local(root: str) -> tuple[list[str], dict[str, str], list[tuple[str, str]]]:
    """List a local tree: ``(dirs, {file relpath: stamp}, [(relpath, reason refused)])``.

    Depth first in sorted name order (deterministic). Regular files and folders are
    listed; symlinks are followed only to targets inside ``root`` (by real path); each
    folder (device, inode) is listed once, so symlink loops end; FIFOs, sockets, devices,
    broken links and links out of the tree are refused with a reason. Hidden entries
    (``.name``) are skipped. Relative paths use ``/``.
    """
    real_root = os.path.realpath(root)
    st = os.stat(real_root)
    listed: dict[tuple[int, int], str] = {(st.st_dev, st.st_ino): "."}
    dirs: list[str] = []
    stamps: dict[str, str] = {}
    refused: list[tuple[str, str]] = []
    stack = [(root, "")]
    while stack:
        path, rel = stack.pop()
        try:
            with os.scandir(path) as it:
                entries = sorted((e for e in it if not e.name.startswith(".")),
                                 key=lambda e: e.name)
        except OSError as exc:
            refused.append((rel or ".", f"folder cannot be listed: {exc}"))
            continue
        children = []
        for entry in entries:
            child, child_rel = entry.path, f"{rel}/{entry.name}" if rel else entry.name
            st, why = follow(child, real_root, entry)
            if st is None:
                refused.append((child_rel, why))
            elif stat.S_ISDIR(st.st_mode):
                ident = (st.st_dev, st.st_ino)
                if ident in listed:
                    refused.append((child_rel, f"folder already listed as {listed[ident]!r} "
                                    "(a symlink loop or a second link to it); not listed again"))
                    continue
                listed[ident] = child_rel
                dirs.append(child_rel)
                children.append((child, child_rel))
            elif stat.S_ISREG(st.st_mode):
                stamps[child_rel] = stat_stamp(st)
            else:
                refused.append((child_rel, f"{file_type(st.st_mode)}; only regular files are "
                                "read (remove it from the source tree)"))
        stack.extend(reversed(children))
    return dirs, stamps, refused


def follow(path: str, real_root: str,
           entry: os.DirEntry | None = None) -> tuple[os.stat_result | None, str]:
    """``(stat, "")`` of ``path`` (through a symlink whose target is inside the root),
    else ``(None, reason)``. ``entry``: its ``os.scandir`` entry, if at hand."""
    try:
        st = entry.stat(follow_symlinks=False) if entry is not None else os.lstat(path)
    except OSError as exc:
        return None, f"cannot stat: {exc}"
    if not stat.S_ISLNK(st.st_mode):
        return st, ""
    target = os.path.realpath(path)
    if not inside(target, real_root):
        return None, (f"symlink to {target}, outside the source root {real_root}: only "
                      "links inside the root are followed; copy the data in or give a "
                      "source root that contains it")
    try:
        return os.stat(path), ""
    except OSError as exc:
        return None, f"broken symlink or symlink loop: {exc}"
