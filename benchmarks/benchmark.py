r"""FastGRNN against LSTM, GRU and a low-rank LSTM: same data, same pipeline, same run.

Every model goes through ``pipelines.stages`` (training, int8 export, TFLM run); FastGRNN
and FastRNN get QAT (the LSTM/GRU baselines are post-training quantized: our QAT covers
the tf_fastgrnn cells only). Results land in ``--output_dir``: ``benchmark.md``,
``benchmark.json``, ``pareto.png`` (accuracy against flash bytes), and one run folder
per (dataset, model, seed); a run with a ``report.json`` is reused, so an interrupted
benchmark continues where it stopped.

Usage:
  python -m benchmarks.benchmark --datasets=har2,har6,fsdd --seeds=0,1,2
  python -m benchmarks.benchmark --datasets=har6 --models=fastgrnn_lsq,lstm --epochs=6
"""

import dataclasses
import json
import pathlib
import sys
import time

import numpy as np
from absl import app
from absl import flags

from pipelines import config as config_lib

Spec = config_lib.spec_lib.Spec

_DATASETS = flags.DEFINE_list("datasets", ["har2", "har6", "fsdd"], "Datasets to run.")
_MODELS = flags.DEFINE_list(
    "models", ["fastgrnn_lsq", "fastgrnn", "fastrnn", "lstm", "gru", "lowrank_lstm"],
    "Models to run (see MODELS).")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds; figures are mean ± std.")
_EPOCHS = flags.DEFINE_integer("epochs", 24, "Float training epochs per model.")
_QAT_EPOCHS = flags.DEFINE_integer("qat_epochs", 4, "QAT epochs (FastGRNN/FastRNN).")
_UNITS = flags.DEFINE_integer("units", 32, "Hidden units of every model (equal H).")
_FSDD_DIR = flags.DEFINE_string("fsdd_dir", None, "FSDD recordings (default: ../shared).")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Data of a dataset that needs a path (npz file, Speech Commands "
    "folder); HAR comes from its package, FSDD from --fsdd_dir.")
_MAX_TEST_WINDOWS = flags.DEFINE_integer(
    "max_test_windows", 600, "int8 TFLM evaluation on at most this many test windows.")
_TIMING_STEPS = flags.DEFINE_integer("timing_steps", 2000, "TFLM invokes timed per model.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/benchmark", "Output folder.")
_AGGREGATE_ONLY = flags.DEFINE_boolean(
    "aggregate_only", False, "Tabulate the runs already finished in --output_dir; train "
    "nothing.")

# Every model has the same hidden size H (--units), so the table compares what each cell
# makes of the same state size: accuracy, bytes, MACs. FastGRNN-LSQ is the paper's
# compressed form: low-rank W and U, sparse, int8.
MODELS = {
    "fastgrnn_lsq": dict(cell="fastgrnn", w_rank=4, u_rank=8, sparsity_w=0.5,
                         sparsity_u=0.5, qat=True),
    "fastgrnn": dict(cell="fastgrnn", w_rank=None, u_rank=None, sparsity_w=0.0,
                     sparsity_u=0.0, qat=True),
    "fastrnn": dict(cell="fastrnn", w_rank=None, u_rank=None, sparsity_w=0.0,
                    sparsity_u=0.0, qat=True),
    "lstm": dict(cell="lstm", w_rank=None, u_rank=None, sparsity_w=0.0, sparsity_u=0.0,
                 qat=False),
    "gru": dict(cell="gru", w_rank=None, u_rank=None, sparsity_w=0.0, sparsity_u=0.0,
                qat=False),
    "lowrank_lstm": dict(cell="lowrank_lstm", w_rank=4, u_rank=8, sparsity_w=0.0,
                         sparsity_u=0.0, qat=False),
}

# Published anchors, quoted with their source.
PUBLISHED = [
    ("FastGRNN paper, Table 2 (Kusupati et al., NeurIPS 2018)", "har2", "FastGRNN-LSQ",
     "95.59% accuracy, about 3 KB model"),
    ("arXiv 2606.17249, 'From Compression to Deployment: Real-Time and Energy-Efficient "
     "FastGRNN on Ultra-Constrained Microcontrollers' (2026)", "HAPT (har6-like)",
     "FastGRNN int8", "macro-F1 0.918 (seed 0), 0.853 ± 0.107 over five seeds, "
     "566 bytes of weights"),
]


def base_spec(epochs, qat_epochs, units, max_test_windows):
  """What every model of the benchmark runs with: ``units`` (each model of ``MODELS``
  sets its cell and ranks), the ``plain`` recipe (constant rate, last epoch), the
  tiny-data rules off, no numerics, window model or LSTM product grid, 2 test vectors, no
  arena margin."""
  return Spec.preset("plain").replace(
      model={"units": units, "w_rank": None, "u_rank": None},  # each model sets its own
      recipe={"epochs": epochs, "qat_epochs": qat_epochs, "min_phase_steps": 0,
              "max_batch_fraction": 1.0, "min_val_windows": 0},
      data={"feature_cache": "none"},
      export={"max_test_windows": max_test_windows, "num_test_vectors": 2,
              "arena_margin": 0, "numerics": False, "window_model": False,
              "lstm_product_on_cell_grid": False})


