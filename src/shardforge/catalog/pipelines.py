"""Pipeline lookup for the catalog: every plug-in loaded, then the build layer's registry.

The registry itself (:mod:`shardforge.build.pipeline`) only knows what has been imported;
this module imports the ``ingest`` pipeline and every variant package
(:func:`shardforge.variants.load_plugins`) first, so cards can name any of them.
"""

from __future__ import annotations

from shardforge.build.pipeline import Pipeline, UnknownPipeline, registered, registered_names
from shardforge.catalog.errors import CatalogError


def load_pipelines() -> None:
    """Import every built-in and plug-in pipeline (idempotent)."""
    from shardforge.build import ingest_pipeline  # noqa: F401  (registers "ingest")
    from shardforge.variants import load_plugins

    load_plugins()


def get_pipeline(name: str) -> Pipeline:
    """The pipeline called ``name``; CatalogError naming close matches when unknown."""
    load_pipelines()
    try:
        return registered(name)
    except UnknownPipeline as exc:
        raise CatalogError(str(exc)) from None


def pipeline_names() -> list[str]:
    """Every pipeline name, sorted."""
    load_pipelines()
    return registered_names()
