"""A user's model compressed: the paper's three sparsity phases (TF-MOT), then QAT.

The training stages, each a function with a typed result that saves and loads itself:

| stage | result | saved as |
|---|---|---|
| ``train_float`` | ``Trained``: float model (pruned, stripped), history, phase reports | ``model_float.keras``, ``float_training.json`` |
| ``train_qat`` | ``QATTrained``: QAT model (calibrated, TFLM's int8 kernels on), history | ``model_qat.keras``, ``qat_training.json`` |

``compress`` runs them on arrays in memory and returns a ``Compressed`` for ``deploy``;
``pipelines.stages`` (the ``train_and_export`` CLI) runs the same two functions into its
run folder, with checkpoints.
"""

import dataclasses
import json
import math
import pathlib
import time

import numpy as np

from tf_fastgrnn import deployment
from tf_fastgrnn import distribute
from tf_fastgrnn import fileio
from tf_fastgrnn import pruning
from tf_fastgrnn import quantization
from tf_fastgrnn import spec as spec_lib
from tf_fastgrnn import stepping
from tf_fastgrnn import training
from tf_fastgrnn._keras import keras

__all__ = ["CALIBRATION_WINDOWS", "Compressed", "QATTrained", "Trained", "budget",
           "check_finite_weights", "compress", "train_float", "train_qat"]

FLOAT_MODEL = "model_float.keras"
FLOAT_RECORD = "float_training.json"
QAT_MODEL = "model_qat.keras"
QAT_RECORD = "qat_training.json"
CALIBRATION_WINDOWS = 256  # training windows the int8 ranges are calibrated on

# A weight beyond this is the mark of diverged training, not of a model (normalised
# inputs, int8 grids); export.MAX_SCALE guards the same at the int8 model.
MAX_ABS_WEIGHT = 1e6


def check_finite_weights(model, what):
  """Raises ValueError naming ``what`` if a weight is non-finite or beyond
  ``MAX_ABS_WEIGHT`` (training diverged)."""
  bad = [w.name for w in model.weights
         if not np.all(np.isfinite(w.numpy()) & (np.abs(w.numpy()) <= MAX_ABS_WEIGHT))]
  if bad:
    raise ValueError(f"{what} has non-finite or huge weights (|w| > {MAX_ABS_WEIGHT:g} in "
                     f"{', '.join(bad[:3])}): training diverged; lower --learning_rate and "
                     "run again without --resume")


def budget(recipe, sparsity, num_train, num_val, qat=True):
  """What the training stages run on ``num_train`` training and ``num_val`` validation
  windows: ``batch_size``, ``epochs``, ``qat_epochs`` and ``keep_best`` after the
  recipe's tiny-data rules (``training.step_budget`` with ``min_phase_steps`` and
  ``max_batch_fraction``; ``keep_best`` off below ``min_val_windows`` validation
  windows), ``steps_per_epoch``, and ``notes``: one line for each rule that changed a
  value (none on data with many windows)."""
  sparse = sparsity is not None and sparsity.sparse
  phases = sparsity.phase_epochs if sparse else None
  rules = {"min_phase_steps": recipe.min_phase_steps,
           "max_batch_fraction": recipe.max_batch_fraction}
  batch, epochs = training.step_budget(num_train, recipe.batch_size, recipe.epochs,
                                       phases=phases, **rules)
  qat_epochs = (training.step_budget(num_train, recipe.batch_size, recipe.qat_epochs,
                                     **rules)[1] if qat else recipe.qat_epochs)
  steps = math.ceil(num_train / batch)
  notes = []
  if (batch, epochs, qat_epochs) != (recipe.batch_size, recipe.epochs, recipe.qat_epochs):
    changes = [f"batch {recipe.batch_size} → {batch}" if batch != recipe.batch_size
               else f"batch {batch}"]
    changes.append(f"{steps} step{'s' if steps > 1 else ''} an epoch")
    if epochs != recipe.epochs:
      split = "/".join(map(str, phases(epochs))) + " in three phases" if sparse else ""
      changes.append(f"epochs {recipe.epochs} → {epochs}" + (f" ({split})" if split else ""))
    if qat_epochs != recipe.qat_epochs:
      changes.append(f"QAT epochs {recipe.qat_epochs} → {qat_epochs}")
    notes.append(f"tiny data: {num_train} training windows: " + ", ".join(changes)
                 + f" (--min_phase_steps={recipe.min_phase_steps}: every training phase "
                 f"gets >= {recipe.min_phase_steps} optimizer steps; "
                 f"--max_batch_fraction={recipe.max_batch_fraction:g})")
  keep_best = recipe.keep_best
  if keep_best and num_val < recipe.min_val_windows:
    keep_best = False
    notes.append(f"tiny data: {num_val} validation windows < --min_val_windows="
                 f"{recipe.min_val_windows}: the last epoch is kept, not the best (one "
                 f"window is {100 / num_val:.1f} points of validation accuracy)")
  return {"batch_size": batch, "epochs": epochs, "qat_epochs": qat_epochs,
          "keep_best": keep_best, "steps_per_epoch": steps, "notes": notes}


