"""FastGRNN's three-phase sparse training with TF-MOT, and sparsity reports.

The paper (Kusupati et al., NeurIPS 2018, section 3.2 "Training FastGRNN") and the
authors' trainer (microsoft/EdgeML, ``FastTrainer``) train in three phases:

1. **dense**: every weight trains;
2. **iterative hard thresholding (IHT)**: every ``frequency`` (15) batches each of W and
   U, or each of their low-rank factors separately, keeps its largest-magnitude entries
   and zeroes the rest; between thresholdings the support is held (EdgeML's
   ``copySupport``), so the support can still move at every thresholding;
3. **sparse retraining**: the last support is fixed and the kept weights train on.

Biases, the ζ/ν (α/β) scalars and the classifier are never sparsified.

TF-MOT expresses all of this with one ``ConstantSparsity(target, begin_step, end_step,
frequency)`` schedule per target: no mask update before ``begin_step`` (dense phase, the
mask is all ones), a hard threshold to ``target`` every ``frequency`` steps up to
``end_step`` (IHT phase, the mask re-applied at every step in between), and after
``end_step`` the last mask applied at every step (fixed support).
``prune_low_magnitude`` with a ``PruningPolicy`` wraps only the ``RNN`` layers around
tf_fastgrnn cells (whose ``get_prunable_weights`` are W/U or their factors);
``UpdatePruningStep`` steps the schedule and ``strip_pruning`` removes the wrappers.

The one thing TF-MOT cannot say is *two* targets in one layer: a wrapper has one
``Pruning`` object with one schedule for all its weights, and a schedule is called with
the step only, so it cannot tell W from U. ``tfmot_compat.install_group_pruning`` therefore gives the
wrapper two TF-MOT ``Pruning`` objects, one over the W weights with the s_W schedule and
one over the U weights with the s_U schedule (thresholds, masks and masking stay
TF-MOT's own code).

Sparsity here is TF-MOT's meaning: the fraction of entries ZEROED (0.0 = dense). EdgeML's
``sW``/``sU`` are the fraction KEPT: EdgeML ``sW=0.2`` is ``sparsity_w=0.8`` here.

Flash: TFLite stores weight tensors dense, so zeros alone do not make the ``.tflite``
smaller; ``sparsity_report`` gives both the dense int8 size and the non-zero count.
"""

import dataclasses
import math

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot

from tf_fastgrnn import cells
from tf_fastgrnn import distribute as distribute_lib
from tf_fastgrnn import spec as spec_lib
from tf_fastgrnn import tfmot_compat
from tf_fastgrnn import training
from tf_fastgrnn._keras import keras

__all__ = ["PHASE_NAMES", "SparsitySpec", "ThreePhaseResult", "achievable_sparsity",
           "sparsity_report", "support_masks", "train_three_phase"]

PHASE_NAMES = ("dense", "iht", "sparse")

_sparsity_keras = tfmot.sparsity.keras


# The targets and timing of the three phases: tf_fastgrnn.spec.SparsitySpec (w, u =
# fractions ZEROED, phase_fractions, frequency).
SparsitySpec = spec_lib.SparsitySpec


def achievable_sparsity(size, sparsity):
  """The sparsity TF-MOT reaches on a matrix of ``size`` entries asked for ``sparsity``.

  TF-MOT keeps ``max(round(size * (1 - sparsity)), 1)`` entries, computed in float32
  with round half to even (``tf.math.round``).
  """
  kept = max(int(np.round(np.float32(size) * (np.float32(1) - np.float32(sparsity)))), 1)
  return 1.0 - kept / size


class _FastCellsOnly(_sparsity_keras.PruningPolicy):
  """Wraps only the ``RNN`` layers around tf_fastgrnn cells: not the classifier."""

  def allow_pruning(self, layer):
    return _is_fast_rnn(layer)

  def ensure_model_supports_pruning(self, model):
    if not _fast_rnns(model):
      raise ValueError(
          f"model {model.name!r} has no tf_fastgrnn cell to sparsify (a keras.layers.RNN "
          f"around FastGRNNCell/FastRNNCell); LSTM/GRU baselines train with training.fit")


def _is_fast_rnn(layer):
  return isinstance(layer, keras.layers.RNN) and isinstance(
      layer.cell, cells.FAST_CELLS)


def _fast_rnns(model):
  """``[(rnn_layer, wrapper_or_None)]`` of every tf_fastgrnn RNN in ``model``, nested too."""
  found = []
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      found += _fast_rnns(layer)
    elif tfmot_compat.is_pruning_wrapper(layer):
      if _is_fast_rnn(layer.layer):
        found.append((layer.layer, layer))
    elif _is_fast_rnn(layer):
      found.append((layer, None))
  return found


