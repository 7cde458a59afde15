"""The ImageNet+ effect at demo scale: the same student and epochs trained on ``demo`` with
hard labels vs on ``demo-plus`` (its reinforcement), clean val accuracy.

1. build the catalog cards ``demo`` and ``demo-plus`` (which trains its teacher, the
   ``demo_cpu`` recipe for 40 epochs, then stores 20 augmentations x top-5 per image);
2. train the student recipe (``demo_cpu`` at each of ``epochs``) on each dataset;
3. write the table (markdown) with the teacher's accuracy for reference.

Seeded throughout; a rerun reuses the builds and finished runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TextIO

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
CONFIG = os.path.join(REPO, "jobs", "configs", "demo_cpu.yaml")


def run_effect(root: str, epochs: tuple[int, ...] = (10, 20), log: TextIO | None = None) -> dict:
    """Build, train, evaluate; returns ``{"teacher": ..., "rows": [...]}`` and writes it to
    ``ROOT/reinforce_effect.json``."""
    from shardforge import catalog
    from shardforge.train.experiment import train_recipe
    from shardforge.train.metrics import read_metrics

    log = log if log is not None else sys.stderr
    cwd = os.getcwd()
    os.chdir(REPO)          # the demo-plus card names its teacher recipe relative to the repo
    try:
        for name in ("demo", "demo-plus"):
            catalog.build(name, home=root, log=log)
    finally:
        os.chdir(cwd)
    plus = catalog.get("demo-plus", home=root)
    teacher_run = plus.params["teachers"][0]["teacher"]
    teacher = read_metrics(teacher_run)[-1]
    rows = []
    for n in epochs:
        for data in ("demo", "demo-plus"):
            ref = catalog.get(data, home=root)
            r = train_recipe(CONFIG, ref.out, os.path.join(root, "runs"),
                             f"student-{n}ep-{data}", overrides=(f"training.epochs={n}",))
            rows.append({"dataset": ref.ref, "targets": "reinforced" if data == "demo-plus"
                         else "hard", "epochs": n, "top1": r.final["top1"],
                         "top5": r.final["top5"], "train_time_s": sum(
                             m["train_time_s"] for m in read_metrics(r.run_dir))})
            print(f"{data} {n} epochs: top1 {r.top1:.3f}", file=log)
    result = {"teacher": {"run": teacher_run, "epochs": teacher["epoch"],
                          "top1": teacher["top1"]},
              "reinforce": {k: plus.params[k] for k in ("num_augs", "top_k", "seed")},
              "rows": rows}
    with open(os.path.join(root, "reinforce_effect.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result


def format_table(result: dict) -> str:
    """The markdown table of :func:`run_effect`'s result."""
    t = result["teacher"]
    lines = [f"Teacher: `demo_cpu` recipe, {t['epochs']} epochs, clean val top-1 "
             f"{t['top1']:.3f}. Reinforcement: {result['reinforce']['num_augs']} stored "
             f"augmentations x top-{result['reinforce']['top_k']} per training image.", "",
             "| student epochs | trained on | targets | clean val top-1 | top-5 | train s |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['epochs']} | {r['dataset']} | {r['targets']} | {r['top1']:.3f} | "
                     f"{r['top5']:.3f} | {r['train_time_s']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``pipelines/reinforce_effect.py``: run the experiment, print the table."""
    p = argparse.ArgumentParser(prog="pipelines/reinforce_effect.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="data/reinforce-effect",
                   help="catalog home + runs of the experiment (kept apart from yours)")
    p.add_argument("--epochs", type=int, nargs="+", default=[10, 20])
    args = p.parse_args(argv)
    result = run_effect(os.path.abspath(args.root), tuple(args.epochs))
    print(format_table(result))
    return 0
