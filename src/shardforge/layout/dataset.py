"""Open a shardforge dataset for streaming: its summary, its index, its shard URLs.

A dataset is the output directory of an ingest (local path or ``s3://`` URL)::

    OUT/summary.json          what was built (splits, classes, files)
    OUT/index.parquet         one row per sample: key, label, split, shard, offset, size, ...
    OUT/wds/NAME-SPLIT-NNNNNN.tar

:func:`open_dataset` reads the summary and the index once, on the driver, and returns a
:class:`DatasetRef`: small numpy arrays per split (no image data) that loaders ship to
their worker processes. Shard URLs are always derived from the location given (not from
the absolute URLs recorded in ``summary.json``), so a dataset copied elsewhere still opens.
:func:`open_shards` builds the same from an explicit list of tar URLs plus the index.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shardforge.formats.arrow_rows import int64_array
from shardforge.layout.files import INDEX_FILE, SUMMARY_FILE, WDS_DIR
from shardforge.layout.keys import Keys
from shardforge.names import check_file_name, check_name, check_relative_path
from shardforge.storage import Location, resolve

INDEX_COLUMNS = ("key", "label", "split", "shard", "offset", "size", "format", "width",
                 "height", "sha256")


class DatasetNotFoundError(FileNotFoundError):
    """The reference names no shardforge dataset (no ``summary.json`` there)."""


class DatasetIndexError(ValueError):
    """``index.parquet`` is missing columns, or disagrees with the shards given."""


def dataset_location(location: str) -> str:
    """``location`` when it holds a shardforge dataset (a ``summary.json``).

    :class:`DatasetNotFoundError` naming the fix otherwise. Catalog names (``NAME@vN``) are
    resolved by the catalog (:func:`shardforge.catalog.lookup.resolve_dataset`), above.
    """
    loc = resolve(location).join(SUMMARY_FILE)
    if loc.exists():
        return location
    raise DatasetNotFoundError(
        f"{location!r} is not a shardforge dataset: {loc.url} does not exist. Give the --out "
        "location of a finished `shardforge ingest` or build (a catalog name is resolved by "
        "the catalog: `shardforge catalog show NAME` prints its location)")


@dataclass(frozen=True)
class Summary:
    """A dataset's ``summary.json``, read once for every model of the dataset
    (:class:`DatasetRef` here, :class:`~shardforge.layout.info.DatasetInfo` for training):
    its root, its checked name, the parsed JSON, and its relative paths made locations."""

    root: Location
    name: str
    data: dict

    @property
    def where(self) -> str:
        return f"{self.root.url}/{SUMMARY_FILE}"

    def location(self, relative: str, what: str = "file path") -> Location:
        """``relative`` (a path the summary records) under the root, checked so it cannot
        climb out (:func:`shardforge.names.check_relative_path`)."""
        return self.root.join(check_relative_path(relative, what, self.where, _FIX))


_FIX = "re-run the ingest that wrote this dataset"


def read_summary(location: str) -> Summary:
    """The :class:`Summary` of the dataset at ``location``
    (:class:`DatasetNotFoundError` naming the fix when there is none)."""
    root = resolve(dataset_location(location))
    data = json.loads(root.join(SUMMARY_FILE).read_bytes())
    if not isinstance(data, dict):
        raise DatasetIndexError(f"{root.url}/{SUMMARY_FILE} is not a JSON object; {_FIX}")
    name = data.get("name", posixpath.basename(root.path))
    check_name(name, "dataset name", f"{root.url}/{SUMMARY_FILE}", _FIX)
    return Summary(root, name, data)


@dataclass(frozen=True)
class SplitIndex:
    """The index rows of one split, as arrays, in canonical order (shard, then offset).

    Sample *position* ``p`` (what partitioning permutes) is row ``p`` of these arrays.
    ``shard[p]`` indexes ``shard_urls``; ``offset[p]``/``size[p]`` are the byte range of
    the image member inside that tar; ``width``/``height`` its stored size.
    """

    split: str
    shard_urls: tuple[str, ...]
    shard: np.ndarray       # int32, index into shard_urls
    offset: np.ndarray      # int64
    size: np.ndarray        # int64
    label: np.ndarray       # int64
    width: np.ndarray       # int32
    height: np.ndarray      # int32
    is_png: np.ndarray      # bool: KEY.png (raw-mode sample), else KEY.jpg
    key: Keys | np.ndarray  # str per position; Keys: Arrow-backed (layout/keys.py)
    sha256: np.ndarray      # bytes "S64": the sample's sha256 as 64 ASCII hex digits

    # sha256 is fixed-width bytes rather than str objects: a view of the index's Arrow
    # buffer, no Python object per row (-0.2 s and -57 B per row at 1.28M rows when a
    # loader starts, docs/scale.md). Compare with ``hexdigest().encode()``.

    def __len__(self) -> int:
        return len(self.key)


@dataclass(frozen=True)
class DatasetRef:
    """An opened dataset: where it is, what it holds, and its index per split."""

    url: str                                  # root location ("" for open_shards)
    name: str
    splits: dict[str, SplitIndex]
    classes: tuple[str, ...] = ()
    summary: dict = field(default_factory=dict, repr=False)

    def split(self, name: str) -> SplitIndex:
        """The index of split ``name``; ``KeyError`` naming the splits there are."""
        try:
            return self.splits[name]
        except KeyError:
            raise KeyError(f"dataset {self.name!r} has no split {name!r}; it has "
                           f"{sorted(self.splits)}") from None

    @property
    def num_samples(self) -> int:
        """Samples in all splits together."""
        return sum(len(s) for s in self.splits.values())


def open_dataset(path_or_url: str | DatasetRef) -> DatasetRef:
    """Open the dataset at ``path_or_url`` (see :func:`dataset_location`); reads
    ``summary.json`` and ``index.parquet``. A :class:`DatasetRef` is returned as is."""
    if isinstance(path_or_url, DatasetRef):
        return path_or_url
    summary = read_summary(path_or_url)
    index_loc = index_location(summary)
    with _index_memory():
        table = _read_index(index_loc)
        wds_dir = summary.root.join(WDS_DIR)
        urls = {check_file_name(shard, "shard name", index_loc.url, _FIX):
                wds_dir.join(shard).url for shard in pc.unique(table["shard"]).to_pylist()}
        splits = _splits(table, urls, index_loc.url)
        del table
    return DatasetRef(url=summary.root.url, name=summary.name, splits=splits,
                      classes=tuple(summary.data.get("classes", ())), summary=summary.data)


def index_location(summary: Summary) -> Location:
    """Where the dataset's ``index.parquet`` is: the path its summary records (checked
    not to climb out of the dataset), else ``index.parquet`` at its root."""
    return summary.location(summary.data.get("index", {}).get("path", INDEX_FILE),
                            "index path")


def open_shards(tar_urls: Sequence[str], index_url: str, name: str = "") -> DatasetRef:
    """A dataset made of exactly the tars ``tar_urls`` (any location each), described by
    the ``index.parquet`` at ``index_url``.

    Tars are matched to index rows by file name; index rows of other tars are left out
    (so a subset of a dataset's shards can be streamed). Raises
    :class:`DatasetIndexError` when a tar has no row in the index, or two share a name.
    """
    if not tar_urls:
        raise ValueError("open_shards needs at least one tar URL")
    urls: dict[str, str] = {}
    for url in tar_urls:
        base = posixpath.basename(resolve(url).path)
        if base in urls:
            raise DatasetIndexError(f"two tars are named {base!r}: {urls[base]} and {url}")
        urls[base] = url
    loc = resolve(index_url)
    with _index_memory():
        table = _read_index(loc)
        missing = sorted(set(urls) - set(pc.unique(table["shard"]).to_pylist()))
        if missing:
            raise DatasetIndexError(f"{len(missing)} tar(s) have no rows in {loc.url}: "
                                    f"{', '.join(missing[:5])}")
        table = table.filter(pc.is_in(table["shard"], value_set=pa.array(sorted(urls))))
        splits = _splits(table, urls, loc.url)
        del table
    return DatasetRef(url="", name=name or _common_name(urls), splits=splits)


def _read_index(loc: Location) -> pa.Table:
    try:
        # A local index is memory-mapped: its pages come straight from the page cache
        # instead of being copied into freshly allocated buffers (0.4-0.6 s -> 0.3 s and
        # most of the system CPU at 1.28M rows, docs/scale.md).
        opened = pa.memory_map(loc.path) if loc.is_local else loc.fs.open_input_file(loc.path)
        with opened as f:
            schema = pq.read_schema(f)
            missing = [c for c in INDEX_COLUMNS if c not in schema.names]
            if missing:
                raise DatasetIndexError(
                    f"{loc.url} lacks column(s) {missing}; is it a shardforge index?")
            # In runs of row groups of about READ_ROWS rows: read whole, pyarrow gathers each
            # column of every row group into one chunk, at about twice the CPU for 14M rows
            # (docs/scale.md); the same rows and columns, in one chunk per run.
            pf = pq.ParquetFile(f)
            runs = [pf.read_row_groups(run, columns=list(INDEX_COLUMNS))
                    for run in _row_group_runs(pf.metadata)]
            return pa.concat_tables(runs) if runs else pf.read(columns=list(INDEX_COLUMNS))
    except FileNotFoundError as exc:
        raise DatasetIndexError(f"no index at {loc.url}: {exc}") from exc


READ_ROWS = 1 << 20


def _row_group_runs(meta: pq.FileMetaData) -> list[list[int]]:
    """The file's row groups, in order, cut into runs of at least READ_ROWS rows (the last
    may be shorter)."""
    runs: list[list[int]] = [[]]
    rows = 0
    for g in range(meta.num_row_groups):
        if rows >= READ_ROWS:
            runs.append([])
            rows = 0
        runs[-1].append(g)
        rows += meta.row_group(g).num_rows
    return runs if runs[0] else []


@contextlib.contextmanager
def _index_memory() -> Iterator[None]:
    """Read and split the index with Arrow's system (malloc) pool, then hand what it
    freed back to the OS.

    Why: with pyarrow's default pool (mimalloc) the kernel's time faulting in fresh
    memory was 0.6-0.8 s of a 1.28M-row start-up, with malloc 0.3-0.4 s (3 alternating
    runs each, docs/scale.md); jemalloc was as fast but kept 300 MiB more per loader. The
    default pool is set back afterwards: the arrays made here keep their pool, and Arrow
    work elsewhere in the process is not affected once this returns (a thread using Arrow
    meanwhile would allocate from malloc too, which is harmless). With ``malloc_trim``
    after it, a rank's memory is as with mimalloc (578-610 vs 593 MiB at 1.28M rows)."""
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)
        # Freed index memory otherwise stays with the allocator: 2.2 GiB per loader
        # process at 14M rows with mimalloc (docs/scale.md), never used again.
        previous.release_unused()
        _malloc_trim()


