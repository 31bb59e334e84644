"""The one training loop: compile, fit, checkpoint every epoch, resume after a kill.

Everything that trains a model in this project (the float and sparse phases of
``pruning.train_three_phase``, QAT fine-tuning, the benchmarks) goes through ``fit``, so
they share the loss, the optimizer, the data order, the checkpoints and the history
format.

Determinism: the order of the training windows in epoch ``e`` is a permutation drawn from
``(seed, e)`` alone (``input_pipeline.epoch_order``), not from a random stream that runs
across epochs. A run resumed at epoch ``e`` from its checkpoint (weights, optimizer
slots, pruning masks and step) thus sees exactly the batches the uninterrupted run saw,
and with ``set_seed`` (op determinism) ends with the same weights.

Several devices or machines (``distribute``, see ``tf_fastgrnn.distribute``): the model
is trained as a copy made under the ``tf.distribute`` strategy and its weights are
written back; ``batch_size`` stays the global batch, so the run follows the one-device
run up to float rounding. Under ``MultiWorkerMirroredStrategy`` every worker saves
checkpoints (saving is collective), but only the chief into ``checkpoint_dir``; the
others write into a temporary folder removed at the end, and resume by reading the
chief's ``checkpoint_dir`` (a folder every worker sees).
"""

import dataclasses
import importlib.util
import json
import math
import os
import pathlib
import shutil
import tempfile
import warnings

import numpy as np
import tensorflow as tf

from tf_fastgrnn import distribute as distribute_lib
from tf_fastgrnn import fileio
from tf_fastgrnn import input_pipeline
from tf_fastgrnn import spec as spec_lib
from tf_fastgrnn._keras import keras

__all__ = ["FitOptions", "NonFiniteLossError", "PhasedCosine", "SmoothedCrossentropy",
           "check_positive_int", "classification_loss", "fit", "load_history", "set_seed",
           "step_budget"]

HISTORY_FILE = "history.json"
BEST_WEIGHTS_FILE = "best_weights.npz"
_RUN_FILE = "run.json"


@keras.utils.register_keras_serializable(package="tf_fastgrnn")
class PhasedCosine(keras.optimizers.schedules.LearningRateSchedule):
  """Cosine decay restarted at each phase boundary (given in steps).

  Within a phase of ``n`` steps starting at step ``s``, step ``k`` (0-based, Keras'
  ``optimizer.iterations``) gets ``lr * (m + (1 - m) * (1 + cos(pi * (k - s) / n)) / 2)``
  with ``m = min_fraction``: the phase starts at ``lr`` and ends near ``m * lr``. With no
  boundaries it is one cosine over all ``total_steps``. A function of the step alone, so
  a run resumed from a checkpoint (whose optimizer holds the step) continues exactly.

  Args:
    learning_rate: the rate at the start of each phase, > 0.
    total_steps: steps of the whole run.
    boundaries: steps where a new phase (and a new cosine) starts, increasing, inside
      ``(0, total_steps)``.
    min_fraction: the floor as a fraction of ``learning_rate``, in [0, 1].
  """

  def __init__(self, learning_rate, total_steps, boundaries=(), min_fraction=0.05):
    super().__init__()
    self.learning_rate = float(learning_rate)
    self.total_steps = int(total_steps)
    self.boundaries = [int(b) for b in boundaries]
    self.min_fraction = float(min_fraction)
    edges = [0, *self.boundaries, self.total_steps]
    if any(b <= a for a, b in zip(edges, edges[1:])):
      raise ValueError(f"boundaries must increase strictly inside (0, total_steps="
                       f"{self.total_steps}), got {self.boundaries}")
    if not 0.0 <= self.min_fraction <= 1.0:
      raise ValueError(f"min_fraction must be in [0, 1], got {min_fraction!r}")

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    edges = [0, *self.boundaries, self.total_steps]
    starts = tf.constant(edges[:-1], tf.float32)
    lengths = tf.constant([b - a for a, b in zip(edges, edges[1:])], tf.float32)
    phase = tf.maximum(tf.reduce_sum(tf.cast(step >= starts, tf.int32)) - 1, 0)
    t = tf.clip_by_value((step - tf.gather(starts, phase)) / tf.gather(lengths, phase),
                         0.0, 1.0)
    m = self.min_fraction
    return self.learning_rate * (m + (1.0 - m) * 0.5 * (1.0 + tf.cos(math.pi * t)))

  def get_config(self):
    return {"learning_rate": self.learning_rate, "total_steps": self.total_steps,
            "boundaries": list(self.boundaries), "min_fraction": self.min_fraction}


