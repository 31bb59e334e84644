"""Input augmentation: what each sensor's augmentation does to explicit tiny windows, and
that training applies it to the training batches alone, the same on every run."""

import json
import math

import numpy as np
import pytest

from pipelines import config as config_lib
from tf_fastgrnn import augment
from tests import helpers


def _imu(**params):
  return augment.make("imu", "har6", np.zeros(6), np.ones(6), **params)


def _audio(**params):
  return augment.make("audio", "fsdd", np.zeros(5), np.ones(5), **params)


def test_auto_picks_the_sensor_of_the_dataset_and_bad_choices_are_refused():
  assert augment.resolve("auto", "har2") == "imu"
  assert augment.resolve("auto", "fsdd") == "audio"
  assert augment.resolve("auto", "npz") is None
  assert augment.resolve("none", "har6") is None
  assert augment.resolve("audio", "har6") == "audio"  # explicit choice wins
  assert augment.make("none", "har6", np.zeros(6), np.ones(6)) is None
  with pytest.raises(ValueError, match="--augment must be one of none, auto, imu, audio"):
    augment.resolve("spec", "fsdd")
  with pytest.raises(ValueError, match="D a multiple of 3.*D=4"):
    augment.make("imu", "har6", np.zeros(4), np.ones(4))
  with pytest.raises(ValueError, match="unknown settings \\['angle'\\]"):
    augment.make("imu", "har6", np.zeros(6), np.ones(6), angle=3)
  with pytest.raises(ValueError, match="noise must be a number >= 0"):
    _audio(noise=-0.1)


def test_the_flag_is_refused_without_tensorflow():
  with pytest.raises(ValueError, match="--augment must be one of none, auto, imu, audio"):
    config_lib.resolve_augment("yes", "har6")


def test_rotation_matrices_are_rotations_about_the_axis():
  rot = augment.rotation_matrices([[0, 0, 2.0]], [math.pi / 2])[0]
  np.testing.assert_allclose(rot @ [1.0, 0, 0], [0, 1.0, 0], atol=1e-12)
  np.testing.assert_allclose(rot @ [0, 0, 1.0], [0, 0, 1.0], atol=1e-12)
  rots = augment.rotation_matrices(np.random.default_rng(1).normal(size=(5, 3)),
                                   [0.1, -0.2, 0.3, 1.0, -3.0])
  np.testing.assert_allclose(rots @ np.transpose(rots, (0, 2, 1)),
                             np.broadcast_to(np.eye(3), (5, 3, 3)), atol=1e-12)
  np.testing.assert_allclose(np.linalg.det(rots), 1.0, atol=1e-12)


