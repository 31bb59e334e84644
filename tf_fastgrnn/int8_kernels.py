"""TFLM's int8 reference kernels (ADD, SUB, MUL, FULLY_CONNECTED) as TensorFlow ops.

QAT uses these for the forward value of every tensor an int8 kernel produces, so Keras
computes the integers TFLM computes, rounding for rounding: TFLM (tensorflow/lite/
kernels/internal, built without ``TFLITE_SINGLE_ROUNDING``) rescales with a 31-bit
fixed-point multiplier and rounds twice (``SaturatingRoundingDoublingHighMul``, then
``RoundingDivideByPOT``), and ADD/SUB first bring both inputs to a common scale with 20
bits of headroom. A float fake-quant rounds once, exactly, and so differs in about one
output in a hundred by one LSB, which a recurrent state then carries.

A *grid* is ``(scale, zero_point)``: scale a float64 tensor holding the float32 value the
flatbuffer stores, zero point an int64 tensor. Quantized values are int64 tensors.
The functions follow the C++ names; each cites the TFLM code it mirrors.
"""

import tensorflow as tf

__all__ = ["add", "constant_grid", "constant_range", "dequantize", "fully_connected", "grid",
           "grid_from_range", "mul", "multiply_by_quantized_multiplier", "quantize",
           "quantize_multiplier", "range_to_int8", "sub"]

_I64 = tf.int64
_F64 = tf.float64


def _round_half_away(x):
  return tf.sign(x) * tf.floor(tf.abs(x) + 0.5)


def _float32_quotient(numerator, divisor):
  """float32 ``numerator / divisor`` (a Python number) rounded as C's float division,
  in a graph too.

  In a ``tf.function`` Grappler's constant folding turns ``x / c`` into ``x * (1 / c)``,
  which in float32 rounds differently for 4.7 % of numerators over 127 (74 % over 255):
  one float32 step off in a weight scale moves the 31-bit multiplier by ~128 units, and
  the default har6 run (seed 0) had an FC output one LSB from TFLM's. In float64 the
  product is within one float64 step of the quotient, and rounded to float32 it is the
  correctly rounded float32 quotient (checked on every float32 numerator of a binade,
  for 127 and 255).
  """
  quotient = tf.cast(numerator, _F64) / float(divisor)
  return tf.cast(quotient, tf.float32)


def grid(scale, zero_point):
  """A grid from Python numbers (a fixed grid: LOGISTIC/TANH outputs, the state)."""
  return (tf.constant(float(tf.constant(scale, tf.float32).numpy()), _F64),
          tf.constant(int(zero_point), _I64))


def range_to_int8(lo, hi):
  """(scale, zero_point) of the int8 grid that TF's fake-quant puts on [lo, hi], as
  Python numbers (the zero point rounded half to even, as numpy does)."""
  lo, hi = float(lo), float(hi)
  scale = (hi - lo) / 255.0
  zero_point = int(min(max(round(-128.0 - lo / scale), -128), 127))
  return scale, zero_point


def grid_from_range(lo, hi):
  """The grid ``range_to_int8`` gives ``[lo, hi]`` (zero point rounded half to
  even, as numpy does), with the scale rounded to float32 as the flatbuffer stores it."""
  lo, hi = tf.cast(lo, _F64), tf.cast(hi, _F64)
  scale = (hi - lo) / 255.0
  zero_point = tf.clip_by_value(tf.round(-128.0 - lo / scale), -128.0, 127.0)
  return tf.cast(tf.cast(scale, tf.float32), _F64), tf.cast(zero_point, _I64)


def constant_range(values):
  """``[min(values, 0), max(values, 0)]`` (float32, never empty): the range the
  converter quantizes an int8 constant operand (bias, ζ, ν, α, β, 1) on."""
  values = tf.cast(values, tf.float32)
  lo = tf.minimum(tf.reduce_min(values), 0.0)
  return lo, tf.maximum(tf.reduce_max(values), lo + 1e-6)


def constant_grid(values):
  """The grid of an int8 constant operand, as TF's fake-quant nudges ``constant_range``
  (the same as ``quantization.fake_quant_constant``)."""
  lo, hi = constant_range(values)
  scale = _float32_quotient(hi - lo, 255.0)
  zero_point_u = tf.clip_by_value(_round_half_away(0.0 - lo / scale), 0.0, 255.0)
  return tf.cast(scale, _F64), tf.cast(zero_point_u, _I64) - 128


def quantize(values, g):
  """int64 ``round(values / scale) + zero_point``, saturated to int8."""
  scale, zero_point = g
  q = _round_half_away(tf.cast(values, _F64) / scale) + tf.cast(zero_point, _F64)
  return tf.cast(tf.clip_by_value(q, -128.0, 127.0), _I64)


def dequantize(q, g):
  scale, zero_point = g
  return tf.cast(tf.cast(q - zero_point, _F64) * scale, tf.float32)


def quantize_multiplier(real):
  """``QuantizeMultiplier`` (quantization_util.cc): real = M · 2^(shift − 31), M in
  [2^30, 2^31)."""
  real = tf.cast(real, _F64)
  safe = tf.where(real > 0, real, tf.ones_like(real))
  shift = tf.floor(tf.math.log(safe) / tf.math.log(tf.constant(2.0, _F64))) + 1.0
  frac = safe / tf.pow(tf.constant(2.0, _F64), shift)
  shift = tf.where(frac >= 1.0, shift + 1.0, tf.where(frac < 0.5, shift - 1.0, shift))
  frac = safe / tf.pow(tf.constant(2.0, _F64), shift)  # frexp: frac in [0.5, 1)
  fixed = _round_half_away(frac * 2.0**31)
  shift = tf.where(fixed >= 2.0**31, shift + 1.0, shift)
  fixed = tf.where(fixed >= 2.0**31, tf.constant(2.0**30, _F64), fixed)
  small = shift < -31.0
  fixed = tf.where(small | (real <= 0), tf.zeros_like(fixed), fixed)
  shift = tf.where(small | (real <= 0), tf.zeros_like(shift), shift)
  return tf.cast(fixed, _I64), tf.cast(shift, _I64)


