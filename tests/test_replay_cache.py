"""The replay loader's memory-mapped aligned cache: exactness, reuse, rebuilds, pickling,
and identical batches with and without (fork / spawn) loader workers."""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from shardforge.augment import (
    AugPolicy,
    image_rng,
    param_dtype,
    params_from_columns,
    params_to_columns,
    sample_params,
)
from shardforge.layout.dataset import open_dataset
from shardforge.stream.replay import ReinforcedSplit, ReplayStream, load_reinforced_split
from shardforge.stream.wds_loader import WdsLoader
from shardforge.variants.reinforce.transform import output_schema

POLICY = AugPolicy(size=32)
A, K, C = 4, 3, 10


def _synthetic(out: str, dataset: str, seed: int = 0, drop: int = 0) -> dict:
    """A reinforcement of ``dataset``'s train split written like pipelines/reinforce.py
    does (one parquet per parent tar, rows in a shuffled order), with random teacher
    top-K; ``drop`` leaves out that many rows of the last shard. Returns the summary's
    ``reinforce`` section."""
    index = open_dataset(dataset).split("train")
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(out, "reinforce"), exist_ok=True)
    files = []
    for s in range(len(index.shard_urls)):
        rows = np.flatnonzero(index.shard == s)
        keys, augs, recs = [], [], []
        for p in rows.tolist():
            recs.append(sample_params(POLICY, int(index.width[p]), int(index.height[p]),
                                      image_rng(seed, index.key[p]), A))
            keys += [index.key[p]] * A
            augs += list(range(A))
        order = rng.permutation(len(keys))               # rows need not be in order
        if s == len(index.shard_urls) - 1 and drop:
            order = order[:-drop]
        records = np.concatenate(recs)[order]
        idx = np.stack([rng.choice(C, K, replace=False) for _ in order]).astype(np.int16)
        prob = np.sort(rng.dirichlet(np.ones(C), len(order))[:, :K], axis=1)[:, ::-1]
        cols = {"key": pa.array([keys[i] for i in order], pa.string()),
                "label": pa.array(np.zeros(len(order), np.int32)),
                "aug": pa.array(np.array(augs, np.int32)[order])}
        cols.update({n: pa.array(v) for n, v in params_to_columns(records).items()})
        cols["topk_indices"] = pa.FixedSizeListArray.from_arrays(pa.array(idx.reshape(-1)), K)
        cols["topk_probs"] = pa.FixedSizeListArray.from_arrays(
            pa.array(prob.astype(np.float16).reshape(-1)), K)
        path = f"reinforce/syn-train-{s:06d}.parquet"
        pq.write_table(pa.table(cols, schema=output_schema(POLICY, K)), os.path.join(out, path))
        data = open(os.path.join(out, path), "rb").read()
        files.append({"path": path, "size": len(data),
                      "sha256": hashlib.sha256(data).hexdigest()})
    return {"split": "train", "num_augs": A, "top_k": K, "seed": seed,
            "policy": POLICY.to_dict(), "files": files}


def _reference(out: str, reinforce: dict, dataset: str) -> tuple[np.ndarray, ...]:
    """The previous in-memory construction: dense arrays filled from every stored row."""
    index = open_dataset(dataset).split("train")
    where = {k: p for p, k in enumerate(index.key.tolist())}
    params = np.zeros((len(index), A), param_dtype(POLICY))
    idx = np.zeros((len(index), A, K), np.int16)
    prob = np.zeros((len(index), A, K), np.float16)
    for rec in reinforce["files"]:
        t = pq.read_table(os.path.join(out, rec["path"]))
        pos = np.array([where[k] for k in t["key"].to_pylist()])
        aug = t["aug"].to_numpy()
        cols = {c: t[c].to_numpy() for c in t.column_names if c.startswith("aug_")}
        params[pos, aug] = params_from_columns(cols, POLICY)
        idx[pos, aug] = np.array(t["topk_indices"].to_pylist(), np.int16)
        prob[pos, aug] = np.array(t["topk_probs"].to_pylist(), np.float16)
    return params, idx, prob


