"""From a trained model to the board: the stages after training, and ``deploy``.

Each stage is a function with a typed result that saves and loads itself:

| stage | result | saved as |
|---|---|---|
| ``export_int8`` | ``Int8Export``: step ``.tflite``, plan, float source | ``model_int8.tflite``, ``quantization_plan.json``, ``model_int8_source.keras`` |
| ``fuse`` | ``Fused`` (fused ``.tflite``, standalone C) or ``NotApplicable(reason)`` | ``model_int8_fused.tflite``, ``standalone/`` |
| ``evaluate_tflm`` | ``Evaluation``: each window's int8 class as the device computes it, test vectors | ``tflm_eval.npz`` |
| ``write_device`` | ``DeviceFiles`` | ``device/`` |
| ``diff_numerics`` | ``Numerics``: Keras ↔ LiteRT ↔ TFLM | ``numerics/`` |

``deploy`` runs them into a folder it owns (``run_folder``'s rules: new, empty, or an
earlier ``deploy`` of ours and nothing else, at any depth; ``deploy.json`` records its
arguments); ``pipelines.stages`` (the ``train_and_export`` CLI) runs the same functions
after its training stages, with ``run_folder.Executor`` owning resume.

Example (a tiny float model, post-training int8)::

  import numpy as np
  import tf_fastgrnn as tfg
  model = tfg.models.sequence_classifier("fastgrnn", 4, (5, 3), 2)
  x = np.random.default_rng(0).normal(size=(16, 5, 3)).astype("float32")
  y = (x[:, -1, 0] > 0).astype("int64")
  deployment = tfg.deploy(model, calibration=x, output_dir="runs/mine", test=(x, y))
  deployment.evaluation.accuracy   # int8 TFLM top-1 on the test windows
"""

import dataclasses
import datetime
import json
import pathlib

import numpy as np

from tf_fastgrnn import c_text
from tf_fastgrnn import device_files
from tf_fastgrnn import export
from tf_fastgrnn import fileio
from tf_fastgrnn import fused
from tf_fastgrnn import parity
from tf_fastgrnn import plan as plan_lib
from tf_fastgrnn import quantization
from tf_fastgrnn import run_folder
from tf_fastgrnn import runtime
from tf_fastgrnn import spec as spec_lib
from tf_fastgrnn import stepping
from tf_fastgrnn._keras import keras

__all__ = ["DeviceFiles", "Deployment", "Evaluation", "Fused", "Int8Export",
           "NotApplicable", "Numerics", "STAGES", "deploy", "diff_numerics",
           "evaluate_tflm", "export_int8", "fuse", "vector_windows", "write_device"]

TFLITE_MODEL = "model_int8.tflite"
FUSED_MODEL = "model_int8_fused.tflite"  # one FASTGRNN_INT8 custom op (fused.convert_fused)
QUANTIZATION_PLAN = "quantization_plan.json"  # next to TFLITE_MODEL (QAT models)
# The float model the export converted with the plan (the QAT model's float twin): with
# the plan, all the export needs, and what the numerics rebuild Keras QAT from.
EXPORT_SOURCE = "model_int8_source.keras"
STANDALONE_DIR = "standalone"
TFLM_EVAL = "tflm_eval.npz"
DEVICE_DIR = "device"
NUMERICS_DIR = "numerics"

# The stages after training, as run folders' manifests name them.
STAGES = (
    run_folder.Stage("int8 export", TFLITE_MODEL,
                     (QUANTIZATION_PLAN, EXPORT_SOURCE, TFLITE_MODEL)),
    run_folder.Stage("standalone C model",
                     f"{STANDALONE_DIR}/{fused.STANDALONE_FILES[-1]}", (STANDALONE_DIR,)),
    run_folder.Stage("fused .tflite", FUSED_MODEL),
    run_folder.Stage("TFLM evaluation", TFLM_EVAL),
    run_folder.Stage("device files", DEVICE_DIR),
    run_folder.Stage("numerics diff", f"{NUMERICS_DIR}/numerics.json", (NUMERICS_DIR,)),
)


def save_model(model, path):
  with fileio.atomic_path(path, suffix=".keras") as tmp:
    model.save(tmp)


