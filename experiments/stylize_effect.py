"""The Stylized-ImageNet effect at demo scale: same model, clean vs stylized train split.

1. build the catalog cards ``demo`` and ``demo-stylized`` (texture-randomised train split;
   the weights-free Fourier method with procedural styles, see the card);
2. train the CPU recipe ``jobs/configs/demo_cpu.yaml`` on each (local backend);
3. generate the demo cue-conflict set (:mod:`shardforge.variants.stylize.cue_conflict`);
4. report, per model, the clean val accuracy (``shardforge eval``) and the shape bias on
   the cue-conflict set (``shardforge eval shape-bias``).

Everything is seeded; a rerun reuses the builds and finished runs (``--resume``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import TextIO

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # the checkout
CONFIG = os.path.join(REPO, "jobs", "configs", "demo_cpu.yaml")
DATASETS = ("demo", "demo-stylized")


def run_effect(root: str, per_pair: int = 4, config: str | None = None,
               overrides: Sequence[str] = (), tag: str = "", log: TextIO | None = None) -> dict:
    """Build, train, evaluate; return ``{dataset: {"top1", "top1_tta", "shape_bias",
    "shape_hits", "texture_hits", "other", "stimuli"}}`` and write it to
    ``ROOT/stylize_effect[-TAG].json``. ``overrides``: ``SEC.KEY=VAL`` recipe overrides
    (``--set``) for both runs, whose names get ``-TAG``."""
    from shardforge import catalog
    from shardforge.cli.eval import evaluate_checkpoint
    from shardforge.sources.demo import DemoSpec
    from shardforge.train.experiment import train_recipe
    from shardforge.variants.stylize.cue_conflict import generate_cue_conflict
    from shardforge.variants.stylize.shape_bias import evaluate_shape_bias

    log = log if log is not None else sys.stderr
    config = os.path.abspath(config or CONFIG)
    for name in DATASETS:
        catalog.build(name, home=root, log=log)
    stimuli = os.path.join(root, "cue-conflict")
    cc = generate_cue_conflict(stimuli, DemoSpec(), per_pair=per_pair)
    print(f"cue-conflict: {cc['stimuli']} stimuli in {stimuli}", file=log)
    clean = catalog.get("demo", home=root).out
    results: dict[str, dict] = {}
    for name in DATASETS:
        out = catalog.get(name, home=root).out
        run = f"demo_cpu-{name}" + (f"-{tag}" if tag else "")
        run_dir = train_recipe(config, out, os.path.join(root, "runs"), run,
                               overrides=tuple(overrides), log=log).run_dir
        acc = evaluate_checkpoint(run_dir, clean, "val", workers=1, device="cpu")
        # the demo models see 64 or 32 px: the 224 px stimuli are read as their val is
        sb = evaluate_shape_bias(run_dir, stimuli, device="cpu", preprocess="checkpoint-val")
        results[name] = {"top1": acc["top1"], "top1_tta": acc["top1_tta"],
                         "val_samples": acc["samples"], "shape_bias": sb["shape_bias"],
                         "shape_hits": sb["shape_hits"], "texture_hits": sb["texture_hits"],
                         "other": sb["other"], "stimuli": sb["stimuli"],
                         "dataset": catalog.get(name, home=root).ref}
    with open(os.path.join(root, f"stylize_effect{'-' + tag if tag else ''}.json"), "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    return results


def format_table(results: dict) -> str:
    """A markdown table of :func:`run_effect`'s results."""
    lines = ["| trained on | clean val top-1 | top-1 (flip TTA) | shape bias | shape hits | "
             "texture hits | other |", "|---|---|---|---|---|---|---|"]
    for r in results.values():
        bias = "n/a" if r["shape_bias"] is None else f"{r['shape_bias']:.3f}"
        lines.append(f"| {r['dataset']} | {r['top1']:.3f} | {r['top1_tta']:.3f} | {bias} | "
                     f"{r['shape_hits']} | {r['texture_hits']} | {r['other']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python experiments/stylize_effect.py --root DIR [--per-pair N]``."""
    import argparse

    p = argparse.ArgumentParser(description="shape bias and clean accuracy: demo vs "
                                            "demo-stylized (same recipe)")
    p.add_argument("--root", required=True, help="catalog home, data and runs directory")
    p.add_argument("--per-pair", type=int, default=4,
                   help="cue-conflict images per (shape, texture) pair (default 4: 360)")
    p.add_argument("--config", default=None, help="training recipe (default demo_cpu.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SEC.KEY=VAL", help="recipe override for both runs (repeatable)")
    p.add_argument("--tag", default="", help="suffix of the run names and the result file")
    plots = _plots()
    plots.plot_argument(p, "stylize")
    args = p.parse_args(argv)
    print(format_table(run_effect(args.root, args.per_pair, args.config, args.overrides,
                                  args.tag)))
    # every setting measured under this root (one stylize_effect[-TAG].json per --tag)
    plots.try_plot(plots.plot_stylize, plots.load_results(args.root, "stylize_effect"),
                   args.plot)
    return 0


def _plots():
    """``experiments.plots`` (matplotlib is imported only when a figure is drawn)."""
    if REPO not in sys.path:
        sys.path.insert(0, REPO)   # run as `python experiments/NAME.py`
    from experiments import plots

    return plots


if __name__ == "__main__":
    sys.exit(main())
