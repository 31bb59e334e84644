"""Every use of TF-MOT internals, in one place, checked against the version it was
written for.

TF-MOT's public pruning API applies one schedule to all of a layer's prunable weights;
the three-phase training prunes W and U to different sparsities, so it needs the
wrapper class (to recognise wrapped layers, as ``strip_pruning`` does) and one
``pruning_impl.Pruning`` per matrix group, installed as the wrapper's pruning object.
These are not public: a TF-MOT release other than ``TFMOT_VERSION`` may change them, so
importing this module with another version raises, naming both versions.
"""

import tensorflow as tf
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_impl
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

__all__ = ["TFMOT_VERSION", "PruneLowMagnitude", "check_version", "install_group_pruning",
           "is_pruning_wrapper"]

TFMOT_VERSION = "0.8.1"

PruneLowMagnitude = pruning_wrapper.PruneLowMagnitude


def check_version(version=None):
  """Raises ``ImportError`` unless TF-MOT is ``TFMOT_VERSION`` (or ``version`` is)."""
  version = tfmot.__version__ if version is None else version
  if version != TFMOT_VERSION:
    raise ImportError(
        f"tf_fastgrnn's pruning uses TF-MOT internals (pruning_impl.Pruning, "
        f"PruneLowMagnitude.pruning_obj) written for tensorflow-model-optimization "
        f"{TFMOT_VERSION}, found {version}: install {TFMOT_VERSION} or check "
        "tf_fastgrnn/tfmot_compat.py against the new release")


check_version()


def is_pruning_wrapper(layer):
  return isinstance(layer, PruneLowMagnitude)


class _GroupPruning:
  """A wrapper's pruning object that runs one TF-MOT ``Pruning`` per weight group.

  ``PruneLowMagnitude`` and ``UpdatePruningStep`` use only these three methods.
  """

  def __init__(self, prunings):
    self._prunings = prunings

  def conditional_mask_update(self):
    return tf.group([p.conditional_mask_update() for p in self._prunings])

  def weight_mask_op(self):
    return tf.group([p.weight_mask_op() for p in self._prunings])

  def add_pruning_summaries(self):
    for p in self._prunings:
      p.add_pruning_summaries()


def install_group_pruning(wrapper, groups):
  """Makes ``wrapper`` prune each group of its weights on its own schedule.

  Args:
    wrapper: a built ``PruneLowMagnitude`` not yet traced for training (only its next
      trace sees the change).
    groups: ``[(weight refs, pruning schedule)]``.
  """
  prunings = []
  for refs, schedule in groups:
    pruning_vars = [pv for pv in wrapper.pruning_vars if pv[0].ref() in refs]
    prunings.append(pruning_impl.Pruning(
        training_step_fn=lambda w=wrapper: w.pruning_step, pruning_vars=pruning_vars,
        pruning_schedule=schedule, block_size=wrapper.block_size,
        block_pooling_type=wrapper.block_pooling_type))
  wrapper.pruning_obj = _GroupPruning(prunings)
