"""Host runtimes for the int8 step model: TFLM (the reference) and LiteRT.

``TFLMStepRunner`` uses the ``tflite_micro`` PyPI package, the real TFLM interpreter and
kernels compiled for the host; it is what the device computes (bit for bit, kernels being
portable C++). ``LiteRTStepRunner`` uses ``ai_edge_litert`` with the reference kernels
(``BUILTIN_REF``): its default XNNPACK delegate computes int8 differently from TFLM.

Both step the model through windows the way the device does: quantize each frame with
the ``x`` input's parameters, start from the state's zero point (h = 0), set *every*
input before *every* invoke (the TFLM runtime reuses its input buffers), and carry
``h_next`` into ``h`` by a copy when both share quantization (the export guarantees it),
else by fixed-point requantization as the app's ``StateCarry`` does
(``fixed_point.requantize``).
"""

import os
import re
import sys
import tempfile

import numpy as np

from tf_fastgrnn import export
from tf_fastgrnn import fixed_point
from tf_fastgrnn import stepping

__all__ = ["LiteRTStepRunner", "StepRunner", "TFLMStepRunner", "litert_interpreter",
           "measure_arena", "step_io",
           "quantize", "dequantize"]


def quantize(values, scale, zero_point):
  """float → int8 as TFLite's QUANTIZE does (round half away from zero, saturate)."""
  q = fixed_point.round_half_away(np.asarray(values, np.float64) / scale) + zero_point
  return np.clip(q, -128, 127).astype(np.int8)


def dequantize(values, scale, zero_point):
  return (np.asarray(values, np.float32) - zero_point) * np.float32(scale)


def litert_interpreter(tflite_bytes):
  """An allocated LiteRT interpreter with the reference kernels (``BUILTIN_REF``, no
  XNNPACK): what TFLM's kernels are compared with."""
  from ai_edge_litert import interpreter as litert  # pylint: disable=import-outside-toplevel
  interpreter = litert.Interpreter(
      model_content=tflite_bytes,
      experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF)
  interpreter.allocate_tensors()
  return interpreter


def step_io(tflite_bytes):
  """``{name: {"index": position, "shape", "scale", "zero_point"}}`` per signature name
  (without a signature, as in the fused model: per name of the subgraph's input/output
  tensors).

  Input names are ``x``, ``h`` (and ``c`` for an LSTM); outputs ``h_next``, ``logits``
  (and ``c_next``). ``index`` is the position among the model's inputs or outputs, which
  is how TFLM (no signatures) addresses them.
  """
  fb_model = export.read_model(tflite_bytes)
  graph = fb_model.subgraphs[0]
  if fb_model.signatureDefs:
    inputs, outputs = export.signature_tensors(fb_model)
  else:  # no signature (the fused model): the subgraph's inputs/outputs by tensor name
    def by_name(indices):
      names = [graph.tensors[int(i)].name for i in indices]
      return {(n.decode() if isinstance(n, bytes) else n): int(i)
              for n, i in zip(names, indices)}
    inputs, outputs = by_name(graph.inputs), by_name(graph.outputs)
  result = {}
  for names, order in ((inputs, list(graph.inputs)), (outputs, list(graph.outputs))):
    for name, tensor_index in names.items():
      tensor = graph.tensors[tensor_index]
      q = tensor.quantization
      result[name] = {"index": order.index(tensor_index),
                      "shape": tuple(int(d) for d in tensor.shape),
                      "scale": float(q.scale[0]), "zero_point": int(q.zeroPoint[0])}
  missing = {"x", "h", "h_next", "logits"} - set(result)
  if missing:
    raise ValueError(f"not a step model: signature lacks {sorted(missing)} "
                     f"(has {sorted(result)})")
  return result


