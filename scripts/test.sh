#!/usr/bin/env bash
# Sets up ./.venv (scripts/setup.sh, with the test, keras3, data and plot groups) and runs the test
# suite in two processes (pytest-xdist; TEST_WORKERS=0 runs it in this one):
#   scripts/test.sh         every test not marked slow, and the device tests (the TFLM app
#                           built and checked bit-exact on the host and, where
#                           arm-none-eabi-gcc and qemu-system-arm exist, on a Cortex-M4F
#                           under QEMU): pytest -m "not slow or device". CI runs this.
#   scripts/test.sh --all   every test (the slow ones too)
# Extra arguments go to pytest: scripts/test.sh -k cells; scripts/test.sh --all -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test,keras3,data,plot
select=(-m "not slow or device")
if [ "${1:-}" = "--all" ]; then
  shift
  select=()
fi
exec .venv/bin/python -m pytest -n "${TEST_WORKERS:-2}" "${select[@]}" "$@"
