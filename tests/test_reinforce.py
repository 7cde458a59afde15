"""Dataset reinforcement: storage aligned by key, determinism, resume, replay exactness."""

from __future__ import annotations

import io
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from helpers import tree_sha256

from shardforge.augment import AugPolicy, apply_params
from shardforge.catalog.variant import run_reinforcement
from shardforge.layout.dataset import open_dataset
from shardforge.models.archs import build_model
from shardforge.models.checkpoint import STATE_FORMAT, save_state
from shardforge.models.reference import parse_member
from shardforge.variants.reinforce.engine import ReinforceConfig
from shardforge.variants.reinforce.transform import decode_stored

POLICY = AugPolicy(size=32)


def _save_teacher(demo_dataset: str, directory: str, seed: int) -> str:
    torch.manual_seed(seed)
    spec = {"arch": "small_cnn", "num_classes": 10, "blurpool": False, "width": 8}
    model = build_model(**spec).eval()
    with torch.no_grad():   # give BatchNorm non-trivial statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
    classes = list(open_dataset(demo_dataset).classes)
    save_state(directory, {"format": STATE_FORMAT, "model": model.state_dict(),
                           "model_spec": spec, "classes": classes, "epochs_done": 1})
    return directory


@pytest.fixture(scope="module")
def teacher(demo_dataset, tmp_path_factory) -> str:
    """A randomly initialised small CNN saved as a jobs/train.py checkpoint."""
    return _save_teacher(demo_dataset, str(tmp_path_factory.mktemp("teacher")), 0)


@pytest.fixture(scope="module")
def parent(demo_dataset) -> str:
    """demo_dataset registered under a name only this module uses (other tests register
    other builds as ``demo``)."""
    import json

    from shardforge.catalog import register_build

    with open(os.path.join(demo_dataset, "summary.json")) as f:
        return register_build(None, "reinforce-parent", json.load(f)).ref


def _config(parent, teacher, out, **kw) -> ReinforceConfig:
    base = dict(parent=parent, name="demo-plus", out=None if out is None else str(out),
                teachers=(parse_member(teacher),),
                num_augs=4, top_k=3, policy=POLICY, batch_size=16, num_actors=2)
    base.update(kw)
    return ReinforceConfig(**base)


def _files(out: str) -> dict[str, bytes]:
    d = os.path.join(out, "reinforce")
    return {f: open(os.path.join(d, f), "rb").read() for f in sorted(os.listdir(d))}


