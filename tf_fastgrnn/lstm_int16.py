"""A Keras LSTM as TFLite's own int8 LSTM: one fused op, int16 cell state, for TFLM.

The step model (``export.convert_step_model``) writes an LSTM as int8 elementwise ops, so
its cell state c is an int8 tensor. TFLite's fused ``UNIDIRECTIONAL_SEQUENCE_LSTM`` op,
which the converter makes from ``keras.layers.LSTM`` and quantizes "8x8_16" (int8
weights and activations, int16 cell state, int32 biases; in the sweep's models the
converter set the op's cell clip to ±10 and c's grid to 2^-11), is what a TFLM practitioner
deploys; TFLM runs it (``unidirectional_sequence_lstm``, ``LstmStep<int8, int8, int16,
int32>``). This module exports a float ``Input → keras.layers.LSTM → Dense`` model that way:

- ``convert_window_model``: ``x [1, T, D] -> logits [1, C]``, one invoke per window
  (the LSTM op loops over T inside; then the last step's h → FULLY_CONNECTED);
- ``streaming_model``: the same graph with T = 1: ``x [1, 1, D] -> logits [1, C]``, one
  invoke per time step. Same tensors, same quantization, so stepping it T times computes
  exactly what the window model computes in one invoke (tested byte for byte);
- ``export_and_evaluate``: both, run in TFLM over test and validation windows, the
  streaming model checked against the window model and LiteRT (the sweep's tier 5).

In both the states h (int8) and c (int16) are *variable tensors* inside the arena, not
model inputs: they persist across invokes, so the device (and the runners here) reset the
interpreter (``MicroInterpreter::Reset()``; LiteRT ``reset_all_variables``) at the start
of every window. ``tflm_app/`` carries the states as model inputs and does not run these
models yet.

TFLM and LiteRT implement this op separately (their int16 sigmoid and tanh differ), so the
two runtimes agree to about one output LSB, not bit for bit; TFLM (what the board runs) is
the reference. The low-rank LSTM (``baselines.LowRankLSTMCell``) has no fused form that
keeps its factors; its int8 step model takes ``export.convert_step_model(...,
forget_product_on_cell_grid=True)``.
"""

import dataclasses
import faulthandler
import os

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from tf_fastgrnn import export
from tf_fastgrnn import runtime
from tf_fastgrnn import stepping
from tf_fastgrnn._keras import keras

__all__ = ["Evaluation", "LiteRTRunner", "TFLMRunner", "check_fused",
           "convert_window_model", "export_and_evaluate", "measure_arena",
           "streaming_model"]

LSTM_OP = "UNIDIRECTIONAL_SEQUENCE_LSTM"


def _lstm_parts(model):
  rnn, dense = stepping.parts(model)
  if stepping.readout(model) != "last":
    raise ValueError("the int16-cell-state export takes the last-step read-out only, got "
                     "readout=mean (use export.convert_step_model)")
  if type(rnn) is not keras.layers.LSTM:  # pylint: disable=unidiomatic-typecheck
    raise ValueError(
        f"the int16-cell-state export takes a keras.layers.LSTM (the converter fuses only "
        f"that layer), got {type(rnn).__name__} with cell {type(rnn.cell).__name__}; for "
        "a low-rank LSTM use export.convert_step_model(..., "
        "forget_product_on_cell_grid=True)")
  cell = rnn.cell
  wrong = [f"{name}={getattr(fn, '__name__', fn)!r}" for name, fn, want in (
      ("activation", cell.activation, "tanh"),
      ("recurrent_activation", cell.recurrent_activation, "sigmoid"))
           if getattr(fn, "__name__", None) != want]
  if not cell.use_bias:
    wrong.append("use_bias=False")
  if wrong:
    raise ValueError(f"the fused int8 LSTM needs tanh/sigmoid activations and a bias; "
                     f"{rnn.name!r} has {', '.join(wrong)}")
  return rnn, dense