def test_imu_rotation_keeps_each_triplets_norm_in_raw_units():
  # Normalised windows of raw acc (g) and gyro (rad/s): mean/std undone before rotating.
  mean = np.array([0.1, -0.9, 0.2, 0.0, 0.05, -0.05], np.float32)
  std = np.array([0.3, 0.4, 0.2, 0.5, 0.6, 0.7], np.float32)
  aug = augment.make("imu", "har6", mean, std, max_angle_deg=30.0, gain=0.0, jitter=0.0)
  raw = np.random.default_rng(0).normal(size=(3, 4, 6)).astype(np.float32)
  x = (raw - mean) / std
  out = aug(x, augment.batch_rng(0, 0, 0))
  raw_out = out * std + mean
  for lo in (0, 3):
    np.testing.assert_allclose(np.linalg.norm(raw_out[..., lo:lo + 3], axis=-1),
                               np.linalg.norm(raw[..., lo:lo + 3], axis=-1), rtol=1e-5)
  assert np.abs(raw_out - raw).max() > 0.01  # it did rotate
  # One rotation per window, the same for acc and gyro (the board turns as one): the
  # angle between a window's acc and gyro vectors is kept.
  def cos(v):
    a, g = v[..., :3], v[..., 3:]
    return np.sum(a * g, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(g, axis=-1)
  np.testing.assert_allclose(cos(raw_out), cos(raw), atol=1e-5)


def test_imu_gain_scales_each_sensor_within_its_range_and_jitter_is_small_noise():
  aug = _imu(max_angle_deg=0.0, gain=0.2, jitter=0.0)
  x = np.ones((50, 3, 6), np.float32)
  out = aug(x, augment.batch_rng(3, 1, 2))
  gains = out[:, 0, :]
  # One gain per window and sensor: the same on the 3 axes of a triplet and every step.
  np.testing.assert_allclose(gains[:, :3], gains[:, :1].repeat(3, 1), rtol=1e-6)
  np.testing.assert_allclose(out, out[:, :1].repeat(3, 1), rtol=1e-6)
  assert gains.min() >= 0.8 and gains.max() <= 1.2
  assert gains.std() > 0.05
  noisy = _imu(max_angle_deg=0.0, gain=0.0, jitter=0.1)(x, augment.batch_rng(0, 0, 0))
  assert 0.07 < np.std(noisy - x) < 0.13


def test_audio_masks_set_exactly_their_spans_to_the_training_mean():
  aug = _audio(max_shift=0, noise=0.0, freq_masks=1, max_freq_width=2, time_masks=1,
               max_time_width=3)
  x = np.arange(1, 1 + 2 * 8 * 5, dtype=np.float32).reshape(2, 8, 5)  # never 0
  out = aug(x, augment.batch_rng(7, 0, 0))
  for w in range(2):
    zero = out[w] == 0
    rows = np.flatnonzero(zero.all(axis=1))    # masked frames
    cols = np.flatnonzero(zero.all(axis=0))    # masked mel channels
    expected = np.zeros((8, 5), bool)
    expected[rows] = True
    expected[:, cols] = True
    np.testing.assert_array_equal(zero, expected)  # nothing else zeroed
    assert len(rows) <= 3 and len(cols) <= 2
    for span in (rows, cols):
      if len(span):
        assert span[-1] - span[0] == len(span) - 1  # one contiguous span
    np.testing.assert_array_equal(out[w][~zero], x[w][~zero])
  # Over many windows both masks are drawn at their full widths.
  many = aug(np.ones((200, 8, 5), np.float32), augment.batch_rng(7, 0, 1))
  assert (many == 0).all(axis=2).sum(axis=1).max() == 3
  assert (many == 0).all(axis=1).sum(axis=1).max() == 2


def test_audio_time_shift_moves_frames_and_fills_with_the_first_frame():
  aug = _audio(max_shift=2, noise=0.0, freq_masks=0, time_masks=0)
  x = np.arange(1, 1 + 6, dtype=np.float32)[None, :, None].repeat(5, 2).repeat(40, 0)
  out = aug(x, augment.batch_rng(0, 0, 0))
  seen = set()
  for w in out[:, :, 0]:
    if np.array_equal(w, x[0, :, 0]):
      seen.add(0)
    elif np.array_equal(w, [1, 1, 1, 2, 3, 4]):
      seen.add(2)    # later by 2: first frame repeated in front
    elif np.array_equal(w, [1, 1, 2, 3, 4, 5]):
      seen.add(1)
    elif np.array_equal(w, [2, 3, 4, 5, 6, 1]):
      seen.add(-1)   # earlier by 1: first frame after
    elif np.array_equal(w, [3, 4, 5, 6, 1, 1]):
      seen.add(-2)
    else:
      raise AssertionError(f"not a shift of the window by <= 2 frames: {w}")
  assert seen == {-2, -1, 0, 1, 2}


def test_same_seed_epoch_batch_same_draws_and_input_untouched():
  aug = augment.make("auto", "fsdd", np.zeros(5), np.ones(5))
  x = np.random.default_rng(0).normal(size=(4, 10, 5)).astype(np.float32)
  before = x.copy()
  a = aug(x, augment.batch_rng(1, 2, 3))
  np.testing.assert_array_equal(x, before)
  np.testing.assert_array_equal(a, aug(x, augment.batch_rng(1, 2, 3)))
  assert a.shape == x.shape and a.dtype == np.float32
  for other in ((0, 2, 3), (1, 3, 3), (1, 2, 4)):
    assert not np.array_equal(a, aug(x, augment.batch_rng(*other)))


def test_training_batches_are_augmented_deterministically_validation_is_not():
  from tf_fastgrnn import input_pipeline  # pylint: disable=import-outside-toplevel
  aug = _imu(max_angle_deg=20.0)
  x = np.random.default_rng(0).normal(size=(10, 3, 6)).astype(np.float32)
  y = np.arange(10, dtype=np.int32)

  def batches(first_epoch):
    ds = input_pipeline.train_dataset(x, y, 4, seed=5, first_epoch=first_epoch,
                                      last_epoch=2, augment=aug)
    return [(xb.numpy(), yb.numpy()) for xb, yb in ds]

  run = batches(0)
  assert len(run) == 6  # 2 epochs of ceil(10 / 4) batches
  plain = [(xb.numpy(), yb.numpy()) for xb, yb in input_pipeline.train_dataset(
      x, y, 4, seed=5, first_epoch=0, last_epoch=2)]
  for (xa, ya), (xp, yp) in zip(run, plain):
    np.testing.assert_array_equal(ya, yp)     # labels and order untouched
    assert xa.shape == xp.shape and not np.allclose(xa, xp)
    # Each window is its own window augmented with batch (epoch, b)'s draws.
  epoch0 = np.concatenate([xb for xb, _ in run[:3]])
  order = input_pipeline.epoch_order(10, 5, 0)
  expected = np.concatenate([aug(x[order[i:i + 4]], augment.batch_rng(5, 0, b))
                             for b, i in enumerate(range(0, 10, 4))])
  np.testing.assert_allclose(epoch0, expected, rtol=1e-6, atol=1e-6)
  # A run resumed at epoch 1 sees the very batches of epoch 1.
  for (xa, _), (xr, _) in zip(run[3:], batches(1)):
    np.testing.assert_array_equal(xa, xr)
  val = [xb.numpy() for xb, _ in input_pipeline.eval_dataset(x, y, 4)]
  np.testing.assert_array_equal(np.concatenate(val), x)


def test_fit_records_the_augmentation_and_refuses_a_resume_without_it(tmp_path):
  from tf_fastgrnn import models  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import training  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(12, 4, 6)).astype(np.float32), np.arange(12) % 2
  model = models.sequence_classifier("fastgrnn", 4, (4, 6), 2)
  with pytest.raises(ValueError, match="augment must be None or an augment.Augmenter"):
    training.fit(
        model, (x, y), None, helpers.recipe(epochs=1, batch_size=4, learning_rate=0.01),
        options=helpers.options(augment=lambda xb, r: xb, verbose=0))
  training.fit(
      model, (x, y), (x, y), helpers.recipe(epochs=1, batch_size=4, learning_rate=0.01),
      checkpoint_dir=tmp_path, options=helpers.options(verbose=0, augment=_imu()))
  model = models.sequence_classifier("fastgrnn", 4, (4, 6), 2)
  with pytest.raises(ValueError, match="augment"):
    training.fit(
        model, (x, y), (x, y), helpers.recipe(epochs=2, batch_size=4, learning_rate=0.01),
        checkpoint_dir=tmp_path, options=helpers.options(verbose=0))


