"""train_and_export end to end on a tiny npz task, its resume, and its refusals."""

import dataclasses
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


# The tiny-data rules off (tests/test_tiny_data.py runs them): these runs check other
# things in 3 + 1 epochs.
RULES_OFF = ["--min_phase_steps=0", "--max_batch_fraction=1", "--min_val_windows=0"]
TINY = ["--dataset=npz", "--units=6", "--u_rank=3", "--epochs=3", "--qat_epochs=1",
        "--batch_size=16", "--num_test_vectors=2", "--sparsity_w=0.3", "--sparsity_u=0.5",
        *RULES_OFF]


def tiny_args(tmp_path, rng):
  """``(arguments, run folder)`` of a TINY run on a fresh ``tiny.npz`` in ``tmp_path``."""
  data = _npz(tmp_path / "tiny.npz", rng)
  out = tmp_path / "run"
  return TINY + [f"--data_dir={data}", f"--output_dir={out}"], out


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
  # The report holds only what the product computes: a flash figure needs a cross
  # compiler, which benchmarks/bench_fused.py runs.
  assert not [k for k in report["size"] if "flash" in k]
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
    (["--cell=lstm", "--qat"], "--cell=lstm is quantized after training"),
    (["--cell=gru", "--sparsity_u=0.5"], "--cell=gru trains dense"),
    (["--cell=lstm", "--u_rank=4"], "--w_rank and --u_rank do not apply"),
    (["--cell=lowrank_lstm", "--u_rank=4"], "--cell=lowrank_lstm needs --w_rank"),
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


