"""FastGRNN and FastRNN cells for Keras 3 (``import keras``), on any backend.

The same cells as ``tf_fastgrnn.cells`` — constructor arguments, weight names and shapes,
equations, activations — written with ``keras.ops`` only, so they run on the
TensorFlow, JAX and PyTorch backends. Keras 3 and tf_keras (Keras 2, which TF-MOT's
pruning and our QAT need) are different class hierarchies: a cell of one inside an RNN
of the other would build and train **without its weights**, silently. So each side
refuses the other in one line, naming the class to use instead.

Usage::

    import keras
    from tf_fastgrnn import keras3
    model = keras.Sequential([keras.Input((128, 6)), keras3.FastGRNN(32, w_rank=4),
                              keras.layers.Dense(6)])

References:
  Kusupati et al., "FastGRNN: A Fast, Accurate, Stable and Tiny Kilobyte Sized Gated
  Recurrent Neural Network", NeurIPS 2018, equations (2)-(4).
"""

import keras
from keras import ops

from tf_fastgrnn._crossing import refuse_foreign_keras

__all__ = ["FastGRNNCell", "FastRNNCell", "FastGRNN", "FastRNN", "ACTIVATIONS"]


def _quantized_sigmoid(x):
  return ops.clip((x + 1.0) * 0.5, 0.0, 1.0)


def _quantized_tanh(x):
  return ops.clip(x, -1.0, 1.0)


# The names of tf_fastgrnn.activations, with the same functions in keras.ops.
ACTIVATIONS = {
    "sigmoid": ops.sigmoid,
    "tanh": ops.tanh,
    "relu": ops.relu,
    "quantized_sigmoid": _quantized_sigmoid,
    "quantized_tanh": _quantized_tanh,
}

def _check_rank(name, rank):
  if rank is None:
    return None
  if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
    raise ValueError(f"{name} must be None (full rank) or a positive int, got {rank!r}")
  return rank


def _activation(name, argument):
  if not isinstance(name, str) or name not in ACTIVATIONS:
    raise ValueError(f"{argument} must be one of {sorted(ACTIVATIONS)}, got {name!r}")
  return ACTIVATIONS[name]


class _FastCellBase(keras.layers.Layer):
  """W/U matrices (full or low-rank), their validation and config."""

  _TF_KERAS_TWIN = None  # the tf_keras class's public name, for the refusal

  def __init__(self, units, w_rank=None, u_rank=None, update_activation="tanh",
               kernel_initializer="glorot_uniform",
               recurrent_initializer="orthogonal", **kwargs):
    super().__init__(**kwargs)
    if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
      raise ValueError(f"units must be a positive int, got {units!r}")
    if u_rank is not None and _check_rank("u_rank", u_rank) > units:
      raise ValueError(
          f"u_rank must be a positive int not above units={units}, got {u_rank}")
    self.units = units
    self.w_rank = _check_rank("w_rank", w_rank)
    self.u_rank = u_rank
    self.update_activation = update_activation
    self._update_fn = _activation(update_activation, "update_activation")
    self.kernel_initializer = keras.initializers.get(kernel_initializer)
    self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
    self.state_size = units
    self.output_size = units

  def _refuse_tf_keras(self):
    refuse_foreign_keras(self, "tf_keras.", f"tf_fastgrnn.{self._TF_KERAS_TWIN}")

  def _add_matrix(self, name, rows, cols, rank, initializer):
    def fresh():  # a fresh initializer per factor: one unseeded instance repeats itself
      return initializer.__class__.from_config(initializer.get_config())
    if rank is None:
      return [self.add_weight(name=name, shape=(rows, cols), initializer=fresh())]
    return [self.add_weight(name=f"{name}1", shape=(rows, rank), initializer=fresh()),
            self.add_weight(name=f"{name}2", shape=(rank, cols), initializer=fresh())]

  def build(self, input_shape):
    self._refuse_tf_keras()
    input_dim = input_shape[-1]
    if input_dim is None:
      raise ValueError(f"{self.name}: the input's last dimension must be known, "
                       f"got shape {input_shape}")
    input_dim = int(input_dim)
    if self.w_rank is not None and self.w_rank > min(input_dim, self.units):
      raise ValueError(
          f"w_rank must be a positive int not above min(input_dim, units)="
          f"{min(input_dim, self.units)}, got {self.w_rank}")
    self.input_dim = input_dim
    self.w_factors = self._add_matrix("W", input_dim, self.units, self.w_rank,
                                      self.kernel_initializer)
    self.u_factors = self._add_matrix("U", self.units, self.units, self.u_rank,
                                      self.recurrent_initializer)

  @staticmethod
  def _apply(x, factors):
    for f in factors:
      x = ops.matmul(x, f)
    return x

  def matrices(self):
    """Returns ``{"W": W, "U": U}``, products of the factors where low-rank."""
    return {"W": self._apply(self.w_factors[0], self.w_factors[1:]),
            "U": self._apply(self.u_factors[0], self.u_factors[1:])}

  def pre_activation(self, inputs, state):
    """``x_t @ W + h_{t-1} @ U``, the sum the gate and the update share."""
    return self._apply(inputs, self.w_factors) + self._apply(state, self.u_factors)

  def get_initial_state(self, batch_size=None, **kwargs):
    # tf_keras's RNN calls this first (with inputs= and dtype=): refuse it here.
    self._refuse_tf_keras()
    if kwargs:
      raise TypeError(f"get_initial_state() got unexpected arguments {sorted(kwargs)}")
    return [ops.zeros((batch_size, self.units), dtype=self.compute_dtype)]

  def get_config(self):
    config = super().get_config()
    config.update({
        "units": self.units,
        "w_rank": self.w_rank,
        "u_rank": self.u_rank,
        "update_activation": self.update_activation,
        "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        "recurrent_initializer": keras.initializers.serialize(
            self.recurrent_initializer),
    })
    return config


