"""The numerics diff of a run folder, as a library (``pipelines.diff_numerics`` is its
CLI): the run's files checked against its manifest, its data reloaded as the run loaded
it, and ``tf_fastgrnn.parity``'s diff written into ``numerics/``. No absl flags here, so
tests and other tools import it beside any CLI module.
"""

import os
import pathlib
import zipfile

import numpy as np

from pipelines import run_folder

__all__ = ["READS", "check_windows", "load_windows", "run"]


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