def _saturating_rounding_doubling_high_mul(a, b):
  """gemmlowp: (a·b + nudge) / 2^31, the division truncating toward zero."""
  ab = a * b
  nudge = tf.where(ab >= 0, tf.constant(1 << 30, _I64), tf.constant(1 - (1 << 30), _I64))
  return tf.truncatediv(ab + nudge, tf.constant(1 << 31, _I64))


def _rounding_divide_by_pot(x, exponent):
  """gemmlowp: x / 2^exponent, rounded half away from zero."""
  one = tf.constant(1, _I64)
  mask = tf.bitwise.left_shift(one, exponent) - one
  remainder = tf.bitwise.bitwise_and(x, mask)
  threshold = tf.bitwise.right_shift(mask, one) + tf.cast(x < 0, _I64)
  return (tf.math.floordiv(x, tf.bitwise.left_shift(one, exponent)) +
          tf.cast(remainder > threshold, _I64))


def multiply_by_quantized_multiplier(x, multiplier, shift):
  """``MultiplyByQuantizedMultiplier`` (common.cc, double rounding)."""
  zero = tf.zeros_like(shift)
  left, right = tf.maximum(shift, zero), tf.maximum(-shift, zero)
  x = x * tf.bitwise.left_shift(tf.ones_like(left), left)
  return _rounding_divide_by_pot(_saturating_rounding_doubling_high_mul(x, multiplier),
                                 right)


def _saturate(q):
  return tf.clip_by_value(q, tf.constant(-128, _I64), tf.constant(127, _I64))


def _add_or_sub(a, ga, b, gb, go, subtract):
  (sa, za), (sb, zb), (so, zo) = ga, gb, go
  left_shift = 20
  if subtract:  # sub_common.cc computes its multipliers in float32
    fa, fb, fo = (tf.cast(s, tf.float32) for s in (sa, sb, so))
    twice = 2.0 * tf.maximum(fa, fb)
    real_a, real_b = tf.cast(fa / twice, _F64), tf.cast(fb / twice, _F64)
    real_o = tf.cast(twice / (float(1 << left_shift) * fo), _F64)
  else:  # add_common.cc: double
    twice = 2.0 * tf.maximum(sa, sb)
    real_a, real_b = sa / twice, sb / twice
    real_o = twice / (float(1 << left_shift) * so)
  (ma, ea), (mb, eb), (mo, eo) = (quantize_multiplier(r) for r in (real_a, real_b, real_o))
  shifted_a = (a - za) * (1 << left_shift)
  shifted_b = (b - zb) * (1 << left_shift)
  scaled_a = multiply_by_quantized_multiplier(shifted_a, ma, ea)
  scaled_b = multiply_by_quantized_multiplier(shifted_b, mb, eb)
  raw = scaled_a - scaled_b if subtract else scaled_a + scaled_b
  return _saturate(multiply_by_quantized_multiplier(raw, mo, eo) + zo)


def add(a, ga, b, gb, go):
  """int8 ADD (reference_integer_ops::AddFunc, add_common.cc), broadcasting."""
  return _add_or_sub(a, ga, b, gb, go, subtract=False)


def sub(a, ga, b, gb, go):
  """int8 SUB (reference_ops::SubElementwise, sub_common.cc): a − b."""
  return _add_or_sub(a, ga, b, gb, go, subtract=True)


def mul(a, ga, b, gb, go):
  """int8 MUL (reference_integer_ops::MulElementwise, mul_common.cc)."""
  (sa, za), (sb, zb), (so, zo) = ga, gb, go
  m, e = quantize_multiplier(sa * sb / so)
  return _saturate(zo + multiply_by_quantized_multiplier((a - za) * (b - zb), m, e))


def weight_scales(kernel):
  """Per-output-channel symmetric scales (``max|w| / 127``, float32) of [in, out]."""
  kernel = tf.cast(kernel, tf.float32)
  return _float32_quotient(tf.maximum(tf.reduce_max(tf.abs(kernel), axis=0), 1e-8), 127.0)


def fully_connected(x, gx, kernel, bias, go):
  """int8 FULLY_CONNECTED with per-channel weights (FullyConnectedPerChannel).

  ``kernel`` [in, out] float (quantized here as the converter does), ``bias`` [out]
  float or None (int32 in units of input scale × weight scale).
  """
  (sx, zx), (so, zo) = gx, go
  scales = tf.cast(weight_scales(kernel), _F64)
  w_q = tf.clip_by_value(_round_half_away(tf.cast(kernel, _F64) / scales), -127.0, 127.0)
  acc = tf.matmul(tf.cast(x - zx, _F64), w_q)  # exact: integers far below 2^53
  if bias is not None:
    acc = acc + _round_half_away(tf.cast(bias, _F64) / (sx * scales))
  m, e = quantize_multiplier(sx * scales / so)
  return _saturate(multiply_by_quantized_multiplier(tf.cast(acc, _I64), m, e) + zo)
