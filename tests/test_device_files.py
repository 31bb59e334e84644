"""Device files: the C array is the .tflite, the settings match the model, vectors fit."""

import re

import numpy as np
import pytest

from tests import helpers
from tf_fastgrnn import device_files
from tf_fastgrnn import export
from tf_fastgrnn import runtime

T, D, H, C = 4, 3, 6, 3


@pytest.fixture(scope="module")
def exported():
  _, tflite_bytes, windows, _ = helpers.converted_classifier("fastgrnn", H, (T, D), C,
                                                             windows=8, w_rank=2)
  traces = runtime.TFLMStepRunner(tflite_bytes).run_windows(windows[:2])
  settings = device_files.settings_from_model(
      tflite_bytes, labels=["a", "b", "c"], steps_per_window=T,
      feature_mean=[0.1, 0.2, 0.3], feature_std=[1.0, 2.0, 3.0], arena_used=4000,
      arena_margin=512, frontend="raw_imu")
  vectors = dict({k: traces[k] for k in ("x_q", "h_q", "logits_q")}, labels=[0, 2])
  return tflite_bytes, settings, vectors, traces


def test_c_array_equals_tflite_bytes(exported, tmp_path):
  tflite_bytes, settings, vectors, _ = exported
  device_files.write_device_files(tmp_path / "dev", tflite_bytes, settings, vectors)
  source = (tmp_path / "dev" / "model_data.cc").read_text()
  assert "alignas(16) const unsigned char g_model_data[]" in source
  body = source.split("{", 1)[1].split("}", 1)[0]
  data = bytes(int(v, 16) for v in re.findall(r"0x([0-9a-f]{2})", body))
  assert data == tflite_bytes
  assert f"g_model_data_len = {len(tflite_bytes)};" in source


def test_settings_state_the_model(exported, tmp_path):
  tflite_bytes, settings, vectors, _ = exported
  device_files.write_device_files(tmp_path / "dev", tflite_bytes, settings, vectors)
  header = (tmp_path / "dev" / "model_settings.h").read_text()
  io = runtime.step_io(tflite_bytes)
  for line in (f"kInputDim = {D};", f"kHiddenDim = {H};", f"kNumClasses = {C};",
               f"kStepsPerWindow = {T};", "kTensorArenaSize = 4512;",
               f"kStateInZeroPoint = {io['h']['zero_point']};",
               f"kStateOutZeroPoint = {io['h_next']['zero_point']};",
               f"kInputIndex = {io['x']['index']};", '{"a", "b", "c"}'):
    assert line in header, line
  ops = re.search(r"#define TF_FASTGRNN_MODEL_OPS\(OP\) (.*)", header).group(1)
  assert ops.split() == [f"OP({device_files._RESOLVER[o]})" for o in export.model_ops(tflite_bytes)]
  scale = float(re.search(r"kStateInScale = ([0-9.e+-]+)f;", header).group(1))
  assert scale == pytest.approx(io["h"]["scale"], rel=1e-7)


def test_test_vectors_hold_the_runtime_outputs(exported, tmp_path):
  tflite_bytes, settings, vectors, traces = exported
  device_files.write_device_files(tmp_path / "dev", tflite_bytes, settings, vectors)
  source = (tmp_path / "dev" / "test_vectors.cc").read_text()
  block = source.split("kTestStates", 1)[1].split("= {", 1)[1].split("}", 1)[0]
  values = np.array([int(v) for v in re.findall(r"-?\d+", block)], np.int8)
  np.testing.assert_array_equal(values, traces["h_q"].reshape(-1))


def test_bad_settings_are_refused(exported):
  tflite_bytes, _, _, _ = exported
  with pytest.raises(ValueError, match="2 labels for a model with 3 classes"):
    device_files.settings_from_model(tflite_bytes, labels=["a", "b"], steps_per_window=T,
                                     feature_mean=[0] * D, feature_std=[1] * D,
                                     arena_used=1)
  with pytest.raises(ValueError, match="feature_mean/std must have 3 values"):
    device_files.settings_from_model(tflite_bytes, labels="abc", steps_per_window=T,
                                     feature_mean=[0] * 2, feature_std=[1] * 2,
                                     arena_used=1)


def test_rewrite_replaces_the_whole_folder(exported, tmp_path):
  tflite_bytes, settings, vectors, _ = exported
  out = tmp_path / "dev"
  device_files.write_device_files(out, tflite_bytes, settings, vectors)
  device_files.write_device_files(out, tflite_bytes, settings)  # no vectors this time
  assert not (out / "test_vectors.cc").exists()
  assert sorted(p.name for p in tmp_path.iterdir()) == ["dev"]
