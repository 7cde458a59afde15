"""Connecting a driver to Ray: an existing cluster, or a private local one on loopback.

What Ray prints is kept to what a user needs (issue #18, docs/cluster.md "What Ray prints"):
Ray's own INFO lines in the driver ("Started a local Ray instance", "Connected to Ray
cluster") are off (``ray.init(logging_level=...)``, WARNING unless
``SHARDFORGE_RAY_LOG_LEVEL`` says otherwise). Warnings and errors, and everything tasks and
actors print (``log_to_driver``), still show.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator

import ray

RAY_LOG_LEVEL_ENV = "SHARDFORGE_RAY_LOG_LEVEL"
API_SERVER_ENV = "RAY_API_SERVER_ADDRESS"


def ray_log_level() -> str:
    """The level of Ray's own log lines shown on the console: ``$SHARDFORGE_RAY_LOG_LEVEL``
    (a ``logging`` level name, e.g. INFO to see Ray's start-up and Ray Train's worker
    group lines again), WARNING by default. Raises ``ValueError`` naming the variable for
    an unknown level."""
    name = os.environ.get(RAY_LOG_LEVEL_ENV, "WARNING").strip().upper()
    if not isinstance(logging.getLevelName(name), int):
        raise ValueError(f"{RAY_LOG_LEVEL_ENV}={name!r} is not a logging level; use DEBUG, "
                         "INFO, WARNING or ERROR")
    return name


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None,
                state_api: bool = False) -> Iterator[None]:
    """Run the body with Ray initialised; shut down only a runtime this call started.

    - Ray already initialised in this process: use it as it is.
    - ``address`` given (``ray://``, ``HOST:PORT`` or ``auto``): connect to that cluster.
    - Inside ``ray job submit``: Ray sets ``RAY_ADDRESS`` for the job's driver, and
      ``ray.init()`` connects to the job's cluster (Ray's documented behaviour).
    - Otherwise: start a private local Ray bound to 127.0.0.1, stopped at the end. With
      ``state_api`` it also runs Ray's dashboard (its API server, which Ray's state API
      and so Ray Train's PlacementGroupCleaner query) on a free 127.0.0.1 port, and its
      processes find it through ``RAY_API_SERVER_ADDRESS`` (set for the session when the
      user has not set it); without it, no dashboard.
    """
    if ray.is_initialized():
        yield
        return
    level = logging.getLevelName(ray_log_level())
    if address:
        ray.init(address=address, log_to_driver=True, logging_level=level)
    elif os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=True, logging_level=level)
    else:
        env, dashboard = {}, {}
        if state_api:
            port = _free_port()
            env[API_SERVER_ENV] = f"http://127.0.0.1:{port}"
            dashboard = {"dashboard_host": "127.0.0.1", "dashboard_port": port}
        with _unset_env_defaults(env):
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=state_api,
                     _node_ip_address="127.0.0.1", log_to_driver=True, logging_level=level,
                     **dashboard)
            try:
                yield
            finally:
                ray.shutdown()
        return
    try:
        yield
    finally:
        ray.shutdown()


@contextlib.contextmanager
def _unset_env_defaults(values: dict[str, str]) -> Iterator[None]:
    """Set each variable the environment does not set yet (Ray's processes inherit the
    driver's environment when they start); restore the environment afterwards."""
    added = [k for k in values if k not in os.environ]
    os.environ.update({k: values[k] for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_id() -> str:
    """The Ray node id this code runs on ("" outside Ray): shard results record it."""
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
