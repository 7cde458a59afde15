"""docs/api.md is what scripts/api_docs.py makes from the code's docstrings today."""

from __future__ import annotations

import importlib.util
import os

from helpers import REPO


def test_api_page_matches_the_docstrings():
    spec = importlib.util.spec_from_file_location(
        "api_docs", os.path.join(REPO, "scripts", "api_docs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with open(os.path.join(REPO, "docs", "api.md")) as f:
        on_disk = f.read()
    assert on_disk == module.render(), (
        "docs/api.md is stale: run `PYTHONPATH=src python scripts/api_docs.py docs/api.md`")
    assert "(no docstring)" not in on_disk