class NonFiniteLossError(RuntimeError):
  """The training loss became NaN or infinite; the run stopped without a checkpoint."""


def set_seed(seed):
  """Seeds Python, NumPy and TensorFlow and turns on TensorFlow's op determinism.

  After this, the same seed, data and model give the same weights and metrics run after
  run (on CPU; op determinism also makes tf.data and some kernels slower or, on GPU,
  refuse ops without a deterministic kernel). The switch is process-wide.

  Args:
    seed: a non-negative int.

  Raises:
    ValueError: seed is not a non-negative int.
  """
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"seed must be a non-negative int, got {seed!r}")
  keras.utils.set_random_seed(int(seed))
  tf.config.experimental.enable_op_determinism()


def load_history(checkpoint_dir):
  """The history ``fit`` wrote beside its checkpoints (``{}`` if none yet)."""
  path = pathlib.Path(checkpoint_dir) / HISTORY_FILE
  if not path.exists():
    return {}
  return json.loads(path.read_text())["history"]


def check_positive_int(name, value):
  """``value`` as an int, or ``ValueError`` naming ``name`` unless a positive int."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
    raise ValueError(f"{name} must be a positive int, got {value!r}")
  return int(value)


def step_budget(num_windows, batch_size, epochs, *, min_phase_steps=0,
                max_batch_fraction=1.0, phases=None):
  """``(batch_size, epochs)`` that give every training phase at least ``min_phase_steps``
  optimizer steps on ``num_windows`` training windows.

  Epochs alone vanish on small data: 36 windows in batches of 64 are one step an epoch.
  The batch is first capped at ``max_batch_fraction`` of the windows (at least 1), then
  the epochs are raised to the fewest (never fewer than asked) whose every phase gets
  ``min_phase_steps`` steps of ``ceil(num_windows / batch)`` each. With many windows
  neither bound binds and the arguments come back unchanged.

  Args:
    num_windows: training windows, > 0.
    batch_size: the asked batch, > 0.
    epochs: the asked epochs, > 0.
    min_phase_steps: the fewest optimizer steps a phase may get; 0 turns it off.
    max_batch_fraction: the largest batch as a fraction of ``num_windows``, in (0, 1];
      1 turns it off.
    phases: ``epochs -> (epochs of each phase)``, e.g. ``PruningConfig.phase_epochs``;
      None: one phase of all the epochs.

  Returns:
    ``(batch_size, epochs)`` to train with.

  Example:
    >>> step_budget(36, 64, 8, min_phase_steps=256, max_batch_fraction=0.25)
    (9, 64)
    >>> step_budget(7000, 64, 8, min_phase_steps=256, max_batch_fraction=0.25)
    (64, 8)
  """
  num_windows = check_positive_int("num_windows", num_windows)
  batch_size = check_positive_int("batch_size", batch_size)
  epochs = check_positive_int("epochs", epochs)
  if isinstance(min_phase_steps, bool) or not isinstance(
      min_phase_steps, (int, np.integer)) or min_phase_steps < 0:
    raise ValueError(f"min_phase_steps must be an int >= 0, got {min_phase_steps!r}")
  if not (isinstance(max_batch_fraction, (int, float)) and 0 < max_batch_fraction <= 1):
    raise ValueError(f"max_batch_fraction must be in (0, 1], got {max_batch_fraction!r}")
  phases = phases or (lambda e: (e,))
  batch = batch_size
  if max_batch_fraction < 1:  # 1 is off: a batch above the windows is left as asked
    batch = min(batch, max(1, math.floor(max_batch_fraction * num_windows)))
  needed = math.ceil(min_phase_steps / math.ceil(num_windows / batch))
  # The fewest epochs whose shortest phase holds ``needed`` (every phase's share grows
  # with the total, so this ends).
  while min(phases(epochs)) < needed:
    epochs += 1
  return batch, epochs


def _check_data(name, data, batch_size=None):
  if not (isinstance(data, (tuple, list)) and len(data) == 2):
    raise ValueError(f"{name} must be a pair (x, y) of arrays, got {type(data).__name__}")
  x, y = np.asarray(data[0]), np.asarray(data[1])
  if x.ndim < 2 or len(x) == 0:
    raise ValueError(f"{name}: x must be a non-empty batch [N, ...], got shape {x.shape}")
  if y.shape != (len(x),):
    raise ValueError(f"{name}: y must be integer labels of shape [N]=({len(x)},), got "
                     f"shape {y.shape}")
  if not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f"{name}: y must hold integer class labels, got dtype {y.dtype}")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{name}: x holds NaN or inf values; clean or normalise the data")
  return x.astype(np.float32, copy=False), y.astype(np.int32, copy=False)


class _StopOnNonFinite(keras.callbacks.TerminateOnNaN):
  """Keras' TerminateOnNaN that remembers where the loss went bad."""

  def __init__(self):
    super().__init__()
    self.where = None
    self._epoch = 0

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch

  def on_batch_end(self, batch, logs=None):
    loss = (logs or {}).get("loss")
    if loss is not None and not np.isfinite(loss) and self.where is None:
      self.where = (self._epoch, batch, float(loss))
    super().on_batch_end(batch, logs)