def _files(cache: str) -> dict[str, tuple[int, int]]:
    """inode and mtime of each cache file: a rebuild changes both (new file, renamed)."""
    stats = {f: os.stat(os.path.join(cache, f)) for f in sorted(os.listdir(cache))
             if f.endswith((".npy", ".json"))}
    return {f: (st.st_ino, st.st_mtime_ns) for f, st in stats.items()}


@pytest.fixture(scope="module")
def synthetic(demo_dataset, tmp_path_factory) -> tuple[str, dict]:
    out = str(tmp_path_factory.mktemp("syn"))
    return out, _synthetic(out, demo_dataset)


def test_cached_arrays_equal_the_in_memory_construction(demo_dataset, synthetic, tmp_path):
    out, reinforce = synthetic
    stored = load_reinforced_split(out, reinforce, open_dataset(demo_dataset),
                                   cache_dir=str(tmp_path))
    assert all(isinstance(a, np.memmap) and not a.flags.writeable
               for a in (stored.params, stored.topk_indices, stored.topk_probs))
    params, idx, prob = _reference(out, reinforce, demo_dataset)
    assert stored.params.shape == (60, A) and stored.params.dtype == param_dtype(POLICY)
    assert stored.params.tobytes() == params.tobytes()
    assert stored.topk_indices.tobytes() == idx.tobytes()
    assert stored.topk_probs.tobytes() == prob.tobytes()
    assert os.path.dirname(stored.cache) == str(tmp_path)
    assert sorted(os.listdir(stored.cache)) == [   # no temporary or scratch file left
        "lock", "meta.json", "params.npy", "topk_indices.npy", "topk_probs.npy"]


def test_default_cache_is_under_the_catalog_home(demo_dataset, synthetic):
    from shardforge.catalog.home import default_home

    out, reinforce = synthetic
    stored = load_reinforced_split(out, reinforce, open_dataset(demo_dataset))
    assert stored.cache.startswith(str(default_home() / "cache" / "replay") + os.sep)


def test_second_load_reuses_the_cache_and_other_inputs_build_another(demo_dataset, synthetic,
                                                                     tmp_path):
    out, reinforce = synthetic
    parent = open_dataset(demo_dataset)
    first = load_reinforced_split(out, reinforce, parent, cache_dir=str(tmp_path))
    before = _files(first.cache)
    again = load_reinforced_split(out, reinforce, parent, cache_dir=str(tmp_path))
    assert again.cache == first.cache and _files(again.cache) == before   # not rebuilt
    other_out = str(tmp_path / "seed1")
    other_reinforce = _synthetic(other_out, demo_dataset, seed=1)
    other = load_reinforced_split(other_out, other_reinforce, parent, cache_dir=str(tmp_path))
    assert other.cache != first.cache
    assert other.topk_probs.tobytes() != first.topk_probs.tobytes()
    assert _files(first.cache) == before
    # a different file sha (same path) is another digest too
    changed = {**reinforce, "files": [{**reinforce["files"][0], "sha256": "0" * 64},
                                      *reinforce["files"][1:]]}
    with pytest.raises(ValueError, match="sha256 differs from the summary"):
        load_reinforced_split(out, changed, parent, cache_dir=str(tmp_path))
    assert _files(first.cache) == before
    assert sorted(os.listdir(tmp_path)) == sorted(
        [os.path.basename(first.cache), os.path.basename(other.cache),
         os.path.basename(_digest_folder(changed, parent)), "seed1"])
    assert os.listdir(tmp_path / _digest_folder(changed, parent)) == ["lock"]


def _digest_folder(reinforce: dict, parent) -> str:
    from shardforge.stream.replay import replay_digest

    return replay_digest(reinforce, parent.split("train").key)[:32]


