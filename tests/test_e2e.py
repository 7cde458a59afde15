"""End to end, slow: `ray job submit` to a real head on 127.0.0.1, a multi-node
`ray.cluster_utils.Cluster`, and killing the driver or a worker mid-job then resuming.

Each test stops only the Ray processes it started (its own process group or Cluster).
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import ray
from helpers import (
    BIN,
    REPO,
    ffcv_labels,
    file_bytes,
    index_rows,
    kill_session,
    local_ray_head,
    tree_files,
    wds_samples,
)

from shardforge.build.config import IngestConfig
from shardforge.build.job import run_ingest
from shardforge.formats.image import ImageParams
from shardforge.sources.base import SourceOptions
from shardforge.sources.demo import DemoSpec, generate_demo_data

pytestmark = pytest.mark.slow
INGEST_ARGS = ["--name", "demo", "--max-res", "96", "--shard-size", "16"]


def _reference(src: str, tmp_path) -> str:
    out = str(tmp_path / "reference")
    cfg = IngestConfig(source=src, name="demo", out=out,
                       image=ImageParams(max_resolution=96),
                       source_options=SourceOptions(shard_size=16))
    with _private_ray():
        run_ingest(cfg)
    return out


class _private_ray:
    def __enter__(self):
        ray.init(address="local", num_cpus=2, include_dashboard=False,
                 _node_ip_address="127.0.0.1", log_to_driver=False)

    def __exit__(self, *exc):
        ray.shutdown()


def _check_outputs(src: str, out: str) -> None:
    files = tree_files(src)
    rows = index_rows(out)
    assert {r["origin"]: r["label"] for r in rows} == {k: v[1] for k, v in files.items()}
    for split in ("train", "val"):
        ordered = sorted((r for r in rows if r["split"] == split), key=lambda r: r["beton_index"])
        assert ffcv_labels(os.path.join(out, "beton", f"demo-{split}.beton")) == [
            r["label"] for r in ordered]
        assert [(k, c) for k, c, _ in wds_samples(out, "demo", split)] == [
            (r["key"], r["label"]) for r in ordered]


def test_ray_job_submit_to_local_head(demo_tree, tmp_path):
    with local_ray_head() as (address, env):
        out = str(tmp_path / "out")
        job = subprocess.run(
            [f"{BIN}/ray", "job", "submit", "--address", address, "--working-dir", REPO, "--",
             "python", "pipelines/ingest.py", demo_tree, "--out", out, *INGEST_ARGS],
            env=env, capture_output=True, text=True, timeout=300)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "succeeded" in job.stdout + job.stderr
        _check_outputs(demo_tree, out)
        assert file_bytes(out) == file_bytes(_reference(demo_tree, tmp_path))


def test_multi_node_cluster_same_bytes(demo_tree, tmp_path):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1"})
    try:
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        ray.init(address=cluster.address)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 3
        out = str(tmp_path / "out")
        cfg = IngestConfig(source=demo_tree, name="demo", out=out,
                           image=ImageParams(max_resolution=96),
                           source_options=SourceOptions(shard_size=4))
        summary = run_ingest(cfg)
        assert summary["nodes"] >= 2, summary["nodes"]
        _check_outputs(demo_tree, out)
    finally:
        ray.shutdown()
        cluster.shutdown()
    # same inputs, different partition of work over nodes: identical bytes
    ref = str(tmp_path / "ref")
    with _private_ray():
        run_ingest(IngestConfig(source=demo_tree, name="demo", out=ref,
                                image=ImageParams(max_resolution=96),
                                source_options=SourceOptions(shard_size=4)))
    assert file_bytes(out) == file_bytes(ref)


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("big") / "src"
    generate_demo_data(root, DemoSpec(num_classes=10, train_per_class=30, val_per_class=6,
                                      min_side=256, max_side=512))
    return str(root)


def _driver(src: str, out: str, log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, os.path.join(REPO, "pipelines", "ingest.py"), src, "--out", out,
         "--name", "demo", "--max-res", "128", "--shard-size", "4"],
        start_new_session=True, stdout=log, stderr=subprocess.STDOUT,
        env=dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}"))


def _manifests(out: str) -> int:
    return len(glob.glob(os.path.join(out, "_work", "*.json")))


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_kill_driver_then_rerun_gives_identical_bytes(big_tree, tmp_path):
    ref = str(tmp_path / "ref")
    with open(tmp_path / "ref.log", "wb") as log:
        assert _driver(big_tree, ref, log).wait(timeout=300) == 0
    total = _manifests(ref)
    assert total == 90   # 300 train + 60 val images in shards of 4

    out = str(tmp_path / "out")
    with open(tmp_path / "victim.log", "wb") as log:
        victim = _driver(big_tree, out, log)
        _wait(lambda: _manifests(out) >= 10, 240, "10 shards")
        kill_session(victim, grace=0.0)
    done_before = _manifests(out)
    assert 10 <= done_before < total, done_before
    assert not os.path.exists(os.path.join(out, "summary.json"))
    with open(tmp_path / "rerun.log", "wb") as log:
        assert _driver(big_tree, out, log).wait(timeout=300) == 0
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    assert summary["shards_reused"] >= done_before - 2   # a shard may die mid-write
    assert file_bytes(out) == file_bytes(ref)


def test_kill_worker_mid_job_still_identical(big_tree, tmp_path):
    ref = str(tmp_path / "ref")
    with open(tmp_path / "ref.log", "wb") as log:
        assert _driver(big_tree, ref, log).wait(timeout=300) == 0
    out = str(tmp_path / "out")
    with open(tmp_path / "victim.log", "wb") as log:
        job = _driver(big_tree, out, log)
        try:
            _wait(lambda: _manifests(out) >= 5, 240, "5 shards")
            killed = False
            deadline = time.monotonic() + 60
            while not killed and time.monotonic() < deadline and job.poll() is None:
                killed = _kill_one_worker(job.pid)
                time.sleep(0.02)
            assert killed, "no build_shard worker found in the job's session"
            assert job.wait(timeout=300) == 0
        finally:
            kill_session(job, grace=2.0)
    assert file_bytes(out) == file_bytes(ref)


def _kill_one_worker(sid: int) -> bool:
    """SIGKILL one build_shard worker of the driver's session (Ray gives each worker its
    own process group, but they stay in the session the driver was started in)."""
    out = subprocess.run(["ps", "-eo", "pid=,sid=,args="], capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        pid, session, args = line.split(None, 2)
        if session == str(sid) and args.startswith("ray::build_shard"):
            os.kill(int(pid), signal.SIGKILL)
            return True
    return False
