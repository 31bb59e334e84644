"""The stages of ``train_and_export``, each resumable, each leaving whole files only.

``STAGES`` is the table of (stage, artifact, run, load, outputs): as each stage finishes,
``manifest.json`` lists the files it wrote (size, sha256; ``run_folder.Manifest``). On
``--resume`` a stage is loaded instead of run only if it finished and its files are still
as listed; otherwise it runs again, and so does every stage after it. A training stage
killed midway continues from its checkpoints (``checkpoints/float``,
``checkpoints/qat``). ``report.json`` is written last: a run folder without it is
unfinished. Before anything is written, ``validate_config`` checks the flags,
``run_folder.check`` the output folder and ``preflight`` the data against the flags;
``run_folder.claim`` then locks the folder for the whole run.

With ``--distribute`` the training stages (float with its three phases, QAT) run under
a ``tf.distribute`` strategy (``tf_fastgrnn.distribute``); the others run on one process.
Under ``multi_worker`` every worker runs the training stages in step, but only the chief
writes the run folder and goes on to export and evaluate; another worker stops after the
last training stage, having written nothing there (its checkpoints go to temporary
folders that ``training.fit`` removes).
"""

import dataclasses
import datetime
import itertools
import json
import math
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import typing

import numpy as np

import data as datasets
from pipelines import config as config_lib
from pipelines import report as report_lib
from pipelines import run_folder
from pipelines.config import Config
from pipelines.config import validate_config
from tf_fastgrnn import augment as augment_lib
from tf_fastgrnn import c_text
from tf_fastgrnn import device_files
from tf_fastgrnn import distribute
from tf_fastgrnn import export
from tf_fastgrnn import fileio
from tf_fastgrnn import fused
from tf_fastgrnn import models
from tf_fastgrnn import parity
from tf_fastgrnn import plan as plan_lib
from tf_fastgrnn import pruning
from tf_fastgrnn import quantization
from tf_fastgrnn import runtime
from tf_fastgrnn import training
from tf_fastgrnn._keras import keras

__all__ = ["Config", "run", "summary_line", "validate_config", "vector_windows"]

FLOAT_MODEL = "model_float.keras"
QAT_MODEL = "model_qat.keras"
CALIBRATION_WINDOWS = 256  # training windows the int8 ranges are calibrated on
TFLITE_MODEL = "model_int8.tflite"
WINDOW_MODEL = "model_int8_window.tflite"
FUSED_MODEL = "model_int8_fused.tflite"  # one FASTGRNN_INT8 custom op (fused.convert_fused)
QUANTIZATION_PLAN = "quantization_plan.json"  # next to TFLITE_MODEL (QAT models)
# The float model the export converted with the plan (the QAT model's float twin): with
# the plan, all the export needs, and what the numerics rebuild Keras QAT from.
EXPORT_SOURCE = "model_int8_source.keras"


def _log(message):
  print(f"[train_and_export] {message}", flush=True)


# The tiny-data rules: a resumed run may change them where they change nothing it runs.
_BUDGET_RULES = ("min_phase_steps", "max_batch_fraction", "min_val_windows")
_BUDGET = ("batch_size", "epochs", "qat_epochs", "keep_best")


def _check_resume(config, out, ds=None):
  """A resumed run must use the flags it started with.

  Not compared: --resume, --overwrite, and --output_dir (the folder's own flags.json is
  the run's whatever path, relative or absolute, with or without a slash, names it);
  --distribute and --feature_cache (how it runs, not what it computes). The tiny-data
  rules (``_BUDGET_RULES``) count as changed only if, on ``ds``, they change what the
  training stages run (``training_budget``): a run folder made before the rules existed
  records them off, and on data with many windows they change nothing.
  """
  old = config_lib.read_flags(out)  # an older layout upgraded (spec.migrate)
  new = dataclasses.asdict(config)
  changed = {k: (old.get(k), v) for k, v in new.items()
             if k not in config_lib.NOT_COMPARED_ON_RESUME and old.get(k) != v}
  rules = {k: changed[k][0] for k in _BUDGET_RULES if k in changed}
  if rules and ds is not None and set(changed) <= set(_BUDGET_RULES):
    was = training_budget(dataclasses.replace(config, **rules), ds)
    now = training_budget(config, ds)
    if all(was[k] == now[k] for k in _BUDGET):
      changed = {}
  if changed:
    raise ValueError("--resume must use the flags of the run it continues; these differ "
                     f"(was, now): {changed}")


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


def _recipe(config, ds):
  """The ``Recipe`` the training stages fit with: the run's, with the batch, the epochs
  and ``keep_best`` the tiny-data rules give on these data (``training_budget``)."""
  budget = training_budget(config, ds)
  return config.spec.recipe.replace(
      batch_size=budget["batch_size"], epochs=budget["epochs"],
      qat_epochs=budget["qat_epochs"], keep_best=budget["keep_best"])


