"""Ingest on a local Ray: outputs read back by FFCV's Loader, webdataset and tar."""

from __future__ import annotations

import glob
import json
import os
import shutil

import pytest
from helpers import ffcv_labels, file_bytes, index_rows, tar_names, tree_files, wds_samples

from shardforge.build.config import IngestConfig, ShardJob
from shardforge.build.job import RejectsInStrictMode, run_ingest
from shardforge.build.shard import build_shard
from shardforge.catalog.ingest import ingest
from shardforge.formats.beton import read_sample_bytes
from shardforge.formats.image import ImageParams
from shardforge.sources import plan_source
from shardforge.sources.base import SourceOptions

pytestmark = pytest.mark.usefixtures("ray_local")


def _config(src: str, out: str, **kw) -> IngestConfig:
    options = SourceOptions(shard_size=kw.pop("shard_size", 16))
    return IngestConfig(source=src, name=kw.pop("name", "demo"), out=out, source_options=options,
                        image=kw.pop("image", ImageParams(max_resolution=96)), **kw)


@pytest.fixture(scope="module")
def built(demo_tree, demo_dataset):
    with open(os.path.join(demo_dataset, "summary.json")) as f:
        return demo_tree, demo_dataset, json.load(f)


def test_counts_keys_and_labels_match_source(built):
    src, out, summary = built
    files = tree_files(src)
    rows = index_rows(out)
    assert summary["samples"] == len(files) == len(rows) == 80
    assert summary["splits"]["train"]["samples"] == 60
    assert summary["splits"]["val"]["samples"] == 20
    assert summary["rejects"]["count"] == 0
    by_origin = {r["origin"]: r for r in rows}
    assert set(by_origin) == set(files)
    for rel, (_cls, label) in files.items():
        assert by_origin[rel]["label"] == label
    keys = [r["key"] for r in rows]
    assert len(set(keys)) == len(keys) and not any("." in k for k in keys)


def test_beton_read_by_ffcv_loader_in_index_order(built):
    _src, out, _summary = built
    rows = index_rows(out)
    for split in ("train", "val"):
        expected = [r["label"] for r in sorted((r for r in rows if r["split"] == split),
                                                key=lambda r: r["beton_index"])]
        assert ffcv_labels(os.path.join(out, "beton", f"demo-{split}.beton")) == expected


def test_wds_read_by_webdataset_and_tar(built):
    _src, out, summary = built
    rows = index_rows(out)
    for split in ("train", "val"):
        got = wds_samples(out, "demo", split)
        expected = [(r["key"], r["label"]) for r in sorted(
            (r for r in rows if r["split"] == split), key=lambda r: r["beton_index"])]
        assert [(k, c) for k, c, _ in got] == expected
        assert all(j["orig_width"] >= j["width"] for _k, _c, j in got)
    first = summary["formats"]["wds"]["train"][0]["url"]
    names = tar_names(first)
    assert names[0].endswith(".jpg") and names[1].endswith(".cls") and names[2].endswith(".json")
    assert len(names) == 3 * 16


def test_same_bytes_in_tar_and_beton_and_index_sha(built):
    import hashlib

    _src, out, _summary = built
    rows = sorted((r for r in index_rows(out) if r["split"] == "train"),
                  key=lambda r: r["beton_index"])
    stored = read_sample_bytes(os.path.join(out, "beton", "demo-train.beton"))
    for row, data in zip(rows, stored, strict=True):
        with open(os.path.join(out, "wds", row["shard"]), "rb") as f:
            f.seek(row["offset"])
            tar_data = f.read(row["size"])
        assert tar_data == data
        assert hashlib.sha256(data).hexdigest() == row["sha256"]
        assert max(row["width"], row["height"]) <= 96


def test_result_independent_of_scheduling(built, tmp_path):
    """Shards built one by one in this process, in reverse order, match the Ray build."""
    src, out, _summary = built
    config = _config(src, str(tmp_path / "serial"))
    job = ShardJob(config.out, config.name, config.image, config.source_options,
                   config.page_size)
    plan = plan_source(src, config.source_options)
    for spec in reversed(plan.shards):
        build_shard(spec, job)
    run_ingest(config)   # commits, reusing every shard
    assert file_bytes(config.out) == file_bytes(out)


