"""Layer: variants. One package per paper, each of one shape (see docs/architecture.md):

* ``spec.py``: the parameters, declared once (defaults, checks, the inputs they name), the
  :class:`~shardforge.build.transform.VariantSpec` they make, and the pipeline registered
  with :func:`shardforge.build.pipeline.register`; it imports no torch and no Ray, so
  catalog lookups stay light;
* ``transform.py``: the paper's algorithm, pure and testable without Ray;
* a model-loading module where the paper uses a model.

A variant may import the layers below it (storage, formats, layout, models, augment,
sources, engine, build) and never the catalog, streaming, training or the CLI. Adding a
variant = adding one package here: :func:`load_plugins` finds every package whose
``spec`` module exists, and third-party packages register through the
``shardforge.variants`` entry-point group.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "shardforge.variants"


def load_plugins() -> list[str]:
    """Import the ``spec`` module of every variant package here and every module named in
    the ``shardforge.variants`` entry-point group (each registers its pipeline on import).
    Returns the module names, in load order; importing twice is a no-op."""
    names = [f"{__name__}.{info.name}.spec" for info in pkgutil.iter_modules(__path__)
             if info.ispkg and importlib.util.find_spec(f"{__name__}.{info.name}.spec")]
    names += [ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)]
    for name in names:
        importlib.import_module(name)
    return names
