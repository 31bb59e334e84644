"""int8 step-model export: equations, op set, dtypes, state quantization, refusals."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from tests import helpers
from tf_fastgrnn import export
from tf_fastgrnn._keras import keras

T, D, H, C = 5, 4, 8, 3


def _model(rng, cell="fastgrnn", **kwargs):
  return helpers.random_classifier(rng, cell, H, (T, D), C, **kwargs)


@pytest.mark.parametrize("cell,kwargs", [("fastgrnn", {"w_rank": 2, "u_rank": 3}),
                                         ("fastrnn", {}), ("lstm", {}), ("gru", {})])
def test_step_model_steps_the_sequence_model(rng, cell, kwargs):
  model = _model(rng, cell, **kwargs)
  x = rng.normal(0, 1, (2, T, D)).astype(np.float32)
  step = export.step_model(model, batch_size=None)
  state = {n: np.zeros((2, H), np.float32) for n in step.input if n != "x"}
  for t in range(T):
    out = step(dict(state, x=x[:, t]))
    state = {"h": out["h_next"].numpy()}
    if "c_next" in out:
      state["c"] = out["c_next"].numpy()
  np.testing.assert_allclose(out["logits"].numpy(), model(x).numpy(), atol=1e-5)


@pytest.fixture(scope="module")
def fastgrnn_int8():
  model, tflite_bytes, _, _ = helpers.converted_classifier("fastgrnn", H, (T, D), C,
                                                           windows=16, w_rank=2, u_rank=4)
  return model, tflite_bytes


def test_export_is_int8_with_builtin_tflm_ops(fastgrnn_int8):
  _, tflite_bytes = fastgrnn_int8
  ops = export.model_ops(tflite_bytes)
  assert set(ops) <= {"FULLY_CONNECTED", "ADD", "SUB", "MUL", "LOGISTIC", "TANH"}, ops
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=import-outside-toplevel
  interp = Interpreter(model_content=tflite_bytes)
  assert interp.get_signature_list() == {
      "serving_default": {"inputs": ["h", "x"], "outputs": ["h_next", "logits"]}}
  details = interp.get_input_details() + interp.get_output_details()
  assert all(d["dtype"] == np.int8 for d in details)
  assert sorted(tuple(d["shape"]) for d in details) == [(1, C), (1, D), (1, H), (1, H)]
  export.check_tflm_compatible(tflite_bytes)


def test_state_in_and_out_share_quantization(fastgrnn_int8):
  _, tflite_bytes = fastgrnn_int8
  q = export.io_quantization(tflite_bytes)
  assert q["h"] == q["h_next"]
  assert q["h"][0] > 0


def test_int8_step_model_tracks_float(fastgrnn_int8, rng):
  """LiteRT's reference kernels stepping the int8 model stay close to Keras float."""
  model, tflite_bytes = fastgrnn_int8
  from ai_edge_litert.interpreter import Interpreter, OpResolverType  # pylint: disable=import-outside-toplevel
  run = Interpreter(model_content=tflite_bytes,
                    experimental_op_resolver_type=OpResolverType.BUILTIN_REF
                    ).get_signature_runner()
  q = export.io_quantization(tflite_bytes)
  quant = lambda v, n: np.clip(np.round(v / q[n][0]) + q[n][1], -128, 127).astype(np.int8)
  x = rng.normal(0, 1, (4, T, D)).astype(np.float32)
  want = model(x).numpy()
  for i in range(4):
    h = np.full((1, H), q["h"][1], np.int8)
    for t in range(T):
      out = run(x=quant(x[i, t:t + 1], "x"), h=h)
      h = out["h_next"]
    logits = (out["logits"].astype(np.float32) - q["logits"][1]) * q["logits"][0]
    np.testing.assert_allclose(logits[0], want[i], atol=0.15)


def test_window_model_is_int8_and_larger(fastgrnn_int8, rng):
  model, step_bytes = fastgrnn_int8
  window_bytes = export.convert_window_model(model, rng.normal(0, 1, (8, T, D)))
  export.check_tflm_compatible(window_bytes)
  assert len(window_bytes) > len(step_bytes)


