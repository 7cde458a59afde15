"""A build's dataset as the pages see it: its images (a reinforced build's are its
parent's), a sample's position by key (close keys when unknown), per-split statistics from
``index.parquet`` and the rejects from ``rejects.jsonl``.

Everything here is derived from files a registered build never changes, so it is cached in
memory by location (:func:`functools.lru_cache`): the index of a dataset is read once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from shardforge.catalog.entry import Build
from shardforge.layout.dataset import DatasetRef, SplitIndex, open_dataset, read_summary
from shardforge.layout.files import REJECTS_FILE
from shardforge.storage import resolve
from shardforge.view.errors import NotFound, close_matches

#: Bins of the size and bytes-per-sample histograms.
BINS = 24
#: Rejects listed on a dataset page (the count is always the full one).
MAX_REJECTS = 200


@lru_cache(maxsize=16)
def summary_of(out: str) -> dict:
    """The ``summary.json`` of the dataset at ``out``, parsed."""
    return read_summary(out).data


@lru_cache(maxsize=16)
def images_of(out: str) -> DatasetRef:
    """The dataset whose shards hold the images of the build at ``out``: the build itself,
    or for a reinforced build (which stores augmentations, not images) its parent."""
    data = summary_of(out)
    if "reinforce" in data and data.get("parent_out"):
        return images_of(data["parent_out"])
    return open_dataset(out)


def split_index(ds: DatasetRef, split: str, ref: str) -> SplitIndex:
    """``ds``'s index of ``split``; :class:`NotFound` naming the splits (links to
    ``/d/REF?split=S``) when it has no such split."""
    if split in ds.splits:
        return ds.splits[split]
    raise NotFound(f"{ref} has no split {split!r}; its splits: {', '.join(sorted(ds.splits))}",
                   [(s, f"/d/{ref}/grid?split={s}") for s in sorted(ds.splits)])


@lru_cache(maxsize=32)
def _sorted_keys(out: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    index = images_of(out).splits[split]
    order = np.argsort(index.key, kind="stable")
    return index.key[order], order


def position_of(out: str, split: str, key: str) -> int | None:
    """The position of ``key`` in ``split`` of the dataset at ``out``, or None."""
    keys, order = _sorted_keys(out, split)
    i = int(np.searchsorted(keys, key))
    return int(order[i]) if i < len(keys) and keys[i] == key else None


def find_position(out: str, split: str, key: str, ref: str) -> int:
    """Like :func:`position_of`, but :class:`NotFound` naming close keys (links to their
    sample pages) when ``key`` is not in the split. Close keys are looked for among the
    keys that sort near ``key`` (a bounded window: cheap for millions of keys)."""
    split_index(images_of(out), split, ref)
    found = position_of(out, split, key)
    if found is not None:
        return found
    keys, _ = _sorted_keys(out, split)
    i = int(np.searchsorted(keys, key))
    lo = max(0, i - 200)
    window = keys[lo:i + 200].tolist()
    close = close_matches(key, window) or window[max(0, i - lo - 1):i - lo + 2]
    raise NotFound(f"{ref} has no sample {key!r} in its {split} split "
                   f"({len(keys):,} samples)",
                   [(k, f"/d/{ref}/sample/{split}/{k}") for k in close])


@dataclass(frozen=True)
class Histogram:
    """``counts[i]`` values fell in ``[edges[i], edges[i + 1])`` (the last bin closed)."""

    edges: np.ndarray
    counts: np.ndarray


@dataclass(frozen=True)
class SplitStats:
    """One split's numbers: samples per label, the stored image widths, heights and
    bytes (histograms and totals)."""

    samples: int
    class_counts: np.ndarray      # int64, one per label (0 .. classes - 1)
    width: Histogram
    height: Histogram
    nbytes: Histogram
    total_bytes: int


def _histogram(values: np.ndarray) -> Histogram:
    if not len(values):
        return Histogram(np.array([0.0, 1.0]), np.zeros(1, np.int64))
    lo, hi = float(values.min()), float(values.max())
    bins = max(1, min(BINS, int(hi - lo) + 1))
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi if hi > lo else lo + 1))
    return Histogram(edges, counts)


@lru_cache(maxsize=32)
def split_stats(out: str, split: str) -> SplitStats:
    """The :class:`SplitStats` of ``split`` of the dataset at ``out`` (from its index)."""
    ds = images_of(out)
    index = ds.splits[split]
    num_classes = max(len(ds.classes), int(index.label.max()) + 1 if len(index) else 0)
    return SplitStats(samples=len(index),
                      class_counts=np.bincount(index.label, minlength=num_classes),
                      width=_histogram(index.width), height=_histogram(index.height),
                      nbytes=_histogram(index.size), total_bytes=int(index.size.sum()))


@dataclass(frozen=True)
class Rejects:
    """The rejects of a build: where they are recorded, the first :data:`MAX_REJECTS`
    (dicts with ``origin``, ``reason``, ``split``), their total and any read problem."""

    url: str | None
    shown: list[dict]
    total: int
    problem: str | None = None


def read_rejects(build: Build) -> Rejects:
    """The rejects of ``build``: its ``OUT/rejects.jsonl`` (else the file the catalog entry
    records, e.g. a reinforced build's parent's). A missing or unreadable file, or a line
    that is not JSON, is reported in ``problem`` (never raised)."""
    loc = resolve(build.out).join(REJECTS_FILE)
    recorded = (build.rejects or {}).get("url")
    if not loc.exists() and recorded:
        loc = resolve(recorded)
    try:
        text = loc.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        count = int((build.rejects or {}).get("count") or 0)
        return Rejects(loc.url, [], count, f"cannot read {loc.url}: {exc}")
    shown, total, problem = [], 0, None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        total += 1
        if len(shown) >= MAX_REJECTS:
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            problem = problem or f"{loc.url} line {n} is not JSON ({exc})"
            continue
        shown.append(row if isinstance(row, dict) else {"reason": str(row)})
    return Rejects(loc.url, shown, total, problem)


def class_name(ds: DatasetRef, label: int) -> str:
    """The name of ``label`` in ``ds`` (its number when the summary lists no classes)."""
    return ds.classes[label] if 0 <= label < len(ds.classes) else str(label)