def _fit_options(r, stage, callbacks=()):
  """``training.FitOptions`` of a training stage: progress on the chief, logs under
  ``tensorboard/<stage>``, the strategy, the training batches' augmentation."""
  config, ds = r.config, r.ds
  return training.FitOptions(
      callbacks=tuple(callbacks), verbose=1 if r.chief else 0,
      tensorboard_dir=r.out / "tensorboard" / stage, distribute=config.distribute,
      augment=_augmenter(config, ds) if config.augment else None)


def _augmenter(config, ds):
  """The training batches' augmentation (``config.augment``), or None."""
  return augment_lib.make(config.augment or "none", config.dataset, ds.feature_mean,
                          ds.feature_std, strength=config.augment_strength,
                          **(config.augment_params or {}))


def _training_windows(config, ds):
  """``(x, y)`` the training stages fit: the training split, with ``train_on_val`` the
  validation split after it (normalised with the training split's statistics, as
  exported)."""
  if not config.train_on_val:
    return ds.x_train, ds.y_train
  return (np.concatenate([ds.x_train, ds.x_val]), np.concatenate([ds.y_train, ds.y_val]))


def training_budget(config, ds):
  """What the training stages run on these data: ``batch_size``, ``epochs``,
  ``qat_epochs`` and ``keep_best`` after the tiny-data rules (``training.step_budget``
  with ``config.min_phase_steps`` and ``max_batch_fraction``; ``keep_best`` off below
  ``config.min_val_windows`` validation windows), ``steps_per_epoch``, and ``notes``:
  one line for each rule that changed a value (none on a run with many windows)."""
  n = len(_training_windows(config, ds)[0])
  sparse = bool(config.sparsity_w or config.sparsity_u)
  phases = config.spec.sparsity.phase_epochs if sparse else None
  rules = {"min_phase_steps": config.min_phase_steps,
           "max_batch_fraction": config.max_batch_fraction}
  batch, epochs = training.step_budget(n, config.batch_size, config.epochs, phases=phases,
                                       **rules)
  qat_epochs = (training.step_budget(n, config.batch_size, config.qat_epochs, **rules)[1]
                if config.qat else config.qat_epochs)
  steps = math.ceil(n / batch)
  notes = []
  if (batch, epochs, qat_epochs) != (config.batch_size, config.epochs, config.qat_epochs):
    changes = [f"batch {config.batch_size} → {batch}" if batch != config.batch_size
               else f"batch {batch}"]
    changes.append(f"{steps} step{'s' if steps > 1 else ''} an epoch")
    if epochs != config.epochs:
      split = "/".join(map(str, phases(epochs))) + " in three phases" if sparse else ""
      changes.append(f"epochs {config.epochs} → {epochs}" + (f" ({split})" if split else ""))
    if qat_epochs != config.qat_epochs:
      changes.append(f"QAT epochs {config.qat_epochs} → {qat_epochs}")
    notes.append(f"tiny data: {n} training windows: " + ", ".join(changes)
                 + f" (--min_phase_steps={config.min_phase_steps}: every training phase "
                 f"gets >= {config.min_phase_steps} optimizer steps; "
                 f"--max_batch_fraction={config.max_batch_fraction:g})")
  keep_best, num_val = config.keep_best, len(ds.x_val)
  if keep_best and num_val < config.min_val_windows:
    keep_best = False
    notes.append(f"tiny data: {num_val} validation windows < --min_val_windows="
                 f"{config.min_val_windows}: the last epoch is kept, not the best (one "
                 f"window is {100 / num_val:.1f} points of validation accuracy)")
  return {"batch_size": batch, "epochs": epochs, "qat_epochs": qat_epochs,
          "keep_best": keep_best, "steps_per_epoch": steps, "notes": notes}


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


# The unrolled whole-window model copies every step's ops: its .tflite grows by about
# 2 KB a step (272,952 B for the default T = 128), and the converter's memory faster
# (past 7.5 GB at T = 5000). Above this many steps it is skipped with a line saying why.
WINDOW_MODEL_MAX_STEPS = 512
TFLM_EVAL = "tflm_eval.npz"


