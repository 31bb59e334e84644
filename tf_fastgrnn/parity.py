"""The numerics diff: the same windows through Keras float, Keras QAT, LiteRT and TFLM.

TFLM is the reference (it is what the device runs). For every pair the report gives the
top-1 agreement; against TFLM also the logits error in LSB of the logits' int8 scale and
the hidden-state error per time step in LSB of the state's scale (does it drift over the
window?). LiteRT and TFLM share most int8 kernels but not LOGISTIC and TANH: each such op
of the model is rebuilt alone with the model's own input quantization and run on all 256
int8 inputs in both runtimes, so the report names the op and the LSB difference.
"""

import numpy as np
import tensorflow as tf

from tf_fastgrnn import export
from tf_fastgrnn import fileio
from tf_fastgrnn import quantization
from tf_fastgrnn import runtime
from tf_fastgrnn import stepping
from tf_fastgrnn._keras import keras

__all__ = ["diff_numerics", "keras_traces", "op_differences", "write_report"]


def keras_traces(model, x, batch_size=512):
  """Keras hidden state and logits after every step: ``(h [N,T,H], logits [N,T,C])``."""
  trace = stepping.run_steps(model, x, batch_size=batch_size)
  return trace["h_next"], trace["logits"]


def _single_op_model(op, scale, zero_point):
  """An int8 model of one LOGISTIC/TANH whose input has the given quantization."""
  fn = {"LOGISTIC": tf.math.sigmoid, "TANH": tf.math.tanh}[op]
  lo, hi = (-128 - zero_point) * scale, (127 - zero_point) * scale
  model = keras.Sequential([keras.Input((256,), batch_size=1),
                            keras.layers.Lambda(fn)])
  ramp = np.linspace(lo, hi, 256, dtype=np.float32)[None]
  return export.convert_int8(tf.lite.TFLiteConverter.from_keras_model(model),
                             lambda: iter([[ramp]]))


def op_differences(tflite_bytes):
  """Per LOGISTIC/TANH op of the model: LiteRT vs TFLM output on all 256 int8 inputs."""
  from ai_edge_litert import interpreter as litert  # pylint: disable=import-outside-toplevel
  from tflite_micro.python.tflite_micro import runtime as tflm  # pylint: disable=import-outside-toplevel
  fb_model = export.read_model(tflite_bytes)
  graph = fb_model.subgraphs[0]
  results, seen = [], set()
  for op in graph.operators:
    name = export.op_name(fb_model, op)
    if name not in ("LOGISTIC", "TANH"):
      continue
    q = graph.tensors[op.inputs[0]].quantization
    key = (name, float(q.scale[0]), int(q.zeroPoint[0]))
    if key in seen:
      continue
    seen.add(key)
    single = _single_op_model(*key)
    inputs = np.arange(-128, 128, dtype=np.int8)[None]
    lite = litert.Interpreter(model_content=single,
                              experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF)
    lite.allocate_tensors()
    lite.set_tensor(lite.get_input_details()[0]["index"], inputs)
    lite.invoke()
    out_lite = lite.get_tensor(lite.get_output_details()[0]["index"]).astype(np.int32)
    micro = tflm.Interpreter.from_bytes(single)
    micro.set_input(inputs, 0)
    micro.invoke()
    out_micro = micro.get_output(0).astype(np.int32)
    diff = np.abs(out_lite - out_micro)
    results.append({"op": name, "input_scale": key[1], "input_zero_point": key[2],
                    "max_lsb": int(diff.max()), "mean_lsb": float(diff.mean()),
                    "inputs_differing": int((diff > 0).sum())})
  return results


def _agreement(a, b):
  return float(np.mean(a == b))