class StepRunner:
  """Shared stepping logic; subclasses provide ``_invoke(feeds) -> outputs``."""

  def __init__(self, tflite_bytes):
    self.io = step_io(tflite_bytes)
    self.state_names = [n for n in ("h", "c") if n in self.io]

  def _carry(self, name, value):
    src, dst = self.io[name + "_next"], self.io[name]
    return fixed_point.requantize(value, (src["scale"], src["zero_point"]),
                                  (dst["scale"], dst["zero_point"]))

  def initial_state(self):
    """The zero state as ``step`` keyword arguments: ``{"h_q": ..., ("c_q": ...)}``."""
    return {f"{n}_q": np.full(self.io[n]["shape"], self.io[n]["zero_point"], np.int8)
            for n in self.state_names}

  def step(self, x_q, h_q, c_q=None):
    """One invoke on int8 arrays; returns ``(h_next_q, logits_q)`` (+ ``c_next_q``)."""
    feeds = {"x": np.asarray(x_q, np.int8).reshape(self.io["x"]["shape"]),
             "h": np.asarray(h_q, np.int8).reshape(self.io["h"]["shape"])}
    if "c" in self.io:
      feeds["c"] = np.asarray(c_q, np.int8).reshape(self.io["c"]["shape"])
    out = self._invoke(feeds)
    if "c" in self.io:
      return out["h_next"], out["logits"], out["c_next"]
    return out["h_next"], out["logits"]

  def run_windows(self, x, progress=False):
    """Steps every window ``x [N, T, D]`` (float, normalised) from a zero state.

    Returns:
      dict of ``x_q [N,T,D]``, ``h_q [N,T,H]`` (state after each step), ``logits_q
      [N,T,C]`` (int8), and their dequantized ``h``, ``logits`` (float32).
    """
    x = np.asarray(x, np.float32)
    dim = self.io["x"]["shape"][-1]
    if x.ndim != 3 or x.shape[-1] != dim:
      raise ValueError(f"windows must be [N, T, {dim}], got shape {x.shape}")
    if not np.all(np.isfinite(x)):
      raise ValueError("windows contain NaN or Inf")
    n, steps, _ = x.shape
    qx = self.io["x"]
    x_q = quantize(x, qx["scale"], qx["zero_point"])
    hidden, classes = self.io["h_next"]["shape"][-1], self.io["logits"]["shape"][-1]
    h_q = np.zeros((n, steps, hidden), np.int8)
    logits_q = np.zeros((n, steps, classes), np.int8)
    report_every = max(1, n // 10)
    for i in range(n):
      state = {k[:-2]: v for k, v in self.initial_state().items()}
      for t in range(steps):
        out = self._invoke(dict(state, x=x_q[i, t].reshape(qx["shape"])))
        h_q[i, t] = out["h_next"].reshape(-1)
        logits_q[i, t] = out["logits"].reshape(-1)
        state = {s: self._carry(s, out[s + "_next"]) for s in self.state_names}
      if progress and (i + 1) % report_every == 0:
        print(f"  {type(self).__name__}: {i + 1}/{n} windows", flush=True)
    qh, ql = self.io["h_next"], self.io["logits"]
    return {"x_q": x_q, "h_q": h_q, "logits_q": logits_q,
            "h": dequantize(h_q, qh["scale"], qh["zero_point"]),
            "logits": dequantize(logits_q, ql["scale"], ql["zero_point"])}


  def window_classes(self, logits_q, readout):
    """Each window's class from ``run_windows``' int8 ``logits_q [N, T, C]`` under
    ``readout`` (``"last"``, ``"mean"``), as the device computes it: the argmax of the
    last step's logits, or of their int32 sum over the window minus the zero point
    (``stepping.window_classes``)."""
    return stepping.window_classes(logits_q, readout, self.io["logits"]["zero_point"])


class TFLMStepRunner(StepRunner):
  """The step model in the TFLM interpreter (``tflite_micro`` PyPI runtime)."""

  def __init__(self, tflite_bytes, arena_size=None):
    super().__init__(tflite_bytes)
    from tflite_micro.python.tflite_micro import runtime  # pylint: disable=import-outside-toplevel
    try:
      with _QuietStderr() as quiet:
        self.interpreter = runtime.Interpreter.from_bytes(tflite_bytes,
                                                          arena_size=arena_size)
    except RuntimeError as e:
      if arena_size:
        needed = measure_arena(tflite_bytes)
        raise ValueError(f"TFLM arena of {arena_size} bytes is too small: the model "
                         f"needs {needed} bytes") from e
      raise RuntimeError(f"TFLM cannot load the model: {quiet.text.strip()[-500:]}") from e
    self._inputs = sorted(((n, d["index"]) for n, d in self.io.items()
                           if n in ("x", "h", "c")), key=lambda p: p[1])
    self._outputs = [(n, d["index"]) for n, d in self.io.items()
                     if n in ("h_next", "logits", "c_next")]

  def _invoke(self, feeds):
    # Every input, every invoke: the runtime reuses its input buffers.
    for name, index in self._inputs:
      self.interpreter.set_input(feeds[name], index)
    self.interpreter.invoke()
    return {name: self.interpreter.get_output(index).copy() for name, index in self._outputs}


class LiteRTStepRunner(StepRunner):
  """The step model in LiteRT with the reference int8 kernels (no XNNPACK)."""

  def __init__(self, tflite_bytes):
    super().__init__(tflite_bytes)
    self.interpreter = litert_interpreter(tflite_bytes)
    ins, outs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
    self._inputs = [(n, ins[d["index"]]["index"]) for n, d in self.io.items()
                    if n in ("x", "h", "c")]
    self._outputs = [(n, outs[d["index"]]["index"]) for n, d in self.io.items()
                     if n in ("h_next", "logits", "c_next")]

  def _invoke(self, feeds):
    for name, index in self._inputs:
      self.interpreter.set_tensor(index, feeds[name])
    self.interpreter.invoke()
    return {name: self.interpreter.get_tensor(index).copy() for name, index in self._outputs}


_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")


class _QuietStderr:
  """Sends the C-level stderr to a temporary file (TFLM logs failed allocations there)."""

  def __enter__(self):
    sys.stderr.flush()
    self._saved = os.dup(2)
    self.file = tempfile.TemporaryFile(mode="w+b")
    os.dup2(self.file.fileno(), 2)
    return self

  def __exit__(self, *exc):
    os.dup2(self._saved, 2)
    os.close(self._saved)
    self.file.seek(0)
    self.text = self.file.read().decode(errors="replace")
    self.file.close()


def _fits(tflite_bytes, io, arena_size):
  from tflite_micro.python.tflite_micro import runtime  # pylint: disable=import-outside-toplevel
  try:
    interpreter = runtime.Interpreter.from_bytes(tflite_bytes, arena_size=arena_size)
    for name in ("x", "h", "c"):
      if name in io:
        interpreter.set_input(np.full(io[name]["shape"], io[name]["zero_point"], np.int8),
                              io[name]["index"])
    interpreter.invoke()
  except RuntimeError:
    return None
  return interpreter


def measure_arena(tflite_bytes, granularity=16):
  """The smallest TFLM arena (bytes) in which the model allocates and invokes.

  The RecordingMicroAllocator's total leaves out the temporary allocations made while
  kernels prepare, so it is only the starting point of a search for the smallest arena
  that works (to ``granularity`` bytes). Measured on this 64-bit host: a 32-bit MCU needs
  somewhat less (pointers in the per-tensor structs are half the size), so the figure is
  a safe bound there.
  """
  io = step_io(tflite_bytes)
  with _QuietStderr() as quiet:
    interpreter = _fits(tflite_bytes, io, None)
    if interpreter is None:
      raise RuntimeError("the TFLM runtime cannot allocate this model at all")
    interpreter.print_allocations()
  match = _TOTAL.search(quiet.text)
  if not match:
    raise RuntimeError(f"could not read the TFLM allocation record: {quiet.text[:300]!r}")
  low = int(match.group(1))  # known to be at most what is needed
  high = max(2 * low, low + 4096)
  with _QuietStderr():
    while _fits(tflite_bytes, io, high) is None:
      low, high = high, 2 * high
    while high - low > granularity:
      mid = (low + high) // 2
      if _fits(tflite_bytes, io, mid) is None:
        low = mid
      else:
        high = mid
  return high