def preflight(config, ds):
  """Every check that needs the data but no training, before the run folder is touched.

  Raises:
    ValueError: listing every problem, each naming the flag or the data at fault.
  """
  problems = []
  shape = tuple(ds.x_train.shape)
  if len(shape) != 3 or 0 in shape:
    problems.append(f"training windows must be [N, T, D] with N, T, D > 0, got {list(shape)}")
  present = np.unique(ds.y_train)
  if len(present) < 2:
    problems.append(f"the training labels hold {len(present)} class ({present.tolist()}): "
                    "a classifier needs at least 2")
  if problems:
    raise ValueError("; ".join(problems))
  input_dim = shape[2]
  if (config.dataset in config_lib.IMU_DATASETS
      and ds.meta.get("frontend") != config.imu_frontend):
    problems.append(f"--imu_frontend={config.imu_frontend}, but the data handed over was "
                    f"made with the {ds.meta.get('frontend')} front end")
  for k, label in enumerate(ds.labels):  # each becomes a C string literal on the device
    try:
      c_text.c_string_literal(str(label), f"label {k}")
    except ValueError as e:
      problems.append(f"the data's {e}")
  if config.cell not in ("lstm", "gru") and config.w_rank is not None and (
      config.w_rank > min(input_dim, config.units)):
    problems.append(f"--w_rank={config.w_rank} exceeds min(D, --units) = "
                    f"{min(input_dim, config.units)} (the data has D={input_dim} features)")
  try:
    _augmenter(config, ds)
  except ValueError as e:
    problems.append(str(e))
  if config.sparsity_w or config.sparsity_u:
    try:
      config.spec.sparsity.phase_epochs(config.epochs)
    except ValueError:
      problems.append(f"--epochs={config.epochs} is too short for the three pruning phases "
                      "(dense, sparsify, fixed support): use --epochs >= 3, or "
                      "--sparsity_w=0 --sparsity_u=0 for dense training")
  if not problems:
    try:  # the model must build with these data and flags (cheap: no training)
      models.sequence_classifier(config.cell, config.units, shape[1:], len(ds.labels),
                                 readout=config.readout, **_cell_kwargs(config))
    except ValueError as e:
      problems.append(f"the model cannot be built with these flags and data: {e}")
  if problems:
    raise ValueError("; ".join(problems))


def _window_model_skip_reason(config, steps):
  if not config.window_model:
    return "not asked for (--nowindow_model)"
  if config.readout == "mean":
    return export.WINDOW_MODEL_MEAN_REASON
  if steps > WINDOW_MODEL_MAX_STEPS:
    return (f"T={steps} steps exceeds {WINDOW_MODEL_MAX_STEPS}: the unrolled model would "
            f"be about {2 * steps} KB and its conversion needs memory growing with T "
            "(the step model is the deploy form)")
  return None


def _stage_outputs():
  """``{stage: outputs}`` of ``STAGES``, as ``manifest.json`` lists them."""
  return {stage.name: stage.files for stage in STAGES}


def _prepare_output(config, folder_state, ds):
  """Takes the run folder (locked for the whole run, an earlier run moved aside or
  deleted) and starts its ``manifest.json``; only called once every check has passed.

  Returns:
    ``(folder, run_folder.RunLock, run_folder.Manifest)``.
  """
  out = pathlib.Path(config.output_dir)
  held, note = run_folder.claim(out, folder_state, resume=config.resume,
                                overwrite=config.overwrite)
  try:
    if note:
      _log(note)
    if config.resume:
      _check_resume(config, out, ds)
      manifest = run_folder.Manifest.read(out)
      if manifest is None:
        # A run from before manifests: its trained models are taken as they are (they
        # load, match the flags and hold finite weights); every later stage runs again.
        adopted = [s.name for s in STAGES if s.distributed and s.wanted(config)
                   and (out / s.artifact).exists()]
        _log(f"resume: {out} has no {run_folder.MANIFEST} (made before runs listed their "
             "files): its trained models are taken as they are, the later stages run "
             "again")
        manifest = run_folder.Manifest.create(out, _stage_outputs(), done=adopted)
      else:
        manifest.add_stages(_stage_outputs())
        changed = manifest.mismatch("flags")
        if changed:
          raise ValueError(f"--resume: {out / changed[0]} {changed[1]}: the run's flags "
                           "are not known, so it cannot be continued; run again without "
                           "--resume")
    else:
      fileio.write_json(out / "flags.json", dataclasses.asdict(config))
      manifest = run_folder.Manifest.create(out, _stage_outputs())
  except BaseException:
    held.release()
    raise
  return out, held, manifest


def _test_subset(config, ds):
  x_test, y_test = ds.x_test, ds.y_test
  if config.max_test_windows and config.max_test_windows < len(x_test):
    # A seeded random subset: the test windows are stored by subject and class.
    keep = np.sort(np.random.default_rng(config.seed).choice(
        len(x_test), config.max_test_windows, replace=False))
    x_test, y_test = x_test[keep], y_test[keep]
  return x_test, y_test


# A weight beyond this is the mark of diverged training, not of a model (normalised
# inputs, int8 grids); export.MAX_SCALE guards the same at the int8 model.
MAX_ABS_WEIGHT = 1e6


def _check_finite_weights(model, what):
  bad = [w.name for w in model.weights
         if not np.all(np.isfinite(w.numpy()) & (np.abs(w.numpy()) <= MAX_ABS_WEIGHT))]
  if bad:
    raise ValueError(f"{what} has non-finite or huge weights (|w| > {MAX_ABS_WEIGHT:g} in "
                     f"{', '.join(bad[:3])}): training diverged; lower --learning_rate and "
                     "run again without --resume")


