"""Quantization-aware training for tf_fastgrnn models, matched to the int8 export.

TF-MOT's default QAT registry has no RNN support, so the cells get their own fake-quant,
placed where the int8 step model (``export.convert_step_model``) rounds and set to the
grids it uses:

- W, U (or their factors) and the classifier kernel: symmetric int8, per output channel,
  narrow range (scale ``max|w| / 127``): what the TFLite converter does to FULLY_CONNECTED
  weights (checked on the exported model: per-channel scales, zero points 0).
- Gate output with ``sigmoid``: TFLite's LOGISTIC output grid (scale 1/256, zero point
  -128); update output with ``tanh``: TANH's grid (scale 1/128, zero point 0).
- The state h: one grid, calibrated like the converter's (the range of the states the
  deployed model produces, zero included; FastGRNN's ``ν`` and FastRNN's ``β`` let h
  leave ``[-1, 1]``, and a fixed ``[-1, 127/128]`` grid clipped it: 0.75 instead of 0.97
  on FSDD before QAT training). ``STATE_SCALE = 1/128`` (zero point 0) is only the grid
  before calibration. Used on h_t in Keras, on the classifier's input, and forced on both
  ``h`` and ``h_next`` of the exported step model, so the device carries the state by a
  copy and Keras QAT sees the same state values as TFLM.
- Pruned zeros stay zero: each matrix keeps the float model's support as a fixed mask.

- The input x_t and every other tensor the int8 kernels produce in the cell (``x W`` and ``h U`` and
  their low-rank halves, the sums, ``+ b``, the products of the state update) and the
  int8 constants (biases, ζ, ν, α, β, the 1 of ``1 − z``) are fake-quantized as the
  converter quantizes them: asymmetric int8 over the min/max that ``calibrate`` measures
  on the converter's own calibration data (the float twin's values on the same
  ``(x_t, h_{t-1})`` pairs), zero included, pre-activations capped at ±8. ``plan``
  writes every grid down (a ``plan.QuantizationPlan``); the export puts them on the int8
  tensors (the converter alone merges and widens some ranges) and reads them back.
  Until ``calibrate`` has run these points pass values through unchanged.

With the int8 kernels switched on (``use_int8_kernels``) Keras QAT computes TFLM's
integers; the tests check it byte for byte for every exportable activation (sigmoid,
tanh: ``plan.EXPORTABLE_ACTIVATIONS``). That includes the input x_t: it is rounded as
TFLite's QUANTIZE and ``runtime.quantize`` round it (``x / scale`` in double, half away
from zero), not as TF's fake-quant, which rounds ``(x - min) / scale`` in float32 and
put a har6 input at 1.499995 LSB one LSB up.
"""

import contextlib
import functools

import numpy as np
import tensorflow as tf

from tf_fastgrnn import cells
from tf_fastgrnn import int8_kernels as k8
from tf_fastgrnn import plan as plan_lib
from tf_fastgrnn import stepping
from tf_fastgrnn._keras import keras

__all__ = ["STATE_SCALE", "QuantizedDense", "QuantizedFastGRNNCell", "QuantizedFastRNNCell",
           "calibrate", "export_inputs", "float_twin", "from_plan", "is_qat_model", "plan",
           "quantize_model", "quantize_scope", "use_int8_kernels"]

STATE_SCALE = 1.0 / 128.0
STATE_ZERO_POINT = 0
# Pre-activation grids span at most ±PRE_ACTIVATION_LIMIT: int8 sigmoid and tanh are
# flat beyond it (sigmoid(8) rounds to 255/256), and a calibrated min/max of ±25 would
# make one LSB of the sum worth a fifth of the tanh range.
PRE_ACTIVATION_LIMIT = 8.0
_PRE_ACTIVATION_POINTS = ("xw", "hu", "pre", "gate_pre", "update_pre")


def fake_quant_weight(w):
  """Symmetric per-output-channel int8 (narrow range), as the converter stores weights."""
  m = tf.reduce_max(tf.abs(w), axis=list(range(len(w.shape) - 1)))
  m = tf.maximum(m, 1e-8)
  return tf.quantization.fake_quant_with_min_max_vars_per_channel(
      w, -m, m, num_bits=8, narrow_range=True)


