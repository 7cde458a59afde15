"""The catalog's hooks into a build: refuse to rewrite a registered build's files, and
register the committed build as ``NAME@vN`` (with its lineage and parameters)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TextIO

from shardforge.build.hooks import BuildHooks
from shardforge.catalog.errors import RegistrationError
from shardforge.catalog.lookup import refuse_to_rewrite
from shardforge.catalog.register import register_build


def catalog_hooks(home: str | os.PathLike | None, name: str, *, register: bool = True,
                  parent: str | None = None, pipeline: str = "ingest",
                  params: Mapping | None = None,
                  secret_params: Mapping[str, str] | None = None, source: str | None = None,
                  log: TextIO | None = None) -> BuildHooks:
    """Hooks for a build of ``name`` whose catalog is at ``home`` (None: the default home).

    The guard refuses to replace the files of any build registered at ``home``. With
    ``register``, the committed summary is registered (``parent``, ``pipeline``,
    ``params``, ``secret_params`` and ``source`` as :func:`register_build` takes them) and
    the returned summary carries the new ``NAME@vN`` under ``"catalog"``.
    """
    def before_rewrite(out: str, why: str) -> None:
        refuse_to_rewrite(out, home, why)

    def after_commit(summary: dict) -> dict:
        try:
            build = register_build(home, name, summary, parent=parent, pipeline=pipeline,
                                   params=params, secret_params=secret_params, source=source)
        except RegistrationError as exc:
            raise RegistrationError(
                f"{exc} (the data is committed at {summary['out']}: register it later with "
                f"`shardforge catalog register {summary['out']}`)") from exc
        print(f"{name}: registered in the catalog as {build.ref}",
              file=log if log is not None else sys.stderr)
        return {**summary, "catalog": build.ref}

    return BuildHooks(before_rewrite, after_commit if register else None)
