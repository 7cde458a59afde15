"""Where the library's messages go: the ``shardforge`` logger (``logging``).

Library modules log through ``logging.getLogger(__name__)``; progress of long work still
goes to the ``log`` stream a caller passes (stderr by default). Entry points (the
``shardforge`` command, ``jobs/train.py``, ``pipelines/*.py``) call :func:`show_progress`
so INFO messages are printed as plain lines, and known-harmless third-party tracebacks
are moved to the debug log (:func:`quiet_known_noise`); a program embedding shardforge
configures ``logging`` as it likes instead.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

LOGGER = "shardforge"


def show_progress(level: int = logging.INFO) -> None:
    """Print the ``shardforge`` logger's messages at ``level`` and above on stderr, one
    plain line each, unless it already has a handler (idempotent; other loggers are left
    alone)."""
    logger = logging.getLogger(LOGGER)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False     # no second copy through a root handler
    logger.setLevel(level)
    quiet_known_noise()


#: Unraisable exceptions (``Exception ignored in: ...``) that are known to be harmless:
#: (file path suffix, function name, exception type) of the innermost frame.
#: - numba's dispatcher finalizer: when a dispatcher (FFCV's Loader compiles its pipeline
#:   into new ones) is collected inside a reference cycle, the OrderedDict it iterates can
#:   already be cleared, and iterating it raises KeyError; it only releases compiled code
#:   references. Seen 6 times, 8 lines each, in the demo's output (trainings in one
#:   process, issue #18); numba prints it through ``sys.unraisablehook``.
KNOWN_UNRAISABLE = ((os.path.join("numba", "core", "dispatcher.py"), "finalizer", KeyError),)


def quiet_known_noise() -> None:
    """Route the unraisable exceptions in :data:`KNOWN_UNRAISABLE` to this logger at DEBUG
    instead of a traceback on stderr; every other one goes to the hook that was installed
    before (idempotent). Called by :func:`show_progress`, i.e. by entry points only."""
    if getattr(sys.unraisablehook, "_shardforge", False):
        return
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if _known(unraisable):
            logging.getLogger(LOGGER).debug("ignored a known-harmless %s in %s: %s",
                                            unraisable.exc_type.__name__,
                                            unraisable.object, unraisable.exc_value)
            return
        previous(unraisable)

    hook._shardforge = True   # type: ignore[attr-defined]
    sys.unraisablehook = hook


def _known(unraisable: Any) -> bool:
    tb = unraisable.exc_traceback
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    return any(code.co_filename.endswith(path) and code.co_name == name
               and issubclass(unraisable.exc_type, exc)
               for path, name, exc in KNOWN_UNRAISABLE)
