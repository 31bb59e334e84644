"""The files a TFLM app compiles in: the model array, its settings, and test vectors.

``write_device_files`` writes, into one folder:

- ``model_data.h`` / ``model_data.cc``: ``alignas(16) const unsigned char
  g_model_data[]`` and ``g_model_data_len`` (the form of TFLM's examples);
- ``model_settings.h``: dims, labels, feature normalisation, every I/O tensor's position,
  scale and zero point, the recurrent states the app carries (h; an LSTM also c), the
  measured arena (+ margin), the op list as an X-macro for ``MicroMutableOpResolver``,
  the window read-out (``kReadoutMean``: the last step's logits, or their int32 sum over
  the window), and, for keyword spotting only, the posterior smoother's settings;
- ``test_vectors.h`` / ``test_vectors.cc`` (optional): int8 inputs of a few real windows
  and, for every step, the ``h`` and logits the TFLM runtime produced, and each window's
  class under the read-out (``stepping.window_classes``, what the app must report);
- ``model_data_fused.cc`` (optional): the same ``g_model_data`` holding
  ``model_int8_fused.tflite`` instead (one FASTGRNN_INT8 custom op, same I/O: the
  settings and test vectors hold for both; ``make -C tflm_app test FUSED=1``).

The folder is written as a whole: into a temporary sibling, then renamed into place, so
a killed run never leaves a half set of files.
"""

import dataclasses
import os
import pathlib
import shutil
import tempfile
import warnings

import numpy as np

from tf_fastgrnn import c_text
from tf_fastgrnn import export
from tf_fastgrnn import fileio
from tf_fastgrnn import runtime
from tf_fastgrnn import spec as spec_lib
from tf_fastgrnn import stepping

__all__ = ["DEVICE_FILES", "DeviceSettings", "Task", "settings_from_model", "write_device_files",
           "c_array", "model_data_source"]

# TFLM resolver method per builtin op name (MicroMutableOpResolver::AddXxx).
# Each op's MicroMutableOpResolver method. Only ops TFLM has a kernel for: RELU_N1_TO_1,
# which LiteRT runs, has none in tflite-micro, so a model using it is refused here.
_RESOLVER = {
    "FULLY_CONNECTED": "FullyConnected", "ADD": "Add", "SUB": "Sub", "MUL": "Mul",
    "LOGISTIC": "Logistic", "TANH": "Tanh", "RELU": "Relu", "RELU6": "Relu6",
    "MINIMUM": "Minimum", "MAXIMUM": "Maximum",
    "QUANTIZE": "Quantize", "DEQUANTIZE": "Dequantize", "SPLIT": "Split",
    "SPLIT_V": "SplitV", "CONCATENATION": "Concatenation", "RESHAPE": "Reshape",
    "STRIDED_SLICE": "StridedSlice", "SOFTMAX": "Softmax", "BATCH_MATMUL": "BatchMatMul",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "UnidirectionalSequenceLSTM", "PACK": "Pack",
    "UNPACK": "Unpack", "GATHER": "Gather", "SQUARED_DIFFERENCE": "SquaredDifference",
    "RSQRT": "Rsqrt", "MEAN": "Mean",
}