def test_rerun_is_noop_and_damaged_shards_are_rebuilt(built, tmp_path):
    src, out, _summary = built
    copy = str(tmp_path / "copy")
    shutil.copytree(out, copy)
    reference = file_bytes(out)
    with open(os.path.join(copy, "summary.json")) as f:
        created = json.load(f)["created"]
    again = run_ingest(_config(src, copy))
    assert again["created"] == created            # verified and reused, not rebuilt
    assert not glob.glob(os.path.join(copy, "_work", "*.beton"))   # parts dropped after merge
    # damage: flip a byte in one tar, delete one manifest
    tar = os.path.join(copy, "wds", "demo-train-000001.tar")
    with open(tar, "r+b") as f:
        f.seek(700)
        b = f.read(1)
        f.seek(700)
        f.write(bytes([b[0] ^ 0xFF]))
    os.remove(os.path.join(copy, "_work", "val-000000.json"))
    rebuilt = run_ingest(_config(src, copy))
    assert rebuilt["created"] >= created
    assert file_bytes(copy) == reference


def test_rejects_listed_and_strict_fails(demo_tree, tmp_path):
    src = str(tmp_path / "src")
    shutil.copytree(demo_tree, src)
    good = sorted(os.listdir(os.path.join(src, "train", "circle")))[0]
    with open(os.path.join(src, "train", "circle", good), "rb") as f:
        data = f.read()
    bad = {"train/circle/truncated.JPEG": data[: len(data) // 2],
           "train/square/empty.JPEG": b"",
           "train/square/readme.txt": b"not an image"}
    for rel, payload in bad.items():
        with open(os.path.join(src, rel), "wb") as f:
            f.write(payload)
    out = str(tmp_path / "out")
    summary = run_ingest(_config(src, out))
    assert summary["samples"] == 80                      # no valid image dropped
    assert summary["rejects"]["count"] == 3
    with open(os.path.join(out, "rejects.jsonl")) as f:
        rejects = {r["origin"]: r["reason"] for r in map(json.loads, f)}
    assert set(rejects) == set(bad)
    assert "empty" in rejects["train/square/empty.JPEG"]
    assert "not an image" in rejects["train/square/readme.txt"]
    strict_out = str(tmp_path / "strict")
    with pytest.raises(RejectsInStrictMode, match="3 input"):
        run_ingest(_config(src, strict_out, strict=True))
    assert not os.path.exists(os.path.join(strict_out, "summary.json"))


def test_raw_and_proportion_modes_read_by_ffcv(demo_tree, tmp_path):
    import numpy as np

    from shardforge.formats.beton import read_part

    out = str(tmp_path / "out")
    image = ImageParams(max_resolution=64, write_mode="proportion", compress_probability=0.5)
    summary = run_ingest(_config(demo_tree, out, image=image))
    rows = index_rows(out)
    formats = {r["format"] for r in rows}
    assert formats == {"jpg", "png"}
    head = read_part(os.path.join(out, "beton", "demo-train.beton"))
    modes = head.meta["f0"]["mode"]
    assert set(np.unique(modes).tolist()) == {0, 1}
    assert len(ffcv_labels(os.path.join(out, "beton", "demo-train.beton"))) == 60
    assert summary["samples"] == 80


def test_other_parameters_never_rewrite_a_registered_build(built, tmp_path):
    """A finished ingest rebuilt into the same location with other parameters: refused,
    files untouched, while a catalog build points there; rebuilt once nothing does."""
    from helpers import tree_sha256

    from shardforge.catalog import get

    src, _out, _summary = built
    home, out = str(tmp_path / "home"), str(tmp_path / "out")
    first = ingest(_config(src, out, name="guarded"), home=home)
    before = tree_sha256(out)
    other = _config(src, out, name="guarded", image=ImageParams(max_resolution=64))
    with pytest.raises(ValueError, match="another output location") as err:
        ingest(other, home=home)
    assert first["catalog"] in str(err.value) and get("guarded", home).ref in str(err.value)
    assert tree_sha256(out) == before
    unregistered = str(tmp_path / "free")
    ingest(_config(src, unregistered, name="free"), home=home, register=False)
    rebuilt = ingest(_config(src, unregistered, name="free", image=ImageParams(max_resolution=64)),
                     home=home, register=False)
    assert rebuilt["samples"] == first["samples"]


def test_index_is_one_row_group_per_shard_with_the_shards_rows(built):
    """write_index streams: one row group per shard, in shard order, holding exactly that
    shard's rows (the kept _work/SPLIT-NNNNNN.parquet) plus each row's .beton position."""
    import glob

    import pyarrow as pa
    import pyarrow.parquet as pq

    _, out, summary = built
    index = pq.ParquetFile(os.path.join(out, "index.parquet"))
    parts = sorted(glob.glob(os.path.join(out, "_work", "*.parquet")))
    assert index.num_row_groups == len(parts) == sum(
        s["shards"] for s in summary["splits"].values())
    whole = index.read()
    assert whole.drop_columns(["beton_index"]).equals(
        pa.concat_tables([pq.ParquetFile(p).read() for p in parts]))
    for split in summary["splits"]:
        mine = whole.filter(pa.compute.equal(whole["split"], split))
        assert mine["beton_index"].to_pylist() == list(range(mine.num_rows))
