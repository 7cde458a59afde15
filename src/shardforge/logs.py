"""Where the library's messages go: the ``shardforge`` logger (``logging``).

Library modules log through ``logging.getLogger(__name__)``; progress of long work still
goes to the ``log`` stream a caller passes (stderr by default). Entry points (the
``shardforge`` command, ``jobs/train.py``, ``pipelines/*.py``) call :func:`show_progress`
so INFO messages are printed as plain lines; a program embedding shardforge configures
``logging`` as it likes instead.
"""

from __future__ import annotations

import logging
import sys

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
