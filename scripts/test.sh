#!/usr/bin/env bash
# Set up everything, then run the test suite. Extra arguments go to pytest
# (e.g. `bash scripts/test.sh -m slow` for the end-to-end Ray tests only).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src pipelines tests bench jobs experiments scripts
.venv/bin/lint-imports --no-cache   # the layers (pyproject [tool.importlinter], docs/architecture.md)
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0   # Ray on 127.0.0.1 only (see tests/conftest.py)
# Each test's id is appended as it starts (tests/conftest.py): if pytest dies before its
# summary, say where and what the machine looked like.
SHARDFORGE_TEST_TRAIL="$(mktemp -t shardforge-test-trail.XXXXXX)"
export SHARDFORGE_TEST_TRAIL
rc=0
.venv/bin/python -m pytest -q "$@" || rc=$?
if ! grep -q '^== finished' "$SHARDFORGE_TEST_TRAIL"; then
    bash scripts/died.sh "$SHARDFORGE_TEST_TRAIL" "$rc" >&2
fi
rm -f "$SHARDFORGE_TEST_TRAIL"
exit "$rc"
