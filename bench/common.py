"""Helpers shared by the benchmark scripts in ``bench/``: machine facts and BENCHMARKS.md sections.

Every benchmark owns one section of BENCHMARKS.md, delimited by ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->``; :func:`write_section` replaces only that section (or appends it),
so benchmarks can be re-run independently without clobbering each other.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

BENCHMARKS_HEADER = """# Benchmarks

Measured numbers for shardforge, produced by the scripts in `bench/`. Each section is
written by one script (its command is given) and replaced only by that script when it is
re-run, so sections may come from different dates and machines: every section states its
command, machine, date and library versions. Numbers from different machines are not
comparable. The ingest and loaders sections' figures (`docs/bench/`) are drawn by their
scripts; `python scripts/plots_from_pages.py` redraws them from the recorded tables.
"""


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ram_gib() -> float:
    """Total RAM in GiB (MemTotal from /proc/meminfo)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return float("nan")


def nproc() -> int:
    """CPUs this process may use (what ``nproc`` prints)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def utc_date() -> str:
    """``date -u`` output."""
    try:
        return subprocess.run(["date", "-u"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        import datetime as dt
        return dt.datetime.now(dt.timezone.utc).strftime("%a %b %d %H:%M:%S UTC %Y")


def versions(packages: Iterable[str]) -> dict[str, str]:
    """Installed distribution versions (``importlib.metadata``: ffcv's ``__version__`` lies)."""
    out = {}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine_line() -> str:
    return (f"{nproc()} CPUs (`nproc`), {cpu_model()}, {ram_gib():.1f} GiB RAM, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}")


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command that ran this script, as a user would type it (repo-relative)."""
    argv = list(sys.argv if argv is None else argv)
    script = argv[0]
    try:
        script = os.path.relpath(script)
    except ValueError:
        pass
    return "python " + " ".join(shlex.quote(a) for a in [script, *argv[1:]])


def preamble(command: str, packages: Iterable[str]) -> list[str]:
    """The lines every section starts with: command, machine, date, versions."""
    vers = ", ".join(f"{k} {v}" for k, v in versions(packages).items())
    return [f"- Command: `{command}`",
            f"- Machine: {machine_line()}",
            f"- Date: {utc_date()}",
            f"- Versions: {vers}"]


def best(values: Sequence[float]) -> float:
    return min(values)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def md_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def write_section(md_path: str | os.PathLike, name: str, body: str,
                  header: str = BENCHMARKS_HEADER) -> None:
    """Replace (or append) the ``<!-- bench:NAME -->`` section of ``md_path``.

    Creates the file with ``header`` if missing. ``body`` is the section's markdown,
    starting with its ``## Title`` line.
    """
    path = Path(md_path)
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}\n"
    text = path.read_text() if path.exists() else header.rstrip() + "\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip() + "\n\n" + block
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def publish(body: str, out_md: str | None, section: str, results: object = None,
            work: str | None = None) -> None:
    """A benchmark's ending: print ``body``; keep ``results`` as ``WORK/results.json``
    (when both are given); write ``body`` as section ``section`` of ``out_md`` (if any)."""
    import json

    print(body)
    if results is not None and work is not None:
        Path(work, "results.json").write_text(json.dumps(results, indent=1))
    if out_md:
        write_section(out_md, section, body)
        print(f"wrote section '{section}' of {out_md}", file=sys.stderr)


def tree_cpu_seconds(include_reaped: bool = False) -> float:
    """User + system CPU seconds of this process and its live descendants (Ray daemons and
    workers, DataLoader workers); with ``include_reaped``, also of children already reaped."""
    import resource

    import psutil

    total = 0.0
    me = psutil.Process()
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    if include_reaped:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        total += kids.ru_utime + kids.ru_stime
    return total


def publish_scale(lines: list[str], out_md: str | None, section: str, results: object,
                  work: str | None, doc: Path | None) -> None:
    """:func:`publish` a scale benchmark's section (``lines``: title, blank, a link to
    docs/scale.md, blank, the rest); with ``doc``, also write it to that page (docs/scale.md)
    without the link line, its image links made relative to docs/."""
    publish("\n".join(lines), out_md, section, results, work)
    if doc:
        write_section(doc, section, "\n".join(lines[:2] + lines[4:]).replace(
            "](docs/scale-", "](scale-"), header="# Scale")
