"""Run a variant over a parent dataset, and the pipeline of a variant.

:func:`transform_dataset` runs the build engine with the variant over the parent's shards
(sharded, resumable, both formats; see :mod:`shardforge.build.transform`).
:func:`variant_pipeline` makes a variant a registered :class:`Pipeline`. Resolving a
catalog name to a parent and registering the result are the catalog's
(:func:`shardforge.catalog.variant.run_variant`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TextIO

from shardforge.build.hooks import BuildHooks
from shardforge.build.pipeline import BuildRequest, InputsFn, Param, ParentDataset, Pipeline
from shardforge.build.transform import VariantSpec

if TYPE_CHECKING:
    from shardforge.build.secrets import Secrets

MakeVariant = Callable[[dict, "Secrets"], VariantSpec]


def transform_dataset(parent: ParentDataset, variant: VariantSpec, name: str, out: str, *,
                      ray_address: str | None = None, log: TextIO | None = None,
                      hooks: BuildHooks | None = None) -> dict:
    """Build dataset ``name`` at ``out`` from ``parent`` through ``variant``; return the
    summary (with ``"parent"``: the parent's ``NAME@vN``, else its location), passed
    through ``hooks.after_commit``.

    Idempotent and resumable like an ingest: a rerun verifies and reuses finished shards
    (and a finished build).
    """
    from shardforge.build.config import IngestConfig
    from shardforge.build.job import run_ingest

    log = log if log is not None else sys.stderr
    variant = variant.with_parent_classes(parent.classes)
    config = IngestConfig(source=parent.location, name=name, out=out, image=variant.image,
                          source_kind="dataset", ray_address=ray_address, variant=variant)
    print(f"{name}: variant {variant.name} of {parent.ref or parent.location}", file=log)
    hooks = hooks if hooks is not None else BuildHooks()
    with_parent = BuildHooks(hooks.before_rewrite, lambda summary: hooks.committed(
        {**summary, "parent": parent.ref or parent.location}))
    return run_ingest(config, log=log, hooks=with_parent)


def variant_pipeline(name: str, summary: str, params: Mapping[str, Param],
                     make_variant: MakeVariant, secrets: tuple[str, ...] = (),
                     check: Callable[[dict], None] | None = None,
                     inputs: InputsFn | None = None) -> Pipeline:
    """A catalog :class:`Pipeline` that builds a card by running ``make_variant(params,
    secrets)`` over the card's parent dataset (the builder registers the result).
    ``inputs``: the content digests of the files the parameters name (see
    :class:`~shardforge.build.pipeline.Pipeline`)."""

    def build(request: BuildRequest) -> dict:
        if request.parent is None:
            raise ValueError(f"card {request.name}: pipeline {name} needs a parent dataset "
                             "(source: {dataset: NAME})")
        variant = make_variant(dict(request.params), request.secrets)
        return transform_dataset(request.parent, variant, request.name, request.out,
                                 ray_address=request.ray_address)

    return Pipeline(name=name, summary=summary, params=dict(params), sources=("dataset",),
                    secrets=secrets, check=check, build=build, inputs=inputs)