def fake_quant_state(h):
  """TANH's fixed output grid (scale 1/128, zero point 0), the uncalibrated state grid."""
  return tf.quantization.fake_quant_with_min_max_args(h, -1.0, 127.0 / 128.0, num_bits=8)


def _grid_ends(scale, zero_point):
  """``[min, max]`` of the int8 grid ``(scale, zero_point)``."""
  return [(-128 - zero_point) * scale, (127 - zero_point) * scale]


def fake_quant_constant(c):
  """An int8 constant operand of ADD/SUB/MUL: asymmetric over [min(c, 0), max(c, 0)]."""
  lo, hi = k8.constant_range(c)
  return tf.quantization.fake_quant_with_min_max_vars(c, lo, hi, num_bits=8)


_FIXED_GRID_ACTIVATIONS = ("sigmoid", "tanh")  # LOGISTIC / TANH: fixed output grids
_TANH_GRID = k8.grid(STATE_SCALE, STATE_ZERO_POINT)  # TANH's fixed output grid
_ACTIVATION_GRIDS = {"sigmoid": k8.grid(1.0 / 256.0, -128), "tanh": _TANH_GRID}
_FLOAT_OPS = {k8.add: tf.add, k8.sub: tf.subtract, k8.mul: tf.multiply}


def _fake_quant_activation(name, value):
  if name == "sigmoid":
    return tf.quantization.fake_quant_with_min_max_args(value, 0.0, 255.0 / 256.0, num_bits=8)
  if name == "tanh":
    return fake_quant_state(value)  # TANH's output grid is the state grid
  return value


def _exact_or(layer, fake_quantized, exact):
  """The int8 kernel's value (forward) with the fake-quant's gradient, when switched on.

  Decided at trace time from the layer's ``int8_exact`` variable (saved with the model),
  so a graph holds only the path it runs.
  """
  with tf.init_scope():  # the variable's value, even while tracing
    if float(layer.int8_exact.numpy()) < 0.5:
      return fake_quantized
  return fake_quantized + tf.stop_gradient(exact() - fake_quantized)


def use_int8_kernels(qat_model, on=True):
  """Switches the QAT model's forward values between TFLM's integer kernels (``on``:
  bit-exact with the int8 model, several times slower) and float fake-quant on the
  same grids (off: for training; they differ by single-LSB roundings)."""
  if not is_qat_model(qat_model):
    raise ValueError(f"{qat_model.name!r} is not a QAT model (quantize_model makes one)")
  rnn, dense = stepping.parts(qat_model)
  for layer in (rnn.cell, dense):
    layer.int8_exact.assign(1.0 if on else 0.0)
  # Keras caches its traced train/test/predict functions: trace again with the new mode.
  qat_model.train_function = qat_model.test_function = qat_model.predict_function = None


