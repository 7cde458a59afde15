"""The driver's per-sample memory (issue #16): packed shard items, plans that keep no
per-file objects, a .beton merge that holds one part's tables at a time. Memory is
measured as Python allocations (tracemalloc), never as RSS or time."""

from __future__ import annotations

import dataclasses
import gc
import json
import pickle
import random
import tracemalloc

import numpy as np
import pytest

from shardforge.build.config import ShardJob
from shardforge.formats import beton
from shardforge.formats.beton_merge import merge_betons
from shardforge.formats.image import ImageParams
from shardforge.sources import SourceOptions, plan_source, read_shard
from shardforge.sources.base import ShardSpec
from shardforge.sources.items import PackedItems

ROWS = [("train/n01440764/n01440764_10026.JPEG", 0), ("d/é ü/x y.png", 999),
        ("", -(2**63)), ("a\nb", 2**63 - 1)]


def test_packed_items_round_trip_exactly():
    items = PackedItems(ROWS)
    assert list(items) == ROWS
    assert len(items) == 4 and items[1] == ROWS[1] and items[-1] == ROWS[-1]
    assert items == tuple(ROWS) and hash(items) == hash(tuple(ROWS))
    assert items == PackedItems(ROWS) and items != PackedItems(ROWS[:3])
    for protocol in (2, pickle.HIGHEST_PROTOCOL):   # Ray ships specs pickled (protocol 5)
        back = pickle.loads(pickle.dumps(items, protocol))
        assert isinstance(back, PackedItems) and list(back) == ROWS
    five = [("a.tar", 512, 30, "key-1", 3), ("b.tar", 0, 1, "k", 0)]
    assert list(PackedItems(five)) == five
    assert list(PackedItems([])) == [] and len(PackedItems([])) == 0
    assert list(PackedItems([("only",)])) == [("only",)]


@pytest.mark.parametrize("rows, problem", [
    ([("a\0b", 1)], "NUL"),
    ([("a", 1), ("b", "2")], "shape"),
    ([("a", 1), ("b", True)], "shape"),
    ([("a", 1), ["b", 2]], "shape"),
    ([("a", 1.5)], "shape"),
    ([("a", 2**63)], "int64"),
    ([()], "empty"),
])
def test_packed_items_refuse_what_they_cannot_hold(rows, problem):
    with pytest.raises(ValueError, match=problem):
        PackedItems(rows)


def _tree(root, classes: int, per_class: int) -> list[str]:
    rels = []
    for c in range(classes):
        (root / "train" / f"n{c:08d}").mkdir(parents=True)
        for i in range(per_class):
            rel = f"train/n{c:08d}/n{c:08d}_{i:05d}.JPEG"
            (root / rel).write_bytes(b"")
            rels.append(rel)
    return rels


def test_folder_plan_packs_the_shuffled_pairs(tmp_path):
    """The specs hold PackedItems whose tuples are exactly the (path, label) pairs
    shuffled and chunked as before packing, and hash as the tuple specs did."""
    rels = _tree(tmp_path, 3, 50)
    (tmp_path / "val" / "n00000001").mkdir(parents=True)
    (tmp_path / "val" / "n00000001" / "v.JPEG").write_bytes(b"")
    options = SourceOptions(shard_size=16, seed=7)
    plan = plan_source(str(tmp_path), options)
    pairs = [(rel, int(rel.split("/")[1][1:])) for rel in sorted(rels)]
    random.Random("7:train").shuffle(pairs)
    train = [s for s in plan.shards if s.split == "train"]
    assert [s.items for s in train] == [tuple(pairs[i:i + 16]) for i in range(0, 150, 16)]
    assert all(isinstance(s.items, PackedItems) for s in plan.shards)
    (val,) = [s for s in plan.shards if s.split == "val"]
    assert list(val.items) == [("val/n00000001/v.JPEG", 1)]
    job = ShardJob(str(tmp_path / "out"), "d", ImageParams(), options, beton.DEFAULT_PAGE_SIZE)
    for spec in plan.shards:
        as_tuples = dataclasses.replace(spec, items=tuple(spec.items))
        assert job.spec_hash(spec) == job.spec_hash(as_tuples)
        assert (json.dumps(spec.plain(), sort_keys=True)
                == json.dumps(dataclasses.asdict(as_tuples), sort_keys=True))
    reads = [(r.origin, r.label) for r in read_shard(train[0], options)]
    assert reads == list(train[0].items)


def test_folder_plan_keeps_no_per_file_objects(tmp_path):
    """What a plan of 4,000 files keeps (Python allocations, the plan alive) is a few
    objects per shard, not a tuple and strings per file: under 80 B a file (tuple items
    and the per-file stamps kept ~180 B a file at these path lengths)."""
    _tree(tmp_path, 40, 100)
    options = SourceOptions(shard_size=500)
    plan_source(str(tmp_path), options)         # imports, caches: not counted
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        plan = plan_source(str(tmp_path), options)
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert sum(len(s.items) for s in plan.shards) == 4000
    assert kept < 80 * 4000, f"the plan keeps {kept / 4000:.0f} B a file"


def _part(path: str, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    samples = [beton.BetonSample(bytes(rng.integers(0, 255, 12, dtype=np.uint8)), True, 3, 2,
                                 int(rng.integers(0, 1000))) for _ in range(n)]
    beton.write_part(path, samples, beton.MIN_PAGE_SIZE)      # 64 KiB part pages


def test_merge_holds_one_parts_tables_at_a_time(tmp_path):
    """Merging 100 parts of 500 samples: the peak of Python allocations is under 80 B a
    sample (the allocation table, 24 B, one part's tables and the page buffer); holding
    every part's tables and the merged ones took ~140 B. The merged file reads back."""
    parts = []
    for k in range(100):
        parts.append(str(tmp_path / f"p{k}.beton"))
        _part(parts[-1], 500, k)
    expected = [s for p in parts for s in beton.read_sample_bytes(p)]
    out = str(tmp_path / "merged.beton")
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        assert merge_betons(parts, out, beton.MIN_PAGE_SIZE).num_samples == 50_000
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 80 * 50_000, f"merge peak {peak / 50_000:.0f} B a sample"
    assert beton.read_sample_bytes(out) == expected
    with open(out, "rb") as f:      # the padding after each row's image field stays 0
        f.seek(beton.HEADER.itemsize + 2 * beton.FIELD_DESC.itemsize)
        rows = np.frombuffer(f.read(50_000 * 24), np.uint8).reshape(-1, 24)
    assert int(rows[:, 13:16].max()) == 0 and rows[:, 16:].any()


def test_spec_plain_keeps_tuple_items(tmp_path):
    """Specs of other sources (tuple items) hash and serialise as before."""
    spec = ShardSpec("parquet", "/x", "train", 0, ("a.parquet", 0, 10), "s")
    assert spec.plain()["items"] == ("a.parquet", 0, 10)
