"""Training on several devices or machines with TensorFlow's own ``tf.distribute``.

``--distribute`` picks one of:

- ``none``: the default strategy (one device), what every run did before.
- ``mirrored``: ``tf.distribute.MirroredStrategy`` over every local GPU (or the logical
  CPU devices a test configures): one process, synchronous data parallelism.
- ``multi_worker``: ``tf.distribute.MultiWorkerMirroredStrategy``, configured by the
  ``TF_CONFIG`` environment variable (cluster addresses and this worker's index); every
  worker runs the same command.

Training code (``training.fit``, and through it ``pruning.train_three_phase`` and QAT)
takes a model built anywhere, as before: under a strategy it trains a copy made inside
the strategy's scope (``replicate``) and writes the trained weights back into the
caller's model (``copy_back``), so export and evaluation keep working on one ordinary
model in one process. The global batch is ``batch_size``, split across the replicas,
so a run on N devices follows the one-device run up to float rounding.
"""

import json
import os

import tensorflow as tf

from tf_fastgrnn import spec as spec_lib
from tf_fastgrnn._keras import keras

__all__ = ["check_tf_config", "copy_back", "get_strategy", "is_chief",
           "is_default", "register", "replicate"]

_CACHE = {}


def get_strategy(distribute="none"):
  """The ``tf.distribute.Strategy`` for ``distribute`` (created once per process).

  Args:
    distribute: ``"none"``, ``"mirrored"``, ``"multi_worker"``, or a
      ``tf.distribute.Strategy`` (returned as is).

  Raises:
    ValueError: an unknown name, or ``multi_worker`` without a usable ``TF_CONFIG``.
  """
  if isinstance(distribute, tf.distribute.Strategy):
    return distribute
  if distribute is None:
    distribute = "none"
  if distribute not in spec_lib.DISTRIBUTE:
    raise ValueError(f"distribute must be one of {list(spec_lib.DISTRIBUTE)}, got "
                     f"{distribute!r}")
  if distribute == "multi_worker":
    check_tf_config(os.environ.get("TF_CONFIG"))
  if distribute not in _CACHE:
    if distribute == "multi_worker" and _context_initialized():
      raise ValueError(
          "--distribute=multi_worker: TensorFlow was initialised before the strategy was "
          "created; create tf.distribute.MultiWorkerMirroredStrategy() first thing in the "
          "process (before importing tf_fastgrnn) and pass it to distribute.register")
    _CACHE[distribute] = {
        "none": tf.distribute.get_strategy,
        "mirrored": tf.distribute.MirroredStrategy,
        # Collectives must exist before TensorFlow's eager context initialises its
        # devices: a multi_worker run creates its strategy first thing in the process.
        "multi_worker": tf.distribute.MultiWorkerMirroredStrategy,
    }[distribute]()
  return _CACHE[distribute]


def register(strategy):
  """Makes ``strategy`` the one ``get_strategy`` returns for its kind.

  A ``MultiWorkerMirroredStrategy`` must exist before TensorFlow initialises (importing
  ``tf_fastgrnn`` does): create it first thing, then register it here.
  """
  kind = ("multi_worker" if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
          else "mirrored" if isinstance(strategy, tf.distribute.MirroredStrategy) else None)
  if kind is None:
    raise ValueError(f"can only register a (MultiWorker)MirroredStrategy, got "
                     f"{type(strategy).__name__}")
  _CACHE[kind] = strategy
  return strategy


def _context_initialized():
  from tensorflow.python.eager import context  # pylint: disable=import-outside-toplevel
  return context.context()._context_handle is not None  # pylint: disable=protected-access


def check_tf_config(text):
  """The parsed ``TF_CONFIG`` ``text``, or ValueError unless it names workers and this
  task among them (``pipelines.config.multi_worker_task`` reads it the same way)."""
  if not text:
    raise ValueError("--distribute=multi_worker needs the TF_CONFIG environment variable "
                     "(JSON: cluster.worker addresses and this task; see "
                     "docs/training_at_scale.md, 'Several machines')")
  try:
    conf = json.loads(text)
    cluster, task = conf["cluster"], conf["task"]
    workers = cluster["worker"]
    kind, index = task["type"], int(task["index"])
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f"TF_CONFIG must be JSON with cluster.worker (a list of host:port) "
                     f"and task.type/task.index, got {text!r}") from e
  size = {"worker": len(workers) if isinstance(workers, list) else 0,
          "chief": len(cluster.get("chief", []))}
  if kind not in size or not 0 <= index < size[kind]:
    raise ValueError(f"TF_CONFIG: task {kind} {index} is not in the cluster "
                     f"({size['worker']} workers, {size['chief']} chief)")
  return conf


def is_chief(strategy=None):
  """True on the one process that should write shared results (always without TF_CONFIG)."""
  if strategy is None or not isinstance(
      strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return True
  resolver = strategy.cluster_resolver
  return (resolver.task_type == "chief" or
          (resolver.task_type == "worker" and resolver.task_id == 0 and
           "chief" not in resolver.cluster_spec().as_dict()))


def is_default(strategy):
  """True for the default (one-device) strategy outside any strategy's scope."""
  return not tf.distribute.has_strategy() and strategy is tf.distribute.get_strategy()


def replicate(model, strategy):
  """A copy of ``model`` whose variables live under ``strategy`` (same weights)."""
  with strategy.scope():
    clone = keras.models.clone_model(model)
    if not clone.built:
      clone.build(model.input_shape)
    clone.set_weights(model.get_weights())
  return clone


def copy_back(source, target):
  """Writes ``source``'s weights (read from the first replica) into ``target``."""
  target.set_weights(source.get_weights())