def _short(var):
  return var.name.split("/")[-1].split(":")[0]


def _matrices(model):
  """``[(key, variable, mask_or_None, group)]``; key ``"<rnn name>/<W|W1|...>"``."""
  out = []
  for rnn, wrapper in _fast_rnns(model):
    masks = {}
    if wrapper is not None and wrapper.pruning_vars:
      masks = {w.ref(): m for w, m, _ in wrapper.pruning_vars}
    for group, factors in (("W", rnn.cell.w_factors), ("U", rnn.cell.u_factors)):
      for var in factors:
        out.append((f"{rnn.name}/{_short(var)}", var, masks.get(var.ref()), group))
  return out


def _model_weights(model):
  """The model's own weights: pruning wrappers' masks, thresholds and steps left out."""
  extra = set()
  for layer in model.submodules:
    if tfmot_compat.is_pruning_wrapper(layer) and layer.built:
      extra.update(v.ref() for _, m, t in layer.pruning_vars for v in (m, t))
      extra.add(layer.pruning_step.ref())
  return [w for w in model.weights if w.ref() not in extra]


def _entry(shape, nonzero):
  size = int(np.prod(shape))
  return {"shape": [int(d) for d in shape], "size": size, "nonzero": int(nonzero),
          "sparsity": 1.0 - int(nonzero) / size}


def _report(matrices, params, model_nonzero):
  size = sum(m["size"] for m in matrices.values())
  nonzero = sum(m["nonzero"] for m in matrices.values())
  return {
      "matrices": matrices,
      "matrices_total": {"size": size, "nonzero": nonzero,
                         "sparsity": 1.0 - nonzero / size if size else 0.0},
      "totals": {"params": int(params), "nonzero": int(model_nonzero),
                "dense_int8_bytes": int(params), "nonzero_int8_bytes": int(model_nonzero)},
  }


def sparsity_report(model):
  """Per-matrix and whole-model sparsity of a model, with or without pruning wrappers.

  Args:
    model: a ``keras.Model``; W/U (or their factors) of every tf_fastgrnn cell are listed,
      any other model (LSTM baselines) gets only the whole-model ``totals``.

  Returns:
    ``{"matrices": {"rnn/W1": {"shape", "size", "nonzero", "sparsity"}, ...},
    "matrices_total": {"size", "nonzero", "sparsity"},
    "totals": {"params", "nonzero", "dense_int8_bytes", "nonzero_int8_bytes"}}``.
    ``totals`` counts ALL the model's weights (classifier, biases and scalars included,
    wrapper masks excluded). ``dense_int8_bytes`` is one byte per weight: what TFLite
    stores, since it keeps weight tensors dense (int32 biases and the flatbuffer's own
    overhead not counted; the export measures the real file). ``nonzero_int8_bytes`` is
    the values a sparse format would keep, before its index overhead.
  """
  matrices = {key: _entry(var.shape, np.count_nonzero(var.numpy()))
              for key, var, _, _ in _matrices(model)}
  weights = _model_weights(model)
  params = sum(int(np.prod(w.shape)) for w in weights)
  nonzero = sum(int(np.count_nonzero(w.numpy())) for w in weights)
  return _report(matrices, params, nonzero)


def support_masks(model):
  """``{"rnn/W1": bool array}``: which entries of each W/U (or factor) may be non-zero.

  From the pruning masks of a wrapped model, or from ``weight != 0`` of a stripped one.
  The keys are those of ``sparsity_report``: ``"<RNN layer name>/<weight name>"`` with the
  weight name one of ``W``, ``W1``, ``W2``, ``U``, ``U1``, ``U2``. QAT keeps the zeros by
  multiplying each weight by its mask after every step.
  """
  out = {}
  for key, var, mask, _ in _matrices(model):
    out[key] = (mask.numpy() != 0) if mask is not None else (var.numpy() != 0)
  return out


def _wrap(model, config, phase_epochs, steps_per_epoch):
  """Wraps the model's tf_fastgrnn RNN layers for the three phases (shares their weights).

  ``pruning_step`` is k during the k-th training step (1-based), so the IHT phase covers
  steps ``e1 * S + 1 .. (e1 + e2) * S`` for phase epochs ``(e1, e2, e3)`` and ``S`` steps
  per epoch.
  """
  e1, e2, _ = phase_epochs
  begin, end = e1 * steps_per_epoch + 1, (e1 + e2) * steps_per_epoch
  schedules = {g: _sparsity_keras.ConstantSparsity(s, begin_step=begin, end_step=end,
                                                   frequency=config.frequency)
               for g, s in (("W", config.w), ("U", config.u))}
  wrapped = _sparsity_keras.prune_low_magnitude(
      model, pruning_schedule=schedules["W"], pruning_policy=_FastCellsOnly())
  for rnn, wrapper in _fast_rnns(wrapped):
    # Only the wrapper's next trace sees this; the model has not been traced for
    # training yet (building it only inferred shapes).
    tfmot_compat.install_group_pruning(wrapper, [
        ({v.ref() for v in rnn.cell.w_factors}, schedules["W"]),
        ({v.ref() for v in rnn.cell.u_factors}, schedules["U"])])
  return wrapped


