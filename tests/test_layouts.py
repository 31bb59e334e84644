"""Any Input → RNN(cell) → Dense, Sequential or functional, any layer names: found by
type, quantization-trained and exported, Keras QAT = TFLM byte for byte."""

import numpy as np
import pytest

import tf_fastgrnn
from tf_fastgrnn import export
from tf_fastgrnn import models
from tf_fastgrnn import quantization
from tf_fastgrnn import stepping
from tf_fastgrnn import training
from tf_fastgrnn._keras import keras
from tests.test_qat_activations import assert_qat_equals_tflm_every_step
from tests import helpers

T, D, H, C = 4, 3, 6, 3


def _sequential():
  return keras.Sequential([keras.Input((T, D)), tf_fastgrnn.FastGRNN(H, w_rank=2),
                           keras.layers.Dense(C)], name="seq")


def _functional():
  x = keras.Input((T, D), name="frames")
  h = keras.layers.RNN(tf_fastgrnn.FastRNNCell(H, u_rank=3), name="encoder")(x)
  return keras.Model(x, keras.layers.Dense(C, name="head")(h), name="func")


@pytest.mark.parametrize("build", [_sequential, _functional])
def test_user_layouts_train_quantize_and_export_bit_exact(build, rng):
  model = build()
  for var in model.weights:
    var.assign(rng.normal(0, 0.6, var.shape))
  windows = rng.normal(0, 1.5, (24, T, D)).astype(np.float32)
  y = rng.integers(0, C, 24)
  qat = quantization.quantize_model(model, windows)
  assert [l.name for l in stepping.parts(qat)] == [l.name for l in stepping.parts(model)]
  training.fit(
      qat, (windows, y), None, helpers.recipe(epochs=1, batch_size=8, learning_rate=0.001),
      options=helpers.options(verbose=0))
  quantization.calibrate(qat, windows)
  float_model, plan = quantization.export_inputs(qat)
  tflite_bytes = export.convert_step_model(float_model, windows, plan=plan)
  assert_qat_equals_tflm_every_step(qat, tflite_bytes, windows)
  assert models.macs_per_step(model)["dense"] == sum(
      int(np.prod(w.shape)) for w in model.weights if len(w.shape) == 2)


def _dense_after(rnn, **dense_kwargs):
  return keras.Sequential([keras.Input((T, D)), rnn, keras.layers.Dense(C, **dense_kwargs)])


@pytest.mark.parametrize("model,match", [
    (lambda: _dense_after(tf_fastgrnn.FastGRNN(H, return_sequences=True)),
     "return_sequences=True"),
    (lambda: _dense_after(tf_fastgrnn.FastGRNN(H), activation="softmax"),
     "activation 'softmax'"),
    (lambda: keras.Sequential([keras.Input((T, D)), tf_fastgrnn.FastGRNN(H),
                               keras.layers.Dense(4), keras.layers.Dense(C)]),
     r"got layers \['RNN', 'Dense', 'Dense'\]"),
])
def test_other_layouts_are_refused_naming_the_problem(model, match):
  with pytest.raises(ValueError, match=match):
    stepping.parts(model())
  with pytest.raises(ValueError, match=match):
    quantization.quantize_model(model())


def test_quantized_dense_needs_its_input_grid():
  with pytest.raises(ValueError, match="needs input_grid"):
    quantization.QuantizedDense(3)


def test_readme_first_example_uses_the_public_keras(tmp_path):
  import tf_keras  # pylint: disable=import-outside-toplevel
  assert tf_fastgrnn.keras is tf_keras
  model = _sequential()
  model.save(tmp_path / "m.keras")
  loaded = tf_fastgrnn.keras.models.load_model(tmp_path / "m.keras")
  assert isinstance(stepping.parts(loaded)[0].cell, tf_fastgrnn.FastGRNNCell)


def test_a_stripped_pruned_model_is_found_by_type(rng):
  import tensorflow_model_optimization as tfmot  # pylint: disable=import-outside-toplevel
  model = _functional()
  wrapped = tfmot.sparsity.keras.prune_low_magnitude(model)
  with pytest.raises(ValueError, match="pruning wrappers"):
    stepping.parts(wrapped)
  stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
  rnn, dense = stepping.parts(stripped)
  assert (rnn.name, dense.name) == ("encoder", "head")
  assert quantization.is_qat_model(quantization.quantize_model(stripped))
