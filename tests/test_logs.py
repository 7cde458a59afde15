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


def _unraisable_from(filename: str, name: str, exc: type[BaseException]):
    """The ``sys.unraisablehook`` argument for ``exc`` raised in a function ``name`` that
    lives in ``filename`` (as numba's finalizer does), collected the way Python does."""
    import types

    ns: dict = {}
    exec(compile(f"def {name}():\n    raise {exc.__name__}('x')\n", filename, "exec"), ns)
    try:
        ns[name]()
    except exc as e:
        return types.SimpleNamespace(exc_type=exc, exc_value=e, exc_traceback=e.__traceback__,
                                     err_msg=None, object="<finalize object; dead>")
    raise AssertionError("not raised")


def test_known_harmless_unraisable_goes_to_debug_and_others_still_print(monkeypatch, caplog):
    import logging
    import os
    import sys

    from shardforge.logs import quiet_known_noise

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    quiet_known_noise()
    quiet_known_noise()                       # idempotent: one wrapper
    numba_file = os.path.join("site-packages", "numba", "core", "dispatcher.py")
    with caplog.at_level(logging.DEBUG, logger="shardforge"):
        sys.unraisablehook(_unraisable_from(numba_file, "finalizer", KeyError))
    assert seen == [] and "known-harmless KeyError" in caplog.text
    for other in (_unraisable_from(numba_file, "finalizer", ValueError),
                  _unraisable_from(numba_file, "compile", KeyError),
                  _unraisable_from("mycode.py", "finalizer", KeyError)):
        sys.unraisablehook(other)
    assert len(seen) == 3                      # passed on to the previous hook