@dataclasses.dataclass
class _Run:
  """What the stages hand each other within one run."""
  config: Config
  ds: object
  out: pathlib.Path
  start: float
  chief: bool = True        # writes the run folder (False: another multi-worker worker)
  float_model: object = None
  float_result: dict = None
  qat_model: object = None
  qat_history: dict = None
  tflite_bytes: bytes = None
  source_model: object = None  # what the export converted, with ``plan`` (QAT runs)
  plan: object = None
  window_bytes: bytes = None
  fused_bytes: bytes = None  # model_int8_fused.tflite, None where the kernel cannot
  evaluation: dict = None   # arena, x/y test subset, TFLM predictions, test vectors
  traces: dict = None       # full TFLM traces, only when evaluated in this process
  numerics: dict = None
  report: dict = None
  manifest: object = None   # run_folder.Manifest (the chief's; None on another worker)

  @property
  def deploy_model(self):
    return self.qat_model if self.qat_model is not None else self.float_model


# --- the stages: each writes its artifact last (its existence marks the stage done) ---

def _train_float(r):
  config, ds = r.config, r.ds
  model = models.sequence_classifier(config.cell, config.units, ds.x_train.shape[1:],
                                     len(ds.labels), readout=config.readout,
                                     **_cell_kwargs(config))
  train, val = _training_windows(config, ds), (ds.x_val, ds.y_val)
  ckpt = r.out / "checkpoints" / "float"
  timer = _EpochTimer()
  budget = training_budget(config, ds)
  recipe, options = _recipe(config, ds), _fit_options(r, "float", [timer])
  if config.sparsity_w == 0 and config.sparsity_u == 0:
    _log(f"training {config.cell} H={config.units} dense: {budget['epochs']} epochs")
    history = training.fit(model, train, val, recipe, seed=config.seed,
                           checkpoint_dir=ckpt, options=options)
    result = {"history": history, "phase_reports": []}
  else:
    _log(f"training {config.cell} H={config.units} w_rank={config.w_rank} "
         f"u_rank={config.u_rank}: {budget['epochs']} epochs in three phases, sparsity "
         f"W {config.sparsity_w} U {config.sparsity_u}")
    pruned = pruning.train_three_phase(model, train, val, config.spec.sparsity, recipe,
                                       seed=config.seed, checkpoint_dir=ckpt,
                                       options=options)
    model = pruned.model
    result = {"history": pruned.history, "phase_reports": pruned.phase_reports,
              "phase_epochs": list(pruned.phase_epochs)}
  _check_finite_weights(model, "the float model")
  result["epoch_seconds"] = timer.seconds
  if r.chief:
    _save_trained(r.out, model, FLOAT_MODEL, result, "float_training.json")
  r.float_model, r.float_result = model, result


def _save_trained(out, model, model_name, record, record_name):
  """The training record first, the model last: the model's file marks the stage done."""
  fileio.write_json(out / record_name, record)
  _save_model(model, out / model_name)


def _load_trained(out, model_name, record_name):
  """``(model, record)`` of a finished training stage, its weights checked again."""
  model = _load_model(out / model_name)
  _check_finite_weights(model, f"{out / model_name}")
  return model, json.loads((out / record_name).read_text())


def _load_float(r):
  r.float_model, r.float_result = _load_trained(r.out, FLOAT_MODEL, "float_training.json")


def _train_qat(r):
  config, ds = r.config, r.ds
  budget = training_budget(config, ds)
  _log(f"QAT fine-tuning: {budget['qat_epochs']} epochs")
  model = quantization.quantize_model(r.float_model, ds.x_train[:CALIBRATION_WINDOWS])
  history = training.fit(
      model, _training_windows(config, ds), (ds.x_val, ds.y_val),
      _recipe(config, ds).qat(), seed=config.seed,
      checkpoint_dir=r.out / "checkpoints" / "qat", options=_fit_options(r, "qat"))
  _check_finite_weights(model, "the QAT model")
  if not r.chief:  # calibration, export and evaluation happen on the chief alone
    r.qat_model, r.qat_history = model, history
    return
  # The weights moved: measure the grids again on the export's calibration windows.
  quantization.calibrate(model, ds.x_train[:CALIBRATION_WINDOWS])
  # From here on Keras QAT computes with TFLM's integer kernels (bit-exact).
  quantization.use_int8_kernels(model, True)
  _save_trained(r.out, model, QAT_MODEL, history, "qat_training.json")
  r.qat_model, r.qat_history = model, history


def _load_qat(r):
  r.qat_model, r.qat_history = _load_trained(r.out, QAT_MODEL, "qat_training.json")


def _export(r):
  _log("exporting the int8 step model")
  model, plan = quantization.export_inputs(r.deploy_model)  # QAT: its float twin + plan
  if r.config.cell in config_lib.LSTM_CELLS:
    _log(f"σ(f)·c on {config_lib.lstm_product_grid(r.config)}")
  tflite_bytes = export.convert_step_model(
      model, r.ds.x_train[:CALIBRATION_WINDOWS], plan=plan,
      forget_product_on_cell_grid=r.config.lstm_product_on_cell_grid)
  export.check_tflm_compatible(tflite_bytes)  # before anything is written
  if plan is not None:
    plan.save(r.out / QUANTIZATION_PLAN)
    _save_model(model, r.out / EXPORT_SOURCE)
  fileio.write_bytes(r.out / TFLITE_MODEL, tflite_bytes)
  r.tflite_bytes, r.source_model, r.plan = tflite_bytes, model, plan


