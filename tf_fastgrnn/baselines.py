"""Baseline cells the benchmarks compare FastGRNN with.

Keras' own ``LSTM``/``GRU`` are used as they are; this module adds the low-rank LSTM of
Lu et al. (2016), "Learning Compact Recurrent Neural Networks": the four gates' input and
recurrent matrices are factored, ``W = W1 @ W2`` with ``W2`` of shape ``[rank, 4H]``
(one projection shared by the gates), likewise ``U``.
"""

import tensorflow as tf

from tf_fastgrnn._keras import keras

__all__ = ["LowRankLSTMCell"]


@keras.utils.register_keras_serializable(package="tf_fastgrnn")
class LowRankLSTMCell(keras.layers.Layer):
  """LSTM cell with low-rank input and recurrent matrices (gate order i, f, c, o).

  ``[i, f, g, o] = x W1 W2 + h U1 U2 + b``; ``c' = σ(f) c + σ(i) tanh(g)``;
  ``h' = σ(o) tanh(c')``.

  Args:
    units: hidden size H.
    w_rank: rank of the ``[input_dim, 4H]`` input matrix.
    u_rank: rank of the ``[H, 4H]`` recurrent matrix.
    **kwargs: Keras layer arguments.

  References:
    Lu, Sindhwani, Sainath, "Learning Compact Recurrent Neural Networks", ICASSP 2016.
  """

  def __init__(self, units, w_rank, u_rank, **kwargs):
    super().__init__(**kwargs)
    for name, value in (("units", units), ("w_rank", w_rank), ("u_rank", u_rank)):
      if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    if u_rank > units:
      raise ValueError(f"u_rank must not exceed units={units}, got {u_rank}")
    self.units, self.w_rank, self.u_rank = units, w_rank, u_rank
    self.state_size = [units, units]
    self.output_size = units

  def build(self, input_shape):
    d, h = int(input_shape[-1]), self.units
    if self.w_rank > d:
      raise ValueError(f"w_rank must not exceed input_dim={d}, got {self.w_rank}")
    glorot = keras.initializers.GlorotUniform
    self.W1 = self.add_weight(name="W1", shape=(d, self.w_rank), initializer=glorot())
    self.W2 = self.add_weight(name="W2", shape=(self.w_rank, 4 * h), initializer=glorot())
    self.U1 = self.add_weight(name="U1", shape=(h, self.u_rank), initializer=glorot())
    self.U2 = self.add_weight(name="U2", shape=(self.u_rank, 4 * h), initializer=glorot())
    # Forget-gate bias 1 (Jozefowicz et al.), as Keras' LSTM unit_forget_bias.
    self.bias = self.add_weight(
        name="bias", shape=(4 * h,),
        initializer=keras.initializers.Constant([0.0] * h + [1.0] * h + [0.0] * 2 * h))
    self.built = True

  def call(self, inputs, states, training=None):
    h, c = states
    z = inputs @ self.W1 @ self.W2 + h @ self.U1 @ self.U2 + self.bias
    i, f, g, o = tf.split(z, 4, axis=-1)
    c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
    h = tf.sigmoid(o) * tf.tanh(c)
    return h, [h, c]

  def get_config(self):
    config = super().get_config()
    config.update(units=self.units, w_rank=self.w_rank, u_rank=self.u_rank)
    return config


keras.utils.get_custom_objects()["LowRankLSTMCell"] = LowRankLSTMCell
