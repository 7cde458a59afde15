"""A node-local, memory-mapped copy of a dataset's split index, shared by every loader.

:func:`open_dataset` reads ``index.parquet`` into arrays in each process that opens it:
every rank of a node holds its own copy (about 175 B per row: 2.6 GiB per rank, 21 GiB per
8-rank node at ImageNet-21k's 14M rows), and every start-up pays for decoding the parquet
and for fresh memory, the part of start-up that grows faster than the rows on this
project's test machines (docs/scale.md). :func:`open_indexed` opens the same arrays as
read-only memmaps of files in ``CACHE_DIR/DIGEST/`` (:mod:`shardforge.stream.array_cache`):
the first loader on a node builds them from :func:`open_dataset`'s arrays, every later one
(other ranks, restarts, later jobs) maps them, and their pages are the page cache's, one
copy per node, read only where a process touches them.

The digest names what the arrays derive from: the index file's resolved location, its
size, modification time (and inode and change time for a local file), the sha256 and
size ``summary.json`` records for it, and this module's format. A rewritten index gets a
new digest, so a stale copy is never used; old digests stay until ``CACHE_DIR`` is
deleted. The arrays are checked as :mod:`~shardforge.stream.array_cache` checks any
(sizes, headers, sampled sha256), and every image's bytes are still checked against
the sha256 in the arrays when it is read.

A cache folder that cannot be written (read-only home, full disk) is not an error: the
loader warns and holds its own copy, as :func:`open_dataset` gives it. With
``$SHARDFORGE_HOME_READ_ONLY`` set and no folder given, nothing is written to the home:
each loader holds its own copy, without a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import warnings

import numpy as np
import pyarrow as pa

from shardforge.layout.dataset import (
    DatasetRef,
    SplitIndex,
    Summary,
    index_location,
    open_dataset,
    read_summary,
)
from shardforge.layout.files import WDS_DIR
from shardforge.layout.keys import Keys
from shardforge.storage import Location

INDEX_CACHE_FORMAT = 1
#: SplitIndex fields kept as one array each, as their dtypes.
_COLUMNS = {"shard": np.int32, "offset": np.int64, "size": np.int64, "label": np.int64,
            "width": np.int32, "height": np.int32, "is_png": np.bool_, "sha256": "S64"}
#: and the keys as their Arrow string array's offsets and bytes, the tars as their names
_EXTRA = ("key_offsets", "key_data", "shards")


def default_index_cache_dir() -> str:
    """``CATALOG_HOME/cache/index`` (``$SHARDFORGE_HOME``, else ``~/.shardforge``): where
    :func:`open_indexed` keeps its copies unless told otherwise."""
    from shardforge.catalog.home import default_home

    return str(default_home() / "cache" / "index")


def open_indexed(dataset: DatasetRef | str, cache_dir: str | None = None) -> DatasetRef:
    """The dataset at ``dataset`` as :func:`open_dataset` opens it (the same splits, arrays,
    keys and shard URLs), its split arrays memory-mapped from a node-local copy in
    ``cache_dir`` (default :func:`default_index_cache_dir`), built there first when
    missing. A :class:`DatasetRef` is returned as is. When the copy cannot be made or
    opened (``OSError``: an unwritable folder, a full disk), warns and returns
    :func:`open_dataset`'s in-memory arrays."""
    if isinstance(dataset, DatasetRef):
        return dataset
    from shardforge.catalog.home import read_only_forced
    from shardforge.stream.array_cache import open_or_build

    if cache_dir is None and read_only_forced():
        return open_dataset(dataset)

    summary = read_summary(dataset)
    index_loc = index_location(summary)
    try:
        digest = index_digest(summary, index_loc)
    except FileNotFoundError:
        return open_dataset(dataset)      # which says what is missing, and the fix
    folder = os.path.join(cache_dir or default_index_cache_dir(), digest[:32])
    pending: dict[str, np.ndarray] = {}   # a build's arrays, dropped as they are copied

    def specs() -> dict:
        try:
            pending.update(_flatten(open_dataset(dataset)))
        except OSError as exc:     # the dataset's error, not the cache's: raised as is
            raise _SourceError from exc
        return {name: (arr.shape, arr.dtype) for name, arr in pending.items()}

    def fill(open_writable) -> None:
        # each source array is freed once copied: the page cache then reuses that memory,
        # which this project's test VMs back far faster than memory never touched
        # (docs/scale.md)
        with open_writable() as arrays:
            for name in list(pending):
                arrays[name][:] = pending.pop(name)

    try:
        arrays = open_or_build(folder, digest, specs, fill, durable=False)
    except _SourceError as exc:
        raise exc.__cause__ from None
    except OSError as exc:
        warnings.warn(f"cannot keep a shared copy of the index of {summary.root.url} in "
                      f"{folder} ({exc}); this loader holds its own copy in memory (free "
                      "space there, or pass a writable index_cache folder)", stacklevel=2)
        return open_dataset(dataset)
    return DatasetRef(url=summary.root.url, name=summary.name,
                      splits=_splits(arrays, summary), summary=summary.data,
                      classes=tuple(summary.data.get("classes", ())))


