"""Run a variant over a parent dataset (a Ray job), and the catalog pipeline of a variant.

:func:`run_variant` is the whole job: resolve the parent (catalog name or location), run
the ingest engine with the variant (sharded, resumable, both formats; see
:mod:`shardforge.build.transform`), then register ``NAME@vN`` with the parent as lineage.
:func:`variant_pipeline` makes the same job buildable from a catalog card.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TextIO

from shardforge.build.pipeline import InputsFn, Param, Pipeline
from shardforge.build.transform import VariantSpec

if TYPE_CHECKING:
    from shardforge.build.secrets import Secrets
    from shardforge.catalog.builder import ResolvedCard
    from shardforge.catalog.entry import Build

MakeVariant = Callable[[dict, "Secrets"], VariantSpec]


def resolve_parent(parent: str, catalog_home: str | None = None) -> tuple[str, str | None]:
    """``(location, NAME@vN or None)`` of a parent given as a catalog reference or a dataset
    location. Raises ``DatasetNotFoundError`` naming both lookups when neither finds it."""
    from shardforge.layout.dataset import resolve_dataset

    location = resolve_dataset(parent, home=catalog_home)
    if location == parent:     # a location, not a catalog name
        return location, None
    from shardforge import catalog

    return location, catalog.get(parent, home=catalog_home).ref


def default_out(home: str | os.PathLike | None, name: str, parent: str,
                params: Mapping[str, Any]) -> str:
    """``HOME/datasets/NAME/KEY``: KEY a hash of ``parent`` and the variant's ``params``
    (which hold the content digests of the files they name: observer, teacher weights, key
    fingerprint), so another parent, parameter or input never reuses (or rewrites) the
    shards of an earlier build. The default output location of every variant job."""
    from shardforge.catalog.home import resolve_home

    blob = json.dumps({"parent": parent, "params": dict(params)}, sort_keys=True)
    key = hashlib.sha256(blob.encode()).hexdigest()[:12]
    return str(resolve_home(home) / "datasets" / name / key)


def run_variant(parent: str, variant: VariantSpec, name: str, out: str, *,
                ray_address: str | None = None, register: bool = True,
                catalog_home: str | None = None, secrets: Mapping[str, str] | None = None,
                log: TextIO | None = None) -> dict:
    """Build dataset ``name`` at ``out`` from ``parent`` through ``variant``; return the summary.

    Idempotent and resumable like an ingest: a rerun verifies and reuses finished shards
    (and a finished build). ``secrets`` (name -> value, e.g. a private key) are recorded in
    the catalog as fingerprints only. With ``register``, the build is registered as
    ``NAME@vN`` with lineage to the parent's ``NAME@vN`` (when the parent came from the
    catalog); the summary then carries it under ``"catalog"``.
    """
    from shardforge.build.config import IngestConfig
    from shardforge.build.job import run_ingest

    log = log if log is not None else sys.stderr
    location, parent_ref = resolve_parent(parent, catalog_home)
    config = IngestConfig(source=location, name=name, out=out, image=variant.image,
                          source_kind="dataset", ray_address=ray_address,
                          catalog_home=catalog_home, register=False, variant=variant)
    print(f"{name}: variant {variant.name} of {parent_ref or location}", file=log)
    summary = {**run_ingest(config, log=log), "parent": parent_ref or location}
    if not register:
        return summary
    from shardforge.catalog import register_build

    build = register_build(catalog_home, name, summary, parent=parent_ref,
                           pipeline=variant.name, params=variant.params,
                           secret_params=dict(secrets or {}),
                           source=None if parent_ref else location)
    print(f"{name}: registered in the catalog as {build.ref}", file=log)
    return {**summary, "catalog": build.ref}


def variant_pipeline(name: str, summary: str, params: Mapping[str, Param],
                     make_variant: MakeVariant, secrets: tuple[str, ...] = (),
                     check: Callable[[dict], None] | None = None,
                     inputs: InputsFn | None = None) -> Pipeline:
    """A catalog :class:`Pipeline` that builds a card by running ``make_variant(params,
    secrets)`` over the card's parent dataset (the builder registers the result).
    ``inputs``: the content digests of the files the parameters name (see
    :class:`~shardforge.build.pipeline.Pipeline`)."""

    def build(card: ResolvedCard, parent: Build | None, out: str,
              ray_address: str | None) -> dict:
        if parent is None:
            raise ValueError(f"card {card.name}: pipeline {name} needs a parent dataset "
                             "(source: {dataset: NAME})")
        variant = make_variant(dict(card.params), card.secrets)
        return run_variant(parent.out, variant, card.name, out, ray_address=ray_address,
                           register=False)

    return Pipeline(name=name, summary=summary, params=dict(params), sources=("dataset",),
                    secrets=secrets, check=check, build=build, inputs=inputs)
