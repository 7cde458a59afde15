"""A live progress line for long jobs: work units done / total, items/s, ETA."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` for a number of seconds."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Prints ``LABEL: done/total shards | N images | R img/s | ETA`` at most every
    ``interval`` seconds: rewritten in place on a terminal, one line each otherwise.
    ``what`` names the work units (default ``shards``), ``unit`` the items."""

    def __init__(self, label: str, total: int, unit: str = "images",
                 stream: TextIO | None = None, interval: float = 2.0,
                 what: str = "shards") -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.what = what
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.done = 0
        self.items = 0
        self.fresh_items = 0   # items processed now (excludes shards found complete)
        self.start = time.monotonic()
        self._last = 0.0
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def advance(self, items: int, reused: bool = False) -> None:
        """Count one finished unit holding ``items`` items."""
        self.done += 1
        self.items += items
        if not reused:
            self.fresh_items += items
        now = time.monotonic()
        if now - self._last >= self.interval or self.done == self.total:
            self._last = now
            self._emit(self.line())

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.start
        return self.fresh_items / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        eta = (elapsed / self.done * (self.total - self.done)) if self.done else 0.0
        return (f"{self.label}: {self.done}/{self.total} {self.what} | {self.items:,} "
                f"{self.unit} | "
                f"{self.rate:,.0f} {self.unit}/s | elapsed {format_duration(elapsed)} | "
                f"ETA {format_duration(eta)}")

    def _emit(self, text: str) -> None:
        if self._tty:
            end = "\n" if self.done == self.total else ""
            self.stream.write("\r\x1b[2K" + text + end)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
