"""Bad data, damaged checkpoints and damaged run files: one clear line, or a loud warning.

The loaders and library functions are called directly (no training), on small files
each test writes in the real layouts. The CLI-level cases, with an earlier run in the
output folder, are in ``test_bad_inputs.py``.
"""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import data
from data import har
from tests.conftest import REPO
from tests.test_data import _hapt_pickle
from tests.test_data import _recordings
from tests.test_data import _tone
from tests.test_data import _wav


def _npz(path, **overrides):
  rng = np.random.default_rng(0)
  arrays = {"x_train": rng.normal(size=(12, 4, 2)).astype(np.float32),
            "y_train": np.arange(12) % 3,
            "x_test": rng.normal(size=(6, 4, 2)).astype(np.float32),
            "y_test": np.arange(6) % 3}
  arrays.update(overrides)
  np.savez(path, **arrays)
  return path


def _x(n, dtype=np.float32):
  return np.random.default_rng(1).normal(size=(n, 4, 2)).astype(dtype)


NAN_X = _x(12)
NAN_X[7, 2, 1] = np.nan

# (case id, npz arrays overriding the valid default, words the one-line error must hold)
BAD_NPZ = [
    ("y_train longer than x_train", {"y_train": np.arange(15) % 3},
     ["y_train has shape (15,)", "x_train has 12 examples"]),
    ("y_train shorter than x_train", {"y_train": np.arange(10) % 3},
     ["y_train has shape (10,)", "x_train has 12 examples"]),
    ("y_test longer than x_test", {"y_test": np.arange(9) % 3},
     ["y_test has shape (9,)", "x_test has 6 examples"]),
    ("y_val without enough examples", {"x_val": _x(4), "y_val": np.arange(3)},
     ["y_val has shape (3,)", "x_val has 4 examples"]),
    ("complex x", {"x_train": _x(12).astype(np.complex64)},
     ["x_train has dtype complex64", "real numbers"]),
    ("strings as x", {"x_train": np.full((12, 4, 2), "1.0")},
     ["x_train has dtype <U3", "real numbers"]),
    ("strings as labels", {"y_train": np.array(["a", "b", "c"] * 4)},
     ["y_train has dtype <U1", "real numbers"]),
    ("NaN reported at the user's own index", {"x_train": NAN_X},
     ["x_train holds 1 NaN/Inf values", "example 7, step 2, feature 1"]),
    ("2-D x", {"x_train": np.zeros((12, 4), np.float32)},
     ["x_train must be [N, T, D]", "(12, 4)"]),
]


@pytest.mark.parametrize("case,overrides,words", BAD_NPZ, ids=[c[0] for c in BAD_NPZ])
def test_bad_npz_is_refused_in_one_line(tmp_path, case, overrides, words):
  del case
  path = _npz(tmp_path / "d.npz", **overrides)
  before = sorted(tmp_path.iterdir())
  with pytest.raises(ValueError) as e:
    data.load_dataset("npz", path)
  message = str(e.value)
  assert "\n" not in message and str(path) in message, message
  for word in words:
    assert word in message, (word, message)
  assert sorted(tmp_path.iterdir()) == before


def test_random_bytes_npz_is_not_blamed_on_sequences(tmp_path):
  path = tmp_path / "d.npz"
  path.write_bytes(np.random.default_rng(0).bytes(2000))
  with pytest.raises(ValueError, match="not an .npz file") as e:
    data.load_dataset("npz", path)
  assert "variable-length" not in str(e.value)


@pytest.mark.parametrize("have,lacks", [("x_val", "y_val"), ("y_val", "x_val")])
def test_half_a_validation_split_warns(tmp_path, have, lacks):
  extra = {"x_val": _x(3)} if have == "x_val" else {"y_val": np.arange(3)}
  ds = data.load_dataset("npz", _npz(tmp_path / "d.npz", **extra))
  assert any(f"has {have} but no {lacks}" in w for w in ds.meta["warnings"])
  assert len(ds.x_train) + len(ds.x_val) == 12  # validation carved from training


def test_test_classes_absent_from_training_warn(tmp_path):
  ds = data.load_dataset("npz", _npz(tmp_path / "d.npz", y_train=np.arange(12) % 2,
                                     y_test=np.array([0, 1, 2, 2, 1, 0])))
  assert any("test split has classes absent from training: ['2']" in w and
             "2 of 6 examples" in w for w in ds.meta["warnings"]), ds.meta["warnings"]


