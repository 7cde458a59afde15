"""Secret parameters (e.g. an unlearnable dataset's private key): used, never stored or shown.

A card names where a secret comes from (``{env: VAR}`` or ``{file: PATH}``), never its
value. The catalog keeps a fingerprint (PBKDF2-SHA256 with a fixed salt, 16 hex digits),
enough to tell whether two builds used the same key. Secrets shorter than
:data:`MIN_SECRET_CHARS` are refused: any fingerprint of a short secret can be brute-forced.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping

FINGERPRINT_SALT = b"shardforge-secret-fingerprint-v1"
FINGERPRINT_ITERATIONS = 100_000
MIN_SECRET_CHARS = 16


def fingerprint(value: str) -> str:
    """``pbkdf2-sha256:<16 hex>`` of a secret value (deterministic, one-way)."""
    digest = hashlib.pbkdf2_hmac("sha256", value.encode("utf-8"), FINGERPRINT_SALT,
                                 FINGERPRINT_ITERATIONS)
    return "pbkdf2-sha256:" + digest.hex()[:16]


class Secrets(Mapping[str, str]):
    """Secret values by parameter name; ``repr``/``str`` show fingerprints only."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values = dict(values or {})
        self._fingerprints = {k: fingerprint(v) for k, v in self._values.items()}

    def __getitem__(self, name: str) -> str:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Secrets({self._fingerprints})"

    __str__ = __repr__

    def fingerprints(self) -> dict[str, str]:
        """Parameter name -> fingerprint, sorted by name."""
        return dict(sorted(self._fingerprints.items()))

    def scrub(self, obj):
        """A copy of JSON-like ``obj`` in which every string containing a secret value, and
        every number equal to one, is replaced by ``<secret NAME pbkdf2-sha256:...>``."""
        if not self._values:
            return obj
        if isinstance(obj, dict):
            return {self.scrub(k): self.scrub(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.scrub(v) for v in obj]
        if isinstance(obj, bool) or obj is None:
            return obj
        if isinstance(obj, (str, int, float)):
            text = obj if isinstance(obj, str) else str(obj)
            for name, value in self._values.items():
                if (value in text) if isinstance(obj, str) else (value == text):
                    return f"<secret {name} {self._fingerprints[name]}>"
        return obj
