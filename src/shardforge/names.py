"""Names that become parts of paths: split, dataset and shard names, relative file paths.

Every name read from a flag, a card or a foreign file (``summary.json``, ``index.parquet``)
that shardforge later joins into a path is checked here first, at the boundary where it is
read: letters, digits, ``_`` and ``-`` (starting with a letter or digit), so a name can never
climb out of the output or dataset root (``..``, ``/``, ``\\``, absolute paths, NUL).
Errors are :class:`UnsafeNameError` (a ValueError) naming where the value came from, the
value and the fix.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

#: A split or dataset name: what becomes one token of a file name (``NAME-SPLIT-000000.tar``).
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
#: One file name: a name, then dot-separated extensions (``NAME-train-000000.tar``).
FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9][A-Za-z0-9_-]*)*$")
_RULE = "letters, digits, '_' and '-' only, starting with a letter or digit"


class UnsafeNameError(ValueError):
    """A name or relative path read from an input would not stay inside its root."""


def check_name(value: object, what: str, source: str, fix: str) -> str:
    """``value`` if it is a safe name (:data:`NAME_RE`); else :class:`UnsafeNameError`:
    ``SOURCE: WHAT 'VALUE' is not a safe name (rule); FIX``."""
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise UnsafeNameError(f"{source}: {what} {value!r} is not a safe name ({_RULE}); {fix}")
    return value


def check_file_name(value: object, what: str, source: str, fix: str) -> str:
    """``value`` if it is one safe file name (:data:`FILE_NAME_RE`: no directory part, no
    ``..``); else :class:`UnsafeNameError` naming ``source``, the value and ``fix``."""
    if not isinstance(value, str) or not FILE_NAME_RE.match(value):
        raise UnsafeNameError(f"{source}: {what} {value!r} is not a plain file name ({_RULE}, "
                              f"then '.ext'; no '/' or '..'); {fix}")
    return value


def check_relative_path(value: object, what: str, source: str, fix: str) -> str:
    """``value`` if it is a relative path of safe file names joined by ``/`` (so it stays
    below the root it is joined to); else :class:`UnsafeNameError`."""
    parts = value.split("/") if isinstance(value, str) else [None]
    if not all(isinstance(p, str) and FILE_NAME_RE.match(p) for p in parts):
        raise UnsafeNameError(f"{source}: {what} {value!r} is not a relative path below the "
                              f"dataset (each part {_RULE}, then '.ext'; no '..', no leading "
                              f"'/'); {fix}")
    return value


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean: a, b?"`` for close matches of ``word`` among ``choices``, or ``""``."""
    close = difflib.get_close_matches(word, sorted(set(choices)), n=3, cutoff=0.6)
    return f"; did you mean: {', '.join(close)}?" if close else ""
