"""tf.data input for training and evaluation, from arrays or a memory-mapped cache.

The order of epoch ``e`` is ``np.random.default_rng([seed, e]).permutation(n)``: a
function of (seed, e) alone, so a run resumed at any epoch sees exactly the batches the
uninterrupted run saw (what ``training.fit`` promised before this module existed).

Windows are gathered batch by batch from the caller's arrays (``tf.numpy_function``):
the dataset never holds a second copy of the whole training set, so ``x`` may be a
``np.memmap`` over the feature cache larger than memory. Batches are prefetched.
"""

import numpy as np
import tensorflow as tf

__all__ = ["epoch_order", "train_dataset", "eval_dataset"]


def epoch_order(n, seed, epoch):
  """The permutation of ``range(n)`` that epoch ``epoch`` (0-based) visits."""
  return np.random.default_rng([int(seed), int(epoch)]).permutation(n).astype(np.int64)


def _options():
  options = tf.data.Options()
  # Each worker builds the whole (deterministic) stream and keeps its part of every
  # global batch: the same batches as one device, whatever the number of workers.
  options.experimental_distribute.auto_shard_policy = (
      tf.data.experimental.AutoShardPolicy.DATA)
  options.deterministic = True
  return options


def _gather_fn(x, y):
  def gather(idx):
    idx = np.sort(idx) if isinstance(x, np.memmap) else idx  # sequential reads on disk
    return np.asarray(x[idx], np.float32), np.asarray(y[idx], np.int32)
  return gather


def _batches(x, y, index_ds, prefetch, augment=None, seed=0):
  """``index_ds``: index vectors, or with ``augment`` ``(epoch, batch, indices)``."""
  gather = _gather_fn(x, y)
  # memmap: gather reads sorted indices; restore the epoch's order inside the batch.
  memmap = isinstance(x, np.memmap)

  def load(idx):
    if memmap:
      order = np.argsort(np.argsort(idx, kind="stable"), kind="stable")
      xb, yb = gather(idx)
      return xb[order], yb[order]
    return gather(idx)

  def load_augmented(epoch, batch, idx):
    from tf_fastgrnn import augment as augment_lib  # pylint: disable=import-outside-toplevel
    xb, yb = load(idx)
    xb = augment(xb, augment_lib.batch_rng(seed, epoch, batch))
    return np.asarray(xb, np.float32), yb

  def shaped(xb, yb):
    xb.set_shape((None, *x.shape[1:]))
    yb.set_shape((None,))
    return xb, yb

  def fn(idx):
    return shaped(*tf.numpy_function(load, [idx], (tf.float32, tf.int32), stateful=False))

  def fn_augmented(epoch, batch, idx):
    return shaped(*tf.numpy_function(load_augmented, [epoch, batch, idx],
                                     (tf.float32, tf.int32), stateful=False))

  mapped = index_ds.map(fn if augment is None else fn_augmented)
  return mapped.prefetch(prefetch).with_options(_options())


def train_dataset(x, y, batch_size, seed, first_epoch, last_epoch, prefetch=2,
                  augment=None):
  """Batches of epochs ``first_epoch .. last_epoch - 1``, each epoch's order from (seed, e).

  Every epoch ends on its own (maybe short) batch, so epochs stay aligned with Keras'
  ``steps_per_epoch = ceil(n / batch_size)``. Only index vectors live in the pipeline.
  ``augment``: None, or ``augment(x_batch, rng) -> x_batch`` (an ``augment.Augmenter``)
  applied to batch ``b`` of epoch ``e`` with ``rng = augment.batch_rng(seed, e, b)``.
  """
  n = len(x)
  epochs = tf.data.Dataset.range(first_epoch, last_epoch)

  def order(e):
    perm = tf.numpy_function(lambda e: epoch_order(n, seed, e), [e], tf.int64,
                             stateful=False)
    perm.set_shape((n,))
    batches = tf.data.Dataset.from_tensor_slices(perm).batch(batch_size)
    if augment is None:
      return batches
    return batches.enumerate().map(lambda b, idx: (e, b, idx))

  return _batches(x, y, epochs.flat_map(order), prefetch, augment, int(seed))


def eval_dataset(x, y, batch_size, prefetch=2):
  """Batches of ``(x, y)`` in order (evaluation, validation)."""
  index = tf.data.Dataset.range(len(x)).batch(batch_size)
  return _batches(x, y, index, prefetch)