def diff_numerics(float_model, tflite_bytes, x, y, *, source_model=None, plan=None,
                  tflm_traces=None, readout=None):
  """Runs ``x [N,T,D]`` through every available form; returns the comparison.

  A window's class follows the model's read-out (``stepping.window_classes``): the int8
  runtimes' from their int8 logits as the device computes it (the last step's, or the
  int32 sum over the steps), Keras' from its float per-step logits.

  Args:
    float_model: the trained float model (None: no Keras float column).
    tflite_bytes: the int8 step model.
    x, y: windows and labels.
    source_model, plan: what the export converted: the float model it took (after QAT,
      the QAT model's float twin) and its quantization plan. With both, the Keras QAT
      column is computed from them (``quantization.from_plan``), never from a QAT model.
    tflm_traces: a ``TFLMStepRunner.run_windows(x)`` result to reuse.
    readout: ``"last"`` or ``"mean"``; None: the float (or source) model's
      (``stepping.readout``), ``"last"`` without either.
  """
  x, y = np.asarray(x, np.float32), np.asarray(y)
  if readout is None:
    known = float_model if float_model is not None else source_model
    readout = stepping.readout(known) if known is not None else "last"
  qat_model = (quantization.from_plan(source_model, plan)
               if source_model is not None and plan is not None else None)
  io = runtime.step_io(tflite_bytes)
  s_h, s_l = io["h_next"]["scale"], io["logits"]["scale"]
  tflm = tflm_traces or runtime.TFLMStepRunner(tflite_bytes).run_windows(x)
  lite = runtime.LiteRTStepRunner(tflite_bytes).run_windows(x)
  traces = {"tflm": (tflm["h"], tflm["logits"]), "litert": (lite["h"], lite["logits"])}
  zero_point = io["logits"]["zero_point"]
  preds = {k: stepping.window_classes(t["logits_q"], readout, zero_point)
           for k, t in (("tflm", tflm), ("litert", lite))}
  for name, model in (("keras_float", float_model), ("keras_qat", qat_model)):
    if model is not None:
      traces[name] = keras_traces(model, x)
      preds[name] = stepping.window_classes(traces[name][1], readout)
  names = [k for k in ("keras_float", "keras_qat", "litert", "tflm") if k in traces]
  agreement = {f"{a} vs {b}": _agreement(preds[a], preds[b])
               for i, a in enumerate(names) for b in names[i + 1:]}
  vs_tflm = {}
  for name in names:
    if name == "tflm":
      continue
    h, logits = traces[name]
    dh = np.abs(h - tflm["h"]) / s_h
    dl = np.abs(stepping.window_logits(logits, readout)
                - stepping.window_logits(tflm["logits"], readout)) / s_l
    vs_tflm[name] = {
        "top1_agreement": agreement.get(f"{name} vs tflm"),
        "logits_lsb_mean": float(dl.mean()), "logits_lsb_max": float(dl.max()),
        "state_lsb_mean_per_step": dh.mean(axis=(0, 2)).tolist(),
        "state_lsb_max_per_step": dh.max(axis=(0, 2)).tolist(),
    }
  ops = op_differences(tflite_bytes)
  result = {
      "windows": int(len(x)), "steps": int(x.shape[1]), "readout": readout,
      "accuracy": {k: float(np.mean(preds[k] == y)) for k in names},
      "agreement": agreement, "vs_tflm": vs_tflm, "op_differences": ops,
      "state_scale": s_h, "logits_scale": s_l,
  }
  result["summary"] = {
      "qat_vs_tflm_top1": agreement.get("keras_qat vs tflm"),
      "float_vs_tflm_top1": agreement.get("keras_float vs tflm"),
      "litert_vs_tflm_top1": agreement["litert vs tflm"],
      "litert_vs_tflm_logits_lsb_max": vs_tflm["litert"]["logits_lsb_max"],
      "qat_vs_tflm_logits_lsb_mean": (vs_tflm["keras_qat"]["logits_lsb_mean"]
                                      if "keras_qat" in vs_tflm else None),
      "ops_differing": [f"{o['op']} max {o['max_lsb']} LSB" for o in ops if o["max_lsb"]],
  }
  return result


def markdown(result):
  lines = [f"{result['windows']} test windows of {result['steps']} steps; TFLM is the "
           "reference." + (" Mean read-out: a window's class is the argmax of its per-step "
                           "logits' sum (int8: int32 sum), its logits error that of the "
                           "mean logits." if result.get("readout") == "mean" else ""), "", "| model | accuracy |", "|---|---|"]
  lines += [f"| {k} | {100 * v:.2f}% |" for k, v in result["accuracy"].items()]
  lines += ["", "| pair | top-1 agreement |", "|---|---|"]
  lines += [f"| {k} | {100 * v:.2f}% |" for k, v in result["agreement"].items()]
  lines += ["", "| vs TFLM | logits error mean / max (LSB) | state error at last step "
            "mean / max (LSB) |", "|---|---|---|"]
  for name, d in result["vs_tflm"].items():
    lines.append(f"| {name} | {d['logits_lsb_mean']:.2f} / {d['logits_lsb_max']:.1f} | "
                 f"{d['state_lsb_mean_per_step'][-1]:.2f} / "
                 f"{d['state_lsb_max_per_step'][-1]:.1f} |")
  lines += ["", "LiteRT (reference kernels) against TFLM, per op, on all 256 int8 inputs "
            "with the model's own input quantization:", "",
            "| op | input scale | zero point | max LSB | mean LSB | inputs differing |",
            "|---|---|---|---|---|---|"]
  lines += [f"| {o['op']} | {o['input_scale']:.6g} | {o['input_zero_point']} | "
            f"{o['max_lsb']} | {o['mean_lsb']:.3f} | {o['inputs_differing']}/256 |"
            for o in result["op_differences"]]
  return "\n".join(lines) + "\n"


def write_report(result, out_dir):
  """Writes ``numerics.json``, ``numerics.md`` and ``numerics.png`` into ``out_dir``."""
  plt = fileio.pyplot()
  if plt is None:  # the plot extra is not installed: the numbers, not the picture
    fileio.write_text(f"{out_dir}/numerics.md",
                      markdown(result) + "\n" + fileio.PLOT_HINT + ".\n")
    fileio.write_json(f"{out_dir}/numerics.json", result)
    return
  fig, (ax_h, ax_a) = plt.subplots(1, 2, figsize=(11, 3.8))
  for name, d in result["vs_tflm"].items():
    steps = np.arange(1, len(d["state_lsb_mean_per_step"]) + 1)
    ax_h.plot(steps, d["state_lsb_mean_per_step"], label=f"{name} mean")
    ax_h.plot(steps, d["state_lsb_max_per_step"], ls=":", label=f"{name} max")
  ax_h.set_xlabel("time step")
  ax_h.set_ylabel("|h - h_TFLM| (state LSB)")
  ax_h.set_yscale("symlog")
  ax_h.legend(fontsize=7)
  pairs = list(result["agreement"])
  ax_a.barh(pairs, [100 * result["agreement"][p] for p in pairs])
  ax_a.set_xlabel("top-1 agreement %")
  ax_a.set_xlim(min(90, min(100 * v for v in result["agreement"].values()) - 1), 100)
  fileio.save_figure(fig, f"{out_dir}/numerics.png")
  fileio.write_text(f"{out_dir}/numerics.md", markdown(result))
  fileio.write_json(f"{out_dir}/numerics.json", result)
