"""QAT for tf_fastgrnn cells: grids, kept zeros, save/load, export, agreement with TFLM."""

import numpy as np
import pytest
import tensorflow as tf

from tf_fastgrnn import export
from tf_fastgrnn import models
from tf_fastgrnn import quantization
from tf_fastgrnn import runtime
from tf_fastgrnn import stepping
from tf_fastgrnn import training
from tf_fastgrnn._keras import keras
from tests import helpers

T, D, H, C = 5, 4, 8, 3


def _sparse_model(rng, cell="fastgrnn"):
  model = models.sequence_classifier(cell, H, (T, D), C, w_rank=2, u_rank=4)
  for var in model.weights:
    value = rng.normal(0, 0.4, var.shape)
    if any(k in var.name for k in ("W1", "U2")):
      value[rng.random(var.shape) < 0.5] = 0.0  # a pruned matrix
    var.assign(value)
  return model


def _task(rng, n):
  y = rng.integers(0, C, n)
  centers = np.eye(C, D) * 1.5
  x = centers[y][:, None, :] + rng.normal(0, 0.7, (n, T, D))
  return x.astype(np.float32), y


def test_weight_fake_quant_is_symmetric_per_channel_int8():
  w = tf.constant([[0.5, -2.0], [-0.26, 1.0], [0.1, 0.3]])
  q = quantization.fake_quant_weight(w).numpy()
  scale = np.array([0.5, 2.0]) / 127
  np.testing.assert_allclose(q, np.round(w.numpy() / scale) * scale, atol=1e-6)


def test_state_grid_is_tflite_tanh_grid():
  h = tf.constant(np.linspace(-1.2, 1.2, 101), tf.float32)
  q = quantization.fake_quant_state(h).numpy()
  np.testing.assert_allclose(q, np.clip(np.round(h.numpy() * 128), -128, 127) / 128,
                             atol=1e-6)


@pytest.mark.parametrize("cell", ["fastgrnn", "fastrnn"])
def test_quantized_model_keeps_weights_and_zeros_through_training(rng, cell):
  model = _sparse_model(rng, cell)
  qat = quantization.quantize_model(model)
  assert quantization.is_qat_model(qat) and not quantization.is_qat_model(model)
  x, y = _task(rng, 64)
  # Same weights: the QAT model differs from the float one by int8 rounding only.
  diff = np.abs(qat.predict(x, verbose=0) - model.predict(x, verbose=0))
  assert diff.mean() < 0.05 and diff.max() < 0.5
  training.fit(
      qat, (x, y), None, helpers.recipe(epochs=2, batch_size=16, learning_rate=0.01),
      options=helpers.options(verbose=0))
  qcell, fcell = qat.get_layer("rnn").cell, model.get_layer("rnn").cell
  effective = quantization.float_twin(qat).get_layer("rnn").cell
  for fw, ew in zip(fcell.w_factors + fcell.u_factors, effective.w_factors + effective.u_factors):
    zeros = fw.numpy() == 0
    assert np.all(ew.numpy()[zeros] == 0)
  assert len(qcell.w_masks) == 2


def test_refuses_models_without_a_fastgrnn_cell():
  lstm = models.sequence_classifier("lstm", H, (T, D), C)
  with pytest.raises(ValueError, match="no tf_fastgrnn cell to quantize"):
    quantization.quantize_model(lstm)


def test_save_load_round_trip(rng, tmp_path):
  x, _ = _task(rng, 8)
  # As the pipeline saves it: calibrated, evaluating with the int8 kernels.
  qat = quantization.quantize_model(_sparse_model(rng), x)
  quantization.use_int8_kernels(qat, True)
  qat.save(tmp_path / "qat.keras")
  loaded = keras.models.load_model(tmp_path / "qat.keras")
  cell = loaded.get_layer("rnn").cell
  assert float(cell.calibrated.numpy()) == 1.0 and float(cell.int8_exact.numpy()) == 1.0
  np.testing.assert_array_equal(loaded.predict(x, verbose=0), qat.predict(x, verbose=0))


