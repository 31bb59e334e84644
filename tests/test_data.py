"""Loaders on small files made here in the real layouts, plus the real data where present."""

import io
import os
import pickle
import sys
import types
import wave

import numpy as np
import pytest

import data
from data import audio
from data import har


# --- HAR -------------------------------------------------------------------------------

class _Frame:  # pickled as pandas.core.frame.DataFrame
  def __init__(self, state):
    self.state = state

  def __reduce__(self):
    import copyreg  # pylint: disable=import-outside-toplevel
    return copyreg._reconstructor, (type(self), object, None), self.state  # pylint: disable=protected-access


class _Manager(_Frame):  # pickled as pandas.core.internals.managers.BlockManager
  pass


def _hapt_pickle(monkeypatch, recordings):
  """Bytes shaped like the PyPI package's HAPT pickle (pandas 0.x BlockManager state)."""
  for module, name, cls in (("pandas.core.frame", "DataFrame", _Frame),
                            ("pandas.core.internals.managers", "BlockManager", _Manager)):
    fake = types.ModuleType(module)
    setattr(fake, name, cls)
    cls.__module__, cls.__qualname__, cls.__name__ = module, name, name
    monkeypatch.setitem(sys.modules, module, fake)
  by_subject = {}
  for subject, signals, labels in recordings:
    values = [signals.T.astype(np.float64),
              np.stack([np.zeros(len(labels)), labels]).astype(np.int64)]
    items = [{"data": np.array(har.CHANNELS, object), "name": None},
             {"data": np.array(["sequence", "label"], object), "name": None}]
    manager = _Manager((["axes"], values, items, {}))
    by_subject.setdefault(subject, []).append(
        _Frame({"_data": manager, "_typ": "dataframe", "_metadata": [], "attrs": {}}))
  return pickle.dumps(by_subject, protocol=2)


def _recordings(rng, subjects=(1, 2, 3, 5, 6, 7, 9)):
  recs = []
  for s in subjects:
    labels = np.repeat([5, -1, 1, 1, 7, 4], 200).astype(np.int16)  # transitions, gaps
    recs.append((s, rng.normal(0, 1, (len(labels), 6)).astype(np.float32), labels))
  return recs


def test_hapt_shaped_pickle_loads_and_caches(monkeypatch, tmp_path, rng):
  recs = _recordings(rng)
  path = tmp_path / "HAPT.pkl"
  path.write_bytes(_hapt_pickle(monkeypatch, recs))
  monkeypatch.undo()
  loaded = har.load_recordings(path, cache_dir=tmp_path / "cache")
  assert [s for s, _, _ in loaded] == [s for s, _, _ in recs]
  np.testing.assert_array_equal(loaded[0][1], recs[0][1])
  np.testing.assert_array_equal(loaded[0][2], recs[0][2])
  assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
  again = har.load_recordings(path, cache_dir=tmp_path / "cache")  # from the cache
  np.testing.assert_array_equal(again[3][1], recs[3][1])


def test_restricted_unpickler_refuses_code(tmp_path):
  class Evil:
    def __reduce__(self):
      return os.system, ("echo pwned > " + str(tmp_path / "pwned"),)
  with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
    har.restricted_load(pickle.dumps({1: [Evil()]}, protocol=2))
  assert not (tmp_path / "pwned").exists()


def test_windows_keep_only_single_activity_spans():
  signals = np.arange(600, dtype=np.float32)[:, None] * np.ones((1, 6), np.float32)
  labels = np.array([1] * 256 + [7] * 100 + [4] * 244, np.int16)
  x, y = har.windows(signals, labels)
  starts = x[:, 0, 0].astype(int).tolist()
  assert starts == [0, 64, 128, 384, 448]  # none across the transition
  assert y.tolist() == [0, 0, 0, 3, 3]
  assert x.shape == (5, 128, 6) and x[1, 5, 2] == 69


def test_split_uses_uci_test_subjects_and_train_statistics(monkeypatch, rng):
  recs = _recordings(rng)
  monkeypatch.setattr(har, "load_recordings", lambda *a, **k: recs)
  ds = data.load_dataset("har6", seed=3)
  per_subject = {s: len(har.windows(sig, lab)[0]) for s, sig, lab in recs}
  assert len(ds.x_test) == sum(n for s, n in per_subject.items() if s in har.TEST_SUBJECTS)
  raw_train = np.concatenate([har.windows(sig, lab)[0] for s, sig, lab in recs
                              if s not in har.TEST_SUBJECTS])
  assert len(ds.x_train) + len(ds.x_val) == len(raw_train)
  np.testing.assert_allclose(ds.x_train.reshape(-1, 6).mean(0), 0, atol=1e-4)
  ds2 = data.load_dataset("har2", seed=3)
  assert ds2.labels == ["moving", "static"]
  np.testing.assert_array_equal(ds2.y_test, (ds.y_test >= 3).astype(int))


