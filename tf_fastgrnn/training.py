"""The one training loop: compile, fit, checkpoint every epoch, resume after a kill.

Everything that trains a model in this project (the float and sparse phases of
``pruning.train_three_phase``, QAT fine-tuning, the benchmarks) goes through ``fit``, so
they share the loss, the optimizer, the data order, the checkpoints and the history
format.

Determinism: the order of the training windows in epoch ``e`` is a permutation drawn from
``(seed, e)`` alone, not from a random stream that runs across epochs. A run resumed at
epoch ``e`` from its checkpoint (weights, optimizer slots, pruning masks and step) thus
sees exactly the batches the uninterrupted run saw, and with ``set_seed`` (op
determinism) ends with the same weights.
"""

import importlib.util
import json
import math
import os
import pathlib
import warnings

import numpy as np
import tensorflow as tf

from tf_fastgrnn import distribute as distribute_lib
from tf_fastgrnn import fileio
from tf_fastgrnn import input_pipeline
from tf_fastgrnn._keras import keras

__all__ = ["NonFiniteLossError", "fit", "load_history", "set_seed"]

HISTORY_FILE = "history.json"
_RUN_FILE = "run.json"


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


def _check_positive_int(name, value):
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
    raise ValueError(f"{name} must be a positive int, got {value!r}")
  return int(value)


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


def _epoch_batches(x, y, batch_size, seed, first_epoch, last_epoch):
  """Batches of epochs ``first_epoch .. last_epoch - 1``, each epoch's order from (seed, e)."""
  return input_pipeline.train_dataset(x, y, batch_size, seed, first_epoch, last_epoch)


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

  def __init__(self, history, nan_guard, manager=None, state=None, directory=None):
    super().__init__()
    self.history = history
    self._nan_guard = nan_guard
    self._manager = manager
    self._state = state
    self._dir = directory

  def on_epoch_end(self, epoch, logs=None):
    logs = dict(logs or {})
    if self._nan_guard.where is not None or not all(
        np.isfinite(v) for v in logs.values() if np.ndim(v) == 0):
      return  # never checkpoint a diverged model: a resume restarts from the last good one
    for key, value in logs.items():
      self.history.setdefault(key, []).append(float(value))
    if self._manager is None:
      return
    self._state["epoch"].assign(epoch + 1)
    self._state["history"].assign(json.dumps(self.history))
    self._manager.save(checkpoint_number=epoch + 1)
    fileio.write_json(self._dir / HISTORY_FILE,
                      {"epochs_done": epoch + 1, "history": self.history})


def _check_run(directory, run, resuming):
  """Refuses to resume a checkpoint made with other settings; records them otherwise."""
  path = directory / _RUN_FILE
  run = json.loads(json.dumps(run))  # compare as stored: tuples become lists
  if resuming and path.exists():
    old = json.loads(path.read_text())
    fixed = {k: v for k, v in run.items() if k != "epochs"}
    diff = {k: (old.get(k), v) for k, v in fixed.items() if old.get(k) != v}
    if diff:
      details = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
      raise ValueError(
          f"checkpoint_dir {directory} holds a run with other settings ({details}); "
          f"pass the same settings to resume it, or use an empty checkpoint_dir")
  fileio.write_json(path, run)