def _save_trained(folder, model, model_name, record, record_name):
  """The training record first, the model last: the model's file marks the stage done."""
  folder = pathlib.Path(folder)
  fileio.write_json(folder / record_name, record)
  deployment.save_model(model, folder / model_name)


def _load_trained(folder, model_name, record_name):
  """``(model, record)`` of a finished training stage, its weights checked again."""
  folder = pathlib.Path(folder)
  model = deployment.load_model(folder / model_name)
  check_finite_weights(model, f"{folder / model_name}")
  return model, json.loads((folder / record_name).read_text())


@dataclasses.dataclass(frozen=True)
class Trained:
  """The float training's result: ``model`` (with sparsity: pruned, wrappers
  stripped) and ``record``: ``history``, ``phase_reports`` (one per pruning phase;
  empty when dense), ``phase_epochs`` (with sparsity) and ``epoch_seconds``."""
  model: object
  record: dict

  def save(self, folder):
    _save_trained(folder, self.model, FLOAT_MODEL, self.record, FLOAT_RECORD)
    return self

  @classmethod
  def load(cls, folder):
    return cls(*_load_trained(folder, FLOAT_MODEL, FLOAT_RECORD))


@dataclasses.dataclass(frozen=True)
class QATTrained:
  """The QAT fine-tuning's result: ``model`` (calibrated on the export's windows,
  computing with TFLM's integer kernels) and its ``history``."""
  model: object
  history: dict

  def save(self, folder):
    _save_trained(folder, self.model, QAT_MODEL, self.history, QAT_RECORD)
    return self

  @classmethod
  def load(cls, folder):
    return cls(*_load_trained(folder, QAT_MODEL, QAT_RECORD))


class _EpochTimer(keras.callbacks.Callback):
  """Wall-clock seconds of each training epoch (the benchmark reports their mean)."""

  def __init__(self):
    super().__init__()
    self.seconds = []
    self._start = None

  def on_epoch_begin(self, epoch, logs=None):
    del epoch, logs
    self._start = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    del epoch, logs
    self.seconds.append(time.perf_counter() - self._start)


def _with_timer(options):
  timer = _EpochTimer()
  options = options or training.FitOptions(verbose=0)
  return timer, dataclasses.replace(options, callbacks=(*options.callbacks, timer))


