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

from tf_fastgrnn._keras import keras

__all__ = [
    "TFLMCompatibilityError",
    "cell_tensor_quantization",
    "range_to_int8",
    "check_tflm_compatible",
    "read_tflite_file",
    "convert_step_model",
    "convert_window_model",
    "io_quantization",
    "model_ops",
    "representative_pairs",
    "step_model",
]

_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_TENSOR_TYPES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}


# The int8 grid of an LSTM's cell state c spans at most [-8, 8) (scale 1/16).
CELL_STATE_LIMIT = 8.0

# No tensor of a sane int8 model has a scale above this (values beyond ±1.3e8); larger
# ones come from diverged training, and TFLM's multiplier set-up aborts the process on
# them (seen with weights of 4e30), so the check refuses them before TFLM sees the model.
MAX_SCALE = 1e6


class TFLMCompatibilityError(ValueError):
  """The model cannot run in TFLM as it is; the message lists every problem."""


def _parts(model):
  try:
    rnn, dense = model.get_layer("rnn"), model.get_layer("logits")
  except ValueError as e:
    raise ValueError("export expects the layout of tf_fastgrnn.models.sequence_classifier "
                     "(an RNN layer named 'rnn' and a Dense named 'logits')") from e
  if getattr(rnn, "layer", None) is not None:  # a TF-MOT pruning wrapper left on
    raise ValueError("the model still has pruning wrappers: call "
                     "tfmot.sparsity.keras.strip_pruning (pruning.train_three_phase "
                     "returns a stripped model)")
  return rnn, dense


def _state_sizes(cell):
  sizes = cell.state_size
  return list(sizes) if isinstance(sizes, (list, tuple)) else [sizes]


def step_model(model, batch_size=1):
  """One recurrent step plus the classifier, sharing ``model``'s layers (and weights).

  Args:
    model: a model laid out as ``models.sequence_classifier`` builds it (float or QAT).
    batch_size: 1 for export; None to step many windows at once in Keras.

  Returns:
    A ``keras.Model`` with inputs ``{"x": [B, D], "h": [B, H]}`` (plus ``"c"`` for an
    LSTM) and outputs ``{"h_next": [B, H], "logits": [B, C]}`` (plus ``"c_next"``).
  """
  rnn, dense = _parts(model)
  cell = rnn.cell
  input_dim = int(model.input_shape[-1])
  sizes = _state_sizes(cell)
  x = keras.Input((input_dim,), batch_size=batch_size, name="x")
  states = [keras.Input((n,), batch_size=batch_size, name=name)
            for n, name in zip(sizes, ("h", "c"))]
  _, new_states = cell(x, states if len(states) > 1 else [states[0]])
  new_states = list(new_states) if isinstance(new_states, (list, tuple)) else [new_states]
  outputs = {"h_next": new_states[0], "logits": dense(new_states[0])}
  if len(new_states) > 1:
    outputs["c_next"] = new_states[1]
  inputs = {"x": x, "h": states[0]}
  if len(states) > 1:
    inputs["c"] = states[1]
  return keras.Model(inputs, outputs, name=f"{model.name}_step")


def _step_function(step, batch_size=1):
  specs = {name: tf.TensorSpec([batch_size] + list(t.shape[1:]), tf.float32, name=name)
           for name, t in step.input.items()}
  names = sorted(specs)

  @tf.function(input_signature=[specs[n] for n in names], autograph=False)
  def fn(*args):
    return step(dict(zip(names, args)))
  return fn


def representative_pairs(model, windows, max_pairs=2000, seed=0):
  """(x_t, states_{t-1}) pairs met when ``model`` runs over ``windows`` [N, T, D].

  The converter calibrates the int8 ranges on these, so they must be what the device
  will see: real frames and the states the model itself produces from a zero start.

  Returns:
    A dict of float32 arrays ``{"x": [P, D], "h": [P, H], ("c": ...)}``.
  """
  windows = np.asarray(windows, np.float32)
  if windows.ndim != 3:
    raise ValueError(f"windows must be [N, T, D], got shape {windows.shape}")
  step = step_model(model, batch_size=None)
  fn = _step_function(step, batch_size=None)
  names = sorted(step.input)
  state = {n: np.zeros((len(windows),) + tuple(step.input[n].shape[1:]), np.float32)
           for n in names if n != "x"}
  pairs = {n: [] for n in names}
  for t in range(windows.shape[1]):
    feed = dict(state, x=windows[:, t])
    for n in names:
      pairs[n].append(feed[n])
    out = fn(*[feed[n] for n in names])
    state = {"h": out["h_next"].numpy()}
    if "c_next" in out:
      state["c"] = out["c_next"].numpy()
  pairs = {n: np.concatenate(v) for n, v in pairs.items()}
  total = len(pairs["x"])
  if total > max_pairs:
    keep = np.random.default_rng(seed).choice(total, max_pairs, replace=False)
    pairs = {n: v[keep] for n, v in pairs.items()}
  return pairs


