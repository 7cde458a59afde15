"""Shards on a pool of Ray actors that keep a variant's transform (its model) loaded.

Each actor calls ``variant.make_transform()`` once, then builds shard after shard with it.
Actors restart when they die (``max_restarts``) and the shard they held is retried
(``max_task_retries``); a shard finished before the failure is verified and reused by
its manifest, so a lost node costs only the shards in flight there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import ray
from ray.util import ActorPool

from shardforge.ingest.config import ShardJob
from shardforge.ingest.shard import ShardResult, build_shard
from shardforge.sources import ShardSpec

MAX_RESTARTS = 3
MAX_TASK_RETRIES = 3


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
    """Start a pool of ``actor_cls(*init_args)`` actors (restarted when they die, the shard
    they held retried) and run ``actor.build(spec)`` for every spec; yield results as they
    end. The actors are killed at the end."""
    if not specs:
        return
    remote_cls = ray.remote(actor_cls).options(
        num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=MAX_RESTARTS,
        max_task_retries=MAX_TASK_RETRIES)
    n = pool_size(num_actors, num_cpus, num_gpus, len(specs))
    actors = [remote_cls.remote(*init_args) for _ in range(n)]
    try:
        for result in ActorPool(actors).map_unordered(lambda a, spec: a.build.remote(spec),
                                                       list(specs)):
            if on_result is not None:
                on_result(result)
            yield result
    finally:
        for actor in actors:
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