def _float_split(tflite_bytes):
  """The model with its first SPLIT in float as the converter sometimes leaves it:
  DEQUANTIZE -> SPLIT -> a QUANTIZE on the same grid per read output, a dead output
  float (or the bytes as they are if the converter did that itself)."""
  fb_model = export.read_model(tflite_bytes)
  graph = fb_model.subgraphs[0]
  names = [export.op_name(fb_model, op) for op in graph.operators]
  if "DEQUANTIZE" in names:
    return tflite_bytes
  codes = {}
  for kind in ("DEQUANTIZE", "QUANTIZE"):
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = getattr(schema.BuiltinOperator, kind)
    code.version = 1
    fb_model.operatorCodes.append(code)
    codes[kind] = len(fb_model.operatorCodes) - 1

  def float_tensor(like):
    tensor = schema.TensorT()
    tensor.shape, tensor.type, tensor.name = list(graph.tensors[like].shape), 0, b""
    fb_model.buffers.append(schema.BufferT())
    tensor.buffer = len(fb_model.buffers) - 1
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1

  def operator(kind, inputs, outputs):
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = codes[kind], inputs, outputs
    return op

  k = names.index("SPLIT")
  split = graph.operators[k]
  read = {int(i) for op in graph.operators for i in op.inputs}
  source = int(split.inputs[1])
  split.inputs[1] = float_tensor(source)
  before, after = [operator("DEQUANTIZE", [source], [int(split.inputs[1])])], []
  dead = 0
  for j, out in enumerate(list(split.outputs)):
    if int(out) in read:
      split.outputs[j] = float_tensor(int(out))
      after.append(operator("QUANTIZE", [int(split.outputs[j])], [int(out)]))
    else:
      graph.tensors[out].type, graph.tensors[out].quantization = 0, None
      dead += 1
  assert dead == 1  # step 0's forget gate: σ(f)·c_0 with c_0 = 0 is folded away
  graph.operators = graph.operators[:k] + before + [split] + after + graph.operators[k + 1:]
  return bytes(flatbuffer_utils.convert_object_to_bytearray(fb_model))