def test_clean_npz_has_no_warning(tmp_path):
  ds = data.load_dataset("npz", _npz(tmp_path / "d.npz"))
  assert ds.meta["warnings"] == []


def _fsdd(root, rate=8000):
  for digit in range(3):
    for index in (0, 7, 8):
      _wav(root / f"{digit}_jackson_{index}.wav", _tone(300 + 100 * digit, rate), rate)
  return root


@pytest.mark.parametrize("name,samples,rate,reason", [
    ("1_jackson_9.wav", np.zeros(0, np.float32), 8000, "empty"),
    ("2_jackson_9.wav", _tone(500, 16000), 16000, "sample_rate"),
    ("0_jackson_9.wav", _tone(500, 44100), 44100, "sample_rate"),
])
def test_empty_and_other_rate_wavs_are_skipped_and_counted(tmp_path, name, samples, rate,
                                                           reason):
  root = _fsdd(tmp_path / "recordings")
  _wav(root / name, samples, rate)
  ds = data.load_dataset("fsdd", root)
  assert ds.meta["skipped_by_reason"][reason] == 1 and ds.meta["skipped_files"] == 1
  assert ds.meta["sample_rate_hz"] == 8000
  assert len(ds.x_test) == 3 and len(ds.x_train) + len(ds.x_val) == 6  # only the 9 good
  assert any(name in w for w in ds.meta["warnings"]), ds.meta["warnings"]


def test_fsdd_of_only_other_rate_files_is_refused(tmp_path):
  root = _fsdd(tmp_path / "recordings", rate=16000)
  with pytest.raises(ValueError, match="none of the 9 files .* could be used") as e:
    data.load_dataset("fsdd", root)
  assert "16000 Hz, not 8000 Hz" in str(e.value)


def test_damaged_har_cache_is_named_and_rebuilt(monkeypatch, tmp_path, rng, capsys):
  _hapt_pickle(monkeypatch, _recordings(rng))
  first = har.load_recordings(cache_dir=tmp_path)
  (cache,) = tmp_path.glob("hapt_*.npz")
  cache.write_bytes(cache.read_bytes()[:100])  # cut short
  again = har.load_recordings(cache_dir=tmp_path)
  assert f"the HAR cache {cache} is damaged" in capsys.readouterr().out
  assert len(again) == len(first)
  np.testing.assert_array_equal(again[0][1], first[0][1])
  assert len(har.load_recordings(cache_dir=tmp_path)) == len(first)  # rebuilt whole


def test_unwritable_har_cache_names_the_file(monkeypatch, tmp_path, rng):
  _hapt_pickle(monkeypatch, _recordings(rng))
  blocker = tmp_path / "cache"
  blocker.write_text("a file where the cache folder should be\n")
  with pytest.raises((ValueError, OSError)) as e:
    har.load_recordings(cache_dir=blocker)
  assert str(blocker) in str(e.value)


# --- resume from damaged checkpoints ---------------------------------------------------

def _tiny_fit(ckpt_dir, epochs):
  from tf_fastgrnn import models  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import training  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  x = rng.normal(size=(16, 3, 2)).astype(np.float32)
  y = rng.integers(0, 2, 16)
  training.set_seed(0)
  model = models.sequence_classifier("fastgrnn", 4, (3, 2), 2)
  history = training.fit(model, (x, y), (x[:4], y[:4]), epochs=epochs, batch_size=8,
                         learning_rate=0.01, checkpoint_dir=ckpt_dir, seed=0, verbose=0)
  return model, history


def _damage(ckpt_dir, how):
  newest = max(int(p.name[5:-6]) for p in ckpt_dir.glob("ckpt-*.index"))
  if how == "truncated data":
    (data_file,) = ckpt_dir.glob(f"ckpt-{newest}.data-*")
    data_file.write_bytes(data_file.read_bytes()[:3])
  elif how == "corrupt index":
    (ckpt_dir / f"ckpt-{newest}.index").write_bytes(b"\x00garbage")
  elif how == "garbage state file":
    (ckpt_dir / "checkpoint").write_text("garbage !!!\n")
  return newest


