"""Bad data, damaged checkpoints and damaged run files: one clear line, or a loud warning.

The loaders and library functions are called directly (no training), on small files
each test writes in the real layouts. The CLI-level cases, with an earlier run in the
output folder, are in ``test_bad_inputs.py``.
"""

import io
import json
import os
import pathlib
import signal
import subprocess
import sys
import wave
import zipfile

import numpy as np
import pytest

import data
from data import audio
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
    # Issue 26: labels that crashed (OverflowError, "cannot convert float NaN to
    # integer"), exhausted memory (3e8 label names) or trained phantom classes silently.
    ("NaN labels", {"y_train": np.array([0.0, 1.0, np.nan] * 4)},
     ["y_train holds 4 NaN/Inf labels", "example 2"]),
    ("Inf labels", {"y_train": np.array([0.0, np.inf, 1.0] * 4)},
     ["y_train holds 4 NaN/Inf labels", "the first inf at example 1"]),
    ("negative labels", {"y_test": np.array([0, 1, 2, -1, 0, 1])},
     ["y_test holds 1 negative labels", "example 3"]),
    ("fractional labels", {"y_train": np.array([0.0, 1.0, 2.5] * 4)},
     ["y_train holds 4 non-integer labels", "the first 2.5 at example 2"]),
    ("one label of 3e8", {"y_train": np.array([0, 1, 300_000_000] * 4)},
     ["y uses 4 classes [0, 1, 2, 300000000]", "299999997 class numbers have no example",
      "(3, 4, 5, 6, 7, 8, 9, 10, ...)", "renumber the labels 0..3"]),
    ("labels 3, 7, 9", {"y_train": np.array([3, 7, 9] * 4), "y_test": np.array([9, 7, 3] * 2)},
     ["y uses 3 classes [3, 7, 9] numbered up to 9", "(0, 1, 2, 4, 5, 6, 8)",
      "renumber the labels 0..2"]),
    ("labels array longer than the classes", {"labels": np.array(list("abcde"))},
     ["the labels array names 5 classes but y uses 3", "3 ('d'), 4 ('e')"]),
    ("labels array 2-D", {"labels": np.array([["a", "b", "c"]])},
     ["labels must be a 1-D array", "(1, 3)"]),
    ("float64 beyond float32", {"x_train": _x(12, np.float64) * 1e300},
     ["x_train holds 96 values beyond float32's range", "example 0, step 0, feature 0"]),
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


def _npz_members(path, members):
  """An .npz written member by member (stored, not compressed): ``{name: bytes}``."""
  with zipfile.ZipFile(path, "w") as z:
    for name, content in members.items():
      z.writestr(f"{name}.npy", content)
  return path


def _npy(array):
  buf = io.BytesIO()
  np.save(buf, array)
  return buf.getvalue()


def _valid_members():
  rng = np.random.default_rng(0)
  return {"x_train": _npy(rng.normal(size=(12, 4, 2)).astype(np.float32)),
          "y_train": _npy(np.arange(12) % 3),
          "x_test": _npy(rng.normal(size=(6, 4, 2)).astype(np.float32)),
          "y_test": _npy(np.arange(6) % 3)}


def test_npz_header_declaring_terabytes_is_refused_unread(tmp_path):
  header = io.BytesIO()
  np.lib.format.write_array_header_1_0(
      header, {"descr": "<f4", "fortran_order": False, "shape": (10 ** 9, 1000, 3)})
  path = _npz_members(tmp_path / "d.npz", dict(_valid_members(),
                                               x_train=header.getvalue() + bytes(64)))
  assert path.stat().st_size < 2000
  with pytest.raises(ValueError) as e:
    data.load_dataset("npz", path)
  assert str(e.value) == (f"{path}: x_train declares shape (1000000000, 1000, 3) of float32 "
                          "(10.9 TiB) but the file holds 64 B for it: the file is truncated "
                          "or damaged")


