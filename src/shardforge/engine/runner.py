"""Fan work units out to Ray tasks and collect results as they finish."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import ray


class TaskFailed(RuntimeError):
    """A task raised (not a lost worker: Ray retries those). ``str()`` is one line naming
    the work unit, the error type and message; ``cause`` is the original exception."""

    def __init__(self, what: str, cause: BaseException) -> None:
        super().__init__(f"{what}: {type(cause).__name__}: {one_line(str(cause))}")
        self.cause = cause


def one_line(message: str, limit: int = 400) -> str:
    """``message`` on one line: a traceback is cut to its last line (the error itself)."""
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    if any("Traceback (most recent call last)" in ln for ln in lines):
        head = lines[0].split("traceback:")[0].strip() if lines else ""
        lines = [head, lines[-1]] if head and head != lines[-1] else lines[-1:]
    text = " ".join(" ".join(lines).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def task_error(exc: BaseException) -> BaseException:
    """The exception a task raised, unwrapped from Ray's ``RayTaskError``."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def describe(args: tuple) -> str:
    """A short name for a task's work unit (its first argument's ``name``, if any)."""
    name = getattr(args[0], "name", None) if args else None
    return f"task for {name}" if name else "task"


def run_tasks(remote_fn: Any, args: Sequence[tuple], max_in_flight: int | None = None,
              on_result: Callable[[Any], None] | None = None,
              local_fn: Callable[..., Any] | None = None) -> Iterator[Any]:
    """Submit ``remote_fn.remote(*a)`` for every ``a`` in ``args``; yield results as they end.

    At most ``max_in_flight`` tasks are queued at once (default: twice the cluster's
    CPUs), so a million-shard job does not flood the scheduler. A task that raises
    raises :class:`TaskFailed` here (one line: work unit, error type, message), after the
    other running tasks are cancelled.

    ``local_fn`` (the same work as ``remote_fn``, run in this process): until the first
    task returns, the driver runs queued units itself instead of idling. Why: a new job's
    first tasks wait for Ray to start worker processes (0.8-1.2 s on a running 2-CPU
    head here, more than a 20-image ingest's whole work; BENCHMARKS.md "Ingest through the
    CLI"); a job
    of one unit then runs entirely in the driver. Once a worker has returned a result,
    only workers run units.
    """
    if max_in_flight is None:
        max_in_flight = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    pending: list = []
    args_of: dict = {}
    queue = list(args)
    queue.reverse()
    warm = local_fn is None
    try:
        while queue or pending:
            # While cold, keep one unit back for the driver.
            while queue and len(pending) < max_in_flight and (warm or len(queue) > 1):
                a = queue.pop()
                ref = remote_fn.remote(*a)
                args_of[ref] = a
                pending.append(ref)
            if not warm and queue and not (pending and ray.wait(pending, timeout=0)[0]):
                a = queue.pop()
                try:
                    result = local_fn(*a)
                except Exception as exc:  # noqa: BLE001 - reported like a task's error
                    raise TaskFailed(describe(a), exc) from exc
                if on_result is not None:
                    on_result(result)
                yield result
                continue
            done, pending = ray.wait(pending, num_returns=1)
            warm = True
            for ref in done:
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    raise TaskFailed(describe(args_of[ref]), task_error(exc)) from None
                del args_of[ref]
                if on_result is not None:
                    on_result(result)
                yield result
    finally:
        for ref in pending:
            ray.cancel(ref)
