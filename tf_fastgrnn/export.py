"""int8 export of the streaming step model that TensorFlow Lite Micro runs.

The deploy form is a *step model* ``(x_t [1, D], h_{t-1} [1, H]) -> (h_t [1, H],
logits [1, C])``: one recurrent step plus the classifier, fully int8, batch 1. The device
invokes it once per time step and carries ``h`` between invokes. Why not the whole
sequence: TFLM rejects dynamic shapes, the converter's int8 calibration crashed on a
WHILE-loop RNN (TF 2.21), and an unrolled model grows with the window length (see
``convert_window_model`` for that trade-off).

Signature (``serving_default``): inputs ``"x"``, ``"h"``; outputs ``"h_next"``,
``"logits"``. ``h`` and ``h_next`` get identical scale and zero point, so the device
carries the state by a copy.
"""

import pathlib

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from tf_fastgrnn import int8_kernels
from tf_fastgrnn import plan as plan_lib
from tf_fastgrnn import stepping
from tf_fastgrnn._keras import keras

# The stepping helpers, long public here.
step_model = stepping.step_model
representative_pairs = stepping.representative_pairs
range_to_int8 = int8_kernels.range_to_int8
PlanMismatchError = plan_lib.PlanMismatchError

__all__ = [
    "PlanMismatchError",
    "TFLMCompatibilityError",
    "plan_point_quantization",
    "range_to_int8",
    "read_model",
    "signature_tensors",
    "op_name",
    "check_tflm_compatible",
    "convert_int8",
    "read_tflite_file",
    "convert_step_model",
    "convert_window_model",
    "io_quantization",
    "model_ops",
    "representative_pairs",
    "step_model",
    "verify_plan",
]

_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_TENSOR_TYPES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}


# The int8 grid of an LSTM's cell state c spans at most [-8, 8) (scale 1/16).
CELL_STATE_LIMIT = 8.0

# No tensor of a sane int8 model has a scale above this (values beyond ±1.3e8); larger
# ones come from diverged training, and TFLM's multiplier set-up aborts the process on
# them (seen with weights of 4e30), so the check refuses them before TFLM sees the model.
MAX_SCALE = 1e6


# Why convert_window_model refuses a mean read-out model (the pipeline logs it).
WINDOW_MODEL_MEAN_REASON = (
    "readout=mean: an unrolled model's int8 MEAN rounds the mean logits to int8, so its "
    "class could differ from the step model's int32 sum over the window (the deploy form)")


class TFLMCompatibilityError(ValueError):
  """The model cannot run in TFLM as it is; the message lists every problem."""


def _parts(model):
  rnn, dense = stepping.parts(model)
  # A QAT cell (quantization's, found by its int8_exact switch: the export does not
  # import the QAT module) is refused: its grids travel in the plan.
  if hasattr(rnn.cell, "int8_exact"):
    raise ValueError(
        f"{model.name!r} is a QAT model: the export takes the float model and the "
        "quantization plan (quantization.export_inputs(qat_model) gives both)")
  return rnn, dense


def convert_int8(converter, representative):
  """Runs ``converter`` (a ``tf.lite.TFLiteConverter``) as full-integer int8: builtin
  int8 ops only, int8 inputs and outputs, calibrated on ``representative`` (a callable
  yielding feeds). The one converter set-up of the project; returns the bytes."""
  converter.optimizations = [tf.lite.Optimize.DEFAULT]
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  converter.inference_input_type = tf.int8
  converter.inference_output_type = tf.int8
  converter.representative_dataset = representative
  return bytes(converter.convert())


def _convert(fn, trackable, representative):
  return convert_int8(tf.lite.TFLiteConverter.from_concrete_functions(
      [fn.get_concrete_function()], trackable), representative)


def _union_quantization(q_a, q_b):
  """Scale and zero point of an int8 tensor covering both tensors' real ranges."""
  lo = min((-128 - q_a.zeroPoint[0]) * q_a.scale[0], (-128 - q_b.zeroPoint[0]) * q_b.scale[0])
  hi = max((127 - q_a.zeroPoint[0]) * q_a.scale[0], (127 - q_b.zeroPoint[0]) * q_b.scale[0])
  return range_to_int8(lo, hi)


def signature_tensors(fb_model):
  """``({input name: tensor index}, {output name: tensor index})`` by the signature."""
  sig = fb_model.signatureDefs[0]
  inputs = {_name(t): t.tensorIndex for t in sig.inputs}
  outputs = {_name(t): t.tensorIndex for t in sig.outputs}
  return inputs, outputs