class _EpochCheckpoint(keras.callbacks.Callback):
  """Appends the epoch's logs to the history; saves checkpoint and history atomically.

  The history travels inside the checkpoint (a string variable), so the two can never
  disagree after a kill; ``history.json`` beside it is a readable copy.
  """

  def __init__(self, history, nan_guard, manager=None, state=None, directory=None,
               best=None):
    # ``directory``: where this process writes (a temporary folder on a non-chief
    # worker of a multi-worker run).
    super().__init__()
    self.history = history
    self._nan_guard = nan_guard
    self._manager = manager
    self._state = state
    self._dir = directory
    self._best = best

  def on_epoch_end(self, epoch, logs=None):
    logs = dict(logs or {})
    if self._nan_guard.where is not None or not all(
        np.isfinite(v) for v in logs.values() if np.ndim(v) == 0):
      return  # never checkpoint a diverged model: a resume restarts from the last good one
    for key, value in logs.items():
      self.history.setdefault(key, []).append(float(value))
    if self._best is not None:
      self._best.update(self.model, self.history, epoch, self._dir)
    if self._manager is None:
      return
    self._state["epoch"].assign(epoch + 1)
    self._state["history"].assign(json.dumps(self.history))
    self._manager.save(checkpoint_number=epoch + 1)
    fileio.write_json(self._dir / HISTORY_FILE,
                      {"epochs_done": epoch + 1, "history": self.history})


def _checkpoint_prefixes(directory):
  """The ``ckpt-N`` prefixes in ``directory``, newest first, found by listing the folder
  (not from the ``checkpoint`` state file, which may be damaged)."""
  found = []
  for index in directory.glob("ckpt-*.index"):
    number = index.name[len("ckpt-"):-len(".index")]
    if number.isdigit():
      found.append((int(number), str(directory / f"ckpt-{number}")))
  return [prefix for _, prefix in sorted(found, reverse=True)]