def test_truncated_npz_array_is_not_blamed_on_sequences(tmp_path):
  members = _valid_members()
  members["x_test"] = members["x_test"][:-20]
  path = _npz_members(tmp_path / "d.npz", members)
  with pytest.raises(ValueError, match=r"x_test declares shape \(6, 4, 2\) of float32 "
                     r"\(192 B\) but the file holds 172 B for it") as e:
    data.load_dataset("npz", path)
  assert "variable-length" not in str(e.value)


def test_npz_inflating_beyond_the_memory_limit_is_refused_before_loading(tmp_path,
                                                                        monkeypatch):
  from data import datasets  # pylint: disable=import-outside-toplevel
  path = tmp_path / "bomb.npz"
  np.savez_compressed(path, x_train=np.zeros((2000, 128, 9), np.float32),
                      y_train=np.arange(2000) % 3, x_test=np.zeros((6, 128, 9), np.float32),
                      y_test=np.arange(6) % 3)
  assert path.stat().st_size < 100_000  # 9 MiB inflated
  monkeypatch.setattr(datasets, "_available_memory", lambda: 8 << 20)  # 8 MiB
  def no_load(*args, **kwargs):
    raise AssertionError("np.load called: the arrays were read")
  monkeypatch.setattr(datasets.np, "load", no_load)
  with pytest.raises(ValueError) as e:
    data.load_dataset("npz", path)
  assert str(e.value) == (
      f"{path}: its arrays declare 8.83 MiB (x_train (2000, 128, 9), y_train (2000,), "
      "x_test (6, 128, 9), y_test (6,)); loading and normalising them needs about 70.5 "
      "MiB, more than 80% of the 8 MiB of memory available")


@pytest.fixture
def alarm():
  """Fails a test that blocks (opening a FIFO waits for a writer) instead of hanging."""
  def stuck(*_):
    raise TimeoutError("blocked: something opened a FIFO or device")
  previous = signal.signal(signal.SIGALRM, stuck)
  signal.alarm(20)
  yield
  signal.alarm(0)
  signal.signal(signal.SIGALRM, previous)


def _special(tmp_path, what):
  if what == "FIFO":
    path = tmp_path / "d.npz"
    os.mkfifo(path)
    return path, "a FIFO (named pipe)"
  if what == "folder":
    path = tmp_path / "d.npz"
    path.mkdir()
    return path, "a folder"
  return pathlib.Path("/dev/zero"), "a character device"


@pytest.mark.parametrize("what", ["FIFO", "folder", "/dev/zero"])
def test_npz_data_dir_that_is_no_file_is_named_never_opened(tmp_path, alarm, what):
  del alarm
  path, kind = _special(tmp_path, what)
  with pytest.raises(ValueError) as e:
    data.load_dataset("npz", path)
  assert str(e.value) == f"npz: data_dir {path} is {kind}, not an .npz file"


def test_fsdd_data_dir_that_is_a_file_is_named(tmp_path):
  path = _npz(tmp_path / "d.npz")
  with pytest.raises(ValueError, match=f"fsdd: data_dir {path} is a file, not a folder"):
    data.load_dataset("fsdd", path)


def test_normalise_refuses_values_float32_cannot_hold():
  from data import datasets  # pylint: disable=import-outside-toplevel
  x = np.ones((12, 4, 2))
  x[::2, :, 0] += 1e-6  # training std 5e-7 on feature 0
  y = np.arange(12) % 2
  far = np.zeros((6, 4, 2))
  far[2, 1, 0] = 1e38  # a float32, but 2e44 training stds away
  with pytest.raises(ValueError, match=r"^test: x normalised with the training statistics "
                     r"exceeds float32's range at example 2, step 1, feature 0 \(1e\+38, "
                     r"training mean 1, std 5e-07\)"):
    datasets.normalise([(x, y), (x, y), (far, y[:6])], ["a", "b"], {})
  with pytest.raises(ValueError, match=r"^train: 96 values in x beyond float32's range"):
    datasets.normalise([(x * 1e300, y), (x, y), (x, y)], ["a", "b"], {})


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


