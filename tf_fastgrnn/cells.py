"""FastRNN and FastGRNN cells (Kusupati et al., NeurIPS 2018) as tf_keras RNN cells.

Conventions (Keras', not the paper's): inputs are row vectors, so the paper's ``W x_t``
is ``x_t @ W`` with ``W`` of shape ``[input_dim, units]``, and ``U h`` is ``h @ U`` with
``U`` of shape ``[units, units]``. A low-rank ``W`` is stored as ``W1 [input_dim, w_rank]``
and ``W2 [w_rank, units]`` with ``W = W1 @ W2``; likewise ``U = U1 @ U2``.

Weight names (other tools find weights by them): ``W`` or ``W1``/``W2``, ``U`` or
``U1``/``U2``, ``bias_gate``, ``bias_update``, ``zeta``, ``nu`` (FastGRNN), ``alpha``,
``beta`` (FastRNN). The scalars are stored before the sigmoid, as in the paper.
"""

import tensorflow as tf
import tensorflow_model_optimization as tfmot

from tf_fastgrnn import activations
from tf_fastgrnn._crossing import refuse_foreign_keras
from tf_fastgrnn._keras import keras

__all__ = ["FAST_CELLS", "FastGRNNCell", "FastRNNCell", "FastGRNN", "FastRNN"]


def _check_rank(name, rank):
  if rank is None:
    return None
  if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
    raise ValueError(f"{name} must be None (full rank) or a positive int, got {rank!r}")
  return rank


class _FastCellBase(keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer):
  """W/U matrices (full or low-rank), their validation, pruning and config."""

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
    self._update_fn = activations.get(update_activation, "update_activation")
    self.kernel_initializer = keras.initializers.get(kernel_initializer)
    self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
    self.state_size = units
    self.output_size = units

  def _add_matrix(self, name, rows, cols, rank, initializer):
    """Adds ``name`` [rows, cols], or ``name1`` [rows, rank] and ``name2`` [rank, cols]."""
    # A fresh initializer per factor: one unseeded instance called twice gives both
    # factors the same random stream.
    def fresh():
      return initializer.__class__.from_config(initializer.get_config())
    if rank is None:
      return [self.add_weight(name=name, shape=(rows, cols), initializer=fresh())]
    return [self.add_weight(name=f"{name}1", shape=(rows, rank), initializer=fresh()),
            self.add_weight(name=f"{name}2", shape=(rank, cols), initializer=fresh())]

  _KERAS3_TWIN = None  # the Keras 3 class's name, for the refusal

  def _refuse_keras3(self, depth=40):
    refuse_foreign_keras(self, "keras.", f"tf_fastgrnn.keras3.{self._KERAS3_TWIN}",
                         depth=depth)

  def __dir__(self):
    # Keras 3's RNN (and StackedRNNCells) constructor asks dir(cell) for "call": the
    # one moment it touches a foreign cell before training it without its weights.
    self._refuse_keras3(depth=2)  # __dir__ itself, then its caller
    return super().__dir__()

  def build(self, input_shape):
    self._refuse_keras3()
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
    self.built = True

  @staticmethod
  def _apply(x, factors):
    for f in factors:
      x = tf.matmul(x, f)
    return x

  def matrices(self):
    """Returns ``{"W": W, "U": U}``, products of the factors where low-rank."""
    return {"W": self._apply(self.w_factors[0], self.w_factors[1:]),
            "U": self._apply(self.u_factors[0], self.u_factors[1:])}

  def pre_activation(self, inputs, state):
    """``x_t @ W + h_{t-1} @ U``, the sum the gate and the update share."""
    return self._apply(inputs, self.w_factors) + self._apply(state, self.u_factors)

  def get_prunable_weights(self):
    # Only W and U (or their factors): biases and the scalars stay dense (EdgeML does
    # the same).
    return list(self.w_factors) + list(self.u_factors)

  def get_initial_state(self, inputs=None, batch_size=None, dtype=None):
    if batch_size is None:
      batch_size = tf.shape(inputs)[0]
    return tf.zeros((batch_size, self.units), dtype=dtype or self.compute_dtype)

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