@dataclasses.dataclass(frozen=True)
class DeviceSettings:
  """What ``model_settings.h`` states. Every field is a plain value.

  Attributes:
    input_dim, hidden_dim, num_classes: D, H, C of the step model.
    steps_per_window: T, the time steps of one classification window.
    labels: class names, C of them.
    feature_mean, feature_std: per-feature normalisation (D each): the device computes
      ``(raw - mean) / std`` before quantizing a frame.
    io: ``{name: (position, scale, zero_point)}`` for x, h, h_next, logits (c, c_next).
    ops: builtin op names of the model.
    arena_used: bytes the TFLM arena needed, measured on the host.
    arena_margin: bytes added on top for ``kTensorArenaSize``.
    frontend: the feature front end the device must run (e.g. ``raw_imu``, ``logmel32``).
    model_bytes: size of the ``.tflite``.
    smoothing_steps: 0 for window classification (no smoother in the app); for keyword
      spotting, the steps whose posteriors the app averages (its history is
      ``smoothing_steps × num_classes`` floats).
    cell_dim: size of an LSTM's cell state c (0: no c).
    readout: ``"last"`` or ``"mean"`` (``spec.READOUTS``): how the app makes a
      window's class from its steps' int8 logits (``kReadoutMean``).
    fused_decoded_bytes: bytes the fused model's FASTGRNN_INT8 op decodes its options
      into (``fused.decoded_ram_bytes``; 0: no fused model). The fused build's arena is
      ``arena_used + fused_decoded_bytes + arena_margin``: the fused model has none of
      the builtin graph's intermediate tensors, so this bounds it from above.
    frontend_constants: ``((name, float), ...)`` the front end needs on the device,
      written as ``constexpr float`` (e.g. ``kGravityAlpha`` of ``imu_gravity``).
  """
  input_dim: int
  hidden_dim: int
  num_classes: int
  steps_per_window: int
  labels: tuple
  feature_mean: tuple
  feature_std: tuple
  io: dict
  ops: tuple
  arena_used: int
  arena_margin: int
  frontend: str
  model_bytes: int
  smoothing_steps: int = 0
  cell_dim: int = 0
  fused_decoded_bytes: int = 0
  frontend_constants: tuple = ()
  readout: str = "last"

  @property
  def states(self):
    """The recurrent states the app carries, in order: ``("h",)`` or ``("h", "c")``."""
    return tuple(n for n in _STATES if n in self.io)


# The recurrent states a step model may have, in the order the app stores them, and the
# names model_settings.h gives their tensors.
_STATES = ("h", "c")
_STATE_CONSTANTS = {"h": ("StateIn", "StateOut", "kHiddenDim"),
                    "c": ("CellIn", "CellOut", "kCellDim")}
# Keyword spotting: posteriors averaged over this many steps (at most a window).
_SMOOTHING_STEPS = 10


def _check_app_can_run(tflite_bytes, io):
  """Refuses a step model whose inputs/outputs are not x + states → states + logits."""
  graph = export.read_model(tflite_bytes).subgraphs[0]
  inputs = {n for n in io if not n.endswith("_next") and n != "logits"}
  outputs = set(io) - inputs
  states = [n for n in _STATES if n in inputs]
  if (inputs != {"x", *states} or outputs != {"logits", *(f"{n}_next" for n in states)}
      or len(graph.inputs) != len(inputs) or len(graph.outputs) != len(outputs)):
    raise ValueError(
        "tflm_app runs step models (x, h[, c]) -> (h_next, logits[, c_next]); this one has "
        f"{len(graph.inputs)} inputs, {len(graph.outputs)} outputs, signature {sorted(io)}")
  for n in states:
    if io[n]["shape"] != io[f"{n}_next"]["shape"]:
      raise ValueError(f"state {n} is {io[n]['shape']} in but {io[n + '_next']['shape']} "
                       "out: the app carries a state by position")


@dataclasses.dataclass(frozen=True)
class Task:
  """What the device does with the model, beyond the ``.tflite``.

  Attributes:
    labels: class names, one per class.
    steps_per_window: T, the time steps of one classification window.
    feature_mean, feature_std: the training split's normalisation statistics (D each).
    frontend: the feature front end the device must run (e.g. ``raw_imu``, ``logmel32``).
    frontend_constants: ``{name: value}`` the front end needs (C identifiers ``k...``,
      finite floats), or None.
    keyword_spotting: audio tasks: configures the app's posterior smoother, sized from
      the model: ``min(10, steps_per_window)`` steps × the classes.
    readout: the trained model's (``stepping.readout``); the step model is the same for
      both.
  """
  labels: tuple
  steps_per_window: int
  feature_mean: tuple
  feature_std: tuple
  frontend: str = "raw"
  frontend_constants: dict | None = None
  keyword_spotting: bool = False
  readout: str = "last"


