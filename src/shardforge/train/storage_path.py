"""Where training runs are stored: ``--storage`` / ``run.storage_path``, else
``$SHARDFORGE_RUNS``, else ``$SHARDFORGE_HOME/runs``; a relative path is refused under
``ray job submit``. Imports no torch (the pipelines' argument checks use it)."""

from __future__ import annotations

import os

from shardforge.catalog.home import RUNS_ENV, default_runs
from shardforge.engine.jobenv import job_working_dir, ray_job_driver


class RelativeStorageError(ValueError):
    """A relative run storage path given to the driver of a submitted Ray job."""


def run_storage(value: str | None, setting: str) -> str:
    """The run storage location for ``value`` (``setting`` names where it came from, e.g.
    ``--storage`` or ``jobs/configs/x.yaml: run.storage_path``, for the message).

    Empty or None: :func:`~shardforge.catalog.home.default_runs` (absolute). A URL or an
    absolute path (``~`` expanded) is returned as given. A relative path is returned as
    given outside a Ray job; under ``ray job submit`` it raises
    :class:`RelativeStorageError` naming the setting, the value and the fix: the driver
    runs in the job's temporary copy of its working directory, so checkpoints written
    below it would vanish with the job (and other nodes would not see them).
    """
    if not value:
        return default_runs()
    if "://" in value:
        return value
    expanded = os.path.expanduser(value)
    if os.path.isabs(expanded) or not ray_job_driver():
        return expanded if os.path.isabs(expanded) else value
    where = job_working_dir()
    raise RelativeStorageError(
        f"{setting} is the relative path {value!r}, and this is a `ray job submit` driver: "
        "it runs in the job's temporary working directory"
        + (f" (a copy of {where})" if where else "")
        + ", so runs stored there vanish with the job; give an absolute path on storage "
        "every node sees, or a URL (e.g. s3://BUCKET/runs), or leave it unset for "
        f"${RUNS_ENV} or $SHARDFORGE_HOME/runs ({default_runs()})")