def _load_export(r):
  r.tflite_bytes = (r.out / TFLITE_MODEL).read_bytes()
  export.check_tflm_compatible(r.tflite_bytes)
  if (r.out / QUANTIZATION_PLAN).is_file():
    r.plan = plan_lib.QuantizationPlan.load(r.out / QUANTIZATION_PLAN)
    if (r.out / EXPORT_SOURCE).is_file():
      r.source_model = _load_model(r.out / EXPORT_SOURCE)
    elif r.qat_model is not None:  # a run folder from before the source was saved
      r.source_model = quantization.float_twin(r.qat_model)


def _export_window(r):
  reason = _window_model_skip_reason(r.config, r.ds.x_train.shape[1])
  if reason:
    _log(f"whole-window model not exported: {reason}")
    return
  _log("exporting the unrolled whole-window model (for comparison)")
  try:
    window_bytes = export.convert_window_model(
        quantization.export_inputs(r.deploy_model)[0], r.ds.x_train[:64])
  except export.TFLMCompatibilityError as e:  # optional artifact: say why, go on
    _log(f"whole-window model not exported: {e}")
    return
  fileio.write_bytes(r.out / WINDOW_MODEL, window_bytes)
  r.window_bytes = window_bytes


def _load_window(r):
  r.window_bytes = (r.out / WINDOW_MODEL).read_bytes()


STANDALONE_DIR = "standalone"


def _standalone_c(r):
  """The fused kernel's standalone C model (no TFLM), for the cells it covers."""
  if r.config.cell not in ("fastgrnn", "fastrnn"):
    _log(f"standalone C model not written: the fused kernel covers FastGRNN and "
         f"FastRNN, not {r.config.cell}")
    return
  _log("writing the standalone C model (fused int8 kernel, no TFLM)")
  # A killed earlier attempt may have left some of its files: they are this run's own.
  fused.write_standalone(r.tflite_bytes, r.out / STANDALONE_DIR, overwrite=True)


def _fused_tflite(r):
  """model_int8_fused.tflite: the builtin model as one FASTGRNN_INT8 custom op, every
  parameter derived from the builtin model (which stays written, and the reference)."""
  try:
    fused_bytes = fused.convert_fused(r.tflite_bytes)
  except fused.FusedExportError as e:
    _log(f"{FUSED_MODEL} not written ({TFLITE_MODEL} is): the fused FASTGRNN_INT8 op "
         f"cannot express this {r.config.cell} model: {e}")
    return
  _log(f"writing {FUSED_MODEL} ({len(fused_bytes)} B, builtin {len(r.tflite_bytes)} B; "
       f"its op decodes {fused.decoded_ram_bytes(fused.extract(r.tflite_bytes))} B of "
       "parameters into the TFLM arena)")
  fileio.write_bytes(r.out / FUSED_MODEL, fused_bytes)
  r.fused_bytes = fused_bytes


def _load_fused(r):
  r.fused_bytes = (r.out / FUSED_MODEL).read_bytes()


def vector_windows(labels, n):
  """Indices of ``n`` test windows for the test vectors, classes taken in turn (the
  first window of each class, then the second, ...), so the device test sees several
  classes; in the subset's order within a class."""
  labels = np.asarray(labels)
  queues = [list(np.flatnonzero(labels == c)) for c in np.unique(labels)]
  picked = []
  while len(picked) < min(n, len(labels)):
    for queue in queues:
      if queue and len(picked) < n:
        picked.append(queue.pop(0))
  return np.asarray(picked, np.int64)


def _evaluate_tflm(r):
  config = r.config
  arena = runtime.measure_arena(r.tflite_bytes)
  x_test, y_test = _test_subset(config, r.ds)
  _log(f"running the int8 model in TFLM over {len(x_test)} test windows")
  tflm = runtime.TFLMStepRunner(r.tflite_bytes, arena_size=arena + config.arena_margin)
  traces = tflm.run_windows(x_test, progress=True)
  pick = vector_windows(y_test, config.num_test_vectors)
  # The window's class as the device computes it: from the int8 logits (the last
  # step's, or their int32 sum over the window for the mean read-out).
  evaluation = {"arena": np.int64(arena), "y_test": y_test,
                "pred": tflm.window_classes(traces["logits_q"], config.readout),
                "labels": y_test[pick]}
  evaluation.update({k: traces[k][pick] for k in ("x_q", "h_q", "logits_q")})
  with fileio.atomic_path(r.out / TFLM_EVAL) as tmp:
    with open(tmp, "wb") as f:
      np.savez(f, **evaluation)
  r.evaluation, r.traces = evaluation, traces


def _load_tflm(r):
  with np.load(r.out / TFLM_EVAL, allow_pickle=False) as z:
    r.evaluation = {k: z[k] for k in z.files}


