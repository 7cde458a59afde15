"""The dataset object ``shardforge.open`` returns: an opened dataset plus its loader.

It sits at the top layer (with the CLI) because it joins the on-disk dataset
(:mod:`shardforge.layout`) with the loaders (:mod:`shardforge.stream`), which sit above it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from shardforge.layout.dataset import DatasetRef
from shardforge.stream.wds_loader import WdsLoader, make_loader


@dataclasses.dataclass(frozen=True)
class Dataset(DatasetRef):
    """An opened dataset (:class:`~shardforge.layout.dataset.DatasetRef`: ``url``,
    ``name``, ``classes``, ``summary``, ``split(NAME)`` for the index) with its loader."""

    @classmethod
    def of(cls, ref: DatasetRef) -> Dataset:
        """The same dataset as ``ref``, with :meth:`loader`."""
        return cls(**{f.name: getattr(ref, f.name) for f in dataclasses.fields(ref)})

    def loader(self, split: str = "train", batch_size: int = 256, **kwargs: Any) -> WdsLoader:
        """Batches of split ``split``: :func:`shardforge.stream.wds_loader.make_loader` on
        this dataset (``num_workers``, ``transform`` e.g.
        ``shardforge.stream.RandomResizedCrop(160)``, ``rank``/``world_size``, ``seed``,
        ``epoch``, ...). Yields ``(uint8 images [B,H,W,3], int64 labels [B])``."""
        self.split(split)        # KeyError naming the splits there are
        return make_loader(self, split, batch_size, **kwargs)