@pytest.mark.slow
def test_qat_export_matches_tflm_and_float_accuracy(rng):
  x, y = _task(rng, 400)
  model = models.sequence_classifier("fastgrnn", H, (T, D), C, u_rank=4)
  training.fit(
      model, (x[:300], y[:300]), None, helpers.recipe(epochs=15, batch_size=32, learning_rate=0.01),
      options=helpers.options(verbose=0))
  float_acc = np.mean(model.predict(x[300:], verbose=0).argmax(-1) == y[300:])
  qat = quantization.quantize_model(model)
  training.fit(
      qat, (x[:300], y[:300]), None, helpers.recipe(epochs=3, batch_size=32, learning_rate=0.001),
      options=helpers.options(verbose=0))
  quantization.calibrate(qat, x[:100])  # as the pipeline does after QAT training
  float_model, plan = quantization.export_inputs(qat)
  tflite_bytes = export.convert_step_model(float_model, x[:100], plan=plan)
  q = export.io_quantization(tflite_bytes)
  assert q["h"] == q["h_next"] == plan.state  # the calibrated state grid, shared
  tflm = runtime.TFLMStepRunner(tflite_bytes).run_windows(x[300:])
  pred_tflm = tflm["logits"][:, -1].argmax(-1)
  pred_qat = qat.predict(x[300:], verbose=0).argmax(-1)
  assert np.mean(pred_tflm == pred_qat) >= 0.97
  assert np.mean(pred_tflm == y[300:]) >= float_acc - 0.01 - 0.02  # 1 pp + 2 windows


def _calibrated_export(rng, cell, **kwargs):
  model = models.sequence_classifier(cell, H, (T, D), C, **kwargs)
  for var in model.weights:
    var.assign(rng.normal(0, 0.5, var.shape))
  windows = rng.normal(0, 1.5, (32, T, D)).astype(np.float32)
  qat = quantization.quantize_model(model, windows)
  float_model, plan = quantization.export_inputs(qat)
  return qat, windows, export.convert_step_model(float_model, windows, plan=plan)


_EXPORTS = {"fastgrnn_lowrank": ("fastgrnn", {"w_rank": 2, "u_rank": 4}),
            "fastgrnn_full_w": ("fastgrnn", {"u_rank": 4}),
            "fastrnn": ("fastrnn", {"u_rank": 3})}


@pytest.fixture(scope="module", params=sorted(_EXPORTS))
def calibrated(request):
  """A calibrated QAT model, its windows and its int8 export, shared by the tests."""
  cell, kwargs = _EXPORTS[request.param]
  return _calibrated_export(np.random.default_rng(7), cell, **kwargs)


def test_export_carries_every_calibrated_grid(calibrated):
  qat, _, tflite_bytes = calibrated
  qcell = qat.get_layer("rnn").cell
  plan = quantization.plan(qat)
  grids = export.plan_point_quantization(tflite_bytes, plan)
  assert set(grids) == set(plan.points)  # every plan point found in the int8 graph
  wanted = dict(qcell.ranges, logits=qat.get_layer("logits").output_range)
  assert set(wanted) < set(plan.points)  # every fake-quant point is a plan point
  for point, var in wanted.items():
    scale, zero_point = export.range_to_int8(*var.numpy())
    assert grids[point][1] == zero_point, point
    assert grids[point][0] == pytest.approx(scale, rel=1e-6), point
  pre_scale = grids["pre"][0]
  assert pre_scale <= 2 * quantization.PRE_ACTIVATION_LIMIT / 255 + 1e-9


def _one_step_state_error(qat, tflite_bytes, pairs):
  step = export.step_model(qat, batch_size=None)
  keras_h = step({"x": pairs["x"], "h": pairs["h"]})["h_next"].numpy()
  runner = runtime.TFLMStepRunner(tflite_bytes)
  qx = runner.io["x"]
  x_q = runtime.quantize(pairs["x"], qx["scale"], qx["zero_point"])
  qh = runner.io["h"]
  h_q = runtime.quantize(pairs["h"], qh["scale"], qh["zero_point"])
  errors = []
  for i in range(len(x_q)):
    tflm_h = runner.step(x_q[i:i + 1], h_q=h_q[i:i + 1])[0].astype(np.int32)
    keras_q = runtime.quantize(keras_h[i:i + 1], qh["scale"], qh["zero_point"])
    errors.append(np.abs(tflm_h.reshape(-1) - keras_q.astype(np.int32).reshape(-1)))
  return np.concatenate(errors)