def _restore_newest_intact(ckpt, manager, directory):
  """Restores the newest checkpoint that reads back whole; returns its prefix or None.

  A damaged checkpoint (a truncated data file, a corrupt ``.index``) is named and
  skipped for the next older one; a damaged or stale ``checkpoint`` state file is named
  and the files themselves are used. Only a checkpoint of another model is an error.

  Raises:
    ValueError: the checkpoint is of another model, or every checkpoint is damaged.
  """
  prefixes = _checkpoint_prefixes(directory)
  state_file = directory / "checkpoint"
  if not prefixes:
    if state_file.exists():
      print(f"[training] {state_file} names checkpoints, but none is in {directory}: "
            "training starts from epoch 1", flush=True)
    return None
  latest = manager.latest_checkpoint
  stale = latest is None or pathlib.Path(latest).name != pathlib.Path(prefixes[0]).name
  if stale:
    print(f"[training] {state_file} is unreadable or stale (it names {latest}); resuming "
          f"from the newest checkpoint files in the folder instead", flush=True)
  damaged = []
  for prefix in prefixes:
    try:
      ckpt.restore(prefix).assert_existing_objects_matched()
      if stale or damaged:
        print(f"[training] resumed from {prefix}", flush=True)
      return prefix
    except (AssertionError, ValueError) as e:
      raise ValueError(
          f"checkpoint {prefix} does not match this model (another architecture or "
          f"pruning set-up?); use an empty checkpoint_dir: {e}") from e
    except (tf.errors.OpError, IndexError, OSError) as e:
      damaged.append(prefix)
      print(f"[training] checkpoint {prefix} is damaged ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:120]}); trying the next older one", flush=True)
  raise ValueError(f"every checkpoint in {directory} is damaged ({', '.join(damaged)}): "
                   "remove them (or use an empty checkpoint_dir) to train from epoch 1")


def _best_epoch(history, first_epoch):
  """0-based epoch with the highest ``val_accuracy`` (ties: lower ``val_loss``, earlier)."""
  acc = history.get("val_accuracy", [])
  loss = history.get("val_loss", [0.0] * len(acc))
  candidates = range(first_epoch, len(acc))
  if not candidates:
    return None
  return max(candidates, key=lambda e: (acc[e], -loss[e], -e))


class _KeepBest:
  """Remembers the weights of the best epoch on validation, in memory and on disk.

  On disk (``best_weights.npz`` beside the checkpoints, written before the epoch's
  checkpoint) so a resumed run still returns the best epoch of the whole run: which epoch
  was best is recomputed from the history, and the file records its epoch.
  """

  def __init__(self, first_epoch):
    self.first_epoch = first_epoch
    self.weights = None
    self.epoch = None

  def update(self, model, history, epoch, directory):
    if _best_epoch(history, self.first_epoch) != epoch:
      return
    self.weights, self.epoch = [w.copy() for w in model.get_weights()], epoch
    if directory is not None:
      with fileio.atomic_path(directory / BEST_WEIGHTS_FILE, suffix=".npz") as tmp:
        np.savez(tmp, epoch=np.int64(epoch), *self.weights)

  def load(self, directory, history):
    """After a resume: the best epoch's weights from disk, if it was an earlier epoch."""
    best = _best_epoch(history, self.first_epoch)
    path = None if directory is None else directory / BEST_WEIGHTS_FILE
    if best is None or path is None or not path.exists():
      return
    with np.load(path) as f:
      if int(f["epoch"]) == best:
        self.weights = [f[f"arr_{i}"] for i in range(len(f.files) - 1)]
        self.epoch = best


_DEFAULT_RECIPE = {"lr_schedule": "constant", "phase_boundaries": [],
                   "min_lr_fraction": 0.05, "clipnorm": None, "weight_decay": 0.0,
                   "keep_best": False, "best_from_epoch": 0}


def _readout_record(model):
  """``{"readout": "mean"}`` for a mean read-out classifier (``stepping.LAYOUT``: RNN,
  possibly in a pruning wrapper, → Dense → GlobalAveragePooling1D), else ``{}``.

  Its weights are those of the last-step classifier, so only this record stops a
  checkpoint from resuming with the other read-out; absent for "last", so checkpoints
  made before it still resume.
  """
  layers = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
  if len(layers) != 3:
    return {}
  rnn = getattr(layers[0], "layer", layers[0])  # under a pruning wrapper
  if (isinstance(rnn, keras.layers.RNN) and isinstance(layers[1], keras.layers.Dense)
      and type(layers[2]) is keras.layers.GlobalAveragePooling1D):  # pylint: disable=unidiomatic-typecheck
    return {"readout": "mean"}
  return {}


