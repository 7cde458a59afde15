"""Looking things up in the catalog imports no torch, torchvision, timm or ray.

``shardforge catalog cards`` and ``shardforge build NAME --dry-run`` need every pipeline's
parameter schema and the digests of the files its cards name, not the code that runs it;
importing torch would add seconds to each. The test process has torch loaded already, so
each check runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("torch", "torchvision", "timm", "ray")

# argv: ADAIN_WEIGHTS_DIR OBSERVER_WEIGHTS_FILE HEAVY_MODULE... Prints one line per step,
# REPORT and a JSON list:
# [step, exit code or input names, heavy modules imported so far].
SCRIPT = r"""
import json
import sys

from shardforge.catalog.pipelines import get_pipeline
from shardforge.cli import main

weights_dir, weights_file, *HEAVY = sys.argv[1:]


def report(step, result):
    heavy = [m for m in HEAVY if m in sys.modules]
    print("REPORT", json.dumps([step, result, heavy]), flush=True)


def cli(*args):
    try:
        rc = main(list(args))
    except SystemExit as exc:
        rc = exc.code
    report(" ".join(args), rc)


def inputs(pipeline, **params):
    p = get_pipeline(pipeline)
    full = p.with_defaults(params)
    if p.check is not None:
        p.check(full)
    report(f"{pipeline} inputs", sorted(p.inputs(full)))


cli("catalog", "cards")
cli("build", "demo-cuda", "--dry-run")
cli("build", "demo-plus", "--dry-run")
cli("build", "demo-stylized", "--dry-run")
cli("build", "demo-rded-ipc10", "--dry-run")   # exit 2 when its observer is not trained yet
inputs("stylize", method="adain", styles="builtin:demo", weights=weights_dir)
inputs("distill", ipc=1, observer="resnet18", observer_weights=weights_file,
       observer_classes="sorted")
inputs("reinforce", teacher=f"resnet18={weights_file}")
"""


def test_lookups_import_no_torch(tmp_path):
    weights = tmp_path / "adain"
    weights.mkdir()
    for name in ("vgg_normalised.pth", "decoder.pth"):
        (weights / name).write_bytes(name.encode())   # only hashed, never loaded
    observer = tmp_path / "resnet18.pth"
    observer.write_bytes(b"weights")
    env = dict(os.environ, SHARDFORGE_HOME=str(tmp_path / "home"),
               SHARDFORGE_DEMO_CUDA_KEY="test-key-0123456789abcdef")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(weights), str(observer), *HEAVY],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    reports = [json.loads(line.removeprefix("REPORT ")) for line in proc.stdout.splitlines()
               if line.startswith("REPORT ")]
    steps = {step: (result, heavy) for step, result, heavy in reports}
    assert list(steps) == ["catalog cards", "build demo-cuda --dry-run",
                           "build demo-plus --dry-run", "build demo-stylized --dry-run",
                           "build demo-rded-ipc10 --dry-run", "stylize inputs",
                           "distill inputs", "reinforce inputs"], proc.stderr
    for step in ("catalog cards", "build demo-cuda --dry-run", "build demo-plus --dry-run",
                 "build demo-stylized --dry-run"):
        assert steps[step][0] == 0, (step, proc.stderr)
    assert steps["stylize inputs"][0] == ["weights"]
    assert steps["distill inputs"][0] == ["observer"]
    assert steps["reinforce inputs"][0] == ["teacher"]
    for step, (_, heavy) in steps.items():
        assert heavy == [], f"{step} imported {heavy}"