@pytest.mark.parametrize("damage", ["truncate", "overwrite", "header", "meta", "delete"])
def test_damaged_cache_is_detected_and_rebuilt(demo_dataset, synthetic, tmp_path, damage):
    out, reinforce = synthetic
    parent = open_dataset(demo_dataset)
    stored = load_reinforced_split(out, reinforce, parent, cache_dir=str(tmp_path))
    want = stored.topk_probs.tobytes(), stored.params.tobytes()
    path = os.path.join(stored.cache, "topk_probs.npy")
    del stored
    size = os.path.getsize(path)
    if damage == "truncate":
        os.truncate(path, size - 7)
    elif damage == "overwrite":        # bytes in the data (the last block is sampled)
        with open(path, "r+b") as f:
            f.seek(size - 5)
            f.write(b"\xff" * 5)
    elif damage == "header":
        with open(path, "r+b") as f:
            f.write(b"garbage!")
    elif damage == "meta":
        with open(os.path.join(os.path.dirname(path), "meta.json"), "w") as f:
            f.write("{not json")
    else:
        os.unlink(path)
    with pytest.warns(UserWarning, match="rebuilding"):
        again = load_reinforced_split(out, reinforce, parent, cache_dir=str(tmp_path))
    assert (again.topk_probs.tobytes(), again.params.tobytes()) == want


def test_full_verify_catches_what_sampling_misses(demo_dataset, synthetic, tmp_path,
                                                  monkeypatch):
    from shardforge.stream import array_cache as replay_cache

    monkeypatch.setattr(replay_cache, "_BLOCK", 16)     # 4 sampled blocks of 16 bytes
    monkeypatch.setattr(replay_cache, "_SAMPLES", 2)
    out, reinforce = synthetic
    parent = open_dataset(demo_dataset)
    stored = load_reinforced_split(out, reinforce, parent, cache_dir=str(tmp_path))
    want = stored.params.tobytes()
    path = os.path.join(stored.cache, "params.npy")
    at = stored.params.offset + 50     # a data byte no sampled block covers
    del stored
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0xFF]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the sampled check passes: no rebuild
        assert load_reinforced_split(out, reinforce, parent,
                                     cache_dir=str(tmp_path)).params.tobytes() != want
    with pytest.warns(UserWarning, match=r"differs from the one built \(sha256\)"):
        again = load_reinforced_split(out, reinforce, parent, cache_dir=str(tmp_path),
                                      verify=True)
    assert again.params.tobytes() == want


def test_missing_rows_and_foreign_keys_are_refused(demo_dataset, tmp_path):
    parent = open_dataset(demo_dataset)
    out = str(tmp_path / "short")
    reinforce = _synthetic(out, demo_dataset, drop=1)
    with pytest.raises(ValueError, match=r"has 3 of 4 stored augmentations; rerun "
                                         r"pipelines/reinforce.py"):
        load_reinforced_split(out, reinforce, parent, cache_dir=str(tmp_path / "c"))
    folder = tmp_path / "c" / _digest_folder(reinforce, parent)
    assert os.listdir(folder) == ["lock"]             # nothing half-built left behind
    other = open_dataset(demo_dataset)
    index = other.split("train")
    renamed = type(index)(**{**index.__dict__, "key": np.array(
        [k + "x" for k in index.key], dtype=object)})
    foreign = type(other)(url=other.url, name=other.name, splits={"train": renamed})
    good = _synthetic(str(tmp_path / "good"), demo_dataset)
    with pytest.raises(ValueError, match="is not in the parent's train split"):
        load_reinforced_split(str(tmp_path / "good"), good, foreign,
                              cache_dir=str(tmp_path / "c"))