def _config(base, dataset, model, seed, data_dir, out_dir):
  """The ``Config`` of one (dataset, model, seed) run of ``base``."""
  from pipelines import stages  # pylint: disable=import-outside-toplevel
  model = MODELS[model]
  spec = base.replace(
      model={"cell": model["cell"], "w_rank": model["w_rank"], "u_rank": model["u_rank"]},
      sparsity={"w": model["sparsity_w"], "u": model["sparsity_u"]},
      recipe={"qat_epochs": base.recipe.qat_epochs if model["qat"] else 0},
      data={"dataset": dataset, "data_dir": data_dir, "seed": seed},
      export={"qat": model["qat"]})
  return stages.Config.from_spec(spec, out_dir)


def time_per_step(tflite_bytes, steps):
  """Mean seconds per TFLM invoke (host, Python runtime: relative figures only)."""
  from tf_fastgrnn import runtime  # pylint: disable=import-outside-toplevel
  runner = runtime.TFLMStepRunner(tflite_bytes)
  x = np.zeros(runner.io["x"]["shape"], np.int8)
  state = runner.initial_state()
  runner.step(x, **state)
  start = time.perf_counter()
  for _ in range(steps):
    out = runner.step(x, **state)
    state = {"h_q": out[0], **({"c_q": out[2]} if len(out) > 2 else {})}
  return (time.perf_counter() - start) / steps


def _row(report, seconds_per_step):
  size = report["size"]
  hist = report.get("epoch_seconds") or []
  return {
      "float_accuracy": report["accuracy"]["float_sparse_keras"],
      "int8_tflm_accuracy": report["accuracy"]["int8_tflm"],
      "int8_tflm_macro_f1": report["macro_f1_tflm"],
      "weights_dense_int8_bytes": size["weights_dense_int8_bytes"],
      "weights_nonzero": size["weights_nonzero"],
      "tflite_bytes": size["tflite_step_bytes"],
      "arena_bytes": size["tflm_arena_bytes_measured"],
      "macs_per_step": size["macs_per_step_dense"],
      "tflm_us_per_step": 1e6 * seconds_per_step,
      "train_seconds_per_epoch": float(np.mean(hist)) if hist else None,
  }


def aggregate(rows):
  """``{(dataset, model): {metric: (mean, std, n)}}`` over seeds."""
  groups = {}
  for (dataset, model, _), row in rows.items():
    groups.setdefault((dataset, model), []).append(row)
  out = {}
  for key, group in groups.items():
    out[key] = {}
    for metric in group[0]:
      values = [r[metric] for r in group if r[metric] is not None]
      if values:
        out[key][metric] = (float(np.mean(values)), float(np.std(values)), len(values))
  return out


def _fmt(stat, scale=1.0, digits=2, suffix=""):
  mean, std, n = stat
  if n > 1:
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}{suffix}"
  return f"{scale * mean:.{digits}f}{suffix}"


