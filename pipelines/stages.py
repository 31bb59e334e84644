"""The stages of ``train_and_export``, each resumable, each leaving whole files only.

A stage whose artifact exists is skipped on ``--resume``; a training stage killed midway
continues from its checkpoints (``checkpoints/float``, ``checkpoints/qat``). ``report.json``
is written last: a run folder without it is unfinished.
"""

import dataclasses
import datetime
import json
import pathlib
import shutil
import sys
import time

import numpy as np

import data as datasets
from pipelines import report as report_lib
from tf_fastgrnn import device_files
from tf_fastgrnn import export
from tf_fastgrnn import fileio
from tf_fastgrnn import models
from tf_fastgrnn import parity
from tf_fastgrnn import pruning
from tf_fastgrnn import quantization
from tf_fastgrnn import runtime
from tf_fastgrnn import training
from tf_fastgrnn._keras import keras

__all__ = ["Config", "run", "summary_line", "validate_config"]

@dataclasses.dataclass(frozen=True)
class Config:
  """The resolved configuration of a run (train_and_export's flags), as plain values.

  Written as ``flags.json`` beside the artifacts.
  """
  dataset: str
  data_dir: str | None
  cell: str
  units: int
  w_rank: int | None
  u_rank: int | None
  sparsity_w: float
  sparsity_u: float
  epochs: int
  qat: bool
  qat_epochs: int
  batch_size: int
  learning_rate: float
  qat_learning_rate: float
  seed: int
  output_dir: str
  resume: bool
  max_test_windows: int | None
  num_test_vectors: int
  arena_margin: int
  numerics: bool = True
  window_model: bool = True
  audio_frontend: str = "logmel32"
  # Training recipe (training.fit); the defaults are the plain recipe of earlier runs.
  lr_schedule: str = "constant"
  clipnorm: float | None = None
  weight_decay: float = 0.0
  keep_best: bool = False
  preset: str | None = None


def validate_config(config):
  """Raises ValueError naming the flags that contradict each other or are out of range."""
  problems = []
  for name in ("units", "epochs", "batch_size", "num_test_vectors"):
    if getattr(config, name) <= 0:
      problems.append(f"--{name} must be positive, got {getattr(config, name)}")
  for name in ("sparsity_w", "sparsity_u"):
    value = getattr(config, name)
    if not 0.0 <= value < 1.0:
      problems.append(f"--{name} is the fraction zeroed and must be in [0, 1), got {value}")
  if config.qat and config.qat_epochs <= 0:
    problems.append(f"--qat needs --qat_epochs > 0, got {config.qat_epochs} "
                    "(or pass --noqat)")
  for name in ("learning_rate", "qat_learning_rate"):
    if not getattr(config, name) > 0:
      problems.append(f"--{name} must be > 0, got {getattr(config, name)}")
  if config.lr_schedule not in training.LR_SCHEDULES:
    problems.append(f"--lr_schedule must be one of {training.LR_SCHEDULES}, got "
                    f"{config.lr_schedule!r}")
  if config.clipnorm is not None and not config.clipnorm > 0:
    problems.append(f"--clipnorm must be > 0 (or unset), got {config.clipnorm}")
  if not config.weight_decay >= 0:
    problems.append(f"--weight_decay must be >= 0, got {config.weight_decay}")
  if config.arena_margin < 0:
    problems.append(f"--arena_margin must be >= 0, got {config.arena_margin}")
  if config.u_rank is not None and config.u_rank > config.units:
    problems.append(f"--u_rank={config.u_rank} exceeds --units={config.units}")
  if config.dataset == "npz" and not config.data_dir:
    problems.append("--dataset=npz needs --data_dir=<file.npz>")
  if config.resume and not pathlib.Path(config.output_dir, "flags.json").is_file():
    problems.append(f"--resume needs an earlier run in --output_dir={config.output_dir} "
                    "(no flags.json there)")
  if problems:
    raise ValueError("; ".join(problems))


FLOAT_MODEL = "model_float.keras"
QAT_MODEL = "model_qat.keras"
CALIBRATION_WINDOWS = 256  # training windows the int8 ranges are calibrated on
TFLITE_MODEL = "model_int8.tflite"
WINDOW_MODEL = "model_int8_window.tflite"


