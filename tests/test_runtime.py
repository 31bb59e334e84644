"""TFLM and LiteRT step runners, the state carry, and arena measurement."""

import numpy as np
import pytest

from tests import helpers
from tf_fastgrnn import runtime

T, D, H, C = 5, 4, 8, 3


@pytest.fixture(scope="module")
def step_bytes():
  model, tflite_bytes, windows, _ = helpers.converted_classifier(
      "fastgrnn", H, (T, D), C, windows=16, u_rank=4)
  return model, tflite_bytes, windows


def test_step_io_names_and_shared_state_quantization(step_bytes):
  _, tflite_bytes, _ = step_bytes
  io = runtime.step_io(tflite_bytes)
  assert {n: io[n]["shape"] for n in io} == {"x": (1, D), "h": (1, H), "h_next": (1, H),
                                             "logits": (1, C)}
  assert (io["h"]["scale"], io["h"]["zero_point"]) == (io["h_next"]["scale"],
                                                       io["h_next"]["zero_point"])


def test_run_windows_equals_manual_stepping(step_bytes):
  _, tflite_bytes, windows = step_bytes
  runner = runtime.TFLMStepRunner(tflite_bytes)
  traces = runner.run_windows(windows[:3])
  io = runner.io
  for i in range(3):
    h = np.full((1, H), io["h"]["zero_point"], np.int8)
    for t in range(T):
      x_q = runtime.quantize(windows[i, t:t + 1], io["x"]["scale"], io["x"]["zero_point"])
      h, logits = runner.step(x_q, h)
      np.testing.assert_array_equal(h.reshape(-1), traces["h_q"][i, t])
      np.testing.assert_array_equal(logits.reshape(-1), traces["logits_q"][i, t])


def test_inputs_are_set_before_every_invoke(step_bytes):
  """Two different states give two different outputs from one runner in a row."""
  _, tflite_bytes, _ = step_bytes
  runner = runtime.TFLMStepRunner(tflite_bytes)
  x = np.zeros((1, D), np.int8)
  h_a, _ = runner.step(x, np.full((1, H), -100, np.int8))
  h_b, _ = runner.step(x, np.full((1, H), 100, np.int8))
  h_a2, _ = runner.step(x, np.full((1, H), -100, np.int8))
  assert not np.array_equal(h_a, h_b)
  np.testing.assert_array_equal(h_a, h_a2)


def test_tflm_and_litert_agree_within_a_few_lsb(step_bytes):
  model, tflite_bytes, windows = step_bytes
  tflm = runtime.TFLMStepRunner(tflite_bytes).run_windows(windows)
  litert = runtime.LiteRTStepRunner(tflite_bytes).run_windows(windows)
  # int8 LOGISTIC/TANH differ by a few LSB between the runtimes; over T=5 steps the state
  # difference stays small.
  assert np.abs(tflm["logits_q"].astype(int) - litert["logits_q"]).max() <= 8
  assert np.abs(tflm["h_q"].astype(int) - litert["h_q"]).max() <= 12
  float_pred = model(windows).numpy().argmax(-1)
  assert np.mean(tflm["logits"][:, -1].argmax(-1) == float_pred) >= 0.8


def test_arena_is_the_smallest_that_works(step_bytes):
  _, tflite_bytes, windows = step_bytes
  arena = runtime.measure_arena(tflite_bytes)
  assert arena > 0
  runtime.TFLMStepRunner(tflite_bytes, arena_size=arena).run_windows(windows[:1])
  with pytest.raises(ValueError, match=f"too small: the model needs {arena} bytes"):
    runtime.TFLMStepRunner(tflite_bytes, arena_size=arena - 64)


def test_bad_windows_are_refused(step_bytes):
  _, tflite_bytes, windows = step_bytes
  runner = runtime.TFLMStepRunner(tflite_bytes)
  with pytest.raises(ValueError, match=r"\[N, T, 4\]"):
    runner.run_windows(windows[..., :3])
  bad = windows.copy()
  bad[0, 0, 0] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    runner.run_windows(bad)
