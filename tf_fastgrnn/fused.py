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

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from tf_fastgrnn import int8_kernels
from tf_fastgrnn import runtime

__all__ = ["CORE_COSTS", "CUSTOM_CODE", "FASTGRNN", "FASTRNN", "FusedExportError",
           "FusedOpRunner", "FusedStepRunner", "KERNEL_SOURCE", "OPTIONS_SOURCE",
           "SMALLEST_FORM", "STANDALONE_FILES", "STORAGES", "compile_kernel", "convert_fused",
           "custom_options", "extract", "options_blob", "param_bytes", "parse_options",
           "standalone_sources", "storage_cost", "write_standalone"]

KERNEL_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "fused")
KERNEL_SOURCE = os.path.join(KERNEL_DIR, "fastgrnn_int8.c")
OPTIONS_SOURCE = os.path.join(KERNEL_DIR, "fastgrnn_int8_options.c")

FASTRNN, FASTGRNN = 0, 1
_ELEMENTWISE = ("ADD", "SUB", "MUL")
_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}


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
    self.used = set()  # op indices the extraction accounted for
    self.producer = {}
    self.consumers = {}
    for i, op in enumerate(self.ops):
      for t in op.outputs:
        self.producer[int(t)] = i
      for t in op.inputs:
        if t >= 0:
          self.consumers.setdefault(int(t), []).append(i)
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


def _activation_range(g, op_index, out):
  """TFLM's CalculateActivationRangeQuantized for the op's fused activation."""
  options = g.ops[op_index].builtinOptions
  act = getattr(options, "fusedActivationFunction", 0) if options is not None else 0
  if act not in _ACTIVATIONS:
    raise FusedExportError(f"op {op_index} ({g.names[op_index]}) has fused activation "
                           f"{act}, not one of {sorted(_ACTIVATIONS.values())}")
  scale, zero_point = g.quant(out)

  def quantize(f):
    q = np.float32(f) / np.float32(scale)
    return zero_point + int(np.sign(q) * np.floor(np.abs(q) + np.float32(0.5)))
  lo, hi = -128, 127
  if _ACTIVATIONS[act] == "RELU":
    lo = max(lo, quantize(0.0))
  elif _ACTIVATIONS[act] == "RELU6":
    lo, hi = max(lo, quantize(0.0)), min(hi, quantize(6.0))
  elif _ACTIVATIONS[act] == "RELU_N1_TO_1":
    lo, hi = max(lo, quantize(-1.0)), min(hi, quantize(1.0))
  return lo, hi


def _i(v):
  return int(np.asarray(v).reshape(-1)[0])


def _quantize_multiplier(real):
  """``QuantizeMultiplier`` through ``int8_kernels`` (one value or an array)."""
  m, e = int8_kernels.quantize_multiplier(tf.constant(np.asarray(real, np.float64)))
  m, e = m.numpy().astype(np.int64), e.numpy().astype(np.int64)
  # The kernel relies on these ranges (no saturating SRDHM case, shifts a C int takes).
  if np.any(m < 0) or np.any(m >= 2**31) or np.any(e < -31) or np.any(e > 30):
    raise FusedExportError(f"a multiplier/shift outside TFLM's range: {m}, {e}")
  return m, e


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


def _binop(g, op_index, first, second, use=True):
  """C binop params for op ``op_index`` with its non-commutative input order
  (first, second) — ADD and MUL are symmetric, so the caller's order is free."""
  name = g.names[op_index]
  out = int(g.ops[op_index].outputs[0])
  (s1, z1), (s2, z2), (so, zo) = g.quant(first), g.quant(second), g.quant(out)
  if name not in _ELEMENTWISE:
    raise FusedExportError(f"op {op_index} is {name}, expected ADD, SUB or MUL")
  lo, hi = _activation_range(g, op_index, out)
  if use:
    g.used.add(op_index)
  p = {"in1_offset": -z1, "in2_offset": -z2, "out_offset": zo, "act_min": lo,
       "act_max": hi, "in1_mult": 0, "in2_mult": 0, "in1_shift": 0, "in2_shift": 0}
  if name == "MUL":
    m, e = _quantize_multiplier(s1 * s2 / so)
    if _i(e) > 15:  # the options parser's bound: 255^2 2^shift < 2^31 - 2^10
      raise FusedExportError(f"MUL {op_index}: multiplier {s1 * s2 / so} (shift {_i(e)}) "
                             "above 2^15 overflows int32")
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


def _sparse(weights):
  """Sparse rows: per row its count then its column indices (uint8 stream), and the
  non-zeros row-major: ``(idx, values)``. Needs cols <= 255."""
  idx = []
  for row in weights:
    cols = np.nonzero(row)[0]
    idx.append(len(cols))
    idx.extend(int(c) for c in cols)
  return np.asarray(idx, np.uint8), weights[weights != 0].astype(np.int8)


# Instructions per step of one matrix's dot products and row loop, by core class, for the
# storage choice "fast:<core>" (measured with -Os on QEMU, docs/fused_kernel.md):
# (per dense weight, per dense row, per sparse non-zero, per sparse row).
#   dsp:    Armv7E-M (__ARM_FEATURE_DSP: M4, M7, M33 with DSP): SXTB16/SMLAD dense rows.
#   scalar: Armv7-M without DSP (M3), RISC-V, hosts.
#   avr:    8-bit AVR, cycles (simavr, ATmega328P): dense rows in C (int16 products), sparse
#           rows in inline assembly (~27 cycles per non-zero); a row's rescale ~300 either way.
#   m0:     Armv6-M (__ARM_ARCH_6M__, __ARM_ARCH_8M_BASE__: M0, M0+, M23): both in Thumb-1
#           assembly, dense rows in pairs (4.25 per weight), sparse rows 6 per non-zero; a
#           row's rescale ~44 either way.
CORE_COSTS = {
    "dsp": (1.6, 20.0, 4.0, 22.0),
    "scalar": (10.0, 20.0, 5.5, 30.0),
    "avr": (80.0, 300.0, 27.0, 340.0),
    "m0": (4.25, 52.0, 6.0, 63.0),
}
STORAGES = ("auto", "dense", "packed", "sparse") + tuple(f"fast:{c}" for c in CORE_COSTS)


