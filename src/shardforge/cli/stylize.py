"""The Stylized-ImageNet job behind ``pipelines/stylize.py``: arguments, style set, run.

    ray job submit --working-dir . -- python pipelines/stylize.py \\
        --source imagenet --styles PAINTINGS --weights DIR [--num-gpus-per-actor 1]

Validates the style set once (rejects listed with reasons), writes ``OUT/styles.json``
(the accepted style keys in id order, the rejects, the set's sha256), then runs the
``stylize`` variant (:mod:`shardforge.variants.stylize.transform`) over the parent: sharded,
resumable, both formats, registered in the catalog with the parent as lineage and the
weights' and style set's sha256 in its parameters.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TextIO

from shardforge.catalog.lookup import locate_if_named
from shardforge.catalog.variant import default_out
from shardforge.engine import RAY_ADDRESS_HELP
from shardforge.variants.stylize.spec import make_stylize_variant
from shardforge.variants.stylize.transform import CROP, METHODS, RESIZE, StylizeConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The job's arguments; exits with status 2 and a message on a bad command line."""
    p = argparse.ArgumentParser(description="Stylized-ImageNet: re-render a dataset in "
                                            "random painting styles (AdaIN, Geirhos et al. 2019)")
    p.add_argument("--source", required=True,
                   help="parent dataset: catalog name (imagenet, demo@v2) or dataset directory")
    p.add_argument("--styles", required=True,
                   help="style images: a directory (e.g. Painter by Numbers' train/), a "
                        "dataset (catalog name or directory) or builtin:demo (procedural)")
    p.add_argument("--method", choices=METHODS, default="adain",
                   help="adain: the paper's (needs --weights); fourier: weights-free "
                        "amplitude swap, NOT the paper's method (default adain)")
    p.add_argument("--weights", default=None,
                   help="directory holding vgg_normalised.pth and decoder.pth (AdaIN)")
    p.add_argument("--alpha", type=float, default=1.0, help="stylization strength (default 1)")
    p.add_argument("--seed", type=int, default=0, help="style assignment seed (default 0)")
    p.add_argument("--resize", type=int, default=RESIZE,
                   help=f"content Resize, short side (default {RESIZE})")
    p.add_argument("--crop", type=int, default=CROP,
                   help=f"content CenterCrop (default {CROP})")
    p.add_argument("--splits", default="train",
                   help="comma-separated splits to stylize; others are copied (default train)")
    p.add_argument("--jpeg-quality", type=int, default=None,
                   help="store JPEG at this quality (default: lossless PNG / raw)")
    p.add_argument("--amp", choices=("fp16", "bf16", "off"), default="fp16",
                   help="autocast dtype on GPU (default fp16; AdaIN statistics stay fp32)")
    p.add_argument("--batch-size", type=int, default=32, help="images per AdaIN forward")
    p.add_argument("--num-gpus-per-actor", type=float, default=None,
                   help="GPUs per actor (default: AdaIN on the cluster's GPUs, shared by "
                        "--num-actors actors, one per GPU without it; else 0)")
    p.add_argument("--num-actors", type=int, default=None,
                   help="actors (default: one per GPU, else one per CPU; on a GPU node the "
                        "CPU side (decode, encode) is the limit: more actors sharing the GPU "
                        "go faster, see BENCHMARKS.md 'GPU paths')")
    p.add_argument("--name", default=None, help="new dataset's name (default stylized-SOURCE)")
    p.add_argument("--out", default=None,
                   help="output directory or s3:// URL (default: HOME/datasets/NAME/KEY, "
                        "KEY a hash of the parent and parameters)")
    p.add_argument("--ray-address", default=None, help=RAY_ADDRESS_HELP)
    p.add_argument("--home", default=None,
                   help="catalog home (default: $SHARDFORGE_HOME or ~/.shardforge)")
    p.add_argument("--no-register", action="store_true",
                   help="build only; do not register in the catalog")
    return p.parse_args(argv)


def run_stylize(args: argparse.Namespace, log: TextIO | None = None) -> dict:
    """Run the job for parsed ``args``; return the build summary."""
    from shardforge.build.actors import gpus_per_actor
    from shardforge.catalog.variant import run_variant
    from shardforge.engine.cluster import ray_session
    from shardforge.storage import resolve
    from shardforge.variants.stylize.styles import load_style_set

    log = log if log is not None else sys.stderr
    config = StylizeConfig(method=args.method, alpha=args.alpha, seed=args.seed,
                           resize=args.resize, crop=args.crop, weights=args.weights,
                           amp=args.amp, batch_size=args.batch_size)
    if config.method == "adain":
        from shardforge.variants.stylize.adain import load_adain

        load_adain(args.weights)             # fail fast, naming a bad file or key
    style_set = load_style_set(locate_if_named(args.styles, args.home))
    print(f"styles {args.styles}: {len(style_set.styles)} accepted, {len(style_set.rejects)} "
          f"rejected (sha256 {style_set.sha256[:12]})", file=log)
    for r in style_set.rejects[:10]:
        print(f"  rejected {r['style']}: {r['reason']}", file=log)
    with ray_session(args.ray_address):     # the same Ray for the GPU count and the job
        # AdaIN on the cluster's GPUs (shared by --num-actors actors); fourier on CPUs
        gpus = (gpus_per_actor(args.num_gpus_per_actor, args.num_actors)
                if config.method == "adain" else args.num_gpus_per_actor or 0.0)
        splits = tuple(s for s in args.splits.split(",") if s)
        variant = make_stylize_variant(config, style_set, splits, args.jpeg_quality, gpus,
                                       args.num_actors)
        source_name = os.path.basename(args.source.rstrip("/")).split("@")[0]
        name = args.name or f"stylized-{source_name}"
        out = args.out or default_out(args.home, name, args.source, variant.params)
        listing = json.dumps(style_set.describe(), indent=1).encode()
        resolve(out).join("styles.json").write_bytes_atomic(listing)
        return run_variant(args.source, variant, name, out, ray_address=args.ray_address,
                           register=not args.no_register, catalog_home=args.home, log=log)


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 done, 2 bad arguments (a message names the problem)."""
    from shardforge.build.job import JobFailed
    from shardforge.variants.stylize.adain import WeightsError
    from shardforge.variants.stylize.styles import StyleSetError

    args = parse_args(argv)
    try:
        summary = run_stylize(args)
    except JobFailed as exc:      # not about one sample: one line, exit 1
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (WeightsError, StyleSetError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    where = summary.get("catalog") or summary.get("out")
    train = summary["splits"].get("train", {}).get("samples", 0)
    print(f"{args.method}: {train} train samples stylized -> {where}")
    return 0
