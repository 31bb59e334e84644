"""to_tf_keras / to_keras3: a Keras 3 classifier copied into its tf_keras twin and back.

Explicit weights set in one model, read back by name from its twin, and the twin's logits
against the NumPy reference of the paper's equations. The module runs in the suite on
the TensorFlow backend; ``test_other_backends`` runs it again in a subprocess with
``KERAS_BACKEND=jax`` / ``torch`` where those are installed (as ``test_keras3.py``).
"""

import doctest
import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import tf_fastgrnn
from tf_fastgrnn import keras3
from tf_fastgrnn import keras3_bridge
from tf_fastgrnn import models
from tf_fastgrnn import stepping
from tests import helpers
from tests.test_cells import B, D, H, T, explicit_weights, ref_fastgrnn, ref_fastrnn

BACKEND = keras.backend.backend()
K2 = tf_fastgrnn.keras
C = 3
SCALARS = {"fastgrnn": ["bias_gate", "bias_update", "zeta", "nu"],
           "fastrnn": ["bias_update", "alpha", "beta"]}


def _np(t):
  return keras.ops.convert_to_numpy(t)


def _weights(rng, cell, w_rank, u_rank):
  w = explicit_weights(rng, w_rank, u_rank, SCALARS[cell])
  w["kernel"] = rng.normal(0, 0.5, (H, C))
  w["bias"] = rng.normal(0, 0.5, (C,))
  return w


def _reference(x, w, cell, readout, gate="sigmoid", update="tanh"):
  """Window logits [N, C] in float64: the cell's states, the Dense, the read-out."""
  states = (ref_fastgrnn(x, w, gate, update) if cell == "fastgrnn"
            else ref_fastrnn(x, w, update))
  logits = states @ w["kernel"] + w["bias"]
  return logits[:, -1] if readout == "last" else logits.mean(axis=1)


def _keras3_model(cell_layer, readout, functional):
  """Input → cell_layer → Dense(C) (→ mean pooling) in Keras 3, names of our choosing."""
  mean = readout == "mean"
  head = keras.layers.Dense(C, name="head")
  pool = keras.layers.GlobalAveragePooling1D(name="mean_logits")
  if functional:
    inputs = keras.Input((T, D), name="frames")
    out = head(cell_layer(inputs))
    return keras.Model(inputs, pool(out) if mean else out, name="mine")
  return keras.Sequential([keras.Input((T, D)), cell_layer, head] + ([pool] if mean else []),
                          name="mine")


def _set_by_name(model, w):
  for var in model.weights:
    var.assign(w[var.name].astype(np.float32))


def _short(variable):
  return variable.name.split("/")[-1].split(":")[0]


CASES = [  # cell, w_rank, u_rank, readout, functional, gate, update
    ("fastgrnn", 3, 2, "last", False, "sigmoid", "tanh"),
    ("fastgrnn", None, None, "mean", True, "quantized_sigmoid", "quantized_tanh"),
    ("fastrnn", None, 4, "last", True, None, "relu"),
    ("fastrnn", 2, None, "mean", False, None, "tanh"),
]