@pytest.fixture(scope="module")
def reinforced(parent, teacher, ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("plus") / "out"
    summary = run_reinforcement(_config(parent, teacher, out), log=io.StringIO())
    return str(out), summary


def test_storage_is_aligned_with_the_parent_by_key(demo_dataset, reinforced):
    out, summary = reinforced
    parent = open_dataset(demo_dataset).split("train")
    tables = [pq.read_table(os.path.join(out, "reinforce", f)) for f in _files(out)]
    assert len(tables) == len(parent.shard_urls)         # one shard per parent tar
    rows = sum(t.num_rows for t in tables)
    assert rows == len(parent) * 4 == summary["reinforce"]["augmentations"]
    keys = [k for t in tables for k in t["key"].to_pylist()]
    assert sorted(set(keys)) == sorted(parent.key.tolist())
    for t in tables:
        probs = np.array(t["topk_probs"].to_pylist(), np.float32)
        assert probs.shape[1] == 3 and (np.diff(probs, axis=1) <= 0).all()  # sorted top-K
        assert (probs.sum(axis=1) <= 1.0 + 1e-2).all()
    assert summary["reinforce"]["bytes_per_augmentation"] > 0
    from shardforge import catalog

    build = catalog.get(summary["catalog"])
    assert build.parent.startswith("reinforce-parent@v") and build.pipeline == "reinforce"
    assert build.params["teachers"][0]["teacher_sha256"]


def test_replayed_views_give_the_stored_teacher_top_k(demo_dataset, teacher, reinforced):
    """Issue 6 proof (a): the teacher on a replayed view reproduces the stored top-K."""
    from shardforge.augment import params_from_columns
    from shardforge.layout.reader import RangeReader
    from shardforge.variants.reinforce.teacher import load_ensemble

    out, _ = reinforced
    parent = open_dataset(demo_dataset)
    index = parent.split("train")
    model = load_ensemble([parse_member(teacher)], parent.classes, "demo")
    torch.set_num_threads(1)
    table = pq.read_table(os.path.join(out, "reinforce", next(iter(_files(out)))))
    rng = np.random.default_rng(0)
    rows = rng.choice(table.num_rows, size=8, replace=False)
    cols = {c: table[c].to_numpy() for c in table.column_names if c.startswith("aug_")}
    records = params_from_columns(cols, POLICY)
    where = {k: p for p, k in enumerate(index.key.tolist())}
    reader = RangeReader(index.shard_urls)
    from shardforge.ops.normalize import normalize_images

    for r in rows.tolist():
        p = where[table["key"][r].as_py()]
        (blob,) = reader.read(index.shard[[p]], index.offset[[p]], index.size[[p]])
        view = apply_params(decode_stored(blob), records[r], POLICY)
        probs = model(normalize_images(view[None]))[0]
        top = torch.topk(probs, 3)
        stored_idx = table["topk_indices"][r].as_py()
        stored_p = np.array(table["topk_probs"][r].as_py(), np.float32)
        assert top.indices.tolist() == stored_idx
        np.testing.assert_allclose(top.values.numpy(), stored_p, rtol=2e-3, atol=1e-3)


def test_same_seed_same_bytes_any_actor_count_and_resume(parent, teacher, reinforced, tmp_path):
    out, summary = reinforced
    other = tmp_path / "one-actor"
    run_reinforcement(_config(parent, teacher, other, num_actors=1),
                  register=False, log=io.StringIO())
    assert _files(str(other)) == _files(out)
    again = run_reinforcement(_config(parent, teacher, other, num_actors=1),
                          register=False, log=io.StringIO())
    assert again["shards_reused"] == len(_files(out))
    seeded = tmp_path / "seed1"
    run_reinforcement(_config(parent, teacher, seeded, seed=1),
                  register=False, log=io.StringIO())
    assert _files(str(seeded)) != _files(out)


def test_default_out_is_keyed_so_reruns_never_change_an_earlier_version(
        demo_dataset, parent, teacher, tmp_path):
    """No ``out``: HOME/datasets/NAME/KEY. An unchanged rerun reuses every shard and the
    build; another seed or teacher writes elsewhere, and v1's files stay byte-identical
    (and verify against the catalog)."""
    from shardforge import catalog
    from shardforge.catalog.home import resolve_home
    from shardforge.catalog.verifier import verify_build

    def run(**kw) -> dict:
        return run_reinforcement(_config(parent, teacher, None, **{"name": "keyed-plus",
                                                                "num_augs": 2, **kw}),
                             log=io.StringIO())

    first = run()
    out1 = first["out"]
    assert os.path.dirname(out1) == str(resolve_home() / "datasets" / "keyed-plus")
    again = run()
    assert again["out"] == out1 and again["catalog"] == first["catalog"]
    assert again["shards_reused"] == len(_files(out1)) > 0
    v1 = tree_sha256(out1)
    other_teacher = _save_teacher(demo_dataset, str(tmp_path / "teacher2"), 1)
    seeded = run(seed=1)
    other = run(teachers=(parse_member(other_teacher),))
    assert len({out1, seeded["out"], other["out"]}) == 3
    assert _files(seeded["out"]) != _files(out1) != _files(other["out"])
    assert tree_sha256(out1) == v1
    assert len({first["catalog"], seeded["catalog"], other["catalog"]}) == 3
    report = verify_build(catalog.get(first["catalog"]))
    assert report.ok and report.checked > 0, report.problems


def test_an_out_holding_another_reinforcement_is_refused(parent, teacher, reinforced, capsys):
    """An explicit ``out`` with a finished build of other params: ValueError naming the
    registered build and the fix, before any file is written (API and CLI)."""
    from shardforge.cli.reinforce import main

    out, summary = reinforced
    before = tree_sha256(out)
    with pytest.raises(ValueError, match="another output location") as err:
        run_reinforcement(_config(parent, teacher, out, seed=1), log=io.StringIO())
    assert summary["catalog"] in str(err.value) and "seed" in str(err.value)
    assert main(["--source", parent, "--teacher", teacher, "--out", out, "--seed", "1",
                 "--num-augmentations", "4", "--top-k", "3", "--size", "32"]) == 2
    assert summary["catalog"] in capsys.readouterr().err
    assert tree_sha256(out) == before


def test_replay_loader_yields_views_and_densified_targets(demo_dataset, reinforced):
    from shardforge.stream.replay import ReplayStream, load_reinforced_split
    from shardforge.stream.wds_loader import WdsLoader

    out, summary = reinforced
    parent = open_dataset(demo_dataset)
    stored = load_reinforced_split(out, summary["reinforce"], parent)
    assert stored.params.shape == (60, 4)
    counts = []
    for rank in range(2):
        stream = ReplayStream(parent, stored, POLICY, 10, batch_size=8, rank=rank,
                              world_size=2, seed=3, p_reinforce=1.0)
        loader = WdsLoader(stream, num_workers=1)
        seen = 0
        for views, _labels, targets, ids in loader:
            assert views.dtype == torch.uint8 and views.shape[1:] == (3, 32, 32)
            torch.testing.assert_close(targets.sum(1), torch.ones(len(ids)), atol=2e-3,
                                       rtol=0)
            for t, p in zip(targets, ids.tolist(), strict=True):   # one of its stored rows
                k = stored.topk_indices[p]
                assert any(np.allclose(t.numpy()[k[j]], stored.topk_probs[p, j], atol=1e-3)
                           for j in range(4))
            seen += len(ids)
        counts.append(seen)
    assert counts == [30, 30]


def test_training_config_follows_a_reinforced_dataset(reinforced):
    from shardforge.catalog.lookup import resolve_dataset
    from shardforge.layout.info import load_dataset_info
    from shardforge.train.config import TrainConfig
    from shardforge.train.runner import for_dataset

    out, summary = reinforced
    info = load_dataset_info(resolve_dataset(summary["catalog"]))
    assert info.reinforce is not None and info.counts["train"] == 60
    cfg = for_dataset(TrainConfig(), info)
    assert cfg.data.loader == "wds" and cfg.targets.kind == "reinforced"
    with pytest.raises(ValueError, match="brings its own teacher targets"):
        for_dataset(TrainConfig.from_dict({"targets": {"kind": "teacher",
                                                       "teacher_checkpoint": "x"}}), info)


@pytest.mark.slow
def test_multi_node_with_a_lost_node_gives_the_same_bytes(demo_tree, teacher, tmp_path):
    """3-node ``ray.cluster_utils.Cluster``; a worker node is removed mid-job: the shards it
    held go to the surviving actors and the output equals a single-node run's."""
    import threading
    import time

    import ray
    from ray.cluster_utils import Cluster

    from shardforge.build.config import IngestConfig
    from shardforge.build.job import run_ingest
    from shardforge.formats.image import ImageParams
    from shardforge.sources.base import SourceOptions

    parent = str(tmp_path / "parent")               # 60 train images in 15 shards
    run_ingest(IngestConfig(source=demo_tree, name="p", out=parent,
                            image=ImageParams(max_resolution=96),
                            source_options=SourceOptions(shard_size=4)),
               log=io.StringIO())
    cfg = dict(parent=parent, teachers=(parse_member(teacher),), num_augs=8, top_k=3,
               policy=POLICY, batch_size=16)
    was_up = ray.is_initialized()
    if was_up:                       # this test needs its own cluster
        ray.shutdown()
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1"})
    try:
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        victim = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        ray.init(address=cluster.address)
        out = tmp_path / "multi"
        box: dict = {}
        job = threading.Thread(target=lambda: box.update(summary=run_reinforcement(
            ReinforceConfig(name="p-plus", out=str(out), num_actors=3, **cfg), register=False,
            log=io.StringIO())))
        job.start()
        work = out / "_work"
        deadline = time.monotonic() + 300
        while not (work.exists() and len(list(work.glob("*.json"))) >= 2):
            assert time.monotonic() < deadline and job.is_alive(), "no shard finished"
            time.sleep(0.2)
        cluster.remove_node(victim)              # mid-job: about 13 shards still to do
        job.join(timeout=600)
        assert not job.is_alive() and "summary" in box
        assert box["summary"]["nodes"] >= 2
    finally:
        ray.shutdown()
        cluster.shutdown()
    ref = tmp_path / "single"
    ray.init(address="local", num_cpus=2, include_dashboard=False,
             _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        run_reinforcement(ReinforceConfig(name="p-plus", out=str(ref), num_actors=1, **cfg),
                          register=False, log=io.StringIO())
    finally:
        ray.shutdown()
    assert _files(str(out)) == _files(str(ref))
    if was_up:
        ray.init(address="local", num_cpus=2, include_dashboard=False,
                 _node_ip_address="127.0.0.1", log_to_driver=False)


def test_ensemble_of_torchvision_and_timm_members_with_weight_files(tmp_path):
    """Members given as constructor + local weights file; output = mean softmax at T=1."""
    from shardforge.variants.reinforce.teacher import load_ensemble

    classes = [f"class{i}" for i in range(10)]
    torch.manual_seed(0)
    members = []
    for arch in ("resnet18", "timm:resnet10t"):
        model = build_model(arch, 10).eval()
        path = tmp_path / (arch.replace(":", "_") + ".pth")
        torch.save(model.state_dict(), path)
        members.append((model, parse_member(f"{arch}={path}")))
    ensemble = load_ensemble([ref for _, ref in members], classes, "test")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = sum(torch.softmax(m(x), 1) for m, _ in members) / 2
    torch.testing.assert_close(ensemble(x), want)
    with pytest.raises(ValueError, match="not a timm model"):
        build_model("timm:no_such_net", 10)


def test_jobs_train_on_a_reinforced_dataset(reinforced, tmp_path):
    """`--data NAME` of a reinforced dataset trains on replayed views + stored targets."""
    from shardforge.train.experiment import train_recipe

    _, summary = reinforced
    config = os.path.join(os.path.dirname(__file__), "..", "jobs", "configs", "demo_cpu.yaml")
    r = train_recipe(config, summary["catalog"], str(tmp_path), "plus",
                     overrides=("training.epochs=2", "scaling.num_workers=1",
                                "data.num_workers=1", "optim.lr_peak_epoch=1"))
    assert r.final["epoch"] == 2 and r.final["train_samples"] == 60
    assert r.final["val_samples"] == 20 and np.isfinite(r.final["train_loss"])


def test_train_header_names_the_loader_actually_used(reinforced, tmp_path, capsys):
    """A recipe that says loader ffcv trains a reinforced dataset through the replay loader;
    the header says so (issue #18)."""
    from shardforge.train.job import main

    _, summary = reinforced
    config = os.path.join(os.path.dirname(__file__), "..", "jobs", "configs", "demo_cpu.yaml")
    rc = main(["--config", config, "--data", summary["catalog"], "--backend", "local",
               "--storage", str(tmp_path), "--name", "hdr", "--set", "training.epochs=1",
               "--set", "scaling.num_workers=1", "--set", "data.num_workers=1",
               "--set", "optim.lr_peak_epoch=1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "loader wds (replaying stored augmentations)" in out and "loader ffcv" not in out
