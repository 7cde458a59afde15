"""Shards on a pool of Ray actors that keep a variant's transform (its model) loaded.

Each actor calls ``variant.make_transform()`` once, then builds shard after shard with it.
When an actor dies (its process or its node is lost), the shard it held goes back to the
queue for the surviving actors; only when none survive are new actors started (a
replacement could otherwise wait forever for the resources the survivors hold). A shard
finished before the failure is verified and reused by its manifest, so a lost node costs
only the shards in flight there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import ray

from shardforge.build.config import ShardJob
from shardforge.build.shard import ShardResult, build_shard
from shardforge.engine.runner import TaskFailed, task_error
from shardforge.sources import ShardSpec

#: Actor losses tolerated per job before giving up (each costs a shard's work at most).
MAX_ACTOR_LOSSES = 16


class ShardWorker:
    """A Ray actor: one loaded transform, many shards."""

    def __init__(self, job: ShardJob) -> None:
        if job.variant is None:
            raise ValueError("ShardWorker runs variants; plain ingest uses tasks")
        self.job = job
        self.transform = job.variant.make_transform()

    def build(self, spec: ShardSpec) -> ShardResult:
        """:func:`build_shard` with the kept transform."""
        return build_shard(spec, self.job, self.transform)


def gpus_per_actor(requested: float | None, num_actors: int | None) -> float:
    """GPUs for each model actor (needs a running Ray: ``ray_session``): ``requested`` when
    given; else 0 on a cluster without GPUs, and on one with G GPUs a share that lets
    ``num_actors`` actors use them all (G / ``num_actors``, at most 1), or 1 (one actor per
    GPU) when ``num_actors`` is None. An explicit default matters: Ray hides the GPUs from
    an actor that asks for none, so a model actor on a GPU cluster would run on its CPU."""
    if requested is not None:
        return float(requested)
    gpus = float(ray.cluster_resources().get("GPU", 0)) if ray.is_initialized() else 0.0
    if gpus <= 0:
        return 0.0
    return 1.0 if num_actors is None else min(1.0, gpus / num_actors)


def pool_size(num_actors: int | None, num_cpus: float, num_gpus: float,
              num_specs: int) -> int:
    """Actors to start: ``num_actors``, else as many as the cluster's GPUs (or CPUs) allow
    at the per-actor request, at most one per shard and at least one."""
    if num_actors is not None:
        wanted = num_actors
    else:
        res = ray.cluster_resources()
        wanted = (int(res.get("GPU", 0) // num_gpus) if num_gpus > 0
                  else int(res.get("CPU", 1) // max(num_cpus, 1e-9)))
    return max(1, min(wanted, num_specs))


def run_actor_pool(actor_cls: type, init_args: tuple, specs: Sequence[ShardSpec], *,
                   num_actors: int | None, num_cpus: float, num_gpus: float,
                   on_result: Callable[[Any], None] | None = None) -> Iterator[Any]:
    """Run ``actor.build(spec)`` for every spec on a pool of ``actor_cls(*init_args)``
    actors; yield results as they end (see the module docstring for actor loss). An
    exception raised by ``build`` itself is re-raised. The actors are killed at the end."""
    if not specs:
        return
    remote_cls = ray.remote(actor_cls).options(num_cpus=num_cpus, num_gpus=num_gpus)

    def start() -> list:
        n = pool_size(num_actors, num_cpus, num_gpus, len(queue) + len(running))
        return [remote_cls.remote(*init_args) for _ in range(n)]

    queue = list(reversed(specs))
    running: dict = {}                       # ObjectRef -> (actor, spec)
    idle = start()
    everyone = list(idle)
    losses = 0
    try:
        while queue or running:
            while queue and idle:
                actor, spec = idle.pop(), queue.pop()
                running[actor.build.remote(spec)] = (actor, spec)
            (ref,), _ = ray.wait(list(running), num_returns=1)
            actor, spec = running.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                if isinstance(exc, ray.exceptions.RayActorError):
                    raise
                raise TaskFailed(f"shard {spec.name}", task_error(exc)) from None
            except ray.exceptions.RayActorError as exc:
                losses += 1
                if losses > MAX_ACTOR_LOSSES:
                    raise RuntimeError(f"{losses} actors lost; giving up (last: {exc})") from exc
                queue.append(spec)           # back to the queue for the survivors
                survivors = {id(a) for a, _ in running.values()} | {id(a) for a in idle}
                if not survivors:
                    idle = start()
                    everyone += idle
                continue
            idle.append(actor)
            if on_result is not None:
                on_result(result)
            yield result
    finally:
        for actor in everyone:
            ray.kill(actor)


def run_on_actors(job: ShardJob, specs: Sequence[ShardSpec],
                  on_result: Callable[[ShardResult], None] | None = None
                  ) -> Iterator[ShardResult]:
    """Build ``specs`` on a pool of :class:`ShardWorker` actors; yield results as they end."""
    variant = job.variant
    assert variant is not None
    return run_actor_pool(ShardWorker, (job,), specs, num_actors=variant.num_actors,
                          num_cpus=variant.num_cpus, num_gpus=variant.num_gpus,
                          on_result=on_result)