def settings_from_model(tflite_bytes, task, *, arena_used,
                        arena_margin=spec_lib.ExportSpec().arena_margin):
  """Reads dims, I/O quantization and ops from the ``.tflite``; checks them against
  ``task`` (a ``Task``: labels, normalisation statistics, front end, read-out), and that
  the app can run the model. ``arena_used``: the measured TFLM arena; ``arena_margin``:
  bytes added on top.
  """
  labels, steps_per_window = task.labels, task.steps_per_window
  feature_mean, feature_std = task.feature_mean, task.feature_std
  frontend, frontend_constants = task.frontend, task.frontend_constants
  keyword_spotting, readout = task.keyword_spotting, task.readout
  stepping.check_readout(readout)
  constants = tuple((str(k), float(v)) for k, v in (frontend_constants or {}).items())
  for name, value in constants:
    if not (name.startswith("k") and name.isascii() and name.isidentifier()
            and np.isfinite(value)):
      raise ValueError(f"frontend constant {name!r}={value}: needs an ASCII C name k... "
                       "and a finite value")
  labels = tuple(labels)
  for k, label in enumerate(labels):  # written as C string literals: refused here if not
    c_text.c_string_literal(str(label), f"label {k}")
  c_text.c_string_literal(str(frontend), "frontend")
  io = runtime.step_io(tflite_bytes)
  _check_app_can_run(tflite_bytes, io)
  input_dim, hidden = io["x"]["shape"][-1], io["h"]["shape"][-1]
  classes = io["logits"]["shape"][-1]
  if len(labels) != classes:
    raise ValueError(f"{len(labels)} labels for a model with {classes} classes")
  mean, std = np.asarray(feature_mean, np.float64), np.asarray(feature_std, np.float64)
  if mean.shape != (input_dim,) or std.shape != (input_dim,):
    raise ValueError(f"feature_mean/std must have {input_dim} values, got {mean.shape} "
                     f"and {std.shape}")
  if np.any(std <= 0) or not np.all(np.isfinite(std)):
    raise ValueError(f"feature_std must be positive and finite, got {std.tolist()}")
  if not np.all(np.isfinite(mean)):
    raise ValueError(f"feature_mean must be finite, got {mean.tolist()}")
  ops = tuple(export.model_ops(tflite_bytes))
  unknown = [op for op in ops if op not in _RESOLVER]
  if unknown:
    raise ValueError(f"TFLM has no kernel (MicroMutableOpResolver method) for the ops "
                     f"{unknown} of this model: the app cannot run it")
  return DeviceSettings(
      input_dim=input_dim, hidden_dim=hidden, num_classes=classes,
      steps_per_window=int(steps_per_window), labels=tuple(str(l) for l in labels),
      feature_mean=tuple(float(v) for v in mean), feature_std=tuple(float(v) for v in std),
      io={n: (d["index"], d["scale"], d["zero_point"]) for n, d in io.items()},
      ops=ops, arena_used=int(arena_used), arena_margin=int(arena_margin),
      frontend=str(frontend), model_bytes=len(tflite_bytes),
      smoothing_steps=min(_SMOOTHING_STEPS, int(steps_per_window)) if keyword_spotting
      else 0,
      cell_dim=io["c"]["shape"][-1] if "c" in io else 0, frontend_constants=constants,
      readout=readout)


def c_array(values, per_line=12, fmt="{}"):
  """Comma-separated C initializer lines for a flat sequence."""
  values = [fmt.format(v) for v in np.asarray(values).reshape(-1).tolist()]
  lines = [", ".join(values[i:i + per_line]) for i in range(0, len(values), per_line)]
  return ",\n    ".join(lines)


