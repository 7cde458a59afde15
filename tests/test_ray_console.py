"""What a shardforge command prints when it starts its own Ray: shardforge's progress
lines, none of Ray's INFO start-up lines (issue #18; docs/cluster.md "What Ray prints")."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from shardforge.engine.cluster import RAY_LOG_LEVEL_ENV, ray_log_level

# Ray's own lines that a private Ray or a connection used to print on every command
RAY_INFO_LINES = [r"INFO worker\.py:\d+ -- Started a local Ray instance",
                  r"INFO worker\.py:\d+ -- Connected to Ray cluster"]


def test_ingest_prints_its_progress_and_no_ray_info_lines(demo_tree, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != RAY_LOG_LEVEL_ENV}
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    out = str(tmp_path / "out")
    proc = subprocess.run([sys.executable, "-m", "shardforge.cli", "ingest", demo_tree,
                           "--name", "demo", "--out", out, "--max-res", "64",
                           "--shard-size", "20"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = proc.stdout + proc.stderr
    assert re.search(r"^ingest demo: 4/4 shards \| 80 images", console, re.M), console
    for pattern in RAY_INFO_LINES:
        assert not re.search(pattern, console), (pattern, console)
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["splits"]["train"]["samples"] == 60
    assert summary["splits"]["val"]["samples"] == 20


def test_ray_log_level_reads_the_variable(monkeypatch):
    monkeypatch.delenv(RAY_LOG_LEVEL_ENV, raising=False)
    assert ray_log_level() == "WARNING"
    monkeypatch.setenv(RAY_LOG_LEVEL_ENV, "info")
    assert ray_log_level() == "INFO"
    monkeypatch.setenv(RAY_LOG_LEVEL_ENV, "chatty")
    with pytest.raises(ValueError, match=f"{RAY_LOG_LEVEL_ENV}='CHATTY' is not a logging"):
        ray_log_level()
