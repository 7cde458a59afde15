"""``pipelines/reinforce.py``: the reinforcement Ray job's arguments (the pipeline itself:
:mod:`shardforge.variants.reinforce.spec`).

    ray job submit --working-dir . -- python pipelines/reinforce.py \\
        --source imagenet --teacher resnet152=/weights/rn152.pth,MEMBER2,... \\
        --num-augmentations 400 --num-gpus-per-actor 1

With no arguments it reinforces the built-in demo data (built first when missing) with a
small CNN teacher it trains there (jobs/configs/demo_cpu.yaml), on CPU.

Output: ``--out``, or by default ``HOME/datasets/NAME/KEY`` (HOME the catalog home), KEY a
hash of the parent build and every parameter that decides the bytes (teachers' sha256
included, so for a ``recipe:`` teacher the weights it trained to): rerunning with another
teacher, seed or policy writes a new directory and never touches an earlier version's
files. A location holding a registered reinforcement made with other parameters is refused.
"""

from __future__ import annotations

import argparse
import sys

from shardforge.cli.params import add_param_flags, params_from_args
from shardforge.engine import RAY_ADDRESS_HELP
from shardforge.train.experiment import recipe_run_dir
from shardforge.train.storage_path import run_storage
from shardforge.variants.reinforce.spec import (
    PARAMS,
    RECIPE_PREFIX,
    _slug,
    reinforce_config,
    teacher_refs,
)

DEMO_RECIPE = "jobs/configs/demo_cpu.yaml"
#: The demo's reinforcement (``--source demo``, the default): a small CNN teacher trained
#: by the demo recipe, 32 px views (the recipe trains at 32 px), 20 stored augmentations
#: per image, top-5 of 10 classes, crops of at least 35% of the image (at 32 px smaller
#: crops lose the shape); the policy is otherwise ImageNet+'s. Other sources get the
#: parameters' defaults (ImageNet+: 400 augmentations, top-10, 224 px, 0.08).
DEMO_DEFAULTS = {"teacher": RECIPE_PREFIX + DEMO_RECIPE, "num_augmentations": 20, "top_k": 5,
                 "size": 32, "crop_scale_min": 0.35}


def build_parser() -> argparse.ArgumentParser:
    """The pipelines/reinforce.py argument parser: the ``reinforce`` pipeline's parameters
    as declared once (:data:`shardforge.variants.reinforce.spec.PARAMS`: ``--teacher A,B``,
    ``--num-augmentations``, ...), plus where to read and write."""
    p = argparse.ArgumentParser(
        prog="pipelines/reinforce.py",
        description="Dataset reinforcement (ImageNet+): store teacher top-K predictions for "
                    "many replayable augmentations of every training image. With --source "
                    f"demo (the default) the defaults are the demo's: {DEMO_DEFAULTS}.")
    p.add_argument("--source", default="demo",
                   help="parent dataset: catalog NAME[@vN] or a dataset location (default: "
                        "demo, built first when missing)")
    add_param_flags(p, PARAMS, fallbacks={"teacher": DEMO_DEFAULTS["teacher"]})
    p.add_argument("--name", help="output dataset name (default: SOURCE-plus)")
    p.add_argument("--out", help="output location (default: HOME/datasets/NAME/KEY, KEY a "
                                 "hash of the parent and the parameters, teachers' sha256 "
                                 "included); a location holding a finished reinforcement "
                                 "made with other parameters is refused")
    p.add_argument("--runs", help="where recipe: teachers are trained (default: "
                                  "$SHARDFORGE_RUNS, else $SHARDFORGE_HOME/runs; absolute or a "
                                  "URL under `ray job submit`)")
    p.add_argument("--ray-address", help=RAY_ADDRESS_HELP)
    p.add_argument("--no-register", action="store_true", help="do not register in the catalog")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the job; returns the exit code (0 done, 1 failed, 2 bad arguments)."""
    from shardforge.logs import show_progress

    show_progress()
    from shardforge.build.job import JobFailed
    from shardforge.catalog.errors import CatalogError
    from shardforge.catalog.variant import run_reinforcement

    args = build_parser().parse_args(argv)
    demo = args.source == "demo"
    params = params_from_args(args, PARAMS, fallbacks=DEMO_DEFAULTS if demo else {})
    name = args.name or f"{_slug(args.source.split('@')[0])}-plus"
    try:
        if "teacher" not in params:
            raise ValueError("--teacher is required for a source other than demo "
                             "(a checkpoint, ARCH=WEIGHTS or recipe:CONFIG; several: A,B)")
        if demo:
            _ensure_demo()
        runs = run_storage(args.runs, "--runs")
        teachers = teacher_refs(params, args.source, runs, recipe_run_dir)
        config = reinforce_config(params, args.source, name, args.out, teachers,
                                  args.ray_address)
    except (ValueError, FileNotFoundError, CatalogError) as exc:
        print(f"pipelines/reinforce.py: error: {exc}", file=sys.stderr)
        return 2
    try:
        summary = run_reinforcement(config, register=not args.no_register)
    except JobFailed as exc:      # not about one sample: one line, exit 1
        print(f"pipelines/reinforce.py: error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:      # e.g. --out holds another reinforcement (check_out)
        print(f"pipelines/reinforce.py: error: {exc}", file=sys.stderr)
        return 2
    r = summary["reinforce"]
    print(f"{name}: {r['augmentations']:,} augmentations of "
          f"{summary['splits'][r['split']]['samples']:,} images, "
          f"{r['bytes_per_augmentation']} B per augmentation, "
          f"{summary['images_per_second']} img/s; {summary['out']}"
          + (f"; catalog {summary['catalog']}" if "catalog" in summary else ""))
    return 0


def _ensure_demo() -> None:
    """Build the ``demo`` card when the catalog has no build of it."""
    from shardforge import catalog
    from shardforge.catalog.errors import CatalogError

    try:
        catalog.get("demo")
    except CatalogError:
        catalog.build_dataset("demo")


