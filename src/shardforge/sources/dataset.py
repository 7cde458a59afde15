"""A shardforge dataset as a source (what variants read): samples by byte range, keys kept.

Unlike the ``wds`` source (which treats tars as foreign and derives new keys), this reads
a parent dataset through its ``index.parquet``, so every sample keeps its parent key and
label: a variant's samples line up with the parent's by key. Specs come in two shapes:

* per tar (:func:`plan`): one output shard per parent tar, samples in index order;
* per class (:func:`plan` with ``by_class``): one output shard per (split, class), for variants
  that work on a class at a time (RDED); shard ``index`` is the class index.

Each spec's ``items`` are ``(tar_name, offset, size, key, label)`` tuples; ``source`` is
the parent dataset's root URL. Its ``stamp`` digests the parent's recorded sha256 of each
tar it reads (``summary.json``), so a parent rebuilt with other bytes rebuilds the
variant's shards (exact, unlike the size/mtime stamp of file sources). A key that appears
twice in the parent (a build from before keys were checked) is rejected at planning (the
second and later rows; the first origin is named) and never read.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator

import numpy as np

from shardforge.sources.base import (
    RawSample,
    Reject,
    ShardSpec,
    SourceOptions,
    SourcePlan,
    combine_stamps,
)
from shardforge.sources.items import PackedItems

KIND = "dataset"


def _open(url: str):
    from shardforge.layout.dataset import dataset_location, open_dataset

    return open_dataset(dataset_location(url))


def _items(index, rows: np.ndarray) -> PackedItems:
    names = [u.rsplit("/", 1)[-1] for u in index.shard_urls]
    return PackedItems((names[int(index.shard[r])], int(index.offset[r]), int(index.size[r]),
                  str(index.key[r]), int(index.label[r])) for r in rows)


def plan(url: str, options: SourceOptions, by_class: Collection[str] = ()) -> SourcePlan:
    """One spec per parent tar; splits named in ``by_class`` get one spec per class instead.

    ``url``: a dataset directory or catalog reference. The plan's classes are the parent's.
    """
    ref = _open(url)
    digests = _tar_digests(ref.summary)
    shards: list[ShardSpec] = []
    rejects: list[Reject] = []
    first_seen: dict[str, str] = {}
    for split, index in sorted(ref.splits.items()):
        keep = _first_keys(index, split, first_seen, rejects)
        groups = ([(int(label), index.label == label) for label in np.unique(index.label)]
                  if split in by_class else
                  [(shard_id, index.shard == shard_id) for shard_id in range(len(index.shard_urls))])
        for number, selected in groups:
            items = _items(index, np.flatnonzero(selected & keep))
            stamp = combine_stamps(f"{n}:{digests.get(n, '')}"
                                   for n in sorted({it[0] for it in items}))
            shards.append(ShardSpec(KIND, ref.url, split, number, items, stamp))
    return SourcePlan(KIND, ref.url, list(ref.classes), shards, rejects)


def _tar_digests(summary: dict) -> dict[str, str]:
    """``{tar name: sha256}`` as the parent's summary records them."""
    records = summary.get("formats", {}).get("wds", {}).values()
    return {r["path"].rsplit("/", 1)[-1]: r.get("sha256", "") for recs in records for r in recs}


def _first_keys(index, split: str, first_seen: dict[str, str],
                rejects: list[Reject]) -> np.ndarray:
    """A mask of the rows whose key was not seen before (in this split or an earlier one);
    the others are rejected, naming the first origin."""
    names = [u.rsplit("/", 1)[-1] for u in index.shard_urls]
    keep = np.ones(len(index.key), dtype=bool)
    for r, key in enumerate(index.key.tolist()):
        origin = f"{names[int(index.shard[r])]}#{key}"
        if key in first_seen:
            keep[r] = False
            rejects.append(Reject(origin, f"duplicate sample key {key!r} in the parent: "
                                  f"first read from {first_seen[key]}; this one is not read",
                                  split))
        else:
            first_seen[key] = origin
    return keep


def read(spec: ShardSpec, options: SourceOptions) -> Iterator[RawSample | Reject]:
    """The spec's samples, read by byte range from the parent's tars, in spec order."""
    from shardforge.layout.reader import RangeReader
    from shardforge.storage import resolve

    if not spec.items:
        return
    names = sorted({item[0] for item in spec.items})
    root = resolve(spec.source).join("wds")
    reader = RangeReader([root.join(n).url for n in names])
    sid = {n: i for i, n in enumerate(names)}
    try:
        blobs = reader.read(np.array([sid[it[0]] for it in spec.items], np.int64),
                            np.array([it[1] for it in spec.items], np.int64),
                            np.array([it[2] for it in spec.items], np.int64))
    except OSError as exc:
        for name, _, _, key, _ in spec.items:
            yield Reject(f"{name}#{key}", f"unreadable parent shard: {exc}", spec.split)
        return
    finally:
        reader.close()
    for (name, _, _, key, label), blob in zip(spec.items, blobs, strict=True):
        yield RawSample(key, label, f"{name}#{key}", bytes(blob))
