"""The variant modules whose ``PIPELINE`` the catalog registers next to ``ingest``."""

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
