"""The ``distill`` pipeline: a parent dataset distilled with RDED (or the random baseline).

Parameters declared once (:data:`PARAMS`: cards, the job CLI and validation), the observer
as an input, and :func:`rded_variant`: check the observer's class order against the
parent's, then run the variant engine (one shard per class of the train split, resumable
per class; val copied unchanged; both formats). The catalog registers the result with
lineage and the observer's identity (file + sha256 in params).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from shardforge.build.pipeline import BuildRequest, Param, ParentDataset, Pipeline, register
from shardforge.build.transform import VariantSpec
from shardforge.models.reference import load_checked
from shardforge.variants.rded.transform import (
    DEFAULT_MIPC,
    DEFAULT_NUM_CROP,
    DEFAULT_SIZE,
    METHODS,
    make_variant,
    observer_ref,
    rded_params,
)

PARAMS: dict[str, Param] = {
    "method": Param((str,), "rded", choices=METHODS,
                    help="rded, or random: ipc random real images per class (the baseline)"),
    "ipc": Param((int,), help="images per class"),
    "observer": Param((str,), None, nullable=True,
                      help="jobs/train.py checkpoint (run dir, checkpoint dir or state.pt), or "
                           "a model name (small_cnn, resnet18, ...) with observer_weights"),
    "observer_weights": Param((str,), None, nullable=True,
                              help="state-dict file for a model-name observer"),
    "observer_classes": Param((str,), None, nullable=True,
                              help="class order of a weights observer: sorted or a file"),
    "size": Param((int,), DEFAULT_SIZE, help="observer input size (px)"),
    "factor": Param((int,), None, nullable=True,
                    help="patches per side (null: 1 up to 64 px, else 2)"),
    "mipc": Param((int,), DEFAULT_MIPC, help="real images scored per class"),
    "num_crop": Param((int,), DEFAULT_NUM_CROP, help="candidate crops per image"),
    "seed": Param((int,), 0, help="seed of image subsets and crops"),
}


def check_params(params: dict) -> None:
    """Validate the parameters together (ValueError naming the parameter)."""
    rded_params(params)
    if params.get("method", "rded") == "rded" and not params.get("observer"):
        raise ValueError("observer: method rded needs an observer (a jobs/train.py "
                         "checkpoint, or a model name with observer_weights)")


def distill_inputs(params: dict) -> dict:
    """The catalog inputs of a card: the observer's file (and class file), none for the
    random baseline. Reuse of a build depends on their content."""
    from shardforge.build.inputs import model_inputs

    ref = observer_ref(params)
    if params.get("method", "rded") != "rded" or ref is None:
        return {}
    return model_inputs(ref, "observer")


def parent_classes(location: str) -> tuple[str, ...]:
    """The class names (label order) of the dataset at ``location``."""
    from shardforge.layout.files import SUMMARY_FILE
    from shardforge.storage import resolve

    summary = json.loads(resolve(location).join(SUMMARY_FILE).read_bytes())
    return tuple(summary.get("classes") or ())


def check_observer_classes(params: Mapping[str, Any], classes: tuple[str, ...],
                           dataset: str) -> None:
    """For RDED, load the observer once and compare its class order with ``classes`` (the
    parent's): ValueError naming both orders on a mismatch. Validates ``params`` too."""
    check_params(dict(params))
    ref = observer_ref(params)
    if params.get("method", "rded") == "rded" and ref is not None:
        load_checked(ref, classes, ref.location, dataset)


def distill_variant(params: Mapping[str, Any], classes: tuple[str, ...], *,
                    num_gpus: float | None = None,
                    num_actors: int | None = None) -> VariantSpec:
    """The :class:`VariantSpec` (call :func:`check_observer_classes` first); ``num_gpus``
    per observer actor, None: the cluster's GPUs shared by the actors
    (:func:`~shardforge.build.actors.gpus_per_actor`)."""
    from shardforge.build.actors import gpus_per_actor

    gpus = gpus_per_actor(num_gpus, num_actors)
    return make_variant(params, {}, dataset_classes=classes, num_gpus=gpus,
                        num_actors=num_actors)


def rded_variant(params: Mapping[str, Any], *, num_gpus: float | None = None,
                num_actors: int | None = None) -> Callable[[ParentDataset], VariantSpec]:
    """What makes the variant once the parent is known (for
    :func:`shardforge.catalog.variant.run_variant`): it checks the observer's class order
    against the parent's first (before any work), then makes :func:`distill_variant`.
    ``num_gpus`` per observer actor (None: the cluster's GPUs shared by the actors; one
    per GPU without ``num_actors``)."""
    def make(parent: ParentDataset) -> VariantSpec:
        check_observer_classes(params, parent.classes, parent.ref or parent.location)
        return distill_variant(params, parent.classes, num_gpus=num_gpus,
                               num_actors=num_actors)

    return make


def _build(request: BuildRequest) -> dict:
    parent = request.parent
    if parent is None:
        raise ValueError(f"card {request.name}: pipeline distill needs a parent dataset "
                         "(source: {dataset: NAME})")
    from shardforge.build.variant_job import transform_dataset
    from shardforge.engine.cluster import ray_session

    with ray_session(request.ray_address):
        spec = rded_variant(request.params)(parent)
        return transform_dataset(parent, spec, request.name, request.out,
                                 ray_address=request.ray_address)


PIPELINE = register(Pipeline(
    name="distill",
    summary="dataset distillation of a parent dataset (RDED, Sun et al. CVPR 2024) into ipc "
            "images per class, or ipc random real images per class (baseline)",
    params=PARAMS, sources=("dataset",), check=check_params, build=_build,
    inputs=distill_inputs))
