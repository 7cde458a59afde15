"""Wrong arguments give one clear line and exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shardforge.cli import main


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shardforge.cli", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, needle", [
    (["ingest", "/nonexistent/src", "--name", "x", "--out", "/tmp/o"], "does not exist"),
    (["ingest", ".", "--name", "x", "--out", "/tmp/o", "--jpeg-quality", "101"], "101 is not an integer in 1..100"),
    (["ingest", ".", "--name", "x", "--out", "/tmp/o", "--jpeg-quality", "high"], "not an integer"),
    (["ingest", ".", "--name", "x", "--out", "/tmp/o", "--write-mode", "png"], "invalid choice"),
    (["ingest", ".", "--name", "x", "--out", "/tmp/o", "--source-kind", "zip"], "invalid choice"),
    (["ingest", ".", "--name", "bad.name", "--out", "/tmp/o"], "dataset name"),
    (["ingest", ".", "--name", "x", "--out", "/tmp/o", "--page-size", "1000"], "page size"),
    (["ingest", ".", "--out", "/tmp/o"], "--name"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_exit_2_with_one_line(args, needle):
    proc = _run(*args)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0]


def test_demo_data_command(tmp_path, capsys):
    assert main(["demo-data", str(tmp_path / "d"), "--classes", "10", "--train-per-class", "2",
                 "--val-per-class", "1"]) == 0
    assert "10 classes" in capsys.readouterr().out
    assert len(list((tmp_path / "d" / "train").iterdir())) == 10
