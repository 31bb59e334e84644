"""The LSTM baselines' int8 exports against a NumPy LSTM with explicit weights: TFLite's
fused op with an int16 cell state (``lstm_int16``), and the int8 step model with σ(f)·c
on c's grid (``export.convert_step_model(forget_product_on_cell_grid=True)``)."""

import numpy as np
import pytest

from tf_fastgrnn import baselines
from tf_fastgrnn import export
from tf_fastgrnn import lstm_int16
from tf_fastgrnn import runtime
from tf_fastgrnn._keras import keras

T, D, H, C = 12, 3, 4, 2


def _explicit(shape, phase, gain):
  """Fixed weights, not random: a sinusoid over the flat index."""
  return (gain * np.sin(0.9 * np.arange(np.prod(shape)) + phase)).reshape(shape)


def _weights(gate_biases=(0.2, 1.0, 0.4, 0.1), input_gain=0.8):
  kernel = _explicit((D, 4 * H), 0.3, input_gain)  # [x] -> [i f g o], Keras' order
  recurrent = _explicit((H, 4 * H), 1.1, 0.5)
  bias = np.repeat(np.asarray(gate_biases, np.float64), H)
  dense = _explicit((H, C), 2.0, 1.2)
  dense_bias = np.array([0.1, -0.2])
  return kernel, recurrent, bias, dense, dense_bias


def _model(weights):
  x = keras.Input((T, D), name="x")
  rnn = keras.layers.LSTM(H, name="rnn")
  logits = keras.layers.Dense(C, name="logits")(rnn(x))
  model = keras.Model(x, logits)
  rnn.set_weights([w.astype(np.float32) for w in weights[:3]])
  model.get_layer("logits").set_weights([w.astype(np.float32) for w in weights[3:]])
  return model


def _numpy_lstm(weights, x, cell_limit=None):
  """``h, c`` after the window and the logits; c clipped to ±cell_limit if given."""
  kernel, recurrent, bias, dense, dense_bias = weights
  sigmoid = lambda v: 1 / (1 + np.exp(-v))
  h = np.zeros((len(x), H))
  c = np.zeros((len(x), H))
  for t in range(x.shape[1]):
    i, f, g, o = np.split(x[:, t] @ kernel + h @ recurrent + bias, 4, axis=-1)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    if cell_limit:
      c = np.clip(c, -cell_limit, cell_limit)
    h = sigmoid(o) * np.tanh(c)
  return h @ dense + dense_bias, c


def _windows(n=24, amplitude=1.0):
  """Explicit input windows: sinusoids of several frequencies and phases."""
  t = np.arange(T)[None, :, None]
  k = np.arange(n)[:, None, None]
  d = np.arange(D)[None, None, :]
  return (amplitude * np.sin(0.3 * (k % 5 + 1) * t + 0.7 * d + 0.4 * k)).astype(np.float32)


@pytest.fixture(scope="module")
def fused():
  weights = _weights()
  model = _model(weights)
  windows = _windows()
  window_bytes = lstm_int16.convert_window_model(model, windows)
  return weights, model, windows, window_bytes, lstm_int16.streaming_model(window_bytes)


def test_fused_model_is_one_lstm_op_with_an_int16_cell_state(fused):
  _, _, _, window_bytes, step_bytes = fused
  for tflite_bytes in (window_bytes, step_bytes):
    assert export.model_ops(tflite_bytes) == [lstm_int16.LSTM_OP, "STRIDED_SLICE",
                                              "FULLY_CONNECTED"]
    lstm_int16.check_fused(tflite_bytes)  # int16 c variable; TFLM loads it
  assert lstm_int16.TFLMRunner(window_bytes).x_shape == (1, T, D)
  assert lstm_int16.TFLMRunner(step_bytes).x_shape == (1, 1, D)
  assert lstm_int16.measure_arena(step_bytes) > 0


def test_fused_int8_matches_the_numpy_lstm(fused):
  weights, model, windows, window_bytes, _ = fused
  want, _ = _numpy_lstm(weights, windows.astype(np.float64))
  np.testing.assert_allclose(model.predict(windows, verbose=0), want, atol=1e-5)
  runner = lstm_int16.TFLMRunner(window_bytes)
  got = runner.run_windows(windows)["logits"]
  scale = runner.logits_quantization[0]
  # Tolerance: 8 output LSBs (3 % of the logits' range) after 12 steps of int8 x, h
  # and weights and 16-bit gates and c.
  assert np.abs(got - want).max() <= 8 * scale, (np.abs(got - want).max(), scale)
  assert np.mean(got.argmax(-1) == want.argmax(-1)) >= 0.9