def load_model(path):
  with quantization.quantize_scope():
    return keras.models.load_model(path)


# --- int8 export --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Int8Export:
  """The int8 step model ``(x_t, states) → (states, logits_t)``; with QAT, the plan it
  was exported with and the float model it converted (``source_model``)."""
  tflite: bytes
  plan: object = None          # plan_lib.QuantizationPlan, or None (post-training int8)
  source_model: object = None  # the converted float model (with ``plan``), or None

  def save(self, folder):
    """Plan and source first, the ``.tflite`` last (its file marks the stage done)."""
    folder = pathlib.Path(folder)
    if self.plan is not None:
      self.plan.save(folder / QUANTIZATION_PLAN)
      save_model(self.source_model, folder / EXPORT_SOURCE)
    fileio.write_bytes(folder / TFLITE_MODEL, self.tflite)
    return self

  @classmethod
  def load(cls, folder, qat_model=None):
    """``qat_model``: a run folder from before the source model was saved rebuilds it
    as the QAT model's float twin."""
    folder = pathlib.Path(folder)
    tflite = (folder / TFLITE_MODEL).read_bytes()
    export.check_tflm_compatible(tflite)
    plan = source = None
    if (folder / QUANTIZATION_PLAN).is_file():
      plan = plan_lib.QuantizationPlan.load(folder / QUANTIZATION_PLAN)
      if (folder / EXPORT_SOURCE).is_file():
        source = load_model(folder / EXPORT_SOURCE)
      elif qat_model is not None:
        source = quantization.float_twin(qat_model)
    return cls(tflite, plan, source)


def export_int8(model, calibration, *, lstm_product_on_cell_grid=False):
  """The int8 step model of a float or QAT model (QAT: its float twin and plan),
  calibrated on ``calibration`` windows and checked to load in TFLM.

  Returns:
    ``Int8Export`` (not yet saved).
  """
  source, plan = quantization.export_inputs(model)
  tflite = export.convert_step_model(source, calibration, plan=plan,
                                     forget_product_on_cell_grid=lstm_product_on_cell_grid)
  export.check_tflm_compatible(tflite)
  return Int8Export(tflite, plan, source if plan is not None else None)


# --- the fused kernel -----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class NotApplicable:
  """A stage that does not apply to this model, and why (one clause)."""
  reason: str


@dataclasses.dataclass(frozen=True)
class Fused:
  """The fused FASTGRNN_INT8 kernel's forms of the builtin int8 step model (which stays
  the reference): ``tflite``, the model as one custom op; ``sources``, the standalone C
  model (no TFLM); ``param_bytes``, the kernel's constant parameters (smallest
  storage); ``decoded_ram_bytes``, what the fused op decodes into the TFLM arena."""
  tflite: bytes
  sources: dict
  param_bytes: int
  decoded_ram_bytes: int

  def save_standalone(self, folder):
    # A killed earlier attempt may have left some of its files: they are the run's own.
    folder = pathlib.Path(folder) / STANDALONE_DIR
    for name in fused.STANDALONE_FILES:
      fileio.write_text(folder / name, self.sources[name])
    return self

  def save_tflite(self, folder):
    fileio.write_bytes(pathlib.Path(folder) / FUSED_MODEL, self.tflite)
    return self


def fuse(int8):
  """The fused kernel's forms of ``int8`` (an ``Int8Export``), or ``NotApplicable``:
  decided once, by whether ``fused.extract`` can express the graph exactly (FastGRNN and
  FastRNN with the kernel's activations; not an LSTM or GRU). Each weight storage the
  forms use is extracted once."""
  try:
    smallest = fused.extract(int8.tflite, "auto")
  except fused.FusedExportError as e:
    return NotApplicable(f"the fused FASTGRNN_INT8 kernel cannot express this model: {e}")
  extracted = {"auto": smallest}
  for storage in ("fast:dsp",) + fused.standalone_storages():
    if storage not in extracted:
      extracted[storage] = fused.extract(int8.tflite, storage)
  return Fused(
      tflite=fused.convert_fused(int8.tflite, "fast:dsp", params=extracted["fast:dsp"]),
      sources=fused.standalone_sources(int8.tflite, extracted=extracted),
      param_bytes=fused.param_bytes(smallest),
      decoded_ram_bytes=fused.decoded_ram_bytes(smallest))


