"""The mean read-out (``readout="mean"``): the window's logits are the mean of the
per-step logits; int8, the argmax of their int32 sum. Layout, numerics, QAT, pruning,
export, the pipeline's flag and resume check, device files, the sweep's trials."""

import dataclasses
import json

import numpy as np
import pytest

import tf_fastgrnn
from tf_fastgrnn import device_files
from tf_fastgrnn import export
from tf_fastgrnn import lstm_int16
from tf_fastgrnn import models
from tf_fastgrnn import parity
from tf_fastgrnn import pruning
from tf_fastgrnn import quantization
from tf_fastgrnn import runtime
from tf_fastgrnn import stepping
from tf_fastgrnn import training
from tf_fastgrnn._keras import keras
from tests import helpers
from tests.test_qat_activations import assert_qat_equals_tflm_every_step

T, D, H, C = 5, 3, 4, 3


def _sigmoid(v):
  return 1.0 / (1.0 + np.exp(-v))


def _fastrnn_reference(weights, x):
  """FastRNN (full rank, tanh) and its Dense, NumPy: the logits after every step."""
  w, u, b, alpha, beta, kernel, bias = weights
  h = np.zeros((len(x), u.shape[0]))
  logits = []
  for t in range(x.shape[1]):
    h = _sigmoid(alpha) * np.tanh(x[:, t] @ w + h @ u + b) + _sigmoid(beta) * h
    logits.append(h @ kernel + bias)
  return np.stack(logits, 1)


@pytest.mark.parametrize("readout", ["last", "mean"])
def test_classifier_matches_a_numpy_reference(readout, rng):
  model = models.sequence_classifier("fastrnn", H, (T, D), C, readout=readout)
  weights = [rng.normal(0, 0.5, (D, H)), rng.normal(0, 0.5, (H, H)), rng.normal(0, 0.3, H),
             np.array([-0.5]), np.array([1.0]), rng.normal(0, 0.7, (H, C)),
             rng.normal(0, 0.2, C)]
  cell = stepping.parts(model)[0].cell
  for var, value in zip([cell.w_factors[0], cell.u_factors[0], cell.bias_update, cell.alpha,
                         cell.beta],
                        weights[:5]):
    var.assign(value)
  dense = model.get_layer("logits")
  dense.kernel.assign(weights[5])
  dense.bias.assign(weights[6])
  x = rng.normal(0, 1, (6, T, D))
  steps = _fastrnn_reference(weights, x)
  want = steps.mean(1) if readout == "mean" else steps[:, -1]
  np.testing.assert_allclose(model(x.astype(np.float32)).numpy(), want, atol=1e-5)
  assert stepping.readout(model) == readout
  # The step model is the same for both read-outs: per-step logits, as the reference.
  np.testing.assert_allclose(stepping.run_steps(model, x)["logits"], steps, atol=1e-5)
  assert [type(l).__name__ for l in model.layers[1:]] == (
      ["RNN", "Dense"] + (["GlobalAveragePooling1D"] if readout == "mean" else []))


def test_window_logits_int8_are_the_devices_integers():
  zp = -3
  # Window 0: the last step says class 1, the sum over the steps class 0.
  # Window 1: the sums of classes 1 and 2 tie (9 each): the lowest index wins.
  q = np.array([[[7, -3, -3], [7, -3, -3], [-3, 0, -3]],
                [[-3, 0, 2], [-3, 2, -2], [-3, -2, 0]]], np.int8)
  sums = stepping.window_logits(q, "mean", zp)
  assert sums.dtype == np.int32
  np.testing.assert_array_equal(sums, [[20, 3, 0], [0, 9, 9]])
  np.testing.assert_array_equal(stepping.window_logits(q, "last", zp), [[0, 3, 0], [0, 1, 3]])
  np.testing.assert_array_equal(stepping.window_classes(q, "mean", zp), [0, 1])
  np.testing.assert_array_equal(stepping.window_classes(q, "last", zp), [1, 2])
  # The mean logit in float is scale * sum / T, whose argmax is the sum's.
  scale = 0.25
  floats = scale * (q.astype(np.float32) - zp)
  np.testing.assert_allclose(stepping.window_logits(floats, "mean"), scale * sums / 3)
  # No overflow: 1000 steps at the int8 extremes.
  wide = np.tile(np.array([[[127, -128]]], np.int8), (1, 1000, 1))
  np.testing.assert_array_equal(stepping.window_logits(wide, "mean", -128), [[255000, 0]])


