"""Parquet files with image bytes and a label column, local or s3://.

The image column holds encoded image bytes, or a struct with a ``bytes`` member (the
Hugging Face ``datasets`` Image layout). Rows are cut into shards of
``options.shard_size`` (or the automatic size for the split) in stored order (row counts come from the file footers, so
planning reads no data). The split is taken from each file's path when it names one
(``train-00000.parquet``, ``val/part.parquet``), else ``--split``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

import pyarrow.parquet as pq

from shardforge.sources.base import (
    RawSample,
    Reject,
    ShardSpec,
    SourceOptions,
    SourcePlan,
    list_inputs,
    make_key,
    shard_size_for,
    split_from_name,
)
from shardforge.storage import resolve

KIND = "parquet"


def plan(url: str, options: SourceOptions) -> SourcePlan:
    """Shard specs of consecutive row ranges, per split, files in sorted path order."""
    root, files = list_inputs(url, ".parquet")
    per_split: dict[str, int] = {}
    counted = []   # (rel, split, rows): footers first, so the auto shard size sees the split
    for path in files:
        rel = posixpath.relpath(path, root.path)
        with root.fs.open_input_file(path) as f:
            pf = pq.ParquetFile(f)
            num_rows = pf.metadata.num_rows
            names = pf.schema_arrow.names
        for column in (options.image_column, options.label_column, options.key_column):
            if column is not None and column not in names:
                raise ValueError(f"{root.join(rel).url}: no column {column!r} (has {names}); "
                                 "name the columns with --image-column / --label-column / --key-column")
        counted.append((rel, split_from_name(rel, options.default_split), num_rows))
    split_rows: dict[str, int] = {}
    for _rel, split, rows in counted:
        split_rows[split] = split_rows.get(split, 0) + rows
    shards = []
    for rel, split, num_rows in counted:
        size = shard_size_for(options, split_rows[split])
        if size < 1:
            raise ValueError(f"shard size {size} must be >= 1")
        for start in range(0, num_rows, size):
            index = per_split.get(split, 0)
            per_split[split] = index + 1
            shards.append(ShardSpec(KIND, root.url, split, index,
                                    (rel, start, min(num_rows, start + size))))
    return SourcePlan(KIND, url, [], shards, [])


def read(spec: ShardSpec, options: SourceOptions) -> Iterator[RawSample | Reject]:
    """Read rows [start, stop) of one file: only the row groups that overlap them."""
    rel, start, stop = spec.items
    loc = resolve(spec.source).join(rel)
    columns = [options.image_column, options.label_column]
    if options.key_column:
        columns.append(options.key_column)
    with loc.fs.open_input_file(loc.path) as f:
        pf = pq.ParquetFile(f)
        first_row = 0
        for g in range(pf.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            lo, hi = max(start, first_row), min(stop, first_row + n)
            if lo < hi:
                table = pf.read_row_group(g, columns=columns).slice(lo - first_row, hi - lo)
                yield from _rows(table.to_pylist(), rel, lo, spec.split, options)
            first_row += n


def _rows(rows: list[dict], rel: str, first: int, split: str,
          options: SourceOptions) -> Iterator[RawSample | Reject]:
    for i, row in enumerate(rows):
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