def _rescale_biases(fb_model, tensor_index, old_scale, new_scale):
  """Keeps the int32 biases of the FULLY_CONNECTED ops that read ``tensor_index`` right.

  A bias is stored in units of input scale × weight scale; when the input's scale
  changes, its integers must change with it (TFLM adds them to the accumulator as they
  are).
  """
  if old_scale == new_scale:
    return
  graph = fb_model.subgraphs[0]
  for op in graph.operators:
    if (op_name(fb_model, op) != "FULLY_CONNECTED" or op.inputs[0] != tensor_index
        or len(op.inputs) < 3 or op.inputs[2] < 0):
      continue
    bias = graph.tensors[op.inputs[2]]
    weight_scales = np.asarray(graph.tensors[op.inputs[1]].quantization.scale, np.float64)
    buffer = fb_model.buffers[bias.buffer]
    values = np.frombuffer(bytes(buffer.data), np.int32).astype(np.float64)
    old_bias_scales = np.asarray(bias.quantization.scale, np.float64)
    new_bias_scales = np.broadcast_to(new_scale * weight_scales, old_bias_scales.shape)
    rescaled = np.round(values * old_bias_scales / new_bias_scales)
    rescaled = np.clip(rescaled, -2**31, 2**31 - 1).astype(np.int32)
    buffer.data = np.frombuffer(rescaled.tobytes(), np.uint8)
    bias.quantization.scale = new_bias_scales.astype(np.float32).tolist()


def _set_classifier_bias(fb_model, bias):
  """Stores the float ``bias`` of the op giving ``logits`` as int32 in units of its final
  input scale × weight scale, rounded once (half away from zero), as
  ``int8_kernels.fully_connected`` does: rescaling the converter's integers after a
  scale change rounds twice, 1 LSB off in a few logits."""
  graph = fb_model.subgraphs[0]
  _, outputs = signature_tensors(fb_model)
  op = next((op for op in graph.operators if op.outputs[0] == outputs["logits"]
             and op_name(fb_model, op) == "FULLY_CONNECTED"), None)
  if op is None or len(op.inputs) < 3 or op.inputs[2] < 0:
    return
  bias_tensor = graph.tensors[op.inputs[2]]
  input_scale = np.float64(np.float32(graph.tensors[op.inputs[0]].quantization.scale[0]))
  weight_scales = np.asarray(graph.tensors[op.inputs[1]].quantization.scale,
                             np.float32).astype(np.float64)
  scales = input_scale * weight_scales
  ratio = np.asarray(bias, np.float32).astype(np.float64) / scales
  values = np.clip(np.sign(ratio) * np.floor(np.abs(ratio) + 0.5), -2**31, 2**31 - 1)
  fb_model.buffers[bias_tensor.buffer].data = np.frombuffer(
      values.astype(np.int32).tobytes(), np.uint8)
  bias_tensor.quantization.scale = scales.astype(np.float32).tolist()


def _same_grid(tensor_a, tensor_b):
  grid = _tensor_grid(tensor_a)
  return grid is not None and grid == _tensor_grid(tensor_b)


