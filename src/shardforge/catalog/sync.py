"""``shardforge catalog sync URL``: register in this home the builds whose entries
(``catalog-entry.json``, :mod:`shardforge.catalog.shared`) sit on shared storage.

Each build keeps its ``NAME@vN`` (so lineage ``parent`` references still resolve) and its
entry unchanged. Idempotent and safe to run concurrently: all additions are one
transaction (:meth:`~shardforge.catalog.store.Store.add_entries`), and a build already
present (same ``build_id``, the hash of its provenance and file contents) is skipped. A
different build already at the same ``NAME@vN`` is a conflict: reported, never
overwritten. An entry whose directory no longer matches it (outputs rebuilt since, or
the directory copied or moved elsewhere) is reported and not added.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from shardforge.catalog.entry import Build, file_records
from shardforge.catalog.errors import CatalogError
from shardforge.catalog.shared import DEFAULT_DEPTH, find_entries, read_entry
from shardforge.catalog.store import Store
from shardforge.layout.files import SUMMARY_FILE
from shardforge.storage import Location, resolve

READ_THREADS = 8
#: Outcomes of one entry; the last two make the sync fail (exit 1).
STATUSES = ("added", "present", "conflict", "problem")


@dataclass(frozen=True)
class SyncItem:
    """What happened to one entry: ``status`` (one of :data:`STATUSES`), the build's
    ``ref`` as the entry names it (None when unreadable), the entry's ``url`` and a
    one-line ``detail`` (for conflicts and problems: what and the fix)."""

    status: str
    ref: str | None
    url: str
    detail: str = ""


@dataclass
class SyncReport:
    """Outcome of :func:`sync_catalog`: one item per entry found, in location order."""

    url: str
    home: str
    items: list[SyncItem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no entry conflicted or failed to read."""
        return not any(i.status in ("conflict", "problem") for i in self.items)

    def count(self, status: str) -> int:
        """How many entries had ``status``."""
        return sum(i.status == status for i in self.items)


def sync_catalog(url: str, home: str | os.PathLike | None = None,
                 max_depth: int = DEFAULT_DEPTH) -> SyncReport:
    """Register at ``home`` every build whose entry is at ``url`` or up to ``max_depth``
    directory levels below it (local or ``s3://``), keeping each one's ``NAME@vN``.

    Returns a :class:`SyncReport`; entries are never written. Raises :class:`CatalogError`
    when ``url`` does not exist and
    :class:`~shardforge.catalog.dbfile.CatalogUnavailable` when the catalog cannot be
    written (read-only, damaged, locked, full disk).
    """
    if max_depth < 0:
        raise CatalogError(f"--max-depth {max_depth} is negative; give 0 (only URL itself) "
                           "or more")
    store = Store(home)
    locations = find_entries(url, max_depth)
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        read = list(pool.map(_read_checked, locations))
    report = SyncReport(resolve(url).url, str(store.home))
    good: list[tuple[Location, Build]] = []
    for loc, (build, problem) in zip(locations, read, strict=True):
        if build is None or problem:
            report.items.append(SyncItem("problem", build.ref if build else None, loc.url,
                                         problem))
        else:
            good.append((loc, build))
    good.sort(key=lambda lb: (lb[1].name, lb[1].version, lb[0].url))
    outcomes = store.add_entries([b for _loc, b in good]) if good else []
    for (loc, build), (status, held) in zip(good, outcomes, strict=True):
        report.items.append(SyncItem(status, build.ref, loc.url,
                                     _detail(status, build, held, loc, store)))
    report.items.sort(key=lambda item: item.url)
    return report


def _detail(status: str, build: Build, held: Build, loc: Location, store: Store) -> str:
    """The one-line explanation of an outcome."""
    if status == "present" and held.version != build.version:
        return f"present as {held.ref} (the entry says {build.ref})"
    if status != "conflict":
        return ""
    return (f"{build.ref} in {store.path} is another build (build_id {held.build_id[:12]}, "
            f"out {held.out}) than this entry's (build_id {build.build_id[:12]}); not "
            "added, nothing overwritten: register it under a new version with `shardforge "
            f"catalog register {loc.parent().url}`")


def _read_checked(loc: Location) -> tuple[Build | None, str]:
    """The entry's build and "" when it can be added, else what is wrong (one line)."""
    try:
        build = read_entry(loc)
    except (CatalogError, OSError) as exc:
        return None, " ".join(str(exc).split())
    here = loc.parent()
    if _comparable(resolve(build.out).url) != _comparable(here.url):
        return build, (f"{build.ref} was registered at {build.out}, but its entry is at "
                       f"{here.url} (a copied or moved output); not added: register the "
                       f"copy with `shardforge catalog register {here.url}`")
    try:
        summary = json.loads(here.join(SUMMARY_FILE).read_bytes())
    except FileNotFoundError:
        return build, (f"{here.url} has no {SUMMARY_FILE} (an unfinished or deleted build); "
                       "not added: rebuild it, or remove the stale entry")
    except (OSError, ValueError) as exc:
        return build, (f"{here.url}/{SUMMARY_FILE} cannot be read ({exc}); not added: "
                       "rebuild it")
    if _files(summary) != _files(build.to_dict()):
        return build, (f"the files at {here.url} are not those of {build.ref} (rebuilt after "
                       "its entry was written); not added: register the new build with "
                       f"`shardforge catalog register {here.url}`")
    return build, ""


def _files(data: dict) -> set[tuple]:
    """The (label, path or URL, size, sha256) of every file a summary or entry lists."""
    try:
        return {(label, rec.get("path") or rec["url"], rec["size"], rec["sha256"])
                for label, rec in file_records(data.get("formats") or {}, data.get("index"))}
    except (AttributeError, KeyError, TypeError):
        return set()


def _comparable(url: str) -> str:
    """A location without its query (endpoint options) or trailing slash, for comparison."""
    if "://" not in url:
        return os.path.normpath(url)
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