class _QATMixin:
  """Masks, fake-quantized factors and calibrated intermediate grids of a cell.

  The cell's step is written once, in ``_step(x, h, quantize, record)``: with
  ``quantize`` it is the QAT forward pass; without, the float twin's computation, whose
  intermediates ``record`` collects for ``calibrate``. Once calibrated, the forward value
  of every tensor an int8 kernel produces is that kernel's integer result
  (``int8_kernels``); the gradient is the fake-quant's (straight through inside the
  range).
  """

  def _add_masks(self):
    self.w_masks = [self.add_weight(name=f"{_short(w)}_mask", shape=w.shape,
                                    initializer="ones", trainable=False)
                    for w in self.w_factors]
    self.u_masks = [self.add_weight(name=f"{_short(u)}_mask", shape=u.shape,
                                    initializer="ones", trainable=False)
                    for u in self.u_factors]
    # [min, max] per intermediate tensor; ``calibrated`` switches them on (0 or 1).
    self.ranges = {
        point: self.add_weight(name=f"{point}_range", shape=(2,), trainable=False,
                               initializer=keras.initializers.Constant([-1.0, 1.0]))
        for point in self._points()}
    # The state grid (h and h_next): [-1, 127/128] until ``calibrate`` measures it.
    self.state_range = self.add_weight(
        name="state_range", shape=(2,), trainable=False,
        initializer=keras.initializers.Constant(_grid_ends(STATE_SCALE, STATE_ZERO_POINT)))
    self.calibrated = self.add_weight(name="calibrated", shape=(), trainable=False,
                                      initializer="zeros")
    self.int8_exact = self.add_weight(name="int8_exact", shape=(), trainable=False,
                                      initializer="zeros")

  def _matmul_points(self):
    return (["x"] + [f"xw{i + 1}" for i in range(len(self.w_factors) - 1)] + ["xw"] +
            [f"hu{i + 1}" for i in range(len(self.u_factors) - 1)] + ["hu", "pre"])

  def _grid(self, point):
    return k8.grid_from_range(self.ranges[point][0], self.ranges[point][1])

  def _state_grid(self):
    return k8.grid_from_range(self.state_range[0], self.state_range[1])

  def _out(self, name, value, exact, quantize, record):
    """``value`` (float op on quantized inputs) as the int8 kernel computes it, and the
    grid it is on: ``(value, grid)`` (grid None outside QAT).

    ``exact``: None, or a function of the output grid returning the kernel's int64
    result.
    """
    if record is not None:
      record[name] = value
    if not quantize or name not in self.ranges:
      return value, None
    lo, hi = self.ranges[name][0], self.ranges[name][1]
    g = self._grid(name)
    fq = tf.quantization.fake_quant_with_min_max_vars(value, lo, hi, num_bits=8)
    if exact is not None:
      fq = _exact_or(self, fq, lambda: k8.dequantize(exact(g), g))
    return value + self.calibrated * (fq - value), g  # identity until calibrated

  def _op(self, name, kernel, a, b, quantize, record):
    """``a ∘ b`` for operands ``(value, grid)``, ∘ the int8 ``kernel`` (k8.add, k8.sub
    or k8.mul): ``(value, grid)``."""
    (va, ga), (vb, gb) = a, b
    return self._out(name, _FLOAT_OPS[kernel](va, vb), lambda g: kernel(
        k8.quantize(va, ga), ga, k8.quantize(vb, gb), gb, g), quantize, record)

  def _new_state(self, a, b, quantize, record):
    """The final ADD of the state update (operands ``(value, grid)``), on the state
    grid."""
    (va, ga), (vb, gb) = a, b
    new_h = va + vb
    if record is not None:
      record["h_next"] = new_h
    if not quantize:
      return new_h
    fq = tf.quantization.fake_quant_with_min_max_vars(
        new_h, self.state_range[0], self.state_range[1], num_bits=8)
    g = self._state_grid()
    q = _exact_or(self, fq, lambda: k8.dequantize(k8.add(
        k8.quantize(va, ga), ga, k8.quantize(vb, gb), gb, g), g))
    return fq + self.calibrated * (q - fq)

  def _constant(self, value, quantize):
    """An int8 constant operand: (value on its grid, grid)."""
    if not quantize:
      return value, None
    return (value + self.calibrated * (fake_quant_constant(value) - value),
            k8.constant_grid(value))

  def _matmuls(self, value, value_grid, factors, masks, prefix, quantize, record):
    for i, (f, m) in enumerate(zip(factors, masks)):
      w = f * m
      name = prefix if i == len(factors) - 1 else f"{prefix}{i + 1}"
      out = tf.matmul(value, fake_quant_weight(w) if quantize else w)
      value, value_grid = self._out(
          name, out, lambda g, x=value, gx=value_grid, w=w: k8.fully_connected(
              k8.quantize(x, gx), gx, w, None, g), quantize, record)
    return value, value_grid

  def _pre(self, x, h, quantize, record):
    """The pre-activation ``(value, grid)`` and the grid of h."""
    # The int8 input x_t as TFLite's QUANTIZE makes it: round(x / scale) in double.
    # TF's fake-quant rounds (x - min) / scale in float32 and so puts values within
    # ~1e-5 LSB below a half step one LSB up (x / scale = 1.499995 -> 2, not 1).
    x, gx = self._out("x", x, lambda g, v=x: k8.quantize(v, g), quantize, record)
    gh = self._state_grid() if quantize else None
    xw = self._matmuls(x, gx, self.w_factors, self.w_masks, "xw", quantize, record)
    hu = self._matmuls(h, gh, self.u_factors, self.u_masks, "hu", quantize, record)
    return self._op("pre", k8.add, xw, hu, quantize, record), gh

  def pre_activation(self, inputs, state):
    return self._pre(inputs, state, True, None)[0][0]

  def _activation(self, name, fn, point, value, quantize, record):
    """(output, its grid): LOGISTIC/TANH on their fixed grids, others calibrated."""
    out = fn(value)
    if name not in _FIXED_GRID_ACTIVATIONS:
      return self._out(point, out, None, quantize, record)
    if not quantize:
      return out, None
    return _fake_quant_activation(name, out), _ACTIVATION_GRIDS[name]

  def _update(self, pre, quantize, record):
    """h̃ ``(value, grid)``: ADD b_h, then the update activation."""
    update_pre, _ = self._op("update_pre", k8.add, pre,
                             self._constant(self.bias_update, quantize), quantize, record)
    return self._activation(self.update_activation, self._update_fn, "update_out",
                            update_pre, quantize, record)

  def intermediates(self, x, h):
    """The float twin's intermediate tensors for inputs ``x`` and states ``h``."""
    record = {}
    self._step(tf.convert_to_tensor(x, tf.float32), tf.convert_to_tensor(h, tf.float32),
               False, record)
    return record

  def call(self, inputs, states, training=None):
    h = states[0] if isinstance(states, (list, tuple)) else states
    new_h = self._step(inputs, h, True, None)
    return new_h, [new_h]