def storage_cost(rows, cols, nnz, storage, core):
  """Estimated instructions (cycles on AVR) of one matrix's products in ``storage``
  ("dense" or "sparse") on ``core`` (a ``CORE_COSTS`` key)."""
  per_w, per_row, per_nz, per_srow = CORE_COSTS[core]
  if storage == "dense":
    return per_w * rows * cols + per_row * rows
  return per_nz * nnz + per_srow * rows


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
  # The options parser's bound (fc_row_ok): the int32 accumulator |bias| + cols 2^14,
  # left-shifted, stays below 2^31 - 2^10 in every form of the kernel.
  bound = (np.abs(folded) + cols * 2**14) << np.maximum(shift.astype(np.int64), 0)
  if np.any(bound >= 2**31 - 2**10):
    raise FusedExportError(f"FULLY_CONNECTED {op_index}: bias {folded[np.argmax(bound)]} "
                           f"with {cols} inputs and shift {shift[np.argmax(bound)]} may "
                           "overflow the int32 accumulator")
  mask, values = _pack(w)
  packed_bytes = mask.size + values.size
  if storage not in STORAGES:
    raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
  lo, hi = _activation_range(g, op_index, out)
  kind = storage
  if storage == "auto":
    kind = "packed" if packed_bytes < w.size else "dense"
  elif storage.startswith("fast:"):
    core = storage[5:]
    kind = "dense"
    if cols <= 255 and (storage_cost(rows, cols, values.size, "sparse", core) <
                        storage_cost(rows, cols, values.size, "dense", core)):
      kind = "sparse"
  if kind == "sparse" and cols > 255:
    raise FusedExportError(f"FULLY_CONNECTED {op_index}: {cols} columns, sparse storage "
                           "holds at most 255")
  idx = _sparse(w)[0] if kind == "sparse" else None
  g.used.add(op_index)
  return {"rows": rows, "cols": cols,
          "w": values if kind in ("packed", "sparse") else w.reshape(-1).copy(),
          "mask": mask if kind == "packed" else None, "idx": idx,
          "bias": folded.astype(np.int32), "mult": mult.astype(np.int32),
          "raw_bias": bias.astype(np.int32), "in_offset": int(-zx),
          "shift": shift.astype(np.int8), "out_offset": zo, "act_min": lo, "act_max": hi,
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


def _chain_ops(g, src, dst):
  """The ops of the unary chain src -> dst, first to last.

  Every op on the way has exactly one non-constant input (the chain); its constant
  inputs, if any, are scalars. Raises if ``dst`` is not such a function of ``src``.
  """
  chain = []
  t = dst
  while t != src:
    i = g.producer.get(t)
    if i is None or g.names[i] == "FULLY_CONNECTED":
      raise FusedExportError(f"tensor {dst} is not a unary function of tensor {src}")
    ins = [int(v) for v in g.ops[i].inputs if v >= 0]
    var = [v for v in ins if not g.is_const(v)]
    if len(var) != 1 or any(g.size(v) != 1 for v in ins if g.is_const(v)):
      raise FusedExportError(f"op {i} ({g.names[i]}) between tensors {src} and {dst} is "
                             "not a unary op with scalar constants")
    if len(g.ops[i].outputs) != 1 or g.size(t) != g.size(var[0]):
      raise FusedExportError(f"op {i} ({g.names[i]}) is not elementwise")
    chain.append(i)
    t = var[0]
  return chain[::-1]


def _run_chain_tflm(g, chain, src):
  """The chain's ops run by the tflite_micro runtime on all 256 int8 values of src."""
  from tflite_micro.python.tflite_micro import runtime as tflm  # pylint: disable=import-outside-toplevel
  model = copy.deepcopy(g.model)
  if model.buffers[0].data is not None:
    raise FusedExportError("buffer 0 of the model is not the empty buffer")
  sub = model.subgraphs[0]
  tensors, index = [], {}

  def new(t, vector):
    if t not in index:
      tensor = copy.deepcopy(sub.tensors[t])
      tensor.shapeSignature = None
      if vector:
        tensor.shape = np.array([1, 256], np.int32)
        tensor.buffer = 0
      index[t] = len(tensors)
      tensors.append(tensor)
    return index[t]
  new(src, True)
  ops = []
  for i in chain:
    op = copy.deepcopy(sub.operators[i])
    op.inputs = np.array([new(int(v), not g.is_const(int(v))) for v in op.inputs if v >= 0],
                         np.int32)
    op.outputs = np.array([new(int(op.outputs[0]), True)], np.int32)
    ops.append(op)
  sub.tensors, sub.operators = tensors, ops
  sub.inputs = np.array([0], np.int32)
  sub.outputs = np.array([index[int(g.ops[chain[-1]].outputs[0])]], np.int32)
  model.signatureDefs = []
  interp = tflm.Interpreter.from_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
  interp.set_input(np.arange(-128, 128, dtype=np.int8).reshape(1, 256), 0)
  interp.invoke()
  return interp.get_output(0).reshape(-1).astype(np.int8)


def _unary_chain(g, src, dst, use=False):
  """The 256-entry int8 table ``src value -> dst value`` (identity when src is dst).

  Computed by the tflite_micro runtime itself running the chain's ops (LOGISTIC, TANH,
  RELU, MINIMUM, ADD/SUB/MUL by a scalar, ...) on every int8 input. ``use`` marks the
  ops as accounted for.
  """
  chain = _chain_ops(g, src, dst)
  if use:
    g.used.update(chain)
  if not chain:
    return np.arange(-128, 128).astype(np.int8)
  return _run_chain_tflm(g, chain, src)


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
  return bias, _binop(g, op_index, pre, const, use=False), int(g.ops[op_index].outputs[0])


def _bias_term(bias, add):
  """The bias operand of ADD(pre, bias) as TFLM's ADD scales it, int32 [H]:
  ``MultiplyByQuantizedMultiplier((bias + in2_offset) * 2^20, in2_mult, in2_shift)`` (the
  kernel adds it instead of rescaling the constant every step)."""
  if bias is None:
    return None
  x = (tf.constant(bias.astype(np.int64)) + add["in2_offset"]) * (1 << 20)
  term = int8_kernels.multiply_by_quantized_multiplier(
      x, tf.constant(add["in2_mult"], tf.int64), tf.constant(add["in2_shift"], tf.int64))
  return term.numpy().astype(np.int32)


def extract(tflite_bytes, storage="auto"):
  """The fused kernel's parameters from the builtin int8 step model.

  Args:
    tflite_bytes: a FastGRNN or FastRNN step model from ``export.convert_step_model``
      (sigmoid/tanh activations, full or low-rank W/U).
    storage: per matrix, "auto" (bitmap-packed only where smaller than dense), "dense",
      "packed", "sparse" (forced), or "fast:<core>" (``CORE_COSTS``: dense or sparse,
      whichever the core's cost model says is faster).

  Returns:
    A dict mirroring ``fastgrnn_int8_params`` (numpy arrays for the pointers), including
    ``gate_bias_term`` / ``update_bias_term`` (int32 [H], or None without that bias).

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
  # Branch starts: pre itself, and each ADD(pre, constant bias) (the biases).
  starts = {pre: (None, None, None)}
  for user in g.consumers.get(pre, []):
    if g.names[user] == "ADD" and any(g.is_const(int(v)) for v in g.ops[user].inputs):
      bias, add, out = _bias_branch(g, pre, user, hidden)
      starts[out] = (bias, add, user)

  def branch_of(t):
    """(start tensor, its table to t) for the branch start t is a unary function of."""
    found = []
    for start in starts:
      try:
        found.append((len(_chain_ops(g, start, t)), start))
      except FusedExportError:
        pass
    if not found:
      raise FusedExportError(f"tensor {t} is not a unary function of pre or of a bias ADD")
    start = min(found)[1]  # the nearest start (a scalar bias ADD is itself unary)
    if starts[start][2] is not None:
      g.used.add(starts[start][2])
    return start, _unary_chain(g, start, t, use=True)

  out_op = g.produced_by(h_next, "ADD")
  a, b = (int(v) for v in g.ops[out_op].inputs)
  products = {}
  for t in (a, b):
    i = g.producer.get(t)
    if i is not None and g.names[i] == "MUL":
      products[t] = (i, [int(v) for v in g.ops[i].inputs])
  zh = [t for t, (_, ins) in products.items()
        if h in ins and not any(g.is_const(v) for v in ins)]
  if len(zh) == 1 and len(products) == 2:  # FastGRNN: ADD(MUL(coef, h~), MUL(z, h))
    params["cell"] = FASTGRNN
    zh_t = zh[0]
    ch_t = b if zh_t == a else a
    zh_op, zh_ins = products[zh_t]
    ch_op, ch_ins = products[ch_t]
    z = zh_ins[1] if zh_ins[0] == h else zh_ins[0]
    coef = h_tilde = None
    for k in range(2):  # which factor of ch is a function of z (coef), which is h~
      try:
        coef_table = _unary_chain(g, z, ch_ins[k], use=True)
      except FusedExportError:
        continue
      coef, h_tilde = ch_ins[k], ch_ins[1 - k]
      break
    if coef is None:
      raise FusedExportError("FastGRNN: no factor of MUL(coef, h~) is a function of z")
    g_start, gate_table = branch_of(z)
    u_start, update_table = branch_of(h_tilde)
    if g_start == u_start and g_start != pre:
      raise FusedExportError("FastGRNN: gate and update share one bias ADD")
    identity = np.arange(-128, 128).astype(np.int8)
    params.update(
        gate_bias=starts[g_start][0], gate_add=starts[g_start][1],
        update_bias=starts[u_start][0], update_add=starts[u_start][1],
        gate_table=None if np.array_equal(gate_table, identity) else gate_table,
        update_table=None if np.array_equal(update_table, identity) else update_table,
        coef_table=coef_table,
        zh_mul=_binop(g, zh_op, z, h), ch_mul=_binop(g, ch_op, coef, h_tilde),
        out_add=_binop(g, out_op, ch_t, zh_t))
  else:  # FastRNN: h_next = ADD(alpha h~, beta h), each a unary function
    params["cell"] = FASTRNN
    beta_t = alpha_t = None
    for k, t in enumerate((a, b)):
      try:
        _chain_ops(g, h, t)
      except FusedExportError:
        continue
      beta_t, alpha_t = t, (b if k == 0 else a)
      break
    if beta_t is None:
      raise FusedExportError("h_next is neither FastGRNN's ADD(MUL(coef, h~), MUL(z, h)) "
                             "nor FastRNN's ADD(f(pre), g(h))")
    state_table = _unary_chain(g, h, beta_t, use=True)
    u_start, update_table = branch_of(alpha_t)
    params.update(update_bias=starts[u_start][0], update_add=starts[u_start][1],
                  update_table=update_table, state_table=state_table,
                  out_add=_binop(g, out_op, alpha_t, beta_t))
  g.used.add(pre_op)
  for k in ("gate", "update"):
    params[f"{k}_bias_term"] = _bias_term(params[f"{k}_bias"], params[f"{k}_add"])
  unused = sorted(set(range(len(g.ops))) - g.used)
  if unused:
    raise FusedExportError(
        f"ops the fused kernel does not account for: {[(i, g.names[i]) for i in unused]} "
        f"(graph: {g.names})")
  for k in ("w", "u"):
    for fc in params[k]:
      fc.pop("input"), fc.pop("output")
  classifier.pop("input"), classifier.pop("output")
  return params


def param_bytes(params, with_terms=False):
  """Bytes of constant data the parameters take (weights, masks, biases, multipliers,
  tables); ``with_terms=True``: with the optional int32 bias terms too (the default build
  of the standalone model stores them, the size build does not)."""
  total = 0
  for fc in params["w"] + params["u"] + [params["classifier"]]:
    total += fc["w"].size + (fc["mask"].size if fc["mask"] is not None else 0)
    total += fc["idx"].size if fc.get("idx") is not None else 0
    total += 4 * fc["rows"] + 4 * fc["rows"] + fc["rows"]
  for k in ("gate_bias", "update_bias", "gate_table", "update_table", "coef_table",
            "state_table"):
    if params[k] is not None:
      total += params[k].size
  if with_terms:
    for k in ("gate_bias_term", "update_bias_term"):
      if params.get(k) is not None:
        total += 4 * params[k].size
  return total


# ------------------------------------------------- fused .tflite: one FASTGRNN_INT8 op

CUSTOM_CODE = "FASTGRNN_INT8"
OPTIONS_MAGIC = 0x4E524746  # "FGRN" little-endian, fused/fastgrnn_int8_options.h
OPTIONS_VERSION = 3
OPT_COMPACT = 1 << 14  # shifts/biases bit-packed, tables delta-coded (decoded in RAM)
OPT_EXPAND = 1 << 15  # packed W/U expanded to dense rows + bias terms, in RAM
OPTIONS_MAX_DIM = 4096  # D, H, C and every FC layer's rows and cols (the parser's bound)
_BINOPS = ("pre", "gate_add", "update_add", "zh_mul", "ch_mul", "out_add")
_ARRAYS = ("gate_bias", "update_bias", "gate_table", "update_table", "coef_table",
           "state_table")
_BINOP_I32 = ("in1_offset", "in2_offset", "in1_mult", "in2_mult", "out_mult", "out_offset")
_BINOP_I8 = ("in1_shift", "in2_shift", "out_shift", "act_min", "act_max")


def _bit_stream(values, bits):
  """``values`` (non-negative ints < 2^bits) as a little-endian bit stream: value k at
  bits k*bits .. k*bits+bits-1, bit i = bit i%8 of byte i/8, padded to a byte."""
  values = np.asarray(values, np.uint64).reshape(-1)
  if bits == 0 or values.size == 0:
    return np.zeros(0, np.uint8)
  if np.any(values >> np.uint64(bits)):
    raise FusedExportError(f"a value does not fit {bits} bits")
  stream = ((values[:, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1))
  return np.packbits(stream.reshape(-1).astype(np.uint8), bitorder="little")


def _bits_for(span):
  """Bits that hold 0 .. span."""
  return int(span).bit_length()


def _signed_stream(values):
  """int32 ``values`` as two's complement in the fewest bits that hold them all (0 bits
  when all are 0): ``(bits, stream)``."""
  values = np.asarray(values, np.int64).reshape(-1)
  bits = 0
  if np.any(values != 0):
    bits = next(b for b in range(1, 33)
                if values.min() >= -(1 << (b - 1)) and values.max() < (1 << (b - 1)))
  return bits, _bit_stream(values & ((1 << bits) - 1), bits)


def encode_table(table):
  """A 256-entry int8 table in the COMPACT form (``fused/fastgrnn_int8_options.h``):
  header + delta-coded active range, order 1 or 2, whichever is smaller. Lossless."""
  t = np.asarray(table, np.int64).reshape(-1)
  if t.size != 256 or t.min() < -128 or t.max() > 127:
    raise FusedExportError("a table must hold 256 int8 values")
  d = np.diff(t)  # d[i - 1] = t[i] - t[i - 1], i = 1 .. 255
  nz = np.nonzero(d)[0]
  if not nz.size:
    return np.concatenate([np.array([t[0], 1, 0, 0], np.int64).astype(np.uint8),
                           np.zeros(3, np.uint8)])
  start, end = int(nz[0]) + 1, int(nz[-1]) + 1  # table indices of the first/last change
  active = d[start - 1:end]
  best = None
  for order in (1, 2):
    e = active if order == 1 else np.diff(np.concatenate([[0], active]))
    dmin = int(e.min())
    bits = _bits_for(int(e.max()) - dmin)
    if bits > 10:
      continue
    body = _bit_stream(e - dmin, bits)
    head = np.array([t[0] & 0xFF, order, start, active.size, dmin & 0xFF, (dmin >> 8) & 0xFF,
                     bits], np.int64).astype(np.uint8)
    enc = np.concatenate([head, body])
    if best is None or enc.size < best.size:
      best = enc
  return best


def options_blob(params, bias_terms=False, compact=True, expand=False):
  """The custom options of the FASTGRNN_INT8 op: ``params`` (``extract``) as bytes.

  ``bias_terms`` also stores the kernel's optional int32 bias terms (4 H bytes per bias
  vector: faster steps, a larger blob). ``compact`` (flag COMPACT) bit-packs the per-row
  shifts and the raw (unfolded) biases and delta-codes the tables; the op decodes them
  into RAM. ``expand`` (flag EXPAND) asks the op to expand bitmap-packed matrices into
  dense rows and to compute the bias terms, in RAM: the fast kernel at the small file.

  The layout (``fused/fastgrnn_int8_options.h``): an int32 section (header, per FC layer
  dims, bias or input offset, multipliers, the binops' offsets and multipliers), then an
  int8 section (shifts, clamps, masks, weights, bias vectors, tables), little-endian.
  With the int32 section first every int32 array starts at a multiple of 4, so the C
  parser points into the blob (in flash) instead of copying it.

  Raises:
    FusedExportError: a dimension above ``OPTIONS_MAX_DIM`` (the parser refuses it).
  """
  # The parser's bound (fastgrnn_int8_options.c: ERR_DIMS beyond it).
  dims = [(k, params[k]) for k in ("input_dim", "hidden_dim", "num_classes")]
  dims += [(f"{key}[{k}] {d}", fc[d]) for key in ("w", "u") for k, fc in enumerate(params[key])
           for d in ("rows", "cols")]
  for name, value in dims:
    if value > OPTIONS_MAX_DIM:
      raise FusedExportError(f"{name} {value}: the FASTGRNN_INT8 options hold at most "
                             f"{OPTIONS_MAX_DIM}")
  flags = (OPT_COMPACT if compact else 0) | (OPT_EXPAND if expand else 0)
  for k, name in enumerate(_ARRAYS):
    if params[name] is not None:
      flags |= 1 << k
  for k, name in enumerate(_BINOPS):
    if params.get(name) is not None:
      flags |= 1 << (8 + k)
  terms = [params.get(f"{k}_bias_term") if bias_terms else None for k in ("gate", "update")]
  for k, term in enumerate(terms):
    if term is not None:
      flags |= 1 << (6 + k)
  fcs = params["w"] + params["u"] + [params["classifier"]]
  for k, fc in enumerate(fcs):
    if fc.get("idx") is not None:
      flags |= 1 << (16 + k)
  i32 = [OPTIONS_MAGIC, OPTIONS_VERSION, params["cell"], params["input_dim"],
         params["hidden_dim"], params["num_classes"], len(params["w"]), len(params["u"]),
         flags]
  i8 = []
  for fc in fcs:
    nnz = -1 if fc["mask"] is None and fc.get("idx") is None else int(fc["w"].size)
    i32 += [fc["rows"], fc["cols"], fc["out_offset"], nnz]
    i32 += [fc["in_offset"]] if compact else fc["bias"].tolist()
    i32 += fc["mult"].tolist()
    i8.append(np.array([fc["act_min"], fc["act_max"]], np.int8))
    if compact:
      shift = fc["shift"].astype(np.int64)
      smin = int(shift.min())
      sbits = _bits_for(int(shift.max()) - smin)
      bbits, bias_stream = _signed_stream(fc["raw_bias"])
      i8.append(np.array([smin, sbits, bbits], np.int64).astype(np.uint8).view(np.int8))
      i8.append(_bit_stream(shift - smin, sbits).view(np.int8))
      i8.append(bias_stream.view(np.int8))
    else:
      i8.append(fc["shift"].astype(np.int8))
    if fc["mask"] is not None:
      i8.append(fc["mask"].astype(np.uint8).view(np.int8))
    if fc.get("idx") is not None:
      i8.append(fc["idx"].astype(np.uint8).view(np.int8))
    i8.append(fc["w"].astype(np.int8))
  for name in _BINOPS:
    if params.get(name) is not None:
      i32 += [params[name][f] for f in _BINOP_I32]
      i8.append(np.array([params[name][f] for f in _BINOP_I8], np.int8))
  for term in terms:
    if term is not None:
      i32 += np.asarray(term, np.int64).tolist()
  for k, name in enumerate(_ARRAYS):
    if params[name] is not None:
      if compact and k >= 2:
        i8.append(encode_table(params[name]).view(np.int8))
      else:
        i8.append(np.asarray(params[name], np.int8))
  head = np.asarray(i32, np.int64)
  if np.any(head < -2**31) or np.any(head >= 2**32):
    raise FusedExportError("a value of the int32 section does not fit 32 bits")
  head = (head & 0xFFFFFFFF).astype("<u4").tobytes()
  return head + np.concatenate(i8).tobytes()


def decoded_ram_bytes(params, bias_terms=True, compact=False, expand=False):
  """Bytes the C parser decodes ``options_blob(params, bias_terms, compact, expand)``
  into (``fastgrnn_int8_options_ram_bytes``; the TFLM op's persistent arena buffer): per
  FC shifts and int32 biases (COMPACT), dense rows of every bitmap-packed matrix and the
  int32 bias terms the blob lacks (EXPAND), the tables (COMPACT); each rounded up to 4."""
  up = lambda n: (n + 3) // 4 * 4
  total = 0
  for fc in params["w"] + params["u"] + [params["classifier"]]:
    if compact:
      total += up(fc["rows"]) + 4 * fc["rows"]
    if expand and fc["mask"] is not None:
      total += up(fc["rows"] * fc["cols"])
  if compact:
    total += 256 * sum(params[k] is not None for k in _ARRAYS[2:])
  if expand:
    for k in ("gate", "update"):
      if params[f"{k}_bias"] is not None and not (bias_terms and
                                                  params.get(f"{k}_bias_term") is not None):
        total += 4 * params["hidden_dim"]
  return total


def options_sizes(params, bias_terms=False, compact=True):
  """Where the bytes of ``options_blob(params, bias_terms, compact)`` go: ``{"weights"
  (W/U/classifier values and bitmap masks), "per_row" (multipliers, shifts, biases or
  their compact streams), "tables", "bias_vectors", "bias_terms", "framing" (header,
  dims, offsets, the binops), "total"}``."""
  fcs = params["w"] + params["u"] + [params["classifier"]]
  sizes = {"weights": 0, "per_row": 0, "tables": 0, "bias_vectors": 0, "bias_terms": 0}
  for fc in fcs:
    sizes["weights"] += fc["w"].size + (0 if fc["mask"] is None else fc["mask"].size)
    sizes["weights"] += 0 if fc.get("idx") is None else fc["idx"].size
    if compact:
      shift = fc["shift"].astype(np.int64)
      sbits = _bits_for(int(shift.max()) - int(shift.min()))
      sizes["per_row"] += (4 * fc["rows"] + (fc["rows"] * sbits + 7) // 8 +
                           _signed_stream(fc["raw_bias"])[1].size)
    else:
      sizes["per_row"] += 9 * fc["rows"]
  for k, name in enumerate(_ARRAYS):
    if params[name] is not None:
      if k < 2:
        sizes["bias_vectors"] += params[name].size
      else:
        sizes["tables"] += encode_table(params[name]).size if compact else 256
  if bias_terms:
    sizes["bias_terms"] = sum(4 * params[k].size for k in ("gate_bias_term",
                                                           "update_bias_term")
                              if params.get(k) is not None)
  total = len(options_blob(params, bias_terms, compact))
  sizes["framing"] = total - sum(sizes.values())
  sizes["total"] = total
  return sizes


# The smallest fused file with the fast kernel (the version 2 default): packed W/U where
# smaller, compact shifts/biases/tables, decoded and expanded into the arena in Prepare.
SMALLEST_FORM = {"storage": "auto", "bias_terms": False, "compact": True, "expand": True}


def convert_fused(tflite_bytes, storage="fast:dsp", bias_terms=True, compact=False,
                  expand=False, params=None):
  """``model_int8_fused.tflite``: the builtin int8 step model as ONE custom op.

  Inputs and outputs (x, h -> h_next, logits) keep the builtin model's order, shapes,
  names and quantization, so the app and every step runner use either model unchanged
  (no signature: ``runtime.step_io`` reads the tensor names); the op (custom code
  ``FASTGRNN_INT8``) reads x and h and writes h_next and logits, and its custom options
  are ``options_blob(extract(tflite_bytes, storage), bias_terms, compact, expand)``:
  every number is derived from the builtin model, which stays the reference.

  The default is the zero-copy fast form: each W/U matrix dense or in sparse rows,
  whichever the Armv7E-M cost model says is faster (``storage="fast:dsp"``; pass
  ``"fast:scalar"`` for cores without DSP), the int32 bias terms stored, nothing
  compact: the op's Prepare decodes nothing (``fastgrnn_int8_options_ram_bytes`` is 0)
  and Eval runs the kernel on the blob in flash, so the op's arena is its scratch
  (2 H + the largest rank). ``storage="auto", bias_terms=False, compact=True,
  expand=True`` is the smallest file (bitmap-packed W/U, compact shifts/biases/tables)
  with the fast kernel on what Prepare decodes into the arena
  (``decoded_ram_bytes(params, False, True, True)``); ``expand=False`` keeps the slower
  packed kernel with less arena.

  ``params``: ``extract(tflite_bytes, storage)`` where the caller has it already.

  Raises:
    FusedExportError: the builtin model is not one the kernel computes exactly (e.g. an
      LSTM or GRU step model).
  """
  if params is None:
    params = extract(tflite_bytes, storage)
  blob = options_blob(params, bias_terms, compact, expand)
  src = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_bytes))
  graph = src.subgraphs[0]
  sig = src.signatureDefs[0]
  by_name = {(t.name.decode() if isinstance(t.name, bytes) else t.name): int(t.tensorIndex)
             for t in list(sig.inputs) + list(sig.outputs)}
  order = ("x", "h", "h_next", "logits")
  index = {by_name[n]: k for k, n in enumerate(order)}
  tensors = []
  for name in order:
    old = graph.tensors[by_name[name]]
    t = schema.TensorT()
    t.shape = np.asarray(old.shape, np.int32)
    t.type = old.type
    t.buffer = 0
    t.name = name
    q = schema.QuantizationParametersT()
    q.scale = np.asarray(old.quantization.scale, np.float32)
    q.zeroPoint = np.asarray(old.quantization.zeroPoint, np.int64)
    q.quantizedDimension = 0
    t.quantization = q
    tensors.append(t)
  op = schema.OperatorT()
  op.opcodeIndex = 0
  op.inputs = np.array([0, 1], np.int32)
  op.outputs = np.array([2, 3], np.int32)
  op.customOptions = np.frombuffer(blob, np.uint8)
  op.customOptionsFormat = schema.CustomOptionsFormat.FLEXBUFFERS  # the schema's only value
  sub = schema.SubGraphT()
  sub.tensors = tensors
  sub.inputs = np.array([index[int(t)] for t in graph.inputs], np.int32)
  sub.outputs = np.array([index[int(t)] for t in graph.outputs], np.int32)
  sub.operators = [op]
  code = schema.OperatorCodeT()
  code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
  code.customCode = CUSTOM_CODE
  code.version = 1
  model = schema.ModelT()
  model.version = src.version
  model.operatorCodes = [code]
  model.subgraphs = [sub]
  model.buffers = [schema.BufferT()]
  out = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
  # The parser points int32 arrays into the blob: it must sit at a multiple of 4 in the
  # file (the model data itself is aligned by the app).
  fb = schema.Model.GetRootAs(out, 0)
  table = fb.Subgraphs(0).Operators(0)._tab  # pylint: disable=protected-access
  slot = table.Offset(14)  # Operator.custom_options (schema_py_generated's CustomOptions)
  start = table.Vector(slot) if slot else None
  if start is None or start % 4 or out[start:start + len(blob)] != blob:
    raise FusedExportError(f"custom options at byte {start} of the fused model are not "
                           "4-byte aligned")
  return out


def custom_options(fused_tflite_bytes):
  """The FASTGRNN_INT8 op's custom options from a fused ``.tflite`` (bytes)."""
  fb_model = flatbuffer_utils.read_model_from_bytearray(bytearray(fused_tflite_bytes))
  ops = [op for g in fb_model.subgraphs for op in g.operators]
  codes = fb_model.operatorCodes
  if len(ops) != 1 or codes[ops[0].opcodeIndex].customCode not in (
      CUSTOM_CODE, CUSTOM_CODE.encode()):
    raise FusedExportError(f"not a fused model: expected one {CUSTOM_CODE} op")
  return bytes(np.asarray(ops[0].customOptions, np.uint8).tobytes())


# ---------------------------------------------------------------------------- ctypes


class _Fc(ctypes.Structure):
  _fields_ = [("rows", ctypes.c_int32), ("cols", ctypes.c_int32),
              ("w", ctypes.POINTER(ctypes.c_int8)), ("mask", ctypes.POINTER(ctypes.c_uint8)),
              ("idx", ctypes.POINTER(ctypes.c_uint8)),
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
              ("ch_mul", _Binop), ("out_add", _Binop),
              ("gate_bias_term", ctypes.POINTER(ctypes.c_int32)),
              ("update_bias_term", ctypes.POINTER(ctypes.c_int32))]


class _Scratch(ctypes.Structure):
  _fields_ = [("buf", _I8P), ("size", ctypes.c_int32)]


def compile_kernel(out_dir, compiler=None, flags=("-O2",)):
  """Builds the kernel and its options parser as a shared library in ``out_dir``;
  returns its path."""
  cc = compiler or os.environ.get("CC", "cc")
  path = os.path.join(out_dir, "libfastgrnn_int8.so")
  subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", *flags, "-shared",
                  "-fPIC", KERNEL_SOURCE, OPTIONS_SOURCE, "-o", path], check=True,
                 capture_output=True)
  return path


