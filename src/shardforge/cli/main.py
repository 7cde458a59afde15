"""The ``shardforge`` command line.

Wrong arguments exit 2 with one line naming the argument and the fix; a ``--strict``
ingest with rejected inputs exits 1; success exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from shardforge.engine import RAY_ADDRESS_HELP
from shardforge.formats.beton import DEFAULT_PAGE_SIZE
from shardforge.formats.image import DEFAULT_MAX_PIXELS, WRITE_MODES, ImageParams
from shardforge.sources import KINDS
from shardforge.sources.base import SourceOptions

EXIT_USAGE = 2
EPILOG = ("The catalog (`shardforge catalog`, `shardforge build`, and the registration of "
          "every ingest) lives in SHARDFORGE_HOME: the environment variable when set, else "
          "~/.shardforge; --home overrides it per command.")


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line (``shardforge: error: ...``) and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _bounded(kind: type, lo: float, hi: float | None, what: str):
    """An argparse type: ``kind(text)`` within [lo, hi], else an error naming ``what``."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{value} is not {what}")
        return value

    return parse


_quality = _bounded(int, 1, 100, "an integer in 1..100")
_positive = _bounded(int, 1, None, "a positive integer")
_probability = _bounded(float, 0.0, 1.0, "a number in [0, 1]")


def add_ingest_arguments(p: argparse.ArgumentParser) -> None:
    """The ingest options, shared by ``shardforge ingest`` and ``pipelines/ingest.py``."""
    p.add_argument("source", help="class-folder tree, WebDataset tar(s), parquet file(s) or "
                                  "the ImageNet archives (ILSVRC2012_img_*.tar); local path "
                                  "or object-store URL (s3://, gs://, az://, hf://)")
    p.add_argument("--name", required=True, help="dataset name (letters, digits, _ and -)")
    p.add_argument("--out", required=True,
                   help="output directory or object-store URL (s3://, gs://, az://, hf://)")
    p.add_argument("--source-kind", choices=KINDS, help="override source detection")
    p.add_argument("--max-res", type=_positive, default=256,
                   help="longest side after resizing, px (default 256; FFCV max_resolution)")
    p.add_argument("--no-resize", action="store_true", help="keep the source resolution")
    p.add_argument("--jpeg-quality", type=_quality, default=90, help="1..100 (default 90)")
    p.add_argument("--reencode", action="store_true",
                   help="decode and re-encode every image, as FFCV's writer does (default: a "
                        "source JPEG that needs no resize or rotation and is not of higher "
                        "quality than --jpeg-quality is stored as it is, metadata dropped)")
    p.add_argument("--write-mode", choices=WRITE_MODES, default="jpg",
                   help="FFCV write mode (default jpg)")
    p.add_argument("--compress-probability", type=_probability, default=0.5,
                   help="JPEG share for --write-mode proportion (default 0.5)")
    p.add_argument("--smart-threshold", type=_positive,
                   help="raw bytes above which --write-mode smart stores JPEG")
    p.add_argument("--max-pixels", type=_positive, default=DEFAULT_MAX_PIXELS,
                   help="reject larger images as decompression bombs")
    p.add_argument("--shard-size", type=_positive, default=None,
                   help="samples per output shard (default: about 32 shards per split, "
                        "64..1000 samples each; a function of the split size only)")
    p.add_argument("--seed", type=int, default=0,
                   help="shuffle seed for class-folder sources before sharding")
    p.add_argument("--no-shuffle", action="store_true", help="keep class-folder order")
    p.add_argument("--split", default="train", help="split name for sources without splits")
    p.add_argument("--image-column", default="image", help="parquet image column")
    p.add_argument("--label-column", default="label", help="parquet label column")
    p.add_argument("--key-column", help="parquet column with a stable sample id")
    p.add_argument("--page-size", type=_positive, default=DEFAULT_PAGE_SIZE,
                   help=".beton page size in bytes (power of two >= 2 MiB)")
    p.add_argument("--strict", action="store_true",
                   help="any rejected input fails the job (exit 1) and commits nothing")
    p.add_argument("--ray-address", help=RAY_ADDRESS_HELP)
    p.add_argument("--keep-parts", action="store_true",
                   help="keep the per-shard .beton parts in OUT/_work after merging")
    p.add_argument("--workers-only", action="store_true",
                   help="build every shard in Ray workers (default: the driver builds "
                        "shards too until the first worker returns, so a small job does "
                        "not wait for Ray to start worker processes)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--home", help="catalog home to register the build in (default: "
                                  "$SHARDFORGE_HOME, else ~/.shardforge)")
    p.add_argument("--no-register", action="store_true",
                   help="do not register the build in the catalog")