def fit(model, train, val=None, *, epochs, batch_size, learning_rate,
        checkpoint_dir=None, callbacks=(), seed=0, verbose=1, tensorboard_dir=None,
        run_config=None, distribute="none"):
  """Compiles and trains ``model``; checkpoints every epoch and resumes from the last.

  The model is compiled with Adam(``learning_rate``), sparse categorical cross-entropy
  on logits and accuracy, and trained in place. With ``checkpoint_dir``, the model's
  variables (pruning masks and step included), the optimizer's, the epoch count and the
  history are saved at every epoch end (a ``tf.train.CheckpointManager``, whose index
  file is replaced atomically, so a kill leaves the previous epoch's checkpoint intact).
  Calling ``fit`` again with the same directory and settings restores the latest
  checkpoint and runs only the epochs left; the returned history covers all of them.

  Args:
    model: a built ``keras.Model`` mapping ``x`` to logits ``[N, C]``.
    train: ``(x [N, ...], y [N])`` with integer labels.
    val: optional ``(x, y)`` evaluated at every epoch end (``val_loss``,
      ``val_accuracy``).
    epochs: total number of epochs, counting those of a resumed run.
    batch_size: windows per step; an epoch is ``ceil(N / batch_size)`` steps.
    learning_rate: Adam's learning rate, > 0.
    checkpoint_dir: where to checkpoint and resume; None trains without saving.
    callbacks: extra Keras callbacks, called before the checkpoint is written (so logs
      they add to an epoch's ``logs`` enter the history).
    seed: seeds the run (``set_seed``) and each epoch's data order.
    verbose: Keras' progress (0 silent, 1 progress bar, 2 one line per epoch).
    tensorboard_dir: if set, Keras' TensorBoard logs go there (with a warning and no
      logs where the tensorboard package is not installed).
    run_config: JSON-able settings of the caller that must match to resume (e.g. the
      pruning targets); ``batch_size``, ``learning_rate``, ``seed`` and the training
      set size always must.
    distribute: ``"none"``, ``"mirrored"``, ``"multi_worker"`` or a
      ``tf.distribute.Strategy`` (see ``tf_fastgrnn.distribute``). A model built outside
      the strategy's scope is trained as a copy inside it and its weights written back
      into ``model`` at the end; ``batch_size`` is the global batch.

  Returns:
    The history ``{metric: [value per epoch]}`` over all epochs (``loss``, ``accuracy``,
    ``val_loss``, ``val_accuracy`` and whatever ``callbacks`` logged).

  Raises:
    ValueError: bad epochs, batch size, learning rate or data; a checkpoint made with
      other settings or another model.
    NonFiniteLossError: the loss became NaN/inf (the last good checkpoint is kept).

  Example:
    >>> model = models.sequence_classifier("fastgrnn", 8, (5, 4), 3)
    >>> history = fit(model, (x, y), (xv, yv), epochs=3, batch_size=8,
    ...               learning_rate=1e-2, checkpoint_dir="runs/x/ckpt")
  """
  epochs = _check_positive_int("epochs", epochs)
  batch_size = _check_positive_int("batch_size", batch_size)
  if isinstance(learning_rate, bool) or not isinstance(
      learning_rate, (int, float, np.floating)) or not (
          math.isfinite(learning_rate) and learning_rate > 0):
    raise ValueError(f"learning_rate must be a finite number > 0, got {learning_rate!r}")
  if tensorboard_dir is not None and importlib.util.find_spec("tensorboard") is None:
    # An optional log must not stop a long run: the pinned stack has no tensorboard.
    warnings.warn(f"tensorboard_dir={str(tensorboard_dir)!r} ignored: the tensorboard "
                  f"package is not installed (pip install tensorboard to get the logs)")
    tensorboard_dir = None
  x, y = _check_data("train", train)
  val_data = None if val is None else _check_data("val", val)
  # --- distribution (issue 14): train a replica under the strategy, copy weights back.
  strategy = distribute_lib.get_strategy(distribute)
  set_seed(seed)
  if not distribute_lib.is_default(strategy) and model.distribute_strategy is not strategy:
    replica = distribute_lib.replicate(model, strategy)
    history = fit(replica, train, val, epochs=epochs, batch_size=batch_size,
                  learning_rate=learning_rate, checkpoint_dir=checkpoint_dir,
                  callbacks=callbacks, seed=seed, verbose=verbose,
                  tensorboard_dir=tensorboard_dir, run_config=run_config,
                  distribute=strategy)
    distribute_lib.copy_back(replica, model)
    return history
  # Epoch count and history: ordinary variables, outside the strategy (a multi-worker
  # strategy cannot broadcast a string variable's initial value).
  state = ({"epoch": tf.Variable(0, dtype=tf.int64, trainable=False),
            "history": tf.Variable("", dtype=tf.string, trainable=False)}
           if checkpoint_dir is not None else None)
  with strategy.scope():
    return _fit_in_scope(model, x, y, val_data, epochs, batch_size, learning_rate,
                         checkpoint_dir, callbacks, seed, verbose, tensorboard_dir,
                         run_config, state)
  # --- end distribution


def _fit_in_scope(model, x, y, val_data, epochs, batch_size, learning_rate,
                  checkpoint_dir, callbacks, seed, verbose, tensorboard_dir, run_config,
                  state):
  """``fit`` after its checks, inside the model's strategy scope."""

  optimizer = keras.optimizers.Adam(learning_rate=float(learning_rate))
  model.compile(optimizer=optimizer,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
  # Create the slots now, so a checkpoint restores them at once rather than on the
  # first step.
  optimizer.build(model.trainable_variables)

  history, initial_epoch = {}, 0
  nan_guard = _StopOnNonFinite()
  manager = directory = None
  if checkpoint_dir is not None:
    directory = pathlib.Path(checkpoint_dir)
    directory.mkdir(parents=True, exist_ok=True)
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, **state)
    manager = tf.train.CheckpointManager(ckpt, str(directory), max_to_keep=2)
    _check_run(directory, {"batch_size": batch_size, "learning_rate": float(learning_rate),
                           "seed": int(seed), "num_train": int(len(x)), "epochs": epochs,
                           "run_config": run_config},
               resuming=manager.latest_checkpoint is not None)
    if manager.latest_checkpoint:
      try:
        ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
      except (AssertionError, ValueError) as e:
        raise ValueError(
            f"checkpoint {manager.latest_checkpoint} does not match this model (another "
            f"architecture or pruning set-up?); use an empty checkpoint_dir: {e}") from e
      initial_epoch = int(state["epoch"].numpy())
      history = json.loads(state["history"].numpy().decode() or "{}")
      if verbose:
        print(f"Resuming from {manager.latest_checkpoint}: {initial_epoch}/{epochs} "
              f"epochs done")
  if initial_epoch >= epochs:
    return history

  saver = _EpochCheckpoint(history, nan_guard, manager, state, directory)
  all_callbacks = [nan_guard, *callbacks]
  if tensorboard_dir is not None:
    all_callbacks.append(keras.callbacks.TensorBoard(log_dir=str(tensorboard_dir)))
  all_callbacks.append(saver)

  steps = math.ceil(len(x) / batch_size)
  model.fit(_epoch_batches(x, y, batch_size, int(seed), initial_epoch, epochs),
            epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=steps,
            validation_data=(None if val_data is None else
                             input_pipeline.eval_dataset(*val_data, batch_size)),
            callbacks=all_callbacks, verbose=verbose)
  if nan_guard.where is not None:
    epoch, batch, loss = nan_guard.where
    raise NonFiniteLossError(
        f"the training loss became {loss} at epoch {epoch + 1}, batch {batch + 1}; "
        f"lower learning_rate (got {learning_rate}) or check the data. "
        + (f"The last good checkpoint in {checkpoint_dir} is kept."
           if checkpoint_dir is not None else ""))
  return history
