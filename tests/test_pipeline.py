"""train_and_export end to end on a tiny npz task, its resume, and its refusals."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO


def _npz(path, rng, n=48, t=6, d=3, classes=3):
  """Separable sequences: the class sets the sign pattern of a drifting mean."""
  def make(count):
    y = rng.integers(0, classes, count)
    centers = np.array([[1, -1, 0], [-1, 1, 0], [0, 0, 1.5]])[:classes, :d]
    x = centers[y][:, None, :] * np.linspace(0.3, 1, t)[None, :, None]
    return (x + rng.normal(0, 0.3, (count, t, d))).astype(np.float32), y
  x_train, y_train = make(n)
  x_test, y_test = make(n // 2)
  np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
  return path


def _run(args, cwd):
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, "-m", "pipelines.train_and_export", *args],
                        cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


TINY = ["--dataset=npz", "--units=6", "--u_rank=3", "--epochs=3", "--qat_epochs=1",
        "--batch_size=16", "--num_test_vectors=2", "--sparsity_w=0.3", "--sparsity_u=0.5"]


@pytest.mark.slow
def test_end_to_end_tiny(tmp_path, rng):
  data = _npz(tmp_path / "tiny.npz", rng)
  out = tmp_path / "run"
  result = _run(TINY + [f"--data_dir={data}", f"--output_dir={out}"], tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "int8 TFLM test accuracy" in result.stdout
  for name in ("flags.json", "model_float.keras", "model_qat.keras", "model_int8.tflite",
               "report.md", "report.json", "training.png", "confusion_tflm.png",
               "device/model_data.cc", "device/model_settings.h", "device/test_vectors.cc",
               "numerics/numerics.json", "quantization_plan.json", "model_int8_source.keras",
               "standalone/model.c", "standalone/example_main.c", "run.log",
               "model_int8_fused.tflite", "device/model_data_fused.cc"):
    assert (out / name).is_file(), name
  report = json.loads((out / "report.json").read_text())
  assert 0.0 <= report["accuracy"]["int8_tflm"] <= 1.0
  assert report["size"]["tflite_step_bytes"] == (out / "model_int8.tflite").stat().st_size
  assert report["size"]["tflm_arena_bytes_measured"] > 0
  assert 0 < report["size"]["fused_params_bytes"] < report["size"]["tflite_step_bytes"]
  assert report["size"]["fused_tflite_bytes"] == (
      out / "model_int8_fused.tflite").stat().st_size
  assert report["size"]["fused_params_bytes"] < report["size"]["fused_tflite_bytes"]
  assert report["size"]["standalone_c_flash_bytes"] >= report["size"]["fused_params_bytes"]
  flags = json.loads((out / "flags.json").read_text())
  assert flags["units"] == 6 and flags["sparsity_u"] == 0.5
  # Keras QAT, rebuilt from the export's source model and plan, is TFLM byte for byte.
  numerics = json.loads((out / "numerics" / "numerics.json").read_text())
  assert numerics["summary"]["qat_vs_tflm_top1"] == 1.0
  assert numerics["vs_tflm"]["keras_qat"]["logits_lsb_max"] == 0.0


@pytest.mark.parametrize("args,message", [
    (["--sparsity_w=1.0"], "--sparsity_w is the fraction zeroed and must be in [0, 1)"),
    (["--units=0"], "--units must be positive"),
    (["--u_rank=9", "--units=4"], "--u_rank=9 exceeds --units=4"),
    (["--dataset=npz"], "--dataset=npz needs --data_dir"),
    (["--resume"], "--resume needs an earlier run"),
])
def test_contradicting_flags_write_nothing(tmp_path, args, message):
  out = tmp_path / "run"
  result = _run(args + [f"--output_dir={out}"], tmp_path)
  assert result.returncode != 0
  assert message in result.stderr
  assert not out.exists()


def test_missing_data_dir_writes_nothing(tmp_path):
  out = tmp_path / "run"
  result = _run(["--dataset=fsdd", f"--data_dir={tmp_path / 'nowhere'}",
                 f"--output_dir={out}"], tmp_path)
  assert result.returncode != 0
  assert "nowhere" in result.stderr
  assert not out.exists()


@pytest.mark.slow
def test_killed_run_resumes_and_finishes(tmp_path, rng):
  import signal  # pylint: disable=import-outside-toplevel
  import time  # pylint: disable=import-outside-toplevel
  data = _npz(tmp_path / "tiny.npz", rng, n=64)
  out = tmp_path / "run"
  args = TINY + ["--epochs=20", "--numerics=false", f"--data_dir={data}",
                 f"--output_dir={out}"]
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.Popen([sys.executable, "-m", "pipelines.train_and_export", *args],
                          cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  ckpt = out / "checkpoints" / "float"
  deadline = time.time() + 300
  def newest():  # the manager keeps two checkpoints: ckpt-3 may be gone when we look
    return max((int(p.name[5:-6]) for p in ckpt.glob("ckpt-*.index")), default=0)
  while time.time() < deadline and newest() < 3 and proc.poll() is None:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert list(ckpt.glob("ckpt-*.index")), "the run never wrote a checkpoint"
  assert not (out / "report.json").exists()
  result = _run(args + ["--resume"], tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads((out / "report.json").read_text())
  float_history = json.loads((out / "float_training.json").read_text())["history"]
  assert len(float_history["loss"]) == 20
  assert report["accuracy"]["int8_tflm"] >= 0.0
