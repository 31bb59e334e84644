"""Quantization-aware training for tf_fastgrnn models, matched to the int8 export.

TF-MOT's default QAT registry has no RNN support, so the cells get their own fake-quant,
placed where the int8 step model (``export.convert_step_model``) rounds and set to the
grids it uses:

- W, U (or their factors) and the classifier kernel: symmetric int8, per output channel,
  narrow range (scale ``max|w| / 127``): what the TFLite converter does to FULLY_CONNECTED
  weights (checked on the exported model: per-channel scales, zero points 0).
- Gate output with ``sigmoid``: TFLite's LOGISTIC output grid (scale 1/256, zero point
  -128); update output with ``tanh``: TANH's grid (scale 1/128, zero point 0).
- The state h: one fixed grid, ``STATE_SCALE = 1/128`` with zero point 0 (range
  ``[-1, 127/128]``), used on h_t in Keras and forced on both ``h`` and ``h_next`` of the
  exported step model, so the device carries the state by a copy and Keras QAT sees the
  same state values as TFLM.
- Pruned zeros stay zero: each matrix keeps the float model's support as a fixed mask.

Intermediate sums (``x W``, ``+ h U``, ``+ b``) and the logits are left to the
converter's calibration; their rounding is the remaining Keras-QAT ↔ TFLM difference the
numerics diff reports.
"""

import contextlib

import numpy as np
import tensorflow as tf

from tf_fastgrnn import cells
from tf_fastgrnn._keras import keras

__all__ = ["STATE_SCALE", "QuantizedDense", "QuantizedFastGRNNCell", "QuantizedFastRNNCell",
           "float_twin", "is_qat_model", "quantize_model", "quantize_scope"]

STATE_SCALE = 1.0 / 128.0
STATE_ZERO_POINT = 0


def fake_quant_weight(w):
  """Symmetric per-output-channel int8 (narrow range), as the converter stores weights."""
  m = tf.reduce_max(tf.abs(w), axis=list(range(len(w.shape) - 1)))
  m = tf.maximum(m, 1e-8)
  return tf.quantization.fake_quant_with_min_max_vars_per_channel(
      w, -m, m, num_bits=8, narrow_range=True)


def fake_quant_state(h):
  return tf.quantization.fake_quant_with_min_max_args(h, -1.0, 127.0 / 128.0, num_bits=8)


def _fake_quant_activation(name, value):
  if name == "sigmoid":
    return tf.quantization.fake_quant_with_min_max_args(value, 0.0, 255.0 / 256.0, num_bits=8)
  if name == "tanh":
    return fake_quant_state(value)  # TANH's output grid is the state grid
  return value


class _QATMixin:
  """Masks and fake-quantized factors for a tf_fastgrnn cell."""

  def _add_masks(self):
    self.w_masks = [self.add_weight(name=f"{_short(w)}_mask", shape=w.shape,
                                    initializer="ones", trainable=False)
                    for w in self.w_factors]
    self.u_masks = [self.add_weight(name=f"{_short(u)}_mask", shape=u.shape,
                                    initializer="ones", trainable=False)
                    for u in self.u_factors]

  def _quantized(self, factors, masks):
    return [fake_quant_weight(f * m) for f, m in zip(factors, masks)]

  def pre_activation(self, inputs, state):
    return (self._apply(inputs, self._quantized(self.w_factors, self.w_masks)) +
            self._apply(state, self._quantized(self.u_factors, self.u_masks)))


def _short(var):
  return var.name.split("/")[-1].split(":")[0]


@keras.utils.register_keras_serializable(package="tf_fastgrnn")
class QuantizedFastGRNNCell(_QATMixin, cells.FastGRNNCell):
  """``FastGRNNCell`` with the fake-quant of the int8 export (see the module doc)."""

  def build(self, input_shape):
    super().build(input_shape)
    self._add_masks()

  def call(self, inputs, states, training=None):
    h = states[0] if isinstance(states, (list, tuple)) else states
    pre = self.pre_activation(inputs, h)
    z = _fake_quant_activation(self.gate_activation, self._gate_fn(pre + self.bias_gate))
    h_tilde = _fake_quant_activation(self.update_activation,
                                     self._update_fn(pre + self.bias_update))
    zeta, nu = tf.math.sigmoid(self.zeta), tf.math.sigmoid(self.nu)
    new_h = fake_quant_state((zeta * (1.0 - z) + nu) * h_tilde + z * h)
    return new_h, [new_h]


@keras.utils.register_keras_serializable(package="tf_fastgrnn")
class QuantizedFastRNNCell(_QATMixin, cells.FastRNNCell):
  """``FastRNNCell`` with the fake-quant of the int8 export (see the module doc)."""

  def build(self, input_shape):
    super().build(input_shape)
    self._add_masks()

  def call(self, inputs, states, training=None):
    h = states[0] if isinstance(states, (list, tuple)) else states
    h_tilde = _fake_quant_activation(
        self.update_activation,
        self._update_fn(self.pre_activation(inputs, h) + self.bias_update))
    new_h = fake_quant_state(tf.math.sigmoid(self.alpha) * h_tilde +
                             tf.math.sigmoid(self.beta) * h)
    return new_h, [new_h]