def _drop_unused_tensors(fb_model):
  """Removes tensors no op, graph I/O or signature refers to, renumbering the rest
  (one subgraph, as ``check_tflm_compatible`` requires)."""
  graph = fb_model.subgraphs[0]
  used = set(graph.inputs) | set(graph.outputs)
  for op in graph.operators:
    used.update(int(i) for i in op.inputs if i >= 0)
    used.update(int(i) for i in op.outputs)
    if op.intermediates is not None:
      used.update(int(i) for i in op.intermediates)
  for sig in fb_model.signatureDefs or ():
    used.update(t.tensorIndex for t in list(sig.inputs) + list(sig.outputs))
  keep = sorted(used)
  if len(keep) == len(graph.tensors):
    return
  new = {old: i for i, old in enumerate(keep)}
  graph.tensors = [graph.tensors[i] for i in keep]
  graph.inputs = [new[int(i)] for i in graph.inputs]
  graph.outputs = [new[int(i)] for i in graph.outputs]
  for op in graph.operators:
    op.inputs = [new[int(i)] if i >= 0 else int(i) for i in op.inputs]
    op.outputs = [new[int(i)] for i in op.outputs]
    if op.intermediates is not None:
      op.intermediates = [new[int(i)] for i in op.intermediates]
  for sig in fb_model.signatureDefs or ():
    for t in list(sig.inputs) + list(sig.outputs):
      t.tensorIndex = new[t.tensorIndex]
  # Their buffers and the op codes no op uses any more go too (buffer 0 stays: the
  # schema's empty sentinel).
  buffers = sorted({0} | {t.buffer for g in fb_model.subgraphs for t in g.tensors}
                   | {m.buffer for m in fb_model.metadata or ()})
  new_buffer = {old: i for i, old in enumerate(buffers)}
  fb_model.buffers = [fb_model.buffers[i] for i in buffers]
  for g in fb_model.subgraphs:
    for t in g.tensors:
      t.buffer = new_buffer[t.buffer]
  for m in fb_model.metadata or ():
    m.buffer = new_buffer[m.buffer]
  codes = sorted({op.opcodeIndex for g in fb_model.subgraphs for op in g.operators})
  new_code = {old: i for i, old in enumerate(codes)}
  fb_model.operatorCodes = [fb_model.operatorCodes[i] for i in codes]
  for g in fb_model.subgraphs:
    for op in g.operators:
      op.opcodeIndex = new_code[op.opcodeIndex]


def _int8_float_splits(fb_model):
  """Puts back in int8 a SPLIT the converter left in float between a DEQUANTIZE and
  QUANTIZEs on the DEQUANTIZE's own grid (nothing is rescaled, so the int8 SPLIT gives
  the same bytes). Returns how many SPLITs it rewrote.

  Seen on the unrolled LSTM window model, in about one conversion of three of the same
  model: step 0's SPLIT of the four gates, whose forget-gate output is dead (σ(f)·c_0
  with c_0 = 0 is folded away); which conversions do it is not reproducible (not the
  model, its names or the calibration data). A SPLIT whose outputs have other grids is
  left as it is (``check_tflm_compatible`` then names its float tensors).
  """
  graph = fb_model.subgraphs[0]
  ops = graph.operators
  names = [op_name(fb_model, op) for op in ops]
  producer = {int(o): k for k, op in enumerate(ops) for o in op.outputs}
  readers = {}
  for k, op in enumerate(ops):
    for i in op.inputs:
      readers.setdefault(int(i), []).append(k)
  dropped, rewritten = set(), 0
  for k, op in enumerate(ops):
    if names[k] != "SPLIT" or graph.tensors[op.inputs[1]].type != schema.TensorType.FLOAT32:
      continue
    dequantize = producer.get(int(op.inputs[1]))
    if dequantize is None or names[dequantize] != "DEQUANTIZE" or len(
        readers.get(int(op.inputs[1]), [])) != 1:
      continue
    source = int(ops[dequantize].inputs[0])
    q = graph.tensors[source].quantization
    outputs, ok = [], graph.tensors[source].type == schema.TensorType.INT8
    for out in op.outputs:
      reads = readers.get(int(out), [])
      if not reads:  # a dead output: the same tensor, now int8 on the source grid
        outputs.append((int(out), None))
      elif len(reads) == 1 and names[reads[0]] == "QUANTIZE" and _same_grid(
          graph.tensors[ops[reads[0]].outputs[0]], graph.tensors[source]):
        outputs.append((int(ops[reads[0]].outputs[0]), reads[0]))
      else:
        ok = False
    if not ok:
      continue
    op.inputs[1] = source
    for j, (tensor, quantize) in enumerate(outputs):
      if quantize is None:
        dead = graph.tensors[tensor]
        dead.type = schema.TensorType.INT8
        dead.quantization = schema.QuantizationParametersT()
        dead.quantization.scale, dead.quantization.zeroPoint = (
            [float(q.scale[0])], [int(q.zeroPoint[0])])
      else:
        dropped.add(quantize)
      op.outputs[j] = tensor
    dropped.add(dequantize)
    rewritten += 1
  if rewritten:
    graph.operators = [op for k, op in enumerate(ops) if k not in dropped]
    _drop_unused_tensors(fb_model)
  return rewritten


