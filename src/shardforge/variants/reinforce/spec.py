"""The ``reinforce`` pipeline (dataset reinforcement, ImageNet+): its parameters, the
teachers it names as inputs, and its build (the engine: :mod:`.engine`).

A teacher is a jobs/train.py checkpoint (run dir, checkpoint dir or state.pt),
``ARCH=WEIGHTS`` (torchvision/small_cnn constructor + local state-dict file; class order
from ``teacher_classes``), or ``recipe:CONFIG.yaml``: that recipe trained on the parent
inside the build, by the training function the caller passes
(:attr:`~shardforge.build.pipeline.BuildRequest.train_recipe`; the CLI passes training's).
The Ray job entry with its flags is :mod:`shardforge.cli.reinforce`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from shardforge.build.pipeline import BuildRequest, Param, Pipeline, TrainRecipe, register

_log = logging.getLogger(__name__)

RECIPE_PREFIX = "recipe:"


# ----------------------------------------------------------------------------- catalog

PARAMS = {
    "teacher": Param((str,), help="checkpoint, ARCH=WEIGHTS or recipe:CONFIG (one member; "
                                  "several: comma-separated)"),
    "teacher_classes": Param((str,), "sorted", help="class order of ARCH=WEIGHTS members"),
    "num_augmentations": Param((int,), 400, help="augmentations stored per image"),
    "top_k": Param((int,), 10, help="teacher probabilities kept per augmentation"),
    "size": Param((int,), 224, help="view size (RandomResizedCrop output)"),
    "seed": Param((int,), 0),
    "crop_scale_min": Param((float,), 0.08, help="RandomResizedCrop minimum area"),
    "randaugment_ops": Param((int,), 2),
    "randaugment_magnitude": Param((int,), 9),
    "erasing_p": Param((float,), 0.25),
    "mixup_p": Param((float,), 0.0, help="MixUp probability per augmentation (0: the "
                                         "paper's recommended setting; ml-dr's mixing "
                                         "configs: 0.5)"),
    "mixup_alpha": Param((float,), 1.0, help="MixUp lambda ~ Beta(alpha, alpha) / div_by"),
    "mixup_div_by": Param((float,), 2.0, help="MixUp lambda divisor (ml-dr: 2.0)"),
    "cutmix_p": Param((float,), 0.0, help="CutMix probability per augmentation (ml-dr's "
                                          "mixing configs: 0.5)"),
    "cutmix_alpha": Param((float,), 1.0, help="CutMix lambda ~ Beta(alpha, alpha)"),
    "batch_size": Param((int,), 256, help="views per teacher forward"),
    "num_actors": Param((int,), None, nullable=True,
                        help="teacher actors (null: one per GPU, else one per CPU). On a GPU "
                             "node one actor is limited by its CPU side (decode + augment, "
                             "~0.7k views/s): several actors sharing a GPU go faster (1 -> 4 "
                             "actors: 1.7x on an H200, BENCHMARKS.md 'GPU paths')"),
    "num_gpus_per_actor": Param((float,), None, nullable=True,
                                help="GPUs per teacher actor (null: the cluster's GPUs shared "
                                     "by num_actors actors, one actor per GPU without it; 0 "
                                     "on CPUs)"),
}


def teacher_refs(params: Mapping[str, Any], source: str, runs: str,
                 train_recipe: TrainRecipe | None) -> tuple:
    """The ensemble members ``params["teacher"]`` names (comma-separated), ``recipe:``
    members trained on ``source`` first (:func:`trained_teacher`)."""
    from shardforge.models.reference import parse_member

    return tuple(parse_member(trained_teacher(t.strip(), source, runs, train_recipe),
                              params["teacher_classes"])
                 for t in params["teacher"].split(","))


def reinforce_config(params: Mapping[str, Any], parent: str, name: str, out: str | None,
                     teachers: tuple, ray_address: str | None = None):
    """The :class:`~shardforge.variants.reinforce.engine.ReinforceConfig` that validated
    ``params`` describe (the card's and the job's: one mapping for both)."""
    from shardforge.augment import AugPolicy
    from shardforge.variants.reinforce.engine import ReinforceConfig

    p = params
    return ReinforceConfig(
        parent=parent, name=name, out=out, teachers=teachers,
        num_augs=p["num_augmentations"], top_k=p["top_k"], seed=p["seed"],
        policy=AugPolicy(size=p["size"], rrc_scale=(float(p["crop_scale_min"]), 1.0),
                         randaugment_ops=p["randaugment_ops"],
                         randaugment_magnitude=p["randaugment_magnitude"],
                         erasing_p=float(p["erasing_p"]), mixup_p=float(p["mixup_p"]),
                         mixup_alpha=float(p["mixup_alpha"]),
                         mixup_div_by=float(p["mixup_div_by"]),
                         cutmix_p=float(p["cutmix_p"]),
                         cutmix_alpha=float(p["cutmix_alpha"])),
        batch_size=p["batch_size"], num_actors=p["num_actors"],
        num_gpus_per_actor=None if p["num_gpus_per_actor"] is None
        else float(p["num_gpus_per_actor"]),
        ray_address=ray_address)


def teacher_inputs(params: dict) -> dict:
    """The catalog inputs of a card: each member's checkpoint or weights file (and class
    file), or a ``recipe:`` member's config file (that teacher is trained inside the
    build). One member: ``teacher``; several: ``teacher1``, ``teacher2``, ..."""
    from shardforge.build.inputs import Input, file_input, model_inputs
    from shardforge.models.reference import parse_member

    members = [t.strip() for t in params["teacher"].split(",")]
    out: dict = {}
    for i, text in enumerate(members, 1):
        name = "teacher" if len(members) == 1 else f"teacher{i}"
        if text.startswith(RECIPE_PREFIX):
            digest = file_input(text[len(RECIPE_PREFIX):]).digest
            out[name] = Input(text, digest)
        else:
            out.update(model_inputs(parse_member(text, params["teacher_classes"]), name))
    return out


def trained_teacher(text: str, source: str, runs: str,
                    train_recipe: TrainRecipe | None) -> str:
    """A teacher reference with ``recipe:CONFIG`` replaced by the run of that recipe
    trained on ``source`` by ``train_recipe`` (run ``RUNS/CONFIGSTEM-SOURCE-teacher``; a
    finished run of the same recipe content is reused). ValueError naming the fix when a
    recipe is named and no ``train_recipe`` was given."""
    if not text.startswith(RECIPE_PREFIX):
        return text
    config = text[len(RECIPE_PREFIX):]
    if train_recipe is None:
        raise ValueError(f"teacher {text!r} must be trained first and this caller cannot "
                         "train: build with `shardforge build` or pipelines/reinforce.py, or "
                         "give the trained checkpoint instead")
    stem = os.path.splitext(os.path.basename(config))[0]
    _log.info("teacher: %s on %s", config, source)
    return train_recipe(config, source, runs, f"{stem}-{_slug(source)}-teacher")


def _slug(ref: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in ref.rsplit("/", 1)[-1])


def _build(request: BuildRequest) -> dict:
    from shardforge.variants.reinforce.engine import run_reinforce

    parent = request.parent
    if parent is None:
        raise ValueError(f"card {request.name}: reinforce needs a parent (source: "
                         "{dataset: NAME})")
    # a recipe: teacher is part of this build: its run lives in the build's directory
    runs = os.path.join(request.out, "teacher-runs")
    teachers = teacher_refs(request.params, parent.location, runs, request.train_recipe)
    config = reinforce_config(request.params, parent.location, request.name, request.out,
                              teachers, request.ray_address)
    # summary.json records the parent by its location on the card path (as it always has:
    # its bytes are part of the build); the catalog entry records the parent's NAME@vN
    return run_reinforce(config)


PIPELINE = register(Pipeline(
    name="reinforce",
    summary="dataset reinforcement (ImageNet+): teacher top-K predictions stored for many "
            "replayable augmentations of every training image (images not copied)",
    params=PARAMS, sources=("dataset",), build=_build, inputs=teacher_inputs))
