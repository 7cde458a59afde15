"""Re-hash a build's files and report the missing, resized and corrupt ones."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from shardforge.catalog.entry import Build
from shardforge.storage import Location, resolve

VERIFY_THREADS = 8


@dataclass(frozen=True)
class FileProblem:
    """One file that does not match its catalog record."""

    label: str       # wds[train], beton[val], index
    url: str
    problem: str     # "missing", "size N, expected M", "sha256 X, expected Y"


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_build`: files checked and the problems found."""

    ref: str
    checked: int = 0
    bytes: int = 0
    problems: list[FileProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_build(build: Build, rehash: bool = True,
                 threads: int = VERIFY_THREADS) -> VerifyReport:
    """Check every WebDataset tar, .beton and index file of ``build``: present, of the
    recorded size and, with ``rehash``, of the recorded sha256 (re-hashed in full).
    Local and s3:// alike."""
    root = resolve(build.out)
    records = build.files()
    report = VerifyReport(build.ref)

    def check(item: tuple[str, dict]) -> FileProblem | None:
        label, rec = item
        loc = _location(root, rec)
        try:
            size = loc.size()
            if size is None:
                return FileProblem(label, rec["url"], "missing")
            if size != rec["size"]:
                return FileProblem(label, rec["url"],
                                   f"size {size:,} B, expected {rec['size']:,} B (truncated "
                                   "or overwritten)")
            if not rehash:
                return None
            digest = loc.sha256()
        except OSError as exc:
            return FileProblem(label, rec["url"], f"unreadable: {exc}")
        if digest != rec["sha256"]:
            return FileProblem(label, rec["url"], f"sha256 {digest[:16]}..., expected "
                                                  f"{rec['sha256'][:16]}... (corrupt)")
        return None

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for problem in pool.map(check, records):
            if problem is not None:
                report.problems.append(problem)
    report.checked = len(records)
    report.bytes = sum(rec["size"] for _label, rec in records)
    return report


def _location(root: Location, rec: dict) -> Location:
    """The file of a record: relative to the build's output when recorded so (one
    filesystem for all files, as written), else its own URL."""
    return root.join(rec["path"]) if rec.get("path") else resolve(rec["url"])