def _short(var):
  return var.name.split("/")[-1].split(":")[0]


@keras.utils.register_keras_serializable(package="tf_fastgrnn")
class QuantizedFastGRNNCell(_QATMixin, cells.FastGRNNCell):
  """``FastGRNNCell`` with the fake-quant of the int8 export (see the module doc)."""

  def build(self, input_shape):
    super().build(input_shape)
    self._add_masks()

  def _points(self):
    points = self._matmul_points() + ["gate_pre", "update_pre", "zh", "one_minus_z",
                                      "zeta_term", "coef", "coef_update"]
    points += [p for p, act in (("gate_out", self.gate_activation),
                                ("update_out", self.update_activation))
               if act not in _FIXED_GRID_ACTIVATIONS]
    return points

  def _step(self, x, h, quantize, record):
    op = functools.partial(self._op, quantize=quantize, record=record)
    const = functools.partial(self._constant, quantize=quantize)
    pre, gh = self._pre(x, h, quantize, record)
    # The int8 graph, op by op: ADD b_z, LOGISTIC, MUL z·h, SUB 1−z, MUL ζ, ADD ν,
    # ADD b_h, TANH, MUL coef·h̃, ADD (the new state).
    gate_pre, _ = op("gate_pre", k8.add, pre, const(self.bias_gate))
    z = self._activation(self.gate_activation, self._gate_fn, "gate_out", gate_pre,
                         quantize, record)
    zh = op("zh", k8.mul, z, (h, gh))
    one_minus_z = op("one_minus_z", k8.sub, const(tf.ones([1])), z)
    zeta_term = op("zeta_term", k8.mul, one_minus_z, const(tf.math.sigmoid(self.zeta)))
    coef = op("coef", k8.add, zeta_term, const(tf.math.sigmoid(self.nu)))
    coef_update = op("coef_update", k8.mul, coef, self._update(pre, quantize, record))
    return self._new_state(coef_update, zh, quantize, record)


@keras.utils.register_keras_serializable(package="tf_fastgrnn")
class QuantizedFastRNNCell(_QATMixin, cells.FastRNNCell):
  """``FastRNNCell`` with the fake-quant of the int8 export (see the module doc)."""

  def build(self, input_shape):
    super().build(input_shape)
    self._add_masks()

  def _points(self):
    points = self._matmul_points() + ["update_pre", "alpha_term", "beta_term"]
    if self.update_activation not in _FIXED_GRID_ACTIVATIONS:
      points.append("update_out")
    return points

  def _step(self, x, h, quantize, record):
    op = functools.partial(self._op, quantize=quantize, record=record)
    const = functools.partial(self._constant, quantize=quantize)
    pre, gh = self._pre(x, h, quantize, record)
    h_tilde = self._update(pre, quantize, record)
    alpha_term = op("alpha_term", k8.mul, const(tf.math.sigmoid(self.alpha)), h_tilde)
    beta_term = op("beta_term", k8.mul, const(tf.math.sigmoid(self.beta)), (h, gh))
    return self._new_state(alpha_term, beta_term, quantize, record)