def _check_run(directory, run, resuming, write=True):
  """Refuses to resume a checkpoint made with other settings; records them otherwise
  (unless ``write`` is False: a non-chief worker only reads)."""
  path = directory / _RUN_FILE
  run = json.loads(json.dumps(run))  # compare as stored: tuples become lists
  if resuming and path.exists():
    old = json.loads(path.read_text())
    # Both ways: a checkpoint with a recipe (or augmentation) resumed without one differs.
    keys = (set(run) | set(old)) - {"epochs"}
    diff = {k: (old.get(k), run.get(k)) for k in sorted(keys) if old.get(k) != run.get(k)}
    if diff:
      details = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
      raise ValueError(
          f"checkpoint_dir {directory} holds a run with other settings ({details}); "
          f"pass the same settings to resume it, or use an empty checkpoint_dir")
  if write:
    fileio.write_json(path, run)


@keras.utils.register_keras_serializable(package="tf_fastgrnn")
class SmoothedCrossentropy(keras.losses.Loss):
  """Cross-entropy of logits against smoothed one-hot targets of integer labels:
  ``-Σ_k t_k log softmax(z)_k`` with ``t = (1 - ε)·onehot(y) + ε/C``."""

  def __init__(self, label_smoothing, name="smoothed_crossentropy", **kwargs):
    super().__init__(name=name, **kwargs)
    self.label_smoothing = float(label_smoothing)

  def call(self, y_true, y_pred):
    classes = tf.shape(y_pred)[-1]
    labels = tf.cast(tf.reshape(y_true, tf.shape(y_pred)[:-1]), tf.int32)
    return keras.losses.categorical_crossentropy(
        tf.one_hot(labels, classes, dtype=y_pred.dtype), y_pred, from_logits=True,
        label_smoothing=self.label_smoothing)

  def get_config(self):
    return {**super().get_config(), "label_smoothing": self.label_smoothing}


def classification_loss(label_smoothing=0.0):
  """The training loss on logits and integer labels: sparse categorical cross-entropy,
  or with ``label_smoothing`` ε > 0 ``SmoothedCrossentropy(ε)``."""
  if not label_smoothing:
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  return SmoothedCrossentropy(label_smoothing)


@dataclasses.dataclass(frozen=True)
class FitOptions:
  """How ``fit`` runs, beside the ``Recipe`` (what it trains with).

  Args:
    callbacks: extra Keras callbacks, called before the checkpoint is written (so logs
      they add to an epoch's ``logs`` enter the history).
    verbose: Keras' progress (0 silent, 1 progress bar, 2 one line per epoch).
    tensorboard_dir: if set, Keras' TensorBoard logs go there (with a warning and no
      logs where the tensorboard package is not installed).
    run_config: JSON-able settings of the caller that must match to resume (e.g. the
      pruning targets).
    distribute: ``"none"``, ``"mirrored"``, ``"multi_worker"`` or a
      ``tf.distribute.Strategy`` (``tf_fastgrnn.distribute``). A model built outside the
      strategy's scope is trained as a copy inside it and the trained weights are written
      back into ``model``; the recipe's ``batch_size`` is the global batch.
    augment: None, or an ``augment.Augmenter`` applied to the training batches only
      (validation is evaluated as it is); its draws come from (seed, epoch, batch), so a
      resume continues exactly. Its ``spec`` is part of the settings a resume must match.
    phase_boundaries: epochs (0-based) where a new cosine starts (``lr_schedule`` cosine),
      e.g. the pruning phases' starts.
    best_from_epoch: first epoch (0-based) eligible for ``keep_best`` (e.g. the first
      epoch of the fixed-support phase, so the kept weights have the asked sparsity).
  """
  callbacks: tuple = ()
  verbose: int = 1
  tensorboard_dir: object = None
  run_config: object = None
  distribute: object = "none"
  augment: object = None
  phase_boundaries: tuple = ()
  best_from_epoch: int = 0