class _SourceError(Exception):
    """:func:`open_dataset` failed while a cache was being built (its cause is raised)."""


def index_digest(summary: Summary, index_loc: Location) -> str:
    """sha256 naming a dataset index's current version (see the module docstring)."""
    info = index_loc.fs.get_file_info(index_loc.path)
    stamp: dict = {"url": index_loc.url, "size": info.size, "mtime_ns": info.mtime_ns}
    if index_loc.is_local:
        st = os.stat(index_loc.path)
        stamp.update(url=os.path.realpath(index_loc.path), inode=st.st_ino, dev=st.st_dev,
                     ctime_ns=st.st_ctime_ns)
    recorded = summary.data.get("index", {})
    stamp.update(format=INDEX_CACHE_FORMAT, recorded_sha256=recorded.get("sha256"),
                 recorded_size=recorded.get("size"))
    return hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()


def _flatten(ref: DatasetRef) -> dict[str, np.ndarray]:
    """``SPLIT.FIELD -> array`` of everything the cache holds for ``ref``'s splits (views
    of its arrays, no copies): the :data:`_COLUMNS`, the keys' Arrow offsets and bytes
    (at least one byte: a file of none cannot be mapped) and the tar names."""
    out = {}
    for name, idx in ref.splits.items():
        for col, dtype in _COLUMNS.items():
            out[f"{name}.{col}"] = np.asarray(getattr(idx, col), dtype)
        offsets, data = _key_buffers(idx.key)
        out[f"{name}.key_offsets"] = offsets
        out[f"{name}.key_data"] = data if len(data) else np.zeros(1, np.uint8)
        out[f"{name}.shards"] = np.array(
            [posixpath.basename(url.split("?", 1)[0]).encode() for url in idx.shard_urls])
    return out


def _key_buffers(keys: Keys | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The keys' Arrow string offsets (int32, from 0) and bytes, without copies."""
    arr = keys.arrow() if isinstance(keys, Keys) else pa.array(list(keys), pa.string())
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], np.int32, n + 1, arr.offset * 4)
    first, last = int(offsets[0]), int(offsets[-1])
    data = (np.frombuffer(arr.buffers()[2], np.uint8, last - first, first)
            if arr.buffers()[2] is not None and last > first else np.empty(0, np.uint8))
    return offsets - first if first else offsets, data


def _splits(arrays: dict, summary: Summary) -> dict[str, SplitIndex]:
    """The :class:`SplitIndex` of every split the arrays hold; shard URLs under
    ``summary``'s root, as :func:`open_dataset` makes them."""
    wds_dir = summary.root.join(WDS_DIR)
    names = sorted({key.rsplit(".", 1)[0] for key in arrays})
    out = {}
    for name in names:
        a = {col: arrays[f"{name}.{col}"].view(np.ndarray) for col in (*_COLUMNS, *_EXTRA)}
        n = len(a["shard"])
        keys = pa.Array.from_buffers(pa.string(), n, [
            None, pa.py_buffer(a["key_offsets"]),
            pa.py_buffer(a["key_data"][:int(a["key_offsets"][-1])])])
        out[name] = SplitIndex(
            split=name, shard_urls=tuple(wds_dir.join(s.decode()).url for s in a["shards"]),
            key=Keys(keys), **{col: a[col] for col in _COLUMNS})
    return out
