"""The fused int8 FastGRNN/FastRNN step: its parameters, read from the builtin int8 model.

``extract`` reads the builtin int8 step model (``export.convert_step_model``: x_t, h_{t-1}
-> h_t, logits, built of FULLY_CONNECTED, ADD, SUB, MUL, LOGISTIC and TANH), checks its
structure strictly and derives every integer the C kernel ``fused/fastgrnn_int8.c`` needs
to compute what TFLM computes, byte for byte:

- FULLY_CONNECTED: int8 weights ([out, in], dense, or bitmap-packed where that is smaller:
  ``rows * ceil(in / 8)`` mask bytes plus 1 byte per non-zero), int32 biases with TFLM's
  input offset folded in (``bias + input_offset * sum(w)``), per-channel multipliers and
  shifts as TFLM's ``QuantizeMultiplier`` gives them;
- ADD / SUB / MUL: offsets and multipliers exactly as ``int8_kernels`` (the line-by-line
  port of TFLM's add.cc/sub.cc/mul.cc) derives them;
- every unary chain (LOGISTIC, TANH, and ADD/SUB/MUL with a scalar constant after them) as
  one 256-entry int8 table: LOGISTIC and TANH run in the ``tflite_micro`` runtime on all
  256 inputs, the scalar ops through ``int8_kernels``.

Anything else in the graph raises ``FusedExportError``: nothing is skipped or guessed.
"""

import copy
import ctypes
import os
import subprocess
import tempfile

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from tf_fastgrnn import int8_kernels
from tf_fastgrnn import runtime

__all__ = ["FusedExportError", "FusedStepRunner", "KERNEL_SOURCE", "compile_kernel",
           "extract", "param_bytes"]

KERNEL_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "fused")
KERNEL_SOURCE = os.path.join(KERNEL_DIR, "fastgrnn_int8.c")

FASTRNN, FASTGRNN = 0, 1
_ELEMENTWISE = ("ADD", "SUB", "MUL")
_TABLE_OPS = ("LOGISTIC", "TANH")
_SUPPORTED = {"FULLY_CONNECTED", *_ELEMENTWISE, *_TABLE_OPS}


class FusedExportError(ValueError):
  """The builtin int8 model is not a step model the fused kernel computes exactly."""


def _op_name(fb_model, op):
  code = fb_model.operatorCodes[op.opcodeIndex]
  builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
  names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
  return names.get(builtin, f"BUILTIN_{builtin}")


class _Graph:
  """The step model's tensors and ops, with producer/consumer maps and checks."""

  def __init__(self, tflite_bytes):
    self.model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_bytes))
    if len(self.model.subgraphs) != 1:
      raise FusedExportError(f"expected 1 subgraph, got {len(self.model.subgraphs)}")
    self.graph = self.model.subgraphs[0]
    self.tensors = self.graph.tensors
    self.ops = list(self.graph.operators)
    self.names = [_op_name(self.model, op) for op in self.ops]
    unsupported = sorted(set(self.names) - _SUPPORTED)
    if unsupported:
      raise FusedExportError(f"ops the fused kernel does not compute: {unsupported} "
                             f"(supported: {sorted(_SUPPORTED)}; sigmoid/tanh activations)")
    self.producer = {}
    self.consumers = {}
    for i, op in enumerate(self.ops):
      for t in op.outputs:
        self.producer[int(t)] = i
      for t in op.inputs:
        if t >= 0:
          self.consumers.setdefault(int(t), []).append(i)
    for i, op in enumerate(self.ops):
      options = op.builtinOptions
      act = getattr(options, "fusedActivationFunction", 0) if options is not None else 0
      if act != 0:
        raise FusedExportError(f"op {i} ({self.names[i]}) has a fused activation ({act}); "
                               "the fused kernel takes only NONE")
    sig = self.model.signatureDefs[0]
    self.io = {}
    for t in list(sig.inputs) + list(sig.outputs):
      name = t.name.decode() if isinstance(t.name, bytes) else t.name
      self.io[name] = int(t.tensorIndex)
    missing = {"x", "h", "h_next", "logits"} - set(self.io)
    if missing or set(self.io) != {"x", "h", "h_next", "logits"}:
      raise FusedExportError(f"not a FastGRNN/FastRNN step model: signature has "
                             f"{sorted(self.io)}, expected x, h -> h_next, logits")

  def is_const(self, t):
    return self.model.buffers[self.tensors[t].buffer].data is not None

  def const_values(self, t, dtype):
    expected = {np.int8: schema.TensorType.INT8, np.int32: schema.TensorType.INT32}[dtype]
    if self.tensors[t].type != expected:
      raise FusedExportError(f"constant tensor {t} is type {self.tensors[t].type}, "
                             f"expected {np.dtype(dtype).name}")
    return np.frombuffer(bytes(self.model.buffers[self.tensors[t].buffer].data), dtype)

  def quant(self, t):
    """(scale, zero_point) of a per-tensor int8 tensor (python float32 value, int)."""
    q = self.tensors[t].quantization
    if q is None or q.scale is None or len(q.scale) != 1:
      raise FusedExportError(f"tensor {t} is not per-tensor quantized")
    if self.tensors[t].type != schema.TensorType.INT8:
      raise FusedExportError(f"tensor {t} is not int8")
    return float(np.float32(q.scale[0])), int(q.zeroPoint[0])

  def only_consumer(self, t, name=None):
    users = self.consumers.get(t, [])
    if len(users) != 1 or (name and self.names[users[0]] != name):
      raise FusedExportError(f"tensor {t} should feed exactly one "
                             f"{name or 'op'}, feeds {[self.names[u] for u in users]}")
    return users[0]

  def produced_by(self, t, name):
    i = self.producer.get(t)
    if i is None or self.names[i] != name:
      got = self.names[i] if i is not None else "a graph input/constant"
      raise FusedExportError(f"tensor {t} should come from {name}, comes from {got}")
    return i

  def size(self, t):
    return int(np.prod(self.tensors[t].shape)) if len(self.tensors[t].shape) else 1