@pytest.mark.parametrize("cell,w_rank,u_rank,readout,functional,gate,update", CASES)
def test_twin_has_the_weights_by_name_and_the_reference_logits(
    rng, cell, w_rank, u_rank, readout, functional, gate, update):
  kwargs = dict(w_rank=w_rank, u_rank=u_rank, update_activation=update,
                return_sequences=readout == "mean", name="recurrent")
  if cell == "fastgrnn":
    layer = keras3.FastGRNN(H, gate_activation=gate, zeta_init=0.5, **kwargs)
  else:
    layer = keras3.FastRNN(H, alpha_init=-2.0, **kwargs)
  model = _keras3_model(layer, readout, functional)
  w = _weights(rng, cell, w_rank, u_rank)
  _set_by_name(model, w)
  x = rng.normal(0, 1, (5, T, D))

  twin = tf_fastgrnn.to_tf_keras(model, x)

  assert isinstance(twin, K2.Model) and not isinstance(twin, keras.Model)
  assert isinstance(twin, K2.Sequential) == (not functional)
  assert stepping.readout(twin) == readout  # a layout the export takes
  rnn, dense = stepping.parts(twin)
  assert (rnn.name, dense.name) == ("recurrent", "head")
  twin_cell = rnn.cell
  assert type(twin_cell) is {"fastgrnn": tf_fastgrnn.FastGRNNCell,  # pylint: disable=unidiomatic-typecheck
                             "fastrnn": tf_fastgrnn.FastRNNCell}[cell]
  config = twin_cell.get_config()
  assert (config["w_rank"], config["u_rank"], config["update_activation"]) == (
      w_rank, u_rank, update)
  if cell == "fastgrnn":
    assert (config["gate_activation"], config["zeta_init"]) == (gate, 0.5)
  else:
    assert config["alpha_init"] == -2.0
  got = {_short(v): v.numpy() for v in twin.weights}
  assert sorted(got) == sorted(w)
  for name, value in w.items():
    np.testing.assert_array_equal(got[name], value.astype(np.float32), err_msg=name)
  want = _reference(x, w, cell, readout, gate, update)
  np.testing.assert_allclose(twin.predict(x.astype(np.float32), verbose=0), want,
                             atol=1e-5, rtol=0)
  np.testing.assert_allclose(_np(model(x.astype(np.float32))), want, atol=1e-5, rtol=0)


class _BiasesFirstCell(keras3.FastGRNNCell):
  """The same cell with its weights created in another order: a copy by position would
  put bias_gate into W."""

  def build(self, input_shape):
    self.bias_gate = self.add_weight(name="bias_gate", shape=(self.units,))
    self.bias_update = self.add_weight(name="bias_update", shape=(self.units,))
    self.zeta = self.add_weight(name="zeta", shape=(1,))
    self.nu = self.add_weight(name="nu", shape=(1,))
    super(keras3.FastGRNNCell, self).build(input_shape)  # W, U only


def test_weights_are_copied_by_name_not_by_position(rng):
  model = _keras3_model(keras.layers.RNN(_BiasesFirstCell(H, w_rank=3, u_rank=2)), "last",
                        functional=False)
  assert [v.name for v in model.layers[0].weights][:2] == ["bias_gate", "bias_update"]
  w = _weights(rng, "fastgrnn", 3, 2)
  _set_by_name(model, w)
  x = rng.normal(0, 1, (4, T, D))
  twin = tf_fastgrnn.to_tf_keras(model, x)
  assert _short(twin.layers[0].weights[0]) == "W1"
  np.testing.assert_allclose(twin.predict(x.astype(np.float32), verbose=0),
                             _reference(x, w, "fastgrnn", "last"), atol=1e-5, rtol=0)


class _NoNuCell(keras3.FastGRNNCell):
  """Another function under the same weights: the update without sigmoid(nu)."""

  def call(self, inputs, states, training=None):
    h = states[0] if isinstance(states, (list, tuple)) else states
    pre = self.pre_activation(inputs, h)
    z = keras.ops.sigmoid(pre + self.bias_gate)
    new_h = keras.ops.sigmoid(self.zeta) * (1.0 - z) * keras.ops.tanh(
        pre + self.bias_update) + z * h
    return new_h, [new_h]


class _GainCell(keras3.FastRNNCell):
  """One weight more than the tf_keras cell has."""

  def build(self, input_shape):
    super().build(input_shape)
    self.gain = self.add_weight(name="gain", shape=(1,), initializer="ones")


def test_other_logits_are_refused_naming_the_largest_difference(rng):
  model = _keras3_model(keras.layers.RNN(_NoNuCell(H)), "last", functional=False)
  w = _weights(rng, "fastgrnn", None, None)
  w["nu"] = np.array([3.0])  # sigmoid(nu) ≈ 0.95: the two functions differ plainly
  _set_by_name(model, w)
  x = rng.normal(0, 1, (4, T, D))
  with pytest.raises(ValueError, match=r"tf_keras twin's logits differ from the Keras 3 "
                                       r"model's by up to [0-9.e+-]+ \(window \d, class "
                                       r"\d: .*above atol=1e-05"):
    tf_fastgrnn.to_tf_keras(model, x)
  # The same weights in the cell with the paper's equations pass: the check refused.
  plain = _keras3_model(keras3.FastGRNN(H), "last", functional=False)
  _set_by_name(plain, w)
  tf_fastgrnn.to_tf_keras(plain, x)