@keras.saving.register_keras_serializable(package="tf_fastgrnn")
class FastGRNNCell(_FastCellBase):
  """FastGRNN cell for Keras 3: a gated RNN whose gate and update share W and U.

  ``z_t = gate(x_t W + h_{t-1} U + b_z)``,
  ``h~_t = update(x_t W + h_{t-1} U + b_h)``,
  ``h_t = (sigmoid(zeta) (1 - z_t) + sigmoid(nu)) * h~_t + z_t * h_{t-1}``.

  Args: as ``tf_fastgrnn.FastGRNNCell``: ``units``, ``w_rank``, ``u_rank``,
    ``gate_activation``, ``update_activation``, ``zeta_init``, ``nu_init``,
    ``kernel_initializer``, ``recurrent_initializer``, ``bias_initializer``, and Keras
    layer arguments.

  Example:
    >>> layer = keras.layers.RNN(FastGRNNCell(16, w_rank=2))
    >>> tuple(layer(ops.zeros((2, 5, 3))).shape)
    (2, 16)

  References:
    Kusupati et al., NeurIPS 2018, equations (3)-(4).
  """

  _TF_KERAS_TWIN = "FastGRNNCell"

  def __init__(self, units, w_rank=None, u_rank=None, gate_activation="sigmoid",
               update_activation="tanh", zeta_init=1.0, nu_init=-4.0,
               kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
               bias_initializer="ones", **kwargs):
    super().__init__(units, w_rank=w_rank, u_rank=u_rank,
                     update_activation=update_activation,
                     kernel_initializer=kernel_initializer,
                     recurrent_initializer=recurrent_initializer, **kwargs)
    self.gate_activation = gate_activation
    self._gate_fn = _activation(gate_activation, "gate_activation")
    self.zeta_init = float(zeta_init)
    self.nu_init = float(nu_init)
    self.bias_initializer = keras.initializers.get(bias_initializer)

  def build(self, input_shape):
    super().build(input_shape)
    self.bias_gate = self.add_weight(name="bias_gate", shape=(self.units,),
                                     initializer=self.bias_initializer)
    self.bias_update = self.add_weight(name="bias_update", shape=(self.units,),
                                       initializer=self.bias_initializer)
    self.zeta = self.add_weight(name="zeta", shape=(1,),
                                initializer=keras.initializers.Constant(self.zeta_init))
    self.nu = self.add_weight(name="nu", shape=(1,),
                              initializer=keras.initializers.Constant(self.nu_init))

  def call(self, inputs, states, training=None):
    self._refuse_tf_keras()
    h = states[0] if isinstance(states, (list, tuple)) else states
    pre = self.pre_activation(inputs, h)
    z = self._gate_fn(pre + self.bias_gate)
    h_tilde = self._update_fn(pre + self.bias_update)
    zeta = ops.sigmoid(self.zeta)
    nu = ops.sigmoid(self.nu)
    new_h = (zeta * (1.0 - z) + nu) * h_tilde + z * h
    return new_h, [new_h]

  def get_config(self):
    config = super().get_config()
    config.update({
        "gate_activation": self.gate_activation,
        "zeta_init": self.zeta_init,
        "nu_init": self.nu_init,
        "bias_initializer": keras.initializers.serialize(self.bias_initializer),
    })
    return config