def _i(v):
  return int(np.asarray(v).reshape(-1)[0])


def _quantize_multiplier(real):
  """``QuantizeMultiplier`` through ``int8_kernels`` (one value or an array)."""
  m, e = int8_kernels.quantize_multiplier(tf.constant(np.asarray(real, np.float64)))
  return m.numpy().astype(np.int64), e.numpy().astype(np.int64)


def _addsub_constants(sa, sb, so, subtract):
  """The three (multiplier, shift) pairs of int8 ADD/SUB (int8_kernels._add_or_sub)."""
  left_shift = 20
  if subtract:  # sub_common.cc computes its multipliers in float32
    fa, fb, fo = np.float32(sa), np.float32(sb), np.float32(so)
    twice = np.float32(2.0) * max(fa, fb)
    reals = (np.float64(fa / twice), np.float64(fb / twice),
             np.float64(twice / (np.float32(1 << left_shift) * fo)))
  else:  # add_common.cc: double
    twice = 2.0 * max(sa, sb)
    reals = (sa / twice, sb / twice, twice / (float(1 << left_shift) * so))
  pairs = [_quantize_multiplier(r) for r in reals]
  for m, e in pairs:
    if _i(e) > 0:
      raise FusedExportError(f"ADD/SUB multiplier above one (shift {_i(e)}): TFLM refuses it")
  return [(_i(m), _i(e)) for m, e in pairs]


def _binop(g, op_index, first, second):
  """C binop params for op ``op_index`` with its non-commutative input order
  (first, second) — ADD and MUL are symmetric, so the caller's order is free."""
  name = g.names[op_index]
  out = int(g.ops[op_index].outputs[0])
  (s1, z1), (s2, z2), (so, zo) = g.quant(first), g.quant(second), g.quant(out)
  p = {"in1_offset": -z1, "in2_offset": -z2, "out_offset": zo, "act_min": -128,
       "act_max": 127, "in1_mult": 0, "in2_mult": 0, "in1_shift": 0, "in2_shift": 0}
  if name == "MUL":
    m, e = _quantize_multiplier(s1 * s2 / so)
    p.update(out_mult=_i(m), out_shift=_i(e))
  else:
    (m1, e1), (m2, e2), (mo, eo) = _addsub_constants(s1, s2, so, name == "SUB")
    p.update(in1_mult=m1, in1_shift=e1, in2_mult=m2, in2_shift=e2, out_mult=mo,
             out_shift=eo)
  return p