def _convert(fn, trackable, representative):
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [fn.get_concrete_function()], trackable)
  converter.optimizations = [tf.lite.Optimize.DEFAULT]
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  converter.inference_input_type = tf.int8
  converter.inference_output_type = tf.int8
  converter.representative_dataset = representative
  return bytes(converter.convert())


def _union_quantization(q_a, q_b):
  """Scale and zero point of an int8 tensor covering both tensors' real ranges."""
  lo = min((-128 - q_a.zeroPoint[0]) * q_a.scale[0], (-128 - q_b.zeroPoint[0]) * q_b.scale[0])
  hi = max((127 - q_a.zeroPoint[0]) * q_a.scale[0], (127 - q_b.zeroPoint[0]) * q_b.scale[0])
  return range_to_int8(lo, hi)


def _signature_tensors(fb_model):
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
    if (_op_name(fb_model, op) != "FULLY_CONNECTED" or op.inputs[0] != tensor_index
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


def _finish(tflite_bytes, share_state=True, state_quantization=None, qat_model=None):
  """Gives h and h_next one quantization; drops metadata the device does not need.

  ``state_quantization`` (scale, zero_point) sets that grid on h and h_next (QAT models
  train on it); otherwise the grid covers both calibrated ranges. ``qat_model``: its
  calibrated grids go on the tensors it fake-quantizes (``_impose_qat_grids``).
  """
  fb_model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_bytes))
  tensors = fb_model.subgraphs[0].tensors
  inputs, outputs = _signature_tensors(fb_model)
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
  if qat_model is not None:
    _impose_qat_grids(fb_model, qat_model)
  # Tensor names are not read by TFLM; the I/O tensors keep their signature names.
  io_names = {index: name for name, index in {**inputs, **outputs}.items()}
  for i, tensor in enumerate(tensors):
    tensor.name = io_names.get(i, "").encode()
  # min_runtime_version and CONVERSION_METADATA are not read by TFLM. The signature def
  # stays: it names the I/O tensors for the host tools (TFLM ignores it).
  fb_model.metadata = [m for m in (fb_model.metadata or [])
                       if m.name not in (b"min_runtime_version", b"CONVERSION_METADATA")]
  return bytes(flatbuffer_utils.convert_object_to_bytearray(fb_model))


def convert_step_model(model, representative_windows, *, max_pairs=2000, seed=0):
  """Converts ``model``'s step model to a fully int8 ``.tflite`` that TFLM runs.

  Args:
    model: float or QAT model laid out as ``models.sequence_classifier`` builds it. For
      a QAT model (``quantization.quantize_model``) h and h_next get the fixed state
      grid the QAT trained on.
    representative_windows: real input windows [N, T, D] (normalised as in training);
      the step model is calibrated on the (x_t, h_{t-1}) pairs the model meets on them.
    max_pairs: calibration pairs kept (a random subset).
    seed: seed of that subset.

  Returns:
    The ``.tflite`` bytes, checked with ``check_tflm_compatible``.

  Raises:
    TFLMCompatibilityError: the converted model has something TFLM cannot run.
  """
  from tf_fastgrnn import quantization  # pylint: disable=import-outside-toplevel
  qat = quantization.is_qat_model(model)
  # Calibrate on the states the deployed model itself produces (QAT's, for QAT).
  pairs = representative_pairs(model, representative_windows, max_pairs, seed)
  step = step_model(quantization.float_twin(model) if qat else model, batch_size=1)
  names = sorted(step.input)

  def representative():
    for i in range(len(pairs["x"])):
      yield {n: pairs[n][i:i + 1] for n in names}

  state_q = (quantization.STATE_SCALE, quantization.STATE_ZERO_POINT) if qat else None
  # For QAT, the model's calibrated grids, not the converter's: Keras QAT then computes
  # on exactly the int8 model's grids (the converter merges and widens some ranges).
  tflite_bytes = _finish(_convert(_step_function(step), step, representative),
                         state_quantization=state_q, qat_model=model if qat else None)
  check_tflm_compatible(tflite_bytes)
  return tflite_bytes


