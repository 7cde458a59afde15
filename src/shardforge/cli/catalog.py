"""``shardforge catalog ...`` and ``shardforge build``: argument parsing and printing.

Errors in the request (unknown dataset, invalid card, pipeline not implemented) print one
line and exit 2; ``verify`` exits 1 when a file is missing or corrupt; a catalog that cannot
be read or written (damaged, newer schema, read-only home for ``register``, locked past the
timeout, full disk: :class:`~shardforge.catalog.store.CatalogUnavailable`) prints one line
naming the file and the fix and exits 1; success exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence

from shardforge.catalog.home import DEFAULT_HOME, HOME_ENV, READ_ONLY_ENV
from shardforge.catalog.shared import DEFAULT_DEPTH
from shardforge.catalog.sync import STATUSES
from shardforge.cli.catalog_format import (
    brief,
    format_build,
    format_lineage,
    one_line,
    origin_text,
    print_json,
    table,
)
from shardforge.cli.sample import add_sample_parser, run_sample
from shardforge.engine import RAY_ADDRESS_HELP

EXIT_PROBLEM = 1
EXIT_USAGE = 2
_HOME_HELP = f"catalog home (default: ${HOME_ENV}, else {DEFAULT_HOME})"


def add_catalog_commands(sub: argparse._SubParsersAction, parser_class: type) -> None:
    """Add ``catalog`` (with its subcommands) and ``build`` to the ``shardforge`` parser."""
    cat = sub.add_parser("catalog", help="look up datasets: list, show, resolve, lineage, "
                                         "verify, cards, register, sync, sample")
    csub = cat.add_subparsers(dest="catalog_command", required=True, parser_class=parser_class)

    p = csub.add_parser("list", help="the latest build of every dataset")
    p.add_argument("--all", action="store_true", help="every version, not only the latest")
    _common(p)
    p = csub.add_parser("show", help="one build: provenance, splits, formats, files")
    p.add_argument("ref", metavar="NAME[@VERSION]")
    _common(p)
    p = csub.add_parser("resolve", help="shard URLs of one split in one format")
    p.add_argument("ref", metavar="NAME[@VERSION]")
    p.add_argument("--format", required=True, choices=("wds", "beton"))
    p.add_argument("--split", default="train", help="split (default train)")
    _common(p)
    p = csub.add_parser("lineage", help="the build and its parents up to the source, as a tree")
    p.add_argument("ref", metavar="NAME[@VERSION]")
    _common(p)
    p = csub.add_parser("verify", help="re-hash every file; exit 1 when any is missing or "
                                       "corrupt")
    p.add_argument("ref", metavar="NAME[@VERSION]")
    p.add_argument("--quick", action="store_true",
                   help="sizes and structure only (tar headers and sample counts, .beton "
                        "tables, parquet footer); no hashing")
    p.add_argument("--ray-address", help="hash on this Ray cluster's CPUs (default: the one "
                                         "RAY_ADDRESS names, else local threads)")
    _common(p)
    p = csub.add_parser("cards", help="validate and list the dataset cards (datasets/*.yaml)")
    p.add_argument("--cards", metavar="DIR", help="cards directory (default ./datasets)")
    _common(p)
    p = csub.add_parser("register", help="register a finished ingest output (its summary.json)")
    p.add_argument("out", help="output directory or s3:// URL of a finished ingest")
    p.add_argument("--name", help="dataset name (default: the summary's)")
    _common(p)
    p = csub.add_parser("sync", help="register the builds whose catalog-entry.json files are "
                                     "at URL (shared storage), keeping their NAME@vN")
    p.add_argument("url", help="directory or s3:// prefix holding dataset outputs")
    p.add_argument("--max-depth", type=int, default=DEFAULT_DEPTH, metavar="N",
                   help=f"directory levels below URL to look in (default {DEFAULT_DEPTH})")
    _common(p)
    add_sample_parser(csub, _common)

    b = sub.add_parser("build", help="build a card's dataset (and missing parents) on Ray; "
                                     "reuse what is already built")
    b.add_argument("name", help="card name (datasets/NAME.yaml)")
    b.add_argument("--source", action="append", default=[], metavar="[CARD=]PATH",
                   help="source location for the card (or for parent CARD), overriding its "
                        "source.path; repeatable")
    b.add_argument("--cards", metavar="DIR", help="cards directory (default ./datasets)")
    b.add_argument("--out-root", metavar="URL",
                   help="where datasets/NAME/KEY is written (default: the catalog home)")
    b.add_argument("--ray-address", help=RAY_ADDRESS_HELP)
    b.add_argument("--rebuild", action="store_true",
                   help="run the pipeline even when a build can be reused (parents reused)")
    b.add_argument("--dry-run", action="store_true", help="say what would be built; build "
                                                          "nothing")
    _common(b)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", help=_HOME_HELP)
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.add_argument("--read-only", action="store_true",
                   help=f"never write the catalog home (as {READ_ONLY_ENV}=1): for a home on "
                        "a mounted volume; commands that write refuse")


def run_catalog_command(args: argparse.Namespace) -> int:
    """Run ``catalog SUBCOMMAND`` or ``build``; return the exit code."""
    from shardforge.catalog.errors import RegistrationError

    command = "build" if args.command == "build" else f"catalog {args.catalog_command}"
    try:
        with read_only_env(args.read_only):
            if args.command == "build":
                return _build(args)
            return _HANDLERS[args.catalog_command](args)
    except RegistrationError as exc:    # the catalog cannot be read or record the build
        print(f"shardforge {command}: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_PROBLEM
    except ValueError as exc:           # CatalogError included: the request cannot be served
        print(f"shardforge {command}: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeError as exc:
        from shardforge.build.job import JobFailed, RejectsInStrictMode  # loaded by then

        if isinstance(exc, RejectsInStrictMode):
            print(f"shardforge {command}: {exc}", file=sys.stderr)
            return EXIT_PROBLEM
        if isinstance(exc, JobFailed):
            print(f"shardforge {command}: error: {exc}", file=sys.stderr)
            return EXIT_PROBLEM
        raise


@contextlib.contextmanager
def read_only_env(enabled: bool) -> Iterator[None]:
    """With ``enabled``, ``$SHARDFORGE_HOME_READ_ONLY=1`` for the body (every catalog
    store it opens, lookups included, is read-only), restored afterwards."""
    if not enabled:
        yield
        return
    before = os.environ.get(READ_ONLY_ENV)
    os.environ[READ_ONLY_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(READ_ONLY_ENV, None)
        else:
            os.environ[READ_ONLY_ENV] = before


# -- handlers --------------------------------------------------------------------------

def _list(args) -> int:
    from shardforge.catalog.lookup import each_build
    from shardforge.catalog.store import Store

    builds = each_build(args.home, all_versions=args.all)   # one entry in memory at a time
    if args.json:
        print_json([brief(b) for b in builds])
        return 0
    rows = [("DATASET", "PIPELINE", "SAMPLES", "CREATED", "FROM", "OUT")]
    rows += [(b.ref, b.pipeline, f"{b.samples:,}", b.created, origin_text(b), b.out)
             for b in builds]
    if len(rows) == 1:
        print(f"no builds in {Store(args.home).path}; `shardforge build NAME` or "
              "`shardforge ingest` adds some")
        return 0
    print(table(rows))
    return 0


def _show(args) -> int:
    from shardforge.catalog.lookup import get
    from shardforge.catalog.store import Store

    build = get(args.ref, args.home)
    if args.json:
        print_json(build.to_dict())
    else:
        print(format_build(build, Store(args.home).versions(build.name)))
    return 0


def _resolve(args) -> int:
    from shardforge.catalog.lookup import resolve_urls

    urls = resolve_urls(args.ref, args.format, args.split, args.home)
    if args.json:
        print_json({"ref": args.ref, "format": args.format, "split": args.split, "urls": urls})
    else:
        print("\n".join(urls))
    return 0


def _lineage(args) -> int:
    from shardforge.catalog.lookup import lineage

    chain = lineage(args.ref, args.home)
    if args.json:
        print_json([brief(b) for b in chain])
    else:
        print(format_lineage(chain))
    return 0


def _verify(args) -> int:
    from shardforge.catalog.lookup import get
    from shardforge.catalog.verifier import verify_build
    from shardforge.engine.progress import Progress

    build = get(args.ref, args.home)
    progress = Progress(f"verify {build.ref}{' --quick' if args.quick else ''}",
                        len(build.files()), unit="bytes", what="files")
    report = verify_build(build, quick=args.quick, ray_address=args.ray_address,
                          progress=progress)
    if args.json:
        print_json({"ref": report.ref, "ok": report.ok, "checked": report.checked,
                    "bytes": report.bytes, "mode": report.mode,
                    "hashed_on": report.hashed_on,
                    "problems": [vars(p) for p in report.problems]})
    else:
        for p in report.problems:
            print(f"{p.label}: {p.url}: {p.problem}")
        verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
        how = ("sizes and structure" if report.mode == "quick"
               else f"sha256 on {report.hashed_on}" if report.hashed_on != "none"
               else "sizes")
        print(f"{report.ref}: {report.checked} files, {report.bytes:,} bytes checked "
              f"({how}): {verdict}", file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else EXIT_PROBLEM


def _cards(args) -> int:
    from shardforge.catalog.cards import find_cards_dir, load_cards
    from shardforge.catalog.store import Store

    directory = find_cards_dir(args.cards)
    cards = load_cards(directory)
    store = Store(args.home)
    rows = []
    for card in cards.values():
        latest = store.get(card.name)
        source = card.source if card.source_kind != "demo" else "(built-in demo generator)"
        rows.append({"name": card.name, "pipeline": card.pipeline,
                     "source": {card.source_kind: source}, "formats": list(card.formats),
                     "latest": latest.ref if latest else None, "file": card.file,
                     "description": card.description})
    if args.json:
        print_json(rows)
        return 0
    grid = [("CARD", "PIPELINE", "SOURCE", "LATEST BUILD")]
    for r in rows:
        ((kind, value),) = r["source"].items()
        grid.append((r["name"], r["pipeline"], f"{kind}: {value}", r["latest"] or "-"))
    print(table(grid))
    print(f"{len(rows)} cards in {directory}, all valid")
    return 0


def _register(args) -> int:
    from shardforge.catalog.errors import RegistrationError
    from shardforge.catalog.register import register_build
    from shardforge.storage import resolve

    loc = resolve(args.out).join("summary.json")
    try:
        summary = json.loads(loc.read_bytes())
    except (OSError, ValueError) as exc:
        raise RegistrationError(f"cannot read {loc.url} ({exc}); give the output directory "
                                "of a finished ingest (it has summary.json)") from None
    name = args.name or summary.get("name")
    if not name:
        raise RegistrationError(f"{loc.url} names no dataset; pass --name NAME")
    build = register_build(args.home, name, summary)
    if args.json:
        print_json(brief(build))
    else:
        print(f"registered {build.ref} ({build.samples:,} samples, {build.out})")
    return 0


def _sync(args) -> int:
    from shardforge.catalog.sync import sync_catalog

    report = sync_catalog(args.url, args.home, args.max_depth)
    if args.json:
        print_json({"url": report.url, "home": report.home, "ok": report.ok,
                    "items": [vars(i) for i in report.items]})
        return 0 if report.ok else EXIT_PROBLEM
    for item in report.items:
        line = f"{item.status:<8} {item.ref or '-'}  {item.url}"
        if item.status in ("conflict", "problem"):
            print(f"{line}: {item.detail}", file=sys.stderr)
        else:
            print(line + (f" ({item.detail})" if item.detail else ""))
    counts = ", ".join(f"{report.count(s)} {s}" for s in STATUSES)
    print(f"sync {report.url}: {len(report.items)} entries: {counts} (catalog "
          f"{report.home})", file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else EXIT_PROBLEM


def train_recipe(config: str, data: str, storage: str, name: str) -> str:
    """The :data:`~shardforge.build.pipeline.TrainRecipe` the CLI hands to builds (a card's
    ``recipe:`` teacher): :func:`shardforge.train.experiment.recipe_run_dir`, imported only
    when a recipe is trained (catalog lookups import no torch)."""
    from shardforge.train.experiment import recipe_run_dir

    return recipe_run_dir(config, data, storage, name)


def _build(args) -> int:
    from shardforge.catalog.builder import build_dataset

    build = build_dataset(args.name, home=args.home, cards_dir=args.cards,
                          sources=parse_sources(args.name, args.source),
                          out_root=args.out_root, ray_address=args.ray_address,
                          rebuild=args.rebuild, dry_run=args.dry_run,
                          train_recipe=train_recipe)
    if build is None:
        if args.json:
            print_json(None)
        return 0
    if args.json:
        print_json(build.to_dict())
    else:
        print(format_build(build))
    return 0


_HANDLERS = {"list": _list, "show": _show, "resolve": _resolve, "lineage": _lineage,
             "verify": _verify, "cards": _cards, "register": _register, "sync": _sync,
             "sample": run_sample}


def parse_sources(name: str, values: Sequence[str]) -> dict[str, str]:
    """``--source`` values to ``{card: location}``: ``CARD=PATH`` (``CARD`` a dataset
    name), else ``PATH`` for the card being built."""
    from shardforge.catalog.entry import NAME_RE
    from shardforge.catalog.errors import CatalogError

    sources: dict[str, str] = {}
    for value in values:
        card, sep, path = value.partition("=")
        if not (sep and NAME_RE.match(card)):
            card, path = name, value
        if not path:
            raise CatalogError(f"--source {value!r} gives no path; write --source PATH or "
                               "--source CARD=PATH")
        if card in sources:
            raise CatalogError(f"--source given twice for {card}; give it once")
        sources[card] = path
    return sources
