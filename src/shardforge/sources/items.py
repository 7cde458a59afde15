"""Packed shard items: one sample's tuple per entry, stored by column in a few objects.

A source that lists one item per sample (class folders, ImageNet's val archive, a parent
dataset) would otherwise hold a tuple and a string object per sample in the driver for
the whole job, ~150 B each (1.28M ImageNet paths: ~190 MB, plus the allocator's
fragments; bench/scale_ingest.py). :class:`PackedItems` keeps each string column as one
NUL-joined ``str`` and each integer column as one ``bytes`` of int64, ~40-50 B per item,
and gives the tuples back when iterated. Packing never changes a spec hash: JSON writes
a :class:`PackedItems` as the list of its tuples (``ShardSpec.plain``), as it wrote the
tuple of tuples.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

SEP = "\0"      # never in a file name, a tar member name or a sample key


class PackedItems(Sequence):
    """An immutable sequence of equal-shaped tuples of ``str`` and ``int`` (int64) values.

    Equal to another :class:`PackedItems` or a ``tuple`` holding the same tuples (and
    hashed as that tuple). Iterating is cheap; indexing unpacks the columns (O(n) per
    call), so iterate where every item is wanted.
    """

    __slots__ = ("_kinds", "_columns", "_n")

    def __init__(self, rows: Iterable[tuple]) -> None:
        """Pack ``rows``: tuples of the same length whose values in one position are all
        ``str`` (without NUL) or all ``int`` in int64's range. Raises ValueError naming the
        row and the problem otherwise."""
        rows = list(rows)
        kinds = "".join("s" if isinstance(v, str) else "i" for v in rows[0]) if rows else ""
        if rows and not kinds:
            raise ValueError("items are empty tuples; pack tuples of at least one value")
        for n, row in enumerate(rows):
            got = "".join("s" if isinstance(v, str) else
                          "i" if isinstance(v, int) and not isinstance(v, bool) else "?"
                          for v in row) if isinstance(row, tuple) else "?"
            if got != kinds:
                raise ValueError(f"item {n} {row!r} is not a tuple of the first item's shape "
                                 f"({kinds!r}: s = str, i = int); pack items of one shape")
        columns: list[str | bytes] = []
        for c, kind in enumerate(kinds):
            values = [row[c] for row in rows]
            if kind == "s":
                joined = SEP.join(values)
                if joined.count(SEP) != len(values) - 1:
                    bad = next(v for v in values if SEP in v)
                    raise ValueError(f"item value {bad!r} holds a NUL character; such names "
                                     "cannot be packed (rename the file)")
                columns.append(joined)
            else:
                try:
                    columns.append(array("q", values).tobytes())
                except OverflowError as exc:
                    raise ValueError(f"an integer in column {c} of the items is outside "
                                     f"int64: {exc}; such items cannot be packed") from exc
        self._kinds = kinds
        self._columns = tuple(columns)
        self._n = len(rows)

    def _unpacked(self) -> list[Sequence[Any]]:
        """The columns: a list of str, or a memoryview of int64, per column."""
        out: list[Sequence[Any]] = []
        for kind, col in zip(self._kinds, self._columns, strict=True):
            out.append(col.split(SEP) if kind == "s" else memoryview(col).cast("q"))
        return out

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[tuple]:
        if self._n:
            yield from zip(*self._unpacked(), strict=True)

    def __getitem__(self, i):
        return tuple(self)[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PackedItems):
            return (self._n, self._kinds, self._columns) == (other._n, other._kinds,
                                                              other._columns)
        if isinstance(other, tuple):
            return tuple(self) == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"PackedItems({self._n} items of shape {self._kinds!r})"

    def __reduce__(self):
        return (_unpickle, (self._kinds, self._columns, self._n))

    def __copy__(self) -> PackedItems:
        return self

    def __deepcopy__(self, memo: dict) -> PackedItems:
        return self


def _unpickle(kinds: str, columns: tuple, n: int) -> PackedItems:
    items = PackedItems.__new__(PackedItems)
    items._kinds, items._columns, items._n = kinds, columns, n
    return items