def _finish(tflite_bytes, share_state=True, plan=None, classifier_bias=None,
            forget_product_on_cell_grid=False):
  """Gives h and h_next one quantization; drops metadata the device does not need.

  With a ``plan``, every plan point gets its grid (``_impose_plan``; the state grid on h
  and h_next); otherwise the state grid covers both calibrated ranges.
  ``classifier_bias``: the Dense's float bias, stored again on the final grids.
  ``forget_product_on_cell_grid``: an LSTM's σ(f)·c gets c's grid (``_forget_product``).
  """
  state_quantization = plan.state if plan is not None else None
  fb_model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_bytes))
  _int8_float_splits(fb_model)
  tensors = fb_model.subgraphs[0].tensors
  inputs, outputs = signature_tensors(fb_model)
  if share_state:
    for state_in, state_out in (("h", "h_next"), ("c", "c_next")):
      if state_in in inputs and state_out in outputs:
        q_in = tensors[inputs[state_in]].quantization
        q_out = tensors[outputs[state_out]].quantization
        # Both ends hold the same quantity (h_t feeds the next step as h_{t-1}): one
        # range covering both costs at most a fraction of an LSB and makes the carry a
        # copy. Each kernel derives its multipliers from these params at Prepare().
        scale, zero_point = (state_quantization if state_quantization and state_in == "h"
                             else _union_quantization(q_in, q_out))
        if state_in == "c" and scale > CELL_STATE_LIMIT / 128:
          # An LSTM's cell state drifts to ±100 on long windows; on that grid (0.8 per
          # LSB) the int8 LSTM lost 38 points on HAR-2. Values beyond ±8 saturate.
          scale, zero_point = CELL_STATE_LIMIT / 128, 0
        for index, q in ((inputs[state_in], q_in), (outputs[state_out], q_out)):
          old_scale = float(q.scale[0])
          q.scale, q.zeroPoint = [scale], [zero_point]
          _rescale_biases(fb_model, index, old_scale, scale)
  if forget_product_on_cell_grid:
    _forget_product_on_cell_grid(fb_model)
  if plan is not None:
    _impose_plan(fb_model, plan)
  if classifier_bias is not None:
    _set_classifier_bias(fb_model, classifier_bias)
  # Tensor names are not read by TFLM; the I/O tensors keep their signature names.
  io_names = {index: name for name, index in {**inputs, **outputs}.items()}
  for i, tensor in enumerate(tensors):
    tensor.name = io_names.get(i, "").encode()
  # min_runtime_version and CONVERSION_METADATA are not read by TFLM. The signature def
  # stays: it names the I/O tensors for the host tools (TFLM ignores it).
  fb_model.metadata = [m for m in (fb_model.metadata or [])
                       if m.name not in (b"min_runtime_version", b"CONVERSION_METADATA")]
  return bytes(flatbuffer_utils.convert_object_to_bytearray(fb_model))


def _forget_product_on_cell_grid(fb_model):
  """Puts an LSTM's σ(f)·c (the MUL reading input ``c``) on c's own grid.

  The converter calibrates that product on the float model's c, which drifts to ±65 on
  HAR windows, while c itself is capped at ``CELL_STATE_LIMIT``: the product's LSB was
  0.34, coarser than c's 1/16, and the int8 LSTM lost up to 29 validation points (har6
  LSTM h12). |σ(f)·c| <= |c|, so c's grid holds it; the MUL rescales at Prepare().

  Raises:
    ValueError: no c input or no MUL reading it (not an LSTM step model).
  """
  graph = fb_model.subgraphs[0]
  inputs, _ = signature_tensors(fb_model)
  if "c" not in inputs:
    raise ValueError("forget_product_on_cell_grid: the model has no cell state c "
                     "(not an LSTM)")
  products = [op.outputs[0] for op in graph.operators
              if op_name(fb_model, op) == "MUL" and inputs["c"] in op.inputs]
  if len(products) != 1:
    raise ValueError(f"forget_product_on_cell_grid: expected one MUL reading c, found "
                     f"{len(products)}")
  q_c = graph.tensors[inputs["c"]].quantization
  q = graph.tensors[products[0]].quantization
  q.scale, q.zeroPoint = [float(q_c.scale[0])], [int(q_c.zeroPoint[0])]


