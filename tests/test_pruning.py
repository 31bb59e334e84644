"""pruning: per-matrix targets, what stays dense, exact zeros, strip, resume, errors."""

import numpy as np
import pytest
import tensorflow_model_optimization as tfmot

from tf_fastgrnn import models
from tf_fastgrnn import pruning
from tf_fastgrnn import training
from tf_fastgrnn._keras import keras
from tests import helpers

T, D, H, C, N, BATCH = 3, 4, 5, 3, 16, 8  # 2 steps per epoch


@pytest.fixture
def data(rng):
  x = rng.normal(size=(N, T, D)).astype(np.float32)
  y = np.argmax(x[:, -1, :C], axis=1).astype(np.int32)
  return x, y


def _model(cell, rng, **cell_kwargs):
  """A classifier with explicit, all non-zero weights."""
  model = models.sequence_classifier(cell, H, (T, D), C, **cell_kwargs)
  model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) + 0.01
                     for w in model.get_weights()])
  return model


def _train(model, data, config, epochs=3, **kwargs):
  kwargs = {"batch_size": BATCH, "learning_rate": 1e-2, "verbose": 0, **kwargs}
  return pruning.train_three_phase(model, data, data, sparsity=config,
                                   **helpers.fit_args(epochs=epochs, **kwargs))


class _Spy(keras.callbacks.Callback):
  """Keeps the wrapped model and the support masks at each epoch and batch end."""

  def __init__(self):
    super().__init__()
    self.masks = []
    self.batch_masks = []

  def on_train_batch_end(self, batch, logs=None):
    self.batch_masks.append(pruning.support_masks(self.model))

  def on_epoch_end(self, epoch, logs=None):
    self.masks.append(pruning.support_masks(self.model))

  def on_train_end(self, logs=None):
    self.wrapped = self.model


def _short(var):
  return var.name.split("/")[-1].split(":")[0]


@pytest.mark.parametrize("cell, cell_kwargs, sw, su", [
    ("fastgrnn", {}, 0.5, 0.8),
    # Low-rank factors: W1 [4, 2] at 0.3 keeps round(5.6) = 6 (0.25); U1 [5, 3] at 0.75
    # keeps round(3.75) = 4; every factor is thresholded on its own.
    ("fastgrnn", {"w_rank": 2, "u_rank": 3}, 0.3, 0.75),
    ("fastrnn", {"w_rank": 2}, 0.6, 0.0),
])
def test_targets_reached_per_matrix_and_the_rest_stays_dense(data, rng, cell,
                                                              cell_kwargs, sw, su):
  model = _model(cell, rng, **cell_kwargs)
  spy = _Spy()
  result = _train(model, data, pruning.SparsitySpec(sw, su, frequency=1),
                  callbacks=[spy])
  cell_obj = result.model.get_layer("rnn").cell
  report = pruning.sparsity_report(result.model)
  expected_keys = {f"rnn/{_short(v)}" for v in cell_obj.w_factors + cell_obj.u_factors}
  assert set(report["matrices"]) == expected_keys
  for var in cell_obj.w_factors + cell_obj.u_factors:
    target = sw if _short(var).startswith("W") else su
    entry = report["matrices"][f"rnn/{_short(var)}"]
    assert entry["sparsity"] == pytest.approx(
        pruning.achievable_sparsity(entry["size"], target)), _short(var)
    assert entry["nonzero"] == np.count_nonzero(var.numpy())
  # Biases, ζ/ν (α/β) and the classifier: never pruned, still without a zero.
  pruned = {v.ref() for v in cell_obj.w_factors + cell_obj.u_factors}
  others = [v for v in result.model.weights if v.ref() not in pruned]
  assert {_short(v) for v in others} >= {"bias_update", "kernel", "bias"}
  for var in others:
    assert np.count_nonzero(var.numpy()) == var.shape.num_elements(), var.name
  totals = report["totals"]
  assert totals["params"] == result.model.count_params() == totals["dense_int8_bytes"]
  assert totals["nonzero"] == sum(np.count_nonzero(w) for w in result.model.get_weights())
  # Phase reports: dense after phase 1, targets after 2 and 3.
  first, second, third = result.phase_reports
  assert [r["name"] for r in result.phase_reports] == list(pruning.PHASE_NAMES)
  assert result.phase_epochs == (1, 1, 1)
  assert first["totals"]["nonzero"] > third["totals"]["nonzero"] == totals["nonzero"]
  assert first["matrices_total"]["sparsity"] == 0.0
  assert second["matrices"] == third["matrices"]
  assert {k: v["nonzero"] for k, v in third["matrices"].items()} == {
      k: v["nonzero"] for k, v in report["matrices"].items()}
  assert third["val_accuracy"] == result.history["val_accuracy"][-1]
  # The wrapped model reports the same as the stripped one.
  assert pruning.sparsity_report(spy.wrapped)["matrices"] == report["matrices"]


