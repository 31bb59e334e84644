#!/usr/bin/env bash
# Sets up ./.venv (scripts/setup.sh, with the test and keras3 groups) and runs the test suite.
# Extra arguments go to pytest: scripts/test.sh -m "not slow" -k cells
# The tests run in two processes (pytest-xdist; TEST_WORKERS=0 runs them in this one).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test,keras3
exec .venv/bin/python -m pytest -n "${TEST_WORKERS:-2}" "$@"