# --- TFLM evaluation ------------------------------------------------------------------

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


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """The int8 step model in TFLM over test windows: ``pred``, each window's class as
  the device computes it (from the int8 logits: the last step's, or their int32 sum);
  ``y`` the labels; ``arena`` the smallest arena that runs it (bytes, this host);
  ``vectors``, the test vectors' ``x_q``, ``h_q``, ``logits_q`` and ``labels``;
  ``traces``, the full TFLM traces (only in the process that ran them)."""
  arena: int
  y: np.ndarray
  pred: np.ndarray
  vectors: dict
  traces: dict = None

  @property
  def accuracy(self):
    return float(np.mean(self.pred == self.y))

  def save(self, folder):
    with fileio.atomic_path(pathlib.Path(folder) / TFLM_EVAL) as tmp:
      with open(tmp, "wb") as f:
        np.savez(f, arena=np.int64(self.arena), y_test=self.y, pred=self.pred,
                 **self.vectors)
    return self

  @classmethod
  def load(cls, folder):
    with np.load(pathlib.Path(folder) / TFLM_EVAL, allow_pickle=False) as z:
      return cls(arena=int(z["arena"]), y=z["y_test"], pred=z["pred"],
                 vectors={k: z[k] for k in ("labels", "x_q", "h_q", "logits_q")})


def evaluate_tflm(int8, x, y, *, readout, arena_margin, num_test_vectors, log=None):
  """Runs ``int8`` in the TFLM runtime over windows ``x`` (labels ``y``) with the
  smallest arena that runs it plus ``arena_margin``."""
  arena = runtime.measure_arena(int8.tflite)
  if log is not None:
    log(f"running the int8 model in TFLM over {len(x)} test windows")
  tflm = runtime.TFLMStepRunner(int8.tflite, arena_size=arena + arena_margin)
  traces = tflm.run_windows(x, progress=log is not None)
  pick = vector_windows(y, num_test_vectors)
  vectors = {"labels": np.asarray(y)[pick]}
  vectors.update({k: traces[k][pick] for k in ("x_q", "h_q", "logits_q")})
  return Evaluation(arena=int(arena), y=np.asarray(y),
                    pred=tflm.window_classes(traces["logits_q"], readout),
                    vectors=vectors, traces=traces)


# --- device files -----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class DeviceFiles:
  """``device/``: ``model_data.*``, ``model_settings.h``, test vectors, the fused
  model's data where the kernel applies (``tflm_app/`` builds them)."""
  folder: pathlib.Path


def write_device(folder, int8, fusion, evaluation, task, *, arena_margin):
  """Writes ``folder/device`` from the int8 model, its fused form (``Fused`` or
  ``NotApplicable``), its TFLM ``Evaluation`` (arena and test vectors; None: the
  arena is measured here, no test vectors) and a ``device_files.Task`` (labels,
  normalisation, front end, read-out); ``arena_margin`` bytes on top of the arena."""
  arena = evaluation.arena if evaluation is not None else runtime.measure_arena(int8.tflite)
  settings = device_files.settings_from_model(int8.tflite, task, arena_used=arena,
                                              arena_margin=arena_margin)
  fused_bytes = None
  if isinstance(fusion, Fused):
    settings = dataclasses.replace(settings, fused_decoded_bytes=fusion.decoded_ram_bytes)
    fused_bytes = fusion.tflite
  out = pathlib.Path(folder) / DEVICE_DIR
  device_files.write_device_files(out, int8.tflite, settings,
                                  evaluation.vectors if evaluation is not None else None,
                                  fused_tflite_bytes=fused_bytes)
  return DeviceFiles(out)


# --- numerics ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Numerics:
  """``parity.diff_numerics``'s comparison Keras ↔ LiteRT ↔ TFLM (``result``); its
  ``accuracy`` holds each form's top-1 on the same windows."""
  result: dict

  def save(self, folder):
    parity.write_report(self.result, pathlib.Path(folder) / NUMERICS_DIR)
    return self

  @classmethod
  def load(cls, folder):
    return cls(json.loads((pathlib.Path(folder) / NUMERICS_DIR / "numerics.json")
                          .read_text()))