def test_three_phase_training_augments_and_records_it(tmp_path):
  from tf_fastgrnn import models  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import pruning  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(12, 4, 6)).astype(np.float32), np.arange(12) % 2
  config = pruning.SparsitySpec(w=0.5, u=0.5)

  def train(augmenter, ckpt=None):
    model = models.sequence_classifier("fastgrnn", 4, (4, 6), 2)
    model.set_weights([np.full(w.shape, 0.1, np.float32) * (1 + i)
                       for i, w in enumerate(model.get_weights())])
    pruning.train_three_phase(
        model, (x, y), (x, y), config, helpers.recipe(epochs=3, batch_size=4, learning_rate=0.01),
        checkpoint_dir=ckpt, options=helpers.options(verbose=0, augment=augmenter))
    return model.get_weights()

  plain, again = train(None), train(None)
  augmented = train(_imu(max_angle_deg=20.0), tmp_path)
  for p, q in zip(plain, again):
    np.testing.assert_array_equal(p, q)  # deterministic: a difference below is the batches'
  assert any(not np.array_equal(p, a) for p, a in zip(plain, augmented))
  with pytest.raises(ValueError, match="augment"):
    train(None, tmp_path)  # the checkpoint records the augmentation


def test_config_accepts_resolved_choices_dense_or_sparse_and_refuses_unknown(tmp_path):
  base = config_lib.Config.from_flags(dict(
      dataset="har6", data_dir=None, cell="fastgrnn", units=8, w_rank=None, u_rank=None,
      sparsity_w=0.0, sparsity_u=0.0, epochs=3, qat=False, qat_epochs=0, batch_size=8,
      learning_rate=0.01, qat_learning_rate=0.001, seed=0,
      output_dir=str(tmp_path / "run"), resume=False, max_test_windows=None,
      num_test_vectors=1, arena_margin=0))
  assert base.augment is None  # flags.json of earlier runs (no key) still resume
  config_lib.validate_config(base.__class__(**{**base.__dict__, "augment": "imu"}))
  with pytest.raises(ValueError, match="--augment must be one of none, auto, imu, audio"):
    config_lib.validate_config(base.__class__(**{**base.__dict__, "augment": "auto"}))
  with pytest.raises(ValueError, match="augment_params must be None or a dict"):
    config_lib.validate_config(base.__class__(**{**base.__dict__, "augment": "imu",
                                                 "augment_params": [("gain", 0.1)]}))
  # Sparse (three-phase) training takes the augmentation too.
  config_lib.validate_config(base.__class__(**{**base.__dict__, "augment": "imu",
                                               "sparsity_w": 0.5}))


