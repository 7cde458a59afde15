"""shardforge.logs: entry points print the library's INFO messages as plain lines on
stderr; an embedding program that configures nothing sees only warnings."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import logging, sys
{setup}
logging.getLogger("shardforge.train.runner").info("info line")
logging.getLogger("shardforge.train.runner").warning("warning line")
"""


def _stderr(setup: str) -> str:
    proc = subprocess.run([sys.executable, "-c", CODE.format(setup=setup)],
                          capture_output=True, text=True, check=True)
    return proc.stderr


def test_entry_points_show_info_lines_once():
    err = _stderr("from shardforge.logs import show_progress; show_progress(); show_progress()")
    assert err == "info line\nwarning line\n"


def test_without_an_entry_point_only_warnings_show():
    assert _stderr("") == "warning line\n"


def test_the_cli_entry_point_shows_the_library_lines():
    setup = "from shardforge.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    assert _stderr(setup) == "info line\nwarning line\n"
