"""Ray job entry: make an unlearnable (CUDA) copy of a dataset with a private key.

    ray job submit --working-dir . -- python pipelines/unlearnable.py \\
        --source demo --name demo-cuda --key-file ~/.keys/demo-cuda.key

Every train image is convolved with its class's filter drawn from the key (CUDA,
Sadasivan et al. CVPR 2023; :mod:`shardforge.variants.cuda.transform`); val is copied unchanged.
The job is sharded and resumable (rerun the same command after a failure), writes both
formats and registers ``NAME@vN`` in the catalog with the source as its parent. The key
is read from a file (``--key-file``) or an environment variable (``--key-env``), never
from the command line, and only its fingerprint is stored.
"""

from __future__ import annotations

import argparse
import sys

from shardforge.cli.params import add_param_flags, params_from_args
from shardforge.engine import RAY_ADDRESS_HELP
from shardforge.variants.cuda.spec import PARAMS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The job's arguments; exits with status 2 and a message on a bad command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", required=True,
                   help="parent dataset: catalog name (demo, demo@v2) or dataset directory")
    p.add_argument("--name", required=True, help="name of the new dataset")
    p.add_argument("--out", default=None,
                   help="output directory or s3:// URL (default: HOME/datasets/NAME/KEY, "
                        "KEY a hash of the parent, parameters and key fingerprint)")
    keys = p.add_mutually_exclusive_group(required=True)
    keys.add_argument("--key-file", metavar="PATH",
                      help="file holding the private key (>= 16 characters; surrounding "
                           "whitespace ignored)")
    keys.add_argument("--key-env", metavar="VAR",
                      help="environment variable holding the private key")
    keys.add_argument("--key", dest="key_literal", help=argparse.SUPPRESS)
    add_param_flags(p, PARAMS)      # the pipeline's parameters, as the cards declare them
    p.add_argument("--ray-address", default=None, help=RAY_ADDRESS_HELP)
    p.add_argument("--home", default=None,
                   help="catalog home (default: $SHARDFORGE_HOME or ~/.shardforge)")
    p.add_argument("--no-register", action="store_true",
                   help="build only; do not register in the catalog")
    args = p.parse_args(argv)
    if args.key_literal is not None:
        p.error("--key: a key given on the command line lands in the shell history and in "
                "`ps`; put it in a file (--key-file PATH) or an environment variable "
                "(--key-env VAR)")
    return args


def main(argv: list[str] | None = None) -> int:
    from shardforge.logs import show_progress

    show_progress()
    from shardforge.build.job import JobFailed
    from shardforge.cli.unlearnable import build_unlearnable, read_key

    args = parse_args(argv)
    try:
        key = read_key(key_file=args.key_file, key_env=args.key_env)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    params = params_from_args(args, PARAMS)
    try:
        summary = build_unlearnable(args.source, args.name, key, params, out=args.out,
                                    ray_address=args.ray_address, home=args.home,
                                    register=not args.no_register)
    except JobFailed as exc:      # not about one sample: one line, exit 1
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as exc:   # bad parameters, unknown parent
        print(f"error: {exc}", file=sys.stderr)
        return 2
    where = summary.get("catalog") or summary["out"]
    train = summary["splits"].get("train", {}).get("samples", 0)
    print(f"{args.name}: {train} train samples through CUDA "
          f"(key {summary['variant']['params']['key_fingerprint']}) -> {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