def convert_step_model(model, representative_windows, *, plan=None, max_pairs=2000,
                       seed=0, forget_product_on_cell_grid=False):
  """Converts ``model``'s step model to a fully int8 ``.tflite`` that TFLM runs.

  Args:
    model: a float ``stepping.LAYOUT`` model (either read-out: the step model is the
      same), never a QAT
      model: for one, pass its ``float_twin`` and its ``plan``
      (``quantization.export_inputs`` gives both).
    representative_windows: real input windows [N, T, D] (normalised as in training);
      the step model is calibrated on the (x_t, h_{t-1}) pairs the model meets on them.
    plan: a ``plan.QuantizationPlan`` (from QAT), or None (post-training quantization).
      Every plan point is put on its int8 tensor, then read back (``verify_plan``).
    max_pairs: calibration pairs kept (a random subset).
    seed: seed of that subset.
    forget_product_on_cell_grid: LSTMs (Keras' and the low-rank one): σ(f)·c on c's
      grid instead of the converter's range (``_forget_product_on_cell_grid``); off by
      default so the benchmark's LSTM rows stay what they were measured with.

  Returns:
    The ``.tflite`` bytes, checked with ``check_tflm_compatible``.

  Raises:
    ValueError: a QAT model, or a plan that is not the model's or names an activation
      the export cannot place bit-exactly (the message names it).
    PlanMismatchError: a plan point missing from the int8 graph or on another grid.
    TFLMCompatibilityError: the converted model has something TFLM cannot run.
  """
  rnn, dense = _parts(model)
  if plan is not None:
    plan.check_cell(rnn.cell)
  pairs = representative_pairs(model, representative_windows, max_pairs, seed)
  step = step_model(model, batch_size=1)
  names = sorted(step.input)

  def representative():
    for i in range(len(pairs["x"])):
      yield {n: pairs[n][i:i + 1] for n in names}

  # With a plan, QAT's grids, not the converter's: Keras QAT then computes on exactly
  # the int8 model's grids (the converter merges and widens some ranges).
  tflite_bytes = _finish(_convert(stepping.step_function(step), step, representative),
                         plan=plan,
                         classifier_bias=dense.bias.numpy() if dense.use_bias else None,
                         forget_product_on_cell_grid=forget_product_on_cell_grid)
  if plan is not None:
    verify_plan(tflite_bytes, plan)
  check_tflm_compatible(tflite_bytes)
  return tflite_bytes


def convert_window_model(model, representative_windows, max_windows=200):
  """The unrolled alternative: one invoke per window ``[1, T, D] -> logits [1, C]``.

  Its size grows with T (every step's ops are copied); it is reported beside the step
  model's so the trade-off is visible. ``model``: a float model, as for
  ``convert_step_model`` (the converter calibrates every grid).

  Raises:
    ValueError: a mean read-out model (``stepping.readout``): its int8 MEAN would round
      the mean logits onto an int8 grid, so its class could differ from the step
      model's int32 sum over the window (``stepping.window_logits``), which is the
      deploy form; not exported rather than exported computing something else.
  """
  rnn, dense = _parts(model)
  if stepping.readout(model) == "mean":
    raise ValueError(WINDOW_MODEL_MEAN_REASON)
  windows = np.asarray(representative_windows, np.float32)[:max_windows]
  steps, input_dim = int(windows.shape[1]), int(windows.shape[2])
  x = keras.Input((steps, input_dim), batch_size=1, name="x")
  unrolled = keras.layers.RNN(rnn.cell, unroll=True)
  window = keras.Model(x, {"logits": dense(unrolled(x))})

  @tf.function(input_signature=[tf.TensorSpec([1, steps, input_dim], tf.float32, name="x")],
               autograph=False)
  def fn(x):
    return window(x)

  def representative():
    for w in windows:
      yield {"x": w[None]}

  tflite_bytes = _finish(_convert(fn, window, representative), share_state=False)
  check_tflm_compatible(tflite_bytes)
  return tflite_bytes


def _name(tensor):
  return tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name


def describe_tensor(fb_model, index):
  """``tensor #i [shape] 'name' (from OP op k, into OP op m)``: a tensor found without
  its name (``_finish`` keeps only the I/O names), placed by the ops around it."""
  graph = fb_model.subgraphs[0]
  tensor = graph.tensors[index]
  shape = [int(d) for d in tensor.shape] if tensor.shape is not None else []
  text = f"tensor #{index} {shape}"
  if _name(tensor):
    text += f" {_name(tensor)!r}"
  places = []
  for k, op in enumerate(graph.operators):
    if op.outputs is not None and index in op.outputs:
      places.append(f"from {op_name(fb_model, op)} op {k}")
  for k, op in enumerate(graph.operators):
    if op.inputs is not None and index in op.inputs:
      places.append(f"into {op_name(fb_model, op)} op {k}")
  if places:
    text += " (" + ", ".join(places[:3]) + (", ..." if len(places) > 3 else "") + ")"
  return text


