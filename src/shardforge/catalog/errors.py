"""Catalog errors: each message names the input, the problem and the fix, on one line."""

from __future__ import annotations


class CatalogError(ValueError):
    """A catalog request that cannot be served as asked (the CLI exits 2 with the message)."""


class UnknownDataset(CatalogError):
    """A dataset name, version, card, split or format that does not exist."""


class CardError(CatalogError):
    """An invalid or unusable dataset card: ``FILE: FIELD: PROBLEM; FIX``."""

    def __init__(self, file: str, field: str, problem: str, fix: str) -> None:
        self.file, self.field, self.problem, self.fix = file, field, problem, fix
        super().__init__(f"{file}: {field}: {problem}; {fix}")


class PipelineNotImplemented(CatalogError):
    """A card whose pipeline has no build function yet (planned in a later issue)."""


class RegistrationError(CatalogError):
    """A summary that cannot be registered, or a catalog database that cannot be written."""
