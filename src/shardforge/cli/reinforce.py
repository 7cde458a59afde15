"""``pipelines/reinforce.py``: the reinforcement Ray job's arguments (the pipeline itself:
:mod:`shardforge.variants.reinforce.spec`).

    ray job submit --working-dir . -- python pipelines/reinforce.py \\
        --source imagenet --teacher resnet152=/weights/rn152.pth --teacher ... \\
        --num-augs 400 --num-gpus-per-actor 1

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

from shardforge.engine import RAY_ADDRESS_HELP
from shardforge.train.experiment import recipe_run_dir
from shardforge.variants.reinforce.spec import RECIPE_PREFIX, _slug, resolve_teacher

DEMO_RECIPE = "jobs/configs/demo_cpu.yaml"
#: The demo's reinforcement: 32 px views (the demo recipe trains at 32 px), 20 stored
#: augmentations per image, top-5 of 10 classes; the policy is otherwise ImageNet+'s.
DEMO_SIZE, DEMO_AUGS, DEMO_TOP_K, DEMO_CROP_SCALE_MIN = 32, 20, 5, 0.35


def build_parser() -> argparse.ArgumentParser:
    """The pipelines/reinforce.py argument parser."""
    p = argparse.ArgumentParser(
        prog="pipelines/reinforce.py",
        description="Dataset reinforcement (ImageNet+): store teacher top-K predictions for "
                    "many replayable augmentations of every training image.")
    p.add_argument("--source", default="demo",
                   help="parent dataset: catalog NAME[@vN] or a dataset location (default: "
                        "demo, built first when missing)")
    p.add_argument("--teacher", action="append", default=[],
                   help="ensemble member (repeat): checkpoint, ARCH=WEIGHTS or recipe:CONFIG "
                        f"(default: recipe:{DEMO_RECIPE})")
    p.add_argument("--teacher-classes", default="sorted",
                   help="class order of ARCH=WEIGHTS members: 'sorted' or a file of names")
    p.add_argument("--name", help="output dataset name (default: SOURCE-plus)")
    p.add_argument("--out", help="output location (default: HOME/datasets/NAME/KEY, KEY a "
                                 "hash of the parent and the parameters, teachers' sha256 "
                                 "included); a location holding a finished reinforcement "
                                 "made with other parameters is refused")
    p.add_argument("--num-augs", type=int, help="augmentations per image (ImageNet+: 400; "
                                                f"demo default {DEMO_AUGS})")
    p.add_argument("--top-k", type=int, help=f"probabilities kept (default 10; demo {DEMO_TOP_K})")
    p.add_argument("--size", type=int, help=f"view size (default 224; demo {DEMO_SIZE})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--crop-scale-min", type=float,
                   help="RandomResizedCrop minimum area (default 0.08; demo 0.35, the demo "
                        "recipe's: at 32 px smaller crops lose the shape)")
    p.add_argument("--randaugment-ops", type=int, default=2, help="RandAugment ops (0: off)")
    p.add_argument("--randaugment-magnitude", type=int, default=9)
    p.add_argument("--erasing-p", type=float, default=0.25, help="RandomErasing probability")
    p.add_argument("--mixup-p", type=float, default=0.0, help="MixUp probability (default 0)")
    p.add_argument("--cutmix-p", type=float, default=0.0, help="CutMix probability (default 0)")
    p.add_argument("--batch-size", type=int, default=256, help="views per teacher forward")
    p.add_argument("--num-actors", type=int,
                   help="teacher actors (default: one per GPU, else one per CPU). On a GPU "
                        "node one actor is limited by its CPU side (decode + augment, ~0.7k "
                        "views/s): several actors sharing a GPU go faster (1 -> 4 actors: "
                        "1.7x on an H200, BENCHMARKS.md 'GPU paths')")
    p.add_argument("--num-gpus-per-actor", type=float, default=None,
                   help="GPUs per teacher actor (default: the cluster's GPUs shared by "
                        "--num-actors actors, one actor per GPU without it; 0 on CPUs)")
    p.add_argument("--runs", default="data/runs", help="where recipe: teachers are trained")
    p.add_argument("--ray-address", help=RAY_ADDRESS_HELP)
    p.add_argument("--no-register", action="store_true", help="do not register in the catalog")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the job; returns the exit code (0 done, 1 failed, 2 bad arguments)."""
    from shardforge.augment import AugPolicy
    from shardforge.build.job import JobFailed
    from shardforge.catalog.errors import CatalogError
    from shardforge.catalog.variant import run_reinforcement
    from shardforge.models.reference import parse_member
    from shardforge.variants.reinforce.engine import ReinforceConfig

    args = build_parser().parse_args(argv)
    demo = args.source == "demo"
    try:
        if demo:
            _ensure_demo()
        teachers = args.teacher or [RECIPE_PREFIX + DEMO_RECIPE]
        refs = tuple(parse_member(resolve_teacher(t, args.source, args.runs, recipe_run_dir),
                                  args.teacher_classes) for t in teachers)
        crop_min = args.crop_scale_min or (DEMO_CROP_SCALE_MIN if demo else 0.08)
        policy = AugPolicy(size=args.size or (DEMO_SIZE if demo else 224),
                           rrc_scale=(crop_min, 1.0), randaugment_ops=args.randaugment_ops,
                           randaugment_magnitude=args.randaugment_magnitude,
                           erasing_p=args.erasing_p, mixup_p=args.mixup_p,
                           cutmix_p=args.cutmix_p)
        name = args.name or f"{_slug(args.source.split('@')[0])}-plus"
        config = ReinforceConfig(
            parent=args.source, name=name, out=args.out,
            teachers=refs, num_augs=args.num_augs or (DEMO_AUGS if demo else 400),
            top_k=args.top_k or (DEMO_TOP_K if demo else 10), seed=args.seed, policy=policy,
            batch_size=args.batch_size, num_actors=args.num_actors,
            num_gpus_per_actor=args.num_gpus_per_actor, ray_address=args.ray_address)
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
    print(f"{name}: {r['augmentations']:,} augmentations of {summary['splits'][r['split']]['samples']:,}"
          f" images, {r['bytes_per_augmentation']} B per augmentation, "
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


