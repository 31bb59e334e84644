"""benchmarks/keras3_throughput.py runs (one cheap row) and says why a row is missing."""

import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_one_row_and_a_refused_row(tmp_path):
  out = tmp_path / "figures.json"
  result = subprocess.run(
      [sys.executable, "-m", "benchmarks.keras3_throughput", "--data=synthetic",
       "--batches=1", "--rows=tf_keras,edgeml_torch", f"--json={out}"],
      cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
      text=True, check=False, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  figures = json.loads(out.read_text())
  base = figures["rows"]["tf_keras"]
  # H 48, W 9×48, U 48×16 + 16×48, two biases, ζ, ν, Dense 48×6 + 6: the default model.
  assert base["parameters"] == 9 * 48 + 2 * 48 * 16 + 2 * 48 + 2 + 48 * 6 + 6
  assert base["windows_per_s"] > 0
  assert figures["rows"]["edgeml_torch"]["error"] == (
      "RuntimeError: not run: give --edgeml=PATH (an EdgeML checkout)")
  assert figures["rows"]["keras3_jax"] == {"error": "not in --rows"}
  assert "| tf_fastgrnn (tf_keras), TensorFlow | " in result.stdout
  assert "| 1.00 |" in result.stdout
  # The JSON is written new only: an existing file is refused, untouched.
  again = subprocess.run(
      [sys.executable, "-m", "benchmarks.keras3_throughput", "--rows=tf_keras",
       f"--json={out}"], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
      capture_output=True, text=True, check=False, timeout=600)
  assert again.returncode == 2 and "exists; this benchmark writes a new file only" in (
      again.stderr)
  assert json.loads(out.read_text()) == figures
