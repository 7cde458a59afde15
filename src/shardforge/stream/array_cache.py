"""A node-local, memory-mapped cache of named arrays, built once per digest (the replay
cache of reinforced splits, :mod:`shardforge.stream.replay`, and the index cache of
loaders, :mod:`shardforge.stream.index_cache`).

:func:`open_or_build` keeps named ``.npy`` arrays in ``CACHE_DIR/DIGEST/`` (the digest
names everything the arrays are derived from). The first caller builds them: files are
created with ``np.lib.format.open_memmap`` under temporary names, filled by a caller's
function that opens them as memmaps for one piece of work at a time (so neither the
arrays nor their dirty pages are held for the whole build), then renamed into place
(atomic), and ``meta.json`` (shapes, dtypes, sizes, sha256s) is written last, also by
rename. Every later caller opens them read-only with ``np.load(mmap_mode="r")``: the
pages live in the OS page cache, shared by every process on the node, and a process
only faults in the pages it reads.

Concurrency: processes of one node (ranks, loader workers) serialise builds on an
exclusive ``flock`` of ``DIGEST/lock``; whoever gets it second finds the finished arrays
and opens them. Without working locks (some network filesystems) builds may run twice:
each rename is atomic and every build writes the same bytes, so the last one wins.

Trust: an open checks ``meta.json`` against the expected shapes and dtypes, each file's
size and ``.npy`` header, and a sampled sha256 (header, 64 spread 4 KiB blocks and the
last block), which catches truncation, a replaced file and most overwrites; a mismatch
rebuilds the arrays (with a warning). ``verify=True`` also rehashes every byte against
the full sha256 recorded at build time (a pass over the arrays; ~20 s per 35 GB).
Stale digests are never removed automatically: delete ``CACHE_DIR`` to reclaim space.

Durability: a build is flushed to disk (``fsync``) before ``meta.json`` names it, so a
crash cannot leave a half-written cache that looks complete. For arrays that are cheap
to rebuild, ``durable=False`` skips the flushes and the full sha256 and records the
kernel's boot id instead: until the next reboot the page cache serves what was written,
whether or not it reached the disk, and after a reboot the cache is rebuilt. (The
index cache's build at 14M rows spent seconds writing back 2.4 GB, docs/scale.md.)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np

from shardforge.storage import replace_durably

CACHE_FORMAT = 1
META_FILE = "meta.json"
LOCK_FILE = "lock"
_BLOCK = 4096
_SAMPLES = 64
_HASH_CHUNK = 1 << 24

#: ``name -> (shape, dtype)`` of the arrays a cache holds.
Specs = Mapping[str, tuple[tuple[int, ...], np.dtype]]
#: Opens the arrays being built as writable memmaps for the ``with`` block.
OpenWritable = Callable[[], contextlib.AbstractContextManager[dict[str, np.memmap]]]


def open_or_build(directory: str | os.PathLike, digest: str,
                  specs: Specs | Callable[[], Specs], fill: Callable[[OpenWritable], None], *,
                  scratch: Specs | None = None, verify: bool = False,
                  durable: bool = True) -> dict[str, np.memmap]:
    """The arrays ``specs`` of ``directory`` (one digest's folder), opened read-only as
    memmaps; built first with ``fill`` when missing, stale or corrupt.

    ``specs`` may be a function giving them, for arrays whose shapes are known only once
    their inputs are read: it is called only to build, and a cache found complete for
    ``digest`` opens with the arrays its ``meta.json`` describes (each still checked).

    ``fill(open_writable)`` fills zero-initialised arrays: each ``with open_writable() as
    arrays`` opens ``specs`` plus the ``scratch`` arrays (deleted after the build, e.g.
    a "filled" mask) as writable memmaps, flushed and unmapped when the block ends. An
    exception from ``fill`` leaves no array behind and propagates. ``durable=False``: see
    the module docstring (no full sha256 is recorded, so ``verify`` is refused).
    """
    if verify and not durable:
        raise ValueError("open_or_build: verify=True needs the full sha256 that only a "
                         "durable build records")
    where = Path(directory)
    scratch = dict(scratch or {})
    known = None if callable(specs) else specs
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"cannot create the array cache folder {where}: {exc}; pass a "
                      "writable local cache folder") from exc
    arrays, _ = _open(where, digest, known, verify)
    if arrays is not None:
        return arrays
    with _locked(where / LOCK_FILE):
        arrays, reason = _open(where, digest, known, verify)   # built while we waited?
        if arrays is not None:
            return arrays
        if reason is not None:
            warnings.warn(f"array cache {where}: {reason}; rebuilding it", stacklevel=2)
        known = dict(specs() if callable(specs) else specs)
        clash = set(scratch) & set(known)
        if clash:
            raise ValueError(f"open_or_build: scratch arrays {sorted(clash)} clash with specs")
        _build(where, digest, known, scratch, fill, durable)
    arrays, reason = _open(where, digest, known, verify)
    if arrays is None:
        raise OSError(f"array cache {where} does not open right after its build ({reason}); "
                      "is another process writing there, or the disk full?")
    return arrays


def reopen(directory: str | os.PathLike, specs: Specs) -> dict[str, np.memmap]:
    """The arrays of a cache :func:`open_or_build` returned before (e.g. in an unpickled
    copy), opened read-only; only shapes and dtypes are checked."""
    out = {}
    for name, (shape, dtype) in specs.items():
        path = Path(directory) / f"{name}.npy"
        arr = np.load(path, mmap_mode="r")
        if arr.shape != tuple(shape) or arr.dtype != np.dtype(dtype):
            raise ValueError(f"{path}: {arr.shape} {arr.dtype}, expected {tuple(shape)} "
                             f"{np.dtype(dtype)}; the cache was rebuilt for other inputs: "
                             "load the split again")
        out[name] = arr
    return out


# --------------------------------------------------------------------------- opening
def _open(where: Path, digest: str, specs: Specs | None,
          verify: bool) -> tuple[dict[str, np.memmap] | None, str | None]:
    """(arrays, None) when the cache is complete and sound, else (None, why) where
    ``why`` is None for a cache never built. ``specs`` None: those ``meta.json`` lists."""
    try:
        meta = json.loads((where / META_FILE).read_text())
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        return None, f"unreadable {META_FILE} ({exc})"
    if meta.get("format") != CACHE_FORMAT or meta.get("digest") != digest:
        return None, f"{META_FILE} is for format {meta.get('format')} digest {meta.get('digest')}"
    if "boot_id" in meta and meta["boot_id"] != _boot_id():
        return None, "it was built before the last reboot and not flushed to disk"
    if specs is None:
        try:
            specs = {name: (tuple(a["shape"]), np.lib.format.descr_to_dtype(
                json.loads(a["dtype"]))) for name, a in meta["arrays"].items()}
        except (KeyError, TypeError, ValueError) as exc:
            return None, f"{META_FILE} does not describe its arrays ({exc!r})"
    out = {}
    for name, (shape, dtype) in specs.items():
        want = meta.get("arrays", {}).get(name)
        expect = {"shape": list(shape), "dtype": _descr(dtype)}
        if want is None or {k: want.get(k) for k in expect} != expect:
            return None, f"{META_FILE} describes {name} as {want}, expected {expect}"
        path = where / f"{name}.npy"
        try:
            if path.stat().st_size != want["size"]:
                return None, f"{path.name} has {path.stat().st_size} bytes, not {want['size']}"
            if _sampled_sha256(path) != want["sampled_sha256"]:
                return None, f"{path.name} differs from the one built (sampled sha256)"
            if verify and _file_sha256(path) != want["sha256"]:
                return None, f"{path.name} differs from the one built (sha256)"
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            return None, f"{path.name} does not open ({exc})"
        if arr.shape != tuple(shape) or arr.dtype != np.dtype(dtype):
            return None, f"{path.name} holds {arr.shape} {arr.dtype}"
        out[name] = arr
    return out, None


def _descr(dtype: np.dtype) -> str:
    return json.dumps(np.lib.format.dtype_to_descr(np.dtype(dtype)))


def _sampled_sha256(path: Path) -> str:
    """sha256 of the size, the first block, ``_SAMPLES`` evenly spread blocks and the
    last block of ``path``."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    starts = np.linspace(0, max(0, size - _BLOCK), _SAMPLES + 2).astype(np.int64)
    with open(path, "rb") as f:
        for start in starts.tolist():
            f.seek(start)
            h.update(f.read(_BLOCK))
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- building
def _boot_id() -> str | None:
    """This boot's id (Linux), None where the kernel has none to give."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _build(where: Path, digest: str, specs: Specs, scratch: Specs,
           fill: Callable[[OpenWritable], None], durable: bool = True) -> None:
    boot = None if durable else _boot_id()
    durable = boot is None        # no boot id to bound the trust by: build durably
    (where / META_FILE).unlink(missing_ok=True)          # invalid from here on
    tag = f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    every = {**specs, **scratch}
    tmp = {name: where / f"{name}.npy{tag}" for name in every}
    try:
        for name, (shape, dtype) in every.items():    # zero-filled (sparse) files
            arr = np.lib.format.open_memmap(tmp[name], mode="w+", dtype=dtype,
                                            shape=tuple(shape))
            arr.flush()
            del arr

        @contextlib.contextmanager
        def open_writable() -> Iterator[dict[str, np.memmap]]:
            arrays = {name: np.load(tmp[name], mmap_mode="r+") for name in every}
            try:
                yield arrays
            finally:
                for arr in arrays.values() if durable else ():
                    arr.flush()
                arrays.clear()

        fill(open_writable)
        arrays_meta = {}
        for name, (shape, dtype) in specs.items():
            arrays_meta[name] = {"shape": list(shape), "dtype": _descr(dtype),
                                 "size": tmp[name].stat().st_size,
                                 "sampled_sha256": _sampled_sha256(tmp[name])}
            if durable:
                with open(tmp[name], "rb+") as f:
                    os.fsync(f.fileno())
                arrays_meta[name]["sha256"] = _file_sha256(tmp[name])
        replace = replace_durably if durable else os.replace
        for name in specs:
            replace(str(tmp[name]), str(where / f"{name}.npy"))
        meta_tmp = where / f"{META_FILE}{tag}"
        meta = {"format": CACHE_FORMAT, "digest": digest, "arrays": arrays_meta}
        meta_tmp.write_text(json.dumps(meta if durable else {**meta, "boot_id": boot},
                                       indent=1))
        replace(str(meta_tmp), str(where / META_FILE))
    finally:
        for path in tmp.values():
            path.unlink(missing_ok=True)
