"""The contract between a variant and the engine that runs it over a parent dataset.

The engine (``shardforge.ingest`` with ``IngestConfig.variant``) plans one output shard per
parent tar, or per (split, class) when ``group_by_class``; decodes each shard's samples
(keys and labels kept from the parent); calls the variant's transform once per shard on
the decoded samples of the splits in ``splits``; encodes the result with ``image``
(lossless by default) into both formats. Splits outside ``splits`` are copied with the
parent's stored bytes unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from shardforge.formats.image import ImageParams

#: Variant outputs are stored losslessly by default: raw pixels in the .beton, PNG in the
#: tars (a JPEG re-encode would blur away perturbations such as CUDA's filters).
LOSSLESS = ImageParams(max_resolution=None, write_mode="raw")


@dataclass
class Decoded:
    """One decoded sample: RGB ``uint8`` pixels (H x W x 3), its parent key and label.

    ``meta``: extra JSON-able per-sample fields written to the sample's ``.json`` member
    (e.g. the style id of a stylized image, whether a sample was poisoned).
    """

    key: str
    label: int
    pixels: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


class Transform(Protocol):
    """What a variant's ``make_transform()`` returns: whole shard in, whole shard out.

    ``split`` is the split the samples come from. The output may differ in length (a
    group-by-class variant returns its distilled images); keys must be unique, dot-free
    and deterministic, labels must be the class indices.
    """

    def __call__(self, samples: list[Decoded], split: str) -> list[Decoded]: ...


@dataclass(frozen=True)
class VariantSpec:
    """Everything the engine needs to run a variant.

    ``params``: JSON-able parameters that decide the output bytes (they go into the shards'
    spec hashes, so changing one rebuilds; never put a secret here, only its fingerprint).
    ``make_transform``: picklable zero-argument callable, called once per Ray task or once
    per actor (load models there); every variant writes it the same way,
    ``functools.partial(TransformClass, ...)`` (or of a module-level function that builds
    the transform), so nothing but the partial's arguments travels to the workers. ``num_gpus`` > 0 or ``use_actors``: shards run on a pool
    of ``num_actors`` actors (default: one per GPU, else one per CPU) that keep the
    transform loaded; otherwise each shard is a Ray task that calls ``make_transform``.
    ``classes``: keep only these parent classes (by name), renumbered in this order, in
    every split (a copied split keeps its bytes; only the labels change); None: all.
    ``label_map``: set by the engine from the parent's classes (parent label -> output
    label, -1: dropped); variants leave it None.
    """

    name: str
    params: dict[str, Any]
    make_transform: Callable[[], Transform]
    splits: tuple[str, ...] = ("train",)
    group_by_class: bool = False
    image: ImageParams = LOSSLESS
    use_actors: bool = False
    num_gpus: float = 0.0
    num_cpus: float = 1.0
    num_actors: int | None = None
    classes: tuple[str, ...] | None = None
    label_map: tuple[int, ...] | None = None

    def with_parent_classes(self, parent_classes: tuple[str, ...] | list[str]) -> VariantSpec:
        """This spec with :attr:`label_map` made from ``parent_classes`` (unchanged when
        :attr:`classes` is None). ValueError naming the classes the parent lacks."""
        if self.classes is None:
            return self
        index = {c: i for i, c in enumerate(self.classes)}
        missing = sorted(set(self.classes) - set(parent_classes))
        if missing:
            raise ValueError(f"variant {self.name}: {len(missing)} of the {len(self.classes)} "
                             f"classes it keeps are not in the parent's classes (e.g. "
                             f"{missing[:3]}); fix the 'classes' list or build from a parent "
                             "that has them")
        if len(index) != len(self.classes):
            raise ValueError(f"variant {self.name}: 'classes' lists a class twice; list each "
                             "once")
        return replace(self, label_map=tuple(index.get(c, -1) for c in parent_classes))

    def transforms(self, split: str) -> bool:
        """Whether samples of ``split`` go through the transform (else they are copied)."""
        return split in self.splits