def read_tflite_file(path):
  """The bytes of the ``.tflite`` at ``path``, after checking that they parse.

  Raises:
    ValueError: naming the file, when it is not a readable TFLite flatbuffer (a
      truncated copy, another file type), so no native runtime is handed garbage.
  """
  path = pathlib.Path(path)
  data = path.read_bytes()
  if len(data) < 8 or data[4:8] != b"TFL3":
    raise ValueError(f"{path}: not a .tflite model (no TFL3 identifier; {len(data)} bytes)")
  try:
    fb_model = read_model(data)
    graph = fb_model.subgraphs[0]
    for t in graph.tensors:
      if not 0 <= t.buffer < len(fb_model.buffers):
        raise IndexError(f"tensor buffer {t.buffer} out of range")
  except Exception as e:  # pylint: disable=broad-except  # any parse failure: say which file
    raise ValueError(f"{path}: a damaged .tflite model ({type(e).__name__}: {e}); "
                     "export it again") from e
  return data


def read_model(tflite_bytes):
  """The ``.tflite`` as a mutable flatbuffer object (``flatbuffer_utils``)."""
  return flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_bytes))


def op_name(fb_model, op):
  """The builtin name of ``op`` (``"FULLY_CONNECTED"``, ``"CUSTOM(name)"``, ...)."""
  code = fb_model.operatorCodes[op.opcodeIndex]
  builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
  if builtin == schema.BuiltinOperator.CUSTOM:
    custom = code.customCode
    return f"CUSTOM({custom.decode() if isinstance(custom, bytes) else custom})"
  return _OP_NAMES.get(builtin, f"BUILTIN_{builtin}")


def model_ops(tflite_bytes):
  """Builtin op names of the model, in first-use order, each once."""
  fb_model = read_model(tflite_bytes)
  names = [op_name(fb_model, op) for g in fb_model.subgraphs for op in g.operators]
  return list(dict.fromkeys(names))


def io_quantization(tflite_bytes):
  """``{signature name: (scale, zero_point)}`` for every input and output."""
  fb_model = read_model(tflite_bytes)
  tensors = fb_model.subgraphs[0].tensors
  inputs, outputs = signature_tensors(fb_model)
  result = {}
  for name, index in {**inputs, **outputs}.items():
    q = tensors[index].quantization
    result[name] = ((float(q.scale[0]), int(q.zeroPoint[0]))
                    if q is not None and q.scale is not None and len(q.scale) else None)
  return result


def _tflm_load_error(tflite_bytes):
  """Loads and allocates in the tflite_micro runtime; returns its error text or None."""
  from tflite_micro.python.tflite_micro import runtime  # pylint: disable=import-outside-toplevel
  try:
    runtime.Interpreter.from_bytes(tflite_bytes)
  except (RuntimeError, ValueError) as e:
    return str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
  return None


def _fused_lstm_own_tensors(fb_model):
  """Tensors of TFLite's fused int8 LSTM that are not int8 by design: its int16 cell
  state (a variable tensor, input 19) and its intermediates (records of the gates'
  scales, never allocated as activations). TFLM's kernel takes exactly these."""
  own = set()
  for op in fb_model.subgraphs[0].operators:
    if op_name(fb_model, op) != "UNIDIRECTIONAL_SEQUENCE_LSTM":
      continue
    tensors = fb_model.subgraphs[0].tensors
    if len(op.inputs) > 19 and op.inputs[19] >= 0:
      cell = tensors[op.inputs[19]]
      if cell.isVariable and cell.type == schema.TensorType.INT16:
        own.add(int(op.inputs[19]))
    own.update(int(i) for i in (op.intermediates if op.intermediates is not None else ()))
  return own