def _run_ref(tflite_bytes, x):
  interpreter = tf.lite.Interpreter(
      model_content=tflite_bytes,
      experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
  interpreter.allocate_tensors()
  interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
  interpreter.invoke()
  return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()


def test_lstm_window_split_left_in_float_is_put_back_in_int8(rng, monkeypatch):
  # The converter leaves step 0's SPLIT of the unrolled LSTM in float in about one
  # conversion of three (nondeterministic); the export puts it back in int8 on the
  # DEQUANTIZE's grid, the same bytes out.
  model = helpers.random_classifier(rng, "lstm", 4, (3, 2), 2)
  raw = []
  finish = export._finish  # pylint: disable=protected-access
  monkeypatch.setattr(export, "_finish", lambda b, **kw: raw.append(b) or finish(b, **kw))
  export.convert_window_model(model, rng.normal(0, 1, (16, 3, 2)))
  float_split = _float_split(raw[0])
  with pytest.raises(export.TFLMCompatibilityError, match="from DEQUANTIZE op"):
    export.check_tflm_compatible(float_split)
  fixed = finish(float_split, share_state=False)
  export.check_tflm_compatible(fixed)
  assert not {"DEQUANTIZE", "QUANTIZE"} & set(export.model_ops(fixed))
  assert len(export.read_model(fixed).operatorCodes) == len(export.model_ops(fixed))
  assert len(export.read_model(fixed).subgraphs[0].tensors) == len(
      export.read_model(float_split).subgraphs[0].tensors) - 4
  for _ in range(8):
    x = rng.integers(-128, 128, (1, 3, 2), dtype=np.int8)
    np.testing.assert_array_equal(_run_ref(fixed, x), _run_ref(float_split, x))


def test_refuses_float_model_naming_tensors():
  dense = keras.Sequential([keras.Input((D,), batch_size=1), keras.layers.Dense(C)])
  float_bytes = tf.lite.TFLiteConverter.from_keras_model(dense).convert()
  with pytest.raises(export.TFLMCompatibilityError, match="FLOAT32, not int8"):
    export.check_tflm_compatible(float_bytes)


def test_refusal_names_an_unnamed_tensor_by_index_shape_and_ops():
  # _finish clears every name but the I/O ones: the float tensor between the two
  # FULLY_CONNECTEDs is found by its index, shape and the ops around it.
  first, second = keras.layers.Dense(C), keras.layers.Dense(2)
  dense = keras.Sequential([keras.Input((D,), batch_size=1), first, second])
  first.set_weights([np.eye(D, C, dtype=np.float32), np.zeros(C, np.float32)])
  second.set_weights([np.ones((C, 2), np.float32), np.zeros(2, np.float32)])
  float_bytes = export._finish(  # pylint: disable=protected-access
      tf.lite.TFLiteConverter.from_keras_model(dense).convert(), share_state=False)
  graph = export.read_model(float_bytes).subgraphs[0]
  hidden = graph.operators[0].outputs[0]
  assert graph.tensors[hidden].name == b""
  with pytest.raises(export.TFLMCompatibilityError, match=(
      f"tensor #{hidden} \\[1, {C}\\] \\(from FULLY_CONNECTED op 0, into FULLY_CONNECTED "
      "op 1\\) is FLOAT32, not int8")):
    export.check_tflm_compatible(float_bytes)


def test_refuses_dynamic_batch():
  dense = keras.Sequential([keras.Input((D,)), keras.layers.Dense(C)])
  with pytest.raises(export.TFLMCompatibilityError, match="dynamic shape"):
    export.check_tflm_compatible(tf.lite.TFLiteConverter.from_keras_model(dense).convert())


def test_refuses_wrong_layout():
  other = keras.Sequential([keras.Input((T, D)), keras.layers.Flatten(), keras.layers.Dense(C)])
  with pytest.raises(ValueError, match="sequence_classifier"):
    export.step_model(other)


def _classifier_bias(tflite_bytes):
  """The logits FULLY_CONNECTED's int32 bias, its scales, and its input's scale."""
  fb_model = export.read_model(tflite_bytes)
  graph = fb_model.subgraphs[0]
  _, outputs = export.signature_tensors(fb_model)
  op = next(op for op in graph.operators if op.outputs[0] == outputs["logits"])
  bias = graph.tensors[op.inputs[2]]
  values = np.frombuffer(bytes(fb_model.buffers[bias.buffer].data), np.int32)
  weight_scales = np.asarray(graph.tensors[op.inputs[1]].quantization.scale)
  input_scale = graph.tensors[op.inputs[0]].quantization.scale[0]
  return values, np.asarray(bias.quantization.scale), weight_scales, input_scale


def test_classifier_bias_follows_the_shared_state_scale(fastgrnn_int8):
  # h_next's scale is changed after conversion (shared with h); the classifier's int32
  # bias is stored in units of that scale × the weight scale, so it must follow.
  model, tflite_bytes = fastgrnn_int8
  values, bias_scales, weight_scales, input_scale = _classifier_bias(tflite_bytes)
  np.testing.assert_allclose(bias_scales, input_scale * weight_scales, rtol=1e-6)
  expected = model.get_layer("logits").bias.numpy() / (input_scale * weight_scales)
  np.testing.assert_allclose(values, expected, atol=0.5 + 1e-3)


def test_lstm_cell_state_grid_is_capped(rng):
  model = _model(rng, "lstm")
  # Large inputs drive c far beyond ±8 in calibration.
  tflite_bytes = export.convert_step_model(model, rng.normal(0, 30, (8, T, D)))
  q = export.io_quantization(tflite_bytes)
  assert q["c"] == q["c_next"]
  assert q["c"][0] <= export.CELL_STATE_LIMIT / 128 + 1e-9
  values, bias_scales, weight_scales, input_scale = _classifier_bias(tflite_bytes)
  np.testing.assert_allclose(bias_scales, input_scale * weight_scales, rtol=1e-6)


def test_range_to_int8_matches_tf_fake_quant():
  for lo, hi in ((-8.0, 7.9375), (-0.3, 2.2), (0.0, 1.0), (-5.0, 0.0)):
    scale, zero_point = export.range_to_int8(lo, hi)
    grid = (np.arange(-128, 128) - zero_point) * scale
    values = np.linspace(lo - 0.5, hi + 0.5, 1001).astype(np.float32)
    fq = tf.quantization.fake_quant_with_min_max_vars(values, lo, hi, num_bits=8).numpy()
    # On the grid, and the nearest grid point (ties may go either way).
    assert np.abs(fq[:, None] - grid[None, :]).min(1).max() < 1e-5
    clipped = np.clip(values, grid[0], grid[-1])
    assert np.abs(fq - clipped).max() <= scale / 2 + 1e-5