def convert_window_model(model, representative_windows, max_windows=200):
  """The unrolled alternative: one invoke per window ``[1, T, D] -> logits [1, C]``.

  Its size grows with T (every step's ops are copied); it is reported beside the step
  model's so the trade-off is visible.
  """
  from tf_fastgrnn import quantization  # pylint: disable=import-outside-toplevel
  if quantization.is_qat_model(model):
    model = quantization.float_twin(model)
  rnn, dense = _parts(model)
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
    fb_model = _read(data)
    graph = fb_model.subgraphs[0]
    for t in graph.tensors:
      if not 0 <= t.buffer < len(fb_model.buffers):
        raise IndexError(f"tensor buffer {t.buffer} out of range")
  except Exception as e:  # pylint: disable=broad-except  # any parse failure: say which file
    raise ValueError(f"{path}: a damaged .tflite model ({type(e).__name__}: {e}); "
                     "export it again") from e
  return data


def _read(tflite_bytes):
  return flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_bytes))


def _op_name(fb_model, op):
  code = fb_model.operatorCodes[op.opcodeIndex]
  builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
  if builtin == schema.BuiltinOperator.CUSTOM:
    custom = code.customCode
    return f"CUSTOM({custom.decode() if isinstance(custom, bytes) else custom})"
  return _OP_NAMES.get(builtin, f"BUILTIN_{builtin}")


def model_ops(tflite_bytes):
  """Builtin op names of the model, in first-use order, each once."""
  fb_model = _read(tflite_bytes)
  names = [_op_name(fb_model, op) for g in fb_model.subgraphs for op in g.operators]
  return list(dict.fromkeys(names))


def io_quantization(tflite_bytes):
  """``{signature name: (scale, zero_point)}`` for every input and output."""
  fb_model = _read(tflite_bytes)
  tensors = fb_model.subgraphs[0].tensors
  inputs, outputs = _signature_tensors(fb_model)
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


def check_tflm_compatible(tflite_bytes, load=True):
  """Refuses, with every reason listed, a model TFLM cannot run as an int8 model.

  Checks: one subgraph (no control flow), no dynamic dimension, int8 activations at every
  input and output and every non-constant tensor (int32 only for biases/constants),
  finite positive scales and finite float constants, no custom ops, and then, only if all
  of that holds, that the ``tflite_micro`` runtime loads and allocates the model (which
  fails on an op its resolver lacks; a model with NaN scales aborted it).

  Raises:
    TFLMCompatibilityError: listing the problems (op names, tensor names).
  """
  fb_model = _read(tflite_bytes)
  problems = []
  if len(fb_model.subgraphs) != 1:
    problems.append(f"{len(fb_model.subgraphs)} subgraphs (control flow such as WHILE): "
                    "export the step model instead of a looped RNN")
  graph = fb_model.subgraphs[0]
  const = {i for i, t in enumerate(graph.tensors)
           if fb_model.buffers[t.buffer].data is not None}
  for i, t in enumerate(graph.tensors):
    name = _name(t)
    sig = t.shapeSignature
    if sig is not None and any(d < 0 for d in sig):
      problems.append(f"tensor {name} has a dynamic shape {list(sig)}: export with batch 1")
    if i not in const and t.type not in (schema.TensorType.INT8, schema.TensorType.INT32):
      problems.append(f"tensor {name} is {_TENSOR_TYPES.get(t.type, t.type)}, not int8")
    scales = t.quantization.scale if t.quantization is not None else None
    if scales is not None and not np.all(np.isfinite(scales) & (np.asarray(scales) > 0)
                                         & (np.asarray(scales) <= MAX_SCALE)):
      problems.append(f"tensor {name} has a scale outside (0, {MAX_SCALE:g}] (max "
                      f"{np.max(scales):.3g}): the model's weights or ranges are not sane "
                      "numbers (training diverged?)")
    if i in const and t.type == schema.TensorType.FLOAT32 and not np.all(np.isfinite(
        np.frombuffer(bytes(fb_model.buffers[t.buffer].data), np.float32))):
      problems.append(f"constant {name} holds NaN or Inf")
  for io, kind in ((graph.inputs, "input"), (graph.outputs, "output")):
    for i in io:
      if graph.tensors[i].type != schema.TensorType.INT8:
        problems.append(f"{kind} {_name(graph.tensors[i])} is not int8")
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


