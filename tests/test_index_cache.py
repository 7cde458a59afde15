"""The node-local index cache (stream/index_cache.py): the same arrays as open_dataset,
mapped from files every loader of a node shares; rebuilt when the index changes, when a
file is damaged and after a reboot; an unwritable folder falls back to memory."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from shardforge.formats.decode import CenterCrop
from shardforge.layout import dataset as dataset_mod
from shardforge.layout.dataset import DatasetIndexError, open_dataset
from shardforge.stream import array_cache
from shardforge.stream.index_cache import open_indexed
from shardforge.stream.wds_loader import make_loader

COLUMNS = ("shard", "offset", "size", "label", "width", "height", "is_png", "sha256")


@pytest.fixture
def dataset(demo_dataset, tmp_path) -> str:
    """A private copy of the demo dataset (tests here rewrite its index)."""
    out = tmp_path / "ds"
    shutil.copytree(demo_dataset, out)
    return str(out)


def assert_same(cached, plain, read_only: bool = True) -> None:
    assert sorted(cached.splits) == sorted(plain.splits) == ["train", "val"]
    assert (cached.url, cached.name, cached.classes, cached.summary) == (
        plain.url, plain.name, plain.classes, plain.summary)
    for name, idx in plain.splits.items():
        got = cached.splits[name]
        assert got.split == name and got.shard_urls == idx.shard_urls and len(got) == len(idx)
        for col in COLUMNS:
            a, b = getattr(got, col), getattr(idx, col)
            assert type(a) is np.ndarray and a.dtype == b.dtype and np.array_equal(a, b), col
            assert not (read_only and a.flags.writeable), col
        assert got.key.tolist() == idx.key.tolist()
        assert got.key[3] == idx.key[3] and list(got.key[[5, 0]]) == list(idx.key[[5, 0]])


def cache_folders(cache) -> list[str]:
    return sorted(p for p in os.listdir(cache) if not p.startswith("."))


def test_same_arrays_as_open_dataset_then_mapped_without_reading_the_index(
        dataset, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    plain = open_dataset(dataset)
    assert_same(open_indexed(dataset, str(cache)), plain)         # built
    (folder,) = cache_folders(cache)
    files = sorted(os.listdir(cache / folder))
    assert "meta.json" in files and "train.sha256.npy" in files and "val.key_data.npy" in files

    def no_read(*_a, **_k):
        raise AssertionError("the index was read although its cache is complete")

    monkeypatch.setattr(dataset_mod, "_read_index", no_read)
    again = open_indexed(dataset, str(cache))                     # mapped
    assert_same(again, plain)
    offset = again.split("train").offset
    while offset.base is not None and not isinstance(offset, np.memmap):
        offset = offset.base
    assert isinstance(offset, np.memmap)                          # a view of the file
    assert cache_folders(cache) == [folder]
    # pickles as values (spawned workers, Ray): equal arrays in the copy
    assert_same(pickle.loads(pickle.dumps(again)), plain, read_only=False)


def test_a_rewritten_index_gets_a_new_cache(dataset, tmp_path):
    import pyarrow.parquet as pq

    cache = str(tmp_path / "cache")
    first = open_indexed(dataset, cache)
    index = os.path.join(dataset, "index.parquet")
    table = pq.read_table(index)
    labels = table["label"].to_pylist()
    labels[0] = (labels[0] + 1) % 10
    import pyarrow as pa
    pq.write_table(table.set_column(table.schema.get_field_index("label"), "label",
                                    pa.array(labels, pa.int64())), index)
    second = open_indexed(dataset, cache)
    assert len(cache_folders(cache)) == 2                         # the old one stays
    assert_same(second, open_dataset(dataset))
    changed = np.flatnonzero(second.split("train").label != first.split("train").label)
    changed_val = np.flatnonzero(second.split("val").label != first.split("val").label)
    assert len(changed) + len(changed_val) == 1


def test_a_damaged_cache_file_is_rebuilt_with_a_warning(dataset, tmp_path):
    cache = tmp_path / "cache"
    open_indexed(dataset, str(cache))
    (folder,) = cache_folders(cache)
    path = cache / folder / "train.label.npy"
    data = bytearray(path.read_bytes())
    data[-8:] = b"\x07" * 8                                       # the last block is sampled
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="train.label.npy differs"):
        again = open_indexed(dataset, str(cache))
    assert_same(again, open_dataset(dataset))


def test_a_cache_written_before_a_reboot_is_rebuilt(dataset, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    open_indexed(dataset, str(cache))
    (folder,) = cache_folders(cache)
    meta = (cache / folder / "meta.json").read_text()
    assert '"boot_id"' in meta and '"sha256"' not in meta         # not flushed, not hashed
    monkeypatch.setattr(array_cache, "_boot_id", lambda: "another-boot")
    with pytest.warns(UserWarning, match="before the last reboot"):
        again = open_indexed(dataset, str(cache))
    assert_same(again, open_dataset(dataset))
    assert "another-boot" in (cache / folder / "meta.json").read_text()


def test_an_unwritable_folder_falls_back_to_memory(dataset, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.warns(UserWarning, match="holds its own copy in memory"):
        ref = open_indexed(dataset, str(blocked / "cache"))
    assert_same(ref, open_dataset(dataset), read_only=False)     # open_dataset's own


def test_a_read_only_home_writes_nothing(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("SHARDFORGE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SHARDFORGE_HOME_READ_ONLY", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref = open_indexed(dataset)
    assert_same(ref, open_dataset(dataset), read_only=False)
    assert not (tmp_path / "home").exists()


def test_default_folder_is_in_the_home(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("SHARDFORGE_HOME", str(tmp_path / "home"))
    open_indexed(dataset)
    assert len(cache_folders(tmp_path / "home" / "cache" / "index")) == 1


def test_errors_of_the_dataset_are_raised_not_cached(dataset, tmp_path):
    os.remove(os.path.join(dataset, "index.parquet"))
    with pytest.raises(DatasetIndexError, match="no index at"):
        open_indexed(dataset, str(tmp_path / "cache"))
    assert not list((tmp_path / "cache").glob("*/meta.json"))


def test_processes_opening_at_once_build_once(dataset, tmp_path):
    cache = str(tmp_path / "cache")
    code = ("import sys, numpy as np; from shardforge.stream.index_cache import open_indexed;"
            "r = open_indexed(sys.argv[1], sys.argv[2]); t = r.split('train');"
            "print(int(t.offset.sum()), int(t.label.sum()), len(t.key))")
    procs = [subprocess.Popen([sys.executable, "-c", code, dataset, cache],
                              stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outs = {p.communicate(timeout=120)[0] for p in procs}
    assert all(p.returncode == 0 for p in procs)
    t = open_dataset(dataset).split("train")
    assert outs == {f"{int(t.offset.sum())} {int(t.label.sum())} {len(t.key)}\n"}
    (folder,) = cache_folders(cache)
    leftovers = [f for f in os.listdir(os.path.join(cache, folder)) if ".tmp-" in f]
    assert leftovers == []


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_loader_batches_equal_with_and_without_the_cache(dataset, tmp_path, context):
    def batches(index_cache):
        loader = make_loader(dataset, "train", 16, num_workers=2, with_keys=True,
                             transform=CenterCrop(32), index_cache=index_cache,
                             persistent_workers=False, multiprocessing_context=context)
        return list(loader)

    cached, plain = batches(str(tmp_path / "cache")), batches(False)
    assert len(cached) == len(plain) == 4                          # 60 samples, batch 16
    for (xa, ya, ka), (xb, yb, kb) in zip(cached, plain, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and ka == kb
    assert len(cache_folders(tmp_path / "cache")) == 1


def test_array_cache_refuses_verify_without_a_durable_build(tmp_path):
    def fill(open_writable):
        with open_writable() as arrays:
            arrays["a"][:] = 1

    with pytest.raises(ValueError, match="durable build"):
        array_cache.open_or_build(tmp_path, "d", {"a": ((4,), np.uint8)}, fill, verify=True,
                                  durable=False)
    built = array_cache.open_or_build(tmp_path, "d", lambda: {"a": ((4,), np.uint8)}, fill,
                                      durable=False)
    assert built["a"].tolist() == [1, 1, 1, 1]
    # specs given as a function are not asked for when the cache is complete
    again = array_cache.open_or_build(tmp_path, "d", lambda: pytest.fail("rebuilt"), fill)
    assert again["a"].tolist() == [1, 1, 1, 1]


def test_hostile_cache_files_are_rebuilt_never_executed(dataset, tmp_path):
    """A pickled object array (with a meta.json that describes it) and a FIFO in place of
    cache files: neither is loaded nor blocks; the cache is rebuilt with a warning."""
    import json

    cache = tmp_path / "cache"
    open_indexed(dataset, str(cache))
    (folder,) = cache_folders(cache)
    where = cache / folder
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = np.empty(60, dtype=object)
    evil[:] = [Payload()] * 60
    np.save(where / "train.label.npy", evil, allow_pickle=True)
    meta = json.loads((where / "meta.json").read_text())
    meta["arrays"]["train.label"].update(
        dtype=json.dumps("|O"), size=(where / "train.label.npy").stat().st_size,
        sampled_sha256=array_cache._sampled_sha256(where / "train.label.npy"))
    (where / "meta.json").write_text(json.dumps(meta))
    os.remove(where / "val.sha256.npy")
    os.mkfifo(where / "val.sha256.npy")
    with pytest.warns(UserWarning, match="rebuilding it"):
        again = open_indexed(dataset, str(cache))
    assert not marker.exists()
    assert_same(again, open_dataset(dataset))
