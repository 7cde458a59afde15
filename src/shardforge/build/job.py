"""An ingest job: plan the source, build shards as Ray tasks, commit, summarise."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import sys
import time
from dataclasses import asdict
from typing import TextIO

import ray

from shardforge.build.actors import run_on_actors
from shardforge.build.commit import (
    SplitTotals,
    merge_split,
    remove_temporaries,
    write_index,
    write_rejects,
    write_wids_index,
)
from shardforge.build.config import FORMAT_VERSION, IngestConfig, ShardJob
from shardforge.build.hooks import BuildHooks
from shardforge.build.shard import ShardResult, build_shard, shard_paths
from shardforge.engine.cluster import ray_session
from shardforge.engine.faults import checkpoint
from shardforge.engine.manifest import record_verifies
from shardforge.engine.progress import Progress
from shardforge.engine.runner import TaskFailed, run_tasks
from shardforge.formats.image import decode_memory_bytes
from shardforge.layout.files import SUMMARY_FILE, WDS_DIR, tar_name
from shardforge.sources import plan_source
from shardforge.storage import resolve


class RejectsInStrictMode(RuntimeError):
    """Raised by a ``strict`` ingest that rejected inputs; nothing was committed."""


class JobFailed(RuntimeError):
    """A failure that is not about one sample ended the job; ``str()`` is one line: what
    failed, where, and the fix. Finished shards stay and a rerun reuses them."""


def _job(config: IngestConfig) -> ShardJob:
    return ShardJob(config.out, config.name, config.image, config.source_options,
                    config.page_size, config.variant)


def run_ingest(config: IngestConfig, log: TextIO | None = None,
               hooks: BuildHooks | None = None) -> dict:
    """Ingest ``config.source`` into WebDataset shards, one .beton per split and an index.

    Returns the summary (also written to ``OUT/summary.json``), passed through
    ``hooks.after_commit`` (e.g. registered in a catalog). Idempotent: shards already
    complete are verified and reused; a finished job whose outputs verify is not redone.
    A finished build of other inputs at ``config.out`` is replaced only when
    ``hooks.before_rewrite`` allows it. Raises :class:`RejectsInStrictMode` when
    ``config.strict`` and any input was rejected.
    """
    log = log if log is not None else sys.stderr
    hooks = hooks if hooks is not None else BuildHooks()
    started = time.monotonic()
    plan = _plan(config)
    stages = {"plan": time.monotonic() - started}
    job = _job(config)
    job_hash = hashlib.sha256("".join(job.spec_hash(s) for s in plan.shards).encode()).hexdigest()
    previous = _verified_summary(config, job_hash)
    if previous is None:
        _guard_another_build(config, job_hash, hooks)
    if previous is not None:
        print(f"{config.name}: already built with these inputs and parameters "
              f"({resolve(config.out).join(SUMMARY_FILE).url}); nothing to do", file=log)
        if not config.keep_parts:
            _delete_parts(job, plan.shards)     # a run killed while deleting them
        return hooks.committed(previous)
    print(f"{config.name}: {len(plan.shards)} shards from {plan.kind} source {config.source} "
          f"-> {config.out}", file=log)
    resolve(config.out).makedirs()
    progress = Progress(f"ingest {config.name}", len(plan.shards), stream=log)
    remove_temporaries(config.out)      # left by a killed run; rebuilt below if needed

    totals = SplitTotals()

    def on_result(r: ShardResult) -> None:
        progress.advance(r.num_samples, r.reused)
        totals.add(r)
        r.class_counts = {}     # summed into totals; not kept once per shard
        checkpoint("build", progress.done)

    try:
        with ray_session(config.ray_address):
            t0 = time.monotonic()
            results = _build_all(job, plan.shards, on_result=on_result,
                                 driver_lane=not config.workers_only)
            stages["shards"] = time.monotonic() - t0
    except TaskFailed as exc:
        raise JobFailed(
            f"{config.name}: {exc} (output {resolve(config.out).url}); fix the cause and "
            "rerun the same command: finished shards are reused") from exc
    checkpoint("manifests")
    # Every shard is in, so no writer of this job is left: delete what a worker killed
    # mid-write (a node lost during the job) left behind, as a rerun would.
    remove_temporaries(config.out)
    rejects = [asdict(r) for r in plan.rejects]
    for r in sorted(results, key=lambda r: (r.split, r.index)):
        rejects.extend(r.rejects)
    if config.strict and rejects:
        shown = "\n".join(f"  {r['origin']}: {r['reason']}" for r in rejects[:10])
        raise RejectsInStrictMode(
            f"{len(rejects)} input(s) rejected and --strict is set; nothing was committed. "
            f"Fix or remove them, or drop --strict:\n{shown}")
    summary = _commit(config, job, plan, results, rejects, job_hash, stages, totals.stats())
    if config.variant is not None:
        summary["variant"] = {"name": config.variant.name, "params": config.variant.params,
                              "splits": sorted(config.variant.splits)}
    summary["shards_reused"] = sum(r.reused for r in results)
    summary["nodes"] = len({r.node for r in results if not r.reused})
    summary["seconds"] = round(time.monotonic() - started, 3)
    summary["stage_seconds"] = {k: round(v, 3) for k, v in stages.items()}
    summary["images_per_second"] = round(progress.fresh_items / summary["seconds"], 1)
    checkpoint("index")
    resolve(config.out).join(SUMMARY_FILE).write_bytes_atomic(
        json.dumps(summary, indent=2, sort_keys=True).encode())
    if not config.keep_parts:
        _delete_parts(job, plan.shards)
    return hooks.committed(summary)


def _plan(config: IngestConfig):
    """The source's shard specs; a variant's parent per tar, or per class where it groups."""
    variant = config.variant
    if variant is None:
        return plan_source(config.source, config.source_options, config.source_kind)
    from shardforge.sources import dataset

    planned = dataset.plan(config.source, config.source_options,
                           by_class=variant.splits if variant.group_by_class else ())
    if variant.classes is None:
        return planned
    if variant.label_map is None or len(variant.label_map) != len(planned.classes):
        raise ValueError(f"variant {variant.name} keeps a subset of the classes but its "
                         f"label map was not made from this parent's {len(planned.classes)} "
                         "classes; build it through shardforge.build.variant_job."
                         "transform_dataset")
    return dataclasses.replace(planned, classes=list(variant.classes))


def _build_all(job: ShardJob, specs: list, on_result,
               driver_lane: bool = True) -> list[ShardResult]:
    """Build every shard: one Ray task each (the driver building some while Ray starts
    its workers, with ``driver_lane``), or on a pool of actors that keep a variant's
    transform (its model) loaded when the variant asks for actors or GPUs."""
    variant = job.variant
    if variant is None or not (variant.use_actors or variant.num_gpus > 0):
        # Memory from the largest image a task may decode, so Ray never runs more
        # decodes on a node than its memory holds (formats.image.decode_memory_bytes).
        remote = ray.remote(num_cpus=1, max_retries=3,
                            memory=task_memory(job.image.max_pixels))(build_shard)
        return list(run_tasks(remote, [(spec, job) for spec in specs], on_result=on_result,
                              local_fn=build_shard if driver_lane else None))
    return list(run_on_actors(job, specs, on_result))


def task_memory(max_pixels: int) -> int:
    """Bytes of Ray ``memory`` a shard task requests: what decoding the largest allowed
    image needs, capped at the largest node's memory (a request no node can meet would
    leave the task pending forever; capped, at most one such task runs per node)."""
    wanted = decode_memory_bytes(max_pixels)
    nodes = [n.get("Resources", {}).get("memory", 0) for n in ray.nodes() if n.get("Alive")]
    largest = int(max(nodes, default=0))
    return min(wanted, largest) if largest > 0 else wanted


def _delete_parts(job: ShardJob, specs) -> None:
    """Drop the per-shard .beton parts once merged: they would double the .beton's disk
    use. A later rerun that finds damage rebuilds those shards (same bytes)."""
    for n, spec in enumerate(specs, 1):
        shard_paths(job, spec)["part"].delete()
        checkpoint("delete-parts", n)


def _commit(config: IngestConfig, job: ShardJob, plan, results: list[ShardResult],
            rejects: list[dict], job_hash: str, stages: dict[str, float],
            stats: dict[str, dict]) -> dict:
    """Merge the .beton parts, write the index and rejects; return the summary (timing
    each step into ``stages``; ``stats``: :meth:`SplitTotals.stats` of the results)."""
    by_split: dict[str, list] = {}
    for spec in plan.shards:
        by_split.setdefault(spec.split, []).append(spec)
    result_of = {(r.split, r.index): r for r in results}
    wds = {}
    for split, specs in by_split.items():
        wds[split] = []
        for spec in specs:
            loc = shard_paths(job, spec)["tar"]
            rec = result_of[(split, spec.index)].files["tar"]
            wds[split].append({"url": loc.url, "path": f"{WDS_DIR}/{loc.path.rsplit('/', 1)[-1]}",
                               "size": rec["size"], "sha256": rec["sha256"],
                               "samples": result_of[(split, spec.index)].num_samples})
    t0 = time.monotonic()
    betons = {split: merge_split(job, split, specs) for split, specs in by_split.items()}
    stages["merge"] = time.monotonic() - t0
    wids = {split: write_wids_index(job, split, recs) for split, recs in wds.items()}
    t0 = time.monotonic()
    index = write_index(job, plan.shards)
    stages["index"] = time.monotonic() - t0
    wds_bytes = sum(r["size"] for recs in wds.values() for r in recs)
    written = (wds_bytes + sum(b["size"] for b in betons.values()) + index["size"]
               + sum(w["size"] for w in wids.values()))
    total = sum(s["samples"] for s in stats.values())
    return {
        "name": config.name,
        "source": config.source,
        "source_kind": plan.kind,
        "out": resolve(config.out).url,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "format_version": FORMAT_VERSION,
        "job_hash": job_hash,
        "params": {"image": asdict(config.image), "source": asdict(config.source_options),
                   "page_size": config.page_size},
        "classes": plan.classes,
        "splits": stats,
        "samples": total,
        "formats": {"wds": wds, "beton": betons, "wids": wids},
        "index": index,
        "rejects": write_rejects(config.out, rejects),
        "bytes_written": written,
        # .beton sizes include zero page tails (sparse on disk); the tar bytes are the
        # honest per-sample storage cost.
        "bytes_per_sample": round(wds_bytes / total, 1) if total else 0.0,
        "shard_pattern": tar_name(config.name, "{split}", 0).replace("000000", "{index:06d}"),
    }


def _guard_another_build(config: IngestConfig, job_hash: str, hooks: BuildHooks) -> None:
    """A finished build of other inputs or parameters at ``config.out`` is rewritten only
    when ``hooks.before_rewrite`` allows it (the catalog's refuses while a registered build
    points there)."""
    try:
        recorded = json.loads(resolve(config.out).join(SUMMARY_FILE).read_bytes())
    except (OSError, ValueError):
        return      # nothing finished there (an interrupted build resumes)
    if not isinstance(recorded, dict):
        return      # a damaged summary: no finished build to protect
    if recorded.get("job_hash") != job_hash:
        hooks.guard(config.out, f"other inputs or parameters (job hash "
                          f"{str(recorded.get('job_hash'))[:12]}, now {job_hash[:12]})")


def _verified_summary(config: IngestConfig, job_hash: str) -> dict | None:
    """The finished build's summary when it has ``job_hash`` and every committed file
    re-hashes to its record; None for a missing, unreadable or damaged summary (any
    JSON of another shape counts as damaged: the job is then redone, same bytes)."""
    loc = resolve(config.out).join(SUMMARY_FILE)
    try:
        summary = json.loads(loc.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or summary.get("job_hash") != job_hash:
        return None
    try:
        records = [r for recs in summary["formats"]["wds"].values() for r in recs]
        records += list(summary["formats"]["beton"].values()) + [summary["index"]]
        # A build from before the wids index had none: recommitted (shards reused).
        records += list(summary["formats"]["wids"].values())
        paths = [rec["path"] for rec in records]
    except (KeyError, TypeError, AttributeError):
        return None
    root = resolve(config.out)
    for rec, path in zip(records, paths, strict=True):
        if not isinstance(path, str) or not record_verifies(rec, root.join(path)):
            return None
    return summary


def format_summary(summary: dict) -> str:
    """A human-readable multi-line summary of an ingest."""
    lines = [f"dataset {summary['name']}: {summary['samples']:,} samples, "
             f"{summary['rejects']['count']} rejected, {summary['bytes_written']:,} bytes "
             f"({summary['bytes_per_sample']:,} B/sample in tars)"]
    classes = summary.get("classes") or []
    for split, s in sorted(summary["splits"].items()):
        per_class = ", ".join(
            f"{classes[int(k)] if int(k) < len(classes) else k}={v}"
            for k, v in s["per_class"].items())
        lines.append(f"  {split}: {s['samples']:,} samples in {s['shards']} shards, "
                     f"{s['rejects']} rejected; per class: {per_class}")
    if "seconds" in summary:
        lines.append(f"  time {summary['seconds']:.1f} s, {summary['images_per_second']:,} img/s")
    lines.append(f"  webdataset: {resolve(summary['out']).join('wds').url}/")
    for split, w in sorted(summary["formats"].get("wids", {}).items()):
        lines.append(f"  wids[{split}]: {w['url']}")
    for split, b in sorted(summary["formats"]["beton"].items()):
        lines.append(f"  beton[{split}]: {b['url']}")
    lines.append(f"  index: {summary['index']['url']}")
    lines.append(f"  rejects: {summary['rejects']['url']}")
    return "\n".join(lines)
