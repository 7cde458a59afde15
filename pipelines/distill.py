"""Ray job entry: distil a catalog dataset into IPC images per class with RDED.

    ray job submit --working-dir . -- python pipelines/distill.py \\
        --source demo --observer data/runs/demo_cpu-demo --ipc 10 --size 32

Per class of the train split (classes in parallel on Ray actors that keep the observer
loaded, on a GPU each when the cluster has GPUs): candidate crops scored by the observer,
the lowest-loss ones stitched into ``factor x factor`` grids (RDED, Sun et al. CVPR 2024;
:mod:`shardforge.variants.rded.transform`). ``--method random`` makes the baseline: IPC random real
images per class. Val is copied unchanged. Deterministic for a seed, resumable per class
(rerun the same command), both formats, registered as ``NAME@vN`` with the parent as
lineage and the observer's file and sha256 in its parameters. The observer's class order
must equal the dataset's, else the job stops before any work.
"""

from __future__ import annotations

import argparse
import sys

from shardforge.cli.params import add_param_flags, params_from_args
from shardforge.engine import RAY_ADDRESS_HELP
from shardforge.variants.rded.spec import PARAMS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The job's arguments; exits with status 2 and a message on a bad command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", required=True,
                   help="parent dataset: catalog name (demo, demo@v2) or dataset directory")
    add_param_flags(p, PARAMS)      # the pipeline's parameters, as the cards declare them
    p.add_argument("--name", default=None,
                   help="name of the new dataset (default SOURCE-METHOD-ipcN)")
    p.add_argument("--out", default=None,
                   help="output directory or s3:// URL (default: HOME/datasets/NAME/KEY, "
                        "KEY a hash of the parent, parameters and observer)")
    p.add_argument("--ray-address", default=None, help=RAY_ADDRESS_HELP)
    p.add_argument("--num-gpus-per-actor", type=float, default=None,
                   help="GPUs per observer actor (default: 1 when the cluster has GPUs, "
                        "else 0)")
    p.add_argument("--num-actors", type=int, default=None,
                   help="observer actors (default: one per GPU, else one per CPU)")
    p.add_argument("--home", default=None,
                   help="catalog home (default: $SHARDFORGE_HOME or ~/.shardforge)")
    p.add_argument("--no-register", action="store_true",
                   help="build only; do not register in the catalog")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from shardforge.logs import show_progress

    show_progress()
    from shardforge.build.job import JobFailed
    from shardforge.catalog.variant import run_variant
    from shardforge.variants.rded.spec import rded_variant

    args = parse_args(argv)
    params = params_from_args(args, PARAMS)
    base = args.source.split("@", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    name = args.name or f"{base}-{params['method']}-ipc{params['ipc']}"
    try:
        variant = rded_variant(params, num_gpus=args.num_gpus_per_actor,
                               num_actors=args.num_actors)
        summary = run_variant(args.source, variant, name, args.out,
                              ray_address=args.ray_address, register=not args.no_register,
                              catalog_home=args.home, log=sys.stderr)
    except JobFailed as exc:      # not about one sample: one line, exit 1
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    where = summary.get("catalog") or summary["out"]
    train = summary["splits"].get("train", {}).get("samples", 0)
    print(f"{name}: {train} distilled train images ({params['method']}, ipc {params['ipc']}) -> {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
