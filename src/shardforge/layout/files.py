"""The on-disk dataset's file names: one place for every layer that reads or writes them.

    OUT/summary.json                 what was built (splits, classes, files + sha256)
    OUT/catalog-entry.json           the build's catalog entry NAME@vN, written when it is
                                     registered (``shardforge catalog sync`` reads these)
    OUT/index.parquet                one row per sample: key, label, split, shard, byte range
    OUT/rejects.jsonl                inputs that were skipped, with the reason
    OUT/wds/NAME-SPLIT-NNNNNN.tar    WebDataset shards
    OUT/wds/NAME-SPLIT.wids.json     the split's shard list for ``wids`` (wids-shard-index-v1)
    OUT/beton/NAME-SPLIT.beton       one FFCV .beton per split
    OUT/_work/                       per-shard parts and manifests (resume)
"""

from __future__ import annotations

#: The two shard formats every build writes.
FORMATS = ("wds", "beton")


def tar_name(name: str, split: str, index: int) -> str:
    """``NAME-SPLIT-000000.tar``."""
    return f"{name}-{split}-{index:06d}.tar"


def wids_name(name: str, split: str) -> str:
    """``NAME-SPLIT.wids.json``: the split's ``wids-shard-index-v1`` beside its tars."""
    return f"{name}-{split}{WIDS_SUFFIX}"


def beton_name(name: str, split: str) -> str:
    """``NAME-SPLIT.beton``."""
    return f"{name}-{split}.beton"


WDS_DIR = "wds"
WIDS_SUFFIX = ".wids.json"
WIDS_KIND = "wids-shard-index-v1"
BETON_DIR = "beton"
WORK_DIR = "_work"
INDEX_FILE = "index.parquet"
REJECTS_FILE = "rejects.jsonl"
SUMMARY_FILE = "summary.json"
CATALOG_ENTRY_FILE = "catalog-entry.json"
