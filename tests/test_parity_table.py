"""docs/parity.md stays true: every row with a ``check`` names a value in our code or cards
that must equal the row's "ours" value, and the line the row cites must hold that name."""

from __future__ import annotations

import importlib
import inspect
import os
import re

import pytest
import yaml

ROOT = os.path.join(os.path.dirname(__file__), "..")
DOC = os.path.join(ROOT, "docs", "parity.md")
HEADER = ["parameter / step", "reference", "where (reference)", "ours", "where (ours)",
          "check", "verdict"]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parity_rows() -> list[dict]:
    """Every row of every table in docs/parity.md with the parity header."""
    rows, header = [], None
    with open(DOC, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.startswith("|"):
                header = None
                continue
            cells = _cells(line)
            if cells == HEADER:
                header = cells
            elif header and not set(line.strip()) <= set("|- "):
                assert len(cells) == len(header), f"docs/parity.md:{number}: {len(cells)} cells"
                rows.append({**dict(zip(header, cells, strict=True)), "line": number})
    return rows


def _unquote(text: str) -> str:
    return text.strip().strip("`")


def _where(cell: str) -> tuple[str, int]:
    match = re.fullmatch(r"`([^`:]+):(\d+)`", cell.strip())
    assert match, f"'where (ours)' must be `path:line`, got {cell!r}"
    return match.group(1), int(match.group(2))


def _walk(value, parts: list[str]):
    for part in parts:
        if isinstance(value, dict):
            value = value[part]
        elif inspect.isfunction(value):
            value = inspect.signature(value).parameters[part].default
        else:
            value = getattr(value, part)
    return value


def _ours(path: str, check: str):
    kind, _, dotted = check.partition(":")
    parts = dotted.split(".")
    if kind == "yaml":
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            return _walk(yaml.safe_load(f), parts)
    assert kind == "py" and path.startswith("src/") and path.endswith(".py"), check
    module = importlib.import_module(path[len("src/"):-len(".py")].replace("/", "."))
    return _walk(module, parts)


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) \
            and not isinstance(a, bool) and not isinstance(b, bool):
        return a == pytest.approx(b)
    return a == b


ROWS = parity_rows()


def test_the_document_has_a_table_per_paper():
    text = open(DOC, encoding="utf-8").read()
    for title in ("ffcv-imagenet", "CUDA", "Stylized-ImageNet", "Dataset Reinforcement",
                  "RDED", "Shape bias"):
        assert re.search(rf"^## .*{re.escape(title)}", text, re.M), title
    assert len(ROWS) >= 60
    assert all(r["verdict"].startswith(("same", "deviation", "choice")) for r in ROWS)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"line{r['line']}")
def test_row_matches_the_code(row):
    path, line = _where(row["where (ours)"])
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert 1 <= line <= len(lines), f"docs/parity.md:{row['line']}: {path} has {len(lines)} lines"
    check = row["check"]
    if check == "-":
        return
    match = re.fullmatch(r"`([^`]+)`(?:\s*\(=\s*(.+)\))?", check)
    assert match, f"docs/parity.md:{row['line']}: check {check!r} is not `kind:path`"
    expr, expected_text = match.group(1), match.group(2) or row["ours"]
    name = [p for p in expr.partition(":")[2].split(".") if p != "default"][-1]
    found = [n for n, text in enumerate(lines, 1) if re.search(rf"\b{re.escape(name)}\b", text)]
    assert re.search(rf"\b{re.escape(name)}\b", lines[line - 1]), (
        f"docs/parity.md:{row['line']}: {path}:{line} does not mention {name!r}; it is on "
        f"line(s) {found[:5]}: fix the row's 'where (ours)'")
    expected = yaml.safe_load(_unquote(expected_text))
    actual = _ours(path, expr)
    assert _same(actual, expected), (
        f"docs/parity.md:{row['line']}: {row['parameter / step']}: the table says "
        f"{expected!r}, {expr} in {path} is {actual!r}: update the table or the code")