def _kernel_step(runner, feeds):
  """One ``fastgrnn_int8_step`` of a runner holding ``_lib``, ``_c`` (the params struct),
  ``_scratch`` and ``io``: ``{"h_next", "logits"}`` as int8."""
  x = np.ascontiguousarray(feeds["x"].reshape(-1), np.int8)
  h = np.ascontiguousarray(feeds["h"].reshape(-1), np.int8)
  h_out = np.zeros(runner._c.hidden_dim, np.int8)  # pylint: disable=protected-access
  logits = np.zeros(runner._c.num_classes, np.int8)  # pylint: disable=protected-access
  i8 = lambda a: a.ctypes.data_as(_I8P)
  rc = runner._lib.fastgrnn_int8_step(  # pylint: disable=protected-access
      ctypes.byref(runner._c), i8(x), i8(h), i8(h_out), i8(logits),  # pylint: disable=protected-access
      ctypes.byref(runner._scratch))  # pylint: disable=protected-access
  if rc != 0:
    raise RuntimeError(f"fastgrnn_int8_step returned {rc}")
  return {"h_next": h_out.reshape(runner.io["h_next"]["shape"]),
          "logits": logits.reshape(runner.io["logits"]["shape"])}


class FusedStepRunner(runtime.StepRunner):
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
               self._ptr(fc["mask"], ctypes.c_uint8), self._ptr(fc.get("idx"), ctypes.c_uint8),
               self._ptr(fc["bias"], ctypes.c_int32),
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
    for k in ("gate_bias_term", "update_bias_term"):
      setattr(c, k, self._ptr(p.get(k), ctypes.c_int32))
    return c

  def _invoke(self, feeds):
    return _kernel_step(self, feeds)


