"""The check that keeps Keras 3 and tf_keras (Keras 2) objects apart.

Kept free of any Keras import: both the tf_keras cells and the Keras 3 cells use it.
"""

import sys

__all__ = ["refuse_foreign_keras"]

# How far up the call stack the crossing check looks for the RNN that drives a cell.
_STACK_DEPTH = 40


def refuse_foreign_keras(layer, foreign_prefix, use_instead, depth=_STACK_DEPTH):
  """Raises TypeError if ``layer`` is being built or called by the other Keras.

  A cell's ``build`` and ``call`` are driven by its RNN layer; the module of that caller
  tells which Keras it is (Keras 3 lives in ``keras.src``, tf_keras in
  ``tf_keras.src``). Tracing runs this once per graph; eagerly it walks a few frames.

  Args:
    layer: the cell being built or called.
    foreign_prefix: module prefix of the Keras this cell must not be used by.
    use_instead: the class a user of that Keras should take, for the message.
    depth: how many frames to look at, from the caller of the caller of this function.
  """
  frame = sys._getframe(2)  # pylint: disable=protected-access
  for _ in range(depth):
    if frame is None:
      return
    module = frame.f_globals.get("__name__", "")
    if module.startswith(foreign_prefix):
      keras_name = "Keras 3" if foreign_prefix == "keras." else "tf_keras (Keras 2)"
      raise TypeError(
          f"{type(layer).__module__}.{type(layer).__name__} cannot run inside a "
          f"{keras_name} layer ({module}): its weights would not be tracked or trained; "
          f"use {use_instead} there")
    frame = frame.f_back