def test_a_weight_or_argument_without_a_twin_is_refused_by_name(rng):
  x = rng.normal(0, 1, (2, T, D))
  model = _keras3_model(keras.layers.RNN(_GainCell(H), name="r"), "last", functional=False)
  with pytest.raises(ValueError, match=r"weight r/gain of the Keras 3 model has no twin in "
                                       r"tf_keras's RNN \(tf_fastgrnn\.FastRNNCell\)"):
    tf_fastgrnn.to_tf_keras(model, x)
  head = keras.layers.Dense(C, name="head")
  model = keras.Sequential([keras.Input((T, D)), keras3.FastGRNN(H), head])
  head.enable_lora(2)
  with pytest.raises(ValueError, match=r"'head' \(Dense\) has lora_rank=2, which "
                                       r"tf_keras's Dense does not take"):
    tf_fastgrnn.to_tf_keras(model, x)


ACCEPTS = r"^to_tf_keras accepts a Keras 3 model Input\(\[T, D\]\) → RNN\(.*; got .*"


@pytest.mark.parametrize("build,got", [
    (lambda: keras.Sequential([keras.Input((T, D)), keras.layers.LSTM(H),
                               keras.layers.Dense(C)]), r"layers \['LSTM', 'Dense'\]"),
    (lambda: keras.Sequential([keras.Input((T, D), batch_size=B),
                               keras3.FastGRNN(H, stateful=True), keras.layers.Dense(C)]),
     r"'\w+' with stateful=True"),
    (lambda: keras.Sequential([keras.Input((T, D)), keras3.FastRNN(H, go_backwards=True),
                               keras.layers.Dense(C)]), r"with go_backwards=True"),
    (lambda: keras.Sequential([keras.Input((T, D)), keras3.FastRNN(H),
                               keras.layers.Dense(C, activation="softmax")]),
     r"activation 'softmax'"),
    (lambda: keras.Sequential([keras.Input((T, D)), keras3.FastRNN(H),
                               keras.layers.Dense(H), keras.layers.Dense(C)]),
     r"layers \['RNN', 'Dense', 'Dense'\]"),
    (lambda: keras.Sequential([keras.Input((T, D)), keras3.FastRNN(H, return_sequences=True),
                               keras.layers.Dense(C)]), r"return_sequences=True"),
    (lambda: keras.Sequential([keras3.FastRNN(H), keras.layers.Dense(C)]),
     r"a model with no input yet"),
    (lambda: K2.Sequential([K2.Input((T, D)), tf_fastgrnn.FastGRNN(H), K2.layers.Dense(C)],
                           name="k2"),
     r"a tf_keras model 'k2', which is already what it would return"),
])
def test_other_layouts_are_refused_in_one_line(rng, build, got):
  with pytest.raises(ValueError, match=ACCEPTS + got) as info:
    tf_fastgrnn.to_tf_keras(build(), rng.normal(0, 1, (2, T, D)))
  assert "\n" not in str(info.value)


def test_a_skip_connection_is_refused(rng):
  inputs = keras.Input((T, D))
  rnn = keras3.FastGRNN(H, return_sequences=True)(inputs)
  out = keras.layers.Dense(C)(keras.layers.Concatenate()([rnn, inputs]))
  with pytest.raises(ValueError, match=ACCEPTS + r"layers \['RNN', 'Concatenate', 'Dense"):
    tf_fastgrnn.to_tf_keras(keras.Model(inputs, out), rng.normal(0, 1, (2, T, D)))


