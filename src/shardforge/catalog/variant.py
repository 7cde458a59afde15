"""Run a variant over a parent named in the catalog, and register the result.

:func:`run_variant` is a variant job as users run it: resolve the parent (catalog name or
location), run the build engine with the variant
(:func:`shardforge.build.variant_job.transform_dataset`: sharded, resumable, both
formats), with the catalog's rewrite guard, then register ``NAME@vN`` with the parent as
lineage.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TextIO

from shardforge.build.pipeline import ParentDataset
from shardforge.build.transform import VariantSpec
from shardforge.build.variant_job import transform_dataset
from shardforge.catalog.home import resolve_home
from shardforge.catalog.hooks import catalog_hooks
from shardforge.catalog.lookup import get, resolve_dataset

if TYPE_CHECKING:
    from shardforge.variants.reinforce.engine import ReinforceConfig

#: A variant, or what makes it once the parent is known (e.g. RDED needs its classes).
VariantOrFactory = VariantSpec | Callable[[ParentDataset], VariantSpec]


def parent_dataset(parent: str, home: str | os.PathLike | None = None) -> ParentDataset:
    """The :class:`ParentDataset` that ``parent`` (a catalog reference or a dataset
    location) names. ``DatasetNotFoundError`` naming both lookups when neither finds it."""
    from shardforge.layout.files import SUMMARY_FILE
    from shardforge.storage import resolve

    location = resolve_dataset(parent, home)
    ref = None if location == parent else get(parent, home=home).ref
    summary = json.loads(resolve(location).join(SUMMARY_FILE).read_bytes())
    classes = summary.get("classes") if isinstance(summary, dict) else None
    return ParentDataset(location, ref, tuple(classes or ()))


def default_out(home: str | os.PathLike | None, name: str, parent: str,
                params: Mapping[str, Any]) -> str:
    """``HOME/datasets/NAME/KEY``: KEY a hash of ``parent`` and the variant's ``params``
    (which hold the content digests of the files they name: observer, teacher weights, key
    fingerprint), so another parent, parameter or input never reuses (or rewrites) the
    shards of an earlier build. The default output location of every variant job."""
    blob = json.dumps({"parent": parent, "params": dict(params)}, sort_keys=True)
    key = hashlib.sha256(blob.encode()).hexdigest()[:12]
    return str(resolve_home(home) / "datasets" / name / key)


def run_variant(parent: str, variant: VariantOrFactory, name: str, out: str | None = None,
                *, ray_address: str | None = None, register: bool = True,
                catalog_home: str | os.PathLike | None = None,
                secrets: Mapping[str, str] | None = None,
                log: TextIO | None = None) -> dict:
    """Build dataset ``name`` at ``out`` (default :func:`default_out`) from ``parent``
    through ``variant``; return the summary.

    Idempotent and resumable like an ingest: a rerun verifies and reuses finished shards
    (and a finished build). A finished build of other parameters that a catalog build
    holds is never rewritten. ``secrets`` (name -> value, e.g. a private key) are recorded
    in the catalog as fingerprints only. With ``register``, the build is registered as
    ``NAME@vN`` with lineage to the parent's ``NAME@vN`` (when the parent came from the
    catalog); the summary then carries it under ``"catalog"``.
    """
    from shardforge.engine.cluster import ray_session

    log = log if log is not None else sys.stderr
    source = parent_dataset(parent, catalog_home)
    with ray_session(ray_address):
        spec = variant if isinstance(variant, VariantSpec) else variant(source)
        out = out or default_out(catalog_home, name, source.ref or source.location,
                                 spec.params)
        hooks = catalog_hooks(catalog_home, name, register=register, parent=source.ref,
                              pipeline=spec.name, params=spec.params,
                              secret_params=dict(secrets or {}),
                              source=None if source.ref else source.location, log=log)
        return transform_dataset(source, spec, name, out, ray_address=ray_address, log=log,
                                 hooks=hooks)


def run_reinforcement(config: ReinforceConfig, *, register: bool = True,
                      catalog_home: str | os.PathLike | None = None,
                      log: TextIO | None = None) -> dict:
    """Reinforce the parent ``config.parent`` names (catalog reference or location) as
    users run it: ``config.out`` None means :func:`default_out` keyed by the parameters
    (teachers' identities included); a location holding a catalog build of other
    parameters is refused; with ``register`` the result is registered as ``NAME@vN`` with
    the parent as lineage. Returns the summary."""
    from shardforge.variants.reinforce.engine import reinforce_params, run_reinforce
    from shardforge.variants.reinforce.transform import PIPELINE_NAME

    source = parent_dataset(config.parent, catalog_home)
    params = reinforce_params(config)
    out = config.out or default_out(catalog_home, config.name, source.ref or source.location,
                                    params)
    config = dataclasses.replace(config, parent=source.location, out=out)
    hooks = catalog_hooks(catalog_home, config.name, register=register, parent=source.ref,
                          pipeline=PIPELINE_NAME, params=params,
                          source=None if source.ref else source.location, log=log)
    return run_reinforce(config, log=log, hooks=hooks, parent_ref=source.ref)
