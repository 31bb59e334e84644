r"""Float training throughput of the default model: Keras 3 on each backend, our tf_keras
cells, and EdgeML's PyTorch FastGRNN.

  nice python -m benchmarks.keras3_throughput [--edgeml=PATH] [--batches=16]
      [--data=har6|synthetic] [--json=FILE]

The default model of ``train_and_export`` (har6 preset): FastGRNN, H 48, W full rank,
U rank 16, windows of 128 steps × 9 inputs (the ``imu_gravity`` front end), 6 classes,
a Dense read-out of the last state. Every row trains the same shape with Adam (rate 0.01,
the CLI's), the logits' cross-entropy, batch 64, on the same ``--batches`` batches in
the same order: one warm-up epoch (tracing, compilation), then ``--epochs`` timed epochs;
windows/s = windows trained / seconds of the timed epochs.

Rows, each in its own process (Keras 3 fixes its backend at import):

- ``tf_keras``: ``tf_fastgrnn.FastGRNN`` in tf_keras, ``Model.fit`` (what the pipeline
  trains; the ratios are to this row);
- ``keras3_<backend>``: ``tf_fastgrnn.keras3.FastGRNN`` with ``KERAS_BACKEND`` =
  tensorflow, jax, torch, ``Model.fit`` with Keras 3's default ``jit_compile="auto"``;
- ``edgeml_torch``: ``edgeml_pytorch.graph.rnn.FastGRNN`` (its ``FastGRNNCell`` unrolled
  by its ``BaseRNN``, ``batch_first=True``) + ``torch.nn.Linear`` in a plain PyTorch loop,
  imported from the user's EdgeML checkout (``--edgeml``, its ``pytorch/`` folder put on
  ``sys.path``; nothing copied). Without ``--edgeml``, or if the import fails, the row
  says why.

``--data=har6``: the first ``batches × 64`` training windows of the real HAR data
(``data.load_dataset("har6", frontend="imu_gravity")``, normalised); ``synthetic``:
N(0, 1) windows and uniform labels of the same shape (seed 0). A row that fails prints
its reason; the figures are wall-clock on this machine with whatever else runs on it
(the load average before each row goes into the JSON).
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]

# train_and_export's defaults with the har6 preset.
UNITS, U_RANK, STEPS, INPUTS, CLASSES = 48, 16, 128, 9, 6
BATCH_SIZE, LEARNING_RATE = 64, 0.01
BASE = "tf_keras"
ROWS = (BASE, "keras3_tensorflow", "keras3_jax", "keras3_torch", "edgeml_torch")
LABELS = {"tf_keras": "tf_fastgrnn (tf_keras), TensorFlow",
          "keras3_tensorflow": "tf_fastgrnn.keras3, Keras 3 on TensorFlow",
          "keras3_jax": "tf_fastgrnn.keras3, Keras 3 on JAX",
          "keras3_torch": "tf_fastgrnn.keras3, Keras 3 on PyTorch",
          "edgeml_torch": "EdgeML edgeml_pytorch FastGRNN, PyTorch"}


def _keras_rate(keras, layer, x, y, epochs):
  """Windows/s of ``Input → layer → Dense`` trained by ``keras`` (tf_keras or Keras 3)."""
  model = keras.Sequential([keras.Input((STEPS, INPUTS)), layer,
                            keras.layers.Dense(CLASSES)])
  model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  model.fit(x, y, batch_size=BATCH_SIZE, epochs=1, shuffle=False, verbose=0)  # warm-up
  start = time.perf_counter()
  model.fit(x, y, batch_size=BATCH_SIZE, epochs=epochs, shuffle=False, verbose=0)
  seconds = time.perf_counter() - start
  return {"windows_per_s": len(x) * epochs / seconds, "seconds": seconds,
          "parameters": int(model.count_params()),
          "jit_compile": str(getattr(model, "jit_compile", None))}


def _edgeml_rate(edgeml, x, y, epochs):
  pytorch_dir = pathlib.Path(edgeml) / "pytorch"
  if not (pytorch_dir / "edgeml_pytorch" / "graph" / "rnn.py").is_file():
    raise RuntimeError(f"--edgeml={edgeml}: no pytorch/edgeml_pytorch/graph/rnn.py there")
  sys.path.insert(0, str(pytorch_dir))
  import torch  # pylint: disable=import-outside-toplevel
  from edgeml_pytorch.graph import rnn  # pylint: disable=import-outside-toplevel,import-error
  torch.manual_seed(0)
  cell = rnn.FastGRNN(INPUTS, UNITS, wRank=None, uRank=U_RANK, batch_first=True)
  head = torch.nn.Linear(UNITS, CLASSES)
  params = list(cell.parameters()) + list(head.parameters())
  optimizer = torch.optim.Adam(params, lr=LEARNING_RATE)
  loss_fn = torch.nn.CrossEntropyLoss()
  xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

  def epoch():
    for start in range(0, len(xt), BATCH_SIZE):
      optimizer.zero_grad()
      logits = head(cell(xt[start:start + BATCH_SIZE])[:, -1])
      loss_fn(logits, yt[start:start + BATCH_SIZE]).backward()
      optimizer.step()

  epoch()  # warm-up
  start = time.perf_counter()
  for _ in range(epochs):
    epoch()
  seconds = time.perf_counter() - start
  return {"windows_per_s": len(x) * epochs / seconds, "seconds": seconds,
          "parameters": int(sum(p.numel() for p in params))}


def _row(name, data_path, epochs, edgeml):
  """One row, in this (child) process."""
  data = np.load(data_path)
  x, y = data["x"], data["y"]
  if name == BASE:
    import tf_fastgrnn  # pylint: disable=import-outside-toplevel
    return _keras_rate(tf_fastgrnn.keras, tf_fastgrnn.FastGRNN(UNITS, u_rank=U_RANK), x, y,
                       epochs)
  if name.startswith("keras3_"):
    import keras  # pylint: disable=import-outside-toplevel
    from tf_fastgrnn import keras3  # pylint: disable=import-outside-toplevel
    if keras.backend.backend() != name[len("keras3_"):]:
      raise RuntimeError(f"KERAS_BACKEND gave {keras.backend.backend()}")
    return _keras_rate(keras, keras3.FastGRNN(UNITS, u_rank=U_RANK), x, y, epochs)
  if edgeml is None:
    raise RuntimeError("not run: give --edgeml=PATH (an EdgeML checkout)")
  return _edgeml_rate(edgeml, x, y, epochs)


def _windows(source, count):
  if source == "synthetic":
    rng = np.random.default_rng(0)
    return (rng.normal(0, 1, (count, STEPS, INPUTS)).astype(np.float32),
            rng.integers(0, CLASSES, count).astype(np.int32),
            "synthetic N(0, 1) windows, uniform labels, seed 0")
  from data import datasets  # pylint: disable=import-outside-toplevel
  ds = datasets.load_dataset("har6", frontend="imu_gravity", seed=0)
  if ds.x_train.shape[1:] != (STEPS, INPUTS) or len(ds.x_train) < count:
    raise SystemExit(f"har6 training windows {ds.x_train.shape} do not give {count} "
                     f"windows of {(STEPS, INPUTS)}")
  return (ds.x_train[:count].astype(np.float32), ds.y_train[:count].astype(np.int32),
          f"har6 (imu_gravity) training windows 0..{count - 1}, normalised")


def _run_child(name, data_path, args):
  env = dict(os.environ)
  if name.startswith("keras3_"):
    env["KERAS_BACKEND"] = name[len("keras3_"):]
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
  command = [sys.executable, "-m", "benchmarks.keras3_throughput", f"--_row={name}",
             f"--_data={data_path}", f"--epochs={args.epochs}"]
  if args.edgeml:
    command.append(f"--edgeml={args.edgeml}")
  load = os.getloadavg()[0]
  done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True,
                        check=False, timeout=args.timeout)
  lines = done.stdout.strip().splitlines()
  result = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {
      "error": f"exit {done.returncode}: "
               f"{(done.stderr.strip().splitlines() or ['no output'])[-1]}"}
  result["load_average_before"] = load
  return result


def _table(rows):
  base = rows.get(BASE, {}).get("windows_per_s")
  lines = ["| training | windows/s | ratio to tf_keras | load average before |",
           "|---|---:|---:|---:|"]
  for name in ROWS:
    row = rows[name]
    if "windows_per_s" not in row:
      lines.append(f"| {LABELS[name]} | not measured: {row['error']} | | |")
      continue
    ratio = f"{row['windows_per_s'] / base:.2f}" if base else "n/a"
    lines.append(f"| {LABELS[name]} | {row['windows_per_s']:.0f} | {ratio} | "
                 f"{row['load_average_before']:.1f} |")
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--edgeml", help="an EdgeML checkout (its pytorch/ folder is put on "
                      "sys.path of the EdgeML row's process; nothing is copied)")
  parser.add_argument("--data", choices=("har6", "synthetic"), default="har6")
  parser.add_argument("--batches", type=int, default=16, help="batches per epoch")
  parser.add_argument("--epochs", type=int, default=1, help="timed epochs after the "
                      "warm-up")
  parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of "
                      f"{','.join(ROWS)}")
  parser.add_argument("--timeout", type=float, default=1800, help="seconds per row")
  parser.add_argument("--json", help="also write the figures here (JSON)")
  parser.add_argument("--_row", help=argparse.SUPPRESS)
  parser.add_argument("--_data", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args._row:  # pylint: disable=protected-access
    try:
      result = _row(args._row, args._data, args.epochs, args.edgeml)  # pylint: disable=protected-access
    except (ImportError, RuntimeError) as exc:
      result = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result))
    return
  rows = [r for r in args.rows.split(",") if r]
  unknown = sorted(set(rows) - set(ROWS))
  if unknown or args.batches < 1 or args.epochs < 1:
    parser.error(f"--rows must be among {ROWS} (got {unknown}), --batches and --epochs "
                 f">= 1 (got {args.batches}, {args.epochs})")
  if args.json and pathlib.Path(args.json).exists():
    parser.error(f"--json={args.json} exists; this benchmark writes a new file only")
  if args.edgeml and not pathlib.Path(args.edgeml).is_dir():
    parser.error(f"--edgeml={args.edgeml} is not a folder")
  x, y, source = _windows(args.data, args.batches * BATCH_SIZE)
  results = {name: {"error": "not in --rows"} for name in ROWS}
  with tempfile.TemporaryDirectory(prefix="keras3_throughput_") as scratch:
    data_path = pathlib.Path(scratch) / "windows.npz"
    np.savez(data_path, x=x, y=y)
    for name in rows:
      results[name] = _run_child(name, data_path, args)
      print(f"{name}: {results[name]}", file=sys.stderr, flush=True)
  figures = {"model": {"cell": "fastgrnn", "units": UNITS, "w_rank": None,
                       "u_rank": U_RANK, "steps": STEPS, "inputs": INPUTS,
                       "classes": CLASSES},
             "data": source, "batch_size": BATCH_SIZE, "batches": args.batches,
             "timed_epochs": args.epochs, "optimizer": f"Adam({LEARNING_RATE})",
             "cpu_count": os.cpu_count(), "rows": results}
  print(_table(results))
  if args.json:
    from tf_fastgrnn import fileio  # pylint: disable=import-outside-toplevel
    fileio.write_json(args.json, figures)


if __name__ == "__main__":
  main()
