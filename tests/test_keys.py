"""layout/keys.Keys reads like the numpy object array of str it replaces."""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pytest

from shardforge.layout.keys import Keys

VALUES = [f"k{i:03d}-{'x' * (i % 5)}" for i in range(50)]


@pytest.fixture(params=["array", "chunked"])
def keys(request) -> Keys:
    if request.param == "array":
        return Keys(pa.array(VALUES))
    return Keys(pa.chunked_array([pa.array(VALUES[:17]), pa.array(VALUES[17:])]))


def test_positions_slices_arrays_and_masks_match_numpy(keys):
    ref = np.array(VALUES, dtype=object)
    assert len(keys) == 50
    for p in (0, 7, 49, -1, -50, np.int64(3), np.int32(-2)):
        assert keys[p] == ref[p] and isinstance(keys[p], str)
    for where in (slice(3, 9), slice(None, None, -7), np.array([5, 0, 5, -1]),
                  np.array([[1, 2], [3, 4]]), np.arange(50) % 3 == 0, np.array([], np.int64),
                  [4, 2]):
        got, want = keys[where], ref[where]
        assert isinstance(got, np.ndarray) and got.dtype == object
        assert got.shape == want.shape and got.tolist() == want.tolist()
    assert keys.tolist() == VALUES and list(keys) == VALUES
    assert np.asarray(keys).tolist() == VALUES
    assert np.argsort(keys, kind="stable").tolist() == np.argsort(ref, kind="stable").tolist()
    assert (keys[np.array([1, 2, 3])] == VALUES[2]).tolist() == [False, True, False]


@pytest.mark.parametrize("where", [50, -51, np.array([0, 50]), np.array([-51]),
                                   np.ones(49, bool)])
def test_out_of_range_raises_index_error(keys, where):
    with pytest.raises(IndexError):
        keys[where]


def test_after_asarray_the_same_answers_and_pickles():
    keys = Keys(pa.array(VALUES))
    before = keys[np.array([3, 1])].tolist()
    np.asarray(keys)
    assert keys[np.array([3, 1])].tolist() == before and keys[3] == VALUES[3]
    again = pickle.loads(pickle.dumps(keys))
    assert again.tolist() == VALUES and again[-1] == VALUES[-1]
    assert "k000" in repr(keys) and "50 rows" in repr(keys)


def test_empty_and_non_string_columns():
    empty = Keys(pa.array([], pa.string()))
    assert len(empty) == 0 and empty.tolist() == [] and empty[np.array([], int)].size == 0
    with pytest.raises(IndexError):
        empty[0]
    assert Keys(pa.array(["a", "b"], pa.large_string()))[1] == "b"