def _device_files(r):
  ev, config, ds = r.evaluation, r.config, r.ds
  task = device_files.Task(
      labels=ds.labels, steps_per_window=ds.x_train.shape[1],
      feature_mean=ds.feature_mean, feature_std=ds.feature_std,
      frontend=ds.meta.get("frontend", "raw"),
      frontend_constants=({"kGravityAlpha": ds.meta["gravity_alpha"]}
                          if "gravity_alpha" in ds.meta else None),
      keyword_spotting=config.dataset in datasets.AUDIO_DATASETS, readout=config.readout)
  settings = device_files.settings_from_model(r.tflite_bytes, task, arena_used=int(ev["arena"]),
                                              arena_margin=config.arena_margin)
  if r.fused_bytes is not None:
    settings = dataclasses.replace(settings, fused_decoded_bytes=fused.decoded_ram_bytes(
        fused.extract(r.tflite_bytes)))
  vectors = {k: ev[k] for k in ("x_q", "h_q", "logits_q", "labels")}
  device_files.write_device_files(r.out / "device", r.tflite_bytes, settings, vectors,
                                  fused_tflite_bytes=r.fused_bytes)


def _numerics(r):
  _log("numerics diff Keras ↔ LiteRT ↔ TFLM")
  x_test, y_test = _test_subset(r.config, r.ds)
  r.numerics = parity.diff_numerics(r.float_model, r.tflite_bytes, x_test, y_test,
                                    source_model=r.source_model, plan=r.plan,
                                    tflm_traces=r.traces, readout=r.config.readout)
  parity.write_report(r.numerics, r.out / "numerics")


def _load_numerics(r):
  r.numerics = json.loads((r.out / "numerics" / "numerics.json").read_text())


def _noop(r):
  del r


def _report(r):
  config, ds, out, ev = r.config, r.ds, r.out, r.evaluation
  num_classes = len(ds.labels)
  x_test, y_test = _test_subset(config, ds)
  pred_tflm = ev["pred"]
  histories = [("float", r.float_result["history"])]
  if r.qat_history is not None:
    histories.append(("qat", r.qat_history))
  cm = report_lib.confusion_matrix(y_test, pred_tflm, num_classes)
  report_lib.plot_confusion(cm, ds.labels, out / "confusion_tflm.png",
                            "int8 TFLM, test set")
  report_lib.plot_history(histories, out / "training.png",
                          r.float_result.get("phase_epochs", ()))
  sparsity = pruning.sparsity_report(r.float_model)
  macs = models.macs_per_step(r.float_model)
  arena = int(ev["arena"])
  numerics = r.numerics
  report = {
      "command": _command_line(),
      "config": dataclasses.asdict(config),
      "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "seconds": time.time() - r.start,
      "dataset": {"labels": list(ds.labels), "train": len(ds.x_train),
                  "val": len(ds.x_val), "test": len(ds.x_test),
                  "evaluated_test_windows": len(x_test), "meta": ds.meta},
      "warnings": list(ds.meta.get("warnings", [])),
      # What the training stages ran (the tiny-data rules applied); its notes say why.
      "training": training_budget(config, ds),
      "accuracy": {
          "float_sparse_keras": _accuracy(r.float_model, x_test, y_test, config.batch_size),
          "qat_keras": (_accuracy(r.qat_model, x_test, y_test, config.batch_size)
                        if r.qat_model is not None else None),
          "int8_tflm": float(np.mean(pred_tflm == y_test)),
          "int8_litert": numerics["accuracy"].get("litert") if numerics else None,
      },
      "phase_reports": r.float_result["phase_reports"],
      "export": {
          "step_model": ("QAT's quantization plan" if r.plan is not None else
                         "post-training quantization (the converter's ranges)"),
          # How a window's class comes from the step model's logits.
          "readout": config.readout,
          # None for a cell without c; for the LSTMs, which grid their σ(f)·c is on.
          "lstm_forget_product_grid": config_lib.lstm_product_grid(config),
      },
      "macro_f1_tflm": report_lib.macro_f1(cm),
      "confusion_tflm": cm,
      "size": {
          "weights_dense_int8_bytes": sparsity["totals"]["dense_int8_bytes"],
          "weights_nonzero": sparsity["totals"]["nonzero"],
          "tflite_step_bytes": len(r.tflite_bytes),
          "tflite_window_bytes": len(r.window_bytes) if r.window_bytes else None,
          "fused_params_bytes": _fused_param_bytes(r),
          "fused_tflite_bytes": len(r.fused_bytes) if r.fused_bytes else None,
          **_standalone_flash(r),
          "tflm_arena_bytes_measured": arena,
          "tflm_arena_bytes_configured": arena + config.arena_margin,
          "macs_per_step_dense": macs["dense"],
          "macs_per_step_nonzero": macs["nonzero"],
      },
      "sparsity": sparsity["matrices"],
      "numerics_summary": numerics["summary"] if numerics else None,
      "numerics_md": (out / "numerics" / "numerics.md").read_text() if numerics else None,
      "epoch_seconds": r.float_result.get("epoch_seconds", []),
  }
  report_lib.write(report, out)
  r.report = report