def train_float(model, train, validation, sparsity, recipe, *, seed=0, checkpoint_dir=None,
                options=None):
  """Trains ``model`` in place: dense (``sparsity`` None or all 0), or in the three
  phases to ``sparsity``'s targets; ``recipe`` with its tiny-data rules applied
  (``budget``); ``seed``, ``checkpoint_dir``, ``options`` as ``training.fit`` (None:
  silent).

  Returns:
    ``Trained`` (the model stripped of pruning wrappers; not yet saved).
  """
  timer, options = _with_timer(options)
  args = {"seed": seed, "checkpoint_dir": checkpoint_dir, "options": options}
  if sparsity is None or not sparsity.sparse:
    history = training.fit(model, train, validation, recipe, **args)
    record = {"history": history, "phase_reports": []}
  else:
    pruned = pruning.train_three_phase(model, train, validation, sparsity, recipe, **args)
    model = pruned.model
    record = {"history": pruned.history, "phase_reports": pruned.phase_reports,
              "phase_epochs": list(pruned.phase_epochs)}
  check_finite_weights(model, "the float model")
  record["epoch_seconds"] = timer.seconds
  return Trained(model, record)


def train_qat(float_model, train, validation, recipe, calibration, *, seed=0,
              checkpoint_dir=None, options=None):
  """Fine-tunes a QAT copy of ``float_model`` (``recipe.qat()``: its QAT epochs and
  rate), its grids first calibrated on ``calibration`` windows; then calibrates them
  again and switches on TFLM's integer kernels, so it computes what the int8 model
  computes (on the chief alone: another multi-worker worker only trains).

  Returns:
    ``QATTrained`` (not yet saved).
  """
  options = options or training.FitOptions(verbose=0)
  model = quantization.quantize_model(float_model, calibration)
  history = training.fit(model, train, validation, recipe.qat(), seed=seed,
                         checkpoint_dir=checkpoint_dir, options=options)
  check_finite_weights(model, "the QAT model")
  if not distribute.is_chief(distribute.get_strategy(options.distribute)):
    return QATTrained(model, history)  # calibration, export, evaluation: the chief's
  # The weights moved: measure the grids again on the export's calibration windows.
  quantization.calibrate(model, calibration)
  # From here on Keras QAT computes with TFLM's integer kernels (bit-exact).
  quantization.use_int8_kernels(model, True)
  return QATTrained(model, history)


# --- compress: the public path ------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Compressed:
  """What ``compress`` made: ``float_model`` (pruned to the sparsity, stripped),
  ``qat_model`` (None without QAT), the stages' results (``trained``, ``qat``), the
  ``budget`` the training ran with; ``deploy`` takes it as it is."""
  trained: Trained
  qat: QATTrained
  budget: dict

  @property
  def float_model(self):
    return self.trained.model

  @property
  def qat_model(self):
    return self.qat.model if self.qat is not None else None

  @property
  def deployable(self):
    """The model the int8 export takes: the QAT model, else the float one."""
    return self.qat_model if self.qat is not None else self.float_model


def _check_data(name, data, input_shape, classes):
  if not (isinstance(data, (tuple, list)) and len(data) == 2):
    raise ValueError(f"{name} must be (windows, labels), got {type(data).__name__}")
  try:
    x = np.asarray(data[0], np.float32)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{name} windows must be a float array") from e
  y = np.asarray(data[1])
  if x.ndim != 3 or len(x) == 0 or tuple(x.shape[1:]) != tuple(input_shape):
    raise ValueError(f"{name} windows must be [N, {input_shape[0]}, {input_shape[1]}] with "
                     f"N > 0 (the model's input), got {list(x.shape)}")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{name} windows hold non-finite values")
  if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f"{name} labels must be {len(x)} integers (one per window), got "
                     f"{y.dtype} {list(y.shape)}")
  if y.min() < 0 or y.max() >= classes:
    raise ValueError(f"{name} labels must lie in [0, {classes}) (the model's classes), got "
                     f"{int(y.min())}..{int(y.max())}")
  return x, y.astype(np.int64)