def _float(value):
  """A C float literal: ``1.0f``, not ``1f`` (which C++ does not accept)."""
  if not np.isfinite(value):
    raise ValueError(f"{value} has no C float literal: a finite value is needed")
  text = f"{float(value):.9g}"
  if not any(ch in text for ch in ".en"):
    text += ".0"
  return text + "f"


def _float_array(values):
  return ", ".join(_float(v) for v in values)


_HEADER = "// Generated by tf_fastgrnn.device_files from {model}. Do not edit.\n"


def _header(what):
  """The generated files' first line; ``what`` (the origin) may be any text."""
  return _HEADER.format(model=c_text.c_comment_text(what, "the model's origin"))


def _model_data(tflite_bytes, what="the exported .tflite"):
  header = (_header("the exported .tflite") +
            "#ifndef TF_FASTGRNN_MODEL_DATA_H_\n#define TF_FASTGRNN_MODEL_DATA_H_\n\n"
            "extern const unsigned char g_model_data[];\n"
            "extern const unsigned int g_model_data_len;\n\n"
            "#endif  // TF_FASTGRNN_MODEL_DATA_H_\n")
  source = (_header(what) +
            '#include "model_data.h"\n\n'
            "alignas(16) const unsigned char g_model_data[] = {\n    " +
            c_array(np.frombuffer(tflite_bytes, np.uint8), fmt="0x{:02x}") + "};\n"
            f"const unsigned int g_model_data_len = {len(tflite_bytes)};\n")
  return header, source


def model_data_source(tflite_bytes, what):
  """The text of a ``model_data.cc`` holding ``tflite_bytes`` (``what``: its origin, for
  the header comment), e.g. ``model_data_fused.cc``."""
  return _model_data(tflite_bytes, what)[1]