def test_folder_and_fifo_named_wav_are_skipped_unopened(tmp_path, alarm):
  del alarm
  root = _fsdd(tmp_path / "recordings")
  (root / "1_jackson_9.wav").mkdir()
  os.mkfifo(root / "2_jackson_9.wav")
  ds = data.load_dataset("fsdd", root)
  assert ds.meta["skipped_by_reason"]["unreadable"] == 2
  assert len(ds.x_test) == 3 and len(ds.x_train) + len(ds.x_val) == 6
  assert any(f"{root / '1_jackson_9.wav'}: not a readable WAV file (it is a folder)" in w
             for w in ds.meta["warnings"]), ds.meta["warnings"]
  _, reason, message = audio.file_features(root / "2_jackson_9.wav", "logmel32", 98, 8000)
  assert (reason, message) == ("unreadable", f"{root / '2_jackson_9.wav'}: not a readable "
                               "WAV file (it is a FIFO (named pipe))")


@pytest.mark.parametrize("name", ["\u00b2_jackson_1.wav", "1_jackson_\u0663.wav",
                                  "12_jackson_1.wav"])
def test_fsdd_name_with_other_digits_is_refused_in_words(tmp_path, name):
  root = _fsdd(tmp_path / "recordings")
  _wav(root / name, _tone(500, 8000), 8000)
  with pytest.raises(ValueError, match=f"fsdd: {name} is not named "
                     r"\{digit\}_\{speaker\}_\{index\}.wav \(digit 0-9"):
    data.load_dataset("fsdd", root)