@keras.utils.register_keras_serializable(package="tf_fastgrnn")
class QuantizedDense(keras.layers.Dense):
  """``Dense`` whose kernel is fake-quantized per output channel, as exported, and whose
  output is fake-quantized on the calibrated logits range once ``calibrate`` has run.

  Args:
    units: as ``Dense``.
    input_grid: ``(scale, zero_point)`` of the int8 grid the input is on until
      ``calibrate`` sets it to the measured state grid (``input_range``), which the int8
      kernel path quantizes it to; ``quantize_model`` gives the uncalibrated state grid
      after checking the layer reads the QAT RNN's last state.
    **kwargs: ``Dense`` arguments.
  """

  def __init__(self, units, input_grid=None, **kwargs):
    super().__init__(units, **kwargs)
    if input_grid is None or len(input_grid) != 2 or not float(input_grid[0]) > 0:
      raise ValueError("QuantizedDense needs input_grid=(scale, zero_point), the int8 "
                       f"grid its input is on, got {input_grid!r}")
    self.input_grid = (float(input_grid[0]), int(input_grid[1]))

  def get_config(self):
    return dict(super().get_config(), input_grid=list(self.input_grid))

  def build(self, input_shape):
    super().build(input_shape)
    self.output_range = self.add_weight(
        name="output_range", shape=(2,), trainable=False,
        initializer=keras.initializers.Constant([-1.0, 1.0]))
    self.input_range = self.add_weight(
        name="input_range", shape=(2,), trainable=False,
        initializer=keras.initializers.Constant(_grid_ends(*self.input_grid)))
    self.calibrated = self.add_weight(name="calibrated", shape=(), trainable=False,
                                      initializer="zeros")
    self.int8_exact = self.add_weight(name="int8_exact", shape=(), trainable=False,
                                      initializer="zeros")

  def float_output(self, inputs):
    out = tf.matmul(inputs, self.kernel)
    return out + self.bias if self.use_bias else out

  def call(self, inputs):
    if inputs.shape.rank is not None and inputs.shape.rank > 2:
      # Per step (the mean read-out's [N, T, H] states): the int8 kernel's 2-D form on
      # every step, as the device's step model applies it.
      flat = self._call_2d(tf.reshape(inputs, [-1, inputs.shape[-1]]))
      return tf.reshape(flat, tf.concat([tf.shape(inputs)[:-1], [self.units]], 0))
    return self._call_2d(inputs)

  def _call_2d(self, inputs):
    out = tf.matmul(inputs, fake_quant_weight(self.kernel))
    if self.use_bias:
      out = out + self.bias
    fq = tf.quantization.fake_quant_with_min_max_vars(
        out, self.output_range[0], self.output_range[1], num_bits=8)
    g = k8.grid_from_range(self.output_range[0], self.output_range[1])
    gi = k8.grid_from_range(self.input_range[0], self.input_range[1])
    fq = _exact_or(self, fq, lambda: k8.dequantize(k8.fully_connected(
        k8.quantize(inputs, gi), gi, self.kernel,
        self.bias if self.use_bias else None, g), g))
    return self.activation(out + self.calibrated * (fq - out))


_QUANTIZED = {cells.FastGRNNCell: QuantizedFastGRNNCell,
              cells.FastRNNCell: QuantizedFastRNNCell}
_CUSTOM_OBJECTS = {c.__name__: c for c in (QuantizedFastGRNNCell, QuantizedFastRNNCell,
                                           QuantizedDense)}
keras.utils.get_custom_objects().update(_CUSTOM_OBJECTS)  # the .h5 loader's bare names


def is_qat_model(model):
  """True when ``model`` is Input → RNN(quantized tf_fastgrnn cell) → QuantizedDense
  (→ GlobalAveragePooling1D for the mean read-out)."""
  try:
    rnn, dense = stepping.parts(model)
  except ValueError:
    return False
  return isinstance(rnn.cell, _QATMixin) and isinstance(dense, QuantizedDense)