def _fused_param_bytes(r):
  """Constant bytes of the fused kernel's parameters (None for cells it does not cover)."""
  if not (r.out / STANDALONE_DIR).is_dir():
    return None
  return fused.param_bytes(fused.extract(r.tflite_bytes))


def _standalone_flash(r):
  """The standalone C model's flash: text + data of model.c and the kernel built for a
  Cortex-M4F (``arm-none-eabi-gcc -Os -DFASTGRNN_INT8_SMALL``) where that compiler is
  installed; else only its constant parameters (the kernel's code not counted)."""
  folder = r.out / STANDALONE_DIR
  if not folder.is_dir():
    return {"standalone_c_flash_bytes": None, "standalone_c_flash_how": None}
  cc, size = shutil.which("arm-none-eabi-gcc"), shutil.which("arm-none-eabi-size")
  if cc and size:
    with tempfile.TemporaryDirectory() as tmp:
      total = 0
      for name in ("model.c", "fastgrnn_int8.c"):
        obj = pathlib.Path(tmp) / (name + ".o")
        subprocess.run([cc, "-std=c99", "-Os", "-mcpu=cortex-m4", "-mthumb",
                        "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-DFASTGRNN_INT8_SMALL",
                        "-ffunction-sections", "-fdata-sections", "-c", str(folder / name),
                        "-o", str(obj)], check=True, capture_output=True)
        text, data_bytes = subprocess.run([size, str(obj)], check=True, capture_output=True,
                                          text=True).stdout.splitlines()[1].split()[:2]
        total += int(text) + int(data_bytes)
    return {"standalone_c_flash_bytes": total,
            "standalone_c_flash_how": "Cortex-M4F model.c + kernel objects, text + data "
                                      "(arm-none-eabi-gcc -Os -DFASTGRNN_INT8_SMALL)"}
  return {"standalone_c_flash_bytes": fused.param_bytes(fused.extract(r.tflite_bytes)),
          "standalone_c_flash_how": "constant parameters only: arm-none-eabi-gcc not "
                                    "installed, the kernel's code is not counted"}


def _load_report(r):
  r.report = json.loads((r.out / "report.json").read_text())


@dataclasses.dataclass(frozen=True)
class Stage:
  """One step of a run: ``artifact`` (relative to the run folder) is written last.
  ``outputs`` (default: the artifact alone) are the files and folders the stage writes;
  ``manifest.json`` lists their files when it finishes. On ``--resume`` a stage is
  loaded (``load``) instead of run when ``manifest.json`` says it finished, its files are
  as it wrote them, its artifact exists and no stage before it ran again.
  ``wanted(config)`` says whether the run has the stage at all."""
  name: str
  artifact: str
  run: typing.Callable
  load: typing.Callable
  wanted: typing.Callable = lambda config: True
  distributed: bool = False  # runs under --distribute, on every worker
  outputs: tuple = ()

  @property
  def files(self):
    """What the stage writes: ``outputs``, or its artifact alone."""
    return tuple(self.outputs) or (self.artifact,)


STAGES = (
    Stage("float training", FLOAT_MODEL, _train_float, _load_float, distributed=True,
          outputs=("float_training.json", FLOAT_MODEL, "checkpoints/float",
                   "tensorboard/float")),
    Stage("QAT", QAT_MODEL, _train_qat, _load_qat, lambda c: c.qat, distributed=True,
          outputs=("qat_training.json", QAT_MODEL, "checkpoints/qat", "tensorboard/qat")),
    Stage("int8 export", TFLITE_MODEL, _export, _load_export,
          outputs=(QUANTIZATION_PLAN, EXPORT_SOURCE, TFLITE_MODEL)),
    Stage("whole-window model", WINDOW_MODEL, _export_window, _load_window,
          lambda c: c.window_model),
    Stage("standalone C model", f"{STANDALONE_DIR}/{fused.STANDALONE_FILES[-1]}",
          _standalone_c, _noop, outputs=(STANDALONE_DIR,)),
    Stage("fused .tflite", FUSED_MODEL, _fused_tflite, _load_fused),
    Stage("TFLM evaluation", TFLM_EVAL, _evaluate_tflm, _load_tflm),
    Stage("device files", "device", _device_files, _noop),
    Stage("numerics diff", "numerics/numerics.json", _numerics, _load_numerics,
          lambda c: c.numerics, outputs=("numerics",)),
    Stage("report", "report.json", _report, _load_report,
          outputs=("training.png", "confusion_tflm.png", "report.md", "report.json")),
)


