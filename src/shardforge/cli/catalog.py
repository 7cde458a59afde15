"""``shardforge catalog ...`` and ``shardforge build``: argument parsing and printing.

Errors in the request (unknown dataset, invalid card, pipeline not implemented) print one
line and exit 2; ``verify`` exits 1 when a file is missing or corrupt; a catalog that cannot
be read or written (damaged, newer schema, read-only home for ``register``, locked past the
timeout, full disk: :class:`~shardforge.catalog.store.CatalogUnavailable`) prints one line
naming the file and the fix and exits 1; success exits 0.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence

from shardforge.catalog.home import DEFAULT_HOME, HOME_ENV
from shardforge.cli.sample import add_sample_parser, run_sample
from shardforge.engine import RAY_ADDRESS_HELP

EXIT_PROBLEM = 1
EXIT_USAGE = 2
_HOME_HELP = f"catalog home (default: ${HOME_ENV}, else {DEFAULT_HOME})"


def add_catalog_commands(sub: argparse._SubParsersAction, parser_class: type) -> None:
    """Add ``catalog`` (with its subcommands) and ``build`` to the ``shardforge`` parser."""
    cat = sub.add_parser("catalog", help="look up datasets: list, show, resolve, lineage, "
                                         "verify, cards, register, sample")
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
    _common(p)
    p = csub.add_parser("cards", help="validate and list the dataset cards (datasets/*.yaml)")
    p.add_argument("--cards", metavar="DIR", help="cards directory (default ./datasets)")
    _common(p)
    p = csub.add_parser("register", help="register a finished ingest output (its summary.json)")
    p.add_argument("out", help="output directory or s3:// URL of a finished ingest")
    p.add_argument("--name", help="dataset name (default: the summary's)")
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


def run_catalog_command(args: argparse.Namespace) -> int:
    """Run ``catalog SUBCOMMAND`` or ``build``; return the exit code."""
    from shardforge.catalog.errors import RegistrationError

    command = "build" if args.command == "build" else f"catalog {args.catalog_command}"
    try:
        if args.command == "build":
            return _build(args)
        return _HANDLERS[args.catalog_command](args)
    except RegistrationError as exc:    # the catalog cannot be read or record the build
        print(f"shardforge {command}: error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_PROBLEM
    except ValueError as exc:           # CatalogError included: the request cannot be served
        print(f"shardforge {command}: error: {_one_line(str(exc))}", file=sys.stderr)
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


# -- handlers --------------------------------------------------------------------------

def _list(args) -> int:
    from shardforge.catalog.lookup import list_builds
    from shardforge.catalog.store import Store

    builds = list_builds(args.home, all_versions=args.all)
    if args.json:
        _print_json([brief(b) for b in builds])
        return 0
    if not builds:
        print(f"no builds in {Store(args.home).path}; `shardforge build NAME` or "
              "`shardforge ingest` adds some")
        return 0
    rows = [("DATASET", "PIPELINE", "SAMPLES", "CREATED", "FROM", "OUT")]
    rows += [(b.ref, b.pipeline, f"{b.samples:,}", b.created, _from(b), b.out) for b in builds]
    print(_table(rows))
    return 0


def _show(args) -> int:
    from shardforge.catalog.lookup import get
    from shardforge.catalog.store import Store

    build = get(args.ref, args.home)
    if args.json:
        _print_json(build.to_dict())
    else:
        print(format_build(build, Store(args.home).versions(build.name)))
    return 0


def _resolve(args) -> int:
    from shardforge.catalog.lookup import resolve_urls

    urls = resolve_urls(args.ref, args.format, args.split, args.home)
    if args.json:
        _print_json({"ref": args.ref, "format": args.format, "split": args.split, "urls": urls})
    else:
        print("\n".join(urls))
    return 0


def _lineage(args) -> int:
    from shardforge.catalog.lookup import lineage

    chain = lineage(args.ref, args.home)
    if args.json:
        _print_json([brief(b) for b in chain])
    else:
        print(format_lineage(chain))
    return 0


def _verify(args) -> int:
    from shardforge.catalog.lookup import get
    from shardforge.catalog.verifier import verify_build

    build = get(args.ref, args.home)
    report = verify_build(build)
    if args.json:
        _print_json({"ref": report.ref, "ok": report.ok, "checked": report.checked,
                     "bytes": report.bytes,
                     "problems": [vars(p) for p in report.problems]})
    else:
        for p in report.problems:
            print(f"{p.label}: {p.url}: {p.problem}")
        verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
        print(f"{report.ref}: {report.checked} files, {report.bytes:,} bytes checked: {verdict}",
              file=sys.stdout if report.ok else sys.stderr)
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
        _print_json(rows)
        return 0
    table = [("CARD", "PIPELINE", "SOURCE", "LATEST BUILD")]
    for r in rows:
        ((kind, value),) = r["source"].items()
        table.append((r["name"], r["pipeline"], f"{kind}: {value}", r["latest"] or "-"))
    print(_table(table))
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
        _print_json(brief(build))
    else:
        print(f"registered {build.ref} ({build.samples:,} samples, {build.out})")
    return 0


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
            _print_json(None)
        return 0
    if args.json:
        _print_json(build.to_dict())
    else:
        print(format_build(build))
    return 0


def _per_class(counts: dict, classes: list[str]) -> str:
    """Every class's count up to 20 classes; above, min / median / max with the classes."""
    named = sorted(((classes[int(k)] if int(k) < len(classes) else str(k)), int(v))
                   for k, v in counts.items())
    if len(named) <= 20:
        return ", ".join(f"{c}={v}" for c, v in named) or "-"
    by = sorted(named, key=lambda cv: cv[1])
    median = sorted(v for _, v in named)[len(named) // 2]
    return (f"{len(named)} classes, min {by[0][1]:,} ({by[0][0]}), median {median:,}, "
            f"max {by[-1][1]:,} ({by[-1][0]})")


_HANDLERS = {"list": _list, "show": _show, "resolve": _resolve, "lineage": _lineage,
             "verify": _verify, "cards": _cards, "register": _register, "sample": run_sample}


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


# -- formatting ------------------------------------------------------------------------

def brief(build) -> dict:
    """The short JSON form of a build (no file lists)."""
    return {"ref": build.ref, "name": build.name, "version": build.version,
            "created": build.created, "pipeline": build.pipeline, "samples": build.samples,
            "splits": {s: v["samples"] for s, v in sorted(build.splits.items())},
            "parent": build.parent, "source": build.source, "card_hash": build.card_hash,
            "out": build.out, "formats": sorted(build.formats)}


def format_build(build, versions: Sequence[int] = ()) -> str:
    """A multi-line, human-readable description of a build."""
    latest = f"  (versions: {', '.join(f'v{v}' for v in versions)})" if versions else ""
    card = build.card or {}
    lines = [f"{build.ref}{latest}"]
    if card.get("description"):
        lines.append(f"  {_one_line(card['description'])}")
    lines.append(f"  pipeline   {build.pipeline}"
                 + (f"   card hash {build.card_hash[:12]}" if build.card_hash else "")
                 + f"   {build.code_version}")
    lines.append(f"  created    {build.created}  (registered {build.registered})")
    lines.append(f"  from       {_from(build)}")
    if build.parent and build.source:
        lines.append(f"  read       {build.source}")
    params = " ".join(f"{k}={_short(v)}" for k, v in sorted(build.params.items()))
    lines.append(f"  params     {params or '-'}")
    for name, fp in sorted(build.secrets.items()):
        lines.append(f"  secret     {name}: {fp} (value not stored)")
    for name, rec in sorted((build.inputs or {}).items()):
        where = rec["location"] + (f" ({rec['file']})" if rec.get("file") else "")
        lines.append(f"  input      {name}: {where} {rec['digest'][:rec['digest'].index(':') + 13]}")
    lines.append(f"  samples    {build.samples:,}; {build.rejects.get('count', 0):,} rejected "
                 f"({build.rejects.get('url', '-')}); {build.bytes_per_sample:,} B/sample")
    classes = build.classes or []
    for split, s in sorted(build.splits.items()):
        lines.append(f"  {split:<10} {s['samples']:,} samples in {s.get('shards', '?')} shards; "
                     f"per class: {_per_class(s.get('per_class', {}), classes)}")
    for split, recs in sorted(build.formats.get("wds", {}).items()):
        size = sum(r["size"] for r in recs)
        lines.append(f"  wds[{split}]  {len(recs)} tars, {size:,} B: {_pattern(recs)}")
    for split, rec in sorted(build.formats.get("beton", {}).items()):
        lines.append(f"  beton[{split}]  {rec['size']:,} B: {rec['url']}")
    if build.index:
        lines.append(f"  index      {build.index['url']}")
    if card.get("licence"):
        lines.append(f"  licence    {_one_line(card['licence'])}")
    if card.get("citation"):
        lines.append(f"  citation   {_one_line(card['citation'])[:200]}")
    return "\n".join(lines)


def format_lineage(chain) -> str:
    """The build and its parents as a tree, the source location under the root."""
    lines = []
    for depth, b in enumerate(chain):
        pad = "   " * (depth - 1) + "└─ " if depth else ""
        lines.append(f"{pad}{b.ref}  {b.pipeline}  {b.created}  {b.samples:,} samples")
    root = chain[-1]
    pad = "   " * (len(chain) - 1) + "└─ "
    lines.append(f"{pad}source: {root.source or '(unknown)'}")
    return "\n".join(lines)


_SHARD_RE = re.compile(r"^(.*-)(\d{6})\.tar(\?.*)?$")


def _pattern(recs: list[dict]) -> str:
    """``PREFIX{000000..000009}.tar`` when the tars are numbered consecutively, else the
    first URL and a count."""
    matches = [_SHARD_RE.match(r["url"]) for r in recs]
    if recs and all(matches):
        heads = {(m.group(1), m.group(3) or "") for m in matches}
        numbers = [int(m.group(2)) for m in matches]
        if len(heads) == 1 and numbers == list(range(numbers[0], numbers[0] + len(numbers))):
            ((prefix, query),) = heads
            if len(recs) == 1:
                return recs[0]["url"]
            return f"{prefix}{{{numbers[0]:06d}..{numbers[-1]:06d}}}.tar{query}"
    return f"{recs[0]['url']} (+{len(recs) - 1} more)" if recs else "-"


def _from(build) -> str:
    return f"parent {build.parent}" if build.parent else f"source {build.source}"


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _table(rows: list[tuple]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))
