"""The variant modules whose ``PIPELINE`` the catalog registers (replacing the provisional
schema of the same name in :mod:`shardforge.catalog.planned_pipelines`)."""

from __future__ import annotations

import importlib

from shardforge.catalog.pipelines import Pipeline

VARIANT_MODULES: tuple[str, ...] = (
    "shardforge.variants.cuda",
    "shardforge.variants.distill",
    "shardforge.variants.stylize",
    "shardforge.variants.reinforce_job",
)


def variant_pipelines() -> list[Pipeline]:
    """The ``PIPELINE`` of every module in :data:`VARIANT_MODULES`, in order."""
    return [importlib.import_module(name).PIPELINE for name in VARIANT_MODULES]
