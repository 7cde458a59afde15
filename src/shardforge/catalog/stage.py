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

Temporary names carry the node id and the process id (``FILE.staging-NODE-PID``), so
nodes that share the directory (a shared mount, or several raylets on one machine) never
write the same temporary; each node removes only its own leftovers of a killed run.
Every node's outcome is reported (:class:`NodeReport`, ``error`` set when it failed); one
failed node fails the stage, with an error naming each failed node.
"""

from __future__ import annotations

import contextlib
import glob
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


_NODE_LOST_FIX = ("the node died or left the cluster while staging; rerun `shardforge "
                  "stage` once the cluster is whole (it copies only what is missing)")


class StageError(RuntimeError):
    """A file could not be staged; ``str()`` names the node and file, the problem and the
    fix. ``reports`` holds every node's outcome when the error comes from
    :func:`stage_dataset` (empty otherwise)."""

    def __init__(self, message: str, reports: list[NodeReport] | None = None):
        super().__init__(message)
        self.reports = list(reports or [])


@dataclass
class NodeReport:
    """What one node's staging did: the files copied and kept, and ``error`` (empty when
    the node staged everything)."""

    node: str
    address: str = ""
    copied: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    bytes_copied: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        """True when this node holds a complete verified copy."""
        return not self.error

    def line(self) -> str:
        """One human-readable line: node id, address and outcome."""
        where = f"node {self.node[:12]}" + (f" ({self.address})" if self.address else "")
        if self.error:
            return f"{where}: FAILED: {self.error}"
        return (f"{where}: {len(self.copied)} copied ({self.bytes_copied:,} bytes), "
                f"{len(self.kept)} already there")


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


def temp_name(dest: str, node: str) -> str:
    """The temporary name ``dest`` is written under on ``node`` by this process: unique
    per node and per process, so concurrent copies into a shared directory never meet."""
    return f"{dest}.staging-{node[:16] or 'local'}-{os.getpid()}"


def _remove_own_leftovers(dest: str, node: str) -> None:
    """Remove temporaries a killed earlier run on ``node`` left next to ``dest``; other
    nodes' temporaries (possibly being written now) are left alone."""
    for old in glob.glob(f"{glob.escape(dest)}.staging-{glob.escape(node[:16] or 'local')}-*"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(old)


def stage_on_this_node(root: str, files: list[dict], summary_bytes: bytes, to: str,
                       node: str = "", address: str = "") -> NodeReport:
    """Copy ``files`` (records relative to the dataset at ``root``) and then the summary
    into the local directory ``to``; verify each by sha256 while copying. ``node`` (the
    Ray node id) names the temporaries and the report. Raises :class:`StageError`
    (naming the node and the file; nothing renamed into place for that file) on a
    mismatch."""
    report = NodeReport(node, address)
    src_root = resolve(root)
    for rec in files + [{"path": SUMMARY_FILE}]:
        _remove_own_leftovers(os.path.join(to, rec["path"]), node)
    for rec in files:
        rel = check_relative_path(rec["path"], "file path", root, _FIX)
        dest = os.path.join(to, rel)
        if _matches(dest, rec["size"], rec["sha256"]):
            report.kept.append(rel)
            continue
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        tmp = temp_name(dest, node)
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
        tmp = temp_name(summary_path, node)
        with open(tmp, "wb") as f:
            f.write(summary_bytes)
        replace_durably(tmp, summary_path)
        report.copied.append(SUMMARY_FILE)
    else:
        report.kept.append(SUMMARY_FILE)
    return report


def stage_dataset(root: str, to: str, ray_address: str | None = None,
                  log: TextIO | None = None, nodes: list[str] | None = None
                  ) -> list[NodeReport]:
    """Stage the dataset at ``root`` (a location with ``summary.json``) into the local
    directory ``to`` on every alive node of the Ray cluster (``ray_address``, the job's
    cluster under ``ray job submit``, else a private local Ray: this machine), or on the
    node ids ``nodes``; one task per node, pinned there. Return one report per node, in
    node order, each line also printed to ``log`` (default stderr). When any node fails
    (a copy that does not match its record, a node that died), every other node still
    finishes and :class:`StageError` is raised naming each failed node and its error,
    with all the reports in ``.reports``."""
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
        listed = ray.nodes()
        address = {n["NodeID"]: n.get("NodeManagerAddress", "") for n in listed}  # dead too
        targets = ([n["NodeID"] for n in listed if n.get("Alive")] if nodes is None
                   else list(nodes))
        print(f"staging {summary.get('name', root)} ({len(files)} files, {total:,} bytes) "
              f"into {to} on {len(targets)} node(s)", file=log)
        task = ray.remote(num_cpus=0, max_retries=2)(stage_on_this_node)
        refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            node, soft=False)).remote(summary_loc.parent().url, files, summary_bytes, to,
                                      node, address.get(node, ""))
            for node in targets]
        reports = [_outcome(ray, ref, node, address.get(node, ""))
                   for node, ref in zip(targets, refs, strict=True)]
    for r in reports:
        print(f"  {r.line()}", file=log)
    failed = [r for r in reports if not r.ok]
    if failed:
        raise StageError(f"staging into {to} failed on {len(failed)} of {len(reports)} "
                         "node(s): " + "; ".join(r.line() for r in failed), reports)
    return reports


def _outcome(ray, ref, node: str, address: str) -> NodeReport:
    """The report of one node's task, or a report whose ``error`` says why it failed."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, StageError):
            error = str(cause)
        elif cause is not None:
            error = f"{type(cause).__name__}: {cause}"
        else:
            error = _first_line(exc)
    except ray.exceptions.RayError as exc:     # node died, task unschedulable, worker lost
        error = f"{type(exc).__name__}: {_first_line(exc)}; {_NODE_LOST_FIX}"
    return NodeReport(node, address, error=error)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def reports_json(reports: list[NodeReport]) -> str:
    """The reports as JSON (for ``--json``)."""
    return json.dumps([asdict(r) for r in reports], indent=2)