def check_tflm_compatible(tflite_bytes, load=True):
  """Refuses, with every reason listed, a model TFLM cannot run as an int8 model.

  Checks: one subgraph (no control flow), no dynamic dimension, int8 activations at every
  input and output and every non-constant tensor (int32 only for biases/constants; the
  int16 cell state and the intermediates of TFLite's fused int8 LSTM op, which TFLM's
  kernel takes as they are),
  finite positive scales and finite float constants, no custom ops, and then, only if all
  of that holds, that the ``tflite_micro`` runtime loads and allocates the model (which
  fails on an op its resolver lacks; a model with NaN scales aborted it).

  Raises:
    TFLMCompatibilityError: listing the problems (op names; tensors by index, shape,
      name if any and the ops that produce and read them: ``describe_tensor``).
  """
  fb_model = read_model(tflite_bytes)
  problems = []
  if len(fb_model.subgraphs) != 1:
    problems.append(f"{len(fb_model.subgraphs)} subgraphs (control flow such as WHILE): "
                    "export the step model instead of a looped RNN")
  graph = fb_model.subgraphs[0]
  const = {i for i, t in enumerate(graph.tensors)
           if fb_model.buffers[t.buffer].data is not None}
  lstm_own = _fused_lstm_own_tensors(fb_model)
  for i, t in enumerate(graph.tensors):
    sig = t.shapeSignature
    if sig is not None and any(d < 0 for d in sig):
      problems.append(f"{describe_tensor(fb_model, i)} has a dynamic shape {list(sig)}: "
                      "export with batch 1")
    if (i not in const and i not in lstm_own
        and t.type not in (schema.TensorType.INT8, schema.TensorType.INT32)):
      problems.append(f"{describe_tensor(fb_model, i)} is "
                      f"{_TENSOR_TYPES.get(t.type, t.type)}, not int8")
    scales = t.quantization.scale if t.quantization is not None else None
    if scales is not None and not np.all(np.isfinite(scales) & (np.asarray(scales) > 0)
                                         & (np.asarray(scales) <= MAX_SCALE)):
      problems.append(f"{describe_tensor(fb_model, i)} has a scale outside "
                      f"(0, {MAX_SCALE:g}] (max "
                      f"{np.max(scales):.3g}): the model's weights or ranges are not sane "
                      "numbers (training diverged?)")
    if i in const and t.type == schema.TensorType.FLOAT32 and not np.all(np.isfinite(
        np.frombuffer(bytes(fb_model.buffers[t.buffer].data), np.float32))):
      problems.append(f"constant {describe_tensor(fb_model, i)} holds NaN or Inf")
  for io, kind in ((graph.inputs, "input"), (graph.outputs, "output")):
    for i in io:
      if graph.tensors[i].type != schema.TensorType.INT8:
        problems.append(f"{kind} {describe_tensor(fb_model, i)} is not int8")
  customs = [op for op in model_ops(tflite_bytes) if op.startswith("CUSTOM")]
  if customs:
    problems.append(f"custom ops TFLM does not provide: {customs}")
  if load and not problems:  # never hand a model with a known problem to the native runtime
    error = _tflm_load_error(tflite_bytes)
    if error:
      problems.append(f"the TFLM runtime refuses the model ({error}); ops: "
                      f"{model_ops(tflite_bytes)}")
  if problems:
    raise TFLMCompatibilityError("TFLM cannot run this model: " + "; ".join(dict.fromkeys(problems)))


_ACTIVATION_OPS = {"sigmoid": "LOGISTIC", "tanh": "TANH"}