def _pack(weights):
  rows, cols = weights.shape
  row_bytes = (cols + 7) // 8
  mask = np.zeros((rows, row_bytes), np.uint8)
  nz = weights != 0
  for c in range(cols):
    mask[:, c // 8] |= (nz[:, c].astype(np.uint8) << (c % 8))
  return mask.reshape(-1), weights[nz].astype(np.int8)


def _fully_connected(g, op_index, storage):
  op = g.ops[op_index]
  x_t, w_t = int(op.inputs[0]), int(op.inputs[1])
  b_t = int(op.inputs[2]) if len(op.inputs) > 2 else -1
  out = int(op.outputs[0])
  options = op.builtinOptions
  if options is not None and (getattr(options, "weightsFormat", 0) != 0 or
                              getattr(options, "asymmetricQuantizeInputs", False)):
    raise FusedExportError(f"FULLY_CONNECTED {op_index} has non-default weight options")
  if not g.is_const(w_t):
    raise FusedExportError(f"FULLY_CONNECTED {op_index}: weights are not constant")
  shape = [int(d) for d in g.tensors[w_t].shape]
  if len(shape) != 2:
    raise FusedExportError(f"FULLY_CONNECTED {op_index}: weights of shape {shape}")
  rows, cols = shape
  w = g.const_values(w_t, np.int8).reshape(rows, cols)
  q = g.tensors[w_t].quantization
  w_scales = np.asarray(q.scale, np.float32)
  if len(w_scales) not in (1, rows) or np.any(np.asarray(q.zeroPoint) != 0):
    raise FusedExportError(f"FULLY_CONNECTED {op_index}: weights must be symmetric "
                           "per-channel (or per-tensor) int8")
  (sx, zx), (so, zo) = g.quant(x_t), g.quant(out)
  if g.size(x_t) != cols or g.size(out) != rows:
    raise FusedExportError(f"FULLY_CONNECTED {op_index}: input {g.size(x_t)} / output "
                           f"{g.size(out)} do not match weights {shape}")
  bias = np.zeros(rows, np.int64)
  if b_t >= 0:
    bias = g.const_values(b_t, np.int32).astype(np.int64)
    if bias.shape != (rows,):
      raise FusedExportError(f"FULLY_CONNECTED {op_index}: bias of shape {bias.shape}")
  scales = np.broadcast_to(w_scales.astype(np.float64), (rows,))
  mult, shift = _quantize_multiplier(np.float64(sx) * scales / np.float64(so))
  folded = bias + (-zx) * w.astype(np.int64).sum(axis=1)
  if np.any(np.abs(folded) >= 2**31):
    raise FusedExportError(f"FULLY_CONNECTED {op_index}: folded bias overflows int32")
  if np.any(shift > 31) or np.any(shift < -31):
    raise FusedExportError(f"FULLY_CONNECTED {op_index}: shift out of range")
  mask, values = _pack(w)
  packed_bytes = mask.size + values.size
  if storage not in ("auto", "dense", "packed"):
    raise ValueError(f"storage must be 'auto', 'dense' or 'packed', got {storage!r}")
  use_packed = storage == "packed" or (storage == "auto" and packed_bytes < w.size)
  return {"rows": rows, "cols": cols,
          "w": values if use_packed else w.reshape(-1).copy(),
          "mask": mask if use_packed else None,
          "bias": folded.astype(np.int32), "mult": mult.astype(np.int32),
          "shift": shift.astype(np.int8), "out_offset": zo, "act_min": -128, "act_max": 127,
          "input": x_t, "output": out}


def _fc_chain(g, start, storage):
  """The FULLY_CONNECTED ops from ``start`` (1 or 2): [fc params], end tensor."""
  fcs = []
  t = start
  users = [u for u in g.consumers.get(t, []) if g.names[u] == "FULLY_CONNECTED"
           and int(g.ops[u].inputs[0]) == t]
  if len(users) != 1:
    raise FusedExportError(f"input tensor {t} should feed one FULLY_CONNECTED, feeds "
                           f"{len(users)}")
  op = users[0]
  while True:
    fcs.append(_fully_connected(g, op, storage))
    t = int(g.ops[op].outputs[0])
    nxt = g.consumers.get(t, [])
    if len(nxt) == 1 and g.names[nxt[0]] == "FULLY_CONNECTED":
      if len(fcs) == 2:
        raise FusedExportError("more than two FULLY_CONNECTED in a row (rank factors)")
      op = nxt[0]
      continue
    return fcs, t


def _unary_table_op(g, op_index):
  """LOGISTIC/TANH as run by the tflite_micro runtime on all 256 int8 inputs."""
  from tflite_micro.python.tflite_micro import runtime as tflm  # pylint: disable=import-outside-toplevel
  model = copy.deepcopy(g.model)
  sub = model.subgraphs[0]
  op = copy.deepcopy(g.ops[op_index])
  tin = copy.deepcopy(sub.tensors[int(op.inputs[0])])
  tout = copy.deepcopy(sub.tensors[int(op.outputs[0])])
  for t in (tin, tout):
    t.shape = np.array([1, 256], np.int32)
    t.shapeSignature = None
    t.buffer = 0
  op.inputs, op.outputs = np.array([0], np.int32), np.array([1], np.int32)
  sub.tensors, sub.operators = [tin, tout], [op]
  sub.inputs, sub.outputs = np.array([0], np.int32), np.array([1], np.int32)
  model.signatureDefs = []
  model.buffers = [model.buffers[0]]
  if model.buffers[0].data is not None:
    raise FusedExportError("buffer 0 of the model is not the empty buffer")
  interp = tflm.Interpreter.from_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
  interp.set_input(np.arange(-128, 128, dtype=np.int8).reshape(1, 256), 0)
  interp.invoke()
  return interp.get_output(0).reshape(-1).astype(np.int64)


def _grid(g, t):
  s, z = g.quant(t)
  return int8_kernels.grid(s, z)


def _unary_chain(g, src, dst):
  """The 256-entry table ``src value -> dst value`` of the unary op chain src -> dst.

  Every op on the way has exactly one non-constant input (the chain) and, for ADD/SUB/
  MUL, one constant scalar; anything else raises.
  """
  chain = []
  t = dst
  while t != src:
    i = g.producer.get(t)
    if i is None:
      raise FusedExportError(f"tensor {dst} is not a function of tensor {src} alone")
    ins = [int(v) for v in g.ops[i].inputs]
    var = [v for v in ins if not g.is_const(v)]
    if len(var) != 1 or (g.names[i] in _ELEMENTWISE and len(ins) != 2):
      raise FusedExportError(f"op {i} ({g.names[i]}) between tensors {src} and {dst} is "
                             "not a unary op of the chain")
    chain.append(i)
    t = var[0]
  values = tf.constant(np.arange(-128, 128, dtype=np.int64))
  for i in reversed(chain):
    name, op = g.names[i], g.ops[i]
    out = int(op.outputs[0])
    if name in _TABLE_OPS:
      table = _unary_table_op(g, i)
      values = tf.constant(table[values.numpy() + 128])
      continue
    if name not in _ELEMENTWISE:
      raise FusedExportError(f"op {i} ({name}) cannot be tabulated")
    a, b = (int(v) for v in op.inputs)
    const = b if g.is_const(b) else a
    if g.size(const) != 1:
      raise FusedExportError(f"op {i} ({name}): constant operand has {g.size(const)} "
                             "values, a table needs a scalar")
    c_val = tf.constant(g.const_values(const, np.int8).astype(np.int64))
    operands = {const: (c_val, _grid(g, const))}
    var_t = a if const == b else b
    operands[var_t] = (values, _grid(g, var_t))
    (va, ga), (vb, gb) = operands[a], operands[b]
    fn = {"ADD": int8_kernels.add, "SUB": int8_kernels.sub, "MUL": int8_kernels.mul}[name]
    values = fn(va, ga, vb, gb, _grid(g, out))
  result = values.numpy()
  if result.shape != (256,) or result.min() < -128 or result.max() > 127:
    raise FusedExportError(f"table {src}->{dst} is not 256 int8 values")
  return result.astype(np.int8)


def _bias_branch(g, pre, op_index, hidden):
  """(bias int8 [H], ADD params, output tensor) of ADD(pre, constant bias)."""
  ins = [int(v) for v in g.ops[op_index].inputs]
  if g.names[op_index] != "ADD" or len(ins) != 2 or pre not in ins:
    raise FusedExportError(f"op {op_index} should be ADD(pre, bias)")
  const = ins[1] if ins[0] == pre else ins[0]
  if not g.is_const(const) or g.size(const) not in (1, hidden):
    raise FusedExportError(f"op {op_index}: the bias operand is not a constant of 1 or "
                           f"{hidden} values")
  bias = np.broadcast_to(g.const_values(const, np.int8), (hidden,)).astype(np.int8)
  return bias, _binop(g, op_index, pre, const), int(g.ops[op_index].outputs[0])


def extract(tflite_bytes, storage="auto"):
  """The fused kernel's parameters from the builtin int8 step model.

  Args:
    tflite_bytes: a FastGRNN or FastRNN step model from ``export.convert_step_model``
      (sigmoid/tanh activations, full or low-rank W/U).
    storage: "auto" (each matrix packed only where smaller than dense), "dense" or
      "packed" (forced, for tests).

  Returns:
    A dict mirroring ``fastgrnn_int8_params`` (numpy arrays for the pointers).

  Raises:
    FusedExportError: the graph is not one the kernel computes exactly.
  """
  g = _Graph(tflite_bytes)
  x, h, h_next, logits = (g.io[k] for k in ("x", "h", "h_next", "logits"))
  input_dim, hidden, classes = g.size(x), g.size(h), g.size(logits)
  if g.quant(h) != g.quant(h_next) or g.size(h_next) != hidden:
    raise FusedExportError("h and h_next must share shape and quantization")
  w_fcs, xw = _fc_chain(g, x, storage)
  u_fcs, hu = _fc_chain(g, h, storage)
  cls_op = g.produced_by(logits, "FULLY_CONNECTED")
  classifier = _fully_connected(g, cls_op, storage)
  if classifier["input"] != h_next:
    raise FusedExportError("the classifier does not read h_next")
  for fc in (w_fcs[-1], u_fcs[-1]):
    if fc["rows"] != hidden:
      raise FusedExportError(f"xW / hU has {fc['rows']} values, expected H={hidden}")
  pre_op = g.only_consumer(xw, "ADD")
  if sorted(int(v) for v in g.ops[pre_op].inputs) != sorted([xw, hu]):
    raise FusedExportError("xW and hU should meet in one ADD")
  pre = int(g.ops[pre_op].outputs[0])
  params = {"input_dim": input_dim, "hidden_dim": hidden, "num_classes": classes,
            "w": w_fcs, "u": u_fcs, "classifier": classifier,
            "pre": _binop(g, pre_op, xw, hu),
            "gate_bias": None, "gate_add": None, "update_bias": None, "update_add": None,
            "gate_table": None, "update_table": None, "coef_table": None,
            "state_table": None, "zh_mul": None, "ch_mul": None}
  # Branches from pre: ADD(pre, bias) -> activation, or the activation reading pre.
  branches = []  # (branch input tensor, bias, add params, activation op)
  for user in g.consumers.get(pre, []):
    if g.names[user] in _TABLE_OPS:
      branches.append((pre, None, None, user))
    elif g.names[user] == "ADD":
      bias, add, out = _bias_branch(g, pre, user, hidden)
      act = g.only_consumer(out)
      if g.names[act] not in _TABLE_OPS:
        raise FusedExportError(f"ADD(pre, bias) feeds {g.names[act]}, expected an "
                               "activation (LOGISTIC/TANH)")
      branches.append((out, bias, add, act))
    else:
      raise FusedExportError(f"pre feeds {g.names[user]}")
  out_op = g.produced_by(h_next, "ADD")
  a, b = (int(v) for v in g.ops[out_op].inputs)
  if len(branches) == 2:  # FastGRNN: the gate z is the activation multiplied by h.
    params["cell"] = FASTGRNN
    acts = [int(g.ops[act].outputs[0]) for _, _, _, act in branches]
    gate = None
    for k, z in enumerate(acts):
      for user in g.consumers.get(z, []):
        if g.names[user] == "MUL" and h in [int(v) for v in g.ops[user].inputs]:
          gate = k
    if gate is None:
      raise FusedExportError("FastGRNN: no activation output is multiplied by h (gate)")
    (g_in, g_bias, g_add, g_act), (u_in, u_bias, u_add, u_act) = (
        branches[gate], branches[1 - gate])
    z, h_tilde = acts[gate], acts[1 - gate]
    zh = ch = None
    for t in (a, b):
      i = g.produced_by(t, "MUL")
      ins = sorted(int(v) for v in g.ops[i].inputs)
      if ins == sorted([z, h]):
        zh = (i, t)
      elif h_tilde in ins:
        ch = (i, t, ins[0] if ins[1] == h_tilde else ins[1])
    if zh is None or ch is None:
      raise FusedExportError("FastGRNN: h_next should be ADD(MUL(coef, h~), MUL(z, h))")
    coef = ch[2]
    params.update(
        gate_bias=g_bias, gate_add=g_add, update_bias=u_bias, update_add=u_add,
        gate_table=_unary_chain(g, g_in, z), update_table=_unary_chain(g, u_in, h_tilde),
        coef_table=_unary_chain(g, z, coef),
        zh_mul=_binop(g, zh[0], z, h), ch_mul=_binop(g, ch[0], coef, h_tilde),
        out_add=_binop(g, out_op, ch[1], zh[1]))
  elif len(branches) == 1:  # FastRNN: h_next = ADD(f(update_pre), g(h)).
    params["cell"] = FASTRNN
    u_in, u_bias, u_add, _ = branches[0]
    # The operand depending on h alone is the beta term; the other the alpha term.
    def depends_on(t, src):
      try:
        _unary_chain(g, src, t)
        return True
      except FusedExportError:
        return False
    beta_t = a if depends_on(a, h) else b
    alpha_t = b if beta_t == a else a
    params.update(update_bias=u_bias, update_add=u_add,
                  update_table=_unary_chain(g, u_in, alpha_t),
                  state_table=_unary_chain(g, h, beta_t),
                  out_add=_binop(g, out_op, alpha_t, beta_t))
  else:
    raise FusedExportError(f"pre feeds {len(branches)} activation branches; FastRNN has "
                           "1, FastGRNN 2")
  for k in ("w", "u"):
    for fc in params[k]:
      fc.pop("input"), fc.pop("output")
  classifier.pop("input"), classifier.pop("output")
  return params


def param_bytes(params):
  """Bytes of constant data the parameters take (weights, masks, tables, structs)."""
  total = 0
  for fc in params["w"] + params["u"] + [params["classifier"]]:
    total += fc["w"].size + (fc["mask"].size if fc["mask"] is not None else 0)
    total += 4 * fc["rows"] + 4 * fc["rows"] + fc["rows"]
  for k in ("gate_bias", "update_bias", "gate_table", "update_table", "coef_table",
            "state_table"):
    if params[k] is not None:
      total += params[k].size
  return total


# ---------------------------------------------------------------------------- ctypes


class _Fc(ctypes.Structure):
  _fields_ = [("rows", ctypes.c_int32), ("cols", ctypes.c_int32),
              ("w", ctypes.POINTER(ctypes.c_int8)), ("mask", ctypes.POINTER(ctypes.c_uint8)),
              ("bias", ctypes.POINTER(ctypes.c_int32)),
              ("mult", ctypes.POINTER(ctypes.c_int32)),
              ("shift", ctypes.POINTER(ctypes.c_int8)), ("out_offset", ctypes.c_int32),
              ("act_min", ctypes.c_int8), ("act_max", ctypes.c_int8)]


class _Binop(ctypes.Structure):
  _fields_ = [(n, ctypes.c_int32) for n in ("in1_offset", "in2_offset", "in1_mult",
                                            "in2_mult", "out_mult", "out_offset")] + [
      (n, ctypes.c_int8) for n in ("in1_shift", "in2_shift", "out_shift", "act_min",
                                   "act_max")]


_I8P = ctypes.POINTER(ctypes.c_int8)


class _Params(ctypes.Structure):
  _fields_ = [("cell", ctypes.c_int32), ("input_dim", ctypes.c_int32),
              ("hidden_dim", ctypes.c_int32), ("num_classes", ctypes.c_int32),
              ("w_factors", ctypes.c_int32), ("u_factors", ctypes.c_int32),
              ("w", _Fc * 2), ("u", _Fc * 2), ("classifier", _Fc), ("pre", _Binop),
              ("gate_bias", _I8P), ("gate_add", _Binop), ("update_bias", _I8P),
              ("update_add", _Binop), ("gate_table", _I8P), ("update_table", _I8P),
              ("coef_table", _I8P), ("state_table", _I8P), ("zh_mul", _Binop),
              ("ch_mul", _Binop), ("out_add", _Binop)]


class _Scratch(ctypes.Structure):
  _fields_ = [("buf", _I8P), ("size", ctypes.c_int32)]


def compile_kernel(out_dir, compiler=None, flags=("-O2",)):
  """Builds the kernel as a shared library in ``out_dir``; returns its path."""
  cc = compiler or os.environ.get("CC", "cc")
  path = os.path.join(out_dir, "libfastgrnn_int8.so")
  subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", *flags, "-shared",
                  "-fPIC", KERNEL_SOURCE, "-o", path], check=True, capture_output=True)
  return path


