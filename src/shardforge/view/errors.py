"""The view's one error type: something a URL names does not exist."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class NotFound(LookupError):
    """A URL names a dataset, version, split, class, key or page that does not exist.

    ``message`` says what was asked for and what exists; ``suggestions`` are
    ``(label, href)`` links to close matches (the 404 page lists them)."""

    def __init__(self, message: str, suggestions: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.suggestions = list(suggestions)


def close_matches(word: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """Up to ``n`` of ``choices`` closest to ``word`` (:func:`difflib.get_close_matches`,
    cutoff 0.5), best first."""
    return difflib.get_close_matches(word, sorted(set(choices)), n=n, cutoff=0.5)
