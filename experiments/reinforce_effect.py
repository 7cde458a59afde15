"""The ImageNet+ effect at demo scale: the same student and epochs trained on ``demo`` with
hard labels vs on its reinforcements, clean val accuracy.

1. build the catalog card ``demo`` (in the experiment's own catalog home);
2. train the teacher: the ``demo_cpu`` recipe, 40 epochs;
3. reinforce demo's train split with it under two policies, 20 stored augmentations x
   top-5 per image at 32 px: ``rrc`` (RandomResizedCrop(scale 0.35-1) + flip: exactly the
   hard-label student's augmentation, so only the targets differ) and ``ra-re`` (the same
   + RandAugment(2, 9) + RandomErasing(0.25): ImageNet+'s recommended policy);
4. train the student (``demo_cpu`` at each of ``epochs``) on demo (hard labels) and on
   each reinforcement; report clean val top-1.

Seeded throughout; a rerun reuses the builds and finished runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TextIO

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # the checkout
CONFIG = os.path.join(REPO, "jobs", "configs", "demo_cpu.yaml")
POLICIES = {"rrc": {"randaugment_ops": 0, "erasing_p": 0.0}, "ra-re": {}}
NUM_AUGS, TOP_K, SIZE, CROP_MIN = 20, 5, 32, 0.35


def run_effect(root: str, epochs: tuple[int, ...] = (10, 20), seeds: tuple[int, ...] = (0,),
               log: TextIO | None = None) -> dict:
    """Build, reinforce, train, evaluate; returns ``{"teacher", "rows"}`` and writes it to
    ``ROOT/reinforce_effect.json``."""
    from shardforge import catalog
    from shardforge.augment import AugPolicy
    from shardforge.catalog.variant import run_reinforcement
    from shardforge.models.reference import parse_member
    from shardforge.train.experiment import train_recipe
    from shardforge.train.metrics import read_metrics
    from shardforge.variants.reinforce.engine import ReinforceConfig

    log = log if log is not None else sys.stderr
    runs = os.path.join(root, "runs")
    catalog.build("demo", home=root, log=log)
    demo = catalog.get("demo", home=root)
    teacher = train_recipe(CONFIG, demo.out, runs, "teacher-demo_cpu-40ep")
    data = {"hard": demo.out}
    for tag, changes in POLICIES.items():
        policy = AugPolicy(size=SIZE, rrc_scale=(CROP_MIN, 1.0), **changes)
        summary = run_reinforcement(ReinforceConfig(
            parent=demo.ref, name=f"demo-plus-{tag}",
            out=os.path.join(root, "datasets", f"demo-plus-{tag}"),
            teachers=(parse_member(teacher.run_dir),), num_augs=NUM_AUGS, top_k=TOP_K,
            policy=policy), catalog_home=root, log=log)
        data[tag] = summary["catalog"]
    rows = []
    for n, seed, (tag, ref) in ((n, s, d) for n in epochs for s in seeds for d in data.items()):
        suffix = "" if seed == 0 else f"-seed{seed}"
        r = train_recipe(CONFIG, ref if tag == "hard" else catalog.get(ref, home=root).out,
                         runs, f"student-{n}ep-{tag}{suffix}",
                         overrides=(f"training.epochs={n}", f"training.seed={seed}"))
        rows.append({"epochs": n, "seed": seed, "data": "demo" if tag == "hard" else ref,
                     "targets": "hard labels" if tag == "hard" else f"reinforced ({tag})",
                     "top1": r.final["top1"], "top5": r.final["top5"],
                     "train_s": sum(m["train_time_s"] for m in read_metrics(r.run_dir))})
        print(f"{tag} {n} epochs seed {seed}: top1 {r.top1:.3f}", file=log)
    result = {"teacher": {"epochs": teacher.final["epoch"], "top1": teacher.final["top1"]},
              "num_augs": NUM_AUGS, "top_k": TOP_K, "size": SIZE, "rows": rows}
    with open(os.path.join(root, "reinforce_effect.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result


def format_table(result: dict) -> str:
    """The markdown table of :func:`run_effect`'s result."""
    t = result["teacher"]
    lines = [f"Teacher: `demo_cpu` recipe, {t['epochs']} epochs, clean val top-1 "
             f"{t['top1']:.3f}. Reinforcement: {result['num_augs']} stored augmentations x "
             f"top-{result['top_k']} per training image, {result['size']} px views.", "",
             "| student epochs | targets | seeds | clean val top-1: mean (min-max) | top-5 mean |",
             "|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for r in result["rows"]:
        groups.setdefault((r["epochs"], r["targets"]), []).append(r)
    for (n, targets), rs in groups.items():
        top1 = [r["top1"] for r in rs]
        lines.append(f"| {n} | {targets} | {len(rs)} | {sum(top1) / len(top1):.3f} "
                     f"({min(top1):.3f}-{max(top1):.3f}) | "
                     f"{sum(r['top5'] for r in rs) / len(rs):.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``experiments/reinforce_effect.py``: run the experiment, print the table."""
    p = argparse.ArgumentParser(prog="experiments/reinforce_effect.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="data/reinforce-effect",
                   help="catalog home + runs of the experiment (kept apart from yours)")
    p.add_argument("--epochs", type=int, nargs="+", default=[10, 20])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="student training seeds (FFCV's crops are unseeded: runs vary)")
    plots = _plots()
    plots.plot_argument(p, "reinforce")
    args = p.parse_args(argv)
    result = run_effect(os.path.abspath(args.root), tuple(args.epochs), tuple(args.seeds))
    print(format_table(result))
    plots.try_plot(plots.plot_reinforce, result, args.plot)
    return 0


def _plots():
    """``experiments.plots`` (matplotlib is imported only when a figure is drawn)."""
    if REPO not in sys.path:
        sys.path.insert(0, REPO)   # run as `python experiments/NAME.py`
    from experiments import plots

    return plots


if __name__ == "__main__":
    sys.exit(main())