def test_bad_windows_and_atol_are_refused_before_any_copy(rng):
  model = _keras3_model(keras3.FastGRNN(H), "last", functional=False)
  with pytest.raises(ValueError, match=r"check_windows must be \[N >= 1, 4, 5\] as the "
                                       r"model's input, got shape \(2, 4, 3\)"):
    tf_fastgrnn.to_tf_keras(model, np.zeros((2, T, 3)))
  windows = np.zeros((1, T, D))
  windows[0, 1, 2] = np.inf
  with pytest.raises(ValueError, match=r"check_windows has 1 non-finite values"):
    tf_fastgrnn.to_tf_keras(model, windows)
  with pytest.raises(ValueError, match=r"atol must be a positive finite number, got 0"):
    tf_fastgrnn.to_tf_keras(model, np.zeros((1, T, D)), atol=0)


@pytest.mark.parametrize("readout", ["last", "mean"])
def test_to_keras3_gives_the_tf_keras_models_weights_and_logits(rng, readout):
  layer = tf_fastgrnn.FastGRNN(H, w_rank=2, u_rank=3, return_sequences=readout == "mean",
                               name="rnn")
  inputs = K2.Input((T, D), name="x")
  out = K2.layers.Dense(C, name="head")(layer(inputs))
  if readout == "mean":
    out = K2.layers.GlobalAveragePooling1D()(out)
  model = K2.Model(inputs, out)
  w = _weights(rng, "fastgrnn", 2, 3)
  for var in model.weights:
    var.assign(w[_short(var)].astype(np.float32))
  x = rng.normal(0, 1, (3, T, D))
  back = tf_fastgrnn.to_keras3(model, x)
  assert isinstance(back, keras.Model) and isinstance(back.layers[1].cell,
                                                      keras3.FastGRNNCell)
  assert {v.name: tuple(v.shape) for v in back.weights} == {
      k: v.shape for k, v in w.items()}
  for var in back.weights:
    np.testing.assert_array_equal(_np(var), w[var.name].astype(np.float32))
  np.testing.assert_allclose(_np(back(x.astype(np.float32))),
                             _reference(x, w, "fastgrnn", readout), atol=1e-5, rtol=0)


def test_the_docstring_example_runs():
  result = doctest.testmod(keras3_bridge)
  assert result.attempted > 0 and result.failed == 0


def test_importing_tf_fastgrnn_does_not_import_the_bridge():
  if BACKEND != "tensorflow":
    pytest.skip("runs from the TensorFlow-backend session only")
  code = ("import sys, tf_fastgrnn; assert 'tf_fastgrnn.keras3_bridge' not in sys.modules;"
          " f = tf_fastgrnn.to_tf_keras; assert f.__module__ == 'tf_fastgrnn.keras3_bridge'")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=300,
                          cwd=os.path.dirname(os.path.dirname(__file__)))
  assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends(backend):
  if BACKEND != "tensorflow":
    pytest.skip("runs from the TensorFlow-backend session only")
  helpers.run_under_backend(__file__, backend, ["-m", "not slow", "-k", "not other_backends and not does_not_import"], timeout=900)


