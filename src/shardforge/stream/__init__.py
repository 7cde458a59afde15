"""Layer: stream (above the catalog, below training). Streaming a shardforge dataset into
training. May import the catalog (names to locations) and everything below it.

* :func:`open_dataset` / :func:`open_shards` / :func:`resolve_dataset`
  (:mod:`shardforge.layout.dataset`): summary + index of an ingest output, local or ``s3://``;
* :func:`open_indexed` (:mod:`.index_cache`): the same, its index memory-mapped from a
  node-local copy every loader of the node shares (what :func:`make_loader` uses);
* :class:`WdsStream` (:mod:`.wds_stream`), :func:`make_loader`, :class:`WdsLoader` (:mod:`.wds_loader`):
  WebDataset tars -> PyTorch batches, equal per rank, resumable mid-epoch; built by worker
  processes or, with ``worker_kind="thread"``, by threads (:mod:`.wds_threads`);
* :class:`RandomResizedCrop`, :class:`CenterCrop` (:mod:`shardforge.formats.decode`): crop-first decoding
  with DCT-domain downscaling.

Names are imported lazily, so ``import shardforge.stream`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DatasetRef": "shardforge.layout.dataset", "SplitIndex": "shardforge.layout.dataset",
    "open_dataset": "shardforge.layout.dataset", "open_shards": "shardforge.layout.dataset",
    "open_indexed": "index_cache", "resolve_dataset": "shardforge.catalog.lookup",
    "DatasetNotFoundError": "shardforge.layout.dataset",
    "DatasetIndexError": "shardforge.layout.dataset",
    "WdsStream": "wds_stream", "WdsLoader": "wds_loader", "make_loader": "wds_loader",
    "IntegrityError": "repair", "CorruptSampleError": "faults", "FaultReport": "faults",
    "RandomResizedCrop": "shardforge.formats.decode", "CenterCrop": "shardforge.formats.decode",
    "DecodeError": "shardforge.formats.decode",
    "ShardReadError": "shardforge.layout.reader",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    full = module if "." in module else f"{__name__}.{module}"
    return getattr(importlib.import_module(full), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
