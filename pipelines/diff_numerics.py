r"""The numerics diff Keras float / QAT ↔ LiteRT ↔ TFLM on an existing run folder.

  python -m pipelines.diff_numerics --run_dir=runs/har6_fastgrnn
  python -m pipelines.diff_numerics --run_dir=... --windows_npz=my_windows.npz

Reads ``model_float.keras`` and ``model_int8.tflite`` from the run folder and, for a QAT
run, what the export converted: ``model_int8_source.keras`` and ``quantization_plan.json``
(the Keras QAT column is rebuilt from them; run folders older than that file fall back to
``model_qat.keras``), the test windows of the run's dataset (``flags.json``) or of
``--windows_npz`` (arrays ``x`` [N, T, D] normalised as in training, ``y`` [N]), and
writes ``numerics/`` (json, md, png) into ``--output_dir`` (default: the run folder).

Every file it reads must be the one the run wrote (its ``manifest.json``; folders made
before manifests are not checked), and no run may be writing the folder (its lock,
held meanwhile): a swapped ``model_int8.tflite`` is refused in one line, not diffed.
"""

import json
import os
import pathlib
import sys
import zipfile

import numpy as np
from absl import app
from absl import flags

from pipelines import run_folder

_RUN_DIR = flags.DEFINE_string("run_dir", None, "A train_and_export run folder.")
_WINDOWS_NPZ = flags.DEFINE_string("windows_npz", None, "npz with x, y instead of the "
                                   "run's test set.")
_MAX_WINDOWS = flags.DEFINE_integer("max_windows", None, "Use at most this many windows.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where numerics/ goes (default: "
                                  "run_dir).")


def load_windows(run_dir, windows_npz=None):
  """``(x, y)``: the arrays ``x``, ``y`` of ``windows_npz``, else the test windows of the
  run's dataset, loaded as the run loaded them (``config.run_dataset_args``: its seed and
  front ends, from ``flags.json``).

  Raises:
    ValueError / FileNotFoundError: in one line, naming the file at fault.
  """
  if windows_npz:
    from data import paths  # pylint: disable=import-outside-toplevel
    found = paths.kind(windows_npz)  # os.stat: a FIFO or a device is never opened
    if found != "a file":
      raise FileNotFoundError(f"--windows_npz={windows_npz} is {found}, not an .npz file")
    try:
      with np.load(windows_npz, allow_pickle=False) as z:
        if "x" not in z.files or "y" not in z.files:
          raise ValueError(f"{windows_npz} must hold arrays x and y, has {z.files}")
        return z["x"], z["y"]
    except (OSError, EOFError, zipfile.BadZipFile) as e:
      raise ValueError(f"{windows_npz}: not a readable .npz file ({e})") from e
  import data  # pylint: disable=import-outside-toplevel
  from pipelines import config  # pylint: disable=import-outside-toplevel
  name, data_dir, options = config.run_dataset_args(run_dir)
  ds = data.load_dataset(name, data_dir, **options)
  return ds.x_test, ds.y_test


def check_windows(x, y, input_shape, source):
  """Refuses windows the model cannot take, naming the shapes (``input_shape``: the float
  model's ``(None, T, D)``)."""
  steps, dims = input_shape[1], input_shape[2]
  if x.ndim != 3 or x.shape[2] != dims or (steps is not None and x.shape[1] != steps):
    want = f"[N, {steps if steps is not None else 'T'}, {dims}]"
    raise ValueError(f"{source}: windows of shape {list(x.shape)}, but the run's model "
                     f"takes {want}: were they made for another run?")
  if y.shape != (len(x),):
    raise ValueError(f"{source}: y must be [N] with N={len(x)}, got shape {list(y.shape)}")
  if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
    raise ValueError(f"{source}: x must hold finite numbers (dtype {x.dtype})")


# What the diff reads from a run folder (the ones present are checked).
READS = ("flags.json", "model_float.keras", "model_int8.tflite", "quantization_plan.json",
         "model_int8_source.keras", "model_qat.keras")


def run(run_dir, windows_npz=None, max_windows=None, output_dir=None):
  """Runs the diff; returns the result dict (see ``tf_fastgrnn.parity``).

  Raises:
    run_folder.RunFolderError: a run is writing the folder, or a file it reads is not
      the one the run wrote.
  """
  run_dir = pathlib.Path(run_dir)
  if not run_dir.is_dir():
    raise FileNotFoundError(f"--run_dir={run_dir} is not a folder")
  into_run = output_dir is None or pathlib.Path(output_dir).resolve() == run_dir.resolve()
  if into_run or os.access(run_dir, os.W_OK):
    held = run_folder.lock(run_dir, what="diff_numerics", shown=f"--run_dir={run_dir}")
  else:  # someone else's run, read only: refused only if a run holds it
    run_folder.check_not_in_use(run_dir, shown=f"--run_dir={run_dir}")
    held = None
  try:
    manifest = run_folder.verify(run_dir, READS)
    result = _diff(run_dir, windows_npz, max_windows, output_dir)
    if into_run and manifest is not None:
      manifest.refresh("numerics")  # the run's manifest lists what it holds now
  finally:
    if held is not None:
      held.release()
  return result


def _diff(run_dir, windows_npz, max_windows, output_dir):
  from tf_fastgrnn import parity  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import plan as plan_lib  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import quantization  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn._keras import keras  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import export  # pylint: disable=import-outside-toplevel
  run_dir = pathlib.Path(run_dir)
  if not run_dir.is_dir():
    raise FileNotFoundError(f"--run_dir={run_dir} is not a folder")
  tflite_path = run_dir / "model_int8.tflite"
  for needed in (run_dir / "model_float.keras", tflite_path):
    if not needed.is_file():
      raise FileNotFoundError(f"{needed} is missing: is {run_dir} a finished "
                              "train_and_export run?")
  tflite_bytes = export.read_tflite_file(tflite_path)
  try:
    export.check_tflm_compatible(tflite_bytes)
  except export.TFLMCompatibilityError as e:
    raise ValueError(f"{tflite_path}: {e}") from e
  x, y = load_windows(run_dir, windows_npz)
  if max_windows:
    x, y = x[:max_windows], y[:max_windows]
  source_model, plan = None, None
  with quantization.quantize_scope():
    float_model = keras.models.load_model(run_dir / "model_float.keras")
    if (run_dir / "quantization_plan.json").is_file():
      plan = plan_lib.QuantizationPlan.load(run_dir / "quantization_plan.json")
      if (run_dir / "model_int8_source.keras").is_file():
        source_model = keras.models.load_model(run_dir / "model_int8_source.keras")
      elif (run_dir / "model_qat.keras").is_file():
        source_model = quantization.float_twin(
            keras.models.load_model(run_dir / "model_qat.keras"))
  check_windows(x, y, float_model.input_shape,
                windows_npz or f"the test windows of the run's data ({run_dir}/flags.json)")
  result = parity.diff_numerics(float_model, tflite_bytes, x, y, source_model=source_model,
                                plan=plan)
  parity.write_report(result, pathlib.Path(output_dir or run_dir) / "numerics")
  return result


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _RUN_DIR.value:
    print("diff_numerics: --run_dir is required", file=sys.stderr)
    return 2
  try:
    result = run(_RUN_DIR.value, _WINDOWS_NPZ.value, _MAX_WINDOWS.value, _OUTPUT_DIR.value)
  except (ValueError, FileNotFoundError) as e:
    print(f"diff_numerics: {e}", file=sys.stderr)
    return 1
  print(json.dumps(result["summary"], indent=2))
  return 0


if __name__ == "__main__":
  app.run(main)