@keras.utils.register_keras_serializable(package="tf_fastgrnn")
class FastGRNNCell(_FastCellBase):
  """FastGRNN cell: a gated RNN whose gate and update share W and U.

  ``z_t = gate(x_t W + h_{t-1} U + b_z)``,
  ``h~_t = update(x_t W + h_{t-1} U + b_h)``,
  ``h_t = (sigmoid(zeta) (1 - z_t) + sigmoid(nu)) * h~_t + z_t * h_{t-1}``.

  Args:
    units: hidden size H.
    w_rank: rank of W (``W = W1 @ W2``); None for a full ``[input_dim, H]`` W.
    u_rank: rank of U (``U = U1 @ U2``); None for a full ``[H, H]`` U.
    gate_activation: name from ``tf_fastgrnn.activations.ACTIVATIONS``.
    update_activation: likewise.
    zeta_init: initial pre-sigmoid zeta (paper: 1.0).
    nu_init: initial pre-sigmoid nu (paper: -4.0).
    kernel_initializer: initializer of W or its factors.
    recurrent_initializer: initializer of U or its factors.
    bias_initializer: initializer of ``bias_gate`` and ``bias_update`` (paper: ones).
    **kwargs: Keras layer arguments (name, dtype, ...).

  Example:
    >>> layer = tf_fastgrnn._keras.keras.layers.RNN(FastGRNNCell(16, w_rank=2))
    >>> layer(tf.zeros((2, 5, 3))).shape
    TensorShape([2, 16])

  References:
    Kusupati et al., "FastGRNN: A Fast, Accurate, Stable and Tiny Kilobyte Sized Gated
    Recurrent Neural Network", NeurIPS 2018, equations (3)-(4).
  """

  _KERAS3_TWIN = "FastGRNNCell"

  def __init__(self, units, w_rank=None, u_rank=None, gate_activation="sigmoid",
               update_activation="tanh", zeta_init=1.0, nu_init=-4.0,
               kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
               bias_initializer="ones", **kwargs):
    super().__init__(units, w_rank=w_rank, u_rank=u_rank,
                     update_activation=update_activation,
                     kernel_initializer=kernel_initializer,
                     recurrent_initializer=recurrent_initializer, **kwargs)
    self.gate_activation = gate_activation
    self._gate_fn = activations.get(gate_activation, "gate_activation")
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
    self._refuse_keras3()
    h = states[0] if isinstance(states, (list, tuple)) else states
    pre = self.pre_activation(inputs, h)
    z = self._gate_fn(pre + self.bias_gate)
    h_tilde = self._update_fn(pre + self.bias_update)
    zeta = tf.math.sigmoid(self.zeta)
    nu = tf.math.sigmoid(self.nu)
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


@keras.utils.register_keras_serializable(package="tf_fastgrnn")
class FastRNNCell(_FastCellBase):
  """FastRNN cell: a residual RNN with two trainable scalar weights.

  ``h~_t = update(x_t W + h_{t-1} U + b)``,
  ``h_t = sigmoid(alpha) * h~_t + sigmoid(beta) * h_{t-1}``.

  Args:
    units: hidden size H.
    w_rank: rank of W (``W = W1 @ W2``); None for a full W.
    u_rank: rank of U (``U = U1 @ U2``); None for a full U.
    update_activation: name from ``tf_fastgrnn.activations.ACTIVATIONS``.
    alpha_init: initial pre-sigmoid alpha (paper: -3.0).
    beta_init: initial pre-sigmoid beta (paper: 3.0).
    kernel_initializer: initializer of W or its factors.
    recurrent_initializer: initializer of U or its factors.
    bias_initializer: initializer of ``bias_update``.
    **kwargs: Keras layer arguments.

  Example:
    >>> layer = tf_fastgrnn._keras.keras.layers.RNN(FastRNNCell(8))
    >>> layer(tf.zeros((2, 5, 3))).shape
    TensorShape([2, 8])

  References:
    Kusupati et al., NeurIPS 2018, equation (2).
  """

  _KERAS3_TWIN = "FastRNNCell"

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
    self._refuse_keras3()
    h = states[0] if isinstance(states, (list, tuple)) else states
    h_tilde = self._update_fn(self.pre_activation(inputs, h) + self.bias_update)
    new_h = tf.math.sigmoid(self.alpha) * h_tilde + tf.math.sigmoid(self.beta) * h
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
  """A plain ``keras.layers.RNN`` around a ``FastGRNNCell``.

  It is a function, not an ``RNN`` subclass, because TF-MOT's pruning registry only
  recognises the plain ``RNN`` class.

  Args:
    units: hidden size.
    **kwargs: ``FastGRNNCell`` arguments (``w_rank``, ``u_rank``, activations, inits)
      and the RNN ones: ``return_sequences``, ``return_state``, ``go_backwards``,
      ``stateful``, ``unroll``, ``name``.

  Returns:
    A ``keras.layers.RNN``.

  Example:
    >>> model = keras.Sequential([keras.Input((128, 6)), FastGRNN(32, w_rank=4),
    ...                           keras.layers.Dense(6)])
  """
  return _rnn(FastGRNNCell, units, dict(kwargs))


def FastRNN(units, **kwargs):  # pylint: disable=invalid-name
  """A plain ``keras.layers.RNN`` around a ``FastRNNCell``; arguments as ``FastGRNN``."""
  return _rnn(FastRNNCell, units, dict(kwargs))


# The tf_fastgrnn cell types (their QAT versions are subclasses).
FAST_CELLS = (FastGRNNCell, FastRNNCell)

# tf_keras' legacy (.h5) loader looks nested objects such as an RNN's cell up by their
# bare class name, not by the "tf_fastgrnn>" registered name the .keras format uses, so
# the cells are also known under their bare names: both formats load with no
# custom_objects.
keras.utils.get_custom_objects().update(
    {"FastGRNNCell": FastGRNNCell, "FastRNNCell": FastRNNCell})