def markdown(agg, command, settings):
  lines = ["# Benchmark: FastGRNN against LSTM, GRU and a low-rank LSTM", "",
           f"Command: `{command}`  ", f"Settings: {settings}", "",
           "All models have the same hidden size; every figure is mean ± std over seeds, "
           "int8 figures from the TFLM runtime (tflite_micro) on the host. Time per step is "
           "the Python TFLM runtime on this machine: compare rows, not absolute values.",
           ""]
  for dataset in dict.fromkeys(d for d, _ in agg):
    lines += [f"## {dataset}", "",
              "| model | float acc % | int8 TFLM acc % | int8 macro-F1 | weights B (int8) | "
              "non-zeros | .tflite B | arena B | MACs/step | µs/step | s/epoch |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (d, model), s in agg.items():
      if d != dataset:
        continue
      lines.append("| " + " | ".join([
          model, _fmt(s["float_accuracy"], 100), _fmt(s["int8_tflm_accuracy"], 100),
          _fmt(s["int8_tflm_macro_f1"], 1, 3), _fmt(s["weights_dense_int8_bytes"], 1, 0),
          _fmt(s["weights_nonzero"], 1, 0), _fmt(s["tflite_bytes"], 1, 0),
          _fmt(s["arena_bytes"], 1, 0), _fmt(s["macs_per_step"], 1, 0),
          _fmt(s["tflm_us_per_step"], 1, 1),
          _fmt(s["train_seconds_per_epoch"], 1, 1) if "train_seconds_per_epoch" in s
          else "–"]) + " |")
    lines.append("")
  lines += ["## Published figures (not re-run here)", "",
            "| source | task | model | figure |", "|---|---|---|---|"]
  lines += [f"| {src} | {task} | {model} | {fig} |" for src, task, model, fig in PUBLISHED]
  lines += ["", "![accuracy against flash](pareto.png)", ""]
  return "\n".join(lines)


def plot_pareto(agg, path):
  from tf_fastgrnn import fileio  # pylint: disable=import-outside-toplevel
  plt = fileio.pyplot(required="the benchmark's plot")
  datasets = list(dict.fromkeys(d for d, _ in agg))
  fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
  for ax, dataset in zip(axes[0], datasets):
    for (d, model), s in agg.items():
      if d != dataset:
        continue
      x, y = s["tflite_bytes"][0], 100 * s["int8_tflm_accuracy"][0]
      ax.errorbar(x, y, yerr=100 * s["int8_tflm_accuracy"][1], fmt="o", capsize=3)
      ax.annotate(model, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(".tflite bytes (flash)")
    ax.set_ylabel("int8 TFLM accuracy %")
    ax.set_title(dataset)
    ax.grid(alpha=0.3)
  fileio.save_figure(fig, path)


def _check_reused(run_dir, config):
  """A finished run is reused only if it was made with this benchmark's settings."""
  flags_path = run_dir / "flags.json"
  old = config_lib.read_flags(run_dir) if flags_path.exists() else {}  # any layout
  changed = {k: (old.get(k), v) for k, v in dataclasses.asdict(config).items()
             if k not in ("data_dir", "output_dir") and old.get(k) != v}
  if changed:
    raise ValueError(
        f"{run_dir} was made with other settings ({changed}, as (then, now)); use "
        "another --output_dir, or delete that folder to rerun it")


def run(base, datasets, model_names, seeds, out_dir, *, timing_steps, data_dirs=None,
        aggregate_only=False):
  """Runs (or reuses) every (dataset, model, seed) of ``base`` (``base_spec``); returns
  (rows, aggregate). ``data_dirs``: {dataset: its data path} where one is needed."""
  import data as data_lib  # pylint: disable=import-outside-toplevel
  from pipelines import stages  # pylint: disable=import-outside-toplevel
  out_dir = pathlib.Path(out_dir)
  for model in model_names:
    if model not in MODELS:
      raise ValueError(f"unknown model {model!r}; choose from {sorted(MODELS)}")
  rows = {}
  total = len(datasets) * len(model_names) * len(seeds)
  done = 0
  for dataset in datasets:
    dataset_dir = (data_dirs or {}).get(dataset)
    for seed in seeds:
      ds = None
      for model in model_names:
        done += 1
        run_dir = out_dir / dataset / model / f"seed{seed}"
        report_path = run_dir / "report.json"
        print(f"[benchmark {done}/{total}] {dataset} {model} seed {seed}", flush=True)
        config = _config(base, dataset, model, seed, dataset_dir, run_dir)
        if report_path.exists():
          _check_reused(run_dir, config)
          report = json.loads(report_path.read_text())
        elif aggregate_only:
          continue
        else:
          if ds is None:
            name, data_dir, options = config_lib.dataset_args(config)
            ds = data_lib.load_dataset(name, data_dir, **options)
          report = stages.run(config, ds=ds)
        tflite_bytes = (run_dir / stages.TFLITE_MODEL).read_bytes()
        rows[(dataset, model, seed)] = _row(report, time_per_step(tflite_bytes, timing_steps))
  return rows, aggregate(rows)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from tf_fastgrnn import fileio  # pylint: disable=import-outside-toplevel
  seeds = [int(s) for s in _SEEDS.value]
  settings = dict(epochs=_EPOCHS.value, qat_epochs=_QAT_EPOCHS.value, units=_UNITS.value,
                  max_test_windows=_MAX_TEST_WINDOWS.value, seeds=seeds)
  try:
    base = base_spec(_EPOCHS.value, _QAT_EPOCHS.value, _UNITS.value,
                     _MAX_TEST_WINDOWS.value)
    data_dirs = {d: _FSDD_DIR.value if d == "fsdd" else _DATA_DIR.value
                 for d in _DATASETS.value if d not in ("har2", "har6")}
    rows, agg = run(base, _DATASETS.value, _MODELS.value, seeds, _OUTPUT_DIR.value,
                    timing_steps=_TIMING_STEPS.value, data_dirs=data_dirs,
                    aggregate_only=_AGGREGATE_ONLY.value)
  except (ValueError, FileNotFoundError) as e:
    print(f"benchmark: {e}", file=sys.stderr)
    return 1
  out = pathlib.Path(_OUTPUT_DIR.value)
  command = "python -m benchmarks.benchmark " + " ".join(sys.argv[1:])
  fileio.write_json(out / "benchmark.json", {
      "command": command, "settings": settings,
      "runs": [dict(dataset=d, model=m, seed=s, **r) for (d, m, s), r in rows.items()],
      "aggregate": [dict(dataset=d, model=m, **{k: list(v) for k, v in s.items()})
                    for (d, m), s in agg.items()],
      "published": PUBLISHED})
  plot_pareto(agg, out / "pareto.png")
  text = markdown(agg, command, settings)
  fileio.write_text(out / "benchmark.md", text)
  print(text)
  return 0


if __name__ == "__main__":
  app.run(main)
