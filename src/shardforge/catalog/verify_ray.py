"""Hashing a build's files on Ray tasks, for ``catalog verify`` on a cluster (imports Ray:
loaded only when a cluster is used)."""

from __future__ import annotations

from collections.abc import Iterator

import ray

from shardforge.catalog.verifier import Hashed, hash_file
from shardforge.engine.cluster import ray_session
from shardforge.engine.runner import run_tasks


def hash_on_ray(urls: list[str], address: str | None = None) -> Iterator[Hashed]:
    """Hash every file of ``urls`` in a Ray task of 1 CPU each (at most twice the
    cluster's CPUs queued at once), on the cluster at ``address`` (None: the one Ray is
    initialised with, or ``RAY_ADDRESS``); yield results as tasks finish."""
    with ray_session(address):
        remote = ray.remote(num_cpus=1)(hash_file)
        yield from run_tasks(remote, [(i, url) for i, url in enumerate(urls)])