def _cell_tensors(fb_model, cell):
  """``{point: tensor index}``: the step model's tensors by the QAT cell's point names."""
  graph = fb_model.subgraphs[0]
  inputs, outputs = _signature_tensors(fb_model)
  ops = [(_op_name(fb_model, op), list(op.inputs), list(op.outputs))
         for op in graph.operators]

  def consumer(tensor, kind, also=None):
    for name, ins, outs in ops:
      if name == kind and tensor in ins and (also is None or also in ins):
        return outs[0]
    return None

  def feeds(tensor, kind):
    return any(name == kind and tensor in ins for name, ins, _ in ops)

  found = {"x": inputs["x"], "logits": outputs["logits"]}

  def chain(start, prefix, count):
    tensor = start
    for i in range(count):
      tensor = consumer(tensor, "FULLY_CONNECTED")
      if tensor is None:
        return None
      found[prefix if i == count - 1 else f"{prefix}{i + 1}"] = tensor
    return tensor

  xw = chain(inputs["x"], "xw", len(cell.w_factors))
  hu = chain(inputs["h"], "hu", len(cell.u_factors))
  pre = consumer(xw, "ADD", hu) if xw is not None and hu is not None else None
  if pre is not None:
    found["pre"] = pre
    gate_op = _ACTIVATION_OPS.get(getattr(cell, "gate_activation", None))
    update_op = _ACTIVATION_OPS.get(cell.update_activation)
    adds = [outs[0] for name, ins, outs in ops if name == "ADD" and pre in ins]
    act_out = {}
    for point, op_kind in (("gate_pre", gate_op), ("update_pre", update_op)):
      if op_kind is None or gate_op == update_op:  # not identifiable by op type
        continue
      for t in adds:
        if feeds(t, op_kind):
          found[point] = t
          act_out[point] = consumer(t, op_kind)
    h = inputs["h"]
    z, h_tilde = act_out.get("gate_pre"), act_out.get("update_pre")
    if hasattr(cell, "zeta") and z is not None and h_tilde is not None:  # FastGRNN
      found["zh"] = consumer(z, "MUL", h)
      found["one_minus_z"] = consumer(z, "SUB")
      found["zeta_term"] = consumer(found["one_minus_z"], "MUL")
      found["coef"] = consumer(found["zeta_term"], "ADD")
      found["coef_update"] = consumer(found["coef"], "MUL", h_tilde)
    elif hasattr(cell, "alpha") and h_tilde is not None:  # FastRNN
      found["alpha_term"] = consumer(h_tilde, "MUL")
      found["beta_term"] = consumer(h, "MUL")
  return {point: index for point, index in found.items() if index is not None}


def cell_tensor_quantization(tflite_bytes, cell):
  """``{point: (scale, zero_point)}`` of the step model's tensors, by the QAT cell's names.

  Finds, by the graph's structure, the tensors the QAT cell fake-quantizes (``x``, the
  matmul outputs ``xw``/``hu`` and their low-rank halves, ``pre``, ``gate_pre``,
  ``update_pre``, the state-update products of FastGRNN or FastRNN) and ``logits``.
  Points it cannot place (an activation without its own int8 op, say) are left out.
  """
  fb_model = _read(tflite_bytes)
  tensors = fb_model.subgraphs[0].tensors
  result = {}
  for point, index in _cell_tensors(fb_model, cell).items():
    q = tensors[index].quantization
    if q is not None and q.scale is not None and len(q.scale) == 1:
      result[point] = (float(q.scale[0]), int(q.zeroPoint[0]))
  return result


def range_to_int8(lo, hi):
  """(scale, zero_point) of the int8 grid that TF's fake-quant puts on [lo, hi]."""
  scale = (float(hi) - float(lo)) / 255.0
  zero_point = int(np.clip(np.round(-128.0 - float(lo) / scale), -128, 127))
  return scale, zero_point


def _impose_qat_grids(fb_model, qat_model):
  """Gives the exported tensors the grids the QAT model trained on (``calibrate``)."""
  cell, dense = qat_model.get_layer("rnn").cell, qat_model.get_layer("logits")
  if float(cell.calibrated.numpy()) != 1.0:
    return
  ranges = {name: var.numpy() for name, var in cell.ranges.items()}
  ranges["logits"] = dense.output_range.numpy()
  tensors = fb_model.subgraphs[0].tensors
  for point, index in _cell_tensors(fb_model, cell).items():
    q = tensors[index].quantization
    if point not in ranges or q is None or q.scale is None or len(q.scale) != 1:
      continue
    scale, zero_point = range_to_int8(*ranges[point])
    old_scale = float(q.scale[0])
    q.scale, q.zeroPoint = [scale], [zero_point]
    _rescale_biases(fb_model, index, old_scale, scale)
