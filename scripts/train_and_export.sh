#!/usr/bin/env bash
# Sets up ./.venv (scripts/setup.sh, with the HAR data and plot groups) and runs the main job: train FastGRNN on the default
# HAR data, compress, export int8 for TFLM, diff the numerics, write the report.
# Flags are passed on: scripts/train_and_export.sh --dataset=fsdd --epochs=30
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh data,plot
exec .venv/bin/python -m pipelines.train_and_export "$@"