@pytest.mark.slow
def test_jax_model_through_compress_and_deploy(tmp_path):
  """A Keras 3 FastGRNN trained on JAX, given to compress as it is (which copies it into
  its tf_keras twin with to_tf_keras), then deploy: its int8 model's TFLM classes equal those of the tf_keras path (the pipeline's
  own classifier given the same weights) through the same compress and deploy."""
  if BACKEND != "jax":
    pytest.skip("trains on the JAX backend: test_trained_on_jax_to_the_board runs it")
  steps, dim, units, classes = 8, 3, 8, 2
  rng = np.random.default_rng(0)

  def data(n):
    x = rng.normal(0, 1, (n, steps, dim)).astype(np.float32)
    return x, (x[:, :, 0].mean(axis=1) > 0).astype(np.int32)
  train, validation, test = data(96), data(32), data(32)
  keras.utils.set_random_seed(0)
  k3 = keras.Sequential([keras.Input((steps, dim)), keras3.FastGRNN(units, u_rank=4),
                         keras.layers.Dense(classes)])
  k3.compile(optimizer=keras.optimizers.Adam(0.02),
             loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  before = {v.path: _np(v).copy() for v in k3.weights}
  k3.fit(*train, batch_size=16, epochs=3, shuffle=False, verbose=0)
  trained = {v.name: _np(v) for v in k3.weights}
  assert all(not np.array_equal(_np(v), before[v.path]) for v in k3.weights)

  # The Keras 3 model goes into compress as it is (its twin made there); the tf_keras path: the pipeline's own classifier, the same weights set by name here.
  own = models.sequence_classifier("fastgrnn", units, (steps, dim), classes, u_rank=4)
  for var in own.weights:
    var.assign(trained[_short(var)])
  recipe = tf_fastgrnn.Recipe(epochs=3, qat_epochs=1, batch_size=16, lr_schedule="constant",
                              keep_best=False, min_phase_steps=0, max_batch_fraction=1,
                              min_val_windows=0)
  sparsity = tf_fastgrnn.SparsitySpec(w=0.5, u=0.5, frequency=2)
  done = {}
  for name, model in (("keras3", k3), ("tf_keras", own)):
    compressed = tf_fastgrnn.compress(model, train, validation, sparsity=sparsity,
                                      recipe=recipe, seed=0)
    done[name] = tf_fastgrnn.deploy(compressed, train[0][:64], tmp_path / name, test=test)
  ours, theirs = done["keras3"], done["tf_keras"]
  for folder in (ours.folder, theirs.folder):
    assert (folder / "model_int8.tflite").is_file()
    assert (folder / "device" / "model_data.cc").is_file()
  # Both classes predicted: the equality below is not that of two constant models.
  assert sorted(set(ours.evaluation.pred.tolist())) == [0, 1], ours.evaluation.accuracy
  np.testing.assert_array_equal(ours.evaluation.pred, theirs.evaluation.pred)
  assert ours.evaluation.accuracy == theirs.evaluation.accuracy
  assert ours.int8.tflite == theirs.int8.tflite


@pytest.mark.slow
def test_trained_on_jax_to_the_board():
  if BACKEND != "tensorflow":
    pytest.skip("runs from the TensorFlow-backend session only")
  if importlib.util.find_spec("jax") is None:
    pytest.skip("the jax backend is not installed (scripts/test.sh installs the keras3 "
                "extra)")
  result = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
       __file__, "-k", "jax_model_through_compress_and_deploy"],
      env={**os.environ, "KERAS_BACKEND": "jax"}, capture_output=True, text=True,
      check=False, timeout=1800, cwd=os.path.dirname(os.path.dirname(__file__)))
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert "1 passed" in result.stdout, result.stdout[-3000:]


def test_compress_and_deploy_take_a_keras3_model_through_its_twin(rng, tmp_path):
  """A Keras 3 model given to deploy is exported as its tf_keras twin (same int8 bytes as
  deploying to_tf_keras's copy); compress trains the twin and leaves the Keras 3 model."""
  if BACKEND != "tensorflow":
    pytest.skip("the TensorFlow-backend session covers it (JAX: the slow board test)")
  w = _weights(rng, "fastgrnn", None, 3)
  k3 = _keras3_model(keras3.FastGRNN(H, u_rank=3, name="rnn"), "last", functional=False)
  _set_by_name(k3, w)
  x = rng.normal(0, 1, (32, T, D)).astype(np.float32)
  y = rng.integers(0, C, 32)
  a = tf_fastgrnn.deploy(k3, x, tmp_path / "k3", numerics=False)
  b = tf_fastgrnn.deploy(tf_fastgrnn.to_tf_keras(k3, x), x, tmp_path / "twin", numerics=False)
  assert a.int8.tflite == b.int8.tflite
  before = [_np(v).copy() for v in k3.weights]
  recipe = tf_fastgrnn.Recipe(epochs=1, batch_size=16, min_phase_steps=0,
                              max_batch_fraction=1, min_val_windows=0)
  done = tf_fastgrnn.compress(k3, (x, y), (x, y), sparsity=None, recipe=recipe, qat=False)
  assert type(done.deployable).__module__.startswith("tf_keras")
  assert all(np.array_equal(_np(v), b0) for v, b0 in zip(k3.weights, before))
  with pytest.raises(ValueError, match="validation must be"):
    tf_fastgrnn.compress(k3, (x, y), x, recipe=recipe)
