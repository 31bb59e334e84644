"""Device files: the C array is the .tflite, the settings match the model, vectors fit."""

import dataclasses
import re
import shutil
import subprocess

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
      tflite_bytes,
      device_files.Task(
          labels=['a', 'b', 'c'], steps_per_window=T, feature_mean=[0.1, 0.2, 0.3],
          feature_std=[1.0, 2.0, 3.0], frontend='raw_imu'),
      arena_used=4000, arena_margin=512)
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
    device_files.settings_from_model(
        tflite_bytes,
        device_files.Task(
            labels=['a', 'b'], steps_per_window=T, feature_mean=[0] * D, feature_std=[1] * D),
        arena_used=1)
  with pytest.raises(ValueError, match="feature_mean/std must have 3 values"):
    device_files.settings_from_model(
        tflite_bytes,
        device_files.Task(
            labels='abc', steps_per_window=T, feature_mean=[0] * 2, feature_std=[1] * 2),
        arena_used=1)


def test_rewrite_replaces_the_whole_folder(exported, tmp_path):
  tflite_bytes, settings, vectors, _ = exported
  out = tmp_path / "dev"
  device_files.write_device_files(out, tflite_bytes, settings, vectors)
  device_files.write_device_files(out, tflite_bytes, settings)  # no vectors this time
  assert not (out / "test_vectors.cc").exists()
  assert sorted(p.name for p in tmp_path.iterdir()) == ["dev"]


def test_a_folder_with_other_files_is_refused_and_left_alone(exported, tmp_path):
  tflite_bytes, settings, vectors, _ = exported
  out = tmp_path / "mine"
  out.mkdir()
  (out / "notes.txt").write_text("mine")
  (out / "model_settings.h").write_text("// mine too")
  with pytest.raises(ValueError, match=r"holds files this tool did not write \(notes.txt\)"):
    device_files.write_device_files(out, tflite_bytes, settings, vectors)
  assert sorted(p.name for p in out.iterdir()) == ["model_settings.h", "notes.txt"]
  assert (out / "model_settings.h").read_text() == "// mine too"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_a_folder_or_link_named_like_a_device_file_is_the_users(exported, tmp_path):
  """Issue 26: a folder ``model.tflite/`` of the user's in the device folder passed the
  name check and was deleted with the old folder."""
  tflite_bytes, settings, vectors, _ = exported
  out = tmp_path / "dev"
  device_files.write_device_files(out, tflite_bytes, settings, vectors)
  (out / "model.tflite").unlink()
  (out / "model.tflite").mkdir()
  (out / "model.tflite" / "mine.bin").write_bytes(b"mine")
  (tmp_path / "precious.h").write_text("// mine")
  (out / "model_settings.h").unlink()
  (out / "model_settings.h").symlink_to(tmp_path / "precious.h")
  with pytest.raises(ValueError, match=r"did not write \(model.tflite/, model_settings.h\)"):
    device_files.write_device_files(out, tflite_bytes, settings, vectors)
  assert (out / "model.tflite" / "mine.bin").read_bytes() == b"mine"
  assert (out / "model_settings.h").is_symlink()
  assert (tmp_path / "precious.h").read_text() == "// mine"


def _header(tflite_bytes, tmp_path, **kwargs):
  io = runtime.step_io(tflite_bytes)
  dim, classes = io["x"]["shape"][-1], io["logits"]["shape"][-1]
  args = dict(labels=[f"k{i}" for i in range(classes)], steps_per_window=T,
              feature_mean=[0.0] * dim, feature_std=[1.0] * dim, arena_used=1000)
  args.update(kwargs)
  settings = _settings(tflite_bytes, **args)
  device_files.write_device_files(tmp_path / "dev", tflite_bytes, settings)
  return settings, (tmp_path / "dev" / "model_settings.h").read_text()


def _settings(tflite_bytes, arena_used, **task):
  return device_files.settings_from_model(tflite_bytes, device_files.Task(**task),
                                          arena_used=arena_used)


def test_float_literals_are_valid_cpp(exported, tmp_path):
  tflite_bytes, _, _, _ = exported
  _, header = _header(tflite_bytes, tmp_path, feature_mean=[0, 1, -2], feature_std=[1, 2, 3])
  assert "kFeatureMean[kInputDim] = {0.0f, 1.0f, -2.0f};" in header
  assert "kFeatureStd[kInputDim] = {1.0f, 2.0f, 3.0f};" in header
  assert not re.search(r"[^\w.]-?\d+f\b", header)  # "1f" is not a C++ literal