def test_train_hop_densifies_training_windows_only(monkeypatch, rng):
  recs = _recordings(rng)
  monkeypatch.setattr(har, "load_recordings", lambda *a, **k: recs)
  base = data.load_dataset("har6", seed=3)
  dense = data.load_dataset("har6", seed=3, train_hop=16)
  raw = har.make_split("har6", seed=3)
  x_tr, _, x_va, y_va, x_te, y_te, _ = har.make_split("har6", seed=3, train_hop=16)
  for a, b in ((x_va, raw[2]), (y_va, raw[3]), (x_te, raw[4]), (y_te, raw[5])):
    np.testing.assert_array_equal(a, b)  # validation and test windows unchanged
  val_raw = {a.tobytes() for a in x_va}
  val_subjects = {s for s, sig, lab in recs if har.windows(sig, lab)[0][0].tobytes() in val_raw}
  assert len(val_subjects) == 3
  expect = sum(len(har.windows(sig, lab, hop=16)[0]) for s, sig, lab in recs
               if s not in har.TEST_SUBJECTS and s not in val_subjects)
  assert len(x_tr) == expect and len(x_tr) > 3 * len(base.x_train)
  assert not val_raw & {a.tobytes() for a in x_tr}  # validation subjects stay out
  assert dense.meta["train_hop"] == 16 and base.meta["train_hop"] == har.HOP
  with pytest.raises(ValueError, match="train_hop must be an integer in 1..128"):
    har.make_split("har6", train_hop=0)
  with pytest.raises(ValueError, match="takes the options train_hop and frontend only"):
    data.load_dataset("har6", hop=16)


def test_gravity_split_is_the_one_pole_recursion():
  # alpha = 1 - exp(-2 pi 0.3 / 50); g[t] = g[t-1] + alpha (acc[t] - g[t-1]), g[-1] = acc[0]
  alpha = har.gravity_coefficient()
  assert alpha == pytest.approx(0.0369973466, abs=1e-9)
  assert har.gravity_coefficient(12.5, 50) == pytest.approx(1 - np.exp(-np.pi / 2))
  acc = np.array([[0.0, 1.0, -1.0], [1.0, 1.0, -1.0], [1.0, 3.0, -1.0], [0.0, 3.0, 1.0]])
  gyro = np.array([[0.5, -0.5, 2.0]] * 4)
  out = har.gravity_split(np.concatenate([acc, gyro], 1))
  g = [acc[0]]
  for t in range(4):
    g.append(g[-1] + alpha * (acc[t] - g[-1]))
  g = np.array(g[1:])
  # by hand, axis x: 0, alpha, alpha + alpha (1 - alpha), then decays by (1 - alpha)
  np.testing.assert_allclose(g[:3, 0], [0, alpha, alpha * (2 - alpha)], rtol=1e-12)
  assert out.shape == (4, 9) and out.dtype == np.float32
  np.testing.assert_allclose(out[:, 3:6], g, atol=1e-7)
  np.testing.assert_allclose(out[:, :3], acc - g, atol=1e-7)
  np.testing.assert_array_equal(out[:, 6:], gyro.astype(np.float32))
  # a long recording (the scan's many strides) against the plain loop
  rng = np.random.default_rng(1)
  sig = rng.normal(size=(5000, 6)) + [0.2, 0.9, 0.1, 0, 0, 0]
  ref, gg = [], sig[0, :3].copy()
  for t in range(len(sig)):
    gg = gg + alpha * (sig[t, :3] - gg)
    ref.append(gg)
  np.testing.assert_allclose(har.gravity_split(sig)[:, 3:6], np.array(ref), atol=2e-6)
  constant = np.tile([[0.1, 0.9, 0.3, 0, 0, 0]], (300, 1))
  np.testing.assert_allclose(har.gravity_split(constant)[:, :3], 0, atol=1e-6)
  for bad, match in ((np.zeros((5, 3)), "needs \\[n >= 1, 6\\]"),
                     (np.zeros((0, 6)), "needs"),
                     (np.full((5, 6), np.nan), "NaN or Inf")):
    with pytest.raises(ValueError, match=match):
      har.gravity_split(bad)
  with pytest.raises(ValueError, match="cutoff_hz must be in"):
    har.gravity_split(sig, cutoff_hz=30)


