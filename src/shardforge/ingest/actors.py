"""Shards on a pool of Ray actors that keep a variant's transform (its model) loaded.

Each actor calls ``variant.make_transform()`` once, then builds shard after shard with it.
Actors restart when they die (``max_restarts``) and the shard they held is retried
(``max_task_retries``); a shard finished before the failure is verified and reused by
its manifest, so a lost node costs only the shards in flight there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

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


def pool_size(job: ShardJob, num_specs: int) -> int:
    """Actors to start: ``variant.num_actors``, else as many as the cluster's GPUs (or CPUs)
    allow at the variant's per-actor request, at most one per shard and at least one."""
    variant = job.variant
    assert variant is not None
    if variant.num_actors is not None:
        wanted = variant.num_actors
    else:
        res = ray.cluster_resources()
        wanted = (int(res.get("GPU", 0) // variant.num_gpus) if variant.num_gpus > 0
                  else int(res.get("CPU", 1) // max(variant.num_cpus, 1e-9)))
    return max(1, min(wanted, num_specs))


def run_on_actors(job: ShardJob, specs: Sequence[ShardSpec],
                  on_result: Callable[[ShardResult], None] | None = None
                  ) -> Iterator[ShardResult]:
    """Build ``specs`` on a pool of :class:`ShardWorker` actors; yield results as they end."""
    variant = job.variant
    assert variant is not None
    if not specs:
        return
    actor_cls = ray.remote(ShardWorker).options(
        num_cpus=variant.num_cpus, num_gpus=variant.num_gpus,
        max_restarts=MAX_RESTARTS, max_task_retries=MAX_TASK_RETRIES)
    actors = [actor_cls.remote(job) for _ in range(pool_size(job, len(specs)))]
    try:
        pool = ActorPool(actors)
        for result in pool.map_unordered(lambda a, spec: a.build.remote(spec), list(specs)):
            if on_result is not None:
                on_result(result)
            yield result
    finally:
        for actor in actors:
            ray.kill(actor)
