"""Layer: sources (beside engine). Where samples come from: class-folder trees, WebDataset
shards, parquet files, the ImageNet archives as downloaded and shardforge datasets (a
variant's parent), local or on an object store; each
kind plans a source into deterministic shard specs and reads one spec's samples.

May import layout and the foundation (storage, formats, names); nothing that builds,
catalogs, streams or trains."""

from __future__ import annotations

from collections.abc import Iterator

from shardforge.layout.files import WIDS_SUFFIX
from shardforge.sources import dataset, folder, imagenet, parquet, wds
from shardforge.sources.base import RawSample, Reject, ShardSpec, SourceOptions, SourcePlan
from shardforge.sources.localfs import walk_local
from shardforge.storage import resolve

READERS = {folder.KIND: folder, wds.KIND: wds, parquet.KIND: parquet, dataset.KIND: dataset,
           imagenet.KIND: imagenet}
KINDS = tuple(READERS)


def detect_kind(url: str) -> str:
    """``imagenet-archive`` for ``ILSVRC2012_img_{train,val}.tar`` or a directory holding
    one, ``wds`` for other .tar files, ``parquet`` for .parquet files, else ``folder``.

    Raises ValueError naming the URL when nothing is there.
    """
    loc = resolve(url)
    if not loc.exists():
        raise ValueError(f"source {url!r} does not exist")
    if imagenet.detect(loc):
        return imagenet.KIND
    if loc.path.endswith(".tar"):
        return wds.KIND
    if loc.path.endswith(".parquet"):
        return parquet.KIND
    if loc.is_local:   # a tree listed without following symlink loops (sources.localfs)
        files = sorted(walk_local(loc.path)[1])
    else:
        files = loc.list_files()
    files = [f for f in files if not f.endswith(WIDS_SUFFIX)]   # a shardforge wds/ dir
    if files and all(f.endswith(".tar") for f in files):
        return wds.KIND
    if files and all(f.endswith(".parquet") for f in files):
        return parquet.KIND
    return folder.KIND


def plan_source(url: str, options: SourceOptions, kind: str | None = None) -> SourcePlan:
    """List a source and cut it into deterministic shard specs."""
    kind = kind or detect_kind(url)
    if kind not in READERS:
        raise ValueError(f"unknown source kind {kind!r}; use one of {KINDS}")
    return READERS[kind].plan(url, options)


def read_shard(spec: ShardSpec, options: SourceOptions) -> Iterator[RawSample | Reject]:
    """The raw samples (and read failures) of one shard spec."""
    return READERS[spec.kind].read(spec, options)


__all__ = ["KINDS", "RawSample", "Reject", "ShardSpec", "SourceOptions", "SourcePlan",
           "detect_kind", "plan_source", "read_shard"]