@keras.utils.register_keras_serializable(package="tf_fastgrnn")
class QuantizedDense(keras.layers.Dense):
  """``Dense`` whose kernel is fake-quantized per output channel, as exported."""

  def call(self, inputs):
    out = tf.matmul(inputs, fake_quant_weight(self.kernel))
    if self.use_bias:
      out = out + self.bias
    return self.activation(out)


_QUANTIZED = {cells.FastGRNNCell: QuantizedFastGRNNCell,
              cells.FastRNNCell: QuantizedFastRNNCell}
_CUSTOM_OBJECTS = {c.__name__: c for c in (QuantizedFastGRNNCell, QuantizedFastRNNCell,
                                           QuantizedDense)}
keras.utils.get_custom_objects().update(_CUSTOM_OBJECTS)  # the .h5 loader's bare names


def is_qat_model(model):
  """True when ``model``'s recurrent layer has a quantized tf_fastgrnn cell."""
  try:
    cell = getattr(model.get_layer("rnn"), "cell", None)
  except ValueError:
    return False
  return isinstance(cell, _QATMixin)


def quantize_model(float_model):
  """The QAT twin of a float ``sequence_classifier`` model, weights and support copied.

  Args:
    float_model: ``Input → RNN(FastGRNNCell | FastRNNCell) 'rnn' → Dense 'logits'``,
      stripped of pruning wrappers.

  Returns:
    A new model with the same inputs and outputs; train it with ``training.fit``.

  Raises:
    ValueError: the model has no tf_fastgrnn cell, or not that layout.
  """
  try:
    rnn, dense = float_model.get_layer("rnn"), float_model.get_layer("logits")
  except ValueError:
    rnn = dense = None
  cell = getattr(rnn, "cell", None)
  if type(cell) not in _QUANTIZED:  # pylint: disable=unidiomatic-typecheck
    raise ValueError(
        f"model {float_model.name!r} has no tf_fastgrnn cell to quantize (QAT covers "
        "FastGRNN/FastRNN models built by tf_fastgrnn.models.sequence_classifier; "
        "quantize other models post-training with export.convert_step_model)")
  qcell = _QUANTIZED[type(cell)].from_config(cell.get_config())
  inputs = keras.Input(float_model.input_shape[1:], name="x")
  qrnn = keras.layers.RNN(qcell, name="rnn")
  qdense = QuantizedDense.from_config(dense.get_config())
  model = keras.Model(inputs, qdense(qrnn(inputs)), name=f"{float_model.name}_qat")
  by_name = {_short(w): w.numpy() for w in cell.weights}
  for var in qcell.weights:
    name = _short(var)
    if name.endswith("_mask"):
      var.assign((by_name[name[:-len("_mask")]] != 0).astype(np.float32))
    else:
      var.assign(by_name[name])
  qdense.set_weights(dense.get_weights())
  return model


def float_twin(qat_model):
  """The float model with the QAT model's masked weights, for the converter.

  The converter cannot fold per-channel fake-quant on weights that it must transpose, and
  needs none: it quantizes each float weight matrix symmetrically per channel, which
  gives the same int8 values as the fake-quant (the largest magnitude maps to ±127 in
  both). The state grid is set on the exported model instead (``export``).
  """
  if not is_qat_model(qat_model):
    raise ValueError(f"{qat_model.name!r} is not a QAT model (quantize_model makes one)")
  qcell = qat_model.get_layer("rnn").cell
  base = next(b for b in type(qcell).__mro__[1:] if b in _QUANTIZED)
  cell = base.from_config(qcell.get_config())
  inputs = keras.Input(qat_model.input_shape[1:], name="x")
  dense_q = qat_model.get_layer("logits")
  dense = keras.layers.Dense.from_config(dense_q.get_config())
  model = keras.Model(inputs, dense(keras.layers.RNN(cell, name="rnn")(inputs)),
                      name=qat_model.name.replace("_qat", "") + "_int8_source")
  masks = {_short(m)[:-len("_mask")]: m.numpy() for m in qcell.w_masks + qcell.u_masks}
  values = {_short(w): w.numpy() * masks.get(_short(w), 1.0) for w in qcell.weights
            if not _short(w).endswith("_mask")}
  for var in cell.weights:
    var.assign(values[_short(var)])
  dense.set_weights(dense_q.get_weights())
  return model


@contextlib.contextmanager
def quantize_scope():
  """Scope to load QAT models saved by older code paths; current saves need none."""
  with keras.utils.custom_object_scope(_CUSTOM_OBJECTS):
    yield