def _log(message):
  print(f"[train_and_export] {message}", flush=True)


def _check_resume(config, out):
  """A resumed run must use the flags it started with (but --resume itself)."""
  old = json.loads((out / "flags.json").read_text())
  new = dataclasses.asdict(config)
  changed = {k: (old.get(k), v) for k, v in new.items() if k != "resume" and old.get(k) != v}
  if changed:
    raise ValueError("--resume must use the flags of the run it continues; these differ "
                     f"(was, now): {changed}")


def _prepare_output(config):
  out = pathlib.Path(config.output_dir)
  if config.resume:
    _check_resume(config, out)
  elif out.exists():
    _log(f"clearing the earlier run in {out} (use --resume to continue it instead)")
    shutil.rmtree(out)
  out.mkdir(parents=True, exist_ok=True)
  fileio.write_json(out / "flags.json", dataclasses.asdict(config))
  return out


def _save_model(model, path):
  with fileio.atomic_path(path, suffix=".keras") as tmp:
    model.save(tmp)


def _load_model(path):
  with quantization.quantize_scope():
    return keras.models.load_model(path)


class _EpochTimer(keras.callbacks.Callback):
  """Wall-clock seconds of each training epoch (the benchmark reports their mean)."""

  def __init__(self):
    super().__init__()
    self.seconds = []
    self._start = None

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    self.seconds.append(time.perf_counter() - self._start)


def _accuracy(model, x, y, batch_size):
  # Large batches: the RNN loop's per-step cost (the int8 kernels' many small ops) is
  # paid once per batch.
  logits = model.predict(x, batch_size=max(batch_size, 512), verbose=0)
  return float(np.mean(np.argmax(logits, -1) == y))


def _recipe(config):
  """The training-recipe arguments of ``training.fit`` / ``train_three_phase``."""
  return {"lr_schedule": config.lr_schedule, "clipnorm": config.clipnorm,
          "weight_decay": config.weight_decay, "keep_best": config.keep_best}


def _cell_kwargs(config):
  if config.cell in ("lstm", "gru"):
    return {}
  return {"w_rank": config.w_rank, "u_rank": config.u_rank}


def _command_line():
  """The command as typed: ``python -m pipelines.<module> ...`` for our entry points."""
  script = pathlib.Path(sys.argv[0])
  if script.parent.name == "pipelines" and script.suffix == ".py":
    return " ".join(["python -m pipelines." + script.stem] + sys.argv[1:])
  return " ".join(sys.argv)


