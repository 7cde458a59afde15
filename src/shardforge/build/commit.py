"""The driver's commit step: merge .beton parts, write the index, rejects and summary."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence

import numpy as np
import pyarrow.parquet as pq

from shardforge.build.config import ShardJob
from shardforge.build.shard import ShardResult, shard_paths
from shardforge.engine.faults import checkpoint
from shardforge.formats.arrow_rows import int64_array
from shardforge.formats.beton_merge import merge_betons
from shardforge.layout.files import (
    BETON_DIR,
    INDEX_FILE,
    REJECTS_FILE,
    WDS_DIR,
    WIDS_KIND,
    beton_name,
    wids_name,
)
from shardforge.sources import ShardSpec
from shardforge.storage import Location, replace_durably, resolve


def file_record(loc: Location, path: str, sha256: str | None = None) -> dict:
    """``{url, path, size, sha256}`` of a written file; ``path`` is relative to the output
    root; ``sha256``: its digest when the writer computed it (else the file is read)."""
    return {"url": loc.url, "path": path, "size": loc.size(),
            "sha256": sha256 or loc.sha256()}


TEMPORARY_NAME = re.compile(r"^\..+\.tmp-[0-9a-f]{12}$")   # Location.tmp_sibling's names


def remove_temporaries(out: str) -> int:
    """Delete the temporary files (``.NAME.tmp-XXXXXXXXXXXX``) a killed run left under
    ``out``; return how many. Call only while no writer of this output is running (the
    start of a job, and once every shard is in): readers never look at these names, a
    rerun writes fresh ones."""
    root = resolve(out)
    stale = [p for p in root.list_files() if TEMPORARY_NAME.match(p.rsplit("/", 1)[-1])]
    for path in stale:
        root.fs.delete_file(path)
    return len(stale)


def merge_split(job: ShardJob, split: str, specs: Sequence[ShardSpec]) -> dict:
    """Merge a split's parts (in shard order) into ``beton/NAME-SPLIT.beton``; return its record."""
    out = resolve(job.out)
    rel = f"{BETON_DIR}/{beton_name(job.name, split)}"
    dest = out.join(rel)
    dest.parent().makedirs()
    parts = [shard_paths(job, s)["part"] for s in specs]
    if dest.is_local:
        tmp = dest.tmp_sibling().path
        merged = merge_betons([p.path for p in parts], tmp, job.page_size)
        checkpoint("merge")
        replace_durably(tmp, dest.path)
    else:
        with tempfile.TemporaryDirectory() as d:
            local_parts = []
            for i, part in enumerate(parts):
                local = os.path.join(d, f"{i:06d}.beton")
                with part.fs.open_input_stream(part.path) as src, open(local, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 22)
                local_parts.append(local)
            path = os.path.join(d, "merged.beton")
            merged = merge_betons(local_parts, path, job.page_size)
            dest.upload_file_atomic(path)
    return file_record(dest, rel, merged.sha256)


def write_index(job: ShardJob, specs: Sequence[ShardSpec]) -> dict:
    """Write the shards' index rows, in shard order, to ``index.parquet`` with each row's
    position in its split's .beton (``beton_index``); return the file's record.

    Streams: one row group per shard, so the driver holds one shard's rows at a time
    (concatenating them first cost ~720 B per sample of driver memory at 100k samples,
    ~0.9 GB at ImageNet's 1.28M; bench/scale_ingest.py).
    """
    position: dict[str, int] = {}
    dest = resolve(job.out).join(INDEX_FILE)
    with tempfile.TemporaryDirectory() as d:
        # Local output: written next to its place and renamed (durably); else uploaded.
        local = dest.tmp_sibling().path if dest.is_local else os.path.join(d, INDEX_FILE)
        writer = None
        try:
            for spec in specs:
                loc = shard_paths(job, spec)["index"]
                with loc.fs.open_input_file(loc.path) as f:
                    table = pq.ParquetFile(f).read()   # pq.read_table imports pandas: 0.3 s
                start = position.get(spec.split, 0)
                position[spec.split] = start + table.num_rows
                table = table.append_column(
                    "beton_index", int64_array(np.arange(start, start + table.num_rows)))
                if writer is None:
                    writer = pq.ParquetWriter(local, table.schema)
                writer.write_table(table)
            if writer is None:
                raise ValueError(f"{job.name}: no shard to index")
            writer.close()
            if dest.is_local:
                replace_durably(local, dest.path)
            else:
                dest.upload_file_atomic(local)
        finally:
            if writer is not None:
                writer.close()
            if dest.is_local and os.path.exists(local):
                os.unlink(local)
    return file_record(dest, INDEX_FILE)


def write_wids_index(job: ShardJob, split: str, tars: Sequence[dict]) -> dict:
    """Write ``wds/NAME-SPLIT.wids.json`` (a ``wids-shard-index-v1``: each tar's name,
    relative to the JSON, with its sample count and size, in shard order), so that
    ``wids.ShardListDataset`` and ``widsindex`` read the split; return its record.
    ``tars``: the split's tar records (``path``, ``samples``, ``size``), in shard order."""
    rel = f"{WDS_DIR}/{wids_name(job.name, split)}"
    doc = {"__kind__": WIDS_KIND, "wids_version": 1, "name": f"{job.name}-{split}",
           "shardlist": [{"url": t["path"].rsplit("/", 1)[-1], "nsamples": t["samples"],
                          "filesize": t["size"]} for t in tars]}
    dest = resolve(job.out).join(rel)
    dest.write_bytes_atomic((json.dumps(doc, indent=1) + "\n").encode())
    return file_record(dest, rel)


def write_rejects(out: str, rejects: list[dict]) -> dict:
    """One JSON line per reject: origin, reason, split."""
    dest = resolve(out).join(REJECTS_FILE)
    lines = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rejects)
    dest.write_bytes_atomic(lines.encode("utf-8"))
    return {"url": dest.url, "count": len(rejects)}


class SplitTotals:
    """Per split: samples, shards, rejects and per-class counts, summed as shard results
    arrive, so the driver need not keep every result's class counts (a 1,000-sample shard
    of ImageNet holds ~630 classes: ~40 KB a shard, ~50 MB at 1.28M samples)."""

    def __init__(self) -> None:
        self._splits: dict[str, dict] = {}

    def add(self, r: ShardResult) -> None:
        """Count one shard's result (call once per shard)."""
        s = self._splits.setdefault(r.split, {"samples": 0, "shards": 0, "rejects": 0,
                                              "per_class": {}})
        s["samples"] += r.num_samples
        s["shards"] += 1
        s["rejects"] += len(r.rejects)
        per_class = s["per_class"]
        for label, n in r.class_counts.items():
            per_class[int(label)] = per_class.get(int(label), 0) + n

    def stats(self) -> dict[str, dict]:
        """``{split: {samples, shards, rejects, per_class: {"label": count}}}``, splits and
        labels in order (what ``summary.json`` records)."""
        return {split: {**s, "per_class": {str(k): v for k, v in sorted(s["per_class"].items())}}
                for split, s in sorted(self._splits.items())}

