"""Catalog entries on shared storage: ``OUT/catalog-entry.json`` next to a build's files.

Every registration writes the entry (what the catalog database stores for ``NAME@vN``:
provenance, lineage, counts, every file's URL, size and sha256, parameters, times) next
to the build's outputs, local or ``s3://`` (:func:`write_entry`). Another catalog home
that sees the same storage registers those builds with ``shardforge catalog sync URL``
(:mod:`shardforge.catalog.sync`), which finds the entries with :func:`find_entries` and
reads them with :func:`read_entry`.
"""

from __future__ import annotations

import collections
import json
import os
import posixpath
import re

import pyarrow.fs as pafs

from shardforge.catalog.entry import NAME_RE, Build
from shardforge.catalog.errors import CatalogError
from shardforge.layout.files import (
    BETON_DIR,
    CATALOG_ENTRY_FILE,
    SUMMARY_FILE,
    WDS_DIR,
    WORK_DIR,
)
from shardforge.storage import Location, resolve

#: Marks a JSON file as a catalog entry, and its layout's version.
ENTRY_FORMAT = 1
#: How many directory levels below the URL ``sync`` looks for entries by default
#: (``ROOT/datasets/NAME/KEY`` is 3 levels down).
DEFAULT_DEPTH = 5
#: Directories that hold a build's files, never another build: not descended into.
_FILE_DIRS = frozenset({WDS_DIR, BETON_DIR, WORK_DIR, "reinforce", "teacher-runs"})
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class EntryError(CatalogError):
    """A ``catalog-entry.json`` that cannot be read as a catalog entry."""


def entry_location(out: str) -> Location:
    """Where the entry of the build whose outputs are at ``out`` lives."""
    return resolve(out).join(CATALOG_ENTRY_FILE)


def write_entry(build: Build) -> str | None:
    """Write ``build``'s entry to ``OUT/catalog-entry.json`` (atomically: temporary name,
    then rename). Returns None when written or nothing was to be written, else what went
    wrong, in words (the caller decides whether that is fatal).

    An entry already there with the same ``build_id`` is kept as it is (the build's first
    registration, possibly another home's version number, stays the shared one); one of
    another build (the outputs were rebuilt since) is replaced. A local output directory
    that does not exist is left alone (nothing to write next to).
    """
    try:
        loc = entry_location(build.out)
        if loc.is_local and not os.path.isdir(posixpath.dirname(loc.path)):
            return None
        if loc.exists():
            try:
                if read_entry(loc).build_id == build.build_id:
                    return None
            except EntryError:
                pass                    # damaged or foreign: replaced below
        data = {"entry_format": ENTRY_FORMAT, **build.to_dict()}
        loc.write_bytes_atomic(json.dumps(data, indent=1, sort_keys=True).encode())
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return None


def read_entry(loc: Location) -> Build:
    """The build a ``catalog-entry.json`` at ``loc`` describes.

    Raises :class:`EntryError` naming the file, the problem and the fix when it is
    unreadable, not JSON, not an entry or lacks fields; ``OSError`` propagates only for
    storage failures other than a missing file.
    """
    fix = ("register the build again with `shardforge catalog register "
           f"{loc.parent().url}` (it rewrites the entry)")
    try:
        data = json.loads(loc.read_bytes())
    except FileNotFoundError:
        raise EntryError(f"{loc.url} does not exist; {fix}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise EntryError(f"{loc.url} is not JSON ({exc}); {fix}") from None
    if not isinstance(data, dict) or data.get("entry_format") != ENTRY_FORMAT:
        found = data.get("entry_format") if isinstance(data, dict) else None
        raise EntryError(f"{loc.url} is not a catalog entry of format {ENTRY_FORMAT} "
                         f"(entry_format: {found!r}); {fix}, or upgrade shardforge if a "
                         "newer one wrote it")
    try:
        build = Build.from_dict(data)
    except TypeError as exc:
        raise EntryError(f"{loc.url} lacks fields ({exc}); {fix}") from None
    problem = _entry_problem(build)
    if problem:
        raise EntryError(f"{loc.url}: {problem}; {fix}")
    return build


def _entry_problem(build: Build) -> str | None:
    """What makes a parsed entry unusable (None: nothing)."""
    if not isinstance(build.name, str) or not NAME_RE.match(build.name):
        return f"name {build.name!r} is not a dataset name"
    if not isinstance(build.version, int) or isinstance(build.version, bool) \
            or build.version < 1:
        return f"version {build.version!r} is not an integer >= 1"
    if not isinstance(build.build_id, str) or not _HEX64.match(build.build_id):
        return "build_id is not 64 hex digits"
    if not isinstance(build.formats, dict) or not isinstance(build.out, str):
        return "formats or out has the wrong type"
    try:
        records = build.files()
    except (AttributeError, TypeError) as exc:
        return f"file records are malformed ({exc})"
    for _label, rec in records:
        if not isinstance(rec, dict) or any(k not in rec for k in ("url", "size", "sha256")):
            return f"file record {rec!r} lacks url, size or sha256"
    if not records:
        return "it lists no files"
    return None


def find_entries(url: str, max_depth: int = DEFAULT_DEPTH) -> list[Location]:
    """Every ``catalog-entry.json`` at ``url`` (a directory or prefix, local or
    ``s3://``) and up to ``max_depth`` directory levels below it, sorted by location.

    Listing is one directory level at a time: a directory holding an entry or a
    ``summary.json`` is a dataset output, so its subdirectories (shards) are not listed;
    nor are hidden directories. ``url`` naming an entry file itself gives that file.
    Raises :class:`CatalogError` when ``url`` does not exist or is not a directory.
    """
    root = resolve(url)
    info = root.fs.get_file_info(root.path)
    if info.type == pafs.FileType.File and posixpath.basename(root.path) == CATALOG_ENTRY_FILE:
        return [root]
    if info.type == pafs.FileType.NotFound and not _is_prefix(root):
        raise CatalogError(f"{root.url} does not exist; give the directory (or s3:// "
                           "prefix) that holds the dataset outputs")
    if info.type == pafs.FileType.File:
        raise CatalogError(f"{root.url} is a file; give the directory (or s3:// prefix) "
                           f"that holds the dataset outputs, or a {CATALOG_ENTRY_FILE}")
    found: list[Location] = []
    queue = collections.deque([(root, 0)])
    while queue:
        loc, depth = queue.popleft()
        selector = pafs.FileSelector(loc.path, recursive=False, allow_not_found=True)
        children = {posixpath.basename(i.path): i for i in loc.fs.get_file_info(selector)}
        entry = children.get(CATALOG_ENTRY_FILE)
        if entry is not None and entry.type == pafs.FileType.File:
            found.append(loc.join(CATALOG_ENTRY_FILE))
            continue
        if SUMMARY_FILE in children or depth >= max_depth:
            continue
        for name in sorted(children):
            if (children[name].type == pafs.FileType.Directory and not name.startswith(".")
                    and name not in _FILE_DIRS):
                queue.append((loc.join(name), depth + 1))
    return sorted(found, key=lambda loc: loc.url)


def _is_prefix(root: Location) -> bool:
    """Whether an object-store ``root`` with no marker object has objects below it."""
    if root.is_local:
        return False
    selector = pafs.FileSelector(root.path, recursive=False, allow_not_found=True)
    return bool(root.fs.get_file_info(selector))
