"""The stages of ``train_and_export``, each resumable, each leaving whole files only.

The CLI over the public API: the stage functions of ``tf_fastgrnn.compress`` and
``tf_fastgrnn.deploy`` (``compression.train_float``, ``train_qat``;
``deployment.export_int8``, ``fuse``, ``evaluate_tflm``, ``write_device``,
``diff_numerics``), each returning a typed result that saves and loads itself, plus the
CLI's own whole-window model and report. ``run(spec_or_config)`` is the whole run, for
the command line (a ``Config``) and for the sweep and the benchmarks (a ``Spec``).

``run_folder.Executor`` owns resume: as each stage finishes, ``manifest.json`` lists the
files it wrote (size, sha256; ``run_folder.Manifest``). On ``--resume`` a stage is
loaded instead of run only if it finished and its files are still as listed; otherwise
it runs again, and so does every stage after it. ``STAGES`` lists the stages (name,
artifact, outputs) as the manifest knows them; ``_run_stages`` is the run itself,
results handed from stage to stage as arguments. A training stage killed midway
continues from its checkpoints (``checkpoints/float``,
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
import json
import pathlib
import sys
import time

import numpy as np

import data as datasets
from pipelines import config as config_lib
from pipelines import report as report_lib
from pipelines import run_folder
from pipelines.config import Config
from pipelines.config import validate_config
from tf_fastgrnn import augment as augment_lib
from tf_fastgrnn import c_text
from tf_fastgrnn import compression
from tf_fastgrnn import deployment
from tf_fastgrnn import device_files
from tf_fastgrnn import distribute
from tf_fastgrnn import export
from tf_fastgrnn import fileio
from tf_fastgrnn import models
from tf_fastgrnn import pruning
from tf_fastgrnn import quantization
from tf_fastgrnn import training

__all__ = ["Config", "run", "summary_line", "validate_config", "vector_windows"]

FLOAT_MODEL = compression.FLOAT_MODEL
QAT_MODEL = compression.QAT_MODEL
CALIBRATION_WINDOWS = compression.CALIBRATION_WINDOWS
TFLITE_MODEL = deployment.TFLITE_MODEL
WINDOW_MODEL = "model_int8_window.tflite"
FUSED_MODEL = deployment.FUSED_MODEL
QUANTIZATION_PLAN = deployment.QUANTIZATION_PLAN
EXPORT_SOURCE = deployment.EXPORT_SOURCE
STANDALONE_DIR = deployment.STANDALONE_DIR
TFLM_EVAL = deployment.TFLM_EVAL
vector_windows = deployment.vector_windows


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


def _recipe(config, ds):
  """The ``Recipe`` the training stages fit with: the run's, with the batch, the epochs
  and ``keep_best`` the tiny-data rules give on these data (``training_budget``)."""
  budget = training_budget(config, ds)
  return config.spec.recipe.replace(
      batch_size=budget["batch_size"], epochs=budget["epochs"],
      qat_epochs=budget["qat_epochs"], keep_best=budget["keep_best"])


def _fit_options(config, ds, out, phase, chief):
  """``training.FitOptions`` of a training stage: progress on the chief, logs under
  ``tensorboard/<phase>``, the strategy, the training batches' augmentation."""
  return training.FitOptions(
      verbose=1 if chief else 0, tensorboard_dir=out / "tensorboard" / phase,
      distribute=config.distribute,
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
  """What the training stages run on these data (``compression.budget`` of the flags'
  recipe and sparsity): ``batch_size``, ``epochs``, ``qat_epochs`` and ``keep_best``
  after the tiny-data rules, ``steps_per_epoch``, and ``notes``: one line for each rule
  that changed a value (none on a run with many windows)."""
  return compression.budget(config.spec.recipe, config.spec.sparsity,
                            len(_training_windows(config, ds)[0]), len(ds.x_val),
                            config.qat)


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
        adopted = [s.name for s in _wanted(config) if s.distributed
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


def test_subset(ds, max_windows, seed):
  """The test windows a run evaluates: all, or a seeded random subset of ``max_windows``
  (the test windows are stored by subject and class), in their stored order."""
  x_test, y_test = ds.x_test, ds.y_test
  if max_windows and max_windows < len(x_test):
    keep = np.sort(np.random.default_rng(seed).choice(len(x_test), max_windows,
                                                      replace=False))
    x_test, y_test = x_test[keep], y_test[keep]
  return x_test, y_test


# --- the stages --------------------------------------------------------------------------

STAGES = (
    run_folder.Stage("float training", FLOAT_MODEL,
                     (compression.FLOAT_RECORD, FLOAT_MODEL, "checkpoints/float",
                      "tensorboard/float"), distributed=True),
    run_folder.Stage("QAT", QAT_MODEL, (compression.QAT_RECORD, QAT_MODEL, "checkpoints/qat",
                                        "tensorboard/qat"), distributed=True),
    deployment.STAGES[0],  # int8 export
    run_folder.Stage("whole-window model", WINDOW_MODEL),
    *deployment.STAGES[1:],  # standalone C, fused .tflite, TFLM evaluation, device, numerics
    run_folder.Stage("report", "report.json",
                     ("training.png", "confusion_tflm.png", "report.md", "report.json")),
)
_OPTIONAL = {"QAT": lambda c: c.qat, "whole-window model": lambda c: c.window_model,
             "numerics diff": lambda c: c.numerics}


def _wanted(config):
  """The stages this run has."""
  return [s for s in STAGES if _OPTIONAL.get(s.name, lambda c: True)(config)]


def _train_float(config, ds, out, chief):
  model = models.sequence_classifier(config.cell, config.units, ds.x_train.shape[1:],
                                     len(ds.labels), readout=config.readout,
                                     **_cell_kwargs(config))
  recipe = _recipe(config, ds)
  if config.sparsity_w == 0 and config.sparsity_u == 0:
    _log(f"training {config.cell} H={config.units} dense: {recipe.epochs} epochs")
  else:
    _log(f"training {config.cell} H={config.units} w_rank={config.w_rank} "
         f"u_rank={config.u_rank}: {recipe.epochs} epochs in three phases, sparsity "
         f"W {config.sparsity_w} U {config.sparsity_u}")
  trained = compression.train_float(
      model, _training_windows(config, ds), (ds.x_val, ds.y_val), config.spec.sparsity,
      recipe, seed=config.seed, checkpoint_dir=out / "checkpoints" / "float",
      options=_fit_options(config, ds, out, "float", chief))
  return trained.save(out) if chief else trained


def _train_qat(config, ds, out, chief, trained):
  recipe = _recipe(config, ds)
  _log(f"QAT fine-tuning: {recipe.qat_epochs} epochs")
  # Calibration, export and evaluation happen on the chief alone.
  qat = compression.train_qat(
      trained.model, _training_windows(config, ds), (ds.x_val, ds.y_val), recipe,
      ds.x_train[:CALIBRATION_WINDOWS], seed=config.seed,
      checkpoint_dir=out / "checkpoints" / "qat",
      options=_fit_options(config, ds, out, "qat", chief))
  return qat.save(out) if chief else qat


def _export_window(config, ds, out, model):
  """The unrolled whole-window model (for comparison), or None with a line why not."""
  reason = _window_model_skip_reason(config, ds.x_train.shape[1])
  if reason:
    _log(f"whole-window model not exported: {reason}")
    return None
  _log("exporting the unrolled whole-window model (for comparison)")
  try:
    window_bytes = export.convert_window_model(quantization.export_inputs(model)[0],
                                               ds.x_train[:64])
  except export.TFLMCompatibilityError as e:  # optional artifact: say why, go on
    _log(f"whole-window model not exported: {e}")
    return None
  fileio.write_bytes(out / WINDOW_MODEL, window_bytes)
  return window_bytes


def _task(config, ds):
  """What the device does with the model besides the ``.tflite``."""
  return device_files.Task(
      labels=tuple(ds.labels), steps_per_window=ds.x_train.shape[1],
      feature_mean=ds.feature_mean, feature_std=ds.feature_std,
      frontend=ds.meta.get("frontend", "raw"),
      frontend_constants=({"kGravityAlpha": ds.meta["gravity_alpha"]}
                          if "gravity_alpha" in ds.meta else None),
      keyword_spotting=config.dataset in datasets.AUDIO_DATASETS, readout=config.readout)


def _run_stages(config, ds, out, start, manifest):
  """Every stage of the run, in order; returns the report."""
  ex = run_folder.Executor(out, _wanted(config), manifest=manifest, resume=config.resume,
                           log=_log)
  trained = ex.run("float training", lambda: _train_float(config, ds, out, True),
                   lambda: compression.Trained.load(out))
  qat = None
  if config.qat:
    qat = ex.run("QAT", lambda: _train_qat(config, ds, out, True, trained),
                 lambda: compression.QATTrained.load(out))
  deployable = qat.model if qat is not None else trained.model

  def export_int8():
    _log("exporting the int8 step model")
    if config.cell in config_lib.LSTM_CELLS:
      _log(f"σ(f)·c on {config_lib.lstm_product_grid(config)}")
    return deployment.export_int8(
        deployable, ds.x_train[:CALIBRATION_WINDOWS],
        lstm_product_on_cell_grid=config.lstm_product_on_cell_grid).save(out)
  int8 = ex.run("int8 export", export_int8, lambda: deployment.Int8Export.load(
      out, qat.model if qat is not None else None))
  window_bytes = None
  if config.window_model:
    window_bytes = ex.run("whole-window model",
                          lambda: _export_window(config, ds, out, deployable),
                          lambda: (out / WINDOW_MODEL).read_bytes())
  fusion = deployment.fuse(int8)  # decided once: the fused kernel applies, or why not
  ex.run("standalone C model", lambda: _standalone_c(out, fusion), lambda: fusion)
  ex.run("fused .tflite", lambda: _fused_tflite(out, int8, fusion), lambda: fusion)
  x_test, y_test = test_subset(ds, config.max_test_windows, config.seed)
  evaluation = ex.run("TFLM evaluation", lambda: deployment.evaluate_tflm(
      int8, x_test, y_test, readout=config.readout, arena_margin=config.arena_margin,
      num_test_vectors=config.num_test_vectors, log=_log).save(out),
                      lambda: deployment.Evaluation.load(out))
  ex.run("device files", lambda: deployment.write_device(
      out, int8, fusion, evaluation, _task(config, ds), arena_margin=config.arena_margin),
         lambda: None)
  numerics = None
  if config.numerics:
    def diff():
      _log("numerics diff Keras ↔ LiteRT ↔ TFLM")
      return deployment.diff_numerics(trained.model, int8, evaluation, x_test, y_test,
                                  readout=config.readout).save(out)
    numerics = ex.run("numerics diff", diff, lambda: deployment.Numerics.load(out))
  results = _Results(trained, qat, int8, window_bytes, fusion, evaluation, numerics)
  return ex.run("report", lambda: _report(config, ds, out, start, results),
                lambda: json.loads((out / "report.json").read_text()))


def _standalone_c(out, fusion):
  """The fused kernel's standalone C model (no TFLM), where the kernel applies."""
  if isinstance(fusion, deployment.NotApplicable):
    _log(f"standalone C model not written: {fusion.reason}")
    return fusion
  _log("writing the standalone C model (fused int8 kernel, no TFLM)")
  return fusion.save_standalone(out)


def _fused_tflite(out, int8, fusion):
  """model_int8_fused.tflite: the builtin model as one FASTGRNN_INT8 custom op, every
  parameter derived from the builtin model (which stays written, and the reference)."""
  if isinstance(fusion, deployment.NotApplicable):
    _log(f"{FUSED_MODEL} not written ({TFLITE_MODEL} is): {fusion.reason}")
    return fusion
  _log(f"writing {FUSED_MODEL} ({len(fusion.tflite)} B, builtin {len(int8.tflite)} B; "
       f"its op decodes {fusion.decoded_ram_bytes} B of parameters into the TFLM arena)")
  return fusion.save_tflite(out)


@dataclasses.dataclass(frozen=True)
class _Results:
  """The typed results the report reads (None: a stage the run does not have)."""
  trained: compression.Trained
  qat: compression.QATTrained
  int8: deployment.Int8Export
  window_bytes: bytes
  fusion: object  # deployment.Fused or deployment.NotApplicable
  evaluation: deployment.Evaluation
  numerics: deployment.Numerics


def _keras_accuracies(config, ds, results):
  """Top-1 of Keras float and QAT on the test subset: the numerics diff's (same
  windows, same read-out) where it ran, else computed here, once."""
  if results.numerics is not None:
    accuracy = results.numerics.result["accuracy"]
    return accuracy.get("keras_float"), accuracy.get("keras_qat")
  x_test, y_test = test_subset(ds, config.max_test_windows, config.seed)

  def top1(model):
    # Large batches: the RNN loop's per-step cost (the int8 kernels' many small ops)
    # is paid once per batch.
    logits = model.predict(x_test, batch_size=max(config.batch_size, 512), verbose=0)
    return float(np.mean(np.argmax(logits, -1) == y_test))
  return (top1(results.trained.model),
          top1(results.qat.model) if results.qat is not None else None)


def _report(config, ds, out, start, results):
  ev, numerics = results.evaluation, results.numerics
  num_classes = len(ds.labels)
  x_test, y_test = test_subset(ds, config.max_test_windows, config.seed)
  histories = [("float", results.trained.record["history"])]
  if results.qat is not None:
    histories.append(("qat", results.qat.history))
  cm = report_lib.confusion_matrix(y_test, ev.pred, num_classes)
  plots = report_lib.plot_confusion(cm, ds.labels, out / "confusion_tflm.png",
                                    "int8 TFLM, test set")
  plots = report_lib.plot_history(histories, out / "training.png",
                                  results.trained.record.get("phase_epochs", ())) and plots
  sparsity = pruning.sparsity_report(results.trained.model)
  macs = models.macs_per_step(results.trained.model)
  float_accuracy, qat_accuracy = _keras_accuracies(config, ds, results)
  fusion = results.fusion if isinstance(results.fusion, deployment.Fused) else None
  report = {
      "plots": plots,
      "command": _command_line(),
      "config": dataclasses.asdict(config),
      "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "seconds": time.time() - start,
      "dataset": {"labels": list(ds.labels), "train": len(ds.x_train),
                  "val": len(ds.x_val), "test": len(ds.x_test),
                  "evaluated_test_windows": len(x_test), "meta": ds.meta},
      "warnings": list(ds.meta.get("warnings", [])),
      # What the training stages ran (the tiny-data rules applied); its notes say why.
      "training": training_budget(config, ds),
      "accuracy": {
          "float_sparse_keras": float_accuracy,
          "qat_keras": qat_accuracy,
          "int8_tflm": ev.accuracy,
          "int8_litert": numerics.result["accuracy"].get("litert") if numerics else None,
      },
      "phase_reports": results.trained.record["phase_reports"],
      "export": {
          "step_model": ("QAT's quantization plan" if results.int8.plan is not None else
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
          "tflite_step_bytes": len(results.int8.tflite),
          "tflite_window_bytes": (len(results.window_bytes) if results.window_bytes
                                  else None),
          # The fused kernel's constant parameters (None where it does not apply);
          # the standalone C model's flash is measured by benchmarks/, with a compiler.
          "fused_params_bytes": fusion.param_bytes if fusion else None,
          "fused_tflite_bytes": len(fusion.tflite) if fusion else None,
          "tflm_arena_bytes_measured": ev.arena,
          "tflm_arena_bytes_configured": ev.arena + config.arena_margin,
          "macs_per_step_dense": macs["dense"],
          "macs_per_step_nonzero": macs["nonzero"],
      },
      "sparsity": sparsity["matrices"],
      "numerics_summary": numerics.result["summary"] if numerics else None,
      "numerics_md": (out / "numerics" / "numerics.md").read_text() if numerics else None,
      "epoch_seconds": results.trained.record.get("epoch_seconds", []),
  }
  report_lib.write(report, out)
  return report


def run(spec_or_config, ds=None, on_output_ready=None, *, output_dir=None, **run_options):
  """Runs every stage of a run; returns the report (None on a multi-worker worker that
  is not the chief: it runs the training stages only).

  Nothing is written before the flags, the data, the model and the output folder have
  all been checked.

  Args:
    spec_or_config: a ``tf_fastgrnn.Spec`` (with ``output_dir``, and as ``run_options``
      ``resume``, ``overwrite``, ``distribute``, ``preset``: ``Config.from_spec``), or
      a resolved ``Config`` (the CLI's; then neither).
    ds: the loaded dataset, when the caller (the benchmark) already has it.
    on_output_ready: called with the run folder once it exists (the CLI moves its log
      there).

  Example (what the sweep and the benchmarks call)::

    report = stages.run(Spec.preset("har6"), output_dir="runs/har6")
  """
  config = _as_config(spec_or_config, output_dir, run_options)
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
    return _run_training_only(config, ds, out)
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
    report = _run_stages(config, ds, out, start, manifest)
  finally:
    held.release()
  return report


def _as_config(spec_or_config, output_dir, run_options):
  if isinstance(spec_or_config, Config):
    if output_dir is not None or run_options:
      raise ValueError("run(config): the Config holds output_dir and how the run runs; "
                       "pass them only with a Spec")
    return spec_or_config
  if not isinstance(spec_or_config, config_lib.spec_lib.Spec):
    raise ValueError(f"run() takes a tf_fastgrnn.Spec or a Config, got "
                     f"{type(spec_or_config).__name__}")
  if output_dir is None:
    raise ValueError("run(spec) needs output_dir (the run folder)")
  return Config.from_spec(spec_or_config, output_dir, **run_options)


def _run_training_only(config, ds, out):
  """The training stages on a multi-worker worker that is not the chief: in step with
  the chief, writing nothing into the run folder (on --resume it reads the chief's
  trained models); returns None."""
  training.set_seed(config.seed)
  stages = [s for s in _wanted(config) if s.distributed]
  ex = run_folder.Executor(out, stages, manifest=run_folder.Manifest.read(out)
                           if config.resume else None, resume=config.resume, log=_log,
                           whose="the chief's ", write_manifest=False)
  trained = ex.run("float training", lambda: _train_float(config, ds, out, False),
                   lambda: compression.Trained.load(out))
  if config.qat:
    ex.run("QAT", lambda: _train_qat(config, ds, out, False, trained),
           lambda: compression.QATTrained.load(out))
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