def diff_numerics(float_model, int8, evaluation, x, y, *, readout):
  """Keras float, Keras QAT (rebuilt from ``int8``'s source and plan), LiteRT and TFLM
  on windows ``x`` (the TFLM traces of ``evaluation`` reused where it has them)."""
  return Numerics(parity.diff_numerics(
      float_model, int8.tflite, x, y, source_model=int8.source_model, plan=int8.plan,
      tflm_traces=evaluation.traces if evaluation is not None else None, readout=readout))


# --- deploy: the public path --------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Deployment:
  """What ``deploy`` wrote into ``folder``, as typed results (None: not asked for)."""
  folder: pathlib.Path
  int8: Int8Export
  fused: object          # Fused, or NotApplicable
  evaluation: Evaluation
  device: DeviceFiles
  numerics: Numerics


def _float_array(name, value, ndim):
  try:
    array = np.asarray(value, np.float32)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{name} must be a float array, got {type(value).__name__}") from e
  if array.ndim != ndim:
    raise ValueError(f"{name} must have {ndim} dimensions, got shape {list(array.shape)}")
  if not np.all(np.isfinite(array)):
    raise ValueError(f"{name} holds non-finite values")
  return array


KERAS3_CHECK_WINDOWS = 256  # windows a Keras 3 model and its tf_keras twin must agree on


def is_keras3_model(model):
  """Whether ``model`` is a Keras 3 (``import keras``) model; Keras 3 is not imported."""
  return any(c.__module__.split(".")[0] == "keras" for c in type(model).__mro__)


def tf_keras_twin(model, windows):
  """``model``, or for a Keras 3 model its tf_keras twin: ``to_tf_keras``'s explicit copy
  by weight name, checked to give the same logits on (up to 256 of) ``windows``."""
  if not is_keras3_model(model):
    return model
  from tf_fastgrnn import keras3_bridge  # pylint: disable=import-outside-toplevel
  return keras3_bridge.to_tf_keras(model, np.asarray(windows)[:KERAS3_CHECK_WINDOWS])


def _deployable(model, calibration):
  """The tf_keras model to export: ``model`` itself, a ``Compressed``'s, or a Keras 3
  model's twin (checked on the calibration windows)."""
  model = tf_keras_twin(getattr(model, "deployable", model), calibration)
  if not isinstance(model, keras.Model):
    raise ValueError(f"model must be a tf_keras model (tf_fastgrnn.keras) or the result "
                     f"of tf_fastgrnn.compress, got {type(model).__module__}."
                     f"{type(model).__name__}")
  stepping.parts(model)  # the layouts the export takes, or one line saying why not
  return model


def _check_windows(name, windows, steps, features):
  x = _float_array(name, windows, 3)
  if len(x) == 0 or tuple(x.shape[1:]) != (steps, features):
    raise ValueError(f"{name} must be [N, {steps}, {features}] windows with N > 0 (the "
                     f"model's input), got {list(x.shape)}")
  return x