def test_imu_gravity_frontend_split(monkeypatch, rng):
  recs = _recordings(rng)
  monkeypatch.setattr(har, "load_recordings", lambda *a, **k: recs)
  raw = har.make_split("har6", seed=3)
  grav = har.make_split("har6", seed=3, frontend="imu_gravity")
  for a, b in zip(raw[1::2][:3], grav[1::2][:3]):
    np.testing.assert_array_equal(a, b)  # the same windows, the same labels
  assert grav[0].shape[1:] == (128, 9)
  # each window is the front end of its whole recording, cut at the same place
  s, sig, lab = next(r for r in recs if r[0] in har.TEST_SUBJECTS)
  first = har.windows(har.gravity_split(sig), lab)[0][0]
  assert any(np.array_equal(first, w) for w in grav[4])
  ds = data.load_dataset("har6", seed=3, frontend="imu_gravity")
  assert ds.meta["frontend"] == "imu_gravity" and len(ds.meta["channels"]) == 9
  assert ds.x_train.shape[-1] == 9 and ds.meta["gravity_alpha"] == har.gravity_coefficient()
  assert data.load_dataset("har6", seed=3).meta["frontend"] == "raw_imu"
  with pytest.raises(ValueError, match="frontend must be one of"):
    har.make_split("har6", frontend="logmel32")


@pytest.mark.slow
def test_real_har_package():
  ds = data.load_dataset("har6")
  assert ds.x_train.shape[1:] == (128, 6) and len(ds.labels) == 6
  assert len(ds.x_test) > 2000 and set(np.unique(ds.y_test)) == set(range(6))


# --- npz --------------------------------------------------------------------------------

def _save(path, **arrays):
  np.savez(path, **arrays)
  return path


@pytest.mark.parametrize("arrays,message", [
    (dict(x_train=np.zeros((4, 3, 2)), y_train=np.zeros(4)), "missing arrays"),
    (dict(x_train=np.zeros((4, 6)), y_train=np.zeros(4), x_test=np.zeros((2, 3, 2)),
          y_test=np.zeros(2)), r"x_train must be \[N, T, D\]"),
    (dict(x_train=np.full((4, 3, 2), np.nan), y_train=np.zeros(4),
          x_test=np.zeros((2, 3, 2)), y_test=np.zeros(2)), "NaN/Inf"),
    (dict(x_train=np.zeros((12, 3, 2)), y_train=np.arange(12) % 2,
          x_test=np.zeros((2, 3, 2)), y_test=np.array([0, 5]), labels=["a", "b"]),
     r"labels must be in \[0, 2\)"),
])
def test_npz_errors_name_the_problem(tmp_path, arrays, message):
  with pytest.raises(ValueError, match=message):
    data.load_dataset("npz", _save(tmp_path / "d.npz", **arrays))


def test_npz_variable_length_is_refused(tmp_path):
  ragged = np.empty(2, object)
  ragged[0], ragged[1] = np.zeros((3, 2)), np.zeros((4, 2))
  np.savez(tmp_path / "r.npz", x_train=ragged, y_train=np.zeros(2), x_test=ragged,
           y_test=np.zeros(2))
  with pytest.raises(ValueError, match="pad them to one length"):
    data.load_dataset("npz", tmp_path / "r.npz")


def test_missing_inputs(tmp_path):
  with pytest.raises(FileNotFoundError, match="nowhere.npz"):
    data.load_dataset("npz", tmp_path / "nowhere.npz")
  with pytest.raises(FileNotFoundError, match="does not exist"):
    data.load_dataset("fsdd", tmp_path / "nothing")
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="no .wav files"):
    data.load_dataset("fsdd", tmp_path / "empty")
  with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
    data.load_dataset("mnist")


# --- audio ------------------------------------------------------------------------------