def run(config, ds=None):
  """Runs every stage for ``config`` (a ``train_and_export.Config``); returns the report.

  Args:
    config: the resolved configuration.
    ds: the loaded dataset, when the caller (the benchmark) already has it.
  """
  start = time.time()
  if ds is None:
    _log(f"loading {config.dataset}")
    opts = ({"frontend": config.audio_frontend} if config.dataset in datasets.AUDIO_DATASETS
            else {})
    ds = datasets.load_dataset(config.dataset, config.data_dir, seed=config.seed, **opts)
  # Data is valid: only now is anything written.
  out = _prepare_output(config)
  training.set_seed(config.seed)
  num_classes = len(ds.labels)
  _log(f"{config.dataset}: train {ds.x_train.shape}, val {ds.x_val.shape}, "
       f"test {ds.x_test.shape}, {num_classes} classes")
  train, val = (ds.x_train, ds.y_train), (ds.x_val, ds.y_val)
  histories = []

  # 1. Float training in three phases: dense, iterative hard thresholding, fixed support.
  float_path = out / FLOAT_MODEL
  if config.resume and float_path.exists():
    _log(f"resume: {FLOAT_MODEL} exists, skipping float training")
    float_model = _load_model(float_path)
    sparse_result = json.loads((out / "float_training.json").read_text())
  else:
    float_model = models.sequence_classifier(
        config.cell, config.units, ds.x_train.shape[1:], num_classes,
        **_cell_kwargs(config))
    ckpt, tb = out / "checkpoints" / "float", out / "tensorboard" / "float"
    timer = _EpochTimer()
    if config.sparsity_w == 0 and config.sparsity_u == 0:
      _log(f"training {config.cell} H={config.units} dense: {config.epochs} epochs")
      history = training.fit(
          float_model, train, val, epochs=config.epochs, batch_size=config.batch_size,
          learning_rate=config.learning_rate, checkpoint_dir=ckpt, tensorboard_dir=tb,
          seed=config.seed, callbacks=[timer], **_recipe(config))
      sparse_result = {"history": history, "phase_reports": []}
    else:
      _log(f"training {config.cell} H={config.units} w_rank={config.w_rank} "
           f"u_rank={config.u_rank}: {config.epochs} epochs in three phases, sparsity "
           f"W {config.sparsity_w} U {config.sparsity_u}")
      result = pruning.train_three_phase(
          float_model, train, val,
          config=pruning.PruningConfig(sparsity_w=config.sparsity_w,
                                       sparsity_u=config.sparsity_u),
          epochs=config.epochs, batch_size=config.batch_size,
          learning_rate=config.learning_rate, checkpoint_dir=ckpt, tensorboard_dir=tb,
          seed=config.seed, callbacks=[timer], **_recipe(config))
      float_model = result.model
      sparse_result = {"history": result.history, "phase_reports": result.phase_reports,
                       "phase_epochs": list(result.phase_epochs)}
    sparse_result["epoch_seconds"] = timer.seconds
    _save_model(float_model, float_path)
    fileio.write_json(out / "float_training.json", sparse_result)
  histories.append(("float", sparse_result["history"]))
  epoch_seconds = sparse_result.get("epoch_seconds", [])

  # 2. Quantization-aware fine-tuning (keeps the pruned zeros).
  qat_model = None
  qat_path = out / QAT_MODEL
  if config.qat:
    if config.resume and qat_path.exists():
      _log(f"resume: {QAT_MODEL} exists, skipping QAT")
      qat_model = _load_model(qat_path)
      qat_history = json.loads((out / "qat_training.json").read_text())
    else:
      _log(f"QAT fine-tuning: {config.qat_epochs} epochs")
      qat_model = quantization.quantize_model(float_model, ds.x_train[:CALIBRATION_WINDOWS])
      qat_history = training.fit(
          qat_model, train, val, epochs=config.qat_epochs, batch_size=config.batch_size,
          learning_rate=config.qat_learning_rate,
          checkpoint_dir=out / "checkpoints" / "qat",
          tensorboard_dir=out / "tensorboard" / "qat", seed=config.seed,
          **_recipe(config))
      # The weights moved: measure the grids again on the export's calibration windows.
      quantization.calibrate(qat_model, ds.x_train[:CALIBRATION_WINDOWS])
      # From here on Keras QAT computes with TFLM's integer kernels (bit-exact).
      quantization.use_int8_kernels(qat_model, True)
      _save_model(qat_model, qat_path)
      fileio.write_json(out / "qat_training.json", qat_history)
    histories.append(("qat", qat_history))
  deploy_model = qat_model if qat_model is not None else float_model

  # 3. int8 export of the streaming step model, checked before anything is written.
  _log("exporting the int8 step model")
  tflite_bytes = export.convert_step_model(deploy_model, ds.x_train[:CALIBRATION_WINDOWS])
  export.check_tflm_compatible(tflite_bytes)
  fileio.write_bytes(out / TFLITE_MODEL, tflite_bytes)
  window_bytes = None
  try:
    if not config.window_model:
      raise ValueError("not asked for (window_model=False)")
    window_bytes = export.convert_window_model(deploy_model, ds.x_train[:64])
    fileio.write_bytes(out / WINDOW_MODEL, window_bytes)
  except Exception as e:  # pylint: disable=broad-except  # optional artifact: say why
    _log(f"whole-window model not exported: {e}")

  # 4. TFLM: arena, accuracy, device files with test vectors.
  arena = runtime.measure_arena(tflite_bytes)
  x_test, y_test = ds.x_test, ds.y_test
  if config.max_test_windows and config.max_test_windows < len(x_test):
    # A seeded random subset: the test windows are stored by subject and class.
    keep = np.sort(np.random.default_rng(config.seed).choice(
        len(x_test), config.max_test_windows, replace=False))
    x_test, y_test = x_test[keep], y_test[keep]
  _log(f"running the int8 model in TFLM over {len(x_test)} test windows")
  tflm = runtime.TFLMStepRunner(tflite_bytes, arena_size=arena + config.arena_margin)
  traces = tflm.run_windows(x_test, progress=True)
  pred_tflm = np.argmax(traces["logits"][:, -1], -1)
  vectors = {k: traces[k][:config.num_test_vectors] for k in ("x_q", "h_q", "logits_q")}
  vectors["labels"] = y_test[:config.num_test_vectors]
  settings = device_files.settings_from_model(
      tflite_bytes, labels=ds.labels, steps_per_window=ds.x_train.shape[1],
      feature_mean=ds.feature_mean, feature_std=ds.feature_std,
      arena_used=arena, arena_margin=config.arena_margin,
      frontend=ds.meta.get("frontend", "raw"))
  device_files.write_device_files(out / "device", tflite_bytes, settings, vectors)

  # 5. Numerics diff Keras float / QAT / LiteRT / TFLM.
  numerics = None
  if config.numerics:
    _log("numerics diff Keras ↔ LiteRT ↔ TFLM")
    numerics = parity.diff_numerics(float_model, qat_model, tflite_bytes, x_test, y_test,
                                    tflm_traces=traces)
    parity.write_report(numerics, out / "numerics")

  # 6. Report.
  cm = report_lib.confusion_matrix(y_test, pred_tflm, num_classes)
  report_lib.plot_confusion(cm, ds.labels, out / "confusion_tflm.png",
                            "int8 TFLM, test set")
  report_lib.plot_history(histories, out / "training.png",
                          sparse_result.get("phase_epochs", ()))
  sparsity = pruning.sparsity_report(float_model)
  report = {
      "command": _command_line(),
      "config": dataclasses.asdict(config),
      "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "seconds": time.time() - start,
      "dataset": {"labels": list(ds.labels), "train": len(ds.x_train),
                  "val": len(ds.x_val), "test": len(ds.x_test),
                  "evaluated_test_windows": len(x_test), "meta": ds.meta},
      "accuracy": {
          "float_sparse_keras": _accuracy(float_model, x_test, y_test, config.batch_size),
          "qat_keras": (_accuracy(qat_model, x_test, y_test, config.batch_size)
                        if qat_model is not None else None),
          "int8_tflm": float(np.mean(pred_tflm == y_test)),
          "int8_litert": numerics["accuracy"].get("litert") if numerics else None,
      },
      "phase_reports": sparse_result["phase_reports"],
      "macro_f1_tflm": report_lib.macro_f1(cm),
      "confusion_tflm": cm,
      "size": {
          "weights_dense_int8_bytes": sparsity["totals"]["dense_int8_bytes"],
          "weights_nonzero": sparsity["totals"]["nonzero"],
          "tflite_step_bytes": len(tflite_bytes),
          "tflite_window_bytes": len(window_bytes) if window_bytes else None,
          "tflm_arena_bytes_measured": arena,
          "tflm_arena_bytes_configured": arena + config.arena_margin,
          "macs_per_step_dense": models.macs_per_step(float_model)["dense"],
          "macs_per_step_nonzero": models.macs_per_step(float_model)["nonzero"],
      },
      "sparsity": sparsity["matrices"],
      "numerics_summary": numerics["summary"] if numerics else None,
      "numerics_md": (out / "numerics" / "numerics.md").read_text() if numerics else None,
      "epoch_seconds": epoch_seconds,
  }
  report_lib.write(report, out)
  return report


def summary_line(report):
  acc = report["accuracy"]
  size = report["size"]
  return (f"int8 TFLM test accuracy {100 * acc['int8_tflm']:.2f}% "
          f"(float {100 * acc['float_sparse_keras']:.2f}%"
          + (f", QAT {100 * acc['qat_keras']:.2f}%" if acc["qat_keras"] is not None else "")
          + f"); .tflite {size['tflite_step_bytes']} B; arena "
          f"{size['tflm_arena_bytes_measured']} B; report: "
          f"{report['config']['output_dir']}/report.md")