def parse_options(library_path, blob):
  """Runs the C parser on ``blob``: ``fastgrnn_int8_options_ram_bytes``, then
  ``fastgrnn_int8_parse_options`` into that much (4-byte aligned) memory.

  Returns:
    ``(code, params struct, keep)``: the return code (of the first call that failed),
    the ``fastgrnn_int8_params`` it filled, and ``(aligned copy of the blob, decode
    memory)`` its pointers point into (keep them alive while the struct is used).
  """
  lib = ctypes.CDLL(library_path)
  lib.fastgrnn_int8_parse_options.restype = ctypes.c_int
  lib.fastgrnn_int8_options_ram_bytes.restype = ctypes.c_int32
  copy_ = np.zeros(len(blob) // 4 + 1, np.int32).view(np.uint8)[:len(blob)]  # aligned
  copy_[:] = np.frombuffer(blob, np.uint8)
  data = copy_.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))
  params = _Params()
  need = lib.fastgrnn_int8_options_ram_bytes(data, ctypes.c_uint32(len(blob)))
  if need < 0:
    return need, params, (copy_, None)
  ram = np.zeros(need // 4 + 1, np.int32)
  code = lib.fastgrnn_int8_parse_options(data, ctypes.c_uint32(len(blob)),
                                         ram.ctypes.data_as(ctypes.c_void_p),
                                         ctypes.c_uint32(need), ctypes.byref(params))
  return code, params, (copy_, ram)


class FusedOpRunner(runtime.StepRunner):
  """Steps a fused ``.tflite`` (``convert_fused``) as the TFLM custom op does: its custom
  options through the C parser (decoded into RAM where the blob asks), then the C kernel
  (``compile_kernel``'s library)."""

  def __init__(self, fused_tflite_bytes, library_path):
    super().__init__(fused_tflite_bytes)
    code, self._c, self._blob = parse_options(library_path, custom_options(fused_tflite_bytes))
    if code != 0:
      raise RuntimeError(f"fastgrnn_int8_parse_options returned {code}")
    self._lib = ctypes.CDLL(library_path)
    self._lib.fastgrnn_int8_options_ram_bytes.restype = ctypes.c_int32
    blob = self._blob[0]
    self.ram_bytes = int(self._lib.fastgrnn_int8_options_ram_bytes(
        blob.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), ctypes.c_uint32(len(blob))))
    self._lib.fastgrnn_int8_step.restype = ctypes.c_int
    need = self._lib.fastgrnn_int8_scratch_bytes(ctypes.byref(self._c))
    self._buf = np.zeros(need, np.int8)
    self._scratch = _Scratch(self._buf.ctypes.data_as(_I8P), need)
    self.hidden_dim, self.num_classes = self._c.hidden_dim, self._c.num_classes

  def _invoke(self, feeds):
    return _kernel_step(self, feeds)


