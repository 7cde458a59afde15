"""Ingest as users run it: the build engine with the catalog's guard and registration."""

from __future__ import annotations

import os
from typing import TextIO

from shardforge.build import job
from shardforge.build.config import IngestConfig
from shardforge.catalog.hooks import catalog_hooks


def ingest(config: IngestConfig, *, home: str | os.PathLike | None = None,
           register: bool = True, log: TextIO | None = None) -> dict:
    """Run :func:`shardforge.build.job.run_ingest` on ``config``, refusing to rewrite the
    files of a build registered at ``home`` (None: the default catalog home) and, with
    ``register``, registering the result as ``NAME@vN`` (the returned summary carries it
    under ``"catalog"``)."""
    return job.run_ingest(config, log=log,
                      hooks=catalog_hooks(home, config.name, register=register, log=log))