def test_qat_with_int8_kernels_is_bit_exact_with_tflm(calibrated, rng):
  qat, windows, tflite_bytes = calibrated
  quantization.use_int8_kernels(qat, True)
  try:
    pairs = export.representative_pairs(qat, windows, max_pairs=200, seed=1)
    assert np.all(_one_step_state_error(qat, tflite_bytes, pairs) == 0)
    # Whole windows, logits included: every int8 byte equal.
    test = rng.normal(0, 1.5, (12, T, D)).astype(np.float32)
    traces = runtime.TFLMStepRunner(tflite_bytes).run_windows(test)
    io = runtime.step_io(tflite_bytes)["logits"]
    keras_q = runtime.quantize(qat.predict(test, verbose=0), io["scale"], io["zero_point"])
    np.testing.assert_array_equal(keras_q, traces["logits_q"][:, -1])
  finally:
    quantization.use_int8_kernels(qat, False)


def test_fake_quant_on_the_grids_is_close_and_uncalibrated_is_not(rng):
  qat, windows, tflite_bytes = _calibrated_export(rng, "fastgrnn", u_rank=4)
  pairs = export.representative_pairs(qat, windows, max_pairs=200, seed=1)
  err = _one_step_state_error(qat, tflite_bytes, pairs)
  # Float fake-quant on the same grids: only the kernels' double rounding differs.
  assert np.mean(err == 0) >= 0.97 and np.mean(err) <= 0.05, (np.mean(err == 0), err.max())
  # Without the intermediate grids (the converter's own calibration), far more differ.
  qat.get_layer("rnn").cell.calibrated.assign(0.0)
  qat.get_layer("logits").calibrated.assign(0.0)
  uncalibrated = export.convert_step_model(quantization.float_twin(qat), windows)
  err_before = _one_step_state_error(qat, uncalibrated, pairs)
  assert np.mean(err_before) > 2 * np.mean(err)


def test_int8_input_rounds_as_tflite_quantize_near_a_half_step():
  """x / scale = 1.499995 (a har6 imu_gravity input): QUANTIZE gives round(1.499995) = 1,
  TF's float32 fake-quant rounded it to 2 and Keras QAT left TFLM by up to 13 LSB of h."""
  scale, zero_point = 0.053065523505210876, 25  # the x grid of that run
  x = np.float32(0.07959802)
  assert runtime.quantize(x, scale, zero_point) == 26
  # One unit, W = 1 and U = 0 on one grid: pre carries the int8 x unchanged.
  cell = quantization.QuantizedFastGRNNCell(1)
  cell.build((None, 1))
  cell.w_factors[0].assign([[1.0]])
  cell.u_factors[0].assign([[0.0]])
  for point in ("x", "xw", "hu", "pre"):
    cell.ranges[point].assign(
        quantization._grid_ends(scale, zero_point))
  cell.calibrated.assign(1.0)
  cell.int8_exact.assign(1.0)
  pre = cell.pre_activation(tf.constant([[x]]), tf.zeros([1, 1]))
  assert float(cell._grid("x")[0]) == scale  # pylint: disable=protected-access
  assert runtime.quantize(pre.numpy(), scale, zero_point).item() == 26


def test_int8_kernels_refuse_a_float_model(rng):
  with pytest.raises(ValueError, match="not a QAT model"):
    quantization.use_int8_kernels(models.sequence_classifier("fastgrnn", H, (T, D), C))