@pytest.mark.slow
def test_resume_trusts_only_what_the_manifest_lists(tmp_path, rng):
  """Issue 26: --resume took any existing device/ folder (any artifact) as done. A stage
  counts as done only if manifest.json lists its files as they are; otherwise it and
  every stage after it run again."""
  from pipelines import run_folder  # pylint: disable=import-outside-toplevel
  args, out = tiny_args(tmp_path, rng)
  args += ["--nonumerics", "--nowindow_model", "--max_test_windows=8"]
  result = _run(args, tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  manifest = json.loads((out / "manifest.json").read_text())
  assert [name for name, stage in manifest["stages"].items() if not stage["done"]] == [
      "numerics diff", "whole-window model"]  # not asked for
  for rel in ("flags.json", "model_int8.tflite", "device/model_settings.h", "report.json",
              "checkpoints/float/history.json", "standalone/model.c"):
    assert rel in manifest["files"], rel
  settings = (out / "device" / "model_settings.h").read_text()
  (out / "device" / "model_settings.h").write_text(settings + "#define EDITED 1\n")
  result = _run(args + ["--resume"], tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "resume: model_int8.tflite exists, int8 export skipped" in result.stdout
  assert ("resume: device/model_settings.h is not the file this run wrote"
          in result.stdout), result.stdout
  assert "device files and every stage after it run again" in result.stdout
  assert (out / "device" / "model_settings.h").read_text() == settings
  assert run_folder.check(out, resume=False, overwrite=True) == "earlier_run"
  # A user's file in device/: refused before TensorFlow loads, left alone.
  (out / "device" / "my_notes.txt").write_text("keep\n")
  result = _run(args + ["--resume"], tmp_path)
  assert result.returncode == 2 and "device/my_notes.txt" in result.stderr, result.stderr
  assert (out / "device" / "my_notes.txt").read_text() == "keep\n"
  (out / "device" / "my_notes.txt").unlink()
  # A finished training stage's checkpoint is not continued from once changed.
  history = out / "checkpoints" / "float" / "history.json"
  kept = history.read_bytes()
  history.write_text("{}")
  result = _run(args + ["--resume"], tmp_path)
  assert result.returncode == 1 and "cannot continue from it" in result.stderr, result.stderr
  history.write_bytes(kept)
  # A run from before manifests: its trained models are taken as they are, every later
  # stage runs again, and it then has its manifest.
  (out / "manifest.json").unlink()
  result = _run(args + ["--resume"], tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "has no manifest.json" in result.stdout
  assert "resume: model_qat.keras exists, QAT skipped" in result.stdout
  assert "exporting the int8 step model" in result.stdout
  assert run_folder.check(out, resume=False, overwrite=True) == "earlier_run"


# The flags as train_and_export resolves them, without TensorFlow (one process, several
# command lines).
_RESOLVE = """
import dataclasses, json, sys
from absl import flags
from pipelines import train_and_export
for argv in json.loads(sys.argv[1]):
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["train_and_export"] + argv)
  print(json.dumps(dataclasses.asdict(train_and_export._config_from_flags())))
"""


def test_cell_flags_resolve_for_the_baselines(tmp_path):
  out = f"--output_dir={tmp_path / 'run'}"
  argvs = [[out], ["--cell=lstm", out],
           ["--cell=lstm", "--nolstm_product_on_cell_grid", out],
           ["--cell=lowrank_lstm", "--w_rank=2", "--u_rank=3", out],
           ["--cell=gru", "--lstm_product_on_cell_grid", out]]
  env = dict(os.environ, PYTHONPATH=str(REPO))
  result = subprocess.run([sys.executable, "-c", _RESOLVE, json.dumps(argvs)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  fastgrnn, lstm, lstm_off, lowrank, gru = map(json.loads, result.stdout.splitlines())
  # A FastGRNN run records False, as every run folder made before the flag reads: its
  # resume compares equal.
  assert (fastgrnn["cell"], fastgrnn["lstm_product_on_cell_grid"]) == ("fastgrnn", False)
  assert fastgrnn["qat"] and fastgrnn["u_rank"] == 16 and fastgrnn["sparsity_w"] == 0.5
  assert lstm["lstm_product_on_cell_grid"] and not lstm_off["lstm_product_on_cell_grid"]
  assert lowrank["lstm_product_on_cell_grid"]
  assert (lowrank["w_rank"], lowrank["u_rank"]) == (2, 3)
  assert not gru["lstm_product_on_cell_grid"]  # no c: the flag does not apply
  for config in (lstm, lowrank, gru):  # the baselines: dense, post-training int8
    assert not config["qat"] and config["sparsity_w"] == config["sparsity_u"] == 0.0
  assert lstm["w_rank"] is None and lstm["u_rank"] is None


def _product_and_c_grids(tflite_bytes):
  """(scale, zero point) of the MUL σ(f)·c (the one MUL reading the input c) and of c."""
  from tf_fastgrnn import export  # pylint: disable=import-outside-toplevel
  fb_model = export.read_model(tflite_bytes)
  graph = fb_model.subgraphs[0]
  inputs, _ = export.signature_tensors(fb_model)
  (mul,) = [op for op in graph.operators
            if export.op_name(fb_model, op) == "MUL" and inputs["c"] in op.inputs]
  def grid(index):
    q = graph.tensors[index].quantization
    return float(q.scale[0]), int(q.zeroPoint[0])
  return grid(mul.outputs[0]), grid(inputs["c"]), mul.outputs[0]


def _quantizations(tflite_bytes):
  from tf_fastgrnn import export  # pylint: disable=import-outside-toplevel
  graph = export.read_model(tflite_bytes).subgraphs[0]
  return [(list(t.quantization.scale), list(t.quantization.zeroPoint))
          if t.quantization is not None and t.quantization.scale is not None else None
          for t in graph.tensors]


@pytest.mark.slow
def test_lstm_product_on_cell_grid_reaches_the_export(tmp_path, rng):
  """--cell=lstm with the flag's default (on) and off: the int8 step models differ in
  the grid of σ(f)·c alone; the report says which; an old flags.json without the key
  resumes as off."""
  from pipelines import stages  # pylint: disable=import-outside-toplevel
  from pipelines import config as config_lib  # pylint: disable=import-outside-toplevel
  data = _npz(tmp_path / "tiny.npz", rng)
  lstm = ["--dataset=npz", f"--data_dir={data}", "--cell=lstm", "--units=4", "--epochs=2",
          "--batch_size=16", "--num_test_vectors=2", "--max_test_windows=8", *RULES_OFF]
  on, off = tmp_path / "on", tmp_path / "off"
  runs = {on: [], off: ["--nolstm_product_on_cell_grid", "--nonumerics",
                        "--nowindow_model"]}
  for out, extra in runs.items():
    result = _run(lstm + extra + [f"--output_dir={out}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
  tflite = {out: (out / "model_int8.tflite").read_bytes() for out in runs}
  (product_on, c_on, index), (product_off, c_off, _) = (
      _product_and_c_grids(tflite[on]), _product_and_c_grids(tflite[off]))
  assert product_on == c_on
  # Off: the converter's range of the product itself (here, c small, narrower than c's;
  # on HAR windows wider: export._forget_product_on_cell_grid).
  assert product_off != c_off
  # The same training (seed, flags): every other tensor is on the same grid.
  q_on, q_off = _quantizations(tflite[on]), _quantizations(tflite[off])
  assert [i for i, (a, b) in enumerate(zip(q_on, q_off)) if a != b] == [index]
  for out, grid in ((on, "c's grid"), (off, "the converter's range")):
    report = json.loads((out / "report.json").read_text())
    assert grid in report["export"]["lstm_forget_product_grid"]
    assert grid in (out / "report.md").read_text()
  # A run folder from before the flag (flags.json without it) resumes as off, only so.
  flags = json.loads((off / "flags.json").read_text())
  assert flags.pop("lstm_product_on_cell_grid") is False
  assert flags.pop("schema_version") == 1  # made before the flag: before the schema too
  (off / "flags.json").write_text(json.dumps(flags))
  config = dataclasses.replace(config_lib.Config.from_flags(flags), resume=True)
  stages._check_resume(config, off)  # pylint: disable=protected-access
  with pytest.raises(ValueError, match="'lstm_product_on_cell_grid': \\(False, True\\)"):
    stages._check_resume(dataclasses.replace(  # pylint: disable=protected-access
        config, lstm_product_on_cell_grid=True), off)