def convert_window_model(model, representative_windows, max_windows=256):
  """Converts ``model`` to the fused int8/int16 LSTM ``x [1, T, D] -> logits [1, C]``.

  Args:
    model: a float ``Input([T, D]) → keras.layers.LSTM → Dense`` model (tanh, sigmoid,
      with bias: Keras' defaults).
    representative_windows: real windows [N, T, D] (normalised as in training); the
      converter calibrates every range, the cell state's included, on the first
      ``max_windows``.
    max_windows: calibration windows used.

  Returns:
    The ``.tflite`` bytes; signature input ``"x"``, output ``"logits"``; checked with
    ``check_fused``.

  Raises:
    ValueError: not an LSTM model of that layout (the message says what differs), or
      windows of another shape.
    export.TFLMCompatibilityError: the converted model is not one fused LSTM with an
      int16 cell state that TFLM loads.
  """
  rnn, dense = _lstm_parts(model)
  windows = np.asarray(representative_windows, np.float32)[:max_windows]
  steps, input_dim = model.input_shape[1:]
  if windows.ndim != 3 or windows.shape[1:] != (steps, input_dim) or not len(windows):
    raise ValueError(f"representative_windows must be [N, {steps}, {input_dim}], got "
                     f"shape {windows.shape}")
  x = keras.Input((steps, input_dim), batch_size=1, name="x")
  window = keras.Model(x, {"logits": dense(rnn(x))})

  @tf.function(input_signature=[tf.TensorSpec([1, steps, input_dim], tf.float32,
                                              name="x")], autograph=False)
  def fn(x):
    return window(x)

  tflite_bytes = export.convert_int8(
      tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()],
                                                      window),
      lambda: ({"x": w[None]} for w in windows))
  tflite_bytes = _finish(tflite_bytes)
  check_fused(tflite_bytes)
  return tflite_bytes


def _finish(tflite_bytes):
  """Names the I/O tensors by the signature; drops metadata TFLM does not read."""
  fb_model = export.read_model(tflite_bytes)
  inputs, outputs = export.signature_tensors(fb_model)
  names = {index: name for name, index in {**inputs, **outputs}.items()}
  for i, tensor in enumerate(fb_model.subgraphs[0].tensors):
    tensor.name = names.get(i, "").encode()
  fb_model.metadata = [m for m in (fb_model.metadata or [])
                       if m.name not in (b"min_runtime_version", b"CONVERSION_METADATA")]
  return bytes(flatbuffer_utils.convert_object_to_bytearray(fb_model))


def _lstm_op(fb_model):
  graph = fb_model.subgraphs[0]
  ops = [op for op in graph.operators if export.op_name(fb_model, op) == LSTM_OP]
  return ops[0] if len(ops) == 1 else None


def check_fused(tflite_bytes):
  """Refuses a model that is not one fused int8 LSTM with an int16 cell state TFLM runs.

  Raises:
    export.TFLMCompatibilityError: naming what differs (no fused op: the converter kept
      the loop; another cell state type), or ``export.check_tflm_compatible``'s problems.
  """
  fb_model = export.read_model(tflite_bytes)
  op = _lstm_op(fb_model)
  if op is None:
    raise export.TFLMCompatibilityError(
        f"not one {LSTM_OP} op (ops: {export.model_ops(tflite_bytes)}): the converter did "
        "not fuse the LSTM")
  cell_state = fb_model.subgraphs[0].tensors[op.inputs[19]]
  if cell_state.type != schema.TensorType.INT16 or not cell_state.isVariable:
    raise export.TFLMCompatibilityError(
        f"the {LSTM_OP}'s cell state is not an int16 variable tensor (type "
        f"{cell_state.type}): not the 8x8_16 quantization TFLM runs")
  export.check_tflm_compatible(tflite_bytes)


