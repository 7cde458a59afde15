"""Check a build's files against its catalog entry: missing, resized, damaged, corrupt.

Every file (WebDataset tars, ``.beton`` files, the index) is checked in two steps:

1. size (and, with ``quick``, structure: :mod:`shardforge.catalog.structure`), on local
   threads: a ``stat`` or a few range reads per file;
2. unless ``quick``, the sha256 of the whole file against its record: on Ray tasks when
   a Ray cluster is available (``ray_address`` given, ``RAY_ADDRESS`` set, or Ray
   already initialised in this process), else on local threads. A file a Ray worker
   cannot open (a local path that node does not see) is hashed here instead.

Progress (files and bytes done) goes to an optional
:class:`~shardforge.engine.progress.Progress`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from shardforge.catalog.entry import Build
from shardforge.catalog.structure import check_structure
from shardforge.engine.progress import Progress
from shardforge.storage import Location, resolve

VERIFY_THREADS = 8
#: One hashed file: its position in the list given, its sha256 or None, the error or None.
Hashed = tuple[int, str | None, str | None]


@dataclass(frozen=True)
class FileProblem:
    """One file that does not match its catalog record."""

    label: str       # wds[train], beton[val], index
    url: str
    problem: str     # "missing", "size N, expected M", "sha256 X, expected Y", structure


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_build`: files checked, the problems found and how
    (``mode``: ``full`` or ``quick``; ``hashed_on``: ``threads``, ``ray`` or ``none``)."""

    ref: str
    checked: int = 0
    bytes: int = 0
    problems: list[FileProblem] = field(default_factory=list)
    mode: str = "full"
    hashed_on: str = "none"

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class _Item:
    """One file to check: its label, record, location and expected sample count."""

    label: str
    rec: dict
    loc: Location
    expected: int | None


def verify_build(build: Build, rehash: bool = True, threads: int = VERIFY_THREADS, *,
                 quick: bool = False, ray_address: str | None = None,
                 progress: Progress | None = None) -> VerifyReport:
    """Check every file of ``build`` (local and s3:// alike): present and of the recorded
    size; with ``quick``, also structurally sound (no hashing); otherwise, with
    ``rehash``, of the recorded sha256 (re-hashed in full, spread over Ray tasks when a
    cluster is available: see the module docstring). ``rehash=False`` checks sizes only.
    Problems are listed in file order."""
    items = _items(build)
    report = VerifyReport(build.ref, mode="quick" if quick else "full")
    found: dict[int, FileProblem] = {}
    to_hash: list[int] = []

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        checks = pool.map(lambda item: _size_or_structure(item, quick), items)
        for i, problem in enumerate(checks):
            if problem is None and rehash and not quick:
                to_hash.append(i)
                continue
            if problem is not None:
                found[i] = problem
            if progress is not None:
                progress.advance(items[i].rec["size"])
    if to_hash:
        hasher = _ray_hasher(ray_address)
        report.hashed_on = "threads" if hasher is None else "ray"
        urls = [items[i].loc.url for i in to_hash]
        results = hasher(urls) if hasher is not None else _thread_hashes(urls, threads)
        for position, digest, error in results:
            i = to_hash[position]
            if error is not None and hasher is not None:
                _, digest, error = hash_file(position, items[i].loc.url)
            if progress is not None:
                progress.advance(items[i].rec["size"])
            problem = _digest_problem(items[i], digest, error)
            if problem is not None:
                found[i] = problem
    report.problems = [found[i] for i in sorted(found)]
    report.checked = len(items)
    report.bytes = sum(item.rec["size"] for item in items)
    return report


def _items(build: Build) -> list[_Item]:
    """Every file of the build, with where it is and how many samples it should hold."""
    root = resolve(build.out)
    out = []
    for label, rec in build.files():
        if label.startswith("wds["):
            expected = rec.get("samples")
        elif label.startswith(("beton[", "wids[")):
            split = label[label.index("[") + 1:-1]
            expected = (build.splits.get(split) or {}).get("samples")
        else:
            expected = build.samples
        out.append(_Item(label, rec, _location(root, rec), expected))
    return out


def _size_or_structure(item: _Item, quick: bool) -> FileProblem | None:
    """The size check, and with ``quick`` the structural one."""
    label, rec = item.label, item.rec
    try:
        size = item.loc.size()
        if size is None:
            return FileProblem(label, rec["url"], "missing")
        if size != rec["size"]:
            return FileProblem(label, rec["url"],
                               f"size {size:,} B, expected {rec['size']:,} B (truncated "
                               "or overwritten)")
        if quick:
            problem = check_structure(label, item.loc, size, item.expected)
            if problem:
                return FileProblem(label, rec["url"], f"{problem} (damaged)")
    except OSError as exc:
        return FileProblem(label, rec["url"], f"unreadable: {exc}")
    return None


def _digest_problem(item: _Item, digest: str | None, error: str | None) -> FileProblem | None:
    if error is not None:
        return FileProblem(item.label, item.rec["url"], f"unreadable: {error}")
    if digest != item.rec["sha256"]:
        return FileProblem(item.label, item.rec["url"],
                           f"sha256 {str(digest)[:16]}..., expected "
                           f"{item.rec['sha256'][:16]}... (corrupt)")
    return None


def hash_file(position: int, url: str) -> Hashed:
    """``(position, sha256, None)`` of the file at ``url``, or ``(position, None, error)``
    when it cannot be read here (the caller may retry elsewhere). Runs in Ray tasks too."""
    try:
        return position, resolve(url).sha256(), None
    except (OSError, ValueError) as exc:
        return position, None, " ".join(str(exc).split())


def _thread_hashes(urls: list[str], threads: int) -> Iterator[Hashed]:
    """Hash ``urls`` on local threads; yield results as they finish."""
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        futures = [pool.submit(hash_file, i, url) for i, url in enumerate(urls)]
        for future in as_completed(futures):
            yield future.result()


def _ray_hasher(address: str | None) -> Callable[[list[str]], Iterator[Hashed]] | None:
    """A function hashing URLs on Ray tasks when a cluster is available, else None."""
    ray = sys.modules.get("ray")
    initialised = ray is not None and ray.is_initialized()
    if not (address or os.environ.get("RAY_ADDRESS") or initialised):
        return None
    from shardforge.catalog.verify_ray import hash_on_ray

    return lambda urls: hash_on_ray(urls, address)


def _location(root: Location, rec: dict) -> Location:
    """The file of a record: relative to the build's output when recorded so (one
    filesystem for all files, as written), else its own URL."""
    return root.join(rec["path"]) if rec.get("path") else resolve(rec["url"])
