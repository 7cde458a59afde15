"""Measure CUDA's effect on the demo data and write docs/results/unlearnable.md.

    python pipelines/unlearnable_effect.py --work /tmp/cuda-effect \\
        --out-md docs/results/unlearnable.md

Trains the same recipe (jobs/configs/demo_cpu.yaml with the experiment's default
overrides, ``DEFAULT_OVERRIDES``: close to the paper's CIFAR training; ``--recipe-as-is``
drops them) on the clean demo data at 32 px and on its CUDA copies at p = 0.25, 0.5, 0.75
and 1.0 (one key), and tabulates accuracy on the clean val split
(:mod:`experiments.cuda_effect`). Rerunning reuses the datasets and finished runs
under --work. The key defaults to a fixed, public experiment key (the
table is then reproducible); give --key-file or --key-env to use your own.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from experiments.cuda_effect import (
    DEFAULT_CONFIG,
    DEFAULT_OVERRIDES,
    DEFAULT_PS,
    DEFAULT_SPEC,
    EXPERIMENT_KEY,
    VAL_SPLITS,
    effect_table,
    run_effect,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True, help="directory for data, datasets and runs")
    p.add_argument("--out-md", default=None, help="write the results page here")
    p.add_argument("--config", default=os.path.join(ROOT, DEFAULT_CONFIG),
                   help="training recipe (default: jobs/configs/demo_cpu.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="recipe override (repeatable, after the defaults), e.g. "
                        "training.epochs=10")
    p.add_argument("--recipe-as-is", action="store_true",
                   help="train --config without the default overrides (DEFAULT_OVERRIDES: "
                        "no random-resized crop, no BlurPool, no label smoothing, 1 worker)")
    p.add_argument("--varied-aspect", action="store_true",
                   help="demo images of the generator's default sizes (aspect 2:3 to 3:2, "
                        "stretched to 32 x 32 when trained) instead of square ones")
    p.add_argument("--p", type=float, nargs="+", default=list(DEFAULT_PS),
                   help="poison fractions (default: 0.25 0.5 0.75 1.0)")
    p.add_argument("--resolution", type=int, default=32,
                   help="parent max resolution = training resolution (default 32)")
    p.add_argument("--val", choices=VAL_SPLITS, default="heldout",
                   help="val split scored: held-out images of the train distribution "
                        "(default) or demo's own texture-shifted val")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="training backend (default: local processes)")
    keys = p.add_mutually_exclusive_group()
    keys.add_argument("--key-file", metavar="PATH", help="private key file")
    keys.add_argument("--key-env", metavar="VAR", help="environment variable with the key")
    args = p.parse_args(argv)
    from shardforge.cli.unlearnable import read_key

    key = EXPERIMENT_KEY
    if args.key_file or args.key_env:
        try:
            key = read_key(key_file=args.key_file, key_env=args.key_env)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    args.overrides = (() if args.recipe_as_is else DEFAULT_OVERRIDES) + tuple(args.set)
    from shardforge.sources.demo import DemoSpec

    spec = DemoSpec() if args.varied_aspect else DEFAULT_SPEC
    runs = run_effect(args.work, key, ps=tuple(args.p), resolution=args.resolution, spec=spec,
                      config=args.config, overrides=args.overrides, backend=args.backend,
                      val=args.val)
    table = effect_table(runs)
    print("\n".join(table))
    if args.out_md:
        command = "python " + " ".join(shlex.quote(a) for a in
                                       ["pipelines/unlearnable_effect.py", *sys.argv[1:]])
        write_page(args.out_md, table, command, args, runs)
    return 0


def write_page(path: str, table: list[str], command: str, args, runs) -> None:
    """Write the measured block (setup and table) of the results page, between its
    ``<!-- unlearnable-effect -->`` markers; the rest of the page (discussion) is kept."""
    import platform
    import subprocess

    date = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
    clean = runs[0]
    full = next((r for r in runs if r.p == 1.0), None)
    lines = [
        f"- Command: `{command}`",
        f"- Date: {date}; {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs (shared machine)",
        "- Data: the demo generator's defaults (10 shape classes, 800 train images"
        + (")" if args.varied_aspect else "; square 128 px images, `DEFAULT_SPEC`)")
        + " with "
        + ("20 held-out train-distribution images per class as val"
           if args.val == "heldout" else "demo's own 200 val images (texture-shifted)")
        + f", ingested at max {args.resolution} px (JPEG q90): the clean parent. Its val "
        "split is clean in every run (CUDA copies keep the parent's val bytes).",
        "- CUDA: one key (the public experiment key, `EXPERIMENT_KEY`) for every p; the "
        "per-size defaults (k=3, pb=0.3 at <= 128 px: the paper's CIFAR setting); each train "
        "image poisoned independently with probability p (nested: an image poisoned at p "
        "is poisoned at every larger p).",
        f"- Recipe: `{os.path.relpath(args.config, ROOT)}`"
        + (f" with `--set` {', '.join(args.overrides)}" if args.overrides else "")
        + ", identical for every run; val top-1 with flip TTA.",
        "", *table, "",
    ]
    if full is not None:
        lines += [f"Clean-trained: {clean.top1_last5:.3f}; trained on the fully poisoned copy "
                  f"(p = 1): {full.top1_last5:.3f} (means of the last five epochs; chance "
                  "0.100).", ""]
    replace_block(path, "unlearnable-effect", "\n".join(lines), PAGE_HEADER)


PAGE_HEADER = "# CUDA unlearnable datasets: measured effect on the demo data\n"


def replace_block(path: str, name: str, body: str, header: str) -> None:
    """Replace (or append) the ``<!-- NAME -->`` ... ``<!-- /NAME -->`` block of ``path``."""
    import re

    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    block = f"{start}\n{body.strip()}\n{end}\n"
    text = open(path).read() if os.path.exists(path) else header
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.S)
    text = pattern.sub(lambda _: block, text, count=1) if pattern.search(text) \
        else text.rstrip() + "\n\n" + block
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