def _plan_tensors(fb_model, plan):
  """``{point: tensor index}``: the step model's tensors by the plan's point names.

  Follows the cell's equations through the graph from ``x`` and ``h``: the matmul
  chains, their ADD, the two ADDs of the biases and their activations (FastGRNN's gate
  is the one whose output feeds the SUB of ``1 − z``), the state update's products.
  Points it cannot place are left out (the callers raise on them).
  """
  graph = fb_model.subgraphs[0]
  inputs, outputs = signature_tensors(fb_model)
  ops = [(op_name(fb_model, op), list(op.inputs), list(op.outputs))
         for op in graph.operators]

  def consumer(tensor, kind, also=None):
    for name, ins, outs in ops:
      if name == kind and tensor in ins and (also is None or also in ins):
        return outs[0]
    return None

  h = inputs["h"]
  found = {"x": inputs["x"], "h": h, "h_next": outputs["h_next"],
           "logits": outputs["logits"]}

  def chain(start, prefix, rank):
    tensor, count = start, 1 if rank is None else 2
    for i in range(count):
      tensor = consumer(tensor, "FULLY_CONNECTED")
      if tensor is None:
        return None
      found[prefix if i == count - 1 else f"{prefix}{i + 1}"] = tensor
    return tensor

  xw, hu = chain(inputs["x"], "xw", plan.w_rank), chain(h, "hu", plan.u_rank)
  pre = consumer(xw, "ADD", hu) if xw is not None and hu is not None else None
  if pre is None:
    return found
  found["pre"] = pre
  branches = {}  # bias ADD output -> (activation op, its output)
  for name, ins, outs in ops:
    if name == "ADD" and pre in ins:
      for kind in ("LOGISTIC", "TANH"):
        out = consumer(outs[0], kind)
        if out is not None:
          branches[outs[0]] = (kind, out)
  gates = [t for t, (_, out) in branches.items() if consumer(out, "SUB") is not None]
  if plan.cell_type == "FastGRNNCell":
    roles = {"gate": gates, "update": [t for t in branches if t not in gates]}
  else:
    roles = {"update": list(branches)}
  acts = {}
  for role, candidates in roles.items():
    kind, out = branches[candidates[0]] if len(candidates) == 1 else (None, None)
    if kind is not None and kind == _ACTIVATION_OPS.get(plan.activations[f"{role}_activation"]):
      found[f"{role}_pre"], found[f"{role}_out"] = candidates[0], out
      acts[role] = out
  z, h_tilde = acts.get("gate"), acts.get("update")
  if plan.cell_type == "FastGRNNCell" and z is not None and h_tilde is not None:
    found["zh"] = consumer(z, "MUL", h)
    found["one_minus_z"] = consumer(z, "SUB")
    found["zeta_term"] = consumer(found["one_minus_z"], "MUL")
    found["coef"] = consumer(found["zeta_term"], "ADD")
    found["coef_update"] = consumer(found["coef"], "MUL", h_tilde)
  elif plan.cell_type == "FastRNNCell" and h_tilde is not None:
    found["alpha_term"] = consumer(h_tilde, "MUL")
    found["beta_term"] = consumer(h, "MUL")
  return {point: index for point, index in found.items() if index is not None}


def _tensor_grid(tensor):
  q = tensor.quantization
  if q is None or q.scale is None or len(q.scale) != 1:
    return None
  return float(np.float32(q.scale[0])), int(q.zeroPoint[0])


def plan_point_quantization(tflite_bytes, plan):
  """``{point: (scale, zero_point)}`` of the int8 tensors the plan's points name, for
  the points found in the graph (``verify_plan`` raises on the others)."""
  fb_model = read_model(tflite_bytes)
  tensors = fb_model.subgraphs[0].tensors
  grids = {point: _tensor_grid(tensors[index])
           for point, index in _plan_tensors(fb_model, plan).items()}
  return {point: g for point, g in grids.items() if g is not None}


def _missing_message(plan, missing):
  return (f"quantization plan points {missing} not found in the int8 graph of the "
          f"{plan.cell_type} (w_rank={plan.w_rank}, u_rank={plan.u_rank}, "
          f"{plan.activations})")


def _impose_plan(fb_model, plan):
  """Puts every plan point's grid on its tensor (raises on a point it cannot place)."""
  tensors = fb_model.subgraphs[0].tensors
  indices = _plan_tensors(fb_model, plan)
  missing = sorted(set(plan.points) - set(indices))
  if missing:
    raise PlanMismatchError(_missing_message(plan, missing))
  for point, (scale, zero_point) in plan.points.items():
    q = tensors[indices[point]].quantization
    if q is None or q.scale is None or len(q.scale) != 1:
      raise PlanMismatchError(f"quantization plan point {point!r}: its int8 tensor has "
                              "no per-tensor quantization")
    old_scale = float(q.scale[0])
    q.scale, q.zeroPoint = [scale], [zero_point]
    _rescale_biases(fb_model, indices[point], old_scale, scale)


def verify_plan(tflite_bytes, plan):
  """Reads every plan point back from the ``.tflite``.

  Raises:
    PlanMismatchError: naming each point that is missing or on another grid.
  """
  grids = plan_point_quantization(tflite_bytes, plan)
  missing = sorted(set(plan.points) - set(grids))
  if missing:
    raise PlanMismatchError(_missing_message(plan, missing))
  differ = [f"{point}: plan {want}, model {grids[point]}"
            for point, want in plan.points.items()
            if grids[point][1] != want[1] or grids[point][0] != float(np.float32(want[0]))]
  if differ:
    raise PlanMismatchError("the int8 model differs from the quantization plan at "
                            + "; ".join(differ))
