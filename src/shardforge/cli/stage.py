"""``shardforge stage REF --to DIR``: copy a dataset to every node's local disk."""

from __future__ import annotations

import argparse
import sys


def add_stage_parser(sub) -> None:
    """Register the ``stage`` subcommand on ``sub`` (argparse subparsers)."""
    p = sub.add_parser("stage", help="copy a dataset's files to the same local directory on "
                                     "every Ray node (sha256-verified, resumable)")
    p.add_argument("ref", help="catalog NAME[@vN] or a dataset location (path or URL)")
    p.add_argument("--to", required=True, help="absolute local directory on every node")
    p.add_argument("--home", help="catalog home (default: $SHARDFORGE_HOME, else ~/.shardforge)")
    p.add_argument("--ray-address", help="Ray cluster (default: the job's cluster under `ray "
                                         "job submit`, else a private local Ray on 127.0.0.1)")
    p.add_argument("--json", action="store_true", help="print the per-node reports as JSON")


def run_stage(args: argparse.Namespace) -> int:
    """Stage; print one line per node (stderr) and the result; return 0, or 1 with one
    line naming the problem (and each failed node). ``--json`` prints every node's report
    to stdout, failed nodes included (``error`` set)."""
    from shardforge.catalog.lookup import resolve_dataset
    from shardforge.catalog.stage import StageError, reports_json, stage_dataset
    from shardforge.layout.dataset import DatasetNotFoundError

    try:
        root = resolve_dataset(args.ref, args.home)
        reports = stage_dataset(root, args.to, args.ray_address)
    except StageError as exc:
        if args.json and exc.reports:
            print(reports_json(exc.reports))
        print(f"shardforge stage: error: {exc}", file=sys.stderr)
        return 1
    except (DatasetNotFoundError, OSError) as exc:
        print(f"shardforge stage: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(reports_json(reports))
    else:
        print(f"{args.ref} staged at {args.to} on {len(reports)} node(s); train with "
              f"--data {args.to}")
    return 0
