"""Every command line the project shows a user parses: the entrypoints in cluster/*.yaml and
the `python pipelines|jobs|experiments/...` and `shardforge ...` lines in the code blocks of
README.md, docs/, docs/results/ and every directory's README.md. Each is parsed by its real argument parser (the script's ``main`` runs
up to ``parse_args`` and stops there), so a renamed or removed flag fails CI instead of a
user's job."""

from __future__ import annotations

import argparse
import glob
import os
import re
import runpy
import shlex
import sys

import pytest
import yaml

ROOT = os.path.join(os.path.dirname(__file__), "..")
SCRIPT = re.compile(r"^(pipelines|jobs|experiments)/[\w-]+\.py$")


class _Parsed(Exception):
    """Raised right after a successful parse: the command is valid, nothing runs."""


def _entrypoints(node) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "entrypoint" and isinstance(v, str)] + \
            [e for v in node.values() for e in _entrypoints(v)]
    if isinstance(node, list):
        return [e for v in node for e in _entrypoints(v)]
    return []


def _code_lines(path: str) -> list[tuple[int, str]]:
    """Shell lines of the file's fenced code blocks, backslash continuations joined."""
    out, inside, pending, start = [], False, "", 0
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.lstrip().startswith("```"):
                inside, pending = not inside, ""
                continue
            if not inside:
                continue
            text = line.rstrip("\n")
            if not pending:
                start = number
            if text.rstrip().endswith("\\"):
                pending += text.rstrip()[:-1] + " "
                continue
            out.append((start, pending + text))
            pending = ""
    return out


def commands() -> list[tuple[str, list[str]]]:
    """``(where, argv)`` of every command shown: argv starts with a script path or
    ``shardforge``."""
    found: list[tuple[str, str]] = []
    for path in sorted(glob.glob(os.path.join(ROOT, "cluster", "*.yaml"))):
        with open(path, encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                found += [(os.path.relpath(path, ROOT), e) for e in _entrypoints(doc)]
    docs = ["README.md", "docs/*.md", "docs/results/*.md", "*/README.md"]
    for path in sorted({p for pattern in docs for p in glob.glob(os.path.join(ROOT, pattern))}):
        found += [(f"{os.path.relpath(path, ROOT)}:{n}", text) for n, text in _code_lines(path)]
    out = []
    for where, text in found:
        text = re.sub(r"\s#\s.*$", "", text)            # a trailing shell comment
        text = re.sub(r"\[--[^\]]*\]", "", text)         # usage synopsis: [--flag X]
        for segment in re.split(r"&&|;|\|", text):
            try:
                tokens = shlex.split(segment)
            except ValueError:
                continue
            if "--" in tokens and "submit" in tokens:    # ray job submit ... -- COMMAND
                tokens = tokens[tokens.index("--") + 1:]
            while tokens and "=" in tokens[0] and not tokens[0].startswith("-"):
                tokens = tokens[1:]                      # VAR=value prefixes
            if len(tokens) >= 2 and tokens[0] in ("python", "python3") \
                    and SCRIPT.match(tokens[1]):
                out.append((where, tokens[1:]))
            elif tokens and tokens[0] == "shardforge":
                out.append((where, tokens))
    return out


COMMANDS = commands()


def test_the_known_command_sources_are_found():
    wheres = {w.split(":")[0] for w, _ in COMMANDS}
    assert "cluster/kuberay.yaml" in wheres and "README.md" in wheres
    assert len(COMMANDS) >= 30


@pytest.mark.parametrize("where,argv", COMMANDS, ids=[f"{w} {a[0]}" for w, a in COMMANDS])
def test_command_parses(where, argv, monkeypatch):
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        original(self, args, namespace)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.chdir(ROOT)
    try:
        if argv[0] == "shardforge":
            from shardforge.cli import main

            main(argv[1:])
        else:
            monkeypatch.setattr(sys, "argv", argv)
            runpy.run_path(argv[0], run_name="__main__")
    except _Parsed:
        return
    except SystemExit as exc:
        pytest.fail(f"{where}: `{shlex.join(argv)}` does not parse (exit {exc.code}); fix "
                    "the command or the flag")
    pytest.fail(f"{where}: `{shlex.join(argv)}` returned without parsing its arguments")