@pytest.mark.parametrize("args,match", [
    (dict(step_logits=np.zeros((2, 3, 4), np.int8), readout_name="max"), "readout must be"),
    (dict(step_logits=np.zeros((2, 4), np.int8), readout_name="mean"), r"\[N, T, C\]"),
    (dict(step_logits=np.zeros((2, 3, 4)), readout_name="mean", zero_point=0),
     "must be int8"),
])
def test_window_logits_refuse_bad_input(args, match):
  with pytest.raises(ValueError, match=match):
    stepping.window_logits(**args)


def _mean_functional():
  x = keras.Input((T, D), name="frames")
  h = keras.layers.RNN(tf_fastgrnn.FastGRNNCell(H, u_rank=2), return_sequences=True,
                       name="encoder")(x)
  logits = keras.layers.Dense(C, name="head")(h)
  return keras.Model(x, keras.layers.GlobalAveragePooling1D(name="avg")(logits))


def _seq(*layers):
  return keras.Sequential([keras.Input((T, D)), *layers])


def test_parts_accepts_the_mean_layout_sequential_and_functional():
  seq = _seq(tf_fastgrnn.FastGRNN(H, return_sequences=True), keras.layers.Dense(C),
             keras.layers.GlobalAveragePooling1D())
  func = _mean_functional()
  for model in (seq, func):
    rnn, dense = stepping.parts(model)
    assert isinstance(rnn, keras.layers.RNN) and isinstance(dense, keras.layers.Dense)
    assert stepping.readout(model) == "mean"
  assert [l.name for l in stepping.parts(func)] == ["encoder", "head"]


@pytest.mark.parametrize("model,match", [
    (lambda: _seq(tf_fastgrnn.FastGRNN(H, return_sequences=True), keras.layers.Dense(C),
                  keras.layers.GlobalMaxPooling1D()),
     r"got layers \['RNN', 'Dense', 'GlobalMaxPooling1D'\]"),
    (lambda: _seq(tf_fastgrnn.FastGRNN(H, return_sequences=True),
                  keras.layers.Dense(C, activation="softmax"),
                  keras.layers.GlobalAveragePooling1D()), "activation 'softmax'"),
    (lambda: _seq(tf_fastgrnn.FastGRNN(H, return_sequences=True),
                  keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(C)),
     r"got layers \['RNN', 'GlobalAveragePooling1D', 'Dense'\]"),
    (lambda: _seq(tf_fastgrnn.FastGRNN(H, return_sequences=True), keras.layers.Dense(C),
                  keras.layers.GlobalAveragePooling1D(keepdims=True),
                  keras.layers.Flatten()), r"got layers"),
    (lambda: _seq(tf_fastgrnn.FastGRNN(H, return_sequences=True), keras.layers.Dense(C),
                  keras.layers.GlobalAveragePooling1D(data_format="channels_first")),
     "channels_last"),
    (lambda: _seq(tf_fastgrnn.FastGRNN(H, return_sequences=True), keras.layers.Dense(C)),
     "return_sequences=True"),
])
def test_near_misses_of_the_mean_layout_are_refused(model, match):
  with pytest.raises(ValueError, match=match):
    stepping.parts(model())
  with pytest.raises(ValueError, match=match):
    stepping.readout(model())
  with pytest.raises(ValueError, match=match):
    quantization.quantize_model(model())


def test_sequence_classifier_refuses_an_unknown_readout():
  with pytest.raises(ValueError, match="readout must be one of"):
    models.sequence_classifier("gru", 4, (T, D), C, readout="max")