def _settings_header(s):
  def io_lines(name, const):
    pos, scale, zp = s.io[name]
    return (f"constexpr int k{const}Index = {pos};\n"
            f"constexpr float k{const}Scale = {_float(scale)};\n"
            f"constexpr int k{const}ZeroPoint = {zp};\n")
  ops = " ".join(f"OP({_RESOLVER[op]})" for op in s.ops)
  labels = ", ".join(c_text.c_string_literal(l, f"label {k}") for k, l in enumerate(s.labels))
  frontend = c_text.c_string_literal(s.frontend, "frontend")
  text = [_header("the exported .tflite"),
          "#ifndef TF_FASTGRNN_MODEL_SETTINGS_H_\n#define TF_FASTGRNN_MODEL_SETTINGS_H_\n\n",
          f"constexpr int kInputDim = {s.input_dim};\n",
          f"constexpr int kHiddenDim = {s.hidden_dim};\n",
          f"constexpr int kNumClasses = {s.num_classes};\n",
          f"constexpr int kStepsPerWindow = {s.steps_per_window};\n",
          f"constexpr int kModelBytes = {s.model_bytes};\n\n",
          f"constexpr const char* kCategoryLabels[kNumClasses] = {{{labels}}};\n\n",
          "// Front end the device must run to produce a frame: "
          f"{c_text.c_comment_text(s.frontend)}.\n",
          f"constexpr const char* kFrontend = {frontend};\n",
          *(f"constexpr float {name} = {_float(value)};\n"
            for name, value in s.frontend_constants),
          "// A raw frame is normalised as (raw - kFeatureMean) / kFeatureStd, then\n"
          "// quantized with kInputScale/kInputZeroPoint.\n",
          f"constexpr float kFeatureMean[kInputDim] = {{{_float_array(s.feature_mean)}}};\n",
          f"constexpr float kFeatureStd[kInputDim] = {{{_float_array(s.feature_std)}}};\n\n",
          "// Tensor positions among the model's inputs/outputs, and their quantization.\n",
          io_lines("x", "Input"), io_lines("h", "StateIn"), io_lines("h_next", "StateOut"),
          io_lines("logits", "Logits")]
  if "c" in s.io:
    text += [io_lines("c", "CellIn"), io_lines("c_next", "CellOut"),
             f"constexpr int kCellDim = {s.cell_dim};\n"]
  text += ["\n", _states_block(s), "\n",
           f"// TFLM arena: {s.arena_used} bytes measured on the 64-bit host (tflite_micro\n"
           "// runtime: RecordingMicroAllocator start, then the smallest arena that\n"
           f"// allocates and invokes) + {s.arena_margin} bytes margin. A 32-bit MCU needs\n"
           "// less: pointers and TFLM's per-tensor structs are narrower (default HAR model:\n"
           "// 5886 B here, 4176 B on a Cortex-M4F). -DTF_FASTGRNN_TENSOR_ARENA_SIZE=<bytes>\n"
           "// sets the smallest that allocates on the target (setup()'s \"arena used\"\n"
           "// leaves out the memory planner's scratch).\n",
           "#ifdef TF_FASTGRNN_TENSOR_ARENA_SIZE\n"
           "constexpr int kTensorArenaSize = TF_FASTGRNN_TENSOR_ARENA_SIZE;\n",
           ("#elif defined(TF_FASTGRNN_FUSED_OP)\n"
            f"// The fused model (model_data_fused.cc): its op decodes {s.fused_decoded_bytes} B "
            "of\n// options into the arena and it has none of the builtin graph's "
            "intermediate\n// tensors: the builtin figure + those bytes bounds it from above.\n"
            "constexpr int kTensorArenaSize = "
            f"{s.arena_used + s.fused_decoded_bytes + s.arena_margin};\n"
            if s.fused_decoded_bytes else ""),
           "#else\n",
           f"constexpr int kTensorArenaSize = {s.arena_used + s.arena_margin};\n#endif\n\n",
           "// The model's builtin ops, for MicroMutableOpResolver<kNumModelOps>:\n",
           "//   #define ADD_OP(name) resolver.Add##name();\n",
           f"#define TF_FASTGRNN_MODEL_OPS(OP) {ops}\n",
           f"constexpr int kNumModelOps = {len(s.ops)};\n\n"]
  text += (["// Window read-out: the mean over the window of the per-step logits, as\n"
             "// trained: the app sums every step's int8 logits minus kLogitsZeroPoint in\n"
             "// int32 and reports the argmax at the window's end (lowest index on a tie).\n",
             "constexpr bool kReadoutMean = true;\n\n"] if s.readout == "mean" else
           ["// Window read-out: the last step's logits (argmax, lowest index on a tie).\n",
            "constexpr bool kReadoutMean = false;\n\n"])
  if s.smoothing_steps:
    text += ["// Keyword spotting (continuous mode): average the class posteriors over\n"
             "// kSmoothingSteps steps (a history of kSmoothingSteps x kNumClasses floats),\n"
             "// report a class above the threshold, then stay quiet.\n",
             "#define TF_FASTGRNN_KEYWORD_SPOTTING 1\n",
             f"constexpr int kSmoothingSteps = {s.smoothing_steps};\n",
             "constexpr float kDetectionThreshold = 0.8f;\n",
             "constexpr int kSuppressionSteps = 25;\n\n"]
  else:
    text += ["// Window classification: the app reports each window's top class; no\n"
             "// keyword-spotting smoother (TF_FASTGRNN_KEYWORD_SPOTTING is not defined).\n\n"]
  text += ["#endif  // TF_FASTGRNN_MODEL_SETTINGS_H_\n"]
  return "".join(text)


