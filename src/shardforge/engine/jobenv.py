"""Whether this process is the driver of a ``ray job submit`` job (no Ray import).

Ray's job supervisor starts the entrypoint with ``RAY_JOB_CONFIG_JSON_ENV_VAR`` (the job's
``runtime_env`` and metadata as JSON) and ``RAY_ADDRESS`` in its environment
(``ray/dashboard/modules/job/job_supervisor.py``). With a ``working_dir`` the driver runs
in a temporary copy of it, unpacked under the Ray session directory and removed with it.
"""

from __future__ import annotations

import json
import os

JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def ray_job_driver() -> bool:
    """True when the process runs as the entrypoint (driver) of a submitted Ray job."""
    return bool(os.environ.get(JOB_CONFIG_ENV, "").strip())


def job_working_dir() -> str | None:
    """The ``working_dir`` of the submitted job's runtime environment (as submitted: a
    local path or a package URI), or None outside a job or without one."""
    try:
        config = json.loads(os.environ.get(JOB_CONFIG_ENV) or "{}")
    except ValueError:
        return None
    runtime_env = config.get("runtime_env") if isinstance(config, dict) else None
    working_dir = runtime_env.get("working_dir") if isinstance(runtime_env, dict) else None
    return working_dir if isinstance(working_dir, str) and working_dir else None