def streaming_model(window_bytes):
  """The window model with T = 1: one invoke per time step, states kept inside.

  Only the input's and the LSTM output's time dimension change (the last-step slice
  of a length-1 sequence is that step); every weight and quantization stays, so T
  invokes of this model give the window model's bytes.
  """
  fb_model = export.read_model(window_bytes)
  op = _lstm_op(fb_model)
  if op is None:
    raise ValueError(f"not a fused LSTM model (ops: {export.model_ops(window_bytes)})")
  if op.builtinOptions.timeMajor:
    raise ValueError("a time-major LSTM: expected the converter's batch-major op")
  graph = fb_model.subgraphs[0]
  for index in (op.inputs[0], op.outputs[0]):
    tensor = graph.tensors[index]
    tensor.shape = np.asarray([tensor.shape[0], 1, tensor.shape[2]], np.int32)
    if tensor.shapeSignature is not None:
      tensor.shapeSignature = np.asarray(tensor.shape, np.int32)
  tflite_bytes = bytes(flatbuffer_utils.convert_object_to_bytearray(fb_model))
  check_fused(tflite_bytes)
  return tflite_bytes


class _Runner:
  """Windows through a fused LSTM model, window or streaming, from a reset state."""

  def __init__(self, tflite_bytes):
    fb_model = export.read_model(tflite_bytes)
    graph = fb_model.subgraphs[0]
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
      raise ValueError("expected a fused LSTM model with one input and one output")
    x, logits = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    self.x_shape = tuple(int(d) for d in x.shape)
    self.x_quantization = (float(x.quantization.scale[0]), int(x.quantization.zeroPoint[0]))
    self.logits_quantization = (float(logits.quantization.scale[0]),
                                int(logits.quantization.zeroPoint[0]))

  def run_windows(self, windows):
    """Every window ``[N, T, D]`` (float, normalised) from a reset state.

    Returns:
      ``{"logits_q": [N, C] int8, "logits": [N, C] float32}``, at each window's end.
    """
    windows = np.asarray(windows, np.float32)
    steps_per_invoke = self.x_shape[1]
    if (windows.ndim != 3 or windows.shape[-1] != self.x_shape[2]
        or windows.shape[1] % steps_per_invoke):
      raise ValueError(f"windows must be [N, T, {self.x_shape[2]}] with T a multiple of "
                       f"{steps_per_invoke}, got shape {windows.shape}")
    x_q = runtime.quantize(windows, *self.x_quantization)
    out = []
    for window in x_q:
      self._reset()
      for start in range(0, len(window), steps_per_invoke):
        logits = self._invoke(window[None, start:start + steps_per_invoke])
      out.append(logits.reshape(-1))
    logits_q = np.stack(out).astype(np.int8)
    return {"logits_q": logits_q,
            "logits": runtime.dequantize(logits_q, *self.logits_quantization)}


class TFLMRunner(_Runner):
  """The fused model in the TFLM runtime (``tflite_micro``): what the board computes."""

  def __init__(self, tflite_bytes, arena_size=None):
    super().__init__(tflite_bytes)
    from tflite_micro.python.tflite_micro import runtime as tflm  # pylint: disable=import-outside-toplevel
    self.interpreter = tflm.Interpreter.from_bytes(tflite_bytes, arena_size=arena_size)

  def _reset(self):
    self.interpreter.reset()  # zeroes the variable tensors h and c

  def _invoke(self, x_q):
    self.interpreter.set_input(x_q, 0)  # every invoke: the runtime reuses the buffer
    self.interpreter.invoke()
    return self.interpreter.get_output(0).copy()


class LiteRTRunner(_Runner):
  """The fused model in LiteRT with the reference kernels (``BUILTIN_REF``)."""

  def __init__(self, tflite_bytes):
    super().__init__(tflite_bytes)
    self.interpreter = runtime.litert_interpreter(tflite_bytes)
    self._in = self.interpreter.get_input_details()[0]["index"]
    self._out = self.interpreter.get_output_details()[0]["index"]

  def _reset(self):
    self.interpreter.reset_all_variables()

  def _invoke(self, x_q):
    self.interpreter.set_tensor(self._in, x_q)
    self.interpreter.invoke()
    return self.interpreter.get_tensor(self._out).copy()


