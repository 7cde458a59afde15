"""The ``invert`` pipeline: its parameters, declared once, and the variant they make.
Imports no torch and no Ray (catalog lookups import every spec)."""

from __future__ import annotations

import functools
from collections.abc import Mapping

from shardforge.build.pipeline import Param, register
from shardforge.build.transform import VariantSpec
from shardforge.build.variant_job import variant_pipeline
from shardforge.variants.invert.transform import InvertTransform

PARAMS: dict[str, Param] = {
    "channels": Param((list,), [0, 1, 2], help="RGB channels to invert (0, 1, 2)"),
    "splits": Param((list,), ["train"], help="splits to invert; others are copied"),
}


def _check(params: dict) -> None:
    channels = params["channels"]
    if not channels or any(isinstance(c, bool) or c not in (0, 1, 2) for c in channels):
        raise ValueError(f"channels must be a non-empty subset of [0, 1, 2], got "
                         f"{params['channels']}")


def make_variant(params: Mapping, secrets: Mapping | None = None) -> VariantSpec:
    """The :class:`VariantSpec` of validated ``params`` (they decide the bytes, so they all
    go into ``VariantSpec.params``, hence into the shards' spec hashes)."""
    channels = tuple(sorted(set(params["channels"])))
    return VariantSpec("invert", {"channels": list(channels), "splits": list(params["splits"])},
                       functools.partial(InvertTransform, channels),
                       splits=tuple(params["splits"]))


PIPELINE = register(variant_pipeline(
    "invert", "colour-inverted variant of a parent dataset (the worked example)",
    PARAMS, make_variant, check=_check))
