"""Pipelines that later issues implement: their card schemas, without a build function.

Cards that use them validate now; ``shardforge build`` refuses them with a message naming
the pipeline until an implementation is registered (:func:`register_pipeline` with the
same name and a ``build``). The parameter schemas are provisional: the implementing issue
owns them and the cards that use them.
"""

from __future__ import annotations

from shardforge.catalog.pipelines import Param, Pipeline

LATER = "a later issue (variant datasets)"

PIPELINES = (
    Pipeline(
        name="unlearnable",
        summary="unlearnable variant of a parent dataset (CUDA: class-wise blurring "
                "filters from a private key)",
        params={
            "method": Param((str,), choices=("cuda",), help="unlearnable-example method"),
            "kernel_size": Param((int,), 3, help="side of each class's blurring filter"),
            "blur": Param((float,), 0.3, help="CUDA blur parameter p_b"),
            "num_classes": Param((int,), None, nullable=True,
                                 help="keep only the first N classes (ImageNet-100: 100)"),
        },
        secrets=("private_key",),
        planned=LATER,
    ),
    Pipeline(
        name="reinforce",
        summary="dataset reinforcement (ImageNet+): teacher predictions stored for many "
                "augmentations of every sample",
        params={
            "teacher": Param((str,), help="teacher model (or ensemble) name or checkpoint URL"),
            "num_augmentations": Param((int,), help="augmentations stored per sample"),
            "top_k": Param((int,), 10, help="sparse teacher logits kept per augmentation"),
            "seed": Param((int,), 0),
        },
        planned=LATER,
    ),
    Pipeline(
        name="distill",
        summary="dataset distillation of a parent dataset (RDED) into IPC images per class",
        params={
            "method": Param((str,), choices=("rded",), help="distillation method"),
            "ipc": Param((int,), help="images per class"),
            "teacher": Param((str,), help="observer/teacher model name or checkpoint URL"),
            "factor": Param((int,), 2, help="patches per side stitched into one image"),
            "candidates_per_class": Param((int,), None, nullable=True,
                                          help="candidate crops scored per class"),
            "seed": Param((int,), 0),
        },
        planned=LATER,
    ),
    Pipeline(
        name="stylize",
        summary="style-transferred variant of a parent dataset (Stylized-ImageNet: AdaIN "
                "with painting styles)",
        params={
            "styles": Param((str,), help="location of the style images"),
            "alpha": Param((float,), 1.0, help="stylization strength in [0, 1]"),
            "seed": Param((int,), 0, help="style assignment seed"),
        },
        planned=LATER,
    ),
)
