"""training.fit: checkpoints, exact resume, NaN stop, validation."""

import importlib.util
import json

import numpy as np
import pytest

from tf_fastgrnn import models
from tf_fastgrnn import training
from tf_fastgrnn._keras import keras
from tests import helpers

T, D, H, C, N = 3, 4, 5, 3, 24


@pytest.fixture
def data(rng):
  x = rng.normal(size=(N, T, D)).astype(np.float32)
  y = (np.argmax(x[:, -1, :C], axis=1)).astype(np.int32)
  return x, y


def _model(seed=0):
  training.set_seed(seed)
  return models.sequence_classifier("fastgrnn", H, (T, D), C, w_rank=2)


def _fit(model, data, **kwargs):
  kwargs = {"epochs": 3, "batch_size": 8, "learning_rate": 1e-2, "verbose": 0, **kwargs}
  return training.fit(model, data, data, **helpers.fit_args(**kwargs))


def test_resume_after_kill_equals_uninterrupted_run(data, tmp_path):
  full = _model()
  history_full = _fit(full, data, epochs=3, checkpoint_dir=tmp_path / "a")

  # "Killed" after 2 epochs: a fresh process builds a fresh model and resumes.
  _fit(_model(), data, epochs=2, checkpoint_dir=tmp_path / "b")
  resumed = _model(seed=99)  # different init: everything must come from the checkpoint
  history_resumed = _fit(resumed, data, epochs=3, checkpoint_dir=tmp_path / "b")

  assert len(history_resumed["loss"]) == 3
  assert history_resumed == history_full
  for a, b in zip(full.get_weights(), resumed.get_weights()):
    np.testing.assert_array_equal(a, b)
  on_disk = json.loads((tmp_path / "b" / training.HISTORY_FILE).read_text())
  assert on_disk["epochs_done"] == 3
  assert training.load_history(tmp_path / "b") == history_full


def test_same_seed_same_metrics_and_done_run_is_not_retrained(data, tmp_path):
  h1 = _fit(_model(), data, epochs=2)
  h2 = _fit(_model(), data, epochs=2, checkpoint_dir=tmp_path)
  assert h1 == h2
  model = _model(seed=5)
  assert _fit(model, data, epochs=2, checkpoint_dir=tmp_path) == h2
  assert set(h2) == {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_resume_with_other_settings_is_refused(data, tmp_path):
  _fit(_model(), data, epochs=1, checkpoint_dir=tmp_path)
  with pytest.raises(ValueError, match="batch_size: checkpoint 8 vs now 4"):
    _fit(_model(), data, epochs=2, batch_size=4, checkpoint_dir=tmp_path)
  other = models.sequence_classifier("fastgrnn", H + 1, (T, D), C)
  with pytest.raises(ValueError, match="does not match this model"):
    _fit(other, data, epochs=2, checkpoint_dir=tmp_path)


def test_nan_loss_stops_with_a_clear_error_and_no_checkpoint(data, tmp_path):
  model = _model()
  kernel = model.get_layer("logits").kernel
  kernel.assign(np.full(kernel.shape, np.nan, np.float32))
  with pytest.raises(training.NonFiniteLossError, match="lower learning_rate"):
    _fit(model, data, checkpoint_dir=tmp_path)
  assert not (tmp_path / training.HISTORY_FILE).exists()


def test_tensorboard_logs_are_written_or_their_absence_said(data, tmp_path):
  if importlib.util.find_spec("tensorboard") is None:
    with pytest.warns(UserWarning, match="tensorboard package is not installed"):
      history = _fit(_model(), data, epochs=1, tensorboard_dir=tmp_path / "tb")
    assert len(history["loss"]) == 1
  else:
    _fit(_model(), data, epochs=1, tensorboard_dir=tmp_path / "tb")
    assert any((tmp_path / "tb").rglob("events.out.tfevents.*"))


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": 0}, "--epochs must be positive, got 0"),
    ({"batch_size": -1}, "--batch_size must be positive, got -1"),
    ({"batch_size": 2.0}, "--batch_size must be positive, got 2.0"),
    ({"learning_rate": 0.0}, "learning_rate must be a finite number > 0"),
    ({"learning_rate": float("nan")}, "learning_rate must be a finite number > 0"),
])
def test_bad_arguments(data, kwargs, match):
  with pytest.raises(ValueError, match=match):
    _fit(_model(), data, **kwargs)
  with pytest.raises(ValueError, match="recipe must be a tf_fastgrnn.spec.Recipe, got dict"):
    training.fit(_model(), data, data, {"epochs": 3})


def test_bad_data(data):
  x, y = data
  with pytest.raises(ValueError, match=r"y must be integer labels of shape \[N\]"):
    training.fit(
        _model(), (x, y[:-1]), None, helpers.recipe(epochs=1, batch_size=4, learning_rate=0.1))
  with pytest.raises(ValueError, match="integer class labels"):
    training.fit(
        _model(), (x, y.astype(float)), None,
        helpers.recipe(epochs=1, batch_size=4, learning_rate=0.1))
  bad = x.copy()
  bad[0, 0, 0] = np.nan
  with pytest.raises(ValueError, match="NaN or inf"):
    training.fit(
        _model(), (bad, y), None, helpers.recipe(epochs=1, batch_size=4, learning_rate=0.1))
  with pytest.raises(ValueError, match="seed must be a non-negative int"):
    training.set_seed(-1)