def _check_compress(model, train, validation, sparsity, recipe, qat):
  if not isinstance(model, keras.Model):
    raise ValueError(f"model must be a tf_keras model (tf_fastgrnn.keras), got "
                     f"{type(model).__module__}.{type(model).__name__}")
  if quantization.is_qat_model(model):
    raise ValueError("model is already a QAT model: compress takes the float model")
  rnn, dense = stepping.parts(model)
  cell = type(rnn.cell).__name__
  if cell not in ("FastGRNNCell", "FastRNNCell"):
    raise ValueError(f"compress prunes and quantizes FastGRNNCell and FastRNNCell "
                     f"models, got a {cell}")
  if sparsity is not None and not isinstance(sparsity, spec_lib.SparsitySpec):
    raise ValueError(f"sparsity must be a tf_fastgrnn.SparsitySpec or None, got "
                     f"{type(sparsity).__name__}")
  if not isinstance(recipe, spec_lib.Recipe):
    raise ValueError(f"recipe must be a tf_fastgrnn.Recipe, got {type(recipe).__name__}")
  if recipe.augment is not None:
    raise ValueError(f"recipe.augment={recipe.augment!r}: compress trains on the arrays as "
                     "given (augmentation needs a dataset's normalisation: use "
                     "train_and_export)")
  if not isinstance(qat, bool):
    raise ValueError(f"qat must be True or False, got {qat!r}")
  input_shape, classes = tuple(model.input_shape[1:]), int(dense.units)
  train = _check_data("train", train, input_shape, classes)
  validation = _check_data("validation", validation, input_shape, classes)
  if sparsity is not None and sparsity.sparse:
    sparsity.phase_epochs(recipe.epochs)  # the three phases fit, or one line why not
  return train, validation


def compress(model, train, validation, *, sparsity=spec_lib.SparsitySpec(),
             recipe=spec_lib.Recipe(), qat=True, seed=0):
  """Trains a user's model to its sparsity targets, then quantization-aware.

  The float model trains in place: dense, then iterative hard thresholding, then with
  the support fixed (``pruning.train_three_phase``, TF-MOT), to ``sparsity``'s
  fractions of W and U zeroed; then a QAT copy fine-tunes on the int8 grids the export
  uses. The tiny-data rules of ``recipe`` apply as in ``train_and_export``.

  Args:
    model: a tf_keras ``Input → RNN(FastGRNNCell | FastRNNCell) → Dense`` classifier
      (last or mean read-out), e.g. ``models.sequence_classifier``; trained in place.
      A Keras 3 one (``tf_fastgrnn.keras3`` cells, any backend) is first copied into its
      tf_keras twin (``to_tf_keras``, checked on the validation windows), which trains;
      the Keras 3 model is left as it was.
    train, validation: ``(windows [N, T, D], integer labels [N])``.
    sparsity: a ``SparsitySpec``, or None to train dense.
    recipe: a ``Recipe`` (with ``train_on_val``: train fits train + validation).
    qat: False: no QAT (``deploy`` then quantizes after training).
    seed: the data order of every epoch.

  Returns:
    ``Compressed``.

  Raises:
    ValueError: a bad argument, one line naming it, before any training.
  """
  if deployment.is_keras3_model(model):
    if not (isinstance(validation, (tuple, list)) and len(validation) == 2):
      raise ValueError(f"validation must be (windows, labels), got "
                       f"{type(validation).__name__}")
    model = deployment.tf_keras_twin(model, validation[0])
  train, validation = _check_compress(model, train, validation, sparsity, recipe, qat)
  fit_on = train
  if recipe.train_on_val:
    fit_on = (np.concatenate([train[0], validation[0]]),
              np.concatenate([train[1], validation[1]]))
  plan = budget(recipe, sparsity, len(fit_on[0]), len(validation[0]), qat)
  effective = recipe.replace(batch_size=plan["batch_size"], epochs=plan["epochs"],
                             qat_epochs=plan["qat_epochs"], keep_best=plan["keep_best"])
  trained = train_float(model, fit_on, validation, sparsity, effective, seed=seed)
  qat_result = None
  if qat:
    qat_result = train_qat(trained.model, fit_on, validation, effective,
                           train[0][:CALIBRATION_WINDOWS], seed=seed)
  return Compressed(trained, qat_result, plan)