@pytest.mark.parametrize("rows_per_block", [1, 7, 1000])
def test_completeness_check_in_blocks_names_the_sample(demo_dataset, tmp_path, monkeypatch,
                                                        rows_per_block):
    """The mask is checked a block of rows at a time (last block partial at 7 rows: 60 =
    8 x 7 + 4): a complete reinforcement builds, and the one sample missing an
    augmentation is named with its count whichever block it falls in."""
    from shardforge.stream import replay

    monkeypatch.setattr(replay, "_CHECK_BYTES", rows_per_block * A)
    parent = open_dataset(demo_dataset)
    good = _synthetic(str(tmp_path / "good"), demo_dataset)
    stored = load_reinforced_split(str(tmp_path / "good"), good, parent,
                                   cache_dir=str(tmp_path / "c"))
    params, _, _ = _reference(str(tmp_path / "good"), good, demo_dataset)
    assert stored.params.tobytes() == params.tobytes()
    out = str(tmp_path / "short")
    short = _synthetic(out, demo_dataset, drop=1)
    last = pq.read_table(os.path.join(out, short["files"][-1]["path"]))["key"].to_pylist()
    (missing,) = [k for k in set(last) if last.count(k) == A - 1]
    position = parent.split("train").key.tolist().index(missing)
    assert position >= rows_per_block or rows_per_block == 1000   # not in the first block
    with pytest.raises(ValueError, match=rf"^sample {missing!r} of the train split has "
                                         rf"{A - 1} of {A} stored augmentations"):
        load_reinforced_split(out, short, parent, cache_dir=str(tmp_path / "c"))


def test_pickle_stores_the_path_not_the_data(demo_dataset, synthetic, tmp_path):
    out, reinforce = synthetic
    stored = load_reinforced_split(out, reinforce, open_dataset(demo_dataset),
                                   cache_dir=str(tmp_path))
    blob = pickle.dumps(stored)
    assert len(blob) < 2000 < stored.params.nbytes + stored.topk_probs.nbytes
    copy = pickle.loads(blob)
    assert copy.cache == stored.cache and isinstance(copy.params, np.memmap)
    for name in ("params", "topk_indices", "topk_probs"):
        assert getattr(copy, name).tobytes() == getattr(stored, name).tobytes()
    plain = ReinforcedSplit(np.asarray(stored.params).copy(), stored.topk_indices[:],
                            stored.topk_probs[:])
    assert pickle.loads(pickle.dumps(plain)).params.tobytes() == stored.params.tobytes()


def _batches(stream: ReplayStream, workers: int, context: str | None = None) -> list:
    loader = WdsLoader(stream, num_workers=workers, multiprocessing_context=context)
    loader.set_epoch(1)
    return [tuple(t.clone() for t in batch) for batch in loader]


def test_replay_batches_do_not_depend_on_workers_or_start_method(demo_dataset, synthetic,
                                                                tmp_path):
    out, reinforce = synthetic
    parent = open_dataset(demo_dataset)
    stored = load_reinforced_split(out, reinforce, parent, cache_dir=str(tmp_path))
    stream = ReplayStream(parent, stored, POLICY, C, batch_size=8, seed=5, p_reinforce=0.75)
    want = _batches(stream, 0)
    assert sum(len(b[3]) for b in want) == 60
    for context in ("fork", "spawn"):
        got = _batches(stream, 2, context)
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            for x, y in zip(a, b, strict=True):
                assert torch.equal(x, y), context


def test_concurrent_loads_build_once(demo_dataset, synthetic, tmp_path, monkeypatch):
    """Ranks of one node racing on an empty cache: one builds, the others wait on the
    lock and open its files."""
    import threading

    from shardforge.stream import array_cache as replay_cache

    builds = []
    real_build = replay_cache._build

    def counted(*args, **kwargs):
        builds.append(threading.get_ident())
        return real_build(*args, **kwargs)

    monkeypatch.setattr(replay_cache, "_build", counted)
    out, reinforce = synthetic
    parent = open_dataset(demo_dataset)
    got: list = []

    def load() -> None:
        got.append(load_reinforced_split(out, reinforce, parent, cache_dir=str(tmp_path)))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 3 and len(builds) == 1
    assert len({s.params.tobytes() + s.topk_probs.tobytes() for s in got}) == 1
