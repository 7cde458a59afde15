"""Per-sample fault isolation for a shard build: one sample never fails a job.

:class:`SampleGuard` turns one sample's exception into a reject (type and message);
:func:`transform_isolating` finds the samples a variant transform fails on;
:func:`label_problem` is the label rule (ints in [0, 2**31)).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

import numpy as np

from shardforge.formats.image import RejectedImage
from shardforge.sources import Reject, ShardSpec

if TYPE_CHECKING:
    from shardforge.build.transform import Decoded, Transform

__all__ = ["LABEL_LIMIT", "SampleFault", "SampleGuard", "label_problem", "transform_isolating"]


class SampleFault(RuntimeError):
    """The same unexpected error hit every sample of a shard: a bug, not a bad sample."""


class _Outcome:
    """Truthy when the guarded sample went through (see :meth:`SampleGuard.sample`)."""

    def __init__(self) -> None:
        self.ok = True

    def __bool__(self) -> bool:
        return self.ok


class SampleGuard:
    """Turns one sample's exception into a reject (reason: type and message).

    :class:`RejectedImage` is an expected verdict about a file. Any other exception is
    recorded too, and the shard goes on, unless every sample the shard tried (at least 2)
    failed with the same unexpected exception type: that is a bug that hits every sample,
    and :meth:`check` raises :class:`SampleFault` so the job ends with one line.
    """

    def __init__(self, spec: ShardSpec, rejects: list[dict]) -> None:
        self.spec = spec
        self.rejects = rejects
        self.tried: set[str] = set()
        self.unexpected: dict[str, str] = {}    # origin -> exception type name

    def sample(self, origin: str) -> _SampleContext:
        """``with guard.sample(origin) as ok:``: afterwards ``ok`` is False if it raised."""
        return _SampleContext(self, origin)

    def reject(self, origin: str, exc: BaseException) -> None:
        """Record ``exc`` as the reason ``origin`` is rejected."""
        if isinstance(exc, RejectedImage):
            reason = str(exc)
        else:
            reason = f"{type(exc).__name__}: {exc}"
            self.unexpected[origin] = type(exc).__name__
        self.rejects.append(asdict(Reject(origin, reason, self.spec.split)))

    def check(self) -> None:
        """Raise :class:`SampleFault` when one unexpected error type hit every sample."""
        kinds = set(self.unexpected.values())
        if len(self.tried) >= 2 and set(self.unexpected) == self.tried and len(kinds) == 1:
            last = self.rejects[-1]
            raise SampleFault(
                f"shard {self.spec.name}: every one of its {len(self.tried)} samples failed "
                f"with {kinds.pop()} (last: {last['origin']}: {last['reason']}); this is a "
                "bug or an environment fault, not a bad sample")


class _SampleContext:
    def __init__(self, guard: SampleGuard, origin: str) -> None:
        self.guard, self.origin, self.outcome = guard, origin, _Outcome()

    def __enter__(self) -> _Outcome:
        self.guard.tried.add(self.origin)
        return self.outcome

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        self.outcome.ok = False
        self.guard.reject(self.origin, exc)
        return True


def transform_isolating(transform: Transform, decoded: list[Decoded], spec: ShardSpec,
                        guard: SampleGuard, origins: dict[str, str]) -> list[Decoded]:
    """``transform(decoded, split)``; when it raises, find the samples that fail alone.

    Rule: the batch is retried one sample at a time; each sample that raises alone is
    rejected (type and message), then the batch runs again on the others, so a variant
    that works per class or per batch still sees its whole batch minus the bad samples.
    If no sample fails alone, the failure is not about a sample and is re-raised (the job
    ends). A shard whose batch works is transformed exactly as before.
    """
    try:
        return transform(decoded, spec.split)
    except Exception:
        good = []
        for d in decoded:
            with guard.sample(origins.get(d.key, d.key)) as ok:
                transform([d], spec.split)
            if ok:
                good.append(d)
        if len(good) == len(decoded):
            raise
        if not good:
            return []
        return transform(good, spec.split)


LABEL_LIMIT = 2**31


def label_problem(label: object) -> str | None:
    """Why ``label`` cannot be stored (None when it is an int in [0, 2**31))."""
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
        return f"label {label!r} is not an integer"
    if not 0 <= int(label) < LABEL_LIMIT:
        return f"label {int(label)} is outside [0, 2**31)"
    return None
