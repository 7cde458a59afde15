"""HMAC-SHA256 under a private key, without holding the key: what CUDA tasks receive.

The CUDA variant draws its class filters and per-sample poison decisions from
``HMAC-SHA256(key, message)``. Shipping the key inside the transform would put it, in plain
text, into every Ray task spec (pickled arguments, object store, spilled objects, a
worker's crash dump). :class:`KeyedHmac` instead holds the two SHA-256 *midstates* of
HMAC (the compression function's state after ``key XOR ipad`` and after ``key XOR opad``):
one-way functions of the key that compute exactly ``hmac.new(key, message,
sha256).digest()`` for any message, so outputs stay byte-identical, while the key itself
never leaves the driver. (The midstates are as powerful as the key for this HMAC: they are
secret too, but they are not the key, its hex, or its base64.)

Speed: the finishing compressions run in pure Python, about 2 per call (tens of
microseconds); callers cache per class and skip the draw when ``p`` is 0 or 1.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass, field

_MASK = 0xFFFFFFFF
_BLOCK = 64


def _primes(n: int) -> list[int]:
    out, c = [], 2
    while len(out) < n:
        if all(c % p for p in out if p * p <= c):
            out.append(c)
        c += 1
    return out


def _icbrt(n: int) -> int:
    x = 1 << ((n.bit_length() + 2) // 3)
    while True:
        y = (2 * x + n // (x * x)) // 3
        if y >= x:
            break
        x = y
    while x ** 3 > n:
        x -= 1
    while (x + 1) ** 3 <= n:
        x += 1
    return x


# FIPS 180-4: fractional parts of the square roots (IV) and cube roots (K) of the primes,
# computed exactly with integer roots.
_IV = tuple(math.isqrt(p << 64) & _MASK for p in _primes(8))
_K = tuple(_icbrt(p << 96) & _MASK for p in _primes(64))


def _compress(state: tuple[int, ...], block: bytes, k: tuple[int, ...] = _K,
              m: int = _MASK) -> tuple[int, ...]:
    """The SHA-256 compression function of one 64-byte block (rotations inlined)."""
    w = list(struct.unpack(">16I", block))
    for i in range(16, 64):
        x, y = w[i - 15], w[i - 2]
        s0 = ((x >> 7) | (x << 25)) ^ ((x >> 18) | (x << 14)) ^ (x >> 3)
        s1 = ((y >> 17) | (y << 15)) ^ ((y >> 19) | (y << 13)) ^ (y >> 10)
        w.append((w[i - 16] + s0 + w[i - 7] + s1) & m)
    a, b, c, d, e, f, g, h = state
    for i in range(64):
        s1 = ((e >> 6) | (e << 26)) ^ ((e >> 11) | (e << 21)) ^ ((e >> 25) | (e << 7))
        t1 = (h + (s1 & m) + ((e & f) ^ (~e & g)) + k[i] + w[i]) & m
        s0 = ((a >> 2) | (a << 30)) ^ ((a >> 13) | (a << 19)) ^ ((a >> 22) | (a << 10))
        t2 = ((s0 & m) + ((a & b) ^ (a & c) ^ (b & c))) & m
        a, b, c, d, e, f, g, h = (t1 + t2) & m, a, b, c, (d + t1) & m, e, f, g
    return tuple((x + y) & m for x, y in zip(state, (a, b, c, d, e, f, g, h), strict=True))


def _finish(state: tuple[int, ...], message: bytes) -> bytes:
    """SHA-256 digest of (the one block ``state`` absorbed) + ``message``."""
    total = _BLOCK + len(message)
    data = message + b"\x80" + b"\0" * ((55 - total) % 64) + (total * 8).to_bytes(8, "big")
    for i in range(0, len(data), _BLOCK):
        state = _compress(state, data[i:i + _BLOCK])
    return b"".join(x.to_bytes(4, "big") for x in state)


@dataclass(frozen=True)
class KeyedHmac:
    """``HMAC-SHA256(key, .)`` from the key's two midstates (picklable; repr shows none)."""

    inner: tuple[int, ...] = field(repr=False)
    outer: tuple[int, ...] = field(repr=False)

    @classmethod
    def from_key(cls, key: str | bytes) -> KeyedHmac:
        """The midstates of ``key`` (a str is UTF-8 encoded, as ``hmac.new`` callers do)."""
        raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        if len(raw) > _BLOCK:
            raw = hashlib.sha256(raw).digest()
        raw = raw.ljust(_BLOCK, b"\0")
        return cls(_compress(_IV, bytes(b ^ 0x36 for b in raw)),
                   _compress(_IV, bytes(b ^ 0x5C for b in raw)))

    def digest(self, message: bytes) -> bytes:
        """``hmac.new(key, message, hashlib.sha256).digest()``."""
        return _finish(self.outer, _finish(self.inner, message))
