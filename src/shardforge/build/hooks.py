"""What the caller of a build does around it: guard a rewrite, record the result.

The build engine never imports the catalog. A caller that keeps a catalog passes its own
hooks (:func:`shardforge.catalog.hooks.catalog_hooks`); without hooks a build guards
nothing and registers nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BuildHooks:
    """``before_rewrite(out, why)``: called before a finished build of other inputs or
    parameters at ``out`` is replaced; raise (naming the fix) to refuse. ``after_commit(
    summary) -> summary``: called once the build is committed (e.g. to register it); its
    return value is what the job returns."""

    before_rewrite: Callable[[str, str], None] | None = None
    after_commit: Callable[[dict], dict] | None = None

    def guard(self, out: str, why: str) -> None:
        """Run ``before_rewrite`` when there is one."""
        if self.before_rewrite is not None:
            self.before_rewrite(out, why)

    def committed(self, summary: dict) -> dict:
        """Run ``after_commit`` when there is one; the summary to return."""
        return summary if self.after_commit is None else self.after_commit(summary)
