"""The RDED-vs-random experiment on the demo data (docs/results/distill.md).

    python pipelines/distill_effect.py --work data/distill-effect

Builds the demo data, trains the observer (jobs/configs/demo_cpu.yaml), distils IPC 1 and
10 with RDED and with random real images, trains the same student with the same recipe
(jobs/configs/demo_rded.yaml) on each, and prints the clean val accuracies as a Markdown
table (also saved as WORK/distill_effect[-fF][-TAG].json). Rerunnable: finished steps are reused.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")   # keep Ray on 127.0.0.1


def main(argv: list[str] | None = None) -> int:
    from experiments.distill_effect import markdown_table, run_effect

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="data/distill-effect", help="working directory")
    p.add_argument("--ipc", type=int, action="append", help="IPC values (default 1 and 10)")
    p.add_argument("--method", action="append", choices=("rded", "random"),
                   help="methods (default both)")
    p.add_argument("--factor", type=int, default=None,
                   help="RDED factor (default: the paper's rule, 1 at 32 px)")
    p.add_argument("--seed", type=int, action="append",
                   help="seeds: distillation and student (default 0; repeat for more)")
    p.add_argument("--epochs", type=int, default=None,
                   help="student epochs (default: jobs/configs/demo_rded.yaml's)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SEC.KEY=VAL", help="student recipe override (an ablation)")
    p.add_argument("--tag", default="", help="name for the ablation's student runs")
    args = p.parse_args(argv)
    if args.overrides and not args.tag:
        p.error("--set changes the student recipe: name the ablation with --tag")
    result = run_effect(args.work, tuple(args.ipc or (1, 10)),
                        tuple(args.method or ("rded", "random")), factor=args.factor,
                        seeds=tuple(args.seed or (0,)), student_epochs=args.epochs,
                        student_overrides=tuple(args.overrides), tag=args.tag,
                        log=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"observer val top-1 {result['observer']['top1']:.3f}")
    print(markdown_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
