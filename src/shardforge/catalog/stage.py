"""``shardforge stage REF --to DIR``: a dataset's files copied to every node's local disk.

FFCV's loader memory-maps a local .beton; on a cluster whose datasets live in an object
store every node needs its own copy. Staging copies what the dataset's ``summary.json``
records (tars, .beton files, the index, the wids indexes, then ``summary.json`` itself,
last: a staged copy without it is not a dataset yet) into ``DIR`` on each alive Ray node:
one Ray task per node, pinned there (``NodeAffinitySchedulingStrategy``). Each file is
streamed to a temporary name, its sha256 computed on the way and compared with the
record, then renamed into place; a file already there with the recorded size and sha256
is kept. So a rerun copies only what is missing or damaged (idempotent, resumable), and
the copy opens like the original: the summary's paths are relative to its root.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from typing import TextIO

from shardforge.layout.files import SUMMARY_FILE
from shardforge.names import check_relative_path
from shardforge.storage import replace_durably, resolve

_FIX = "rebuild the dataset or run `shardforge catalog verify` on it"


class StageError(RuntimeError):
    """A file could not be staged; ``str()`` names the file, the problem and the fix."""


@dataclass
class NodeReport:
    """What one node's staging did."""

    node: str
    copied: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    bytes_copied: int = 0


def staged_files(summary: dict) -> list[dict]:
    """The records (``path``, ``size``, ``sha256``) of every file a staged copy needs, in
    copy order, from a dataset's ``summary.json`` (its own file not included)."""
    formats = summary.get("formats", {})
    records = [r for recs in formats.get("wds", {}).values() for r in recs]
    records += list(formats.get("beton", {}).values())
    records += list(formats.get("wids", {}).values())
    records.append(summary["index"])
    return [{"path": r["path"], "size": int(r["size"]), "sha256": r["sha256"]}
            for r in records]


def _matches(path: str, size: int, sha256: str) -> bool:
    if not os.path.isfile(path) or os.path.getsize(path) != size:
        return False
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest() == sha256


def stage_on_this_node(root: str, files: list[dict], summary_bytes: bytes, to: str,
                       node: str = "") -> NodeReport:
    """Copy ``files`` (records relative to the dataset at ``root``) and then the summary
    into the local directory ``to``; verify each by sha256 while copying. Raises
    :class:`StageError` (nothing renamed into place for that file) on a mismatch."""
    report = NodeReport(node)
    src_root = resolve(root)
    for rec in files:
        rel = check_relative_path(rec["path"], "file path", root, _FIX)
        dest = os.path.join(to, rel)
        if _matches(dest, rec["size"], rec["sha256"]):
            report.kept.append(rel)
            continue
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        tmp = f"{dest}.staging-{os.getpid()}"
        h, n = hashlib.sha256(), 0
        src = src_root.join(rel)
        try:
            with src.fs.open_input_stream(src.path) as fin, open(tmp, "wb") as fout:
                while block := fin.read(1 << 22):
                    h.update(block)
                    fout.write(block)
                    n += len(block)
            if n != rec["size"] or h.hexdigest() != rec["sha256"]:
                raise StageError(f"{src.url}: {n} bytes with sha256 {h.hexdigest()[:12]}, "
                                 f"but summary.json records {rec['size']} bytes, sha256 "
                                 f"{rec['sha256'][:12]}; {_FIX}")
            replace_durably(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        report.copied.append(rel)
        report.bytes_copied += n
    summary_path = os.path.join(to, SUMMARY_FILE)
    current = open(summary_path, "rb").read() if os.path.isfile(summary_path) else None
    if current != summary_bytes:
        tmp = f"{summary_path}.staging-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(summary_bytes)
        replace_durably(tmp, summary_path)
        report.copied.append(SUMMARY_FILE)
    else:
        report.kept.append(SUMMARY_FILE)
    return report


def stage_dataset(root: str, to: str, ray_address: str | None = None,
                  log: TextIO | None = None) -> list[NodeReport]:
    """Stage the dataset at ``root`` (a location with ``summary.json``) into the local
    directory ``to`` on every alive node of the Ray cluster (``ray_address``, the job's
    cluster under ``ray job submit``, else a private local Ray: this machine); return one
    report per node. Raises :class:`StageError` naming the file when a copy does not match
    its record."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from shardforge.engine.cluster import ray_session

    log = log if log is not None else sys.stderr
    if not os.path.isabs(to):
        raise StageError(f"--to {to!r} must be an absolute path: every node stages into "
                         "the same local path")
    summary_loc = resolve(root).join(SUMMARY_FILE)
    summary_bytes = summary_loc.read_bytes()
    summary = json.loads(summary_bytes)
    files = staged_files(summary)
    total = sum(r["size"] for r in files)
    with ray_session(ray_address):
        nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
        print(f"staging {summary.get('name', root)} ({len(files)} files, {total:,} bytes) "
              f"into {to} on {len(nodes)} node(s)", file=log)
        task = ray.remote(num_cpus=0, max_retries=2)(stage_on_this_node)
        refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            node, soft=False)).remote(summary_loc.parent().url, files, summary_bytes, to, node)
            for node in nodes]
        try:
            reports = ray.get(refs)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            raise StageError(str(cause) if cause is not None else str(exc)) from None
    for r in reports:
        print(f"  node {r.node[:12]}: {len(r.copied)} copied ({r.bytes_copied:,} bytes), "
              f"{len(r.kept)} already there", file=log)
    return reports


def reports_json(reports: list[NodeReport]) -> str:
    """The reports as JSON (for ``--json``)."""
    return json.dumps([asdict(r) for r in reports], indent=2)
