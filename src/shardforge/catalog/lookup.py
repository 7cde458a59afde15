"""Catalog lookups: one build, all builds, shard URLs per format and split, lineage."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from shardforge.catalog.entry import Build, Ref, parse_ref
from shardforge.catalog.errors import CatalogError, UnknownDataset
from shardforge.catalog.store import Store
from shardforge.layout.files import FORMATS
from shardforge.names import did_you_mean

Home = str | os.PathLike | None


def get(ref: str | Ref, home: Home = None) -> Build:
    """The build ``NAME@vN``, or the latest build of ``NAME``.

    Raises :class:`UnknownDataset` naming close matches when the name or version is unknown.
    """
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    store = Store(home)
    build = store.get(ref.name, ref.version)
    if build is not None:
        return build
    names = store.names()
    if ref.name not in names:
        where = f"the catalog {store.path}"
        if not names:
            raise UnknownDataset(f"unknown dataset {ref.name!r}: {where} is empty; build one "
                                 "with `shardforge build NAME` or `shardforge ingest`")
        raise UnknownDataset(f"unknown dataset {ref.name!r} in {where}"
                             f"{did_you_mean(ref.name, names)} "
                             "(`shardforge catalog list` shows all)")
    versions = ", ".join(f"v{v}" for v in store.versions(ref.name))
    raise UnknownDataset(f"{ref.name} has no version v{ref.version}; its versions: {versions}")


def list_builds(home: Home = None, all_versions: bool = False) -> list[Build]:
    """The latest build of every dataset (every build with ``all_versions``), by name."""
    return Store(home).all(latest_only=not all_versions)


def each_build(home: Home = None, all_versions: bool = False) -> Iterator[Build]:
    """:func:`list_builds`, one build at a time (:meth:`Store.each`: memory for one entry,
    not for the whole catalog)."""
    return Store(home).each(latest_only=not all_versions)


def refuse_to_rewrite(out: str, home: Home, what: str) -> None:
    """Guard of every job that is about to rewrite ``out`` with other inputs or parameters
    (``what``: how they differ): ValueError naming ``out``, the catalog builds at ``home``
    whose files are there and the fix, when there are any (their files must never change);
    nothing otherwise (an unregistered output is the job's to rebuild)."""
    from shardforge.storage import resolve

    url = resolve(out).url
    held = [b.ref for b in Store(home).each(latest_only=False) if resolve(b.out).url == url]
    if held:
        raise ValueError(
            f"{url} holds the files of the catalog build(s) {', '.join(held)}, made with "
            f"{what}; rebuilding there would change them. Give another output location (or "
            "none: the variant jobs' default is keyed by their parameters) or another name; "
            f"delete {url} first only if no build needs it")


def resolve_urls(ref: str | Ref, format: str = "wds", split: str = "train",  # noqa: A002
                 home: Home = None) -> list[str]:
    """Shard URLs of one split in one format: the tars in order (``wds``), or the one
    ``.beton`` file (``beton``). Unknown formats and splits raise :class:`UnknownDataset`."""
    build = get(ref, home)
    return urls_of(build, format, split)


def urls_of(build: Build, format: str, split: str) -> list[str]:  # noqa: A002
    """Like :func:`resolve_urls` for a build already fetched."""
    if format not in FORMATS:
        raise CatalogError(f"format {format!r} is not one of {', '.join(FORMATS)}"
                           f"{did_you_mean(format, FORMATS)}")
    per_split = build.formats.get(format) or {}
    if not per_split:
        raise UnknownDataset(f"{build.ref} has no {format} files; it has: "
                             f"{', '.join(sorted(build.formats)) or 'none'}")
    if split not in per_split:
        raise UnknownDataset(f"{build.ref} has no split {split!r} in {format}; splits: "
                             f"{', '.join(sorted(per_split))}{did_you_mean(split, per_split)}")
    recs = per_split[split]
    return [r["url"] for r in recs] if isinstance(recs, list) else [recs["url"]]


def lineage(ref: str | Ref, home: Home = None) -> list[Build]:
    """The build and its ancestors: ``[build, parent, grandparent, ..., root]``.

    The root is the build made from a source (``root.source``). A parent missing from
    the catalog raises :class:`UnknownDataset`; a cycle raises :class:`CatalogError`.
    """
    chain = [get(ref, home)]
    seen = {chain[0].ref}
    while chain[-1].parent:
        parent = chain[-1].parent
        if parent in seen:
            raise CatalogError(f"lineage of {chain[0].ref} loops at {parent}; "
                               "the catalog is inconsistent: report it")
        try:
            chain.append(get(parent, home))
        except UnknownDataset as exc:
            raise UnknownDataset(f"{chain[-1].ref} names parent {parent}, which is not in "
                                 f"this catalog ({exc})") from exc
        seen.add(parent)
    return chain


def resolve_dataset(ref: str, home: Home = None) -> str:
    """The storage location (path or URL) of the dataset ``ref`` names.

    ``ref`` is either a location holding a ``summary.json`` (returned unchanged) or a
    catalog name ``NAME[@VERSION]`` (latest version by default; ``home`` is the catalog
    root, default ``$SHARDFORGE_HOME`` or ``~/.shardforge``). Raises
    :class:`~shardforge.layout.dataset.DatasetNotFoundError` naming both lookups when
    neither finds it.
    """
    from shardforge.layout.dataset import DatasetNotFoundError, dataset_location

    if "://" in ref or os.path.sep in ref or os.path.exists(ref):
        return dataset_location(ref)
    try:
        return get(ref, home=home).out
    except CatalogError as exc:
        raise DatasetNotFoundError(f"{ref!r} is neither a dataset directory nor a catalog "
                                   f"dataset: {exc}") from exc


_CATALOG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*(@v[0-9]+)?$")


def locate_if_named(value: str, home: Home = None) -> str:
    """``value`` when it is a location (or anything but a catalog name, e.g.
    ``builtin:demo``); the location of the catalog build it names when it is a catalog
    name ``NAME[@vN]`` that is not also an existing path."""
    if _CATALOG_NAME.match(value) and not os.path.exists(value):
        return resolve_dataset(value, home)
    return value
