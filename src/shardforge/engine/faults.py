"""Deterministic fault injection for the crash tests: SIGKILL this process at a named point.

Production code marks the points where a crash matters with one line,
``checkpoint("NAME")`` (or ``checkpoint("NAME", n)`` where the point is passed many times,
``n`` counting from 1). Nothing happens unless the environment variable
``SHARDFORGE_KILL_AT`` names the point: ``NAME`` (kill the first time, or whenever ``n``
is 1) or ``NAME:N`` (kill when ``n == N``). The process then sends itself SIGKILL: no
cleanup, no ``finally`` blocks, no flushed buffers, as a power cut or the OOM killer.
With ``SHARDFORGE_KILL_ONCE=PATH`` as well, only the process that first creates the file
``PATH`` (exclusively) dies: one kill in all, whatever retries or other workers pass the
point after it (Ray workers and actors inherit a local driver's environment).

Points in the ingest driver (``ingest/job.py``, ``ingest/commit.py``):

- ``build``: a shard result arrived (``n``: results so far); some shards done, others in flight
- ``manifests``: every shard is complete, nothing committed yet
- ``merge``: a split's merged .beton is written under its temporary name, not yet renamed
- ``index``: index.parquet and rejects.jsonl written, summary.json not yet
- ``delete-parts``: summary.json written, ``n`` .beton parts deleted so far

In a shard task or actor (``ingest/shard.py``):

- ``shard``: the shard's tar is written, its index, part and manifest are not
"""

from __future__ import annotations

import os
import signal

KILL_ENV = "SHARDFORGE_KILL_AT"
ONCE_ENV = "SHARDFORGE_KILL_ONCE"


def checkpoint(point: str, n: int = 1) -> None:
    """SIGKILL the current process when ``SHARDFORGE_KILL_AT`` is ``point`` (and ``n == 1``)
    or ``point:n`` (and, with ``SHARDFORGE_KILL_ONCE``, no process died here before);
    otherwise do nothing."""
    wanted = os.environ.get(KILL_ENV)
    if not wanted:
        return
    name, _, count = wanted.partition(":")
    if name != point or n != (int(count) if count else 1):
        return
    once = os.environ.get(ONCE_ENV)
    if once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return      # another process already died here
    os.kill(os.getpid(), signal.SIGKILL)