def quantize_model(float_model, calibration_windows=None):
  """The QAT twin of a float ``sequence_classifier`` model, weights and support copied.

  Args:
    float_model: ``Input → RNN(FastGRNNCell | FastRNNCell) → Dense`` (Sequential or
      functional, any layer names), stripped of pruning wrappers; or its mean read-out
      (``→ GlobalAveragePooling1D``, ``stepping.LAYOUT``). The QAT model keeps the
      layer names and the read-out. The Dense reads the RNN's states, so its input is
      on the state grid (``stepping.parts`` checks the layout).
    calibration_windows: real windows [N, T, D]; when given, ``calibrate`` sets the
      intermediate ranges (otherwise only weights, activations and state are
      fake-quantized until ``calibrate`` is called).

  Returns:
    A new model with the same inputs and outputs; train it with ``training.fit``.

  Raises:
    ValueError: the model has no tf_fastgrnn cell, or not that layout, or an activation
      the int8 export cannot place bit-exactly (``plan.check_exportable``).
  """
  try:
    rnn, dense = stepping.parts(float_model)
  except ValueError as e:
    raise ValueError(f"model {float_model.name!r} has no tf_fastgrnn cell to quantize: "
                     f"{e}") from e
  cell = rnn.cell
  if type(cell) not in _QUANTIZED:  # pylint: disable=unidiomatic-typecheck
    raise ValueError(
        f"model {float_model.name!r} has no tf_fastgrnn cell to quantize (QAT covers "
        "FastGRNN/FastRNN cells in Input → RNN(cell) → Dense (→ GlobalAveragePooling1D); "
        "quantize other models post-training with export.convert_step_model)")
  # Refused here, before any QAT epoch, as the export would refuse it after them.
  plan_lib.check_exportable({"update_activation": cell.update_activation,
                             "gate_activation": getattr(cell, "gate_activation", None)})
  qcell = _QUANTIZED[type(cell)].from_config(cell.get_config())
  # The Dense reads the RNN's states (stepping.parts checked), which the QAT cell puts on
  # the state grid; with the mean read-out, every step's (then the mean of the
  # fake-quantized per-step logits: what the device sums).
  qdense = QuantizedDense.from_config(
      dict(dense.get_config(), input_grid=[STATE_SCALE, STATE_ZERO_POINT]))
  model = _classifier(float_model, qcell, rnn.name, qdense, f"{float_model.name}_qat")
  by_name = {_short(w): w.numpy() for w in cell.weights}
  for var in qcell.weights:
    name = _short(var)
    if name.endswith("_mask"):
      var.assign((by_name[name[:-len("_mask")]] != 0).astype(np.float32))
    elif name in by_name:
      var.assign(by_name[name])
  _copy_dense(dense, qdense)  # int8_exact starts at 0: training uses float fake-quant
  if calibration_windows is not None:
    calibrate(model, calibration_windows)
  return model


def _classifier(model, cell, rnn_name, dense, name):
  """``model``'s layout (``stepping.LAYOUT``, its read-out and layer names) around a new
  ``cell`` and ``dense``."""
  mean = stepping.readout(model) == "mean"
  inputs = keras.Input(model.input_shape[1:], name="x")
  logits = dense(keras.layers.RNN(cell, name=rnn_name, return_sequences=mean)(inputs))
  if mean:
    pool = next(l for l in model.layers if isinstance(l, keras.layers.GlobalAveragePooling1D))
    logits = keras.layers.GlobalAveragePooling1D(name=pool.name)(logits)
  return keras.Model(inputs, logits, name=name)


def _copy_dense(src, dst):
  dst.kernel.assign(src.kernel)
  if src.use_bias:
    dst.bias.assign(src.bias)