def _check_arguments(model, calibration, test, labels, normalisation, options):
  """Every argument of ``deploy``, before any work: ``(model, calibration, test,
  device_files.Task)``, or one ``ValueError`` naming the bad value."""
  model = _deployable(model, calibration)
  _, dense = stepping.parts(model)
  steps, features = (int(d) for d in model.input_shape[1:])
  classes = int(dense.units)
  calibration = _check_windows("calibration", calibration, steps, features)
  if test is not None:
    if not (isinstance(test, (tuple, list)) and len(test) == 2):
      raise ValueError(f"test must be (windows, labels), got {type(test).__name__}")
    x = _check_windows("test windows", test[0], steps, features)
    y = np.asarray(test[1])
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
      raise ValueError(f"test labels must be {len(x)} integers (one per window), got "
                       f"{y.dtype} {list(y.shape)}")
    if len(y) and (y.min() < 0 or y.max() >= classes):
      raise ValueError(f"test labels must lie in [0, {classes}) (the model's classes), "
                       f"got {int(y.min())}..{int(y.max())}")
    test = (x, y.astype(np.int64))
  labels = tuple(str(k) for k in range(classes)) if labels is None else tuple(labels)
  if len(labels) != classes:
    raise ValueError(f"labels must name the model's {classes} classes, got {len(labels)}")
  for k, label in enumerate(labels):
    if not isinstance(label, str):
      raise ValueError(f"label {k} must be a str, got {type(label).__name__}")
    c_text.c_string_literal(label, f"label {k}")
  if normalisation is None:
    mean, std = np.zeros(features), np.ones(features)
  else:
    if not (isinstance(normalisation, (tuple, list)) and len(normalisation) == 2):
      raise ValueError("normalisation must be (mean, std) of the raw features, got "
                       f"{type(normalisation).__name__}")
    mean = _float_array("normalisation mean", normalisation[0], 1)
    std = _float_array("normalisation std", normalisation[1], 1)
    if mean.shape != (features,) or std.shape != (features,):
      raise ValueError(f"normalisation mean and std must have {features} values (the "
                       f"model's features), got {len(mean)} and {len(std)}")
    if np.any(std <= 0):
      raise ValueError(f"normalisation std must be positive, got {std.tolist()}")
  for name in ("arena_margin", "num_test_vectors"):
    value = options[name]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
      raise ValueError(f"{name} must be an int >= 0, got {value!r}")
  for name in ("numerics", "overwrite", "lstm_product_on_cell_grid"):
    if not isinstance(options[name], bool):
      raise ValueError(f"{name} must be True or False, got {options[name]!r}")
  task = device_files.Task(labels=labels, steps_per_window=steps,
                           feature_mean=tuple(float(v) for v in mean),
                           feature_std=tuple(float(v) for v in std),
                           readout=stepping.readout(model))
  return model, calibration, test, task


def deploy(model, calibration, output_dir, *, test=None, labels=None, normalisation=None,
           **options):
  """Writes everything a board needs for ``model`` into ``output_dir``.

  The int8 step ``.tflite`` (QAT models: with their quantization plan; float ones:
  post-training int8 calibrated on ``calibration``), the fused ``.tflite`` and the
  standalone C model where the fused kernel applies (FastGRNN/FastRNN), ``device/``
  for ``tflm_app/``, and with ``test`` the TFLM evaluation and the numerics diff.
  ``output_dir`` must be new, empty, or an earlier ``deploy`` (moved aside to
  ``<name>.replaced-<UTC time>``, or deleted with ``overwrite=True``) holding nothing
  else; every argument is checked before anything is written or computed.

  Args:
    model: a tf_keras ``Input → RNN(cell) → Dense`` classifier (last or mean read-out,
      ``stepping.parts``), float or QAT, or ``compress``'s result; or a Keras 3 one with
      ``tf_fastgrnn.keras3`` cells, first copied into its tf_keras twin
      (``to_tf_keras``, checked on the calibration windows).
    calibration: ``[N, T, D]`` windows (normalised as the model was trained) the int8
      ranges are calibrated on.
    output_dir: the folder to write.
    test: optional ``(windows [M, T, D], labels [M])``: TFLM accuracy, test vectors,
      numerics.
    labels: the class names (default ``"0"``, ``"1"``, ...).
    normalisation: ``(mean, std)`` of the raw features, as the device normalises them
      (default: none, mean 0 and std 1).
    **options: ``overwrite`` (False); the export's, defaulting to ``ExportSpec()``'s
      (the command line's): ``numerics`` (the diff Keras ↔ LiteRT ↔ TFLM, when
      ``test`` is given), ``arena_margin`` (bytes), ``num_test_vectors``,
      ``lstm_product_on_cell_grid`` (LSTM cells only).

  Returns:
    A ``Deployment``.

  Raises:
    ValueError: a bad argument (one line naming it), or an ``output_dir`` holding files
      this tool did not write (``run_folder.RunFolderError``); nothing written.
  """
  unknown = sorted(set(options) - set(_OPTIONS))
  if unknown:
    raise ValueError(f"deploy() got unknown options {unknown}; known: {sorted(_OPTIONS)}")
  options = {**_OPTIONS, **options}
  original = model
  model, calibration, test, task = _check_arguments(model, calibration, test, labels,
                                                    normalisation, options)
  state = run_folder.check(output_dir, resume=False, overwrite=options["overwrite"],
                           flag="output_dir", record=run_folder.DEPLOY)
  out = pathlib.Path(output_dir)
  held, note = run_folder.claim(out, state, resume=False, overwrite=options["overwrite"],
                                what="tf_fastgrnn.deploy", flag="output_dir",
                                record=run_folder.DEPLOY)
  try:
    if note:  # where the earlier deploy went
      _log(note)
    fileio.write_json(out / run_folder.DEPLOY, {
        "format": run_folder.DEPLOY_FORMAT,
        "made": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "input_shape": list(model.input_shape[1:]), "readout": task.readout,
        "qat": quantization.is_qat_model(model), "calibration_windows": len(calibration),
        "test_windows": None if test is None else len(test[0]),
        "labels": list(task.labels), "feature_mean": list(task.feature_mean),
        "feature_std": list(task.feature_std), "options": options})
    stages = [s for s in STAGES if test is not None or s.name not in (
        "TFLM evaluation", "numerics diff")]
    if not options["numerics"]:
      stages = [s for s in stages if s.name != "numerics diff"]
    manifest = run_folder.Manifest.create(out, {s.name: s.files for s in stages},
                                          record=run_folder.DEPLOY)
    ex = run_folder.Executor(out, stages, manifest=manifest, resume=False, log=_log)
    float_model = getattr(original, "float_model", None)
    if float_model is None and not quantization.is_qat_model(model):
      float_model = model
    return _run(ex, model, float_model, calibration, test, task, options)
  finally:
    held.release()


