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

import json
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shardforge.layout.files import INDEX_FILE, SUMMARY_FILE, WDS_DIR
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
    key: np.ndarray         # object (str)
    sha256: np.ndarray      # object (hex str)

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
    index_loc = summary.location(summary.data.get("index", {}).get("path", INDEX_FILE),
                                 "index path")
    table = _read_index(index_loc)
    wds_dir = summary.root.join(WDS_DIR)
    urls = {check_file_name(shard, "shard name", index_loc.url, _FIX): wds_dir.join(shard).url
            for shard in pc.unique(table["shard"]).to_pylist()}
    return DatasetRef(url=summary.root.url, name=summary.name,
                      splits=_splits(table, urls, index_loc.url),
                      classes=tuple(summary.data.get("classes", ())), summary=summary.data)


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
    table = _read_index(loc)
    missing = sorted(set(urls) - set(pc.unique(table["shard"]).to_pylist()))
    if missing:
        raise DatasetIndexError(f"{len(missing)} tar(s) have no rows in {loc.url}: "
                                f"{', '.join(missing[:5])}")
    table = table.filter(pc.is_in(table["shard"], value_set=pa.array(sorted(urls))))
    return DatasetRef(url="", name=name or _common_name(urls),
                      splits=_splits(table, urls, loc.url))


def _read_index(loc: Location) -> pa.Table:
    try:
        with loc.fs.open_input_file(loc.path) as f:
            schema = pq.read_schema(f)
            missing = [c for c in INDEX_COLUMNS if c not in schema.names]
            if missing:
                raise DatasetIndexError(
                    f"{loc.url} lacks column(s) {missing}; is it a shardforge index?")
            return pq.ParquetFile(f).read(columns=list(INDEX_COLUMNS))
    except FileNotFoundError as exc:
        raise DatasetIndexError(f"no index at {loc.url}: {exc}") from exc


def _splits(table: pa.Table, urls: dict[str, str], where: str) -> dict[str, SplitIndex]:
    """Group rows by split; order each split by (shard name, offset). Split names are
    checked (:func:`shardforge.names.check_name`; ``where`` names the index)."""
    out = {}
    for split in sorted(pc.unique(table["split"]).to_pylist()):
        check_name(split, "split", where, "re-run the ingest that wrote this dataset")
        t = table.filter(pc.equal(table["split"], split)).sort_by(
            [("shard", "ascending"), ("offset", "ascending")])
        names = sorted(pc.unique(t["shard"]).to_pylist())
        shard_ids = pc.index_in(t["shard"], value_set=pa.array(names))

        def col(c: str, dtype, t=t) -> np.ndarray:
            return t[c].to_numpy(zero_copy_only=False).astype(dtype, copy=False)

        out[split] = SplitIndex(
            split=split, shard_urls=tuple(urls[n] for n in names),
            shard=shard_ids.to_numpy(zero_copy_only=False).astype(np.int32),
            offset=col("offset", np.int64), size=col("size", np.int64),
            label=col("label", np.int64), width=col("width", np.int32),
            height=col("height", np.int32),
            is_png=pc.equal(t["format"], "png").to_numpy(zero_copy_only=False).astype(bool),
            key=col("key", object), sha256=col("sha256", object))
    return out


def _common_name(urls: dict[str, str]) -> str:
    """``NAME`` from ``NAME-SPLIT-NNNNNN.tar`` names (first one), else ``"shards"``."""
    parts = sorted(urls)[0].rsplit("-", 2)
    return parts[0] if len(parts) == 3 else "shards"