def test_stripped_model_predicts_as_the_pruned_one_and_zeros_stay_zero(data, rng):
  model = _model("fastgrnn", rng, w_rank=2)
  spy = _Spy()
  config = pruning.SparsitySpec(0.5, 0.6, phase_fractions=(0.25, 0.25, 0.5), frequency=1)
  result = _train(model, data, config, epochs=4, callbacks=[spy])
  x = data[0]
  np.testing.assert_array_equal(spy.wrapped.predict(x, verbose=0),
                                result.model.predict(x, verbose=0))
  # Per step (2 a epoch): dense in step 1-2, thresholded from step 3 (the first of
  # IHT), and no mask change after step 4 (the last of IHT).
  dense = [all(m.all() for m in masks.values()) for masks in spy.batch_masks]
  assert dense == [True, True, False, False, False, False, False, False]
  for masks in spy.batch_masks[4:]:
    for key in masks:
      np.testing.assert_array_equal(masks[key], spy.batch_masks[3][key])
  # The support chosen by the end of IHT (epoch 2) is the one of epochs 3 and 4.
  end_of_iht, *later = spy.masks[1:]
  for masks in later:
    assert masks.keys() == end_of_iht.keys()
    for key in masks:
      np.testing.assert_array_equal(masks[key], end_of_iht[key])
  final = pruning.support_masks(result.model)
  for key, mask in end_of_iht.items():
    assert not final[key][~mask].any(), key  # exact zeros outside the support
  # support_masks of the stripped model = the wrapper's masks (no kept weight is 0).
  for key in final:
    np.testing.assert_array_equal(final[key], spy.masks[-1][key])
  assert final["rnn/W1"].dtype == np.bool_


@pytest.mark.parametrize("recipe", [
    {}, {"lr_schedule": "cosine", "clipnorm": 1.0, "keep_best": True}])
def test_resume_mid_iht_equals_uninterrupted_run(data, rng, tmp_path, recipe):
  """Killed in the IHT phase after its only thresholding: the restored masks must hold.

  Epochs 1/2/1 of 2 steps: IHT covers steps 3-6 and, every 10 steps, thresholds only at
  step 3; without its masks the resumed run would train dense from step 5 on.
  """
  config = pruning.SparsitySpec(0.5, 0.7, phase_fractions=(0.25, 0.5, 0.25), frequency=10)
  init = _model("fastgrnn", rng, u_rank=2).get_weights()

  def fresh():
    model = models.sequence_classifier("fastgrnn", H, (T, D), C, u_rank=2)
    model.set_weights(init)
    return model

  full = _train(fresh(), data, config, epochs=4, checkpoint_dir=tmp_path / "a", **recipe)

  class Kill(keras.callbacks.Callback):

    def on_epoch_begin(self, epoch, logs=None):
      if epoch == 2:  # after 2 epochs (4 steps)
        raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    _train(fresh(), data, config, epochs=4, checkpoint_dir=tmp_path / "b",
           callbacks=[Kill()], **recipe)
  assert training.load_history(tmp_path / "b")["loss"].__len__() == 2
  other_init = _model("fastgrnn", rng, u_rank=2)
  resumed = _train(other_init, data, config, epochs=4, checkpoint_dir=tmp_path / "b",
                   **recipe)

  assert resumed.history == full.history
  for key, entry in resumed.phase_reports[-1]["matrices"].items():
    assert entry["sparsity"] == pytest.approx(
        pruning.achievable_sparsity(entry["size"], entry["target"])), key
  assert resumed.phase_reports == full.phase_reports
  for a, b in zip(full.model.get_weights(), resumed.model.get_weights()):
    np.testing.assert_array_equal(a, b)


def test_sparsity_report_of_a_model_without_fast_cells(rng):
  model = models.sequence_classifier("gru", H, (T, D), C)
  report = pruning.sparsity_report(model)
  assert report["matrices"] == {}
  assert report["totals"]["params"] == model.count_params()


def test_achievable_sparsity_rounds_like_tfmot():
  assert pruning.achievable_sparsity(12, 0.3) == pytest.approx(1 - 8 / 12)
  assert pruning.achievable_sparsity(12, 0.95) == pytest.approx(1 - 1 / 12)  # keeps one
  assert pruning.achievable_sparsity(12, 0.5) == 0.5
  assert pruning.achievable_sparsity(12, 0.0) == 0.0


@pytest.mark.parametrize("kwargs, match", [
    ({"w": 1.0}, r"sparsity_w is the fraction zeroed and must be in \[0, 1\)"),
    ({"u": -0.1}, r"sparsity_u is the fraction zeroed and must be in \[0, 1\)"),
    ({"phase_fractions": (0.5, 0.5, 0.5)}, "phase_fractions must sum to 1"),
    ({"phase_fractions": (0.5, 0.5, 0.0)}, "phase_fractions must be three numbers > 0"),
    ({"frequency": 0}, "frequency must be a positive int"),
])
def test_bad_config(kwargs, match):
  with pytest.raises(ValueError, match=match):
    pruning.SparsitySpec(**kwargs)


def test_bad_training_requests(data, rng):
  config = pruning.SparsitySpec(0.5, 0.5)
  with pytest.raises(ValueError, match="epochs=2 cannot hold three phases"):
    _train(_model("fastgrnn", rng), data, config, epochs=2)
  with pytest.raises(ValueError, match=r"epochs per phase \(0, 2, 2\)"):
    _train(_model("fastgrnn", rng), data,
           pruning.SparsitySpec(0.5, 0.5, phase_fractions=(0.1, 0.45, 0.45)), epochs=4)
  with pytest.raises(ValueError, match="has no tf_fastgrnn cell"):
    _train(models.sequence_classifier("lstm", H, (T, D), C), data, config)
  wrapped = tfmot.sparsity.keras.prune_low_magnitude(_model("fastgrnn", rng))
  with pytest.raises(ValueError, match="already has pruning wrappers"):
    _train(wrapped, data, config)
  with pytest.raises(ValueError, match="sparsity must be a SparsitySpec"):
    _train(_model("fastgrnn", rng), data, {"sparsity_w": 0.5})