def calibrate(qat_model, windows, *, max_pairs=2000, seed=0, iterations=2):
  """Sets the QAT model's intermediate ranges to what the int8 converter will use.

  Measures the float twin's intermediate tensors on the ``(x_t, h_{t-1})`` pairs that
  ``stepping.representative_pairs`` draws from the QAT model (the states the deployed
  model produces) and turns the fake-quant points on. The pairs depend on the ranges, so
  it repeats ``iterations`` times. Pre-activation ranges are capped at
  ±``PRE_ACTIVATION_LIMIT``. ``plan`` then records these grids and
  ``export.convert_step_model`` gives the int8 tensors exactly these grids. Call it before QAT training (``quantize_model`` does when given
  windows) and again after, before saving and exporting (the pipeline does).

  Returns:
    ``{point: [min, max]}``, the logits' range under ``"logits"``, the state grid's
    under ``"state"``.
  """
  if not is_qat_model(qat_model):
    raise ValueError(f"{qat_model.name!r} is not a QAT model (quantize_model makes one)")
  rnn, dense = stepping.parts(qat_model)
  cell = rnn.cell
  ranges = {}

  def set_state_grid(pairs, record):
    # h and h_next on one grid, as the export's shared state grid.
    states = np.concatenate([np.ravel(pairs["h"]), np.ravel(record["h_next"].numpy())])
    scale, zero_point = k8.range_to_int8(min(float(states.min()), 0.0),
                                         max(float(states.max()), 1e-6))
    ranges["state"] = _grid_ends(scale, zero_point)
    cell.state_range.assign(ranges["state"])
    dense.input_range.assign(ranges["state"])

  # The state grid first from the float model's own trajectories: the QAT model's, on a
  # narrower grid, would be clipped, and each iteration would widen it by one step only.
  pairs = stepping.representative_pairs(float_twin(qat_model), windows, max_pairs, seed)
  set_state_grid(pairs, cell.intermediates(pairs["x"], pairs["h"]))
  for _ in range(max(1, iterations)):
    pairs = stepping.representative_pairs(qat_model, windows, max_pairs, seed)
    record = cell.intermediates(pairs["x"], pairs["h"])
    record["logits"] = dense.float_output(record["h_next"])
    set_state_grid(pairs, record)
    targets = dict(cell.ranges, logits=dense.output_range)
    for name, var in targets.items():
      values = record[name].numpy()
      lo, hi = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
      if name.rstrip("0123456789") in _PRE_ACTIVATION_POINTS:
        lo, hi = max(lo, -PRE_ACTIVATION_LIMIT), min(hi, PRE_ACTIVATION_LIMIT)
      # Stored as the int8 grid's exact ends, so Keras and the export cannot round the
      # zero point differently.
      scale, zero_point = k8.range_to_int8(lo, max(hi, lo + 1e-6))
      ranges[name] = [(-128 - zero_point) * scale, (127 - zero_point) * scale]
      var.assign(ranges[name])
    cell.calibrated.assign(1.0)
    dense.calibrated.assign(1.0)
  return ranges


def float_twin(qat_model):
  """The float model with the QAT model's masked weights, for the converter.

  The converter cannot fold per-channel fake-quant on weights that it must transpose, and
  needs none: it quantizes each float weight matrix symmetrically per channel, which
  gives the same int8 values as the fake-quant (the largest magnitude maps to ±127 in
  both). The state grid is set on the exported model instead (``export``).
  """
  if not is_qat_model(qat_model):
    raise ValueError(f"{qat_model.name!r} is not a QAT model (quantize_model makes one)")
  qrnn, dense_q = stepping.parts(qat_model)
  qcell = qrnn.cell
  base = next(b for b in type(qcell).__mro__[1:] if b in _QUANTIZED)
  cell = base.from_config(qcell.get_config())
  config = dense_q.get_config()
  config.pop("input_grid")
  dense = keras.layers.Dense.from_config(config)
  model = _classifier(qat_model, cell, qrnn.name, dense,
                      qat_model.name.replace("_qat", "") + "_int8_source")
  masks = {_short(m)[:-len("_mask")]: m.numpy() for m in qcell.w_masks + qcell.u_masks}
  values = {_short(w): w.numpy() * masks.get(_short(w), 1.0) for w in qcell.weights
            if not _short(w).endswith("_mask")}
  for var in cell.weights:
    var.assign(values[_short(var)])
  _copy_dense(dense_q, dense)
  return model


_FIXED_GRIDS = {"sigmoid": (1.0 / 256.0, -128), "tanh": (STATE_SCALE, STATE_ZERO_POINT)}