def _wav_bytes(samples=np.zeros(100)):
  buf = io.BytesIO()
  with wave.open(buf, "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(8000)
    w.writeframes(np.asarray(samples, "<i2").tobytes())
  return buf.getvalue()


def test_corrupt_wav_headers_give_a_reason(tmp_path):
  path = tmp_path / "a.wav"
  path.write_bytes(_wav_bytes()[:30])  # cut inside the fmt chunk
  with pytest.raises(ValueError) as e:
    audio.read_wav(path)
  assert str(e.value) == (f"{path}: not a readable WAV file (its header or a chunk is cut "
                          "short)")
  path.write_bytes(_wav_bytes(np.arange(100))[:-1])  # the last sample cut in half
  samples, rate = audio.read_wav(path)
  assert rate == 8000 and len(samples) == 99
  assert samples[98] == np.float32(98 / 32768)


def test_fsdd_folder_without_some_digits_warns(tmp_path):
  ds = data.load_dataset("fsdd", _fsdd(tmp_path / "recordings"))  # digits 0, 1, 2
  assert len(ds.labels) == 10
  assert ("7 of 10 classes have no example in any split: ['3', '4', '5', '6', '7', '8', "
          "'9']; the model still has an output for each, never trained"
          in ds.meta["warnings"]), ds.meta["warnings"]


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
  from tests import helpers  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  x = rng.normal(size=(16, 3, 2)).astype(np.float32)
  y = rng.integers(0, 2, 16)
  training.set_seed(0)
  model = models.sequence_classifier("fastgrnn", 4, (3, 2), 2)
  history = training.fit(
      model, (x, y), (x[:4], y[:4]),
      helpers.recipe(epochs=epochs, batch_size=8, learning_rate=0.01), checkpoint_dir=ckpt_dir,
      seed=0, options=helpers.options(verbose=0))
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


# --- issue 26: a run's data reloaded as the run loaded it; diff_numerics' one lines ------

def test_dataset_args_read_every_data_option_of_a_run(tmp_path):
  from pipelines import config as config_lib  # pylint: disable=import-outside-toplevel
  run_dir = tmp_path / "run"
  run_dir.mkdir()
  (run_dir / "flags.json").write_text(json.dumps(
      {"dataset": "har6", "data_dir": None, "seed": 3, "imu_frontend": "imu_gravity"}))
  assert config_lib.run_dataset_args(run_dir) == (
      "har6", None, {"seed": 3, "frontend": "imu_gravity"})
  # A run folder made before the field: its default, the front end such runs used.
  assert config_lib.dataset_args({"dataset": "har2", "seed": 1}) == (
      "har2", None, {"seed": 1, "frontend": "raw_imu"})
  assert config_lib.dataset_args(
      {"dataset": "fsdd", "data_dir": "/d", "seed": 0, "audio_frontend": "micro32",
       "feature_cache": "default"}) == (
           "fsdd", "/d", {"seed": 0, "frontend": "micro32", "feature_cache": "default"})
  assert config_lib.dataset_args({"dataset": "npz", "data_dir": "/a.npz", "seed": 2}) == (
      "npz", "/a.npz", {"seed": 2})


def test_diff_numerics_loads_the_runs_imu_front_end(monkeypatch, rng, tmp_path):
  from pipelines import run_numerics as diff_numerics  # pylint: disable=import-outside-toplevel
  recs = _recordings(rng)
  monkeypatch.setattr(har, "load_recordings", lambda *a, **k: recs)
  run_dir = tmp_path / "run"
  run_dir.mkdir()
  flags = {"dataset": "har6", "data_dir": None, "seed": 3, "imu_frontend": "imu_gravity"}
  (run_dir / "flags.json").write_text(json.dumps(flags))
  x, y = diff_numerics.load_windows(run_dir)
  expected = data.load_dataset("har6", seed=3, frontend="imu_gravity")
  assert x.shape[1:] == (128, 9)
  np.testing.assert_array_equal(x, expected.x_test)
  np.testing.assert_array_equal(y, expected.y_test)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  """A run folder with a real float model and its int8 step model (D = 2, T = 3)."""
  from tests import helpers  # pylint: disable=import-outside-toplevel
  model, tflite_bytes, _, _ = helpers.converted_classifier("fastgrnn", 4, (3, 2), 3,
                                                           windows=8)
  run_dir = tmp_path_factory.mktemp("diff") / "run"
  run_dir.mkdir()
  model.save(run_dir / "model_float.keras")
  (run_dir / "model_int8.tflite").write_bytes(tflite_bytes)
  (run_dir / "flags.json").write_text(json.dumps({"dataset": "npz", "seed": 0}))
  return run_dir


def test_diff_numerics_refuses_a_run_whose_flags_name_no_dataset(finished_run):
  from pipelines import run_numerics as diff_numerics  # pylint: disable=import-outside-toplevel
  flags_path = finished_run / "flags.json"
  saved = flags_path.read_text()
  flags_path.write_text(json.dumps({"cell": "fastgrnn", "seed": 0}))
  try:
    with pytest.raises(ValueError) as e:
      diff_numerics.run(finished_run)
  finally:
    flags_path.write_text(saved)
  assert str(e.value) == f"{flags_path}: the run's flags name no dataset (got None)"
  assert not (finished_run / "numerics").exists()


def test_diff_numerics_refuses_windows_of_other_dims(finished_run, tmp_path):
  from pipelines import run_numerics as diff_numerics  # pylint: disable=import-outside-toplevel
  windows = tmp_path / "w.npz"
  np.savez(windows, x=np.zeros((5, 3, 4), np.float32), y=np.zeros(5))
  with pytest.raises(ValueError) as e:
    diff_numerics.run(finished_run, windows_npz=str(windows))
  assert str(e.value) == (f"{windows}: windows of shape [5, 3, 4], but the run's model "
                          "takes [N, 3, 2]: were they made for another run?")
  assert not (finished_run / "numerics").exists()