def test_window_task_header_has_no_smoother(exported, tmp_path):
  tflite_bytes, _, _, _ = exported
  settings, header = _header(tflite_bytes, tmp_path)
  assert settings.smoothing_steps == 0
  assert "#define TF_FASTGRNN_KEYWORD_SPOTTING" not in header
  assert "kSmoothingSteps" not in header and "kDetectionThreshold" not in header


@pytest.mark.parametrize("steps, smoothing", [(4, 4), (50, 10)])
def test_keyword_spotting_header_sizes_the_smoother(exported, tmp_path, steps, smoothing):
  tflite_bytes, _, _, _ = exported
  settings, header = _header(tflite_bytes, tmp_path, steps_per_window=steps,
                             keyword_spotting=True)
  assert settings.smoothing_steps == smoothing  # at most one window of steps
  assert "#define TF_FASTGRNN_KEYWORD_SPOTTING 1" in header
  assert f"constexpr int kSmoothingSteps = {smoothing};" in header


def test_single_state_model_lists_h_only(exported, tmp_path):
  tflite_bytes, _, _, _ = exported
  settings, header = _header(tflite_bytes, tmp_path)
  io = runtime.step_io(tflite_bytes)
  assert settings.states == ("h",)
  for line in ("kNumStates = 1;", "kNumModelInputs = 2;", "kNumModelOutputs = 2;",
               "kStateSizes[kNumStates] = {kHiddenDim};",
               "kStateInIndices[kNumStates] = {kStateInIndex};",
               "kStateBytes = kHiddenDim;", f"kStateOutIndex = {io['h_next']['index']};"):
    assert line in header, line
  assert "kCell" not in header


@pytest.fixture(scope="module")
def lstm_model():
  _, tflite_bytes, _, _ = helpers.converted_classifier("lstm", 5, (T, D), 2, windows=4)
  return tflite_bytes


def test_lstm_header_lists_h_and_c(lstm_model, tmp_path):
  settings, header = _header(lstm_model, tmp_path)
  io = runtime.step_io(lstm_model)
  assert settings.states == ("h", "c") and settings.cell_dim == 5
  for line in ("kNumStates = 2;", "kNumModelInputs = 3;", "kNumModelOutputs = 3;",
               "kCellDim = 5;", f"kCellInIndex = {io['c']['index']};",
               f"kCellOutIndex = {io['c_next']['index']};",
               f"kCellInZeroPoint = {io['c']['zero_point']};",
               "kStateSizes[kNumStates] = {kHiddenDim, kCellDim};",
               "kStateInIndices[kNumStates] = {kStateInIndex, kCellInIndex};",
               "kStateOutZeroPoints[kNumStates] = {kStateOutZeroPoint, kCellOutZeroPoint};",
               'kStateNames[kNumStates] = {"h", "c"};', "kStateBytes = kHiddenDim + kCellDim;"):
    assert line in header, line
  # x, h and c are three distinct input positions: the app must feed all three.
  assert sorted(io[n]["index"] for n in ("x", "h", "c")) == [0, 1, 2]


def test_model_the_app_cannot_run_is_refused(exported, lstm_model):
  tflite_bytes, _, _, _ = exported
  io = runtime.step_io(tflite_bytes)
  extra = dict(io, z=dict(io["h"]))
  with pytest.raises(ValueError, match="tflm_app runs step models"):
    device_files._check_app_can_run(tflite_bytes, extra)
  no_c_out = {k: v for k, v in runtime.step_io(lstm_model).items() if k != "c_next"}
  with pytest.raises(ValueError, match="tflm_app runs step models"):
    device_files._check_app_can_run(lstm_model, no_c_out)
  lstm_io = runtime.step_io(lstm_model)
  wider = dict(lstm_io, c_next=dict(lstm_io["c_next"], shape=(1, 6)))
  with pytest.raises(ValueError, match="state c is"):
    device_files._check_app_can_run(lstm_model, wider)
  device_files._check_app_can_run(lstm_model, lstm_io)  # the real LSTM passes


def test_fused_build_gets_an_arena_with_room_for_the_decoded_options(exported, tmp_path):
  tflite_bytes, settings, vectors, _ = exported
  device_files.write_device_files(tmp_path / "dev", tflite_bytes, settings, vectors)
  header = (tmp_path / "dev" / "model_settings.h").read_text()
  assert "TF_FASTGRNN_FUSED_OP" not in header  # no fused model: one arena size
  fused_settings = dataclasses.replace(settings, fused_decoded_bytes=1234)
  device_files.write_device_files(tmp_path / "dev2", tflite_bytes, fused_settings, vectors)
  header = (tmp_path / "dev2" / "model_settings.h").read_text()
  fused_block = header.split("#elif defined(TF_FASTGRNN_FUSED_OP)", 1)[1].split("#else", 1)
  assert "kTensorArenaSize = 5746;" in fused_block[0]  # 4000 + 1234 + 512
  assert "kTensorArenaSize = 4512;" in fused_block[1].split("#endif", 1)[0]


