"""The data of each page (a dict for its template), from the catalog and the shards.

Each function raises :class:`~shardforge.view.errors.NotFound` (a 404 page naming close
matches) for anything its URL names that does not exist; a sample that cannot be read is a
placeholder plus its reason, never an exception.
"""

from __future__ import annotations

import math

import numpy as np
from markupsafe import Markup

from shardforge.catalog.entry import Build
from shardforge.layout.sample_grid import choose_positions, class_names
from shardforge.view import charts, extras
from shardforge.view.datasets import (
    class_name,
    find_position,
    images_of,
    position_of,
    read_rejects,
    split_index,
    split_stats,
)
from shardforge.view.errors import NotFound, close_matches
from shardforge.view.images import image_or_placeholder, sample_metadata, shard_problems
from shardforge.view.model import Home, catalog_rows, family, find_build, format_bytes

#: Classes per grid page (the class grid pages through the classes).
CLASSES_PER_PAGE = 20
#: Side of grid thumbnails and of the related builds' images on a sample page (px).
GRID_THUMB, FAMILY_THUMB = 96, 160


def catalog_page(home: Home) -> dict:
    """Every build (lineage order) with sizes, formats and creation time; the graph."""
    rows = catalog_rows(home)
    return {"rows": rows, "graph": Markup(charts.lineage_graph(rows)),
            "names": len({r.build.name for r in rows}), "format_bytes": format_bytes}


def default_split(ds_splits) -> str:
    """``train`` when the dataset has it, else its first split."""
    return "train" if "train" in ds_splits else sorted(ds_splits)[0]


def dataset_page(home: Home, ref: str, split: str | None) -> dict:
    """A build's provenance, files, splits, per-class counts, size and bytes histograms
    (of ``split``, default :func:`default_split`) and rejects."""
    build = find_build(home, ref)
    ds = images_of(build.out)
    split = split or default_split(ds.splits)
    split_index(ds, split, build.ref)
    stats = split_stats(build.out, split)
    names = list(ds.classes)
    counts = stats.class_counts
    nonzero = counts[counts > 0] if len(counts) else counts
    files = [(label, rec) for label, rec in build.files()]
    return {
        "build": build, "split": split, "splits": sorted(ds.splits), "stats": stats,
        "class_chart": Markup(charts.class_counts_chart(counts, names)),
        "width_chart": Markup(charts.histogram_chart(stats.width, "width px")),
        "height_chart": Markup(charts.histogram_chart(stats.height, "height px")),
        "bytes_chart": Markup(charts.histogram_chart(stats.nbytes, "bytes per sample")),
        "count_summary": _count_summary(counts, names) if len(nonzero) else "no samples",
        "files": files, "total_bytes": sum(int(r.get("size") or 0) for _, r in files),
        "rejects": read_rejects(build), "family": family(home, build),
        "images_from": ds.name if extras.is_reinforced(build.out) else None,
        "reinforce": extras.summary_of(build.out).get("reinforce"),
        "format_bytes": format_bytes, "classes": len(counts),
    }


def _count_summary(counts: np.ndarray, names: list[str]) -> str:
    lo, hi = int(np.argmin(counts)), int(np.argmax(counts))
    name = (lambda i: names[i] if i < len(names) else str(i))   # noqa: E731
    return (f"{len(counts):,} classes: min {int(counts[lo]):,} ({name(lo)}), median "
            f"{float(np.median(counts)):,.0f}, max {int(counts[hi]):,} ({name(hi)})")


