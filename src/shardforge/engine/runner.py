"""Fan work units out to Ray tasks and collect results as they finish."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import ray


def run_tasks(remote_fn: Any, args: Sequence[tuple], max_in_flight: int | None = None,
              on_result: Callable[[Any], None] | None = None) -> Iterator[Any]:
    """Submit ``remote_fn.remote(*a)`` for every ``a`` in ``args``; yield results as they end.

    At most ``max_in_flight`` tasks are queued at once (default: twice the cluster's
    CPUs), so a million-shard job does not flood the scheduler. A task that raises
    re-raises here, after the other running tasks are cancelled.
    """
    if max_in_flight is None:
        max_in_flight = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    pending: list = []
    queue = list(args)
    queue.reverse()
    try:
        while queue or pending:
            while queue and len(pending) < max_in_flight:
                pending.append(remote_fn.remote(*queue.pop()))
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                result = ray.get(ref)
                if on_result is not None:
                    on_result(result)
                yield result
    finally:
        for ref in pending:
            ray.cancel(ref)
