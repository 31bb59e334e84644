"""FastGRNN/FastRNN cells against a NumPy reference of the paper's equations."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot

import tf_fastgrnn
from tf_fastgrnn._keras import keras

B, T, D, H = 2, 4, 5, 6

NP_ACTS = {
    "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)),
    "tanh": np.tanh,
    "relu": lambda v: np.maximum(v, 0.0),
    "quantized_sigmoid": lambda v: np.clip((v + 1.0) / 2.0, 0.0, 1.0),
    "quantized_tanh": lambda v: np.clip(v, -1.0, 1.0),
}


def sig(v):
  return 1.0 / (1.0 + np.exp(-v))


def explicit_weights(rng, w_rank, u_rank, names):
  """Random but explicit weights, set into the cell by name (float64 for the reference)."""
  w = {}
  if w_rank is None:
    w["W"] = rng.normal(0, 0.5, (D, H))
  else:
    w["W1"], w["W2"] = rng.normal(0, 0.5, (D, w_rank)), rng.normal(0, 0.5, (w_rank, H))
  if u_rank is None:
    w["U"] = rng.normal(0, 0.5, (H, H))
  else:
    w["U1"], w["U2"] = rng.normal(0, 0.5, (H, u_rank)), rng.normal(0, 0.5, (u_rank, H))
  for name in names:
    w[name] = rng.normal(0, 0.5, (H,) if name.startswith("bias") else (1,))
  return w


def set_weights(cell, w):
  for var in cell.weights:
    short = var.name.split("/")[-1].split(":")[0]
    var.assign(w[short].astype(np.float32))


def w_u(w):
  W = w["W"] if "W" in w else w["W1"] @ w["W2"]
  U = w["U"] if "U" in w else w["U1"] @ w["U2"]
  return W, U


def ref_fastgrnn(x, w, gate, update):
  W, U = w_u(w)
  h = np.zeros((x.shape[0], H))
  hs = []
  for t in range(x.shape[1]):
    pre = x[:, t] @ W + h @ U
    z = NP_ACTS[gate](pre + w["bias_gate"])
    c = NP_ACTS[update](pre + w["bias_update"])
    h = (sig(w["zeta"]) * (1 - z) + sig(w["nu"])) * c + z * h
    hs.append(h)
  return np.stack(hs, 1)


def ref_fastrnn(x, w, update):
  W, U = w_u(w)
  h = np.zeros((x.shape[0], H))
  hs = []
  for t in range(x.shape[1]):
    c = NP_ACTS[update](x[:, t] @ W + h @ U + w["bias_update"])
    h = sig(w["alpha"]) * c + sig(w["beta"]) * h
    hs.append(h)
  return np.stack(hs, 1)


RANKS = [(None, None), (3, 2), (None, 4), (2, None)]


# Every gate/update pair on one low-rank setting; every rank setting on two pairs.
GRNN_CASES = sorted(
    {(3, 2, g, u) for g in NP_ACTS for u in NP_ACTS}
    | {(wr, ur, g, u) for wr, ur in RANKS
       for g, u in [("sigmoid", "tanh"), ("quantized_sigmoid", "quantized_tanh")]},
    key=str)


@pytest.mark.parametrize("w_rank,u_rank,gate,update", GRNN_CASES)
def test_fastgrnn_matches_numpy(rng, w_rank, u_rank, gate, update):
  cell = tf_fastgrnn.FastGRNNCell(H, w_rank=w_rank, u_rank=u_rank, gate_activation=gate,
                                  update_activation=update)
  layer = keras.layers.RNN(cell, return_sequences=True)
  x = rng.normal(0, 1, (B, T, D))
  layer(x.astype(np.float32))
  w = explicit_weights(rng, w_rank, u_rank, ["bias_gate", "bias_update", "zeta", "nu"])
  set_weights(cell, w)
  got = layer(x.astype(np.float32)).numpy()
  np.testing.assert_allclose(got, ref_fastgrnn(x, w, gate, update), atol=1e-5, rtol=0)


@pytest.mark.parametrize("w_rank,u_rank", RANKS)
@pytest.mark.parametrize("update", sorted(NP_ACTS))
def test_fastrnn_matches_numpy(rng, w_rank, u_rank, update):
  cell = tf_fastgrnn.FastRNNCell(H, w_rank=w_rank, u_rank=u_rank, update_activation=update)
  layer = keras.layers.RNN(cell, return_sequences=True)
  x = rng.normal(0, 1, (B, T, D))
  layer(x.astype(np.float32))
  w = explicit_weights(rng, w_rank, u_rank, ["bias_update", "alpha", "beta"])
  set_weights(cell, w)
  got = layer(x.astype(np.float32)).numpy()
  np.testing.assert_allclose(got, ref_fastrnn(x, w, update), atol=1e-5, rtol=0)


def test_paper_initialisation():
  cell = tf_fastgrnn.FastGRNNCell(H)
  keras.layers.RNN(cell)(np.zeros((1, 2, D), np.float32))
  assert cell.zeta.numpy() == pytest.approx([1.0]) and cell.nu.numpy() == pytest.approx([-4.0])
  np.testing.assert_array_equal(cell.bias_gate.numpy(), np.ones(H))
  np.testing.assert_array_equal(cell.bias_update.numpy(), np.ones(H))
  rnn = tf_fastgrnn.FastRNNCell(H)
  keras.layers.RNN(rnn)(np.zeros((1, 2, D), np.float32))
  assert rnn.alpha.numpy() == pytest.approx([-3.0]) and rnn.beta.numpy() == pytest.approx([3.0])


def test_weight_names_and_shapes():
  cell = tf_fastgrnn.FastGRNNCell(H, w_rank=3, u_rank=2)
  keras.layers.RNN(cell)(np.zeros((1, 2, D), np.float32))
  shapes = {v.name.split("/")[-1].split(":")[0]: tuple(v.shape) for v in cell.weights}
  assert shapes == {"W1": (D, 3), "W2": (3, H), "U1": (H, 2), "U2": (2, H),
                    "bias_gate": (H,), "bias_update": (H,), "zeta": (1,), "nu": (1,)}
  assert [w.name for w in cell.get_prunable_weights()] == [
      v.name for v in cell.weights[:4]]


@pytest.mark.parametrize("layer_fn", [tf_fastgrnn.FastGRNN, tf_fastgrnn.FastRNN])
@pytest.mark.parametrize("w_rank,u_rank", [(None, None), (2, 3)])
def test_gradients_reach_every_weight(rng, layer_fn, w_rank, u_rank):
  model = keras.Sequential([keras.Input((T, D)), layer_fn(H, w_rank=w_rank, u_rank=u_rank),
                            keras.layers.Dense(3)])
  x = tf.constant(rng.normal(0, 1, (B, T, D)), tf.float32)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(tf.square(model(x)))
  grads = tape.gradient(loss, model.trainable_weights)
  for var, grad in zip(model.trainable_weights, grads):
    assert grad is not None, var.name
    assert np.all(np.isfinite(grad.numpy())), var.name
    assert np.any(grad.numpy() != 0), var.name


def test_layer_passes_rnn_arguments(rng):
  x = rng.normal(0, 1, (B, T, D)).astype(np.float32)
  layer = tf_fastgrnn.FastGRNN(H, w_rank=2, return_sequences=True, return_state=True,
                               go_backwards=True, unroll=True)
  assert isinstance(layer, keras.layers.RNN) and type(layer) is keras.layers.RNN
  seq, state = layer(x)
  assert seq.shape == (B, T, H) and state.shape == (B, H)
  np.testing.assert_allclose(seq[:, -1].numpy(), state.numpy(), atol=1e-6)
  # go_backwards: the same cell on the reversed sequence.
  fwd = keras.layers.RNN(layer.cell, return_sequences=True)
  np.testing.assert_allclose(fwd(x[:, ::-1]).numpy(), seq.numpy(), atol=1e-6)


def test_sequential_example_from_the_docs():
  model = keras.Sequential([keras.Input((T, D)), tf_fastgrnn.FastGRNN(32, w_rank=4),
                            keras.layers.Dense(6)])
  assert model(np.zeros((B, T, D), np.float32)).shape == (B, 6)


@pytest.mark.parametrize("kwargs,message", [
    ({"units": 0}, "units must be a positive int, got 0"),
    ({"units": -3}, "units must be a positive int, got -3"),
    ({"units": 4, "u_rank": 5}, "u_rank must be a positive int not above units=4, got 5"),
    ({"units": 4, "w_rank": 0}, "w_rank must be None (full rank) or a positive int, got 0"),
    ({"units": 4, "gate_activation": "swish"}, "gate_activation must be one of"),
    ({"units": 4, "update_activation": "hardtanh"}, "got 'hardtanh'"),
])
def test_bad_arguments_name_the_value(kwargs, message):
  units = kwargs.pop("units")
  with pytest.raises(ValueError, match=re_escape(message)):
    tf_fastgrnn.FastGRNNCell(units, **kwargs)


def test_w_rank_above_input_dim_fails_at_build():
  layer = tf_fastgrnn.FastGRNN(16, w_rank=D + 1)
  with pytest.raises(ValueError, match=re_escape(
      f"w_rank must be a positive int not above min(input_dim, units)={D}, got {D + 1}")):
    layer(np.zeros((1, 2, D), np.float32))


def re_escape(s):
  import re  # pylint: disable=import-outside-toplevel
  return re.escape(s)


@pytest.mark.parametrize("cell_cls", [tf_fastgrnn.FastGRNNCell, tf_fastgrnn.FastRNNCell])
def test_config_round_trip(cell_cls):
  kwargs = dict(w_rank=2, u_rank=3, update_activation="quantized_tanh",
                kernel_initializer="he_normal")
  cell = cell_cls(H, name="c", **kwargs)
  clone = cell_cls.from_config(cell.get_config())
  assert clone.get_config() == cell.get_config()
  for key, value in kwargs.items():
    got = clone.get_config()[key]
    assert (got == value) if not isinstance(got, dict) else got["class_name"] == "HeNormal"


def _model(rng):
  model = keras.Sequential([
      keras.Input((T, D)),
      tf_fastgrnn.FastGRNN(H, w_rank=2, u_rank=3, return_sequences=True,
                           gate_activation="quantized_sigmoid"),
      tf_fastgrnn.FastRNN(4, update_activation="relu"),
      keras.layers.Dense(3)])
  for var in model.weights:
    var.assign(rng.normal(0, 0.5, var.shape))
  return model


@pytest.mark.parametrize("fmt", [".keras", ".h5", "savedmodel"])
def test_save_load_without_custom_objects(rng, tmp_path, fmt):
  model = _model(rng)
  x = rng.normal(0, 1, (B, T, D)).astype(np.float32)
  path = str(tmp_path / ("model" + ("" if fmt == "savedmodel" else fmt)))
  model.save(path)
  loaded = keras.models.load_model(path)
  assert type(loaded.layers[0].cell) is tf_fastgrnn.FastGRNNCell
  np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_registered_names():
  assert keras.utils.get_registered_name(tf_fastgrnn.FastGRNNCell) == "tf_fastgrnn>FastGRNNCell"
  assert keras.utils.get_registered_name(tf_fastgrnn.FastRNNCell) == "tf_fastgrnn>FastRNNCell"


def test_prune_low_magnitude_reaches_sparsity(rng):
  model = _model(rng)
  sparsity = tfmot.sparsity.keras
  pruned = sparsity.prune_low_magnitude(
      model, pruning_schedule=sparsity.ConstantSparsity(0.75, begin_step=0, frequency=1))
  pruned.compile("sgd", "mse")
  x = rng.normal(0, 1, (8, T, D)).astype(np.float32)
  y = rng.normal(0, 1, (8, 3)).astype(np.float32)
  pruned.fit(x, y, epochs=1, batch_size=4, verbose=0,
             callbacks=[sparsity.UpdatePruningStep()])
  stripped = sparsity.strip_pruning(pruned)
  np.testing.assert_allclose(stripped.predict(x, verbose=0), pruned.predict(x, verbose=0),
                             atol=1e-6)
  cells = [l.cell for l in stripped.layers if hasattr(l, "cell")]
  prunable = [w for c in cells for w in c.get_prunable_weights()]
  assert len(prunable) == 6  # W1 W2 U1 U2 of FastGRNN, W U of FastRNN
  for w in prunable:
    assert np.mean(w.numpy() == 0) == pytest.approx(0.75, abs=1.0 / w.shape.num_elements())
  for c in cells:
    for w in c.weights:
      if w.name not in {p.name for p in c.get_prunable_weights()}:
        assert np.all(w.numpy() != 0), f"{w.name} must stay dense"
