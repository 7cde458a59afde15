"""The ``unlearnable`` (CUDA) pipeline: its parameters, declared once, and the variant
they make (see :mod:`shardforge.variants.cuda.transform` for the algorithm).

Imports no torch and no Ray (catalog lookups stay light); OpenCV is imported only when a
transform is made, in the task that runs it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from shardforge.build.pipeline import Param, register
from shardforge.build.secrets import MIN_SECRET_CHARS, Secrets, fingerprint
from shardforge.build.transform import VariantSpec
from shardforge.build.variant_job import variant_pipeline
from shardforge.variants.cuda.key import KeyedHmac

NAME = "unlearnable"
METHOD = "cuda"
#: Longest side (px) up to which the small-image defaults apply (CIFAR 32 px, 64 px sets).
SMALL_IMAGE_MAX_SIDE = 128
#: (kernel_size, pb) for small images: the paper's CIFAR-10/100 setting.
SMALL_DEFAULTS = (3, 0.3)
#: (kernel_size, pb) for larger images: the ImageNet-scale (224 px) setting of follow-up work.
LARGE_DEFAULTS = (9, 0.06)
#: Largest kernel size: keeps every sum in :func:`apply_cuda` below 2**45, hence exact.
MAX_KERNEL_SIZE = 15
def default_params(resolution: int) -> tuple[int, float]:
    """``(kernel_size, pb)`` for images whose longest side is ``resolution`` px.

    ``<= SMALL_IMAGE_MAX_SIDE`` (128): ``(3, 0.3)``; larger: ``(9, 0.06)``.
    """
    if resolution < 1:
        raise ValueError(f"resolution {resolution} must be a positive number of pixels")
    return SMALL_DEFAULTS if resolution <= SMALL_IMAGE_MAX_SIDE else LARGE_DEFAULTS


def check_key(key: str, where: str = "private key") -> str:
    """``key`` if usable as a private key; ValueError naming ``where`` otherwise."""
    if not isinstance(key, str) or len(key) < MIN_SECRET_CHARS:
        n = len(key) if isinstance(key, str) else 0
        raise ValueError(f"{where} has {n} characters; a CUDA private key needs at least "
                         f"{MIN_SECRET_CHARS} (e.g. python -c 'import secrets; "
                         "print(secrets.token_hex(16))')")
    return key


def check_filter_params(kernel_size: int, pb: float) -> None:
    """ValueError naming the parameter when ``kernel_size`` is not odd >= 1 or ``pb`` not
    in (0, 1]."""
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) \
            or not 1 <= kernel_size <= MAX_KERNEL_SIZE or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size {kernel_size!r} must be an odd integer in 1.."
                         f"{MAX_KERNEL_SIZE} (the filter is centred: 3 for 32-64 px images, "
                         "9 at 224 px)")
    if not 0.0 < float(pb) <= 1.0:
        raise ValueError(f"pb {pb!r} must be in (0, 1] (the paper's blur parameter: 0.3 "
                         "for CIFAR, 0.06 at 224 px)")



#: The pipeline's parameter schema (catalog card ``pipeline.params`` and the Ray job's flags).
PARAMS: dict[str, Param] = {
    "method": Param((str,), METHOD, choices=(METHOD,), help="unlearnable-example method"),
    "kernel_size": Param((int,), None, nullable=True,
                         help="odd side k of each class's filter; null: by image size, 3 up "
                              f"to {SMALL_IMAGE_MAX_SIDE} px, else 9"),
    "pb": Param((float,), None, nullable=True,
                help="filter weights are U(0, pb); null: by image size, 0.3 up to "
                     f"{SMALL_IMAGE_MAX_SIDE} px, else 0.06"),
    "p": Param((float,), 1.0, help="poison fraction: each train sample poisoned "
                                    "independently with probability p"),
    "grayscale": Param((bool,), False, help="reference's grayscale option: channel mean "
                                            "after the convolution"),
    "num_classes": Param((int,), None, nullable=True,
                         help="keep only classes 0..N-1 in every split; val is then "
                              "re-encoded losslessly instead of copied (prefer 'classes')"),
    "classes": Param((list,), None, nullable=True,
                     help="keep only these parent classes (names, e.g. the 100 wnids of "
                          "ImageNet-100), renumbered in the order given, in every split; "
                          "val keeps its bytes"),
    "resize": Param((int,), None, nullable=True,
                    help="poison at the training resolution: Resize(resize) (short side) "
                         "then CenterCrop(crop) before the filter; null: stored size"),
    "crop": Param((int,), None, nullable=True, help="CenterCrop side after resize"),
}
SECRETS = ("private_key",)
#: Parameters added after builds existed: left out of the variant's params when unset, so
#: those builds' summaries and shard hashes stay byte-identical.
UNSET_LEFT_OUT = ("classes", "resize", "crop")


def check_params(params: Mapping[str, Any]) -> None:
    """ValueError naming the parameter when the parameters do not make a valid CUDA run."""
    p = params.get("p", 1.0)
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"p {p!r} must be a poison fraction in [0, 1]")
    k, pb = params.get("kernel_size"), params.get("pb")
    check_filter_params(3 if k is None else k, 0.3 if pb is None else pb)
    n = params.get("num_classes")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"num_classes {n!r} must be a positive integer or null (all classes)")
    classes = params.get("classes")
    if classes is not None:
        if n is not None:
            raise ValueError("give classes or num_classes, not both")
        if not classes or not all(isinstance(c, str) and c for c in classes):
            raise ValueError(f"classes must be a non-empty list of class names, got {classes!r}")
    resize, crop = params.get("resize"), params.get("crop")
    if (resize is None) != (crop is None):
        raise ValueError(f"resize ({resize!r}) and crop ({crop!r}) go together: give both "
                         "(e.g. 256 and 224) or neither")
    if resize is not None and not 8 <= crop <= resize:
        raise ValueError(f"need 8 <= crop ({crop}) <= resize ({resize})")


def make_variant(params: Mapping[str, Any], secrets: Mapping[str, str]) -> VariantSpec:
    """The CUDA :class:`VariantSpec` for validated ``params`` and ``secrets["private_key"]``.

    Only train is poisoned; val stays clean (copied byte for byte, or with ``num_classes``
    filtered and re-encoded losslessly). ``classes`` keeps those parent classes in every
    split (val still byte for byte); ``resize``/``crop`` bring train images to the training
    resolution (Resize short side, CenterCrop) before the filter, so the model sees the
    filter at the scale it was drawn for. The spec's params carry the key's fingerprint
    (``key_fingerprint``), never the key; the transform factory holds the key's HMAC
    midstates only, so the key is in no Ray task spec.
    """
    if "private_key" not in secrets:
        raise ValueError("the unlearnable variant needs the secret 'private_key' (card: "
                         "secrets: {private_key: {env: VAR}}; job: --key-file or --key-env)")
    key = check_key(secrets["private_key"])
    full = {name: param.default for name, param in PARAMS.items()}
    full.update(params)
    check_params(full)
    pb = None if full["pb"] is None else float(full["pb"])
    spec_params = {**full, "pb": pb, "p": float(full["p"]),
                   "key_fingerprint": fingerprint(key)}
    for name in UNSET_LEFT_OUT:     # unset: a build keeps the identity (and bytes) it had
        if spec_params[name] is None:
            del spec_params[name]
    from shardforge.variants.cuda.transform import CudaTransform

    # the factory (as every variant's: functools.partial of the transform class) holds the
    # key's HMAC midstates (:mod:`shardforge.variants.cuda.key`), never the key
    content = None if full["resize"] is None else (int(full["resize"]), int(full["crop"]))
    make = functools.partial(CudaTransform, KeyedHmac.from_key(key), float(full["p"]),
                             full["kernel_size"], pb, bool(full["grayscale"]),
                             full["num_classes"], content)
    splits = ("train",) if full["num_classes"] is None else ("train", "val")
    classes = None if full["classes"] is None else tuple(full["classes"])
    return VariantSpec(name=NAME, params=dict(sorted(spec_params.items())),
                       make_transform=make, splits=splits, classes=classes)


def secrets_of(key: str) -> Secrets:
    """The ``Secrets`` mapping that :func:`make_variant` expects, from a key value."""
    return Secrets({"private_key": check_key(key)})


#: The catalog pipeline ``unlearnable`` (cards: ``pipeline: {name: unlearnable, params: ...,
#: secrets: {private_key: {env: VAR}}}``).
PIPELINE = register(variant_pipeline(
    NAME, "unlearnable copy of a parent dataset (CUDA: class-wise random filters from a "
          "private key; train poisoned, val clean)",
    PARAMS, make_variant, secrets=SECRETS, check=check_params))
