"""The catalog as the pages see it: every build with its sizes and place in the lineage
forest, a build by its URL reference (close matches when unknown), and a build's family
(every build of the lineage tree it belongs to).

The catalog is read on every request (a read-only SQLite query: builds registered while the
server runs appear on the next page load); entries are immutable, so nothing derived from
one goes stale.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from shardforge.catalog.entry import Build, parse_ref
from shardforge.catalog.errors import CatalogError
from shardforge.catalog.lookup import list_builds
from shardforge.view.errors import NotFound, close_matches

Home = str | os.PathLike | None


@dataclass(frozen=True)
class BuildRow:
    """One build in the catalog table: the entry, its depth in the lineage forest (0: made
    from a source, or its parent is not in this catalog), the bytes of its recorded files
    and whether it is the latest version of its name."""

    build: Build
    depth: int
    total_bytes: int
    latest: bool

    @property
    def formats(self) -> list[str]:
        """The shard formats the build records, sorted (``beton``, ``wds``)."""
        return sorted(f for f, splits in self.build.formats.items() if splits)


def all_builds(home: Home) -> list[Build]:
    """Every build of the catalog at ``home`` (every version), by name and version."""
    return list_builds(home, all_versions=True)


def catalog_rows(home: Home) -> list[BuildRow]:
    """Every build, in lineage order: each root (by name, version) followed by its
    descendants depth first, so a child is listed below its parent."""
    builds = all_builds(home)
    latest = {}
    for b in builds:
        latest[b.name] = max(latest.get(b.name, 0), b.version)
    rows = []
    for build, depth in _preorder(builds):
        size = sum(int(rec.get("size") or 0) for _label, rec in build.files())
        rows.append(BuildRow(build, depth, size, build.version == latest[build.name]))
    return rows


def _preorder(builds: list[Build]) -> list[tuple[Build, int]]:
    """``(build, depth)`` depth first from the roots (builds whose parent is absent)."""
    by_ref = {b.ref: b for b in builds}
    children: dict[str, list[Build]] = {}
    roots = []
    for b in builds:
        if b.parent and b.parent in by_ref and b.parent != b.ref:
            children.setdefault(b.parent, []).append(b)
        else:
            roots.append(b)
    out: list[tuple[Build, int]] = []
    seen: set[str] = set()
    stack = [(b, 0) for b in reversed(roots)]
    while stack:
        build, depth = stack.pop()
        if build.ref in seen:            # a damaged catalog with a cycle: list it once
            continue
        seen.add(build.ref)
        out.append((build, depth))
        stack += [(c, depth + 1) for c in reversed(children.get(build.ref, []))]
    out += [(b, 0) for b in builds if b.ref not in seen]     # cycle members
    return out


def find_build(home: Home, ref: str) -> Build:
    """The build ``ref`` names (``NAME`` = latest version, ``NAME@vN``), or
    :class:`NotFound` naming close matches (names, or the versions there are)."""
    builds = all_builds(home)
    try:
        parsed = parse_ref(ref)
    except CatalogError as exc:
        raise NotFound(str(exc), _suggest(ref, builds)) from None
    same = [b for b in builds if b.name == parsed.name]
    if not same:
        where = "the catalog is empty" if not builds else \
            f"the catalog has {len({b.name for b in builds})} dataset(s)"
        raise NotFound(f"unknown dataset {parsed.name!r}: {where}", _suggest(ref, builds))
    if parsed.version is None:
        return max(same, key=lambda b: b.version)
    for b in same:
        if b.version == parsed.version:
            return b
    versions = ", ".join(b.ref for b in same)
    raise NotFound(f"{parsed.name} has no version v{parsed.version}; its versions: {versions}",
                   [(b.ref, f"/d/{b.ref}") for b in same])


def _suggest(ref: str, builds: list[Build]) -> list[tuple[str, str]]:
    names = close_matches(ref.partition("@")[0], [b.name for b in builds])
    return [(n, f"/d/{n}") for n in names]


def family(home: Home, build: Build) -> list[Build]:
    """Every build of the lineage tree ``build`` belongs to: its root ancestor (the oldest
    ancestor in this catalog) and all the root's descendants, depth first, ``build``
    included (so demo, demo-cuda and demo-stylized are one family)."""
    builds = all_builds(home)
    by_ref = {b.ref: b for b in builds}
    root, seen = build, {build.ref}
    while root.parent and root.parent in by_ref and root.parent not in seen:
        root = by_ref[root.parent]
        seen.add(root.ref)
    tree = [b for b, _ in _preorder(builds)]
    members = {root.ref}
    for b in tree:                     # preorder: a parent comes before its children
        if b.parent in members:
            members.add(b.ref)
    return [b for b in tree if b.ref in members]


def format_bytes(n: float) -> str:
    """``n`` bytes as ``12.3 MiB`` (B, KiB, MiB, GiB, TiB)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
