"""The pipeline registry: ``name -> Pipeline`` (parameter schema + build function).

A card names its pipeline; :func:`registered` gives its :class:`Pipeline`, whose
``params`` schema validates the card and whose ``build`` makes the dataset::

    build(request: BuildRequest) -> dict

``build`` writes the dataset under ``request.out`` (a local path or s3:// URL), running its
work as Ray tasks on the Ray runtime the caller has started (``ray_address`` is the
cluster, for builds that start their own jobs), and returns the build's summary in the
``summary.json`` layout of an ingest (see :mod:`shardforge.build.job`). It must raise on
failure; the caller registers the summary in the catalog only when ``build`` returns.

A pipeline whose parameters name files (a checkpoint, weights, a recipe, a style directory)
declares ``inputs(params) -> {name: Input}`` (:mod:`shardforge.build.inputs`): their
content digests decide reuse together with the card hash.

Plug-ins add themselves with :func:`register` when their ``spec`` module is imported (the
``ingest`` pipeline in :mod:`shardforge.build.ingest_pipeline`, each variant in
``shardforge.variants.<paper>.spec``); the catalog imports them all before a lookup
(:mod:`shardforge.catalog.pipelines`), so this layer never imports a plug-in. A pipeline declared
without ``build`` (planned, not implemented yet) validates cards but refuses to build.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shardforge.build.secrets import Secrets
from shardforge.layout.files import FORMATS
from shardforge.names import did_you_mean

if TYPE_CHECKING:
    from shardforge.build.inputs import Input


class UnknownPipeline(ValueError):
    """A pipeline name nobody registered (the message names the registered ones)."""


@dataclass(frozen=True)
class ParentDataset:
    """The parent a build reads: its location (holding ``summary.json``), its catalog
    reference ``NAME@vN`` when it came from the catalog (else None), its class names."""

    location: str
    ref: str | None
    classes: tuple[str, ...]


#: ``(recipe config path, dataset location, runs directory, run name) -> run directory``:
#: trains a recipe (reusing a finished run of the same content) and returns its run. Passed
#: down by the CLI layer (which may import training) so a pipeline can train a
#: ``recipe:CONFIG`` teacher without importing training itself.
TrainRecipe = Callable[[str, str, str, str], str]


@dataclass(frozen=True)
class BuildRequest:
    """Everything a pipeline's ``build`` receives, and nothing of the catalog.

    ``params``: every parameter (defaults applied, ``${VAR}`` expanded); ``secrets``: secret
    values by name (``repr`` shows fingerprints only); ``parent``: the parent dataset of a
    ``dataset`` source; ``source_url``: the location to read for ``path`` and ``demo``
    sources; ``inputs``: content digests of the files the parameters name
    (:mod:`shardforge.build.inputs`); ``train_recipe``: see :data:`TrainRecipe` (None:
    ``recipe:`` references are refused, naming the fix).
    """

    name: str
    params: Mapping[str, Any]
    out: str
    secrets: Secrets = field(default_factory=Secrets)
    parent: ParentDataset | None = None
    source_url: str | None = None
    ray_address: str | None = None
    inputs: Mapping[str, Input] = field(default_factory=dict)
    train_recipe: TrainRecipe | None = None


BuildFn = Callable[[BuildRequest], dict]
InputsFn = Callable[[dict], "Mapping[str, Input]"]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Param:
    """One pipeline parameter: accepted types, default (or :data:`REQUIRED`), choices."""

    types: tuple[type, ...]
    default: Any = REQUIRED
    choices: tuple | None = None
    nullable: bool = False
    help: str = ""
    #: The value may name a catalog dataset (``NAME[@vN]``): whoever holds the catalog
    #: resolves it to the dataset's location before the pipeline sees it.
    dataset: bool = False

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable, or None."""
        if value is None:
            return None if self.nullable else "must not be null"
        ok = any(_is(value, t) for t in self.types)
        if not ok:
            wanted = " or ".join(t.__name__ for t in self.types)
            return f"{value!r} is a {type(value).__name__}, expected {wanted}"
        if self.choices is not None and value not in self.choices:
            return f"{value!r} is not one of {', '.join(map(str, self.choices))}"
        return None

    def describe(self) -> str:
        """``int or null (default 256; HELP)``."""
        kinds = " or ".join([t.__name__ for t in self.types] + (["null"] if self.nullable else []))
        if self.choices is not None:
            kinds = "one of " + ", ".join(map(str, self.choices))
        default = "required" if self.required else f"default {json.dumps(self.default)}"
        return f"{kinds} ({default}" + (f"; {self.help})" if self.help else ")")


def _is(value: Any, t: type) -> bool:
    if t is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, t)


@dataclass(frozen=True)
class Pipeline:
    """A way to build a dataset: what its card may say, and the function that builds it.

    ``sources``: the card source kinds it accepts (``path``, ``demo``, ``dataset``).
    ``secrets``: names of secret parameters (all required; given as ``{env: VAR}`` or
    ``{file: PATH}`` in the card, never as values). ``check`` validates the parameters
    together (raise ValueError naming the parameter). ``inputs`` maps the validated
    parameters to the content digests of the files they name (raise ValueError or OSError
    naming the file). ``build`` None: planned, not implemented yet; ``planned`` says
    where it comes from.
    """

    name: str
    summary: str
    params: Mapping[str, Param] = field(default_factory=dict)
    sources: tuple[str, ...] = ("dataset",)
    secrets: tuple[str, ...] = ()
    formats: tuple[str, ...] = FORMATS
    check: Callable[[dict], None] | None = None
    build: BuildFn | None = None
    inputs: InputsFn | None = None
    planned: str = ""

    @property
    def implemented(self) -> bool:
        return self.build is not None

    def with_defaults(self, params: Mapping[str, Any]) -> dict:
        """``params`` completed with the schema's defaults, keys sorted."""
        full = {k: p.default for k, p in self.params.items() if not p.required}
        full.update(params)
        return dict(sorted(full.items()))


_REGISTRY: dict[str, Pipeline] = {}


def register(pipeline: Pipeline) -> Pipeline:
    """Add ``pipeline`` to the registry under its name and return it (a plug-in's
    ``spec`` module calls this at import: ``PIPELINE = register(Pipeline(...))``).

    ValueError when another pipeline already holds the name: two plug-ins must not
    silently replace each other."""
    held = _REGISTRY.setdefault(pipeline.name, pipeline)
    if held is not pipeline:
        raise ValueError(f"pipeline name {pipeline.name!r} is taken by {held.summary!r}; "
                         "give the new pipeline another name")
    return pipeline


def registered(name: str) -> Pipeline:
    """The registered pipeline called ``name``; :class:`UnknownPipeline` naming close
    matches when unknown. Only what has been imported is registered: the catalog loads every plug-in
    first (:func:`shardforge.catalog.pipelines.get_pipeline`)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownPipeline(f"unknown pipeline {name!r}; pipelines: "
                           f"{', '.join(sorted(_REGISTRY))}{did_you_mean(name, _REGISTRY)}"
                           ) from None


def registered_names() -> list[str]:
    """Every registered pipeline name, sorted."""
    return sorted(_REGISTRY)