def run(config, ds=None, on_output_ready=None):
  """Runs every stage of ``config`` (a ``Config``); returns the report (None on a
  multi-worker worker that is not the chief: it runs the training stages only).

  Nothing is written before the flags, the data, the model and the output folder have
  all been checked.

  Args:
    config: the resolved configuration.
    ds: the loaded dataset, when the caller (the benchmark) already has it.
    on_output_ready: called with the run folder once it exists (the CLI moves its log
      there).
  """
  start = time.time()
  validate_config(config, data_given=ds is not None)
  if ds is None:
    _log(f"loading {config.dataset}")
    name, data_dir, options = config_lib.dataset_args(config)
    ds = datasets.load_dataset(name, data_dir, **options)
  chief = distribute.is_chief(distribute.get_strategy(config.distribute))
  if not chief:
    # Another worker of a multi-worker run: it trains in step with the chief and writes
    # nothing into the run folder (on --resume it reads the chief's).
    preflight(config, ds)
    out = pathlib.Path(config.output_dir)
    if config.resume:
      _check_resume(config, out, ds)
    return _run_training_only(config, ds, out, start)
  folder_state = run_folder.check(config.output_dir, resume=config.resume,
                                  overwrite=config.overwrite)
  preflight(config, ds)
  # Flags, data, model and folder are valid: only now is anything written.
  out, held, manifest = _prepare_output(config, folder_state, ds)
  try:  # the folder stays locked until the run ends, however it ends
    if on_output_ready is not None:
      on_output_ready(out)
    training.set_seed(config.seed)
    _log(f"{config.dataset}: train {ds.x_train.shape}, val {ds.x_val.shape}, "
         f"test {ds.x_test.shape}, {len(ds.labels)} classes"
         + ("; training on train + val (--train_on_val)" if config.train_on_val else ""))
    for warning in ds.meta.get("warnings", []):
      _log(f"warning: {warning}")
    for note in training_budget(config, ds)["notes"]:
      _log(note)
    r = _Run(config, ds, out, start, manifest=manifest)
    _run_stages(r, STAGES, "")
  finally:
    held.release()
  return r.report


def _resume_status(manifest, stage, out):
  """On ``--resume``: True if ``stage`` finished and its files are as it wrote them
  (``manifest.json``), a reason (str) if it finished but they are not, None if it did
  not finish. Without a manifest (another worker reading a run from before manifests),
  only a training stage's existing model is taken, as before.

  Raises:
    ValueError: a finished stage's checkpoint is not the one it wrote: continuing
      from it is not safe.
  """
  if manifest is None:
    return True if stage.distributed and (out / stage.artifact).exists() else None
  if not manifest.done(stage.name):
    return None
  mismatch = manifest.mismatch(stage.name)
  if mismatch is None:
    return True
  rel, why = mismatch
  if rel.startswith("checkpoints/"):
    raise ValueError(f"--resume: {out / rel} {why}: the {stage.name} cannot continue from "
                     "it; run again without --resume")
  return f"{rel} {why}"


def _run_stages(r, stages, whose):
  """Runs each wanted stage of ``stages``, or on ``--resume`` loads it where it finished
  and its files are as it wrote them (``manifest.json``); once one stage runs again, so
  does every stage after it (``whose``: how the log names the artifacts' writer, e.g.
  "the chief's ")."""
  stages = [stage for stage in stages if stage.wanted(r.config)]
  if r.config.resume:
    manifest = r.manifest if r.chief else run_folder.Manifest.read(r.out)
    status = {stage.name: _resume_status(manifest, stage, r.out) for stage in stages}
  again = not r.config.resume
  for stage in stages:
    trusted = not again and status[stage.name] is True
    if trusted and (r.out / stage.artifact).exists():
      _log(f"resume: {whose}{stage.artifact} exists, {stage.name} skipped")
      stage.load(r)
      continue
    if not again and isinstance(status[stage.name], str):
      _log(f"resume: {status[stage.name]}: {stage.name} and every stage after it run again")
    if r.manifest is not None:
      r.manifest.begin(stage.name)
    stage.run(r)
    if r.manifest is not None:
      r.manifest.finish(stage.name)
    # A stage that finished without an artifact (one the cell does not have) runs
    # again as before and changes nothing; any other means its successors run too.
    again = again or not trusted


def _run_training_only(config, ds, out, start):
  """The distributed stages on a worker that is not the chief; returns None."""
  training.set_seed(config.seed)
  r = _Run(config, ds, out, start, chief=False)
  _run_stages(r, itertools.takewhile(lambda stage: stage.distributed, STAGES),
              "the chief's ")
  _log("training done on this worker; the chief writes the run folder, exports and "
       "evaluates")
  return None


def summary_line(report):
  acc = report["accuracy"]
  size = report["size"]
  return (f"int8 TFLM test accuracy {100 * acc['int8_tflm']:.2f}% "
          f"(float {100 * acc['float_sparse_keras']:.2f}%"
          + (f", QAT {100 * acc['qat_keras']:.2f}%" if acc["qat_keras"] is not None else "")
          + f"); .tflite {size['tflite_step_bytes']} B"
          + (f" (fused {size['fused_tflite_bytes']} B)" if size.get("fused_tflite_bytes")
             else "")
          + "; arena "
          f"{size['tflm_arena_bytes_measured']} B; report: "
          f"{report['config']['output_dir']}/report.md")