# ------------------------------------------------------------------ standalone C model

STANDALONE_FILES = ("model.h", "model.c", "fastgrnn_int8.h", "fastgrnn_int8.c",
                    "example_main.c")


def _c_array(ctype, name, values, per_line=16):
  values = np.asarray(values).reshape(-1)
  body = ",\n".join("  " + ", ".join(str(int(v)) for v in values[i:i + per_line])
                    for i in range(0, len(values), per_line))
  return (f"static const FASTGRNN_INT8_ROM {ctype} {name}[{len(values)}] = {{\n"
          f"{body}\n}};\n")


def _c_float(value):
  """A C float literal of a float32 value (a model's scale: finite, or refused)."""
  value = np.float32(value).item()
  if not np.isfinite(value):
    raise FusedExportError(f"a quantization scale of {value} has no C float literal")
  return f"{value!r}f"


def _c_binop(p):
  if p is None:
    return "{0}"
  fields = ("in1_offset", "in2_offset", "in1_mult", "in2_mult", "out_mult", "out_offset",
            "in1_shift", "in2_shift", "out_shift", "act_min", "act_max")
  return "{" + ", ".join(f".{f} = {int(p[f])}" for f in fields) + "}"


def _standalone_builds(storage):
  """``(preprocessor condition or None, storage)`` of each build of the standalone C."""
  # One weight storage per build (the C preprocessor picks the branch): the size build
  # the smallest, the others the fastest by their core's cost model.
  if storage == "auto":
    return (("defined(FASTGRNN_INT8_SMALL)", "auto"), ("defined(__AVR__)", "fast:avr"),
            ("defined(__ARM_FEATURE_DSP)", "fast:dsp"),
            ("defined(__ARM_ARCH_6M__) || defined(__ARM_ARCH_8M_BASE__)", "fast:m0"),
            (None, "fast:scalar"))
  return ((None, storage),)