def test_streaming_model_gives_the_window_models_bytes(fused):
  _, _, windows, window_bytes, step_bytes = fused
  for runner in (lstm_int16.TFLMRunner, lstm_int16.LiteRTRunner):
    whole = runner(window_bytes).run_windows(windows)["logits_q"]
    stepped = runner(step_bytes).run_windows(windows)["logits_q"]
    np.testing.assert_array_equal(stepped, whole)


def test_tflm_and_litert_agree_within_one_lsb(fused):
  # Not byte for byte: the two runtimes implement the int16 sigmoid/tanh of this op
  # separately. TFLM is what the board computes.
  _, _, windows, _, step_bytes = fused
  tflm = lstm_int16.TFLMRunner(step_bytes).run_windows(windows)["logits_q"]
  litert = lstm_int16.LiteRTRunner(step_bytes).run_windows(windows)["logits_q"]
  assert np.abs(tflm.astype(np.int32) - litert).max() <= 1


def test_the_state_is_reset_per_window(fused):
  _, _, windows, _, step_bytes = fused
  runner = lstm_int16.TFLMRunner(step_bytes)
  once = runner.run_windows(windows[:1])["logits_q"]
  np.testing.assert_array_equal(runner.run_windows(windows[1:2])["logits_q"],
                                lstm_int16.TFLMRunner(step_bytes).run_windows(
                                    windows[1:2])["logits_q"])
  np.testing.assert_array_equal(runner.run_windows(windows[:1])["logits_q"], once)
  # Without the reset the states run on into the next window: another answer.
  runner._reset()  # pylint: disable=protected-access
  for t in range(2 * T):
    out = runner._invoke(runtime.quantize(windows[t // T, t % T], *runner.x_quantization)  # pylint: disable=protected-access
                         .reshape(runner.x_shape))
  assert not np.array_equal(out.reshape(-1), runner.run_windows(windows[1:2])["logits_q"][0])


def test_export_and_evaluate_runs_both_splits_and_checks_the_streaming_model(fused):
  weights, model, windows, _, _ = fused
  validation = _windows(n=10, amplitude=0.5)
  ev = lstm_int16.export_and_evaluate(model, windows, windows, validation)
  # Not compared with the fixture's bytes: a second conversion of the model in one
  # process differs from the first in two buffers that no tensor uses.
  assert lstm_int16.TFLMRunner(ev.window_tflite).x_shape == (1, T, D)
  assert ev.tflite == lstm_int16.streaming_model(ev.window_tflite)
  tflm = lstm_int16.TFLMRunner(ev.tflite)
  test = tflm.run_windows(windows)["logits_q"]
  np.testing.assert_array_equal(ev.test_pred, test.argmax(-1))
  np.testing.assert_array_equal(ev.validation_pred,
                                tflm.run_windows(validation)["logits_q"].argmax(-1))
  want, _ = _numpy_lstm(weights, windows.astype(np.float64))
  assert np.mean(ev.test_pred == want.argmax(-1)) >= 0.9
  assert ev.streaming_equals_window_model is True
  litert = lstm_int16.LiteRTRunner(ev.tflite).run_windows(windows)["logits_q"]
  lsb = np.abs(test.astype(np.int32) - litert)
  assert ev.litert_logits_max_lsb == lsb.max() <= 1
  assert ev.litert_logits_bytes_differing == np.mean(lsb > 0)
  assert ev.litert_top1_agreement == np.mean(test.argmax(-1) == litert.argmax(-1))
  assert ev.arena == lstm_int16.measure_arena(ev.tflite) > 0
  assert ev.window_arena == lstm_int16.measure_arena(ev.window_tflite) > 0


def test_other_layers_are_refused_with_the_way_out():
  x = keras.Input((T, D))
  lowrank = keras.Model(x, keras.layers.Dense(C)(
      keras.layers.RNN(baselines.LowRankLSTMCell(H, 2, 2))(x)))
  with pytest.raises(ValueError, match="forget_product_on_cell_grid=True"):
    lstm_int16.convert_window_model(lowrank, _windows())
  relu = keras.Model(x, keras.layers.Dense(C)(keras.layers.LSTM(H, activation="relu")(x)))
  with pytest.raises(ValueError, match="activation='relu'"):
    lstm_int16.convert_window_model(relu, _windows())
  with pytest.raises(ValueError, match=r"must be \[N, 12, 3\]"):
    lstm_int16.convert_window_model(_model(_weights()), _windows()[:, :5])


def test_forget_product_on_cell_grid_follows_c_beyond_the_cap():
  # A forget gate near 1 and a strong input: c climbs past ±8 (the int8 step model's
  # cap) over the window, and the converter's range for σ(f)·c follows the float c.
  # i and f near 1, tanh(g) near ±1 with the sign of a window's (steady) input: c
  # climbs by about 1 per step, to ±11.
  weights = _weights(gate_biases=(4.0, 6.0, 0.0, 0.1), input_gain=3.0)
  model = _model(weights)
  signs = np.where(np.arange(24) % 2, 1.0, -1.0)[:, None, None]
  windows = (signs * (0.8 + 0.2 * _windows())).astype(np.float32)
  _, c_end = _numpy_lstm(weights, windows.astype(np.float64))
  assert c_end.max() > export.CELL_STATE_LIMIT and c_end.min() < -export.CELL_STATE_LIMIT
  grids, errors = {}, {}
  for fixed in (False, True):
    tflite_bytes = export.convert_step_model(model, windows,
                                             forget_product_on_cell_grid=fixed)
    fb_model = export.read_model(tflite_bytes)
    graph = fb_model.subgraphs[0]
    inputs, _ = export.signature_tensors(fb_model)
    (mul,) = [op for op in graph.operators
              if export.op_name(fb_model, op) == "MUL" and inputs["c"] in op.inputs]
    q_product = graph.tensors[mul.outputs[0]].quantization
    grids[fixed] = float(q_product.scale[0]), int(q_product.zeroPoint[0])
    q_c = export.io_quantization(tflite_bytes)["c"]
    tflm = runtime.TFLMStepRunner(tflite_bytes).run_windows(windows)
    litert = runtime.LiteRTStepRunner(tflite_bytes).run_windows(windows)
    # Not byte for byte: the runtimes' int8 LOGISTIC/TANH differ by a few LSB, as for
    # every step model (test_runtime.py allows 8).
    assert np.abs(tflm["logits_q"].astype(np.int32) - litert["logits_q"]).max() <= 8
    assert q_c == (export.CELL_STATE_LIMIT / 128, 0)  # capped
    # Against the LSTM whose c saturates at the cap, as the int8 model's does.
    want, _ = _numpy_lstm(weights, windows.astype(np.float64), export.CELL_STATE_LIMIT)
    errors[fixed] = (np.abs(tflm["logits"][:, -1] - want).max()
                     / export.io_quantization(tflite_bytes)["logits"][0])
  assert grids[True] == q_c
  assert grids[False][0] > grids[True][0]  # the converter's own grid: coarser
  # In output LSBs (the logits span about 2.2 here: 10 LSB is 4 % of it); 12.3 with the
  # converter's grid, 7.7 with c's on this machine.
  assert errors[True] <= 10
  assert errors[True] < errors[False]


def test_loss_diagnostic_steps_like_keras():
  from benchmarks import lstm_int8_loss  # pylint: disable=import-outside-toplevel
  weights = _weights()
  model = _model(weights)
  windows = _windows()
  got = lstm_int8_loss.lstm_weights(model)
  for a, b in zip(got, weights):
    np.testing.assert_allclose(a, b, atol=1e-6)
  logits, _ = _numpy_lstm(weights, windows.astype(np.float64))
  pred, c_max = lstm_int8_loss.numpy_lstm(got, windows)
  np.testing.assert_array_equal(pred, logits.argmax(-1))
  assert c_max.shape == (len(windows),) and np.all(c_max > 0)
  x = keras.Input((T, D))
  lowrank = keras.Model(x, keras.layers.Dense(C)(
      keras.layers.RNN(baselines.LowRankLSTMCell(H, 2, 2))(x)))
  w, u, b, _, _ = lstm_int8_loss.lstm_weights(lowrank)
  cell = lowrank.layers[1].cell
  np.testing.assert_allclose(w, cell.W1.numpy() @ cell.W2.numpy(), atol=1e-6)
  np.testing.assert_allclose(u, cell.U1.numpy() @ cell.U2.numpy(), atol=1e-6)
  pred, _ = lstm_int8_loss.numpy_lstm(lstm_int8_loss.lstm_weights(lowrank), windows)
  np.testing.assert_array_equal(pred, lowrank.predict(windows, verbose=0).argmax(-1))
  tflite_bytes = export.convert_step_model(model, windows, forget_product_on_cell_grid=True)
  assert lstm_int8_loss.forget_product_scale(tflite_bytes) == pytest.approx(
      export.io_quantization(tflite_bytes)["c"][0])
