"""``open_dataset``'s split index (layout.dataset._splits): the same arrays as the
filter-and-``sort_by`` it replaced, on index tables in any row order (docs/scale.md)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from shardforge.layout.dataset import DatasetIndexError, SplitIndex, _splits
from shardforge.layout.keys import Keys

FIELDS = ("shard", "offset", "size", "label", "width", "height", "is_png", "key", "sha256")


def reference_splits(table: pa.Table, urls: dict[str, str]) -> dict[str, SplitIndex]:
    """The implementation before docs/scale.md: filter per split, sort_by the table."""
    out = {}
    for split in sorted(pc.unique(table["split"]).to_pylist()):
        t = table.filter(pc.equal(table["split"], split)).sort_by(
            [("shard", "ascending"), ("offset", "ascending")])
        names = sorted(pc.unique(t["shard"]).to_pylist())
        shard_ids = pc.index_in(t["shard"], value_set=pa.array(names))

        def col(c, dtype, t=t):
            return t[c].to_numpy(zero_copy_only=False).astype(dtype, copy=False)

        sha256 = col("sha256", "S64")
        sha256.flags.writeable = False     # a view of the Arrow buffer
        out[split] = SplitIndex(
            split=split, shard_urls=tuple(urls[n] for n in names),
            shard=shard_ids.to_numpy(zero_copy_only=False).astype(np.int32),
            offset=col("offset", np.int64), size=col("size", np.int64),
            label=col("label", np.int64), width=col("width", np.int32),
            height=col("height", np.int32),
            is_png=pc.equal(t["format"], "png").to_numpy(zero_copy_only=False).astype(bool),
            key=col("key", object), sha256=sha256)
    return out


def index_table(n: int, splits: list[str], shards: int, seed: int, ties: bool,
                chunks: int) -> tuple[pa.Table, dict[str, str]]:
    rng = np.random.default_rng(seed)
    split = rng.choice(splits, n)
    shard = [f"ds-{s}-{k:06d}.tar" for s, k in zip(split, rng.integers(0, shards, n),
                                                   strict=True)]
    offset = rng.integers(0, 40 if ties else 10**9, n) * 512
    table = pa.table({
        "key": [f"k{i:05d}" for i in range(n)], "label": rng.integers(0, 7, n),
        "split": list(split), "shard": shard, "offset": offset,
        "size": rng.integers(1, 5000, n),
        "format": list(rng.choice(["jpg", "png"], n)),
        "width": rng.integers(1, 300, n).astype(np.int32),
        "height": rng.integers(1, 300, n).astype(np.int32),
        "sha256": [f"{i:064x}" for i in rng.integers(0, 2**62, n)]})
    if chunks > 1:
        table = pa.concat_tables([table.slice(s, n // chunks + 1)
                                  for s in range(0, n, n // chunks + 1)])
    urls = {s: f"/data/wds/{s}" for s in set(shard)}
    return table, urls


def assert_same(got: dict[str, SplitIndex], want: dict[str, SplitIndex]) -> None:
    assert list(got) == list(want)
    for split, w in want.items():
        g = got[split]
        assert g.split == w.split and g.shard_urls == w.shard_urls
        for f in FIELDS:
            a, b = getattr(g, f), getattr(w, f)
            if f == "key":      # Arrow-backed (layout/keys.py); reads as the object array
                assert isinstance(a, Keys) and a.tolist() == b.tolist(), f"{split}.key"
                continue
            assert a.dtype == b.dtype and a.flags.writeable == b.flags.writeable, f
            np.testing.assert_array_equal(a, b, err_msg=f"{split}.{f}")


@pytest.mark.parametrize("splits,ties,chunks", [
    (["train"], False, 1), (["train"], True, 3), (["train", "val"], False, 1),
    (["train", "val", "test"], True, 4)])
def test_splits_match_filter_and_sort_by(splits, ties, chunks):
    for seed in range(3):
        table, urls = index_table(2000, splits, 9, seed, ties, chunks)
        assert_same(_splits(table, urls, "index.parquet"), reference_splits(table, urls))


def test_rows_already_in_order_keep_their_order():
    """Ingest writes each split's rows by (shard, offset): nothing is reordered, ties
    (equal shard and offset) included, exactly as the stable sort_by kept them."""
    table, urls = index_table(3000, ["train", "val"], 5, 0, True, 2)
    table = table.take(pc.sort_indices(table, [("split", "ascending"),
                                               ("shard", "ascending"),
                                               ("offset", "ascending")]))
    got = _splits(table, urls, "index.parquet")
    assert_same(got, reference_splits(table, urls))
    train = table.filter(pc.equal(table["split"], "train"))
    assert got["train"].key.tolist() == train["key"].to_pylist()


def test_index_read_in_runs_of_row_groups_is_the_whole_table(tmp_path, monkeypatch):
    """_read_index reads runs of row groups (one chunk per run): the same rows and columns
    as reading the file whole, whatever the run length."""
    import pyarrow.parquet as pq

    from shardforge.layout import dataset
    from shardforge.storage import resolve

    table, _ = index_table(997, ["train", "val"], 5, 1, False, 1)
    path = tmp_path / "index.parquet"
    pq.write_table(table, path, row_group_size=10)
    whole = pq.read_table(path, columns=list(dataset.INDEX_COLUMNS))
    for rows in (1, 25, 100, 10**6):
        monkeypatch.setattr(dataset, "READ_ROWS", rows)
        got = dataset._read_index(resolve(str(path)))
        assert got.equals(whole)
        runs = dataset._row_group_runs(pq.ParquetFile(path).metadata)
        assert [g for run in runs for g in run] == list(range(100))
        assert got["key"].num_chunks == len(runs) == -(-100 // -(-rows // 10))


@pytest.mark.parametrize("bad", ["abc", None, "é" * 10])
def test_a_sha256_that_is_not_64_hex_digits_is_refused_naming_the_row(bad):
    table, urls = index_table(50, ["train"], 3, 0, False, 2)
    sha = table["sha256"].to_pylist()
    sha[17] = bad
    table = table.set_column(table.schema.get_field_index("sha256"), "sha256",
                             pa.array(sha, pa.string()))
    with pytest.raises(DatasetIndexError, match=r"index.parquet: row \d+ of the sha256 column"):
        _splits(table, urls, "index.parquet")


def test_sha256_is_a_read_only_view_with_no_python_objects():
    table, urls = index_table(300, ["train", "val"], 4, 1, False, 3)
    for idx in _splits(table, urls, "index.parquet").values():
        assert idx.sha256.dtype == np.dtype("S64") and not idx.sha256.flags.writeable
        assert all(len(h) == 64 for h in idx.sha256.tolist())


def test_opening_a_dataset_imports_no_pandas(demo_dataset):
    """pyarrow's numpy conversions import pandas (0.2-0.7 s of a loader's start-up)."""
    code = ("import sys; from shardforge.layout.dataset import open_dataset; "
            f"d = open_dataset({demo_dataset!r}); "
            "print(sorted(d.splits), d.num_samples, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["['train',", "'val']", "80", "False"]
