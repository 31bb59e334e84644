"""Gate and update non-linearities the cells accept, by name.

Besides Keras' smooth functions, the FastGRNN authors' MCU code uses piecewise-linear
"quantized" versions that need no lookup table on an integer device (microsoft/EdgeML,
``gen_non_linearity``):

- ``quantized_sigmoid(x) = clip((x + 1) / 2, 0, 1)``
- ``quantized_tanh(x) = clip(x, -1, 1)``
"""

import tensorflow as tf

__all__ = ["ACTIVATIONS", "get", "quantized_sigmoid", "quantized_tanh"]


def quantized_sigmoid(x):
  """Piecewise-linear sigmoid: ``clip((x + 1) / 2, 0, 1)``."""
  return tf.clip_by_value((x + 1.0) * 0.5, 0.0, 1.0)


def quantized_tanh(x):
  """Piecewise-linear tanh: ``clip(x, -1, 1)``."""
  return tf.clip_by_value(x, -1.0, 1.0)


ACTIVATIONS = {
    "sigmoid": tf.math.sigmoid,
    "tanh": tf.math.tanh,
    "relu": tf.nn.relu,
    "quantized_sigmoid": quantized_sigmoid,
    "quantized_tanh": quantized_tanh,
}


def get(name, argument="activation"):
  """Returns the function registered under ``name``.

  Args:
    name: one of ``ACTIVATIONS``' keys.
    argument: the constructor argument the name came from, for the error message.

  Raises:
    ValueError: ``name`` is not a known activation.
  """
  if not isinstance(name, str) or name not in ACTIVATIONS:
    raise ValueError(
        f"{argument} must be one of {sorted(ACTIVATIONS)}, got {name!r}")
  return ACTIVATIONS[name]
