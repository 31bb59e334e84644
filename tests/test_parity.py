"""The numerics diff on a tiny model: keys, self-agreement, op comparison, report files."""

import json

import numpy as np
import pytest

from tests import helpers
from tf_fastgrnn import export
from tf_fastgrnn import parity
from tf_fastgrnn import quantization

T, D, H, C = 4, 3, 6, 3


@pytest.fixture(scope="module")
def tiny():
  model, tflite_bytes, x, rng = helpers.converted_classifier("fastgrnn", H, (T, D), C,
                                                             windows=12)
  return model, tflite_bytes, x, rng.integers(0, C, 12)


def test_keras_traces_end_in_the_model_output(tiny):
  model, _, x, _ = tiny
  h, logits = parity.keras_traces(model, x, batch_size=5)
  assert h.shape == (12, T, H) and logits.shape == (12, T, C)
  np.testing.assert_allclose(logits[:, -1], model(x).numpy(), atol=1e-5)


def test_diff_numerics_and_report(tiny, tmp_path):
  model, tflite_bytes, x, y = tiny
  result = parity.diff_numerics(model, tflite_bytes, x, y)
  assert set(result["accuracy"]) == {"keras_float", "litert", "tflm"}
  assert len(result["vs_tflm"]["litert"]["state_lsb_mean_per_step"]) == T
  assert result["vs_tflm"]["keras_float"]["top1_agreement"] >= 0.75
  ops = {o["op"] for o in result["op_differences"]}
  assert ops == {"LOGISTIC", "TANH"}
  parity.write_report(result, tmp_path)
  assert json.loads((tmp_path / "numerics.json").read_text())["windows"] == 12
  assert (tmp_path / "numerics.png").read_bytes()[:4] == b"\x89PNG"
  assert "| LOGISTIC |" in (tmp_path / "numerics.md").read_text()


@pytest.fixture(scope="module")
def tiny_qat():
  rng = np.random.default_rng(5)
  model = helpers.random_classifier(rng, "fastgrnn", H, (T, D), C, u_rank=3)
  x = rng.normal(0, 1.5, (12, T, D)).astype(np.float32)
  qat = quantization.quantize_model(model, x)
  source, plan = quantization.export_inputs(qat)
  return model, source, plan, export.convert_step_model(source, x, plan=plan), x


def test_diff_numerics_rebuilds_keras_qat_from_the_plan(tiny_qat):
  # The Keras QAT column comes from (export source, plan) alone and matches TFLM exactly.
  model, source, plan, tflite_bytes, x = tiny_qat
  y = np.zeros(len(x), np.int64)
  result = parity.diff_numerics(model, tflite_bytes, x, y, source_model=source, plan=plan)
  assert set(result["accuracy"]) == {"keras_float", "keras_qat", "litert", "tflm"}
  assert result["summary"]["qat_vs_tflm_top1"] == 1.0
  assert result["vs_tflm"]["keras_qat"]["logits_lsb_max"] == 0.0
  assert max(result["vs_tflm"]["keras_qat"]["state_lsb_max_per_step"]) == 0.0


def test_diff_numerics_cli_on_a_run_folder(tiny, tmp_path):
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  from tests.conftest import REPO  # pylint: disable=import-outside-toplevel
  model, tflite_bytes, x, y = tiny
  run = tmp_path / "run"
  run.mkdir()
  model.save(run / "model_float.keras")
  (run / "model_int8.tflite").write_bytes(tflite_bytes)
  np.savez(tmp_path / "w.npz", x=x, y=y)
  cmd = [sys.executable, "-m", "pipelines.diff_numerics", f"--run_dir={run}",
         f"--windows_npz={tmp_path / 'w.npz'}", "--max_windows=6"]
  result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  assert json.loads((run / "numerics" / "numerics.json").read_text())["windows"] == 6
  missing = subprocess.run(cmd[:3] + [f"--run_dir={tmp_path / 'nothing'}"], cwd=REPO,
                           capture_output=True, text=True, timeout=600)
  assert missing.returncode != 0 and "is not a folder" in missing.stderr