def _malloc_trim() -> None:
    """glibc's ``malloc_trim(0)``: free heap pages back to the OS (Arrow's system pool's
    ``release_unused`` left ~120 MiB per loader at 1.28M rows; this, ~0). No-op where
    the C library has no such function (musl, macOS)."""
    libc = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(libc), "malloc_trim", None) if libc else None
    if trim is not None:
        trim(0)


def _splits(table: pa.Table, urls: dict[str, str], where: str) -> dict[str, SplitIndex]:
    """Group rows by split; order each split by (shard name, offset). Split names are
    checked (:func:`shardforge.names.check_name`; ``where`` names the index).

    Each split's rows are gathered from the table once, by column, and a split whose rows
    are already in that order, as ingest writes them, is not reordered; otherwise the order
    is a stable sort's, as ``Table.sort_by``'s. (Filtering and sorting the whole table per
    split cost more than reading the index at ImageNet size, docs/scale.md.)"""
    splits = pc.unique(table["split"]).sort()
    for split in splits.to_pylist():
        check_name(split, "split", where, "re-run the ingest that wrote this dataset")
    shard_names = pc.unique(table["shard"]).sort()   # code point order, like sorted()
    names = shard_names.to_pylist()
    shard_ids = _numpy(pc.index_in(table["shard"], value_set=shard_names), np.int32)
    offsets = _numpy(table["offset"], np.int64)
    split_ids = (_numpy(pc.index_in(table["split"], value_set=splits), np.int32)
                 if len(splits) > 1 else None)
    out = {}
    for i, split in enumerate(splits.to_pylist()):
        rows = np.flatnonzero(split_ids == i) if split_ids is not None else None
        sid = shard_ids[rows] if rows is not None else shard_ids
        if not _in_order(sid, offsets[rows] if rows is not None else offsets):
            order = np.lexsort((offsets[rows] if rows is not None else offsets, sid))
            rows = rows[order] if rows is not None else order
            sid = sid[order]
        present = np.unique(sid)                      # the split's shards, in name order
        local = np.zeros(len(names), np.int32)
        local[present] = np.arange(len(present), dtype=np.int32)
        take = int64_array(rows) if rows is not None else None

        def col(c: str, dtype, take=take) -> np.ndarray:
            values = _numpy(table[c] if take is None else table[c].take(take), dtype)
            if dtype is not object:
                values.flags.writeable = False    # as Arrow's zero-copy arrays were
            return values

        fmt = table["format"] if take is None else table["format"].take(take)
        out[split] = SplitIndex(
            split=split, shard_urls=tuple(urls[names[k]] for k in present.tolist()),
            shard=local[sid],
            offset=col("offset", np.int64), size=col("size", np.int64),
            label=col("label", np.int64), width=col("width", np.int32),
            height=col("height", np.int32),
            is_png=_numpy(pc.match_substring_regex(fmt, "^png$"), bool),
            key=Keys(table["key"] if take is None else table["key"].take(take)),
            sha256=_hex_digests(table["sha256"] if take is None else
                                table["sha256"].take(take), where))
    return out


