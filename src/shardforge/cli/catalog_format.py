"""How ``shardforge catalog`` prints builds: tables, the ``show`` and ``lineage`` text,
the short JSON form, and one-line messages."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence


def per_class(counts: dict, classes: list[str]) -> str:
    """Every class's count up to 20 classes; above, min / median / max with the classes."""
    named = sorted(((classes[int(k)] if int(k) < len(classes) else str(k)), int(v))
                   for k, v in counts.items())
    if len(named) <= 20:
        return ", ".join(f"{c}={v}" for c, v in named) or "-"
    by = sorted(named, key=lambda cv: cv[1])
    median = sorted(v for _, v in named)[len(named) // 2]
    return (f"{len(named)} classes, min {by[0][1]:,} ({by[0][0]}), median {median:,}, "
            f"max {by[-1][1]:,} ({by[-1][0]})")


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
        lines.append(f"  {one_line(card['description'])}")
    lines.append(f"  pipeline   {build.pipeline}"
                 + (f"   card hash {build.card_hash[:12]}" if build.card_hash else "")
                 + f"   {build.code_version}")
    lines.append(f"  created    {build.created}  (registered {build.registered})")
    lines.append(f"  from       {origin_text(build)}")
    if build.parent and build.source:
        lines.append(f"  read       {build.source}")
    params = " ".join(f"{k}={short(v)}" for k, v in sorted(build.params.items()))
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
                     f"per class: {per_class(s.get('per_class', {}), classes)}")
    for split, recs in sorted(build.formats.get("wds", {}).items()):
        size = sum(r["size"] for r in recs)
        lines.append(f"  wds[{split}]  {len(recs)} tars, {size:,} B: {shard_pattern(recs)}")
    for split, rec in sorted(build.formats.get("beton", {}).items()):
        lines.append(f"  beton[{split}]  {rec['size']:,} B: {rec['url']}")
    if build.index:
        lines.append(f"  index      {build.index['url']}")
    if card.get("licence"):
        lines.append(f"  licence    {one_line(card['licence'])}")
    if card.get("citation"):
        lines.append(f"  citation   {one_line(card['citation'])[:200]}")
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


def shard_pattern(recs: list[dict]) -> str:
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


def origin_text(build) -> str:
    return f"parent {build.parent}" if build.parent else f"source {build.source}"


def short(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def table(rows: list[tuple]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))