class _PhaseLogger(keras.callbacks.Callback):
  """Logs each matrix's sparsity into the epoch's logs; announces the phases."""

  def __init__(self, config, phase_epochs, verbose):
    super().__init__()
    self._config = config
    e1, e2, e3 = phase_epochs
    self._starts = {0: (1, e1), e1: (2, e2), e1 + e2: (3, e3)}
    self._verbose = verbose

  def on_epoch_begin(self, epoch, logs=None):
    if self._verbose and epoch in self._starts:
      phase, count = self._starts[epoch]
      what = {1: "dense training",
              2: (f"iterative hard thresholding to sparsity_w={self._config.w}, "
                  f"sparsity_u={self._config.u} every {self._config.frequency} "
                  f"steps"),
              3: "sparse retraining, support fixed"}[phase]
      print(f"Phase {phase}/3 ({PHASE_NAMES[phase - 1]}): {what}; epochs {epoch + 1}-"
            f"{epoch + count}")

  def on_epoch_end(self, epoch, logs=None):
    if logs is None:
      return
    report = sparsity_report(self.model)
    for key, entry in report["matrices"].items():
      logs[f"nonzero/{key}"] = entry["nonzero"]
      logs[f"sparsity/{key}"] = entry["sparsity"]
    logs["nonzero/total"] = report["totals"]["nonzero"]


@dataclasses.dataclass
class ThreePhaseResult:
  """What ``train_three_phase`` returns.

  Attributes:
    model: the trained float model stripped of pruning wrappers: the input's layout and
      layers, with exact zeros where the support was cut.
    history: ``{metric: [value per epoch]}``, including ``nonzero/<matrix>``,
      ``sparsity/<matrix>`` and ``nonzero/total`` (whole model) per epoch.
    phase_reports: one dict per phase: ``phase``, ``name``, ``epochs`` ([first, last],
      1-based), ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy`` (None without
      ``val``) at the phase's last epoch, and the ``sparsity_report`` at that point with
      each matrix's ``target`` sparsity added.
    phase_epochs: epochs of (dense, IHT, sparse), as ``SparsitySpec.phase_epochs``.
  """

  model: keras.Model
  history: dict
  phase_reports: list
  phase_epochs: tuple


def _phase_reports(model, history, config, phase_epochs):
  matrices = _matrices(model)
  params = sum(int(np.prod(w.shape)) for w in _model_weights(model))
  reports, end = [], 0
  for phase, count in enumerate(phase_epochs, start=1):
    start, end = end + 1, end + count
    i = end - 1
    entries = {}
    for key, var, _, group in matrices:
      entry = _entry(var.shape, history[f"nonzero/{key}"][i])
      target = 0.0 if phase == 1 else {"W": config.w, "U": config.u}[group]
      entry["target"] = target
      entries[key] = entry
    report = _report(entries, params, history["nonzero/total"][i])
    report.update({
        "phase": phase, "name": PHASE_NAMES[phase - 1], "epochs": [start, end],
        **{k: (history[k][i] if k in history else None)
           for k in ("loss", "accuracy", "val_loss", "val_accuracy")}})
    reports.append(report)
  return reports


