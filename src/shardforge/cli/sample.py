"""``shardforge catalog sample REF --out grid.jpg|grid.png|grid.html``: a grid of a dataset's
samples per class, read from its shards by byte range (:mod:`shardforge.layout.sample_grid`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable


def add_sample_parser(csub: argparse._SubParsersAction,
                      common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``catalog sample`` to the ``catalog`` subcommands."""
    p = csub.add_parser("sample", help="a grid of N random samples per class, as an image "
                                       "(.jpg/.png) or a standalone HTML page (.html)")
    p.add_argument("ref", metavar="NAME[@VERSION]|LOCATION")
    p.add_argument("--out", required=True, help="grid file: .jpg, .png or .html")
    p.add_argument("--split", default="train", help="split (default train)")
    p.add_argument("--per-class", type=int, default=4, help="samples per class (default 4)")
    p.add_argument("--classes", help="comma-separated class names (default: every class)")
    p.add_argument("--seed", type=int, default=0, help="which samples (default 0)")
    common(p)


def run_sample(args: argparse.Namespace) -> int:
    """Write the grid; print where, and the samples shown (JSON with ``--json``)."""
    from shardforge.catalog.lookup import resolve_dataset
    from shardforge.layout.dataset import open_dataset
    from shardforge.layout.sample_grid import grid_html, grid_image, pick_samples

    ext = os.path.splitext(args.out)[1].lower()
    if ext not in (".jpg", ".jpeg", ".png", ".html"):
        raise ValueError(f"--out {args.out}: the grid is written as .jpg, .png or .html")
    ds = open_dataset(resolve_dataset(args.ref, args.home))
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    skipped: list[str] = []
    rows = pick_samples(ds, args.split, args.per_class, classes, args.seed, skipped=skipped)
    for line in skipped:
        print(f"shardforge catalog sample: skipped undecodable sample {line}", file=sys.stderr)
    if ext == ".html":
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(grid_html(rows, f"{ds.name} {args.split}: {args.per_class} per class, "
                                    f"seed {args.seed}"))
    else:
        grid_image(rows).save(args.out, quality=90)
    shown = [{"class": p.class_name, "label": p.label, "key": p.key, "position": p.position}
             for row in rows for p in row]
    if args.json:
        print(json.dumps({"out": args.out, "samples": shown, "skipped": skipped}, indent=2))
    else:
        print(f"{args.out}: {len(shown)} samples of {len(rows)} classes from {ds.name} "
              f"{args.split}", file=sys.stdout)
    return 0
