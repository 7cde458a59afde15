"""pytest hooks that leave a trail of started tests (``scripts/test.sh`` reads it).

``tests/conftest.py`` registers them; ``-p trail`` (with ``tests`` on the path) does the
same for another pytest run (tests/test_trail.py).
"""

from __future__ import annotations

import os

import pytest

TRAIL_ENV = "SHARDFORGE_TEST_TRAIL"


def pytest_runtest_logstart(nodeid: str, location: tuple) -> None:
    """With ``SHARDFORGE_TEST_TRAIL`` naming a file (``scripts/test.sh`` sets it), append
    each test's id as it starts: a run that dies without pytest's summary (a process
    killed, a full disk, a Ray driver exiting) still says where it was."""
    trail = os.environ.get(TRAIL_ENV)
    if trail:
        with open(trail, "a") as f:
            f.write(nodeid + "\n")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Mark the trail as finished: pytest reached its summary."""
    trail = os.environ.get(TRAIL_ENV)
    if trail:
        with open(trail, "a") as f:
            f.write(f"== finished, exit status {int(exitstatus)}\n")