def train_three_phase(model, train, val, sparsity, recipe, *, seed=0, checkpoint_dir=None,
                      options=None):
  """Trains dense, then with iterative hard thresholding, then with the support fixed.

  One ``training.fit`` run over all ``recipe.epochs`` (one Adam state throughout, as
  EdgeML); TF-MOT's schedules switch the phases at epoch boundaries
  (``sparsity.phase_epochs``). With ``checkpoint_dir`` every epoch is checkpointed,
  pruning masks and step included, and a second call resumes wherever the first stopped,
  in any phase. With ``lr_schedule="cosine"`` the rate decays within each phase and
  restarts at the next phase's first epoch; ``keep_best`` keeps the fixed-support
  phase's best epoch (only that phase: its weights have the asked sparsity; needs
  ``val``).

  The model's own layers are trained in place (TF-MOT's wrappers share their weights).

  Args:
    model: a built ``keras.Model`` with at least one ``keras.layers.RNN`` around a
      ``FastGRNNCell``/``FastRNNCell`` (e.g. ``models.sequence_classifier``), no pruning
      wrappers.
    train: ``(x, y)``, as ``training.fit``.
    val: None or ``(x, y)``, evaluated every epoch.
    sparsity: a ``SparsitySpec`` (``w``, ``u`` = fraction ZEROED; phase split).
    recipe: a ``tf_fastgrnn.spec.Recipe``.
    seed, checkpoint_dir: as ``training.fit``.
    options: a ``training.FitOptions`` (callbacks, progress, logs, strategy,
      augmentation); its phases are set here. Under a strategy the wrappers, masks and
      pruning step of a copy of ``model`` live under it; the trained, stripped weights
      end in ``model`` (the returned model is then ``model`` itself).

  Returns:
    A ``ThreePhaseResult``.

  Raises:
    ValueError: no tf_fastgrnn cell, a model already wrapped, phases that do not fit in
      ``recipe.epochs``, or ``training.fit``'s checks.

  Example:
    >>> from tf_fastgrnn import models, training
    >>> from tf_fastgrnn.spec import Recipe, SparsitySpec
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(32, 5, 4)).astype("float32"), rng.integers(0, 3, 32)
    >>> model = models.sequence_classifier("fastgrnn", 8, (5, 4), 3, w_rank=2)
    >>> result = train_three_phase(model, (x, y), (x, y), SparsitySpec(w=0.5, u=0.8),
    ...                            Recipe(epochs=6, batch_size=8),
    ...                            options=training.FitOptions(verbose=0))
    >>> result.phase_reports[-1]["matrices"]["rnn/U"]["nonzero"]  # round(64 * 0.2)
    13
  """
  config = sparsity
  if not isinstance(config, SparsitySpec):
    raise ValueError(f"sparsity must be a SparsitySpec, got {type(config).__name__}")
  if not isinstance(recipe, spec_lib.Recipe):
    raise ValueError(f"recipe must be a tf_fastgrnn.spec.Recipe, got "
                     f"{type(recipe).__name__}")
  options = training.FitOptions() if options is None else options
  if not isinstance(model, keras.Model):
    raise ValueError(f"model must be a keras.Model, got {type(model).__name__}")
  if any(tfmot_compat.is_pruning_wrapper(l) for l in model.submodules):
    raise ValueError("model already has pruning wrappers; pass the unwrapped model "
                     "(tfmot.sparsity.keras.strip_pruning)")
  if not _fast_rnns(model):
    _FastCellsOnly().ensure_model_supports_pruning(model)
  epochs, batch_size = recipe.epochs, recipe.batch_size
  phase_epochs = config.phase_epochs(epochs)
  if not (isinstance(train, (tuple, list)) and len(train) == 2):
    raise ValueError(f"train must be a pair (x, y) of arrays, got {type(train).__name__}")
  steps_per_epoch = math.ceil(len(train[0]) / batch_size)

  strategy = distribute_lib.get_strategy(options.distribute)
  work = (model if distribute_lib.is_default(strategy)
          else distribute_lib.replicate(model, strategy))
  with strategy.scope():
    wrapped = _wrap(work, config, phase_epochs, steps_per_epoch)
  # The record a resume must match: the targets under their earlier names, so
  # checkpoints made before SparsitySpec still resume.
  record = {"sparsity_w": config.w, "sparsity_u": config.u,
            "phase_fractions": config.phase_fractions, "frequency": config.frequency}
  history = training.fit(
      wrapped, train, val, recipe, seed=seed, checkpoint_dir=checkpoint_dir,
      options=dataclasses.replace(
          options, distribute=strategy,
          # UpdatePruningStep re-masks at epoch end, before _PhaseLogger counts the zeros.
          callbacks=(_sparsity_keras.UpdatePruningStep(),
                     _PhaseLogger(config, phase_epochs, options.verbose),
                     *options.callbacks),
          run_config={"pruning": record, "epochs": epochs},
          phase_boundaries=(phase_epochs[0], sum(phase_epochs[:2])),
          best_from_epoch=sum(phase_epochs[:2])))
  with strategy.scope():
    stripped = _sparsity_keras.strip_pruning(wrapped)
  if work is not model:  # hand back the caller's one-device model, trained
    distribute_lib.copy_back(stripped, model)
    stripped = model
  return ThreePhaseResult(model=stripped, history=history,
                          phase_reports=_phase_reports(stripped, history, config,
                                                       phase_epochs),
                          phase_epochs=phase_epochs)
