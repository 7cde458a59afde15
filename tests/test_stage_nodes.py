"""shardforge stage on several nodes: a ``ray.cluster_utils.Cluster`` (three raylets on
this machine, loopback, 1 CPU each) whose nodes all stage into one directory, as nodes on a
shared mount would. Every alive node runs exactly one task, the copies are byte-identical,
a rerun copies nothing, and a node that is gone is named in the error.

Only this module's own Cluster is stopped (``cluster.shutdown``). Slow: starting the
raylets alone takes tens of seconds on 2 cores.
"""

from __future__ import annotations

import json
import os
import time

import pytest
import ray
from test_stage import _tree

from shardforge.catalog.stage import StageError, stage_dataset, staged_files
from shardforge.cli.main import main

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def cluster():
    """Head + 2 worker raylets, 1 CPU each, bound to 127.0.0.1; this driver connected."""
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        pytest.skip("another Ray runtime is connected in this process")
    c = Cluster(initialize_head=True,
                head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1"})
    try:
        for _ in range(2):
            c.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        c.wait_for_nodes()
        ray.init(address=c.address, log_to_driver=False)
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def _alive() -> set[str]:
    return {n["NodeID"] for n in ray.nodes() if n["Alive"]}


def test_every_node_stages_once_into_a_shared_directory(cluster, demo_dataset, tmp_path,
                                                         capsys):
    to = str(tmp_path / "staged")
    summary = json.load(open(os.path.join(demo_dataset, "summary.json")))
    wanted = {r["path"] for r in staged_files(summary)} | {"summary.json"}
    alive = _alive()
    assert len(alive) == 3

    assert main(["stage", demo_dataset, "--to", to, "--ray-address", cluster.address,
                 "--json"]) == 0
    out = capsys.readouterr()
    reports = json.loads(out.out)
    assert sorted(r["node"] for r in reports) == sorted(alive)     # each node exactly once
    for r in reports:
        assert r["error"] == ""
        assert set(r["copied"]) | set(r["kept"]) == wanted         # every file, once each
        assert not set(r["copied"]) & set(r["kept"])
        assert f"node {r['node'][:12]} (127.0.0.1): " in out.err    # one line per node
    # three nodes raced into one directory: each file was copied at least once, and what
    # is there is exactly the dataset, byte for byte, with no temporary left behind
    assert set().union(*(r["copied"] for r in reports)) == wanted
    original = _tree(demo_dataset)
    assert _tree(to) == {p: original[p] for p in wanted}

    again = stage_dataset(demo_dataset, to)                          # idempotent
    assert sorted(r.node for r in again) == sorted(alive)
    assert all(not r.copied and set(r.kept) == wanted for r in again)


def test_a_node_that_is_gone_is_named(cluster, demo_dataset, tmp_path):
    doomed = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    before = _alive()
    cluster.remove_node(doomed)
    deadline = time.monotonic() + 60
    while len(_alive()) == len(before) and time.monotonic() < deadline:
        time.sleep(0.5)
    (dead,) = before - _alive()
    survivors = sorted(_alive())

    to = str(tmp_path / "staged")
    with pytest.raises(StageError, match=f"failed on 1 of 4 node\\(s\\): node {dead[:12]} "
                                         r"\(127\.0\.0\.1\): FAILED") as caught:
        stage_dataset(demo_dataset, to, nodes=[*survivors, dead])
    by_node = {r.node: r for r in caught.value.reports}
    assert set(by_node) == {*survivors, dead}
    assert "died or left the cluster" in by_node[dead].error and not by_node[dead].copied
    assert all(by_node[n].ok for n in survivors)                      # the others finished
    assert os.path.isfile(os.path.join(to, "summary.json"))