def ingest_config_from_args(args: argparse.Namespace):
    """Build an :class:`IngestConfig` from parsed ingest arguments (ValueError if invalid)."""
    from shardforge.build.config import IngestConfig

    image = ImageParams(max_resolution=None if args.no_resize else args.max_res,
                        jpeg_quality=args.jpeg_quality, write_mode=args.write_mode,
                        compress_probability=args.compress_probability,
                        smart_threshold=args.smart_threshold, max_pixels=args.max_pixels,
                        keep_source_jpeg=not args.reencode)
    options = SourceOptions(default_split=args.split, shard_size=args.shard_size,
                            seed=None if args.no_shuffle else args.seed,
                            image_column=args.image_column, label_column=args.label_column,
                            key_column=args.key_column)
    return IngestConfig(source=args.source, name=args.name, out=args.out, image=image,
                        source_options=options, source_kind=args.source_kind,
                        page_size=args.page_size, strict=args.strict,
                        ray_address=args.ray_address, keep_parts=args.keep_parts,
                        workers_only=args.workers_only)


def run_ingest_command(args: argparse.Namespace) -> int:
    """Run an ingest from parsed arguments; print the summary; return the exit code."""
    from shardforge.build.job import JobFailed, RejectsInStrictMode, format_summary
    from shardforge.catalog import RegistrationError
    from shardforge.catalog.ingest import ingest
    from shardforge.storage import resolve

    try:
        config = ingest_config_from_args(args)
        if not resolve(config.source).exists():
            raise ValueError(f"source {config.source!r} does not exist")
    except ValueError as exc:
        print(f"shardforge ingest: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        summary = ingest(config, home=args.home, register=not args.no_register)
    except RejectsInStrictMode as exc:
        print(f"shardforge ingest: {exc}", file=sys.stderr)
        return 1
    except JobFailed as exc:
        print(f"shardforge ingest: error: {exc}", file=sys.stderr)
        return 1
    except RegistrationError as exc:
        print(f"shardforge ingest: error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"shardforge ingest: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def _demo_data(args: argparse.Namespace) -> int:
    from shardforge.sources.demo import DemoSpec, generate_demo_data

    spec = DemoSpec(num_classes=args.classes, train_per_class=args.train_per_class,
                    val_per_class=args.val_per_class, seed=args.seed)
    summary = generate_demo_data(args.out, spec)
    counts = summary["counts"]
    print(f"demo data in {summary['root']}: {len(summary['classes'])} classes, "
          + ", ".join(f"{split} {sum(c.values())} images" for split, c in counts.items()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full ``shardforge`` argument parser."""
    from shardforge.cli.catalog import add_catalog_commands

    parser = _Parser(prog="shardforge", description=__doc__.splitlines()[0], epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    ingest = sub.add_parser("ingest", help="build .beton + WebDataset shards from a source")
    add_ingest_arguments(ingest)
    demo = sub.add_parser("demo-data", help="generate the built-in demo dataset")
    demo.add_argument("out", help="directory to write ROOT/{train,val}/CLASS/*.JPEG into")
    demo.add_argument("--classes", type=_positive, default=10)
    demo.add_argument("--train-per-class", type=_positive, default=80)
    demo.add_argument("--val-per-class", type=_positive, default=20)
    demo.add_argument("--seed", type=int, default=0)
    add_catalog_commands(sub, _Parser)
    from shardforge.cli.eval import add_eval_parser

    add_eval_parser(sub)
    from shardforge.cli.view import add_view_parser

    add_view_parser(sub)
    from shardforge.cli.stage import add_stage_parser

    add_stage_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``shardforge`` console script."""
    from shardforge.logs import show_progress

    show_progress()
    args = build_parser().parse_args(argv)
    if args.command == "ingest":
        return run_ingest_command(args)
    if args.command == "demo-data":
        return _demo_data(args)
    if args.command in ("catalog", "build"):
        from shardforge.cli.catalog import run_catalog_command

        return run_catalog_command(args)
    if args.command == "eval":
        from shardforge.cli.eval import run_eval_command

        return run_eval_command(args)
    if args.command == "view":
        from shardforge.cli.view import run_view

        return run_view(args)
    if args.command == "stage":
        from shardforge.cli.stage import run_stage

        return run_stage(args)
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