def fit(model, train, val, recipe, *, seed=0, checkpoint_dir=None, options=None):
  """Compiles and trains ``model`` with ``recipe``; checkpoints every epoch and resumes
  from the last.

  The model is compiled with Adam(``recipe.learning_rate``) (AdamW with
  ``weight_decay``), cross-entropy on logits (``classification_loss``: with
  ``label_smoothing`` against smoothed one-hot targets) and accuracy, and trained
  in place for ``recipe.epochs`` epochs of ``recipe.batch_size`` windows. The rate is
  constant or (``lr_schedule="cosine"``, ``PhasedCosine``) a cosine from the rate down to
  ``min_lr_fraction`` of it, restarted at each of ``options.phase_boundaries``; gradients
  clipped to ``clipnorm``; with ``keep_best`` the model ends with the weights of the
  epoch of best ``val_accuracy`` (ties: lower ``val_loss``) from
  ``options.best_from_epoch`` on, and the history gains ``best_epoch`` ([1-based]).

  With ``checkpoint_dir``, the model's variables (pruning masks and step included), the
  optimizer's, the epoch count and the history are saved at every epoch end (a
  ``tf.train.CheckpointManager``, whose index file is replaced atomically, so a kill
  leaves the previous epoch's checkpoint intact). Calling ``fit`` again with the same
  directory and settings restores the latest checkpoint and runs only the epochs left;
  the returned history covers all of them.

  Args:
    model: a built ``keras.Model`` mapping ``x`` to logits ``[N, C]``.
    train: ``(x [N, ...], y [N])`` with integer labels.
    val: None or ``(x, y)`` evaluated at every epoch end (``val_loss``,
      ``val_accuracy``); ``keep_best`` needs it.
    recipe: a ``tf_fastgrnn.spec.Recipe`` (its epochs count those of a resumed run).
    seed: seeds the run (``set_seed``) and each epoch's data order.
    checkpoint_dir: where to checkpoint and resume; None trains without saving. The
      batch size, rate, seed, training set size and recipe must match to resume.
    options: a ``FitOptions`` (callbacks, progress, logs, strategy, augmentation,
      phases); None: ``FitOptions()``.

  Returns:
    The history ``{metric: [value per epoch]}`` over all epochs (``loss``, ``accuracy``,
    ``val_loss``, ``val_accuracy`` and whatever callbacks logged).

  Raises:
    ValueError: not a Recipe, bad options or data; a checkpoint made with other settings
      or another model.
    NonFiniteLossError: the loss became NaN/inf (the last good checkpoint is kept).

  Example:
    >>> from tf_fastgrnn import models
    >>> from tf_fastgrnn.spec import Recipe
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(32, 5, 4)).astype("float32"), rng.integers(0, 3, 32)
    >>> model = models.sequence_classifier("fastgrnn", 8, (5, 4), 3)
    >>> history = fit(model, (x, y), (x, y), Recipe(epochs=2, batch_size=8),
    ...               checkpoint_dir="ckpt", options=FitOptions(verbose=0))
    >>> sorted(history), len(history["loss"])
    (['accuracy', 'best_epoch', 'loss', 'val_accuracy', 'val_loss'], 2)
  """
  if not isinstance(recipe, spec_lib.Recipe):
    raise ValueError(f"recipe must be a tf_fastgrnn.spec.Recipe, got "
                     f"{type(recipe).__name__}")
  options = FitOptions() if options is None else options
  if not isinstance(options, FitOptions):
    raise ValueError(f"options must be a training.FitOptions, got "
                     f"{type(options).__name__}")
  epochs = recipe.epochs
  tensorboard_dir = options.tensorboard_dir
  if tensorboard_dir is not None and importlib.util.find_spec("tensorboard") is None:
    # An optional log must not stop a long run: the pinned stack has no tensorboard.
    warnings.warn(f"tensorboard_dir={str(tensorboard_dir)!r} ignored: the tensorboard "
                  f"package is not installed (pip install tensorboard to get the logs)")
    options = dataclasses.replace(options, tensorboard_dir=None)
  augment = options.augment
  if augment is not None and not (callable(augment) and isinstance(
      getattr(augment, "spec", None), dict)):
    raise ValueError(f"augment must be None or an augment.Augmenter, got "
                     f"{type(augment).__name__}")
  if recipe.keep_best and val is None:
    raise ValueError("keep_best=True needs validation data (val) to pick the best epoch")
  if not 0 <= options.best_from_epoch < epochs:
    raise ValueError(f"best_from_epoch must be in [0, epochs={epochs}), got "
                     f"{options.best_from_epoch!r}")
  boundaries = sorted(int(b) for b in options.phase_boundaries)
  if any(not 0 < b < epochs for b in boundaries):
    raise ValueError(f"phase_boundaries must be epochs inside (0, {epochs}), got "
                     f"{list(options.phase_boundaries)}")
  options = dataclasses.replace(options, phase_boundaries=tuple(boundaries))
  x, y = _check_data("train", train)
  val_data = None if val is None else _check_data("val", val)
  strategy = distribute_lib.get_strategy(options.distribute)
  set_seed(seed)
  if not distribute_lib.is_default(strategy) and model.distribute_strategy is not strategy:
    replica = distribute_lib.replicate(model, strategy)
    history = fit(replica, (x, y), val_data, recipe, seed=seed,
                  checkpoint_dir=checkpoint_dir,
                  options=dataclasses.replace(options, distribute=strategy))
    distribute_lib.copy_back(replica, model)
    return history
  # The epoch count and the history are ordinary variables made outside the strategy (a
  # multi-worker strategy cannot broadcast a string variable's initial value).
  state = ({"epoch": tf.Variable(0, dtype=tf.int64, trainable=False),
            "history": tf.Variable("", dtype=tf.string, trainable=False)}
           if checkpoint_dir is not None else None)
  chief = distribute_lib.is_chief(strategy)
  write_dir = None
  if checkpoint_dir is not None and not chief:
    write_dir = pathlib.Path(tempfile.mkdtemp(prefix="tf_fastgrnn-worker-ckpt-"))
  if not chief:
    options = dataclasses.replace(options, tensorboard_dir=None)
  try:
    with strategy.scope():
      return _fit_in_scope(model, (x, y, val_data), recipe, seed,
                           (checkpoint_dir, write_dir, state), options)
  finally:
    if write_dir is not None:
      shutil.rmtree(write_dir, ignore_errors=True)


