"""scripts/test.sh's trail: a pytest run that dies before its summary is named, with the
test it died in; one that finishes is not."""

from __future__ import annotations

import os
import subprocess
import sys

from helpers import REPO

DYING = """
import os

def test_passes():
    pass

def test_dies_without_a_summary():
    os._exit(1)

def test_never_runs():
    pass
"""


def _run(tmp_path, body: str) -> tuple[subprocess.CompletedProcess, str, str]:
    """Run ``body`` as a test file under the trail plugin; (run, trail, died.sh's report)."""
    (tmp_path / "test_case.py").write_text(body)
    trail = tmp_path / "trail"
    env = dict(os.environ, SHARDFORGE_TEST_TRAIL=str(trail),
               PYTHONPATH=os.path.join(REPO, "tests"))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "trail", "-p",
                          "no:cacheprovider", "--rootdir", str(tmp_path), "-c", os.devnull,
                          str(tmp_path / "test_case.py")],
                         env=env, capture_output=True, text=True, cwd=tmp_path)
    died = subprocess.run(["bash", os.path.join(REPO, "scripts", "died.sh"), str(trail),
                           str(run.returncode)], capture_output=True, text=True)
    return run, trail.read_text(), died.stdout


def test_a_run_that_dies_is_named_with_its_test(tmp_path):
    run, trail, report = _run(tmp_path, DYING)
    assert run.returncode == 1 and "passed" not in run.stdout      # no summary
    assert trail.splitlines()[-1].endswith("test_case.py::test_dies_without_a_summary")
    assert "== finished" not in trail and "test_never_runs" not in trail
    assert "exit status 1 before its summary" in report
    assert "test_case.py::test_dies_without_a_summary" in report and "Avail" in report


def test_a_finished_run_is_marked(tmp_path):
    run, trail, _ = _run(tmp_path, "def test_ok():\n    pass\n")
    assert run.returncode == 0
    assert trail.splitlines()[-1] == "== finished, exit status 0"
