"""The Keras 3 cells (tf_fastgrnn.keras3) against the NumPy reference, on each backend.

The module runs in the suite on the TensorFlow backend; ``test_other_backends`` runs it
again in a subprocess with ``KERAS_BACKEND=jax`` / ``torch`` where those are installed.
"""

import keras
import numpy as np
import pytest

import tf_fastgrnn
from tf_fastgrnn import keras3
from tests import helpers
from tests.test_cells import (B, D, GRNN_CASES, H, NP_ACTS, RANKS, T, explicit_weights,
                              ref_fastgrnn, ref_fastrnn)

BACKEND = keras.backend.backend()
GRNN_NAMES = ["bias_gate", "bias_update", "zeta", "nu"]
RNN_NAMES = ["bias_update", "alpha", "beta"]


def _set(cell, w):
  for var in cell.weights:
    var.assign(w[var.name].astype(np.float32))


def _np(t):
  return keras.ops.convert_to_numpy(t)


@pytest.mark.parametrize("w_rank,u_rank,gate,update", GRNN_CASES)
def test_fastgrnn_matches_numpy(rng, w_rank, u_rank, gate, update):
  cell = keras3.FastGRNNCell(H, w_rank=w_rank, u_rank=u_rank, gate_activation=gate,
                             update_activation=update)
  layer = keras.layers.RNN(cell, return_sequences=True)
  x = rng.normal(0, 1, (B, T, D))
  layer(x.astype(np.float32))
  w = explicit_weights(rng, w_rank, u_rank, GRNN_NAMES)
  _set(cell, w)
  got = _np(layer(x.astype(np.float32)))
  np.testing.assert_allclose(got, ref_fastgrnn(x, w, gate, update), atol=1e-5, rtol=0)


@pytest.mark.parametrize("w_rank,u_rank", RANKS)
@pytest.mark.parametrize("update", sorted(NP_ACTS))
def test_fastrnn_matches_numpy(rng, w_rank, u_rank, update):
  cell = keras3.FastRNNCell(H, w_rank=w_rank, u_rank=u_rank, update_activation=update)
  layer = keras.layers.RNN(cell, return_sequences=True)
  x = rng.normal(0, 1, (B, T, D))
  layer(x.astype(np.float32))
  w = explicit_weights(rng, w_rank, u_rank, RNN_NAMES)
  _set(cell, w)
  got = _np(layer(x.astype(np.float32)))
  np.testing.assert_allclose(got, ref_fastrnn(x, w, update), atol=1e-5, rtol=0)


def test_rnn_options_go_backwards_return_state_stateful(rng):
  w = explicit_weights(rng, 3, 2, GRNN_NAMES)
  x = rng.normal(0, 1, (B, 2 * T, D))
  want = ref_fastgrnn(x, w, "sigmoid", "tanh")
  # return_state: the last output and the state, both h_T.
  layer = keras3.FastGRNN(H, w_rank=3, u_rank=2, return_state=True)
  layer(x[:, :T].astype(np.float32))
  _set(layer.cell, w)
  out, state = layer(x[:, :T].astype(np.float32))
  np.testing.assert_allclose(_np(out), want[:, T - 1], atol=1e-5, rtol=0)
  np.testing.assert_allclose(_np(state), want[:, T - 1], atol=1e-5, rtol=0)
  # go_backwards: the reference on the reversed sequence.
  back = keras3.FastGRNN(H, w_rank=3, u_rank=2, go_backwards=True)
  back(x[:, :T].astype(np.float32))
  _set(back.cell, w)
  np.testing.assert_allclose(_np(back(x[:, :T].astype(np.float32))),
                             ref_fastgrnn(x[:, :T][:, ::-1], w, "sigmoid", "tanh")[:, -1],
                             atol=1e-5, rtol=0)
  # stateful: a second call continues from the first call's state.
  model = keras.Sequential([keras.Input((T, D), batch_size=B),
                            keras3.FastGRNN(H, w_rank=3, u_rank=2, stateful=True)])
  _set(model.layers[0].cell, w)
  model(x[:, :T].astype(np.float32))
  np.testing.assert_allclose(_np(model(x[:, T:].astype(np.float32))), want[:, -1],
                             atol=1e-5, rtol=0)


