#!/usr/bin/env bash
# Creates ./.venv with the pinned stack from pyproject.toml and installs this project into
# it (editable), with the optional dependency groups named in the first argument.
# Idempotent: it reinstalls only when pyproject.toml or the groups changed.
# Usage: scripts/setup.sh [data,plot,test,keras3]   (PYTHON=/path/to/python3.11 to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."

extras=${1:-}
IFS=, read -ra groups <<< "$extras"
for g in "${groups[@]}"; do
  case "$g" in
    test|keras3|data|plot) ;;
    *) echo "setup: unknown optional group '$g' (data, plot, test, keras3)" >&2; exit 2 ;;
  esac
done
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "setup: Python 3.11 is required (TensorFlow 2.21 wheels); got $("$PYTHON" --version 2>&1)." >&2
  echo "setup: set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
target=.${extras:+[$extras]}
stamp=.venv/.tf_fastgrnn-installed${extras:+-$extras}
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing the pinned stack (first time: a few minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e "$target"
  echo "$want" > "$stamp"
fi
