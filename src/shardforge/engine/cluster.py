"""Connecting a driver to Ray: an existing cluster, or a private local one on loopback."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import ray


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Run the body with Ray initialised; shut down only a runtime this call started.

    - Ray already initialised in this process: use it as it is.
    - ``address`` given (``ray://``, ``HOST:PORT`` or ``auto``): connect to that cluster.
    - Inside ``ray job submit``: Ray sets ``RAY_ADDRESS`` for the job's driver, and
      ``ray.init()`` connects to the job's cluster (Ray's documented behaviour).
    - Otherwise: start a private local Ray bound to 127.0.0.1, stopped at the end.
    """
    if ray.is_initialized():
        yield
        return
    if address:
        ray.init(address=address, log_to_driver=True)
    elif os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=True)
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                 _node_ip_address="127.0.0.1", log_to_driver=True)
    try:
        yield
    finally:
        ray.shutdown()


def node_id() -> str:
    """The Ray node id this code runs on ("" outside Ray): shard results record it."""
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
