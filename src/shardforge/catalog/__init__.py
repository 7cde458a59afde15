"""Layer: catalog (above the variants, below stream/train/cli). The dataset catalog: which
datasets exist, what they were built from, where the shards are. It calls the build
layer (handing it its hooks: rewrite guard, registration) and may import every layer
below; the build layer never imports it.

Builds are registered as immutable versions ``NAME@vN`` in a SQLite database in the
catalog home (``$SHARDFORGE_HOME``, default ``~/.shardforge``); cards in
``datasets/*.yaml`` say how each named dataset is built. Every function takes
``home=`` (default: that home)::

    from shardforge import catalog

    catalog.list()                                # latest build of every dataset
    b = catalog.get("demo")                       # latest build (or "demo@v2")
    catalog.resolve("demo", "wds", "train")       # shard URLs of a split, in order
    catalog.lineage("demo-64")                    # [demo-64@v1, demo@v1]: up to the source
    catalog.verify("demo").ok                     # re-hash every file (quick=True: no hash)
    catalog.build("demo")                         # build a card (and missing parents) on Ray
    catalog.register_build(home, name, summary)   # register a finished pipeline's summary

Unknown names raise :class:`UnknownDataset` (a ``ValueError``) naming close matches.
"""

from __future__ import annotations

import os

from shardforge.catalog.entry import Build, Ref, parse_ref
from shardforge.catalog.errors import (
    CardError,
    CatalogError,
    PipelineNotImplemented,
    RegistrationError,
    UnknownDataset,
)
from shardforge.catalog.home import DEFAULT_HOME, HOME_ENV, default_home
from shardforge.catalog.lookup import get, lineage, list_builds
from shardforge.catalog.lookup import resolve_urls as resolve
from shardforge.catalog.register import register_build

list = list_builds  # noqa: A001  (the catalog's `list`, as in `catalog.list()`)


def verify(ref: str | Ref, home: str | os.PathLike | None = None, *, quick: bool = False,
           ray_address: str | None = None):
    """Re-hash every file of a build (``quick``: check sizes and structure only, no
    hashing; hashing runs on Ray tasks when a cluster is available: ``ray_address``,
    ``RAY_ADDRESS`` or an initialised Ray); a
    :class:`~shardforge.catalog.verifier.VerifyReport` whose ``problems`` name each
    missing, resized, damaged or corrupt file."""
    from shardforge.catalog.verifier import verify_build

    return verify_build(get(ref, home), quick=quick, ray_address=ray_address)


def build(name: str, **kwargs) -> Build | None:
    """Build (or reuse) the dataset of card ``name``; see
    :func:`shardforge.catalog.builder.build_dataset` for the keyword arguments."""
    from shardforge.catalog.builder import build_dataset

    return build_dataset(name, **kwargs)


__all__ = ["DEFAULT_HOME", "HOME_ENV", "Build", "CardError", "CatalogError",
           "PipelineNotImplemented", "Ref", "RegistrationError", "UnknownDataset", "build",
           "default_home", "get", "lineage", "list", "list_builds", "parse_ref",
           "register_build", "resolve", "verify"]
