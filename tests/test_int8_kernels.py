"""int8_kernels computes TFLM's integers in a graph (tf.function) as it does eagerly.

Keras runs QAT models in graphs (``predict``, ``stepping.run_steps``), where Grappler's
constant folding turns a division by a constant into a multiplication by its reciprocal.
The values below are the default har6 run's (seed 0): the U1 column whose scale came out
one float32 step low in the graph, and the FULLY_CONNECTED output it moved by one LSB.
"""

import numpy as np
import tensorflow as tf

from tf_fastgrnn import fixed_point
from tf_fastgrnn import int8_kernels as k8

# Seed 0, hu1 = FULLY_CONNECTED(h, U1), output channel 10: max |w| of the column, the
# state grid (the FC's input) and the hu1 grid, as the flatbuffer stores them.
_COLUMN_MAX = np.float32(0.72852826)
_STATE_GRID = (0.012233785353600979, -59)
_HU1_GRID = (0.04940836876630783, -4)


def _in_graph(fn, *args):
  return tf.function(fn, autograph=False)(*args)


def test_weight_scale_is_the_float32_quotient_in_a_graph():
  kernel = tf.constant([[_COLUMN_MAX], [-0.25]], tf.float32)
  want = np.float32(_COLUMN_MAX) / np.float32(127)  # what the converter stores
  assert float(want) == 0.005736443214118481
  assert k8.weight_scales(kernel).numpy()[0] == want
  # The reciprocal's product, 0.005736442748457193, is one float32 step below.
  assert _in_graph(k8.weight_scales, kernel).numpy()[0] == want


def test_fully_connected_in_a_graph_rounds_as_tflm():
  """acc = 65827 on the seed-0 multiplier: 93.4990 LSB, which TFLM's two roundings take
  to 94 (90 with the zero point), as TFLM gave; with the scale one step low, 89."""
  x_grid = (k8.grid(*_STATE_GRID)[0], tf.constant(-128, tf.int64))  # x - zx = x + 128
  out_grid = k8.grid(*_HU1_GRID)
  kernel = tf.constant([[_COLUMN_MAX], [_COLUMN_MAX], [0.04]], tf.float32)  # int8 127, 127, 7
  x_q = tf.constant([[127, 127, 23]], tf.int64)  # 255·127 + 255·127 + 151·7 = 65827
  real = _STATE_GRID[0] * float(np.float32(_COLUMN_MAX) / np.float32(127)) / _HU1_GRID[0]
  multiplier, shift = fixed_point.quantize_multiplier(real)
  assert (multiplier, shift) == (1561718899, -9)
  assert fixed_point.multiply_by_quantized_multiplier(65827, multiplier, shift) == 94

  def fc(x):
    return k8.fully_connected(x, x_grid, kernel, None, out_grid)

  assert fc(x_q).numpy().item() == 90
  assert _in_graph(fc, x_q).numpy().item() == 90


def test_constant_grid_is_the_float32_quotient_in_a_graph():
  """An int8 constant (a bias) on [-0.5, 1]: scale 1.5 / 255 in float32, 0.005882353,
  as the converter quantizes it; the reciprocal's product is one step above."""
  values = tf.constant([-0.5, 0.25, 1.0], tf.float32)
  want = np.float32(1.5) / np.float32(255)
  assert want != np.float32(1.5) * np.float32(1 / 255)
  for scale, zero_point in (k8.constant_grid(values), _in_graph(k8.constant_grid, values)):
    assert scale.numpy() == float(want)
    assert zero_point.numpy() == -43  # round(0.5 / scale) - 128 = 85 - 128