def _fits_in_child(tflite_bytes, arena_size):
  """Whether the model allocates, resets and invokes in ``arena_size`` bytes, tried in
  a forked child: with too small an arena TFLM's LSTM kernel reaches a ``TFLITE_DCHECK``
  on a tensor it failed to allocate and aborts the whole process."""
  pid = os.fork()
  if pid == 0:  # the child: never returns
    code = 1
    try:
      faulthandler.disable()  # an abort here is an answer, not a crash to report
      fd = os.open(os.devnull, os.O_WRONLY)
      os.dup2(fd, 1)
      os.dup2(fd, 2)  # TFLM logs each failed allocation
      runner = TFLMRunner(tflite_bytes, arena_size=arena_size)
      runner._reset()  # pylint: disable=protected-access
      runner._invoke(np.zeros(runner.x_shape, np.int8))  # pylint: disable=protected-access
      code = 0
    finally:
      os._exit(code)  # pylint: disable=protected-access
  _, status = os.waitpid(pid, 0)
  return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def measure_arena(tflite_bytes, granularity=16):
  """The smallest TFLM arena (bytes) in which the model allocates, resets and invokes
  (the variable tensors h and c live in it), measured on this 64-bit host; each try in
  a forked child (POSIX only)."""
  _Runner(tflite_bytes)  # a bad model is refused here, not in a child
  low, high = 0, 4096
  while not _fits_in_child(tflite_bytes, high):
    low, high = high, 2 * high
    if high > 1 << 26:
      raise RuntimeError("the TFLM runtime cannot allocate this model")
  while high - low > granularity:
    mid = (low + high) // 2
    low, high = (low, mid) if _fits_in_child(tflite_bytes, mid) else (mid, high)
  return high


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """A float LSTM model's fused export, run in TFLM (what the board computes).

  ``window_tflite`` (one invoke per window) and ``tflite`` (streaming: one invoke per
  time step) with their smallest TFLM arenas (``window_arena``, ``arena``: bytes, this
  host); ``test_pred`` and ``validation_pred``, each window's class from the streaming
  model's int8 logits at the window's end; on the test windows, whether the streaming
  model's int8 logits equal the window model's (``streaming_equals_window_model``) and
  how LiteRT's reference kernels differ from TFLM's: the share of windows with the same
  class (``litert_top1_agreement``), the largest logit difference in LSBs
  (``litert_logits_max_lsb``) and the share of int8 logits that differ
  (``litert_logits_bytes_differing``)."""
  window_tflite: bytes
  tflite: bytes
  window_arena: int
  arena: int
  test_pred: np.ndarray
  validation_pred: np.ndarray
  streaming_equals_window_model: bool
  litert_top1_agreement: float
  litert_logits_max_lsb: int
  litert_logits_bytes_differing: float


def export_and_evaluate(model, calibration, test_windows, validation_windows):
  """Exports ``model`` the fused way and runs it in TFLM over both splits' windows.

  Args:
    model: as ``convert_window_model`` takes it.
    calibration: real windows ``[N, T, D]`` the converter calibrates on
      (``convert_window_model``'s ``representative_windows``).
    test_windows: ``[N, T, D]`` windows, normalised as in training; the checks against
      the window model and LiteRT run on these.
    validation_windows: ``[M, T, D]`` windows, run in TFLM only.

  Returns:
    An ``Evaluation``.
  """
  window_bytes = convert_window_model(model, calibration)
  tflite_bytes = streaming_model(window_bytes)
  runner = TFLMRunner(tflite_bytes)
  test = runner.run_windows(test_windows)["logits_q"]
  validation = runner.run_windows(validation_windows)["logits_q"]
  window_test = TFLMRunner(window_bytes).run_windows(test_windows)["logits_q"]
  litert_test = LiteRTRunner(tflite_bytes).run_windows(test_windows)["logits_q"]
  lsb = np.abs(test.astype(np.int32) - litert_test)
  return Evaluation(
      window_tflite=window_bytes, tflite=tflite_bytes,
      window_arena=measure_arena(window_bytes), arena=measure_arena(tflite_bytes),
      test_pred=test.argmax(-1), validation_pred=validation.argmax(-1),
      streaming_equals_window_model=bool(np.array_equal(test, window_test)),
      litert_top1_agreement=float(np.mean(test.argmax(-1) == litert_test.argmax(-1))),
      litert_logits_max_lsb=int(lsb.max()),
      litert_logits_bytes_differing=float(np.mean(lsb > 0)))
