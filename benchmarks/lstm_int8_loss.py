r"""Where an LSTM run's int8 step model loses accuracy: the cell state c or its product.

For each finished LSTM run folder (``model_float.keras``, ``model_int8.tflite``,
``flags.json``; read only), on the validation split of the run's dataset and seed:

- ``float``: the float model (NumPy, the Keras equations);
- ``c_absmax_p50_p99``: the largest |c| a window reaches (median, 99th percentile);
- ``c_int8_only``: the float model with only c rounded to the int8 step model's grid
  (scale 1/16, [-8, 8)) after every step: what an int8 c costs by itself;
- ``tflm``: the run's own ``model_int8.tflite`` in TFLM;
- ``forget_product_scale``: that model's grid step for σ(f)·c (c's is 1/16).

Usage:
  python -m benchmarks.lstm_int8_loss --tf_threads=1 runs/sweep/har6/lstm_h12/seed0 ...
"""

import json
import pathlib
import sys

import numpy as np
from absl import app
from absl import flags

# Not "threads": benchmarks.sweep defines that flag (one flag registry per process).
_THREADS = flags.DEFINE_integer("tf_threads", 0, "TensorFlow threads (0: default).")


def _sigmoid(v):
  return 1 / (1 + np.exp(-v))


def lstm_weights(model):
  """``(W [D, 4H], U [H, 4H], b [4H], dense kernel, dense bias)``, gates i, f, g, o; the
  low-rank LSTM's factors multiplied out."""
  from tf_fastgrnn import stepping  # pylint: disable=import-outside-toplevel
  rnn, dense = stepping.parts(model)
  cell = rnn.cell
  if hasattr(cell, "W1"):  # baselines.LowRankLSTMCell
    w, u, b = (cell.W1.numpy() @ cell.W2.numpy(), cell.U1.numpy() @ cell.U2.numpy(),
               cell.bias.numpy())
  else:
    w, u, b = (v.numpy() for v in cell.weights)
  return w, u, b, dense.kernel.numpy(), dense.bias.numpy()


def numpy_lstm(weights, x, c_step=None, readout="last"):
  """Predicted classes and each window's largest |c|; with ``c_step``, c is rounded to
  that grid's int8 range after every step (nothing else is). ``readout``: the model's
  (``"mean"``: the class of the per-step logits' sum)."""
  w, u, b, kernel, bias = weights
  h = np.zeros((len(x), u.shape[0]))
  c = np.zeros_like(h)
  c_max = np.zeros(len(x))
  logits_sum = np.zeros((len(x), kernel.shape[1]))
  for t in range(x.shape[1]):
    i, f, g, o = np.split(x[:, t] @ w + h @ u + b, 4, axis=-1)
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    c_max = np.maximum(c_max, np.abs(c).max(-1))
    if c_step:
      c = np.clip(np.round(c / c_step), -128, 127) * c_step
    h = _sigmoid(o) * np.tanh(c)
    logits_sum += h @ kernel + bias
  return (logits_sum if readout == "mean" else h @ kernel + bias).argmax(-1), c_max


def forget_product_scale(tflite_bytes):
  """The scale of the MUL reading ``c`` (σ(f)·c) in an int8 LSTM step model."""
  from tf_fastgrnn import export  # pylint: disable=import-outside-toplevel
  fb_model = export.read_model(tflite_bytes)
  graph = fb_model.subgraphs[0]
  inputs, _ = export.signature_tensors(fb_model)
  for op in graph.operators:
    if export.op_name(fb_model, op) == "MUL" and inputs["c"] in op.inputs:
      return float(graph.tensors[op.outputs[0]].quantization.scale[0])
  raise ValueError("no MUL reads c: not an LSTM step model")


def check(run_dir, ds):
  """The figures of one run folder (see the module docstring)."""
  import tf_fastgrnn  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import export  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import runtime  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import stepping  # pylint: disable=import-outside-toplevel
  model = tf_fastgrnn.keras.models.load_model(run_dir / "model_float.keras")
  weights = lstm_weights(model)
  readout = stepping.readout(model)
  acc = lambda pred: float(np.mean(pred == ds.y_val))
  pred, c_max = numpy_lstm(weights, ds.x_val, readout=readout)
  tflite_bytes = export.read_tflite_file(run_dir / "model_int8.tflite")
  tflm = runtime.TFLMStepRunner(tflite_bytes)
  tflm_pred = tflm.window_classes(tflm.run_windows(ds.x_val)["logits_q"], readout)
  return {"run": str(run_dir), "float": acc(pred),
          "c_absmax_p50_p99": [float(np.percentile(c_max, q)) for q in (50, 99)],
          "c_int8_only": acc(numpy_lstm(weights, ds.x_val, 1 / 16, readout)[0]),
          "tflm": acc(tflm_pred),
          "forget_product_scale": forget_product_scale(tflite_bytes)}


def main(argv):
  run_dirs = [pathlib.Path(a) for a in argv[1:]]
  missing = [str(d) for d in run_dirs
             if not all((d / f).is_file() for f in ("model_float.keras",
                                                    "model_int8.tflite", "flags.json"))]
  if not run_dirs or missing:
    print(f"lstm_int8_loss: give finished LSTM run folders; missing files in {missing}",
          file=sys.stderr)
    return 2
  if _THREADS.value:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    tf.config.threading.set_intra_op_parallelism_threads(_THREADS.value)
    tf.config.threading.set_inter_op_parallelism_threads(_THREADS.value)
  import data  # pylint: disable=import-outside-toplevel
  from pipelines import config  # pylint: disable=import-outside-toplevel
  cache = {}
  for run_dir in run_dirs:
    name, data_dir, options = config.run_dataset_args(run_dir)
    key = json.dumps([name, data_dir, options], sort_keys=True)
    if key not in cache:
      cache.clear()
      cache[key] = data.load_dataset(name, data_dir, **options)
    print(json.dumps(check(run_dir, cache[key])), flush=True)
  return 0


if __name__ == "__main__":
  app.run(main)
