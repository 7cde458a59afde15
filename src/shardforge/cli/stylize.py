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
from shardforge.cli.params import add_param_flags, params_from_args
from shardforge.engine import RAY_ADDRESS_HELP
from shardforge.variants.stylize.spec import PARAMS, check_params, variant_from_params


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The job's arguments: the pipeline's parameters as declared once in
    :data:`shardforge.variants.stylize.spec.PARAMS` (``--num-actors`` for ``num_actors``,
    comma-separated ``--splits``), plus where to read and write. Exits with status 2 and a
    message on a bad command line."""
    p = argparse.ArgumentParser(description="Stylized-ImageNet: re-render a dataset in "
                                            "random painting styles (AdaIN, Geirhos et al. 2019)")
    p.add_argument("--source", required=True,
                   help="parent dataset: catalog name (imagenet, demo@v2) or dataset directory")
    add_param_flags(p, PARAMS)
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
    from shardforge.catalog.variant import run_variant
    from shardforge.engine.cluster import ray_session
    from shardforge.storage import resolve
    from shardforge.variants.stylize.styles import load_style_set

    log = log if log is not None else sys.stderr
    params = params_from_args(args, PARAMS)
    check_params(params)
    if params["method"] == "adain":
        from shardforge.variants.stylize.adain import load_adain

        load_adain(params["weights"])        # fail fast, naming a bad file or key
    style_set = load_style_set(locate_if_named(params["styles"], args.home))
    print(f"styles {params['styles']}: {len(style_set.styles)} accepted, "
          f"{len(style_set.rejects)} rejected (sha256 {style_set.sha256[:12]})", file=log)
    for r in style_set.rejects[:10]:
        print(f"  rejected {r['style']}: {r['reason']}", file=log)
    with ray_session(args.ray_address):     # the same Ray for the GPU count and the job
        variant = variant_from_params(params, style_set=style_set)
        source_name = os.path.basename(args.source.rstrip("/")).split("@")[0]
        name = args.name or f"stylized-{source_name}"
        out = args.out or default_out(args.home, name, args.source, variant.params)
        listing = json.dumps(style_set.describe(), indent=1).encode()
        resolve(out).join("styles.json").write_bytes_atomic(listing)
        return run_variant(args.source, variant, name, out, ray_address=args.ray_address,
                           register=not args.no_register, catalog_home=args.home, log=log)


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 done, 2 bad arguments (a message names the problem)."""
    from shardforge.logs import show_progress

    show_progress()
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
    print(f"{summary['variant']['params']['method']}: {train} train samples stylized -> "
          f"{where}")
    return 0
