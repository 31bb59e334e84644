"""The Python fixed-point copy agrees with explicit values, with int8_kernels (TF) and
with the runtime's rounding and state carry."""

import numpy as np
import pytest
import tensorflow as tf

from tf_fastgrnn import fixed_point
from tf_fastgrnn import int8_kernels as k8
from tf_fastgrnn import runtime


def test_quantize_rounds_half_away_from_zero():
  np.testing.assert_array_equal(runtime.quantize([0.5, 2.5, -0.5, -2.5, 1.49], 1.0, 0),
                                [1, 3, -1, -3, 1])
  np.testing.assert_array_equal(runtime.quantize([0.25, 200.0], 0.5, -3), [-2, 127])


def test_quantize_multiplier_explicit_values():
  assert fixed_point.quantize_multiplier(0.5) == (1 << 30, 0)
  assert fixed_point.quantize_multiplier(0.75) == (3 << 29, 0)
  assert fixed_point.quantize_multiplier(3.0) == (3 << 29, 2)
  assert fixed_point.quantize_multiplier(0.0) == (0, 0)


def test_multiply_by_quantized_multiplier_explicit_values():
  m, shift = fixed_point.quantize_multiplier(0.5)
  # x / 2: gemmlowp's nudge rounds +1.5 up and -1.5 toward zero (as the C++ does).
  np.testing.assert_array_equal(
      fixed_point.multiply_by_quantized_multiplier([3, -3, 4, -5, 1, -7], m, shift),
      [2, -1, 2, -2, 1, -3])
  # 0.25 = 2^30 · 2^(-1 − 31): the high multiply halves (rounding), then the shift
  # halves again (ties away from zero), so 5 · 0.25 = 1.25 rounds twice, 2.5 -> 3 -> 2.
  m, shift = fixed_point.quantize_multiplier(0.25)
  np.testing.assert_array_equal(
      fixed_point.multiply_by_quantized_multiplier([2, -2, 6, -6, 5], m, shift),
      [1, -1, 2, -2, 2])


def test_python_and_tensorflow_fixed_point_agree():
  rng = np.random.default_rng(0)
  x = rng.integers(-40000, 40000, 500)
  for real in (0.0009765625, 0.3, 0.7312, 1.0, 1.9, 37.5):
    m, shift = fixed_point.quantize_multiplier(real)
    tm, tshift = k8.quantize_multiplier(tf.constant(real, tf.float64))
    assert (m, shift) == (int(tm.numpy()), int(tshift.numpy())), real
    np.testing.assert_array_equal(
        fixed_point.multiply_by_quantized_multiplier(x, m, shift),
        k8.multiply_by_quantized_multiplier(x, tm, tshift).numpy(), err_msg=str(real))


def test_state_carry_requantizes_in_fixed_point():
  # h_next on (0.02, 3) carried to h on (0.03, -1): out = round((v - 3)·2/3) - 1.
  values = np.array([-128, -1, 3, 4, 5, 6, 127], np.int8)
  got = fixed_point.requantize(values, (0.02, 3), (0.03, -1))
  np.testing.assert_array_equal(got, [-88, -4, -1, 0, 0, 1, 82])
  same = fixed_point.requantize(values, (0.02, 3), (0.02, 3))
  np.testing.assert_array_equal(same, values)


@pytest.mark.parametrize("value", [-128, -7, -1, 0, 1, 5, 127])
def test_state_carry_matches_the_exact_rescale_away_from_ties(value):
  got = int(fixed_point.requantize(np.array([value], np.int8), (0.05, 0), (0.0625, 2))[0])
  assert got == int(np.clip(fixed_point.round_half_away(value * 0.05 / 0.0625) + 2, -128, 127))
