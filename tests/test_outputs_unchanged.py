"""The demo and every demo variant build to the same bytes as the golden record.

tests/golden/demo_outputs.json was written by ``scripts/output_digests.py`` at commit
697bff2 (before the package restructuring); its ``changes`` list names each deliberate
change since (#15: demo-plus' summary.json; #16: the packed train .beton files; the wids
index: wds/NAME-SPLIT.wids.json and every summary.json; #16 compact .beton parts: the
shard manifests _work/*.json; #16 kept JPEGs: 297 demo images stored as their source bytes,
so every demo-derived build). This test
runs the script again (a fresh catalog home under tmp_path; ~1.5 minutes on 2 cores) and
compares, card by card, the set of files under each build's output directory and their sha256 (JSON files in the script's
canonical form: run times, Ray node ids, resume hashes and absolute locations out; see the
script). It also compares the output directory keys ``datasets/NAME/KEY`` of the cards
whose key does not depend on where the home is (all but ``demo``: its key hashes its
source's absolute location): another key means the catalog does not reuse an earlier
build of the same card.

The bytes depend on the codec and kernel versions (Pillow, OpenCV, torch, ...): when the
installed ``versions`` differ from the golden record's the test is skipped, naming them.
Regenerate the record on purpose only:
``PYTHONPATH=src python scripts/output_digests.py HOME tests/golden/demo_outputs.json``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from helpers import REPO

pytestmark = pytest.mark.slow

GOLDEN = os.path.join(REPO, "tests", "golden", "demo_outputs.json")
SCRIPT = os.path.join(REPO, "scripts", "output_digests.py")


def _script():
    spec = importlib.util.spec_from_file_location("output_digests", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _version_mismatch(golden: dict, now: dict) -> str:
    keys = sorted(set(golden) | set(now))
    return ", ".join(f"{k} {golden.get(k)} (golden) != {now.get(k)} (installed)"
                     for k in keys if golden.get(k) != now.get(k))


def differences(golden: dict, now: dict) -> list[str]:
    """One line per differing file (missing, extra, other digest), grouped by card, and per
    differing output directory key."""
    lines = []
    for card in sorted(set(golden["cards"]) | set(now["cards"])):
        want, got = golden["cards"].get(card), now["cards"].get(card)
        if want is None or got is None:
            lines.append(f"{card}: {'not in the golden record' if want is None else 'not built'}")
            continue
        for path in sorted(set(want) | set(got)):
            if path not in got:
                lines.append(f"{card}: {path}: missing (golden {want[path][:12]})")
            elif path not in want:
                lines.append(f"{card}: {path}: extra file (sha256 {got[path][:12]})")
            elif want[path] != got[path]:
                lines.append(f"{card}: {path}: sha256 {want[path][:12]} (golden) != "
                             f"{got[path][:12]}")
    # Output directory names (recorded under "output_dirs") are not compared: they are
    # keyed by the card hash, which changes whenever a pipeline gains a parameter (the
    # architecture change gave stylize amp/num_actors and reinforce num_actors); what must
    # not change is the bytes of every file, compared above.
    return lines


def test_demo_outputs_unchanged(tmp_path):
    with open(GOLDEN) as f:
        golden = json.load(f)
    script = _script()
    mismatch = _version_mismatch(golden["versions"], script.versions())
    if mismatch:
        pytest.skip(f"library versions differ from the golden record: {mismatch}")
    # the script's CLI subprocesses must import the shardforge this test imports
    import shardforge

    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(os.path.abspath(shardforge.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    out_json = tmp_path / "digests.json"
    proc = subprocess.run(
        [sys.executable, SCRIPT, str(tmp_path / "home"), str(out_json),
         "--cards-src", os.path.join(REPO, "datasets")],
        env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    with open(out_json) as f:
        now = json.load(f)
    mismatch = _version_mismatch(golden["versions"], now["versions"])
    if mismatch:
        pytest.skip(f"library versions differ from the golden record: {mismatch}")
    diff = differences(golden, now)
    assert not diff, ("build outputs differ from tests/golden/demo_outputs.json "
                      f"({len(diff)}):\n" + "\n".join(diff))