def _numpy(column: pa.ChunkedArray | pa.Array, dtype) -> np.ndarray:
    """A column as a numpy array of ``dtype``.

    Null-free integer and bool columns are read from their Arrow buffers: pyarrow's
    ``to_numpy`` (like ``pa.array`` of numpy values and ``pc.equal`` with a Python scalar)
    imports pandas, 0.2-0.7 s of a loader's start-up that nothing here needs
    (docs/scale.md). ``tests/test_dataset_index.py`` checks that opening a dataset imports
    no pandas."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if arr.null_count or not (pa.types.is_integer(arr.type) or pa.types.is_boolean(arr.type)):
        return arr.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    n, data = len(arr), arr.buffers()[1]
    if n == 0 or data is None:
        return np.empty(0, dtype)
    if pa.types.is_boolean(arr.type):
        bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
        return bits[arr.offset:arr.offset + n].astype(bool)
    width = arr.type.bit_width // 8
    kind = "i" if pa.types.is_signed_integer(arr.type) else "u"
    values = np.frombuffer(data, np.dtype(f"<{kind}{width}"), n, arr.offset * width)
    return values.astype(dtype, copy=False)


def _hex_digests(column: pa.ChunkedArray, where: str) -> np.ndarray:
    """The sha256 column as a read-only ``S64`` array viewing the Arrow data buffer (one
    copy at most, to join chunks). Raises :class:`DatasetIndexError` when a value is null
    or not 64 bytes long (a 64-byte value that is not hex digits matches no sample,
    so every sample it describes fails its checksum at read time)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if arr.type != pa.string():
        arr = arr.cast(pa.string())
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], np.int32, n + 1, arr.offset * 4) if n else None
    if n and (arr.null_count or np.any(np.diff(offsets) != 64)):
        bad = int(np.flatnonzero(~arr.is_valid().to_numpy(zero_copy_only=False)
                                 | (pc.binary_length(arr.fill_null("")).to_numpy() != 64))[0])
        raise DatasetIndexError(
            f"{where}: row {bad} of the sha256 column is {arr[bad].as_py()!r}, not 64 hex "
            f"digits; re-run the ingest that wrote this index")
    if not n:
        return np.empty(0, "S64")
    view = np.frombuffer(arr.buffers()[2], "S64", n, int(offsets[0]))
    view.flags.writeable = False
    return view


def _in_order(shard: np.ndarray, offset: np.ndarray) -> bool:
    """Whether rows are sorted by (shard, offset), ties allowed (a stable sort leaves
    such rows as they are)."""
    same = shard[1:] == shard[:-1]
    return bool(np.all((shard[1:] > shard[:-1]) | (same & (offset[1:] >= offset[:-1]))))


def _common_name(urls: dict[str, str]) -> str:
    """``NAME`` from ``NAME-SPLIT-NNNNNN.tar`` names (first one), else ``"shards"``."""
    parts = sorted(urls)[0].rsplit("-", 2)
    return parts[0] if len(parts) == 3 else "shards"