@pytest.fixture(scope="module")
def mean_qat():
  """A mean read-out FastGRNN, QAT-trained one epoch, calibrated, exported."""
  rng = np.random.default_rng(7)
  model = helpers.random_classifier(rng, "fastgrnn", H, (T, D), C, std=0.6, u_rank=3,
                                    readout="mean")
  windows = rng.normal(0, 1.5, (16, T, D)).astype(np.float32)
  y = rng.integers(0, C, len(windows))
  qat = quantization.quantize_model(model, windows)
  training.fit(
      qat, (windows, y), None, helpers.recipe(epochs=1, batch_size=8, learning_rate=0.001),
      options=helpers.options(verbose=0))
  quantization.calibrate(qat, windows)
  float_model, plan = quantization.export_inputs(qat)
  tflite_bytes = export.convert_step_model(float_model, windows, plan=plan)
  return model, qat, float_model, plan, tflite_bytes, windows, y


def test_qat_keeps_the_mean_readout_and_equals_tflm(mean_qat):
  model, qat, float_model, plan, tflite_bytes, windows, _ = mean_qat
  assert stepping.readout(qat) == "mean" and quantization.is_qat_model(qat)
  assert stepping.readout(float_model) == "mean"
  # Per step, every state and logits byte as TFLM's (the tolerance of the last read-out).
  assert_qat_equals_tflm_every_step(qat, tflite_bytes, windows)
  # The window: Keras QAT's mean of its int8 per-step logits is scale * int32 sum / T,
  # and its class the device's.
  tflm = runtime.TFLMStepRunner(tflite_bytes).run_windows(windows)
  io = runtime.step_io(tflite_bytes)["logits"]
  sums = stepping.window_logits(tflm["logits_q"], "mean", io["zero_point"])
  quantization.use_int8_kernels(qat, True)
  try:
    keras_mean = qat.predict(windows, verbose=0)
    rebuilt = quantization.from_plan(float_model, plan).predict(windows, verbose=0)
  finally:
    quantization.use_int8_kernels(qat, False)
  np.testing.assert_allclose(keras_mean, io["scale"] * sums / T, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(rebuilt, keras_mean)
  np.testing.assert_array_equal(keras_mean.argmax(-1), stepping.window_classes(
      tflm["logits_q"], "mean", io["zero_point"]))
  del model


def test_numerics_diff_uses_the_mean_readout(mean_qat):
  model, _, float_model, plan, tflite_bytes, windows, y = mean_qat
  result = parity.diff_numerics(model, tflite_bytes, windows[:8], y[:8],
                                source_model=float_model, plan=plan)
  assert result["readout"] == "mean"
  assert result["summary"]["qat_vs_tflm_top1"] == 1.0
  assert result["vs_tflm"]["keras_qat"]["logits_lsb_max"] < 1e-3  # float mean of equal bytes
  runner = runtime.TFLMStepRunner(tflite_bytes)
  tflm = runner.run_windows(windows[:8])
  zero_point = runtime.step_io(tflite_bytes)["logits"]["zero_point"]
  classes = stepping.window_classes(tflm["logits_q"], "mean", zero_point)
  assert result["accuracy"]["tflm"] == np.mean(classes == y[:8])
  np.testing.assert_array_equal(runner.window_classes(tflm["logits_q"], "mean"), classes)
  lite = runtime.LiteRTStepRunner(tflite_bytes)
  np.testing.assert_array_equal(
      lite.window_classes(lite.run_windows(windows[:8])["logits_q"], "mean"), classes)


def test_the_window_model_and_the_int16_lstm_refuse_the_mean_readout(rng):
  model = helpers.random_classifier(rng, "fastgrnn", H, (T, D), C, readout="mean")
  with pytest.raises(ValueError, match="readout=mean"):
    export.convert_window_model(model, rng.normal(0, 1, (4, T, D)))
  lstm = helpers.random_classifier(rng, "lstm", H, (T, D), C, readout="mean")
  with pytest.raises(ValueError, match="readout=mean"):
    lstm_int16.convert_window_model(lstm, rng.normal(0, 1, (4, T, D)))


def test_three_phase_pruning_keeps_the_mean_readout(rng):
  model = models.sequence_classifier("fastgrnn", 8, (T, D), C, readout="mean", u_rank=4)
  x = rng.normal(0, 1, (24, T, D)).astype(np.float32)
  y = rng.integers(0, C, len(x))
  result = pruning.train_three_phase(
      model, (x, y), (x, y), pruning.SparsitySpec(w=0.5, u=0.5),
      helpers.recipe(epochs=3, batch_size=8, learning_rate=0.01),
      options=helpers.options(verbose=0))
  assert stepping.readout(result.model) == "mean"
  report = pruning.sparsity_report(result.model)["matrices"]
  assert report["rnn/W"]["sparsity"] == pytest.approx(0.5, abs=0.05)
  assert quantization.is_qat_model(quantization.quantize_model(result.model))


def test_a_checkpoint_does_not_resume_with_the_other_readout(tmp_path, rng):
  x = rng.normal(0, 1, (16, T, D)).astype(np.float32)
  y = rng.integers(0, C, len(x))
  args = dict(epochs=1, batch_size=8, learning_rate=0.01, verbose=0,
              checkpoint_dir=tmp_path / "ckpt")
  training.fit(models.sequence_classifier("gru", 4, (T, D), C, readout="mean"), (x, y),
               None, **helpers.fit_args(**args))
  last = models.sequence_classifier("gru", 4, (T, D), C)
  with pytest.raises(ValueError, match="readout"):
    training.fit(last, (x, y), None, **helpers.fit_args(**dict(args, epochs=2)))
  # The same read-out resumes.
  training.fit(models.sequence_classifier("gru", 4, (T, D), C, readout="mean"), (x, y),
               None, **helpers.fit_args(**dict(args, epochs=2)))


def _settings(tflite_bytes, readout):
  return device_files.settings_from_model(
      tflite_bytes,
      device_files.Task(
          labels=["a", "b", "c"], steps_per_window=T, feature_mean=[0.0] * D, feature_std=[1.0] * D,
          readout=readout),
      arena_used=4000)


@pytest.mark.parametrize("readout", ["last", "mean"])
def test_device_files_state_the_readout_and_the_window_classes(tmp_path, readout):
  _, tflite_bytes, windows, _ = helpers.converted_classifier(
      "fastgrnn", H, (T, D), C, windows=6, readout=readout)
  traces = runtime.TFLMStepRunner(tflite_bytes).run_windows(windows)
  vectors = dict({k: traces[k] for k in ("x_q", "h_q", "logits_q")}, labels=[0] * 6)
  device_files.write_device_files(tmp_path, tflite_bytes, _settings(tflite_bytes, readout),
                                  vectors)
  settings_h = (tmp_path / "model_settings.h").read_text()
  assert f"constexpr bool kReadoutMean = {'true' if readout == 'mean' else 'false'};" in (
      settings_h)
  zero_point = runtime.step_io(tflite_bytes)["logits"]["zero_point"]
  want = stepping.window_classes(traces["logits_q"], readout, zero_point)
  source = (tmp_path / "test_vectors.cc").read_text()
  line = next(l for l in source.splitlines() if l.startswith("const int kTestWindowClasses"))
  assert line.endswith("{" + ", ".join(str(int(c)) for c in want) + "};")
  with pytest.raises(ValueError, match="readout must be one of"):
    _settings(tflite_bytes, "max")


def test_config_checks_the_readout_and_resume_compares_it(tmp_path):
  from pipelines import config as config_lib  # pylint: disable=import-outside-toplevel
  from pipelines import stages  # pylint: disable=import-outside-toplevel
  base = config_lib.Config.from_flags(dict(
      dataset="npz", data_dir="x.npz", cell="fastgrnn", units=4, w_rank=None, u_rank=None,
      sparsity_w=0.0, sparsity_u=0.0, epochs=3, qat=True, qat_epochs=1, batch_size=8,
      learning_rate=0.01, qat_learning_rate=0.001, seed=0, output_dir=str(tmp_path / "run"),
      resume=False, max_test_windows=None, num_test_vectors=1, arena_margin=0))
  assert base.readout == "last"
  with pytest.raises(ValueError, match="--readout must be one of last, mean, got 'max'"):
    config_lib.validate_config(dataclasses.replace(base, readout="max"))
  out = tmp_path / "run"
  out.mkdir()
  old = dataclasses.asdict(base)
  # A run folder made before the flag (and the schema): its read-out was the last step.
  del old["readout"], old["schema_version"]
  (out / "flags.json").write_text(json.dumps(old))
  stages._check_resume(
      dataclasses.replace(base, resume=True), out)
  with pytest.raises(ValueError, match="'readout': \\('last', 'mean'\\)"):
    stages._check_resume(
        dataclasses.replace(base, resume=True, readout="mean"), out)
  assert "readout=mean" in stages._window_model_skip_reason(  # pylint: disable=protected-access
      dataclasses.replace(base, readout="mean"), T)


def test_readout_flag_is_refused_before_any_work(tmp_path):
  from tests.test_pipeline import _run  # pylint: disable=import-outside-toplevel
  out = tmp_path / "run"
  result = _run(["--readout=max", f"--output_dir={out}"], tmp_path)
  assert result.returncode == 2
  assert "--readout must be one of last, mean, got 'max'" in result.stderr
  assert not out.exists()


def test_sweep_mean_trials_are_labelled_ablations():
  from benchmarks import sweep  # pylint: disable=import-outside-toplevel
  points = {p.file(0): p for p in sweep.schedule() if p.kw.get("mean")}
  assert set(points) == {"har6/fastgrnn_h24_mean_seed0.json",
                         "har6/fastgrnn_lsq_h32r4-8s50_mean_seed0.json",
                         "har6/gru_h12_mean_seed0.json",
                         "har6/fastgrnn_h24_grav_mean_seed0.json"}
  assert sweep.settings_for(points["har6/fastgrnn_h24_grav_mean_seed0.json"])[
      "imu_frontend"] == "imu_gravity"
  for name, point in points.items():
    assert point.tier == 5
    settings = sweep.settings_for(point)
    assert settings["readout"] == "mean"
    assert settings["qat_epochs"] == (0 if "gru" in name else 4)
  # Points without the knob carry no readout key: their result files keep matching.
  assert all("readout" not in sweep.settings_for(p) for p in sweep.schedule()
             if not p.kw.get("mean"))
  stats = {"int8_tflm_macro_f1": (0.99, 0.0, 5), "weights_dense_int8_bytes": (900, 0, 5),
           "seeds": list(range(5)), "knobs": {"mean": True}}
  assert sweep.best_under({("har6", "fastgrnn", "h24_mean"): stats}, "har6",
                          sweep.FASTGRNN_FAMILY, 1024, "int8_tflm_macro_f1") is None
  assert sweep.ABLATIONS["mean"] == "mean read-out"


@pytest.mark.slow
def test_end_to_end_tiny_mean_readout_and_its_resume_check(tmp_path, rng):
  from tests.test_pipeline import _run, tiny_args  # pylint: disable=import-outside-toplevel
  args, out = tiny_args(tmp_path, rng)
  result = _run(args + ["--readout=mean"], tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "readout=mean" in result.stdout  # the window model's skip, said in one line
  assert not (out / "model_int8_window.tflite").exists()
  assert json.loads((out / "flags.json").read_text())["readout"] == "mean"
  report = json.loads((out / "report.json").read_text())
  assert report["export"]["readout"] == "mean"
  assert "Read-out: mean" in (out / "report.md").read_text()
  assert "constexpr bool kReadoutMean = true;" in (out / "device/model_settings.h").read_text()
  numerics = json.loads((out / "numerics" / "numerics.json").read_text())
  assert numerics["readout"] == "mean" and numerics["summary"]["qat_vs_tflm_top1"] == 1.0
  # The report's int8 accuracy is the window sums' (from the TFLM evaluation's traces).
  with np.load(out / "tflm_eval.npz") as ev:
    assert report["accuracy"]["int8_tflm"] == pytest.approx(np.mean(ev["pred"] == ev["y_test"]))
  assert report["accuracy"]["int8_tflm"] == pytest.approx(numerics["accuracy"]["tflm"])
  # The same folder cannot resume with the other read-out.
  again = _run(args + ["--resume"], tmp_path)
  assert again.returncode != 0 and "'readout': ('mean', 'last')" in again.stderr