def test_same_arguments_weight_names_and_shapes_as_the_tf_keras_cells():
  for k3_cls, k2_cls in [(keras3.FastGRNNCell, tf_fastgrnn.FastGRNNCell),
                         (keras3.FastRNNCell, tf_fastgrnn.FastRNNCell)]:
    k3 = k3_cls(H, w_rank=3, u_rank=2)
    keras.layers.RNN(k3)(np.zeros((1, 2, D), np.float32))
    k2 = k2_cls(H, w_rank=3, u_rank=2)
    tf_fastgrnn.keras.layers.RNN(k2)(np.zeros((1, 2, D), np.float32))
    names2 = [(v.name.split("/")[-1].split(":")[0], tuple(v.shape)) for v in k2.weights]
    assert [(v.name, tuple(v.shape)) for v in k3.weights] == names2
    config2 = k2.get_config()
    config3 = k3.get_config()
    own = set(config2) - set(tf_fastgrnn.keras.layers.Layer().get_config())
    assert {k: config3[k] for k in own if "initializer" not in k} == {
        k: config2[k] for k in own if "initializer" not in k}


@pytest.mark.parametrize("layer_fn", [keras3.FastGRNN, keras3.FastRNN])
def test_one_training_step_changes_every_weight_and_save_load(tmp_path, rng, layer_fn):
  model = keras.Sequential([keras.Input((T, D)), layer_fn(H, w_rank=2, u_rank=3),
                            keras.layers.Dense(3)])
  model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
  x = rng.normal(0, 1, (B, T, D)).astype(np.float32)
  y = rng.normal(0, 1, (B, 3)).astype(np.float32)
  before = {v.path: _np(v).copy() for v in model.trainable_weights}
  assert len(before) == (9 if layer_fn is keras3.FastRNN else 10)
  model.train_on_batch(x, y)
  for v in model.trainable_weights:
    assert not np.array_equal(_np(v), before[v.path]), v.path
  path = tmp_path / "m.keras"
  model.save(path)
  loaded = keras.models.load_model(path)
  np.testing.assert_array_equal(_np(loaded(x)), _np(model(x)))


def test_a_tf_keras_cell_in_a_keras3_rnn_is_refused():
  with pytest.raises(TypeError, match=r"FastGRNNCell cannot run inside a Keras 3 layer"
                                      r".*use tf_fastgrnn\.keras3\.FastGRNNCell"):
    keras.layers.RNN(tf_fastgrnn.FastGRNNCell(8))
  with pytest.raises(TypeError, match=r"use tf_fastgrnn\.keras3\.FastRNNCell"):
    keras.Sequential([keras.Input((10, 3)), keras.layers.RNN(tf_fastgrnn.FastRNNCell(8))])


def test_a_keras3_cell_in_a_tf_keras_rnn_is_refused():
  k2 = tf_fastgrnn.keras
  with pytest.raises(TypeError, match=r"keras3\.FastGRNNCell cannot run inside a tf_keras "
                                      r"\(Keras 2\) layer.*use tf_fastgrnn\.FastGRNNCell"):
    k2.Sequential([k2.Input((10, 3)), k2.layers.RNN(keras3.FastGRNNCell(8)),
                   k2.layers.Dense(2)])
  with pytest.raises(TypeError, match=r"use tf_fastgrnn\.FastRNNCell"):
    k2.layers.RNN(keras3.FastRNNCell(8))(np.zeros((1, 2, 3), np.float32))


def test_the_tf_keras_cells_still_work_in_tf_keras():
  k2 = tf_fastgrnn.keras
  model = k2.Sequential([k2.Input((10, 3)), tf_fastgrnn.FastGRNN(8), k2.layers.Dense(2)])
  assert model.count_params() == 3 * 8 + 8 * 8 + 2 * 8 + 2 + 8 * 2 + 2


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends(backend):
  if BACKEND != "tensorflow":
    pytest.skip("runs from the TensorFlow-backend session only")
  helpers.run_under_backend(__file__, backend, ["-k", "not other_backends"], timeout=600)