@pytest.mark.slow
def test_qat_within_one_point_of_float_on_real_har2():
  """A small real task: HAR-2 windows (the installed UCI HAPT data), 4x subsampled."""
  import data  # pylint: disable=import-outside-toplevel
  ds = data.load_dataset("har2", seed=0)
  pick = np.random.default_rng(0)
  train = pick.choice(len(ds.x_train), 1200, replace=False)
  test = pick.choice(len(ds.x_test), 600, replace=False)
  x_tr, y_tr = ds.x_train[train, ::4], ds.y_train[train]
  x_te, y_te = ds.x_test[test, ::4], ds.y_test[test]
  training.set_seed(0)
  model = models.sequence_classifier("fastgrnn", 16, x_tr.shape[1:], 2, u_rank=4)
  training.fit(
      model, (x_tr, y_tr), None, helpers.recipe(epochs=6, batch_size=32, learning_rate=0.01),
      options=helpers.options(verbose=0))
  float_acc = np.mean(model.predict(x_te, verbose=0).argmax(-1) == y_te)
  qat = quantization.quantize_model(model, x_tr[:128])
  training.fit(
      qat, (x_tr, y_tr), None, helpers.recipe(epochs=2, batch_size=32, learning_rate=0.001),
      options=helpers.options(verbose=0))
  quantization.calibrate(qat, x_tr[:128])
  quantization.use_int8_kernels(qat, True)
  qat_acc = np.mean(qat.predict(x_te, verbose=0).argmax(-1) == y_te)
  print(f"HAR-2 subset: float {float_acc:.4f}, QAT (int8 kernels) {qat_acc:.4f}")
  assert float_acc > 0.9  # the task is learnt at all
  assert qat_acc >= float_acc - 0.01, (float_acc, qat_acc)
  # And the int8 model TFLM runs makes the same decisions.
  float_model, plan = quantization.export_inputs(qat)
  tflite_bytes = export.convert_step_model(float_model, x_tr[:128], plan=plan)
  traces = runtime.TFLMStepRunner(tflite_bytes).run_windows(x_te[:100])
  np.testing.assert_array_equal(traces["logits"][:, -1].argmax(-1),
                                qat.predict(x_te[:100], verbose=0).argmax(-1))


def test_state_grid_is_calibrated_when_h_leaves_minus_one_one(rng):
  # zeta, nu and the biases set so that h grows to several units: h* = (ζ(1−z)+ν) h̃ /
  # (1−z) ≈ 7 with z ≈ 0.88, ν ≈ 0.95, h̃ ≈ 0.96. A fixed [-1, 1) grid would clip it; the
  # calibrated grid covers it, and Keras QAT (int8 kernels) and TFLM agree byte for byte.
  t = 24
  model = models.sequence_classifier("fastgrnn", H, (t, D), C)
  for var in model.weights:
    var.assign(rng.normal(0, 0.1, var.shape))
  cell = model.get_layer("rnn").cell
  for var, value in ((cell.zeta, -3.0), (cell.nu, 3.0), (cell.bias_gate, 2.0),
                     (cell.bias_update, 2.0)):
    var.assign(value + rng.normal(0, 0.1, var.shape))
  x = rng.normal(0, 1.0, (16, t, D)).astype(np.float32)
  float_h = stepping.run_steps(model, x)["h_next"]
  assert float_h.max() > 5.0  # the set-up does leave [-1, 1]
  qat = quantization.quantize_model(model, x)
  plan = quantization.plan(qat)
  scale, zero_point = plan.state
  top = (127 - zero_point) * scale
  assert top >= 0.9 * float_h.max()  # calibrated on the deployed (rounded) trajectories
  quantization.use_int8_kernels(qat, True)
  qat_h = stepping.run_steps(qat, x)["h_next"]
  # Rounding that the recurrence carries (≈ 1.4 of 21 here), not clipping (≈ 20 on a
  # [-1, 1) grid).
  assert np.abs(qat_h - float_h).max() < 0.1 * float_h.max()
  source, _ = quantization.export_inputs(qat)
  tflite_bytes = export.convert_step_model(source, x, plan=plan)
  assert export.io_quantization(tflite_bytes)["h"] == plan.state
  tflm = runtime.TFLMStepRunner(tflite_bytes).run_windows(x)
  np.testing.assert_array_equal(runtime.quantize(qat_h, scale, zero_point), tflm["h_q"])