def _float32(scale):
  return float(np.float32(scale))  # what the flatbuffer stores


def plan(qat_model):
  """The quantization plan of a calibrated QAT model: every int8 point it trained on.

  Args:
    qat_model: a QAT model (``quantize_model``), calibrated (``calibrate``).

  Returns:
    A ``plan.QuantizationPlan``: each fake-quant point's grid, the activation outputs'
    fixed grids, the state grid on ``h``/``h_next``, the logits' grid, the activations,
    the cell type and ranks. ``export.convert_step_model(float_twin(qat_model), windows,
    plan=...)`` gives the int8 model exactly these grids or raises.

  Raises:
    ValueError: not a QAT model, or not calibrated.
  """
  if not is_qat_model(qat_model):
    raise ValueError(f"{qat_model.name!r} is not a QAT model (quantize_model makes one)")
  rnn, dense = stepping.parts(qat_model)
  cell = rnn.cell
  if float(cell.calibrated.numpy()) != 1.0 or float(dense.calibrated.numpy()) != 1.0:
    raise ValueError(f"{qat_model.name!r} is not calibrated: call quantization.calibrate "
                     "before taking its plan")
  points = {}
  for point, var in dict(cell.ranges, logits=dense.output_range).items():
    scale, zero_point = k8.range_to_int8(*var.numpy())
    points[point] = (_float32(scale), zero_point)
  gate = getattr(cell, "gate_activation", None)
  for point, act in (("gate_out", gate), ("update_out", cell.update_activation)):
    if act in _FIXED_GRIDS:
      points[point] = (_float32(_FIXED_GRIDS[act][0]), _FIXED_GRIDS[act][1])
  scale, zero_point = k8.range_to_int8(*cell.state_range.numpy())
  state = (_float32(scale), zero_point)
  points["h"] = points["h_next"] = state
  return plan_lib.QuantizationPlan(
      cell_type=next(b.__name__ for b in type(cell).__mro__[1:] if b in _QUANTIZED),
      units=int(cell.units), input_dim=int(cell.input_dim), w_rank=cell.w_rank,
      u_rank=cell.u_rank, gate_activation=gate, update_activation=cell.update_activation,
      state=state, points=points)


def from_plan(float_model, quantization_plan):
  """The QAT model of a plan: what Keras QAT computed, rebuilt without the QAT model.

  Args:
    float_model: the float model the export converts (a QAT model's ``float_twin``; the
      pipeline saves it as ``model_int8_source.keras``).
    quantization_plan: its ``plan.QuantizationPlan`` (``quantization_plan.json``).

  Returns:
    A calibrated QAT model with the plan's grids and TFLM's integer kernels on: its h and
    logits equal the int8 model's byte for byte, and ``plan(model) == quantization_plan``.

  Raises:
    ValueError: the plan is not this model's, or lacks a point the model needs
      (``plan.PlanMismatchError``).
  """
  rnn, _ = stepping.parts(float_model)
  quantization_plan.check_cell(rnn.cell)
  model = quantize_model(float_model)
  qrnn, dense = stepping.parts(model)
  targets = dict(qrnn.cell.ranges, logits=dense.output_range)
  missing = sorted(set(targets) - set(quantization_plan.points))
  if missing:
    raise plan_lib.PlanMismatchError(f"the quantization plan has no grid for {missing}")
  for name, var in targets.items():
    var.assign(_grid_ends(*quantization_plan.points[name]))
  qrnn.cell.state_range.assign(_grid_ends(*quantization_plan.state))
  dense.input_range.assign(_grid_ends(*quantization_plan.state))
  qrnn.cell.calibrated.assign(1.0)
  dense.calibrated.assign(1.0)
  use_int8_kernels(model, True)
  return model


def export_inputs(model):
  """What the export takes for ``model``: ``(float model, plan)`` for a QAT model (its
  ``float_twin`` and ``plan``), ``(model, None)`` for a float one."""
  if is_qat_model(model):
    return float_twin(model), plan(model)
  return model, None


@contextlib.contextmanager
def quantize_scope():
  """Scope to load QAT models saved by older code paths; current saves need none."""
  with keras.utils.custom_object_scope(_CUSTOM_OBJECTS):
    yield
