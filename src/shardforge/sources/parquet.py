"""Parquet files with image bytes and a label column, local or s3://.

The image column holds encoded image bytes, or a struct with a ``bytes`` member (the
Hugging Face ``datasets`` Image layout). Rows are cut into shards of
``options.shard_size`` (or the automatic size for the split) in stored order (row counts
come from the file footers, so planning reads no image data). The split is taken from each
file's path when it names one (``train-00000.parquet``, ``val/part.parquet``), else
``--split``.

Damage stays local: a file whose footer cannot be read, or that lacks a named column, is
rejected whole at planning (the job goes on with the other files; it stops with one line
only when no file is usable). Rows are read in batches of :data:`BATCH_ROWS` within one row
group at a time, streaming pages (so one huge row group is never held in memory whole);
a batch that fails to decode (a corrupt page) rejects the rest of that row group's rows
in the shard, each by ``FILE#ROW`` with the row group named, and reading goes on with the
next row group.

Keys: ``--key-column`` values name samples (``FILE#VALUE``). Planning reads that column
alone (cheap) and rejects a repeated key (the second and later rows; the first origin is
named), also across the shards of one file: those rows go into their spec's ``skip``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from shardforge.sources.base import (
    RawSample,
    Reject,
    ShardSpec,
    SourceOptions,
    SourcePlan,
    list_inputs,
    make_key,
    open_input,
    shard_size_for,
    split_from_name,
)
from shardforge.storage import Location, resolve

KIND = "parquet"
BATCH_ROWS = 64                  # rows decoded at a time
READ_BUFFER = 1 << 20            # stream column chunks through a 1 MiB buffer
ERRORS = (OSError, pa.ArrowException, ValueError)


def plan(url: str, options: SourceOptions) -> SourcePlan:
    """Shard specs of consecutive row ranges, per split, files in sorted path order."""
    root, files, stamps, refused = list_inputs(url, ".parquet")
    per_split: dict[str, int] = {}
    counted = []   # (rel, split, rows): footers first, so the auto shard size sees the split
    rejects = [Reject(rel, why, split_from_name(rel, options.default_split))
               for rel, why in refused]
    first_seen: dict[str, str] = {}     # sample key -> origin of its first row
    skip: dict[str, list[int]] = {}     # rel -> rows rejected as duplicate keys
    for path in files:
        rel = posixpath.relpath(path, root.path)
        split = split_from_name(rel, options.default_split)
        loc = root.join(rel)
        try:
            with open_input(loc, seekable=True) as f:
                pf = pq.ParquetFile(f)
                num_rows = pf.metadata.num_rows
                names = pf.schema_arrow.names
                missing = [c for c in (options.image_column, options.label_column,
                                       options.key_column) if c is not None and c not in names]
                if not missing and options.key_column:
                    skip[rel] = _duplicate_rows(pf, rel, split, options.key_column,
                                                first_seen, rejects)
        except ERRORS as exc:
            rejects.append(Reject(rel, f"unreadable parquet file ({type(exc).__name__}: "
                                  f"{exc}); none of its rows are read", split))
            continue
        if missing:
            rejects.append(Reject(rel, f"no column(s) {missing} (has {names}); name the "
                                  "columns with --image-column / --label-column / "
                                  "--key-column; none of its rows are read", split))
            continue
        counted.append((rel, split, num_rows, stamps[path]))
    if not counted:
        shown = "; ".join(f"{r.origin}: {r.reason}" for r in rejects[:3])
        raise ValueError(f"source {url!r}: no usable parquet file ({shown})")
    split_rows: dict[str, int] = {}
    for _rel, split, rows, _stamp in counted:
        split_rows[split] = split_rows.get(split, 0) + rows
    shards = []
    for rel, split, num_rows, stamp in counted:
        size = shard_size_for(options, split_rows[split])
        if size < 1:
            raise ValueError(f"shard size {size} must be >= 1")
        dup = skip.get(rel, [])
        for start in range(0, num_rows, size):
            index = per_split.get(split, 0)
            per_split[split] = index + 1
            stop = min(num_rows, start + size)
            shards.append(ShardSpec(KIND, root.url, split, index, (rel, start, stop), stamp,
                                    tuple(r for r in dup if start <= r < stop)))
    return SourcePlan(KIND, url, [], shards, rejects)


def _origin(rel: str, row: int, key_value) -> str:
    return f"{rel}#{row}" if key_value is None else f"{rel}#{key_value}"


def _duplicate_rows(pf: pq.ParquetFile, rel: str, split: str, column: str,
                    first_seen: dict[str, str], rejects: list[Reject]) -> list[int]:
    """Rows of ``pf`` whose sample key was seen before (here or in an earlier file); each
    gets a reject naming the first origin. A row group whose key column cannot be read is
    left to the reader (which rejects its rows by position)."""
    dup, first_row = [], 0
    for g in range(pf.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        try:
            values = pf.read_row_group(g, columns=[column]).column(0).to_pylist()
        except ERRORS:
            first_row += n
            continue
        for i, value in enumerate(values):
            row, origin = first_row + i, _origin(rel, first_row + i, value)
            key = make_key(origin)
            if key in first_seen:
                dup.append(row)
                rejects.append(Reject(f"{rel}#{row}", f"duplicate sample key {key!r} "
                                      f"(key column value {value!r}): first read from "
                                      f"{first_seen[key]}; this row is not read", split))
            else:
                first_seen[key] = f"{rel}#{row}"
        first_row += n
    return dup


def read(spec: ShardSpec, options: SourceOptions) -> Iterator[RawSample | Reject]:
    """Read rows [start, stop) of one file: only the row groups that overlap them, in
    batches; rows in ``spec.skip`` (duplicate keys, rejected at planning) are not read."""
    rel, start, stop = spec.items
    loc = resolve(spec.source).join(rel)
    try:
        f = open_input(loc, seekable=True)
    except OSError as exc:
        yield from _lost(rel, range(start, stop), f"unreadable file: {exc}", spec.split)
        return
    with f:
        yield from _read_rows(f, loc, rel, start, stop, spec, options)


def _read_rows(f, loc: Location, rel: str, start: int, stop: int, spec: ShardSpec,
               options: SourceOptions) -> Iterator[RawSample | Reject]:
    columns = [options.image_column, options.label_column]
    if options.key_column:
        columns.append(options.key_column)
    skip = set(spec.skip)
    try:
        pf = pq.ParquetFile(f, buffer_size=READ_BUFFER)
        sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]
    except ERRORS as exc:
        yield from _lost(rel, range(start, stop), f"unreadable parquet footer of "
                         f"{loc.url} ({type(exc).__name__}: {exc})", spec.split)
        return
    first_row = 0
    for g, n in enumerate(sizes):
        lo, hi = max(start, first_row), min(stop, first_row + n)
        if lo < hi:
            yield from _read_group(pf, g, first_row, lo, hi, columns, rel, skip, spec.split,
                                   options)
        first_row += n


def _read_group(pf: pq.ParquetFile, g: int, first_row: int, lo: int, hi: int,
                columns: list[str], rel: str, skip: set[int], split: str,
                options: SourceOptions) -> Iterator[RawSample | Reject]:
    """Rows [lo, hi) of row group ``g`` (which starts at ``first_row``)."""
    row = first_row
    try:
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, row_groups=[g], columns=columns):
            a, b = max(lo, row), min(hi, row + batch.num_rows)
            if a < b:
                rows = batch.slice(a - row, b - a).to_pylist()
                yield from _rows(rows, rel, a, split, options, skip)
            row += batch.num_rows
            if row >= hi:
                return
    except ERRORS as exc:
        lost = range(max(lo, row), hi)
        yield from _lost(rel, [r for r in lost if r not in skip],
                         f"row group {g} unreadable from row {lost.start} "
                         f"({type(exc).__name__}: {exc}); rows {lost.start}..{hi - 1} of "
                         "this row group in this shard are lost", split)


def _lost(rel: str, rows, reason: str, split: str) -> Iterator[Reject]:
    for r in rows:
        yield Reject(f"{rel}#{r}", reason, split)


def _rows(rows: list[dict], rel: str, first: int, split: str, options: SourceOptions,
          skip: set[int] = frozenset()) -> Iterator[RawSample | Reject]:
    for i, row in enumerate(rows):
        if first + i in skip:
            continue
        origin = f"{rel}#{first + i}"
        if options.key_column and row.get(options.key_column) is not None:
            origin = f"{rel}#{row[options.key_column]}"
        image = row[options.image_column]
        if isinstance(image, dict):
            image = image.get("bytes")
        label = row[options.label_column]
        if not isinstance(image, bytes | bytearray):
            yield Reject(origin, f"image column {options.image_column!r} holds no bytes", split)
        elif not isinstance(label, int) or isinstance(label, bool):
            yield Reject(origin, f"label {label!r} is not an integer", split)
        else:
            yield RawSample(make_key(origin), label, origin, bytes(image))