def _states_block(s):
  """The states as arrays the app loops over; values refer to the constants above."""
  def field(const, what):
    return ", ".join(f"k{_STATE_CONSTANTS[n][const]}{what}" for n in s.states)
  n = len(s.states)
  return ("// The recurrent states the app carries from each output to its input between\n"
          f"// invokes ({', '.join(s.states)}), and the model's input/output count it checks.\n"
          f"constexpr int kNumStates = {n};\n"
          f"constexpr int kNumModelInputs = {1 + n};  // x + states\n"
          f"constexpr int kNumModelOutputs = {1 + n};  // logits + states\n"
          f"constexpr int kStateSizes[kNumStates] = {{{', '.join(_STATE_CONSTANTS[n][2] for n in s.states)}}};\n"
          f"constexpr int kStateInIndices[kNumStates] = {{{field(0, 'Index')}}};\n"
          f"constexpr float kStateInScales[kNumStates] = {{{field(0, 'Scale')}}};\n"
          f"constexpr int kStateInZeroPoints[kNumStates] = {{{field(0, 'ZeroPoint')}}};\n"
          f"constexpr int kStateOutIndices[kNumStates] = {{{field(1, 'Index')}}};\n"
          f"constexpr float kStateOutScales[kNumStates] = {{{field(1, 'Scale')}}};\n"
          f"constexpr int kStateOutZeroPoints[kNumStates] = {{{field(1, 'ZeroPoint')}}};\n"
          f"constexpr const char* kStateNames[kNumStates] = "
          f"{{{', '.join(chr(34) + n + chr(34) for n in s.states)}}};\n"
          f"constexpr int kStateBytes = {' + '.join(_STATE_CONSTANTS[n][2] for n in s.states)};\n")


def _test_vectors(s, vectors):
  x_q, h_q, logits_q = (np.asarray(vectors[k], np.int8) for k in ("x_q", "h_q", "logits_q"))
  labels = np.asarray(vectors["labels"], np.int32)
  if len(labels) != len(x_q):
    raise ValueError(f"{len(labels)} test vector labels for {len(x_q)} windows")
  n = len(x_q)
  expect = {"x_q": (n, s.steps_per_window, s.input_dim),
            "h_q": (n, s.steps_per_window, s.hidden_dim),
            "logits_q": (n, s.steps_per_window, s.num_classes)}
  for key, arr in (("x_q", x_q), ("h_q", h_q), ("logits_q", logits_q)):
    if arr.shape != expect[key]:
      raise ValueError(f"test vectors {key} must be {expect[key]}, got {arr.shape}")
  classes = stepping.window_classes(logits_q, s.readout, s.io["logits"][2])
  header = (_HEADER.format(model="the TFLM runtime's outputs") +
            "#ifndef TF_FASTGRNN_TEST_VECTORS_H_\n#define TF_FASTGRNN_TEST_VECTORS_H_\n\n"
            "#include <cstdint>\n\n#include \"model_settings.h\"\n\n"
            f"constexpr int kNumTestWindows = {n};\n"
            "// int8 input frames, and the state and logits TFLM produced after each step\n"
            "// (state carried by copy from a zero start, kStateInZeroPoint).\n"
            "extern const int8_t kTestInputs[kNumTestWindows][kStepsPerWindow][kInputDim];\n"
            "extern const int8_t kTestStates[kNumTestWindows][kStepsPerWindow][kHiddenDim];\n"
            "extern const int8_t kTestLogits[kNumTestWindows][kStepsPerWindow][kNumClasses];\n"
            "extern const int kTestLabels[kNumTestWindows];\n"
            f"// Each window's class under the read-out ({s.readout}), as the app computes it.\n"
            "extern const int kTestWindowClasses[kNumTestWindows];\n\n"
            "#endif  // TF_FASTGRNN_TEST_VECTORS_H_\n")
  source = (_HEADER.format(model="the TFLM runtime's outputs") +
            '#include "test_vectors.h"\n\n'
            "const int8_t kTestInputs[kNumTestWindows][kStepsPerWindow][kInputDim] = {\n    "
            + c_array(x_q, per_line=16) + "};\n"
            "const int8_t kTestStates[kNumTestWindows][kStepsPerWindow][kHiddenDim] = {\n    "
            + c_array(h_q, per_line=16) + "};\n"
            "const int8_t kTestLogits[kNumTestWindows][kStepsPerWindow][kNumClasses] = {\n    "
            + c_array(logits_q, per_line=16) + "};\n"
            f"const int kTestLabels[kNumTestWindows] = {{{c_array(labels)}}};\n"
            f"const int kTestWindowClasses[kNumTestWindows] = {{{c_array(classes)}}};\n")
  return header, source