def _log(message):
  print(f"[tf_fastgrnn.deploy] {message}", flush=True)


# The export's defaults are the specification's (the command line's too).
_OPTIONS = {"overwrite": False, "numerics": spec_lib.ExportSpec().numerics,
            "arena_margin": spec_lib.ExportSpec().arena_margin,
            "num_test_vectors": spec_lib.ExportSpec().num_test_vectors,
            "lstm_product_on_cell_grid": spec_lib.ExportSpec().lstm_product_on_cell_grid}


def _has_cell_state(model):
  """An LSTM (Keras' or the low-rank one): its step carries c besides h."""
  size = stepping.parts(model)[0].cell.state_size
  return isinstance(size, (list, tuple)) and len(size) == 2


def _run(ex, model, float_model, calibration, test, task, options):
  out, readout = ex.out, task.readout
  # Like the command line, σ(f)·c's grid is a choice for cells with c only.
  on_cell_grid = options["lstm_product_on_cell_grid"] and _has_cell_state(model)
  int8 = ex.run("int8 export", lambda: export_int8(
      model, calibration, lstm_product_on_cell_grid=on_cell_grid).save(out), None)
  fusion = fuse(int8)
  # NotApplicable: both stages finish having written nothing.
  applies = isinstance(fusion, Fused)
  if not applies:
    ex.log(f"{FUSED_MODEL} and the standalone C model not written: {fusion.reason}")
  ex.run("standalone C model",
         lambda: fusion.save_standalone(out) if applies else fusion, None)
  ex.run("fused .tflite", lambda: fusion.save_tflite(out) if applies else fusion, None)
  evaluation = numerics = None
  if test is not None:
    evaluation = ex.run("TFLM evaluation", lambda: evaluate_tflm(
        int8, *test, readout=readout, arena_margin=options["arena_margin"],
        num_test_vectors=options["num_test_vectors"]).save(out), None)
  device_result = ex.run("device files", lambda: write_device(
      out, int8, fusion, evaluation, task, arena_margin=options["arena_margin"]), None)
  if test is not None and options["numerics"]:
    numerics = ex.run("numerics diff", lambda: diff_numerics(
        float_model, int8, evaluation, *test, readout=readout).save(out), None)
  return Deployment(out, int8, fusion, evaluation, device_result, numerics)