def _fit_in_scope(model, data, recipe, seed, checkpoint, options):
  """``fit`` after its checks, inside the model's strategy scope.

  ``data``: ``(x, y, val_data)``. ``checkpoint``: ``(checkpoint_dir, write_dir, state)``;
  ``write_dir``: where a non-chief worker writes its checkpoints (None: into
  ``checkpoint_dir``, which is always where a resume reads from).
  """
  x, y, val_data = data
  checkpoint_dir, write_dir, state = checkpoint
  epochs, batch_size = int(recipe.epochs), int(recipe.batch_size)
  learning_rate = float(recipe.learning_rate)
  lr_schedule, clipnorm, weight_decay = recipe.lr_schedule, recipe.clipnorm, recipe.weight_decay
  keep_best, min_lr_fraction = recipe.keep_best, recipe.min_lr_fraction
  boundaries, best_from_epoch = list(options.phase_boundaries), options.best_from_epoch
  augment = options.augment
  steps = math.ceil(len(x) / batch_size)
  rate = float(learning_rate)
  if lr_schedule == "cosine":
    rate = PhasedCosine(learning_rate, epochs * steps, [b * steps for b in boundaries],
                        min_lr_fraction)
  opt_kwargs = {"clipnorm": float(clipnorm)} if clipnorm else {}
  if weight_decay:
    optimizer = keras.optimizers.AdamW(learning_rate=rate, weight_decay=float(weight_decay),
                                       **opt_kwargs)
    optimizer.exclude_from_weight_decay(
        var_names=["bias", "zeta", "nu", "alpha", "beta", "mask", "threshold"])
  else:
    optimizer = keras.optimizers.Adam(learning_rate=rate, **opt_kwargs)
  model.compile(optimizer=optimizer, loss=classification_loss(recipe.label_smoothing),
                metrics=["accuracy"])
  # Create the slots now, so a checkpoint restores them at once rather than on the
  # first step.
  optimizer.build(model.trainable_variables)

  cosine = lr_schedule == "cosine"
  record = {"lr_schedule": lr_schedule, "phase_boundaries": boundaries if cosine else [],
            "min_lr_fraction": float(min_lr_fraction) if cosine else 0.05,
            "clipnorm": None if clipnorm is None else float(clipnorm),
            "weight_decay": float(weight_decay), "keep_best": bool(keep_best),
            "best_from_epoch": int(best_from_epoch) if keep_best else 0}
  if cosine:  # the schedule spans the whole run: resuming with other epochs changes it
    record["total_epochs"] = epochs
  if augment is not None:  # absent otherwise: earlier checkpoints still resume
    record["augment"] = augment.spec
  if recipe.label_smoothing:  # likewise
    record["label_smoothing"] = float(recipe.label_smoothing)
  history, initial_epoch = {}, 0
  nan_guard = _StopOnNonFinite()
  manager = directory = out_dir = None
  if checkpoint_dir is not None:
    directory = pathlib.Path(checkpoint_dir)
    out_dir = directory if write_dir is None else pathlib.Path(write_dir)
    if write_dir is None:
      directory.mkdir(parents=True, exist_ok=True)
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, **state)
    manager = tf.train.CheckpointManager(ckpt, str(out_dir), max_to_keep=2)
    reader = (manager if write_dir is None else
              tf.train.CheckpointManager(ckpt, str(directory), max_to_keep=2))
    resuming = directory.is_dir() and bool(_checkpoint_prefixes(directory))
    _check_run(directory, {"batch_size": batch_size, "learning_rate": float(learning_rate),
                           "seed": int(seed), "num_train": int(len(x)), "epochs": epochs,
                           "run_config": options.run_config, **_readout_record(model),
                           **({} if record == _DEFAULT_RECIPE else {"recipe": record})},
               resuming=resuming, write=write_dir is None)
    restored = (_restore_newest_intact(ckpt, reader, directory) if directory.is_dir()
                else None)
    if restored:
      initial_epoch = int(state["epoch"].numpy())
      history = json.loads(state["history"].numpy().decode() or "{}")
      if options.verbose:
        print(f"Resuming from {restored}: {initial_epoch}/{epochs} epochs done")
  best = _KeepBest(int(best_from_epoch)) if keep_best else None
  if best is not None and initial_epoch:
    best.load(directory, history)
  if initial_epoch >= epochs:
    return _finish(model, history, best)

  saver = _EpochCheckpoint(history, nan_guard, manager, state, out_dir, best)
  all_callbacks = [nan_guard, *options.callbacks]
  if options.tensorboard_dir is not None:
    all_callbacks.append(keras.callbacks.TensorBoard(log_dir=str(options.tensorboard_dir)))
  all_callbacks.append(saver)

  model.fit(input_pipeline.train_dataset(x, y, batch_size, int(seed), initial_epoch,
                                         epochs, augment=augment),
            epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=steps,
            validation_data=(None if val_data is None else
                             input_pipeline.eval_dataset(*val_data, batch_size)),
            callbacks=all_callbacks, verbose=options.verbose)
  if nan_guard.where is not None:
    epoch, batch, loss = nan_guard.where
    raise NonFiniteLossError(
        f"the training loss became {loss} at epoch {epoch + 1}, batch {batch + 1}; "
        f"lower learning_rate (got {learning_rate}) or check the data. "
        + (f"The last good checkpoint in {checkpoint_dir} is kept."
           if checkpoint_dir is not None else ""))
  return _finish(model, history, best)


def _finish(model, history, best):
  """Gives the model the best epoch's weights (``keep_best``); returns the history."""
  if best is None:
    return history
  if best.weights is None:
    raise RuntimeError("keep_best: the best epoch's weights are missing (best_weights.npz "
                       "deleted from the checkpoint folder?); retrain in an empty folder")
  model.set_weights(best.weights)
  return {**history, "best_epoch": [best.epoch + 1]}