# Everything write_device_files puts in its folder (it replaces only a folder holding
# nothing else).
DEVICE_FILES = frozenset({"model_data.h", "model_data.cc", "model_data_fused.cc",
                          "model_settings.h", "test_vectors.h", "test_vectors.cc",
                          "model.tflite"})


def write_device_files(out_dir, tflite_bytes, settings, test_vectors=None,
                       fused_tflite_bytes=None):
  """Writes the device folder as a whole (temporary sibling, then renamed).

  Args:
    out_dir: the folder to (re)create.
    tflite_bytes: the int8 step model.
    settings: a ``DeviceSettings`` (``settings_from_model``).
    test_vectors: optional dict of ``x_q [N,T,D]``, ``h_q [N,T,H]``, ``logits_q
      [N,T,C]`` (int8, from ``runtime.TFLMStepRunner.run_windows``) and ``labels [N]``.
    fused_tflite_bytes: optional ``fused.convert_fused(tflite_bytes)``, written as
      ``model_data_fused.cc`` (its I/O must be the builtin model's).

  Returns:
    The paths written.
  """
  if len(tflite_bytes) != settings.model_bytes:
    raise ValueError("settings were made from another model "
                     f"({settings.model_bytes} bytes, this one {len(tflite_bytes)})")
  files = {}
  files["model_data.h"], files["model_data.cc"] = _model_data(tflite_bytes)
  files["model_settings.h"] = _settings_header(settings)
  if fused_tflite_bytes is not None:
    if runtime.step_io(fused_tflite_bytes) != runtime.step_io(tflite_bytes):
      raise ValueError("the fused model's inputs/outputs differ from the builtin model's")
    files["model_data_fused.cc"] = model_data_source(fused_tflite_bytes,
                                                     "model_int8_fused.tflite")
  if test_vectors is not None:
    files["test_vectors.h"], files["test_vectors.cc"] = _test_vectors(settings, test_vectors)
  out_dir = pathlib.Path(out_dir)
  if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
    raise ValueError(f"{out_dir} is not a folder: choose a folder for the device files")
  if out_dir.exists():
    # Only plain files of ours: a folder or a link named like one is the user's.
    foreign = sorted(e.name + ("/" if e.is_dir() and not e.is_symlink() else "")
                     for e in out_dir.iterdir() if e.name not in DEVICE_FILES
                     or e.is_symlink() or not e.is_file())
    if foreign:  # replacing the folder would delete them
      raise ValueError(f"{out_dir} holds files this tool did not write ({', '.join(foreign)}): "
                       "choose a new or empty folder for the device files")
  out_dir.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
  try:
    for name, text in files.items():
      (tmp / name).write_text(text)
    (tmp / "model.tflite").write_bytes(tflite_bytes)
    os.chmod(tmp, fileio.permission_bits(directory=True))  # mkdtemp made it 0700
    old = None
    if out_dir.exists():  # only our files (checked above): moved aside, then removed
      old = pathlib.Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
      os.replace(out_dir, old / out_dir.name)
    os.replace(tmp, out_dir)
    if old is not None:
      _remove_own(old, old / out_dir.name)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)  # our temporary folder, renamed unless it failed
  return sorted(out_dir / name for name in list(files) + ["model.tflite"])


def _remove_own(old, moved):
  """Removes the device folder ``write_device_files`` moved to ``moved`` (in the
  temporary folder ``old``): our files by name, then the folders, which must then be
  empty; anything else (put there meanwhile) stays, and a warning names it."""
  for name in DEVICE_FILES:
    path = moved / name
    if path.is_file() and not path.is_symlink():
      path.unlink()
  try:
    moved.rmdir()
    old.rmdir()
  except OSError as e:
    warnings.warn(f"{old} was kept: it holds files this tool did not write ({e})")