def _wav(path, samples, rate):
  path.parent.mkdir(parents=True, exist_ok=True)
  with wave.open(str(path), "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(rate)
    w.writeframes((np.clip(samples, -1, 0.999) * 32767).astype("<i2").tobytes())


def _tone(freq, rate, seconds=0.5):
  t = np.arange(int(rate * seconds)) / rate
  return 0.5 * np.sin(2 * np.pi * freq * t)


def test_log_mel_puts_a_tone_in_its_band():
  rate = 8000
  feats = audio.log_mel(_tone(1000, rate), rate)
  assert feats.shape == (audio.frame_count(4000, rate), 32) == (48, 32)
  n_fft = 256
  bank = audio.mel_filterbank(rate, n_fft)
  expected_band = int(np.argmax(bank[round(1000 / (rate / n_fft))]))
  assert np.bincount(feats.argmax(1)).argmax() == expected_band


def test_short_clip_gets_silence_before_it_and_long_clip_is_cut():
  rate = 8000
  short = audio.log_mel(_tone(1000, rate, seconds=0.3), rate, max_frames=98)
  assert short.shape == (98, 32)
  # 0.3 s = 28 frames of tone at the end; silence (log of the 1e-6 floor) before.
  np.testing.assert_allclose(short[:60], np.log(1e-6), atol=1e-3)
  assert np.all(short[-20:].max(1) > 0)
  long = audio.log_mel(_tone(1000, rate, seconds=1.5), rate, max_frames=98)
  assert long.shape == (98, 32) and np.all(long.max(1) > 0)


def test_fsdd_layout_split_and_skipped_files(tmp_path):
  root = tmp_path / "recordings"
  for digit in range(10):
    for index in (0, 7, 8):
      _wav(root / f"{digit}_jackson_{index}.wav", _tone(300 + 100 * digit, 8000), 8000)
  (root / "3_jackson_9.wav").write_bytes(b"not a wav at all")
  ds = data.load_dataset("fsdd", root)
  assert ds.x_test.shape == (10, 98, 32) and len(ds.x_train) + len(ds.x_val) == 20
  assert ds.meta["skipped_files"] == 1 and ds.meta["frontend"] == "logmel32"
  assert sorted(ds.y_test.tolist()) == list(range(10))


def test_real_fsdd(fsdd_dir):
  ds = data.load_dataset("fsdd", fsdd_dir)
  assert ds.x_test.shape == (300, 98, 32) and len(ds.x_train) + len(ds.x_val) == 2700


def test_speech_commands_layout(tmp_path):
  root = tmp_path / "speech"
  rate = 16000
  for word in ("yes", "no", "marvin"):
    for k in range(3):
      _wav(root / word / f"abc{k}_nohash_0.wav", _tone(200 + 50 * k, rate, 1.0), rate)
  _wav(root / "_background_noise_" / "white.wav", np.random.default_rng(0).normal(0, .1, 3 * rate), rate)
  (root / "validation_list.txt").write_text("yes/abc1_nohash_0.wav\nno/abc1_nohash_0.wav\n")
  (root / "testing_list.txt").write_text("yes/abc2_nohash_0.wav\nmarvin/abc2_nohash_0.wav\n")
  ds = data.load_dataset("google12", root)
  assert ds.labels[-2:] == ["_silence_", "_unknown_"] and len(ds.labels) == 12
  unknown = ds.labels.index("_unknown_")
  assert unknown in ds.y_test.tolist() and ds.labels.index("yes") in ds.y_test.tolist()
  assert ds.x_train.shape[1:] == (98, 32)
  ds30 = data.load_dataset("google30", root)
  assert ds30.labels == ["marvin", "no", "yes"]
  (root / "testing_list.txt").unlink()
  with pytest.raises(FileNotFoundError, match="testing_list.txt is missing"):
    data.load_dataset("google12", root)


def test_micro_frontend_frames_and_band():
  rate = 8000
  low = audio.micro_frontend(_tone(300, rate, seconds=0.6), rate, max_frames=98)
  high = audio.micro_frontend(_tone(2500, rate, seconds=0.6), rate, max_frames=98)
  assert low.shape == high.shape == (98, 32) and low.dtype == np.float32
  # Same framing as log-mel: the tone fills the last 0.6 s; a higher tone, higher channel.
  assert np.argmax(low[-10:].mean(0)) < np.argmax(high[-10:].mean(0))
  assert low[-10:].max() > low[:20].max()


def test_fsdd_with_the_micro_frontend_and_a_bad_frontend(tmp_path):
  root = tmp_path / "recordings"
  for digit in range(10):
    for index in (0, 7):
      _wav(root / f"{digit}_jackson_{index}.wav", _tone(300 + 100 * digit, 8000), 8000)
  ds = data.load_dataset("fsdd", root, frontend="micro32")
  assert ds.meta["frontend"] == "micro32" and ds.x_test.shape == (10, 98, 32)
  with pytest.raises(ValueError, match="audio front end must be one of"):
    data.load_dataset("fsdd", root, frontend="mfcc")
