"""The ``stylize`` pipeline: its parameters, declared once, and the variant they make
(see :mod:`shardforge.variants.stylize.transform` for the algorithm and
:mod:`shardforge.variants.stylize.adain` for the model). Imports no torch and no Ray.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping

from shardforge.build.pipeline import Param, register
from shardforge.build.transform import LOSSLESS, VariantSpec
from shardforge.build.variant_job import variant_pipeline
from shardforge.formats.image import ImageParams
from shardforge.variants.stylize.styles import StyleSet, load_style_set
from shardforge.variants.stylize.transform import (
    CROP,
    METHODS,
    RESIZE,
    StylizeConfig,
    StylizeTransform,
)


def make_stylize_variant(config: StylizeConfig, style_set: StyleSet,
                         splits: tuple[str, ...] = ("train",), jpeg_quality: int | None = None,
                         num_gpus: float = 0.0, num_actors: int | None = None,
                         weights_sha256: Mapping[str, str] | None = None) -> VariantSpec:
    """The :class:`VariantSpec` of a stylization; ``params`` record everything that decides
    the bytes: method, alpha, seed, sizes, AMP, the style set's location, size and sha256,
    the weights' sha256 (AdaIN), the splits and the storage."""
    if config.method == "adain" and weights_sha256 is None:
        from shardforge.variants.stylize.adain_weights import weights_sha256 as sha

        assert config.weights is not None
        weights_sha256 = sha(config.weights)
    params = {"method": config.method, "alpha": config.alpha, "seed": config.seed,
              "resize": config.resize, "crop": config.crop, "style_size": config.style_size,
              "styles": style_set.location, "styles_sha256": style_set.sha256,
              "num_styles": len(style_set.styles), "styles_rejected": len(style_set.rejects),
              "splits": list(splits), "jpeg_quality": jpeg_quality}
    if config.method == "adain":
        params.update(weights_sha256=dict(sorted(dict(weights_sha256 or {}).items())),
                      amp=config.amp)
    image = LOSSLESS if jpeg_quality is None else ImageParams(
        max_resolution=None, write_mode="jpg", jpeg_quality=jpeg_quality)
    adain = config.method == "adain"
    return VariantSpec("stylize", params,
                       functools.partial(StylizeTransform, config, style_set.styles),
                       splits=tuple(splits), image=image, use_actors=adain or num_gpus > 0,
                       num_gpus=num_gpus, num_actors=num_actors)


PARAMS: dict[str, Param] = {
    "styles": Param((str,), help="style images: a directory, a dataset (catalog name or "
                                 "location) or builtin:demo (procedural, for the demo)",
                    dataset=True),
    "method": Param((str,), "adain", choices=METHODS,
                    help="adain (the paper's; needs weights) or fourier (weights-free "
                         "amplitude swap, NOT the paper's method)"),
    "weights": Param((str,), None, nullable=True,
                     help="directory with vgg_normalised.pth and decoder.pth (adain)"),
    "alpha": Param((float,), 1.0, help="stylization strength in [0, 1]"),
    "seed": Param((int,), 0, help="style assignment seed"),
    "resize": Param((int,), RESIZE, help="content Resize (short side)"),
    "crop": Param((int,), CROP, help="content CenterCrop"),
    "splits": Param((list,), ["train"], help="splits to stylize; others are copied"),
    "jpeg_quality": Param((int,), None, nullable=True,
                          help="store JPEG at this quality instead of lossless PNG/raw"),
    "amp": Param((str,), "fp16", choices=("fp16", "bf16", "off"),
                 help="autocast dtype on GPU (AdaIN statistics stay fp32)"),
    "batch_size": Param((int,), 32, help="images per AdaIN forward pass"),
    "num_gpus_per_actor": Param((float,), None, nullable=True,
                                help="GPUs per actor (null: AdaIN on the cluster's GPUs, "
                                     "shared by num_actors actors, one per GPU without it; "
                                     "fourier 0)"),
    "num_actors": Param((int,), None, nullable=True,
                        help="actors (null: one per GPU, else one per CPU; on a GPU node the "
                             "CPU side (decode, encode) is the limit: more actors sharing "
                             "the GPU go faster, see BENCHMARKS.md 'GPU paths')"),
}


def _config(params: Mapping) -> StylizeConfig:
    """The :class:`StylizeConfig` of a card's ``params`` (ValueError naming a bad one)."""
    return StylizeConfig(method=params["method"], alpha=float(params["alpha"]),
                         seed=int(params["seed"]), resize=int(params["resize"]),
                         crop=int(params["crop"]), weights=params.get("weights"),
                         amp=params["amp"], batch_size=int(params["batch_size"]))


def check_params(params: dict) -> None:
    _config(params)
    if not params["splits"] or not all(isinstance(s, str) for s in params["splits"]):
        raise ValueError("splits must be a non-empty list of split names")


def variant_from_params(params: Mapping, secrets: Mapping | None = None,
                        style_set: StyleSet | None = None) -> VariantSpec:
    """The variant validated ``params`` describe (a card's or the job's): loads and checks
    the style set unless ``style_set`` is given. With Ray up, ``num_gpus_per_actor`` null
    puts AdaIN on the cluster's GPUs (:func:`~shardforge.build.actors.gpus_per_actor`)."""
    from shardforge.build.actors import gpus_per_actor

    config = _config(params)
    style_set = style_set if style_set is not None else load_style_set(params["styles"])
    gpus, actors = params.get("num_gpus_per_actor"), params.get("num_actors")
    gpus = gpus_per_actor(gpus, actors) if config.method == "adain" else float(gpus or 0.0)
    return make_stylize_variant(config, style_set, tuple(params["splits"]),
                                params.get("jpeg_quality"), gpus, actors)


def stylize_inputs(params: Mapping) -> dict:
    """The catalog inputs of a card: the style set (a directory by its files' paths, sizes
    and mtimes: no image is read) and, for AdaIN, the two weight files' sha256."""
    import json

    from shardforge.build.inputs import Input
    from shardforge.variants.stylize.styles import style_set_input

    out = {}
    styles = style_set_input(params["styles"])
    if styles is not None:
        out["styles"] = styles
    if params["method"] == "adain" and params.get("weights"):
        from shardforge.variants.stylize.adain_weights import weights_sha256

        files = weights_sha256(params["weights"])
        blob = json.dumps(files, sort_keys=True).encode()
        out["weights"] = Input(params["weights"], "sha256:" + hashlib.sha256(blob).hexdigest())
    return out


PIPELINE = register(variant_pipeline(
    "stylize", "style-transferred variant of a parent dataset (Stylized-ImageNet: AdaIN with "
               "painting styles; or the weights-free Fourier amplitude swap)",
    PARAMS, variant_from_params, check=check_params, inputs=stylize_inputs))