@keras.saving.register_keras_serializable(package="tf_fastgrnn")
class FastRNNCell(_FastCellBase):
  """FastRNN cell for Keras 3: a residual RNN with two trainable scalar weights.

  ``h~_t = update(x_t W + h_{t-1} U + b)``,
  ``h_t = sigmoid(alpha) * h~_t + sigmoid(beta) * h_{t-1}``.

  Args: as ``tf_fastgrnn.FastRNNCell``: ``units``, ``w_rank``, ``u_rank``,
    ``update_activation``, ``alpha_init``, ``beta_init``, ``kernel_initializer``,
    ``recurrent_initializer``, ``bias_initializer``, and Keras layer arguments.

  Example:
    >>> layer = keras.layers.RNN(FastRNNCell(8))
    >>> tuple(layer(ops.zeros((2, 5, 3))).shape)
    (2, 8)

  References:
    Kusupati et al., NeurIPS 2018, equation (2).
  """

  _TF_KERAS_TWIN = "FastRNNCell"

  def __init__(self, units, w_rank=None, u_rank=None, update_activation="tanh",
               alpha_init=-3.0, beta_init=3.0, kernel_initializer="glorot_uniform",
               recurrent_initializer="orthogonal", bias_initializer="zeros", **kwargs):
    super().__init__(units, w_rank=w_rank, u_rank=u_rank,
                     update_activation=update_activation,
                     kernel_initializer=kernel_initializer,
                     recurrent_initializer=recurrent_initializer, **kwargs)
    self.alpha_init = float(alpha_init)
    self.beta_init = float(beta_init)
    self.bias_initializer = keras.initializers.get(bias_initializer)

  def build(self, input_shape):
    super().build(input_shape)
    self.bias_update = self.add_weight(name="bias_update", shape=(self.units,),
                                       initializer=self.bias_initializer)
    self.alpha = self.add_weight(
        name="alpha", shape=(1,), initializer=keras.initializers.Constant(self.alpha_init))
    self.beta = self.add_weight(
        name="beta", shape=(1,), initializer=keras.initializers.Constant(self.beta_init))

  def call(self, inputs, states, training=None):
    self._refuse_tf_keras()
    h = states[0] if isinstance(states, (list, tuple)) else states
    h_tilde = self._update_fn(self.pre_activation(inputs, h) + self.bias_update)
    new_h = ops.sigmoid(self.alpha) * h_tilde + ops.sigmoid(self.beta) * h
    return new_h, [new_h]

  def get_config(self):
    config = super().get_config()
    config.update({
        "alpha_init": self.alpha_init,
        "beta_init": self.beta_init,
        "bias_initializer": keras.initializers.serialize(self.bias_initializer),
    })
    return config


_RNN_ARGS = ("return_sequences", "return_state", "go_backwards", "stateful", "unroll",
             "name")


def _rnn(cell_cls, units, kwargs):
  rnn_kwargs = {k: kwargs.pop(k) for k in _RNN_ARGS if k in kwargs}
  return keras.layers.RNN(cell_cls(units, **kwargs), **rnn_kwargs)


def FastGRNN(units, **kwargs):  # pylint: disable=invalid-name
  """A plain Keras 3 ``keras.layers.RNN`` around a ``FastGRNNCell``.

  Args:
    units: hidden size.
    **kwargs: ``FastGRNNCell`` arguments and the RNN ones: ``return_sequences``,
      ``return_state``, ``go_backwards``, ``stateful``, ``unroll``, ``name``.

  Returns:
    A ``keras.layers.RNN``.
  """
  return _rnn(FastGRNNCell, units, dict(kwargs))


def FastRNN(units, **kwargs):  # pylint: disable=invalid-name
  """A plain Keras 3 ``keras.layers.RNN`` around a ``FastRNNCell``; as ``FastGRNN``."""
  return _rnn(FastRNNCell, units, dict(kwargs))