def standalone_storages(storage="auto"):
  """The weight storages ``standalone_sources(..., storage)`` extracts, in build order."""
  return tuple(dict.fromkeys(st for _, st in _standalone_builds(storage)))


def standalone_sources(tflite_bytes, storage="auto", extracted=None):
  """The standalone C model (no TFLM) for the builtin int8 step model, as text.

  ``model.c`` holds every weight, table and parameter as ``const`` data and
  ``model_step(x, h, logits)``; ``model.h`` the dimensions, the I/O quantization and the
  API; the kernel files are copied beside them; ``example_main.c`` steps int8 frames
  read from stdin and writes each step's h and logits to stdout (the test harness).

  Args:
    tflite_bytes: the builtin int8 step model.
    storage: "auto": each build gets its own weight storage per matrix: the size build
      (``-DFASTGRNN_INT8_SMALL``) bitmap-packed weights where that is smaller than dense
      and no bias terms; the others dense or sparse rows, whichever ``CORE_COSTS`` says
      is faster on their core (``fast:dsp`` where ``__ARM_FEATURE_DSP``, ``fast:avr`` on
      AVR, ``fast:m0`` on Armv6-M, ``fast:scalar`` elsewhere), and the int32 bias terms;
      any other ``STORAGES`` value: that storage in every build.
    extracted: ``{storage: extract(tflite_bytes, storage)}`` the caller has already
      (``standalone_storages(storage)`` lists those the builds need); the rest are
      extracted here.

  Returns:
    ``{file name: text}`` for ``STANDALONE_FILES``.
  """
  builds = _standalone_builds(storage)
  extracted = extracted or {}
  by_storage = {st: extracted[st] if st in extracted else extract(tflite_bytes, st)
                for st in {st for _, st in builds}}
  params = by_storage[builds[-1][1]]
  io = runtime.step_io(tflite_bytes)
  arrays, fcs = [], {}
  for group in ("w", "u"):
    for k in range(len(params[group])):
      fcs[f"{group}{k}"] = [(cond, by_storage[st][group][k]) for cond, st in builds]
  fcs["cls"] = [(cond, by_storage[st]["classifier"]) for cond, st in builds]

  def kind(fc):
    return "sparse" if fc.get("idx") is not None else (
        "packed" if fc["mask"] is not None else "dense")

  def weight_arrays(key, fc):
    text = _c_array("int8_t", f"{key}_w", fc["w"])
    for field in ("mask", "idx"):
      if fc.get(field) is not None:
        text += _c_array("uint8_t", f"{key}_{field}", fc[field])
        text += f"#define {key.upper()}_{field.upper()} {key}_{field}\n"
      else:
        text += f"#define {key.upper()}_{field.upper()} 0\n"
    return text

  fc_init = {}
  for key, variants in fcs.items():
    merged = []  # (conditions, fc): builds with the same storage share one branch
    for cond, fc in variants:
      if merged and kind(merged[-1][1]) == kind(fc):
        merged[-1][0].append(cond)
      else:
        merged.append(([cond], fc))
    if len(merged) == 1:
      arrays.append(weight_arrays(key, merged[0][1]))
    else:
      for k, (conds, fc) in enumerate(merged):
        test = " || ".join(c for c in conds if c)
        head = "#if" if k == 0 else "#elif"
        arrays.append(("#else\n" if k == len(merged) - 1 and None in conds else
                       f"{head} {test}\n") + weight_arrays(key, fc))
      arrays.append("#endif\n")
    fc = merged[0][1]
    arrays.append(_c_array("int32_t", f"{key}_bias", fc["bias"], 8))
    arrays.append(_c_array("int32_t", f"{key}_mult", fc["mult"], 8))
    arrays.append(_c_array("int8_t", f"{key}_shift", fc["shift"]))
    fc_init[key] = (f"{{.rows = {fc['rows']}, .cols = {fc['cols']}, .w = {key}_w, "
                    f".mask = {key.upper()}_MASK, .idx = {key.upper()}_IDX, "
                    f".bias = {key}_bias, .mult = {key}_mult, .shift = {key}_shift, "
                    f".out_offset = {fc['out_offset']}, .act_min = {fc['act_min']}, "
                    f".act_max = {fc['act_max']}}}")
  pointers = {}
  for key in ("gate_bias", "update_bias", "gate_table", "update_table", "coef_table",
              "state_table"):
    if params[key] is not None:
      arrays.append(_c_array("int8_t", key, params[key]))
      pointers[key] = key
    else:
      pointers[key] = "0"
  terms = []  # int32 bias terms: default build only (the size build never reads them)
  for key in ("gate_bias_term", "update_bias_term"):
    if params[key] is not None:
      terms.append(_c_array("int32_t", key, params[key], 8))
      pointers[key] = f"MODEL_TERM({key})"
    else:
      pointers[key] = "0"
  w_init = ", ".join(fc_init[f"w{k}"] for k in range(len(params["w"])))
  u_init = ", ".join(fc_init[f"u{k}"] for k in range(len(params["u"])))
  hidden = params["hidden_dim"]
  scratch = 2 * hidden + max([fc["rows"] for fc in params["w"][:-1] + params["u"][:-1]],
                             default=0)
  cell = "FASTGRNN_INT8_FASTGRNN" if params["cell"] == FASTGRNN else "FASTGRNN_INT8_FASTRNN"
  model_c = f"""/* Generated by tf_fastgrnn.fused.standalone_sources from the builtin int8 step model:
 * one FastGRNN/FastRNN step + classifier, bit-exact with TFLM. Do not edit. */
#include "model.h"

#include "fastgrnn_int8.h"

{"".join(arrays)}
#if defined(FASTGRNN_INT8_SMALL)
#define MODEL_TERM(name) 0
#else
#define MODEL_TERM(name) name
{"".join(terms)}#endif

static const fastgrnn_int8_params model_params = {{
  .cell = {cell}, .input_dim = {params['input_dim']}, .hidden_dim = {hidden},
  .num_classes = {params['num_classes']}, .w_factors = {len(params['w'])},
  .u_factors = {len(params['u'])},
  .w = {{{w_init}}},
  .u = {{{u_init}}},
  .classifier = {fc_init['cls']},
  .pre = {_c_binop(params['pre'])},
  .gate_bias = {pointers['gate_bias']}, .gate_add = {_c_binop(params['gate_add'])},
  .update_bias = {pointers['update_bias']}, .update_add = {_c_binop(params['update_add'])},
  .gate_table = {pointers['gate_table']}, .update_table = {pointers['update_table']},
  .coef_table = {pointers['coef_table']}, .state_table = {pointers['state_table']},
  .zh_mul = {_c_binop(params['zh_mul'])},
  .ch_mul = {_c_binop(params['ch_mul'])},
  .out_add = {_c_binop(params['out_add'])},
  .gate_bias_term = {pointers['gate_bias_term']},
  .update_bias_term = {pointers['update_bias_term']},
}};

void model_reset(int8_t *h) {{
  int32_t i;
  for (i = 0; i < MODEL_HIDDEN_DIM; ++i) h[i] = MODEL_H_ZERO_POINT;
}}

int model_step(const int8_t *x, int8_t *h, int8_t *logits) {{
  int8_t buf[MODEL_SCRATCH_BYTES];
  fastgrnn_int8_scratch scratch;
  scratch.buf = buf;
  scratch.size = MODEL_SCRATCH_BYTES;
  return fastgrnn_int8_step(&model_params, x, h, h, logits, &scratch);
}}
"""
  qx, qh, ql = io["x"], io["h"], io["logits"]
  model_h = f"""/* Generated by tf_fastgrnn.fused.standalone_sources. Do not edit. */
#ifndef MODEL_H_
#define MODEL_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

#define MODEL_INPUT_DIM {params['input_dim']}
#define MODEL_HIDDEN_DIM {hidden}
#define MODEL_NUM_CLASSES {params['num_classes']}
#define MODEL_SCRATCH_BYTES {scratch}
/* x_q = clamp(round(x / MODEL_X_SCALE) + MODEL_X_ZERO_POINT, -128, 127) */
#define MODEL_X_SCALE {_c_float(qx['scale'])}
#define MODEL_X_ZERO_POINT {qx['zero_point']}
#define MODEL_H_SCALE {_c_float(qh['scale'])}
#define MODEL_H_ZERO_POINT {qh['zero_point']}
#define MODEL_LOGITS_SCALE {_c_float(ql['scale'])}
#define MODEL_LOGITS_ZERO_POINT {ql['zero_point']}

/* Sets the state h [MODEL_HIDDEN_DIM] to zero (its zero point): call at a window start. */
void model_reset(int8_t *h);

/* One step: x [MODEL_INPUT_DIM] int8, h [MODEL_HIDDEN_DIM] updated in place, logits
 * [MODEL_NUM_CLASSES] (or NULL). Returns 0, or a negative FASTGRNN_INT8_ERR_* code. */
int model_step(const int8_t *x, int8_t *h, int8_t *logits);

#ifdef __cplusplus
}}
#endif

#endif /* MODEL_H_ */
"""
  example = """/* Minimal host example and test harness for the generated model.
 *   example_main STEPS < frames.bin > out.bin
 * reads int8 frames of MODEL_INPUT_DIM bytes, resets the state every STEPS frames, and
 * writes each step's h (MODEL_HIDDEN_DIM bytes) then logits (MODEL_NUM_CLASSES bytes). */
#include <stdio.h>
#include <stdlib.h>

#include "model.h"

int main(int argc, char **argv) {
  int8_t x[MODEL_INPUT_DIM], h[MODEL_HIDDEN_DIM], logits[MODEL_NUM_CLASSES];
  long steps = argc > 1 ? strtol(argv[1], 0, 10) : 0, t = 0;
  if (steps <= 0) {
    fprintf(stderr, "usage: %s STEPS_PER_WINDOW < frames.bin > out.bin\\n", argv[0]);
    return 2;
  }
  while (fread(x, 1, sizeof x, stdin) == sizeof x) {
    int rc;
    if (t++ % steps == 0) model_reset(h);
    rc = model_step(x, h, logits);
    if (rc != 0) {
      fprintf(stderr, "model_step failed: %d\\n", rc);
      return 1;
    }
    fwrite(h, 1, sizeof h, stdout);
    fwrite(logits, 1, sizeof logits, stdout);
  }
  return 0;
}
"""
  with open(KERNEL_SOURCE) as f:
    kernel_c = f.read()
  with open(os.path.join(KERNEL_DIR, "fastgrnn_int8.h")) as f:
    kernel_h = f.read()
  return {"model.h": model_h, "model.c": model_c, "fastgrnn_int8.h": kernel_h,
          "fastgrnn_int8.c": kernel_c, "example_main.c": example}


def write_standalone(tflite_bytes, out_dir, storage="auto", overwrite=False):
  """Writes ``standalone_sources`` into ``out_dir`` (atomically, file by file).

  The function the pipeline calls: ``write_standalone(model_int8.tflite bytes,
  run_folder / "standalone_c")``. Refuses (before writing anything) to replace existing
  files unless ``overwrite``.

  Returns:
    The list of written paths.
  """
  from tf_fastgrnn import fileio  # pylint: disable=import-outside-toplevel
  sources = standalone_sources(tflite_bytes, storage)
  paths = [os.path.join(out_dir, name) for name in STANDALONE_FILES]
  existing = [p for p in paths if os.path.exists(p)]
  if existing and not overwrite:
    raise FileExistsError(f"{existing[0]} exists; pass overwrite=True to replace the "
                          "standalone C model")
  for name, path in zip(STANDALONE_FILES, paths):
    fileio.write_text(path, sources[name])
  return paths
