"""The core harness (benchmarks/cores) builds a tiny standalone model for Cortex-M0 and
Cortex-M3, runs it on QEMU, and its h and logits bytes equal the TFLM runtime's; its
instruction count, flash and stack come back for a few steps."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from benchmarks.cores import harness
from tests import helpers
from tests.conftest import REPO
from tf_fastgrnn import fused
from tf_fastgrnn import runtime

CORES = ("m0", "m3")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """A random low-rank FastGRNN (H 16, D 6, C 3), its int8 step model, standalone C and
  int8 frames (2 windows of 5 steps) with TFLM's h and logits for them."""
  _, tflite_bytes, _, rng = helpers.converted_classifier(
      "fastgrnn", 16, (8, 6), 3, windows=8, w_rank=4, u_rank=8)
  src = tmp_path_factory.mktemp("standalone")
  fused.write_standalone(tflite_bytes, str(src))
  x = rng.normal(0, 1, (2, 5, 6)).astype(np.float32)
  want = runtime.TFLMStepRunner(tflite_bytes).run_windows(x)
  return src, want


@pytest.mark.parametrize("core", CORES)
def test_core_steps_equal_tflm(core, tiny, tmp_path):
  reason = harness.missing(core)
  if reason:
    pytest.skip(f"needs {reason}")
  src, want = tiny
  h, logits = harness.verify(core, tmp_path, src, want["x_q"])
  assert h.shape == want["h_q"].shape and logits.shape == want["logits_q"].shape
  np.testing.assert_array_equal(h, want["h_q"])
  np.testing.assert_array_equal(logits, want["logits_q"])


@pytest.mark.parametrize("core", CORES)
def test_core_measures_a_few_steps(core, tiny, tmp_path):
  reason = harness.missing(core)
  if reason:
    pytest.skip(f"needs {reason}")
  src, _ = tiny
  got = harness.measure(core, tmp_path, "tiny", harness.HERE / "step_main.c",
                        "model_step", [src / "model.c", src / "fastgrnn_int8.c"], [src],
                        steps=4)
  assert got["calls"] == 4 and got["unit"] == "instructions"
  assert 100 < got["per_step"] < 100_000
  assert got["flash"] > 0 and 0 < got["stack"] < 4096 and "stack_over" not in got


def test_missing_names_the_tools(monkeypatch):
  monkeypatch.setattr(harness.shutil, "which", lambda tool: None)
  assert "qemu-system-arm" in harness.missing("m3")
  assert "arm-none-eabi-gcc" in harness.missing("m0")


def test_bench_fused_prints_no_figure_it_did_not_measure():
  """Without a TFLM tree the builtin column says "not measured" (it used to print issue
  13's figures for any model); with tflm_app figures it prints those. (In a subprocess:
  bench_fused is an absl app whose flags clash with other CLIs imported by the suite.)"""
  code = textwrap.dedent("""
      import json, sys
      from benchmarks import bench_fused
      r = {"tflite_bytes": 7720, "param_bytes": 4422, "param_bytes_small": 2100,
           "storage": {"w0": "dense"}, "storage_small": {"w0": "packed"},
           "fused_tflite_bytes": 3088, "fused_options_bytes": 2473,
           "fused_options_sizes": {"weights": 1439, "total": 2473},
           "fused_decoded_ram_bytes": 3568, "host_insns": None, "m4": None,
           "m4_small": None, "avr": None}
      before = bench_fused.table(r)
      r["tflm_app_m4"] = {
          "builtin": {"passed": 4, "failed": 0, "arena_used": 3158, "elf_flash": 102968,
                      "insns_per_invoke": 144615.0},
          "fused": {"passed": 4, "failed": 0, "arena_used": 4710, "elf_flash": 78832,
                    "insns_per_invoke": 13753.0}}
      json.dump([before, bench_fused.table(r)], sys.stdout)
      """)
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, check=False, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  text, measured = json.loads(result.stdout.strip().splitlines()[-1])
  for quoted in ("124,616", "138,388", "74,464", "24,300", "n/a"):
    assert quoted not in text
  row = next(line for line in text.splitlines() if "Cortex-M4F instructions" in line)
  assert row.split("|")[2].strip() == "not measured"
  row = next(line for line in measured.splitlines()
             if "Cortex-M4F instructions / step" in line)
  assert row.split("|")[2].strip() == "144,615"