def test_phased_cosine_values():
  schedule = training.PhasedCosine(0.1, total_steps=10, boundaries=[4], min_fraction=0.0)
  got = [float(schedule(k)) for k in range(10)]
  # Phase 1: steps 0-3 of 4; phase 2: steps 4-9 of 6; each starts at 0.1.
  want = [0.1 * 0.5 * (1 + np.cos(np.pi * k / 4)) for k in range(4)]
  want += [0.1 * 0.5 * (1 + np.cos(np.pi * k / 6)) for k in range(6)]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  floor = training.PhasedCosine(0.1, total_steps=4, min_fraction=0.5)
  np.testing.assert_allclose(float(floor(4)), 0.05, rtol=1e-6)
  with pytest.raises(ValueError, match="boundaries must increase"):
    training.PhasedCosine(0.1, total_steps=4, boundaries=[4])


def test_keep_best_restores_the_best_validation_epoch(data):
  model = _model()
  seen = []

  class Snapshot(training.keras.callbacks.Callback):

    def on_epoch_end(self, epoch, logs=None):
      seen.append([w.copy() for w in self.model.get_weights()])

  history = _fit(model, data, epochs=4, keep_best=True, best_from_epoch=1,
                 lr_schedule="cosine", clipnorm=1.0, callbacks=[Snapshot()])
  acc, loss = history["val_accuracy"], history["val_loss"]
  best = max(range(1, 4), key=lambda e: (acc[e], -loss[e], -e))
  assert history["best_epoch"] == [best + 1]
  for a, b in zip(model.get_weights(), seen[best]):
    np.testing.assert_array_equal(a, b)


def test_resume_with_the_recipe_equals_uninterrupted_run(data, tmp_path):
  recipe = {"lr_schedule": "cosine", "phase_boundaries": (2,), "clipnorm": 1.0,
            "weight_decay": 1e-3, "keep_best": True}
  full = _model()
  history_full = _fit(full, data, epochs=4, checkpoint_dir=tmp_path / "a", **recipe)

  class Kill(training.keras.callbacks.Callback):

    def on_epoch_begin(self, epoch, logs=None):
      if epoch == 3:  # after the best-so-far and the restart at epoch 2
        raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    _fit(_model(), data, epochs=4, checkpoint_dir=tmp_path / "b", callbacks=[Kill()],
         **recipe)
  assert len(training.load_history(tmp_path / "b")["loss"]) == 3
  resumed = _model(seed=99)
  history_resumed = _fit(resumed, data, epochs=4, checkpoint_dir=tmp_path / "b", **recipe)
  assert history_resumed == history_full
  for a, b in zip(full.get_weights(), resumed.get_weights()):
    np.testing.assert_array_equal(a, b)
  # A finished run called again returns the same best weights from disk.
  again = _model(seed=7)
  assert _fit(again, data, epochs=4, checkpoint_dir=tmp_path / "b", **recipe) == history_full
  for a, b in zip(full.get_weights(), again.get_weights()):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="recipe"):
    _fit(_model(), data, epochs=4, checkpoint_dir=tmp_path / "b",
         **{**recipe, "clipnorm": 2.0})
  with pytest.raises(ValueError, match="recipe"):  # the cosine spans the epochs
    _fit(_model(), data, epochs=5, checkpoint_dir=tmp_path / "b", **recipe)


@pytest.mark.parametrize("kwargs, match", [
    ({"lr_schedule": "step"}, "lr_schedule must be one of"),
    ({"clipnorm": 0}, "--clipnorm must be a finite number > 0 \\(or unset\\), got 0"),
    ({"weight_decay": -1.0}, "--weight_decay must be a finite number >= 0, got -1.0"),
    ({"best_from_epoch": 3}, r"best_from_epoch must be in \[0, epochs=3\)"),
    ({"phase_boundaries": (3,)}, r"phase_boundaries must be epochs inside \(0, 3\)"),
])
def test_bad_recipe_arguments(data, kwargs, match):
  with pytest.raises(ValueError, match=match):
    _fit(_model(), data, **kwargs)


def test_keep_best_needs_validation(data):
  with pytest.raises(ValueError, match="keep_best=True needs validation data"):
    training.fit(
        _model(), data, None,
        helpers.recipe(epochs=1, batch_size=4, learning_rate=0.1, keep_best=True))


def test_label_smoothing_loss_is_the_numpy_formula():
  """Cross-entropy of given logits against (1 - e) one-hot + e/C targets; e = 0 is the
  sparse cross-entropy the recipe always used."""
  logits = np.array([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]], np.float32)
  labels = np.array([0, 2])
  log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  for eps in (0.0, 0.1, 0.5):
    targets = (1 - eps) * np.eye(3)[labels] + eps / 3
    want = np.mean(-(targets * log_softmax).sum(-1))
    got = float(training.classification_loss(eps)(labels, logits))
    np.testing.assert_allclose(got, want, rtol=1e-6)
  # By hand for the first window at e = 0.1: targets (0.9333, 0.0333, 0.0333).
  first = -(0.9 + 0.1 / 3) * log_softmax[0, 0] - 0.1 / 3 * log_softmax[0, 1:].sum()
  np.testing.assert_allclose(float(training.classification_loss(0.1)(labels[:1], logits[:1])),
                             first, rtol=1e-6)
  with pytest.raises(ValueError, match="--label_smoothing must be in \\[0, 1\\)"):
    helpers.recipe(label_smoothing=1.0)


def test_label_smoothing_trains_and_is_part_of_the_resume_record(data, tmp_path):
  model = _model()
  _fit(model, data, epochs=1, label_smoothing=0.2, checkpoint_dir=tmp_path / "a")
  assert model.loss.label_smoothing == 0.2
  model.save(tmp_path / "m.keras")  # the compiled loss is saved and loads back
  assert keras.models.load_model(tmp_path / "m.keras").loss.label_smoothing == 0.2
  with pytest.raises(ValueError, match="label_smoothing"):  # another ε: not the same run
    _fit(_model(), data, epochs=2, checkpoint_dir=tmp_path / "a")
