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
from tf_fastgrnn import tfmot_compat
from tf_fastgrnn import training
from tf_fastgrnn._keras import keras

__all__ = ["PHASE_NAMES", "PruningConfig", "ThreePhaseResult", "achievable_sparsity",
           "sparsity_report", "support_masks", "train_three_phase"]

PHASE_NAMES = ("dense", "iht", "sparse")

_sparsity_keras = tfmot.sparsity.keras


def _check_sparsity(name, value):
  if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not (
      0.0 <= value < 1.0):
    raise ValueError(f"{name} must be in [0, 1) (the fraction of entries zeroed; 0.0 = "
                     f"dense), got {value!r}")
  return float(value)


@dataclasses.dataclass(frozen=True)
class PruningConfig:
  """Targets and timing of the three-phase training.

  Args:
    sparsity_w: fraction of the entries of W (or of each of W1, W2) ZEROED, in [0, 1).
      TF-MOT's meaning; EdgeML's ``sW`` is the fraction kept (``sW = 1 - sparsity_w``).
    sparsity_u: likewise for U (or each of U1, U2).
    phase_fractions: fractions of the epochs for (dense, IHT, sparse retraining); they
      must sum to 1. Phase boundaries fall on epoch ends: ``round(epochs * f1)`` and
      ``round(epochs * (f1 + f2))``.
    frequency: training steps between two hard thresholdings in the IHT phase (EdgeML:
      15).

  Rounding: a matrix of ``size`` entries keeps ``max(round(size * (1 - s)), 1)`` of them
  (TF-MOT's rule, round half to even), so small matrices such as a low-rank factor
  ``W1 [6, 2]`` (12 entries) reach the nearest achievable sparsity (``s = 0.3`` keeps 8:
  0.333) and never lose every entry (``s = 0.95`` keeps 1: 0.917). See
  ``achievable_sparsity``; the reports give the sparsity actually reached.
  """

  sparsity_w: float = 0.0
  sparsity_u: float = 0.0
  phase_fractions: tuple = (1 / 3, 1 / 3, 1 / 3)
  frequency: int = 15

  def __post_init__(self):
    object.__setattr__(self, "sparsity_w", _check_sparsity("sparsity_w", self.sparsity_w))
    object.__setattr__(self, "sparsity_u", _check_sparsity("sparsity_u", self.sparsity_u))
    fractions = tuple(self.phase_fractions)
    if len(fractions) != 3 or any(
        isinstance(f, bool) or not isinstance(f, (int, float)) or not f > 0
        for f in fractions):
      raise ValueError(f"phase_fractions must be three numbers > 0 (dense, IHT, sparse), "
                       f"got {self.phase_fractions!r}")
    if not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
      raise ValueError(f"phase_fractions must sum to 1, got {self.phase_fractions!r} "
                       f"(sum {sum(fractions):.6g})")
    object.__setattr__(self, "phase_fractions", tuple(float(f) for f in fractions))
    if isinstance(self.frequency, bool) or not isinstance(
        self.frequency, (int, np.integer)) or self.frequency <= 0:
      raise ValueError(f"frequency must be a positive int (steps between hard "
                       f"thresholdings), got {self.frequency!r}")
    object.__setattr__(self, "frequency", int(self.frequency))

  def phase_epochs(self, epochs):
    """The epochs of each phase, ``(dense, iht, sparse)``, summing to ``epochs``.

    Raises:
      ValueError: a phase would get no epoch.
    """
    f1, f2, _ = self.phase_fractions
    b1, b2 = round(epochs * f1), round(epochs * (f1 + f2))
    counts = (b1, b2 - b1, epochs - b2)
    if min(counts) < 1:
      raise ValueError(
          f"epochs={epochs} cannot hold three phases with phase_fractions="
          f"{self.phase_fractions} (epochs per phase {counts}); use more epochs (at least "
          f"3 with equal thirds) or phase_fractions that give every phase an epoch")
    return counts


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
               for g, s in (("W", config.sparsity_w), ("U", config.sparsity_u))}
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
              2: (f"iterative hard thresholding to sparsity_w={self._config.sparsity_w}, "
                  f"sparsity_u={self._config.sparsity_u} every {self._config.frequency} "
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
    phase_epochs: epochs of (dense, IHT, sparse), as ``PruningConfig.phase_epochs``.
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
      target = 0.0 if phase == 1 else {"W": config.sparsity_w, "U": config.sparsity_u}[group]
      entry["target"] = target
      entries[key] = entry
    report = _report(entries, params, history["nonzero/total"][i])
    report.update({
        "phase": phase, "name": PHASE_NAMES[phase - 1], "epochs": [start, end],
        **{k: (history[k][i] if k in history else None)
           for k in ("loss", "accuracy", "val_loss", "val_accuracy")}})
    reports.append(report)
  return reports


def train_three_phase(model, train, val=None, *, config, epochs, batch_size,
                      learning_rate, checkpoint_dir=None, seed=0, verbose=1,
                      callbacks=(), tensorboard_dir=None, lr_schedule="constant",
                      min_lr_fraction=0.05, clipnorm=None, weight_decay=0.0,
                      keep_best=False, distribute="none", augment=None):
  """Trains dense, then with iterative hard thresholding, then with the support fixed.

  One ``training.fit`` run over all ``epochs`` (one Adam state throughout, as EdgeML);
  TF-MOT's schedules switch the phases at epoch boundaries (``config.phase_epochs``).
  With ``checkpoint_dir`` every epoch is checkpointed, pruning masks and step included,
  and a second call resumes wherever the first stopped, in any phase.

  The model's own layers are trained in place (TF-MOT's wrappers share their weights).

  Args:
    model: a built ``keras.Model`` with at least one ``keras.layers.RNN`` around a
      ``FastGRNNCell``/``FastRNNCell`` (e.g. ``models.sequence_classifier``), no pruning
      wrappers.
    train: ``(x, y)``, as ``training.fit``.
    val: optional ``(x, y)``, evaluated every epoch.
    config: a ``PruningConfig`` (sparsity = fraction ZEROED).
    epochs: total epochs of the three phases.
    batch_size, learning_rate, checkpoint_dir, seed, verbose, callbacks,
      tensorboard_dir, min_lr_fraction, clipnorm, weight_decay: as ``training.fit``.
    lr_schedule: ``"constant"`` or ``"cosine"``: with cosine the rate decays within each
      phase and restarts at the next phase's first epoch.
    keep_best: the model ends with the weights of the fixed-support phase's epoch with
      the best validation accuracy (only that phase: its weights have the asked
      sparsity); needs ``val``.
    distribute: as ``training.fit``: the wrappers, masks and pruning step of a copy of
      ``model`` live under the strategy; the trained, stripped weights end in ``model``
      (the returned model is then ``model`` itself).
    augment: as ``training.fit`` (training batches only, every phase).

  Returns:
    A ``ThreePhaseResult``.

  Raises:
    ValueError: no tf_fastgrnn cell, a model already wrapped, phases that do not fit in
      ``epochs``, or ``training.fit``'s checks.

  Example:
    >>> model = models.sequence_classifier("fastgrnn", 32, (128, 9), 6, w_rank=4)
    >>> result = train_three_phase(model, (x, y), (xv, yv), epochs=30, batch_size=64,
    ...     learning_rate=1e-2, config=PruningConfig(sparsity_w=0.5, sparsity_u=0.8))
    >>> result.phase_reports[-1]["matrices"]["rnn/U"]["nonzero"]  # round(1024 * 0.2)
    205
  """
  if not isinstance(config, PruningConfig):
    raise ValueError(f"config must be a PruningConfig, got {type(config).__name__}")
  if not isinstance(model, keras.Model):
    raise ValueError(f"model must be a keras.Model, got {type(model).__name__}")
  if any(tfmot_compat.is_pruning_wrapper(l) for l in model.submodules):
    raise ValueError("model already has pruning wrappers; pass the unwrapped model "
                     "(tfmot.sparsity.keras.strip_pruning)")
  if not _fast_rnns(model):
    _FastCellsOnly().ensure_model_supports_pruning(model)
  epochs = training.check_positive_int("epochs", epochs)
  batch_size = training.check_positive_int("batch_size", batch_size)
  phase_epochs = config.phase_epochs(epochs)
  if not (isinstance(train, (tuple, list)) and len(train) == 2):
    raise ValueError(f"train must be a pair (x, y) of arrays, got {type(train).__name__}")
  steps_per_epoch = math.ceil(len(train[0]) / batch_size)

  strategy = distribute_lib.get_strategy(distribute)
  work = (model if distribute_lib.is_default(strategy)
          else distribute_lib.replicate(model, strategy))
  with strategy.scope():
    wrapped = _wrap(work, config, phase_epochs, steps_per_epoch)
  history = training.fit(
      wrapped, train, val, distribute=strategy, epochs=epochs, batch_size=batch_size,
      learning_rate=learning_rate, checkpoint_dir=checkpoint_dir, seed=seed,
      verbose=verbose, tensorboard_dir=tensorboard_dir,
      # UpdatePruningStep re-masks at epoch end, before _PhaseLogger counts the zeros.
      callbacks=[_sparsity_keras.UpdatePruningStep(),
                 _PhaseLogger(config, phase_epochs, verbose), *callbacks],
      run_config={"pruning": dataclasses.asdict(config), "epochs": epochs},
      lr_schedule=lr_schedule, phase_boundaries=(phase_epochs[0], sum(phase_epochs[:2])),
      min_lr_fraction=min_lr_fraction, clipnorm=clipnorm, weight_decay=weight_decay,
      keep_best=keep_best, best_from_epoch=sum(phase_epochs[:2]), augment=augment)
  with strategy.scope():
    stripped = _sparsity_keras.strip_pruning(wrapped)
  if work is not model:  # hand back the caller's one-device model, trained
    distribute_lib.copy_back(stripped, model)
    stripped = model
  return ThreePhaseResult(model=stripped, history=history,
                          phase_reports=_phase_reports(stripped, history, config,
                                                       phase_epochs),
                          phase_epochs=phase_epochs)
