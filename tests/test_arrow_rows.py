"""formats.arrow_rows: the same tables as pyarrow's own constructors, without pandas."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa

from shardforge.build.shard import INDEX_SCHEMA
from shardforge.formats.arrow_rows import int64_array, rows_to_table


def test_rows_to_table_equals_from_pylist():
    rows = [{"key": "ünï/cødé \"q\"", "label": 2**40, "split": "train", "shard": "s.tar",
             "offset": 0, "size": 3, "format": "jpg", "width": 2**31 - 1, "height": 1,
             "orig_width": 5, "orig_height": 6, "sha256": "ab" * 32, "origin": None},
            {"key": "k2", "label": -1, "split": "val", "shard": "t.tar", "offset": 512,
             "size": 9, "format": "png", "width": -2**31, "height": 2, "orig_width": 7,
             "orig_height": 8, "sha256": "cd" * 32, "origin": "/a/b.JPEG"}]
    got = rows_to_table(rows, INDEX_SCHEMA)
    assert got.schema == INDEX_SCHEMA
    assert got.equals(pa.Table.from_pylist(rows, schema=INDEX_SCHEMA))
    assert rows_to_table([], INDEX_SCHEMA).equals(INDEX_SCHEMA.empty_table())


def test_int64_array():
    assert int64_array(np.arange(3, 8)).equals(pa.array(range(3, 8), pa.int64()))
    assert int64_array(np.array([], np.int64)).equals(pa.array([], pa.int64()))


def test_building_an_index_never_imports_pandas():
    code = ("import sys; from shardforge.build.shard import _parquet_bytes; "
            "from shardforge.formats.arrow_rows import int64_array; import numpy as np; "
            "_parquet_bytes([]); int64_array(np.arange(4)); "
            "assert 'pandas' not in sys.modules, 'pandas was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