def grid_page(home: Home, ref: str, split: str | None, page: int, per_class: int, seed: int,
              cls: str | None) -> dict:
    """``per_class`` seeded random samples for each class of one page: the classes paged
    :data:`CLASSES_PER_PAGE` at a time, or, with ``cls``, that class's samples paged
    ``per_class`` at a time (in the seeded order, so pages never repeat a sample)."""
    build = find_build(home, ref)
    ds = images_of(build.out)
    split = split or default_split(ds.splits)
    index = split_index(ds, split, build.ref)
    names = class_names(ds, split)
    if cls is not None and cls not in names:
        raise NotFound(f"{build.ref} has no class {cls!r}",
                       [(c, f"/d/{build.ref}/grid?split={split}&cls={c}")
                        for c in close_matches(cls, names)])
    if cls is not None:
        total = int(split_stats(build.out, split).class_counts[names.index(cls)])
        pages = max(1, math.ceil(total / per_class))
        shown, start = [cls], page * per_class
    else:
        pages = max(1, math.ceil(len(names) / CLASSES_PER_PAGE))
        shown, start = names[page * CLASSES_PER_PAGE:(page + 1) * CLASSES_PER_PAGE], 0
    if not 0 <= page < pages:
        base = f"/d/{build.ref}/grid?split={split}" + (f"&cls={cls}" if cls else "")
        raise NotFound(f"{build.ref} {split}: no page {page}; pages are 0 to {pages - 1}",
                       [("first page", f"{base}&page=0"), ("last page", f"{base}&page={pages - 1}")])
    rows = []
    for name in shown:          # one draw per class: its samples do not depend on the page
        [(_, take)] = choose_positions(ds, split, per_class, [name], seed, start)
        rows.append((name, [(str(index.key[p]), int(p)) for p in take.tolist()]))
    positions = np.array([p for _, cells in rows for _, p in cells], np.int64)
    problems = shard_problems(index, positions) if len(positions) else {}
    broken = {str(index.key[p]): problems[int(index.shard[p])] for p in positions.tolist()
              if int(index.shard[p]) in problems}
    return {"build": build, "split": split, "splits": sorted(ds.splits), "rows": rows,
            "page": page, "pages": pages, "per_class": per_class, "seed": seed, "cls": cls,
            "problems": sorted(set(problems.values())), "broken": broken, "thumb": GRID_THUMB}


def sample_page(home: Home, ref: str, split: str, key: str) -> dict:
    """One sample: its stored image and size, index row and metadata, and the same key in
    every build of its family (with where each differs from this one), plus what its
    variant stores (:mod:`shardforge.view.extras`)."""
    build = find_build(home, ref)
    ds = images_of(build.out)
    index = split_index(ds, split, build.ref)
    p = find_position(build.out, split, key, build.ref)
    _, image_error = image_or_placeholder(build.out, split, key, 0)
    meta, meta_error = sample_metadata(build.out, split, key)
    label = int(index.label[p])
    row = {"key": key, "label": label, "class": class_name(ds, label), "split": split,
           "position": p, "shard": index.shard_urls[int(index.shard[p])],
           "offset": int(index.offset[p]), "bytes": int(index.size[p]),
           "width": int(index.width[p]), "height": int(index.height[p]),
           "format": "png" if index.is_png[p] else "jpg", "sha256": index.sha256[p].decode()}
    related = [_related(build, b, split, key) for b in family(home, build) if b.ref != build.ref]
    augs = None
    if extras.is_reinforced(build.out) and extras.reinforced_split(build.out) == split:
        stored = extras.stored_augmentations(build.out, key)
        augs = extras.teacher_top(build.out, stored) if stored is not None else []
    patches = []
    if build.parent:
        for patch in extras.rded_patches(meta):
            parent = find_build(home, build.parent)
            where = _locate(parent, patch["key"])
            patches.append({**patch, "parent": parent.ref, "split": where})
    neighbours = {"prev": str(index.key[p - 1]) if p > 0 else None,
                  "next": str(index.key[p + 1]) if p + 1 < len(index) else None}
    return {"build": build, "split": split, "row": row, "meta": meta,
            "meta_error": meta_error, "image_error": image_error, "related": related,
            "augs": augs, "patches": patches, "neighbours": neighbours,
            "thumb": FAMILY_THUMB,
            "images_from": ds.name if extras.is_reinforced(build.out) else None}


def _locate(build: Build, key: str) -> str | None:
    """The split of ``build`` that holds ``key``, or None."""
    ds = images_of(build.out)
    for split in sorted(ds.splits):
        if position_of(build.out, split, key) is not None:
            return split
    return None


def _related(this: Build, other: Build, split: str, key: str) -> dict:
    """How ``other`` (a build of the same family) holds sample ``key`` of ``split``."""
    info = {"build": other, "present": False, "same_images": False, "diff_error": None,
            "meta": {}, "reinforced": extras.is_reinforced(other.out)}
    ds = images_of(other.out)
    if split not in ds.splits or position_of(other.out, split, key) is None:
        return info
    info["present"] = True
    info["same_images"] = ds.url == images_of(this.out).url
    info["meta"], _ = sample_metadata(other.out, split, key)
    if not info["same_images"]:
        from shardforge.view.images import READ_FAULTS

        try:
            extras.difference(this.out, other.out, split, key)
        except READ_FAULTS as exc:
            info["diff_error"] = str(exc)
    return info