def test_frontend_constants_are_written_and_checked(exported, tmp_path):
  tflite_bytes, _, _, _ = exported
  settings, header = _header(tflite_bytes, tmp_path, frontend="imu_gravity",
                             frontend_constants={"kGravityAlpha": 0.036997346603025116})
  assert settings.frontend_constants == (("kGravityAlpha", 0.036997346603025116),)
  assert 'kFrontend = "imu_gravity";' in header
  assert "constexpr float kGravityAlpha = 0.0369973466f;" in header
  _, plain = _header(tflite_bytes, tmp_path / "plain")
  assert "kGravityAlpha" not in plain
  for bad in ({"gravity": 0.5}, {"kAlpha": float("nan")}, {"k-a": 1.0}):
    with pytest.raises(ValueError, match="frontend constant"):
      _header(tflite_bytes, tmp_path / "bad", frontend_constants=bad)


def test_hostile_labels_frontend_and_origin_compile_to_their_exact_bytes(exported, tmp_path):
  # Labels (an npz's), the front end's name and the model's origin are user text: each
  # becomes a C string literal or comment text, never code. Read back by a C++ program.
  gxx = shutil.which("g++")
  if gxx is None:
    pytest.skip("needs g++ on PATH")
  tflite_bytes, _, _, _ = exported
  from tests.test_c_text import HOSTILE  # pylint: disable=import-outside-toplevel
  hostile = HOSTILE + [""] * (-len(HOSTILE) % C)
  groups = [hostile[i:i + C] for i in range(0, len(hostile), C)]
  main = ('#include <cstdio>\n#include <cstring>\n#include "model_settings.h"\n'
          "int main() {\n  for (int i = 0; i < kNumClasses; ++i)\n"
          '    std::printf("%u:%s", (unsigned)std::strlen(kCategoryLabels[i]), '
          "kCategoryLabels[i]);\n"
          '  std::printf("%u:%s", (unsigned)std::strlen(kFrontend), kFrontend);\n'
          "  return 0;\n}\n")
  for k, labels in enumerate(groups):
    frontend = hostile[(k * 7) % len(hostile)]
    settings = device_files.settings_from_model(
        tflite_bytes,
        device_files.Task(
            labels=labels, steps_per_window=T, feature_mean=[0.0] * D, feature_std=[1.0] * D,
            frontend=frontend),
        arena_used=1000)
    out = tmp_path / f"dev{k}"
    device_files.write_device_files(out, tflite_bytes, settings)
    (out / "main.cc").write_text(main)
    (out / "origin.cc").write_text(device_files.model_data_source(tflite_bytes, frontend))
    exe = out / "main.exe"
    build = subprocess.run([gxx, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-I", str(out),
                            str(out / "main.cc"), str(out / "origin.cc"), "-o", str(exe)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    got = subprocess.run([str(exe)], capture_output=True, check=True).stdout
    assert got == b"".join(b"%d:%s" % (len(s.encode()), s.encode())
                           for s in labels + [frontend]), labels


def test_labels_a_c_string_cannot_hold_are_refused(exported):
  tflite_bytes, _, _, _ = exported
  args = dict(steps_per_window=T, feature_mean=[0.0] * D, feature_std=[1.0] * D,
              arena_used=1000)
  with pytest.raises(ValueError, match=r"label 1 'b\\x00c' holds a NUL character"):
    _settings(tflite_bytes, labels=["a", "b\0c", "d"], **args)
  with pytest.raises(ValueError, match=r"label 2 .* lone surrogate"):
    _settings(tflite_bytes, labels=["a", "b", "\ud800"], **args)
  with pytest.raises(ValueError, match="frontend constant 'k\u00e9'"):
    _settings(tflite_bytes, labels="abc",
              frontend_constants={"k\u00e9": 1.0}, **args)
  with pytest.raises(ValueError, match=r"feature_mean must be finite, got \[0.0, inf, 0.0\]"):
    _settings(tflite_bytes, labels="abc",
              **dict(args, feature_mean=[0, float("inf"), 0]))
