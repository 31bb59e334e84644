"""TFLite's integer rescaling in NumPy: the one Python copy of what the C++ app computes.

``quantize_multiplier`` is TFLite's ``QuantizeMultiplier`` (quantization_util.cc),
``multiply_by_quantized_multiplier`` its ``MultiplyByQuantizedMultiplier`` (gemmlowp's
rounding doubling high multiply, then a rounding shift), ``requantize`` the app's
``StateCarry`` (tflm_app/streaming_logic.cc), and ``round_half_away`` the rounding of
TFLite's QUANTIZE and of the app's ``QuantizeFrame`` (``std::round``). The TensorFlow
versions for QAT graphs are in ``int8_kernels``; tests check the two agree.
"""

import math

import numpy as np

__all__ = ["multiply_by_quantized_multiplier", "quantize_multiplier", "requantize",
           "round_half_away"]


def round_half_away(x):
  """Rounds to the nearest integer, ties away from zero (``std::round``), as float64."""
  x = np.asarray(x, np.float64)
  return np.sign(x) * np.floor(np.abs(x) + 0.5)


def quantize_multiplier(real):
  """``(multiplier, shift)`` with ``real = multiplier · 2^(shift − 31)``, multiplier in
  [2^30, 2^31) (0, 0 for a zero or tiny ``real``)."""
  real = float(real)
  if real == 0.0:
    return 0, 0
  q, shift = math.frexp(real)
  q_fixed = int(round_half_away(q * (1 << 31)))
  if q_fixed == 1 << 31:
    q_fixed //= 2
    shift += 1
  if shift < -31:
    return 0, 0
  return q_fixed, shift


def multiply_by_quantized_multiplier(x, multiplier, shift):
  """``round(x · multiplier · 2^(shift − 31))`` with TFLite's two roundings (int64)."""
  x = np.asarray(x, np.int64) * (1 << max(shift, 0))
  right = max(-shift, 0)
  # SaturatingRoundingDoublingHighMul (its one overflow case, both INT32_MIN, cannot
  # happen: the multiplier is positive); the C++ division truncates toward zero.
  v = x * np.int64(multiplier) + np.where(x >= 0, 1 << 30, 1 - (1 << 30))
  high = np.sign(v) * (np.abs(v) // (1 << 31))
  # RoundingDivideByPOT: x / 2^right, ties away from zero.
  mask = (1 << right) - 1
  threshold = (mask >> 1) + (high < 0)
  return (high >> right) + ((high & mask) > threshold)


def requantize(values, src, dst):
  """int8 ``values`` on grid ``src`` = (scale, zero_point) moved to grid ``dst`` as the
  app's ``StateCarry`` does: a copy when the grids are equal, else fixed point."""
  values = np.asarray(values, np.int8)
  (s_out, z_out), (s_in, z_in) = src, dst
  if (np.float32(s_out), int(z_out)) == (np.float32(s_in), int(z_in)):
    return values.copy()
  m, shift = quantize_multiplier(float(np.float32(s_out)) / float(np.float32(s_in)))
  out = multiply_by_quantized_multiplier(values.astype(np.int64) - int(z_out), m, shift)
  return np.clip(out + int(z_in), -128, 127).astype(np.int8)