def test_strength_scales_every_magnitude_and_keeps_the_counts():
  full, half = _audio(), _audio(strength=0.5)
  f, h = dict(full.params), dict(half.params)
  assert (h["max_shift"], h["max_freq_width"], h["max_time_width"]) == (
      round(f["max_shift"] / 2), round(f["max_freq_width"] / 2),
      round(f["max_time_width"] / 2))
  assert h["noise"] == pytest.approx(f["noise"] / 2)
  assert (h["freq_masks"], h["time_masks"]) == (f["freq_masks"], f["time_masks"])
  assert dict(_imu(strength=2.0).params)["max_angle_deg"] == pytest.approx(
      2 * dict(_imu().params)["max_angle_deg"])
  with pytest.raises(ValueError, match="strength must be a number > 0"):
    _imu(strength=0.0)
  with pytest.raises(ValueError, match="gain must be < 1"):
    _imu(strength=20.0)


@pytest.mark.parametrize("args,message", [
    (["--augment=spec"], "--augment must be one of none, auto, imu, audio, got 'spec'"),
    (["--augment=imu", "--sparsity_w=0", "--sparsity_u=0", "--augment_strength=-1"],
     "--augment_strength must be a finite number > 0"),
])
def test_bad_augment_flags_are_refused_in_one_line_before_any_write(tmp_path, args,
                                                                    message):
  from tests.test_pipeline import _run  # pylint: disable=import-outside-toplevel
  out = tmp_path / "run"
  result = _run(args + [f"--output_dir={out}"], tmp_path)
  assert result.returncode != 0
  assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
  assert not out.exists()


@pytest.mark.slow
def test_dense_run_with_imu_augmentation_records_it_and_resumes(tmp_path, rng):
  from tests.test_pipeline import _npz, _run  # pylint: disable=import-outside-toplevel
  data = _npz(tmp_path / "tiny.npz", rng)  # D = 3: one tri-axial sensor
  out = tmp_path / "run"
  args = ["--dataset=npz", f"--data_dir={data}", f"--output_dir={out}", "--units=4",
          "--u_rank=0", "--sparsity_w=0", "--sparsity_u=0", "--epochs=2", "--noqat",
          "--batch_size=16", "--num_test_vectors=1", "--nonumerics", "--nowindow_model",
          "--augment=imu", "--augment_strength=2"]
  result = _run(args, tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "augment imu" in result.stdout
  flags = json.loads((out / "flags.json").read_text())
  assert (flags["augment"], flags["augment_strength"]) == ("imu", 2.0)
  run = json.loads((out / "checkpoints" / "float" / "run.json").read_text())
  assert run["recipe"]["augment"]["kind"] == "imu"
  assert run["recipe"]["augment"]["max_angle_deg"] == 20.0
  # A resume with another augmentation is refused, naming the flag.
  result = _run(args[:-1] + ["--augment_strength=1", "--resume"], tmp_path)
  assert result.returncode != 0 and "augment_strength" in result.stderr
