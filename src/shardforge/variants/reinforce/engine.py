"""Dataset reinforcement (ImageNet+, Faghri et al., ICCV 2023) as a sharded Ray job: the
job around the per-shard algorithm (:mod:`.transform`). Images are not copied: a reinforced dataset is the
parent's images plus ``reinforce/NAME-train-NNNNNN.parquet`` shards aligned with the
parent's tars by sample key (one row per augmentation).

It runs on the build engine's parts: the parent's shards planned by
:func:`shardforge.sources.dataset.plan` (one output shard per parent tar), a pool of actors
that keep the ensemble loaded (:func:`shardforge.build.actors.run_actor_pool`; GPU when
``num_gpus_per_actor`` > 0, bf16 autocast there; in each actor a thread decodes and
augments the next batch while the teacher runs the current one), per-shard manifests
(:mod:`shardforge.engine.manifest`: spec hash + sha256, so a rerun verifies and skips
finished shards and a killed job redoes only the unfinished ones), the layout's file
names (:mod:`shardforge.layout.files`) and the caller's :class:`~shardforge.build.hooks.
BuildHooks` (rewrite guard, registration). What is its own: the output (a parquet side
table per shard instead of tars and .beton parts) and the summary (the parent's images).

Where it writes: the caller gives ``out``; the catalog's default
(:func:`shardforge.catalog.variant.run_reinforcement`) is ``HOME/datasets/NAME/KEY``, KEY a
hash of the parent build and the parameters (teachers' sha256 included), so another seed,
policy or teacher gets its own directory. The rule that keeps a registered build's files
unchanged, the same as every ingest and variant job's: a location whose ``summary.json``
records a finished reinforcement made with other parameters is not written to while
catalog builds point there (:func:`check_out` asks the hook; the job fails before any
work, naming them). A location with no
``summary.json`` holds no registered build (a build is registered only after its summary
is written), so an interrupted job's shards made with other parameters are rewritten.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np
import pyarrow.parquet as pq

from shardforge.augment import (
    AugPolicy,
)
from shardforge.build.hooks import BuildHooks
from shardforge.engine.runner import TaskFailed
from shardforge.layout.files import SUMMARY_FILE
from shardforge.models.reference import ObserverRef
from shardforge.names import check_name
from shardforge.sources.base import ShardSpec, SourceOptions
from shardforge.storage import resolve
from shardforge.variants.reinforce.transform import (
    FORMAT_VERSION,
    PIPELINE_NAME,
    Reinforcer,
    ShardTask,
)


@dataclass(frozen=True)
class ReinforceConfig:
    """A reinforcement job. Defaults follow ImageNet+ (Sec. 4): 400 augmentations per
    image (``num_augs``), top-10 probabilities (``top_k``), the RRC+RA/RE policy.

    ``out`` None: the keyed default location (module docstring).
    ``batch_size``: views per teacher forward pass. ``num_gpus_per_actor`` None: the
    cluster's GPUs shared by ``num_actors`` actors, or one actor per GPU (0 without GPUs;
    :func:`~shardforge.build.actors.gpus_per_actor`). ``num_actors`` None: one per GPU
    (at ``num_gpus_per_actor``) or one per CPU. ``split``: the split reinforced (the
    parent's other splits are used as they are).
    """

    parent: str
    name: str
    out: str | None
    teachers: tuple[ObserverRef, ...]
    num_augs: int = 400
    top_k: int = 10
    seed: int = 0
    policy: AugPolicy = field(default_factory=AugPolicy)
    split: str = "train"
    batch_size: int = 256
    num_actors: int | None = None
    num_gpus_per_actor: float | None = None
    ray_address: str | None = None

    def __post_init__(self) -> None:
        fix = "use letters, digits, '_' or '-' (it becomes part of file names)"
        check_name(self.name, "dataset name", "reinforce --name", fix)
        check_name(self.split, "split", "reinforce --split", fix)
        if self.num_augs < 1:
            raise ValueError(f"num_augs must be >= 1, got {self.num_augs}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.teachers:
            raise ValueError("reinforcement needs at least one teacher (--teacher)")


# ----------------------------------------------------------------------------- the job

def reinforce_params(config: ReinforceConfig) -> dict:
    """Every parameter that decides the outputs (the teachers' identities included): what
    ``summary.json`` records and what keys a default output location."""
    from shardforge.variants.reinforce.teacher import ensemble_identity

    return {"num_augs": config.num_augs, "top_k": config.top_k, "seed": config.seed,
            "policy": config.policy.to_dict(), "split": config.split,
            "teachers": ensemble_identity(config.teachers)}


def run_reinforce(config: ReinforceConfig, log: TextIO | None = None,
                  hooks: BuildHooks | None = None, parent_ref: str | None = None) -> dict:
    """Reinforce ``config.split`` of the parent at the location ``config.parent`` (its
    catalog ``NAME@vN``: ``parent_ref``); write shards and ``summary.json``; return the
    summary passed through ``hooks.after_commit`` (e.g. registered).

    Idempotent and resumable: finished shards are verified and reused. ``config.out`` must
    be set (the catalog keys a default: :func:`shardforge.catalog.variant.run_reinforcement`).
    ``hooks.before_rewrite`` is asked (before any work) when the location holds a
    reinforcement made with other parameters (:func:`check_out`).
    """
    from shardforge.engine.cluster import ray_session
    from shardforge.engine.progress import Progress
    from shardforge.layout.dataset import open_dataset
    from shardforge.sources import dataset as dataset_source
    log = log if log is not None else sys.stderr
    hooks = hooks if hooks is not None else BuildHooks()
    if config.out is None:
        raise ValueError(f"{config.name}: give the output location (out)")
    started = time.monotonic()
    location = config.parent
    parent = open_dataset(location)
    parent.split(config.split)      # KeyError naming the splits there are
    plan = dataset_source.plan(location, SourceOptions())
    specs = [s for s in plan.shards if s.split == config.split]
    params = reinforce_params(config)
    teachers = params["teachers"]
    params_hash = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
    check_out(config.out, params, hooks)
    task = ShardTask(config.out, config.name, config.num_augs, config.top_k, config.seed,
                     config.policy, config.batch_size, params_hash)
    print(f"{config.name}: reinforcing {parent_ref or location} ({len(specs)} shards, "
          f"{config.num_augs} augmentations per image, {len(teachers)} teacher(s)) -> "
          f"{config.out}", file=log)
    progress = Progress(f"reinforce {config.name}", len(specs), stream=log)
    with ray_session(config.ray_address):
        from shardforge.build.actors import gpus_per_actor

        gpus = gpus_per_actor(config.num_gpus_per_actor, config.num_actors)
        print(f"{config.name}: teacher actors: {config.num_actors or 'one per GPU/CPU'}, "
              f"{gpus:g} GPU each", file=log)
        try:
            results = list(_run_actors(config, task, specs, tuple(parent.classes), location,
                                       gpus, lambda r: progress.advance(r["samples"],
                                                                        r["reused"])))
        except TaskFailed as exc:
            from shardforge.build.job import JobFailed

            raise JobFailed(f"{config.name}: {exc} (output {resolve(config.out).url}); fix "
                            "the cause and rerun: finished shards are reused") from exc
    results.sort(key=lambda r: r["index"])
    summary = _summary(config, parent, location, parent_ref, params, results, started,
                       progress.fresh_items)
    resolve(config.out).join(SUMMARY_FILE).write_bytes_atomic(
        json.dumps(summary, indent=2, sort_keys=True).encode())
    return hooks.committed(summary)


def check_out(out: str, params: dict, hooks: BuildHooks) -> None:
    """The guard for a reinforcement (its shards are rewritten in place when the params
    change): ``hooks.before_rewrite`` is asked, naming the differing params, when ``out``'s
    ``summary.json`` records other ``params``."""
    try:
        recorded = json.loads(resolve(out).join(SUMMARY_FILE).read_bytes()).get("params")
    except (OSError, ValueError):
        return      # nothing finished there (an interrupted run resumes)
    current = json.loads(json.dumps(params))        # the JSON form summary.json holds
    if _without_unused_mixing(recorded) != _without_unused_mixing(current):
        changed = sorted(k for k in set(current) | set(recorded or {})
                         if (recorded or {}).get(k) != current.get(k))
        hooks.guard(out, f"other parameters (differing: {', '.join(changed)})")


#: Policy fields that change no byte unless the policy mixes (mixup_p or cutmix_p > 0).
MIXING_ONLY = ("mixup_alpha", "mixup_div_by", "cutmix_alpha")


def _without_unused_mixing(params: dict | None) -> dict | None:
    """``params`` with :data:`MIXING_ONLY` dropped from a policy that does not mix, so a
    build made before a mixing default changed (mixup_alpha 0.2 -> 1.0, #15) is not
    refused for a parameter its bytes never depended on."""
    policy = (params or {}).get("policy")
    if not isinstance(policy, dict) or policy.get("mixup_p") or policy.get("cutmix_p"):
        return params
    return {**params, "policy": {k: v for k, v in policy.items() if k not in MIXING_ONLY}}


def _run_actors(config: ReinforceConfig, task: ShardTask, specs: list[ShardSpec],
                classes: tuple[str, ...], dataset: str, gpus: float,
                on_result) -> Iterator[dict]:
    from shardforge.build.actors import run_actor_pool

    return run_actor_pool(Reinforcer, (task, config.teachers, classes, dataset), specs,
                          num_actors=config.num_actors, num_cpus=1, num_gpus=gpus,
                          on_result=on_result)


def _summary(config: ReinforceConfig, parent, location: str, parent_ref: str | None,
             params: dict, results: list[dict], started: float, fresh: int) -> dict:
    """The ingest-style summary (files are the parent's images plus the reinforcement)."""
    files = [r["file"] for r in results]
    augs = sum(r["augmentations"] for r in results)
    stored = sum(f["size"] for f in files)
    seconds = round(time.monotonic() - started, 3)
    ps = parent.summary
    return {
        "name": config.name, "source": location, "out": resolve(config.out).url,
        "parent": parent_ref or location, "parent_out": location,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "format_version": FORMAT_VERSION, "params": params,
        "job_hash": hashlib.sha256("".join(f["sha256"] for f in files).encode()).hexdigest(),
        "classes": list(parent.classes), "splits": ps["splits"], "samples": ps["samples"],
        # the parent's files by URL (no "path" relative to this build's location), so the
        # catalog's verify finds them
        "formats": _by_url(ps["formats"]), "index": _by_url(ps["index"]),
        "rejects": {"url": ps["rejects"]["url"],
                    "count": sum(len(r["rejects"]) for r in results)},
        "bytes_per_sample": round(stored / max(1, sum(r["samples"] for r in results)), 1),
        "variant": {"name": PIPELINE_NAME, "params": params, "splits": [config.split]},
        "reinforce": {"split": config.split, "num_augs": config.num_augs,
                      "top_k": config.top_k, "seed": config.seed,
                      "policy": config.policy.to_dict(), "files": files,
                      "augmentations": augs, "bytes": stored,
                      "bytes_per_augmentation": round(stored / max(1, augs), 2),
                      # ImageNet+'s figure (~73 B), measured on the first shard
                      "gzip_bytes_per_augmentation": round(gzip_bytes_per_augmentation(
                          files[0]["url"], config.top_k), 2) if files else None},
        "seconds": seconds, "shards_reused": sum(r["reused"] for r in results),
        "nodes": len({r.get("node") for r in results if not r["reused"]}),
        "devices": sorted({r["device"] for r in results if "device" in r}),
        "images_per_second": round(fresh / max(seconds, 1e-9), 1),
        "augmentations_per_second": round(fresh * config.num_augs / max(seconds, 1e-9), 1),
    }


def _by_url(records):
    """``records`` (nested dicts/lists of file records) without their ``path`` keys."""
    if isinstance(records, list):
        return [_by_url(r) for r in records]
    if isinstance(records, dict):
        return {k: _by_url(v) for k, v in records.items() if k != "path"}
    return records


def gzip_bytes_per_augmentation(shard: str, top_k: int) -> float:
    """The ImageNet+ comparison figure: bytes per augmentation of one shard's records and
    top-K as packed little-endian rows, gzip-compressed (the paper reports ~73 B)."""
    import gzip

    table = pq.ParquetFile(io.BytesIO(resolve(shard).read_bytes())).read()
    cols = [c for c in table.column_names if c.startswith("aug_")]
    parts = [np.asarray(table[c].to_numpy(zero_copy_only=False)) for c in cols]
    idx = table["topk_indices"].combine_chunks().flatten().to_numpy().reshape(-1, top_k)
    prob = table["topk_probs"].combine_chunks().flatten().to_numpy(
        zero_copy_only=False).reshape(-1, top_k)
    rows = np.empty(table.num_rows, dtype=[*[(c, p.dtype) for c, p in zip(cols, parts,
                                                                          strict=True)],
                                           ("i", np.int16, (top_k,)),
                                           ("p", np.float16, (top_k,))])
    for c, p in zip(cols, parts, strict=True):
        rows[c] = p
    rows["i"], rows["p"] = idx, prob
    return len(gzip.compress(rows.tobytes())) / max(1, table.num_rows)
