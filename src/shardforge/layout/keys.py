"""A split's sample keys, kept in their Arrow string array until someone asks for them.

Why not a numpy array of ``str``: a loader needs a key only to name a sample in a warning
or an error, yet making 1.28M Python strings cost 0.16 s of every rank's start-up and
~80 B per row of its memory (docs/scale.md, "Loader start-up"). :class:`Keys` reads as
the array did for what callers do with it: ``keys[p]`` is a ``str``, ``keys[positions]``
(integers or a mask) a numpy object array, ``keys.tolist()``, ``len``, iteration, and
``np.asarray(keys)`` (made once, then kept).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from shardforge.formats.arrow_rows import int64_array


class Keys:
    """The keys of one split's rows, position ``p`` -> ``str`` (see the module docstring)."""

    __slots__ = ("_array", "_objects")

    def __init__(self, column: pa.Array | pa.ChunkedArray) -> None:
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if array.type != pa.string():
            array = array.cast(pa.string())
        self._array: pa.Array = array
        self._objects: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._array)

    def __getitem__(self, where):
        """``str`` for an integer position; a numpy object array for a slice, an integer
        array or a boolean mask (numpy's rules: IndexError out of range)."""
        if isinstance(where, (int, np.integer)):
            p = int(where)
            n = len(self._array)
            if not -n <= p < n:
                raise IndexError(f"key position {p} is out of range for {n} rows")
            return self._array[p % n].as_py()
        if self._objects is not None:
            return self._objects[where]
        if isinstance(where, slice):
            return _objects(self._array[where].to_pylist())
        positions = np.asarray(where)
        if positions.dtype == bool:
            if positions.shape != (len(self._array),):
                raise IndexError(f"mask of shape {positions.shape} for {len(self)} keys")
            positions = np.flatnonzero(positions)
        positions = positions.astype(np.int64, copy=False)
        n = len(self._array)
        if positions.size and (positions.min() < -n or positions.max() >= n):
            raise IndexError(f"key positions out of range for {n} rows")
        positions = np.where(positions < 0, positions + n, positions)
        taken = self._array.take(int64_array(positions.ravel()))
        return _objects(taken.to_pylist()).reshape(positions.shape)

    def arrow(self) -> pa.Array:
        """The keys as their Arrow string array (no copy; do not modify its buffers)."""
        return self._array

    def __iter__(self) -> Iterator[str]:
        return iter(self.tolist())

    def tolist(self) -> list[str]:
        """Every key, in position order."""
        return self._array.to_pylist()

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if self._objects is None:
            self._objects = _objects(self._array.to_pylist())
        return self._objects if dtype is None else self._objects.astype(dtype)

    def __repr__(self) -> str:
        head = ", ".join(repr(k) for k in self._array.slice(0, 3).to_pylist())
        return f"Keys([{head}{', ...' if len(self) > 3 else ''}], {len(self)} rows)"


def _objects(values: list[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out