class FusedStepRunner(runtime._StepRunner):  # pylint: disable=protected-access
  """Steps the fused C kernel (a shared library from ``compile_kernel``) through windows
  exactly as ``runtime.TFLMStepRunner`` steps the builtin model."""

  def __init__(self, tflite_bytes, library_path, storage="auto"):
    super().__init__(tflite_bytes)
    self.params = extract(tflite_bytes, storage)
    self._keep = []
    self._lib = ctypes.CDLL(library_path)
    self._lib.fastgrnn_int8_step.restype = ctypes.c_int
    self._lib.fastgrnn_int8_scratch_bytes.restype = ctypes.c_int32
    self._c = self._struct(self.params)
    need = self._lib.fastgrnn_int8_scratch_bytes(ctypes.byref(self._c))
    if need < 0:
      raise RuntimeError(f"the kernel refuses the parameters (error {need})")
    self._buf = np.zeros(need, np.int8)
    self._scratch = _Scratch(self._ptr(self._buf, ctypes.c_int8), need)

  def _ptr(self, array, ctype):
    if array is None:
      return ctypes.POINTER(ctype)()
    array = np.ascontiguousarray(array)
    self._keep.append(array)
    return array.ctypes.data_as(ctypes.POINTER(ctype))

  def _fc(self, fc):
    return _Fc(fc["rows"], fc["cols"], self._ptr(fc["w"], ctypes.c_int8),
               self._ptr(fc["mask"], ctypes.c_uint8), self._ptr(fc["bias"], ctypes.c_int32),
               self._ptr(fc["mult"], ctypes.c_int32), self._ptr(fc["shift"], ctypes.c_int8),
               fc["out_offset"], fc["act_min"], fc["act_max"])

  @staticmethod
  def _binop(p):
    if p is None:
      return _Binop()
    return _Binop(**p)

  def _struct(self, p):
    c = _Params()
    c.cell, c.input_dim, c.hidden_dim = p["cell"], p["input_dim"], p["hidden_dim"]
    c.num_classes, c.w_factors, c.u_factors = p["num_classes"], len(p["w"]), len(p["u"])
    for k, fc in enumerate(p["w"]):
      c.w[k] = self._fc(fc)
    for k, fc in enumerate(p["u"]):
      c.u[k] = self._fc(fc)
    c.classifier = self._fc(p["classifier"])
    for k in ("pre", "gate_add", "update_add", "zh_mul", "ch_mul", "out_add"):
      setattr(c, k, self._binop(p.get(k)))
    for k in ("gate_bias", "update_bias", "gate_table", "update_table", "coef_table",
              "state_table"):
      setattr(c, k, self._ptr(p[k], ctypes.c_int8))
    return c

  def _invoke(self, feeds):
    x = np.ascontiguousarray(feeds["x"].reshape(-1), np.int8)
    h = np.ascontiguousarray(feeds["h"].reshape(-1), np.int8)
    h_out = np.zeros(self.params["hidden_dim"], np.int8)
    logits = np.zeros(self.params["num_classes"], np.int8)
    i8 = lambda a: a.ctypes.data_as(_I8P)
    rc = self._lib.fastgrnn_int8_step(ctypes.byref(self._c), i8(x), i8(h), i8(h_out),
                                      i8(logits), ctypes.byref(self._scratch))
    if rc != 0:
      raise RuntimeError(f"fastgrnn_int8_step returned {rc}")
    return {"h_next": h_out.reshape(self.io["h_next"]["shape"]),
            "logits": logits.reshape(self.io["logits"]["shape"])}