@pytest.mark.parametrize("how,message", [
    ("truncated data", "is damaged (IndexError"),
    ("corrupt index", "is damaged ("),
    ("garbage state file", "is unreadable or stale"),
])
def test_resume_names_a_damaged_checkpoint_and_uses_the_newest_intact(tmp_path, capsys,
                                                                    how, message):
  ckpt = tmp_path / "ckpt"
  _tiny_fit(ckpt, epochs=3)
  newest = _damage(ckpt, how)
  capsys.readouterr()
  _, history = _tiny_fit(ckpt, epochs=4)
  out = capsys.readouterr().out
  assert message in out, out
  resumed_from = newest if how == "garbage state file" else newest - 1
  assert f"ckpt-{resumed_from}" in out
  assert len(history["loss"]) == 4  # continued, not restarted from epoch 1


def test_resume_with_every_checkpoint_damaged_refuses(tmp_path):
  ckpt = tmp_path / "ckpt"
  _tiny_fit(ckpt, epochs=2)
  for index in ckpt.glob("ckpt-*.index"):
    index.write_bytes(b"\x00garbage")
  with pytest.raises(ValueError, match="every checkpoint in .* is damaged"):
    _tiny_fit(ckpt, epochs=3)


# --- diff_numerics on damaged run files ------------------------------------------------

def _diff(run_dir):
  result = subprocess.run(
      [sys.executable, "-m", "pipelines.diff_numerics", f"--run_dir={run_dir}"],
      cwd=REPO, capture_output=True, text=True, timeout=300,
      env={"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
  return result.returncode, [l for l in result.stderr.splitlines()
                             if l.startswith("diff_numerics:")]


DAMAGED_TFLITE = [
    ("empty", b"", "not a .tflite model"),
    ("random bytes", np.random.default_rng(0).bytes(3000), "not a .tflite model"),
    ("identifier only", b"\x1c\x00\x00\x00TFL3" + b"\x00" * 40, "a damaged .tflite model"),
]


@pytest.mark.parametrize("case,content,words", DAMAGED_TFLITE,
                         ids=[c[0] for c in DAMAGED_TFLITE])
def test_damaged_tflite_is_refused_before_any_runtime(tmp_path, case, content, words):
  del case
  from tf_fastgrnn import export  # pylint: disable=import-outside-toplevel
  path = tmp_path / "model_int8.tflite"
  path.write_bytes(content)
  with pytest.raises(ValueError) as e:
    export.read_tflite_file(path)
  assert str(e.value).startswith(f"{path}: {words}"), str(e.value)


def test_diff_numerics_cli_on_a_damaged_tflite_and_a_missing_folder(tmp_path):
  run_dir = tmp_path / "run"
  run_dir.mkdir()
  (run_dir / "flags.json").write_text(json.dumps({"dataset": "npz"}))
  (run_dir / "model_float.keras").write_bytes(b"stand-in")
  (run_dir / "model_int8.tflite").write_bytes(np.random.default_rng(0).bytes(3000))
  status, lines = _diff(run_dir)
  assert status == 1 and len(lines) == 1, lines
  assert f"{run_dir / 'model_int8.tflite'}: not a .tflite model" in lines[0], lines
  status, lines = _diff(tmp_path / "nowhere")
  assert status == 1 and len(lines) == 1 and "is not a folder" in lines[0], lines


def test_truncated_tflite_from_a_real_export(tmp_path, rng):
  from tf_fastgrnn import export  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import models  # pylint: disable=import-outside-toplevel
  model = models.sequence_classifier("fastgrnn", 4, (3, 2), 3)
  good = export.convert_step_model(model, rng.normal(size=(8, 3, 2)).astype(np.float32))
  path = tmp_path / "m.tflite"
  path.write_bytes(good)
  assert export.read_tflite_file(path) == good
  for cut in (len(good) // 2, 200):
    path.write_bytes(good[:cut])
    with pytest.raises(ValueError, match=f"{path}: a damaged .tflite model"):
      export.read_tflite_file(path)


def test_loading_a_saved_model_without_import_names_the_fix():
  """Without ``import tf_fastgrnn`` Keras cannot find the cells; the docs say so."""
  readme = pathlib.Path(REPO, "README.md").read_text()
  cells = pathlib.Path(REPO, "docs", "cells.md").read_text()
  assert "import tf_fastgrnn" in readme and "cell should have a call method" in cells
