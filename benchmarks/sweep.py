r"""Accuracy per byte: every model family at several sizes, several seeds, one front each.

Each point is (dataset, family, size, seed). A finished point leaves one small JSON file
in ``--results_dir`` (committed to the repository: ``benchmarks/results/<dataset>/
<family>_<size>_seed<k>.json``), so it is never trained again, in this session or a
later one with a fresh checkout. Its run folder (checkpoints, model, device files) goes
under ``--runs_dir`` (``runs/``, not committed); a point killed midway resumes from its
checkpoints when its folder is still there.

Families: FastGRNN-LSQ (low rank, sparse, QAT), FastGRNN, FastRNN (QAT), GRU, LSTM,
low-rank LSTM (post-training int8), and a small 1D CNN as the reference a TinyML
practitioner would reach for (TFLM runs it on the whole window). Every model is int8 and
evaluated in the TFLM runtime (``tflite_micro``) on the dataset's test split. Tier 5
exports the LSTM points' float models again, the way a TFLM practitioner would
(``EXPORTS``: TFLite's fused LSTM op with an int16 cell state, ``tf_fastgrnn.lstm_int16``;
the int8 step model with σ(f)·c on c's grid), reusing their float training; its recipe
trials on har6 (size suffixes ``_hop16``, ``_wd``, ``_mean`` = the mean read-out,
``--readout=mean``, ``_grav`` = the ``imu_gravity`` front end, ``_refit`` = trained on
train + validation, ``--train_on_val``) are labelled in the tables, kept out of the
fronts and compared with ``--compare``.

Its flags' names differ from ``benchmarks.benchmark``'s (one flag registry per
process).

Usage:
  # run (or continue) the schedule, most informative points first; two workers:
  python -m benchmarks.sweep --shard=0 --num_shards=2 &
  python -m benchmarks.sweep --shard=1 --num_shards=2 &
  # tables and fronts from the result files only (trains nothing):
  python -m benchmarks.sweep --tabulate_only
"""

import dataclasses
import datetime
import hashlib
import json
import math
import os
import pathlib
import platform
import subprocess
import sys
import time

import numpy as np
from absl import app
from absl import flags

from pipelines import config as config_lib

Spec = config_lib.spec_lib.Spec
ExportSpec = config_lib.spec_lib.ExportSpec
Recipe = config_lib.spec_lib.Recipe
PRESETS = config_lib.spec_lib.PRESETS

_DATASETS = flags.DEFINE_list("only_datasets", ["har6", "har2", "fsdd"],
                              "Datasets to sweep.")
_FAMILIES = flags.DEFINE_list("families", None, "Only these families (default: all).")
_MAX_TIER = flags.DEFINE_integer("max_tier", 9, "Run points of tiers up to this one.")
_MIN_TIER = flags.DEFINE_integer("min_tier", 1, "Run points of tiers from this one.")
_SIZES = flags.DEFINE_list("sizes", None, "Only points of these size names (default: "
                           "all), e.g. h32r4-8s50_plain.")
_SEEDS = flags.DEFINE_integer("num_seeds", 5, "Seeds per point (0 .. num_seeds-1).")
_SHARD = flags.DEFINE_integer("shard", 0, "This worker's share of the schedule.")
_NUM_SHARDS = flags.DEFINE_integer("num_shards", 1, "Workers sharing the schedule.")
_MAX_POINTS = flags.DEFINE_integer("max_points", 0, "Stop after training this many "
                                   "points (0: no limit).")
_RESULTS_DIR = flags.DEFINE_string("results_dir", "benchmarks/results",
                                   "Committed result files, one per finished point.")
_RUNS_DIR = flags.DEFINE_string("runs_dir", "runs/sweep", "Run folders (not committed).")
_REPORT_DIR = flags.DEFINE_string("report_dir", "benchmarks",
                                  "Where the aggregate (sweep.md/.json, plots) goes.")
_FSDD_DIR = flags.DEFINE_string("fsdd_recordings", None,
                              "FSDD recordings folder (default ../shared).")
_THREADS = flags.DEFINE_integer("threads", 0, "TensorFlow intra-op threads (0: default).")
_DOC = flags.DEFINE_string(
    "doc", "docs/benchmarks.md", "A document whose block between the lines "
    "'<!-- sweep:begin -->' and '<!-- sweep:end -->' gets the tables ('' for none).")
_TABULATE_ONLY = flags.DEFINE_boolean("tabulate_only", False,
                                       "Tabulate the result files; train nothing.")
_LIST = flags.DEFINE_boolean("list", False, "Print the schedule with what is done; exit.")
_COMPARE = flags.DEFINE_list(
    "compare", None, "Print a paired table of two points and exit: 'dataset/family_size' "
    "of the trial, then of the point it is compared with, e.g. "
    "har6/fastgrnn_h24_wd,har6/fastgrnn_h24 (result files only; nothing is trained).")

FAMILIES = ("fastgrnn_lsq", "fastgrnn", "fastrnn", "gru", "lstm", "lowrank_lstm", "cnn")
FASTGRNN_FAMILY = ("fastgrnn_lsq", "fastgrnn", "fastrnn")
GATED = ("gru", "lstm", "lowrank_lstm")
LABELS = {"fastgrnn_lsq": "FastGRNN-LSQ", "fastgrnn": "FastGRNN", "fastrnn": "FastRNN",
          "gru": "GRU", "lstm": "LSTM", "lowrank_lstm": "low-rank LSTM", "cnn": "1D CNN"}

# What every point of a dataset trains with: the dataset's preset recipe
# (tf_fastgrnn/spec.py PRESETS), shorter than the single-model presets so the sweep fits the
# machine. GRU/LSTM/CNN get no QAT (post-training int8), so they train 0 QAT epochs.
def _settings(dataset, epochs, qat_epochs=4):
  """A dataset's sweep settings: its preset's recipe, shorter (epochs, QAT epochs)."""
  recipe = Spec.preset("recipe", dataset=dataset).recipe
  return dict(epochs=epochs, qat_epochs=qat_epochs, batch_size=recipe.batch_size,
              learning_rate=recipe.learning_rate,
              qat_learning_rate=recipe.qat_learning_rate, lr_schedule=recipe.lr_schedule,
              clipnorm=recipe.clipnorm, weight_decay=recipe.weight_decay,
              keep_best=recipe.keep_best, max_test_windows=ExportSpec().max_test_windows)


SETTINGS = {"har6": _settings("har6", 30), "har2": _settings("har2", 30),
            "fsdd": _settings("fsdd", 45)}
_PLAIN = dict(PRESETS["plain"]["recipe"])
# Tier 4 (knob ``aug``): the dataset's settings plus input augmentation fitting its
# sensor (tf_fastgrnn.augment, "auto"). Points without the knob carry no "augment" key,
# so the result files of tiers 1-3 keep matching their settings.
_AUG = dict(augment="auto")
_AUG_LIGHT = dict(augment="auto", augment_strength=0.5)
_AUG_NOROT = dict(augment="auto", augment_params={"max_angle_deg": 0.0})  # IMU: no rotation
# Tier 5 (knob ``hop16``, HAR only): training windows every 16 samples instead of 64
# (4x as many, overlapping by 7/8; validation and test unchanged) for half the epochs.
_HOP16 = dict(train_hop=16, epochs=15)
# Tier 5 (knob ``wd``): decoupled weight decay 0.02 (AdamW; about a 25 % shrink of the
# weights over the 30 epochs' cosine rate without the loss's pull).
_WD = dict(weight_decay=0.02)
# Tier 5 (knob ``grav``, HAR only): the imu_gravity front end (data.har.gravity_split:
# body acceleration, gravity at 0.3 Hz, gyro; 9 channels instead of the 6 raw ones).
_GRAV = dict(imu_frontend="imu_gravity")
# Tier 5 (knob ``mean``): the mean read-out, the window's logits the mean of the
# per-step logits (trained that way; the device sums its int8 logits over the window).
_MEAN = dict(readout="mean")
# Tier 5 (knob ``refit``): train on the training and validation windows together, last
# epoch kept (``train_on_val``; keep_best off). Its validation figures would be
# in-sample: the result file leaves them out (None).
_REFIT = dict(train_on_val=True, keep_best=False)


@dataclasses.dataclass(frozen=True)
class Point:
  """One model of the sweep; ``knobs`` set its size (and, for ablations, its recipe)."""
  tier: int
  dataset: str
  family: str
  size: str
  knobs: tuple  # sorted (name, value) pairs

  @property
  def kw(self):
    return dict(self.knobs)

  def file(self, seed):
    return f"{self.dataset}/{self.family}_{self.size}_seed{seed}.json"


def _p(tier, dataset, family, size, **knobs):
  return Point(tier, dataset, family, size, tuple(sorted(knobs.items())))


def _rnn(tier, dataset, family, h, w_rank=None, u_rank=None, sparsity=0.0, **extra):
  size = f"h{h}"
  if w_rank or u_rank:
    size += f"r{w_rank or 'f'}-{u_rank or 'f'}"
  if sparsity:
    size += f"s{round(100 * sparsity)}"
  if extra:
    size += "_" + "_".join(f"{k}" for k in sorted(extra))
  return _p(tier, dataset, family, size, units=h, w_rank=w_rank, u_rank=u_rank,
            sparsity=sparsity, **extra)


def _cnn(tier, dataset, filters, kernel=5):
  return _p(tier, dataset, "cnn", f"f{filters}k{kernel}", filters=filters, kernel=kernel)


def schedule():
  """Every point, most informative first (tier 1: the targets' budgets, FastGRNN vs GRU)."""
  pts = []
  # Tier 1: har6 <= 1 KB and har2 <= 512 B, FastGRNN family against GRU (dense int8
  # weight bytes in the comments, measured by the sweep).
  pts += [_rnn(1, "har6", "fastgrnn_lsq", 32, 4, 8, 0.5),   # 928 B (596 non-zero)
          _rnn(1, "har6", "fastgrnn_lsq", 32, 4, 8),        # 928 B, dense factors
          _rnn(1, "har6", "fastgrnn", 24),                  # 920 B
          _rnn(1, "har6", "gru", 12),                       # 798 B
          _rnn(1, "har6", "gru", 8),                        # 438 B
          _rnn(1, "har2", "fastgrnn_lsq", 16, 3, 4),        # 262 B
          _rnn(1, "har2", "fastgrnn_lsq", 24, 4, 6, 0.5),   # 508 B
          _rnn(1, "har2", "fastgrnn", 16),                  # 420 B
          _rnn(1, "har2", "gru", 8),                        # 402 B
          _rnn(1, "har2", "gru", 6)]                        # 266 B
  # Tier 2: the recipe ablation on validation (plain = constant rate, last epoch), the
  # other families at the same budgets, fsdd at <= 2.5 KB.
  pts += [_rnn(2, "har6", "fastgrnn_lsq", 32, 4, 8, 0.5, plain=True),
          _rnn(2, "har6", "fastgrnn", 24, noqat=True),
          _rnn(2, "har6", "fastrnn", 24), _rnn(2, "har6", "lstm", 12),
          _rnn(2, "har6", "fastgrnn", 16), _rnn(2, "har6", "fastgrnn_lsq", 16, 3, 4),
          _cnn(2, "har6", 8), _rnn(2, "har6", "lowrank_lstm", 16, 3, 4),
          _rnn(2, "har2", "fastrnn", 16), _rnn(2, "har2", "lstm", 8), _cnn(2, "har2", 8),
          _rnn(2, "fsdd", "fastgrnn", 32), _rnn(2, "fsdd", "fastrnn", 32),
          _rnn(2, "fsdd", "fastgrnn_lsq", 48, 8, 16), _rnn(2, "fsdd", "gru", 12),
          _rnn(2, "fsdd", "gru", 16), _cnn(2, "fsdd", 8, 3)]
  # Tier 3: the fronts above 1 KB and the smallest sizes.
  for ds in ("har6", "har2"):
    pts += [_rnn(3, ds, "fastgrnn", 8), _rnn(3, ds, "fastgrnn", 32),
            _rnn(3, ds, "fastgrnn", 48), _rnn(3, ds, "fastgrnn_lsq", 48, 4, 12),
            _rnn(3, ds, "fastgrnn_lsq", 64, 6, 16, 0.5), _rnn(3, ds, "gru", 16),
            _rnn(3, ds, "gru", 24), _rnn(3, ds, "gru", 32), _rnn(3, ds, "lstm", 16),
            _rnn(3, ds, "lstm", 24), _rnn(3, ds, "fastrnn", 32), _cnn(3, ds, 12),
            _cnn(3, ds, 16), _rnn(3, ds, "lowrank_lstm", 32, 4, 8)]
  pts += [_rnn(3, "fsdd", "fastgrnn", 16), _rnn(3, "fsdd", "fastgrnn", 48),
          _rnn(3, "fsdd", "fastrnn", 16), _rnn(3, "fsdd", "fastgrnn_lsq", 32, 8, 8),
          _rnn(3, "fsdd", "gru", 24), _rnn(3, "fsdd", "gru", 8), _rnn(3, "fsdd", "lstm", 12),
          _rnn(3, "fsdd", "lstm", 16), _rnn(3, "fsdd", "lowrank_lstm", 32, 8, 8),
          _cnn(3, "fsdd", 16, 3),
          # FastGRNN-LSQ at the fsdd target budget (<= 2.5 KB), below GRU h16 (2570 B).
          _rnn(3, "fsdd", "fastgrnn_lsq", 48, 8, 12),
          # FastGRNN-LSQ between 2.8 and 4.4 KB on fsdd (the front had no point there).
          _rnn(3, "fsdd", "fastgrnn_lsq", 64, 8, 16)]
  # Tier 4: input augmentation (chosen on validation against the same points of tiers
  # 1-2 without it): the near-misses of the targets, FastGRNN and the GRU beside it.
  pts += [_rnn(4, "fsdd", "fastgrnn", 32, aug=True), _rnn(4, "fsdd", "gru", 16, aug=True),
          _rnn(4, "har6", "fastgrnn", 24, aug=True), _rnn(4, "har6", "gru", 12, aug=True),
          # the same at half the magnitudes (full strength lost on fsdd validation)
          _rnn(4, "fsdd", "fastgrnn", 32, aug_light=True),
          _rnn(4, "fsdd", "gru", 16, aug_light=True),
          # IMU without the rotation (it lost on har6 validation: the tilt of the body is
          # what tells sitting from standing): gain and jitter only
          _rnn(4, "har6", "fastgrnn", 24, aug_norot=True),
          _rnn(4, "har6", "gru", 12, aug_norot=True)]
  # Tier 5, recipe trials on har6 (the target missed by 0.02), FastGRNN and the GRU
  # beside it: denser training windows; weight decay.
  pts += [_rnn(5, "har6", "fastgrnn", 24, hop16=True), _rnn(5, "har6", "gru", 12, hop16=True),
          _rnn(5, "har6", "fastgrnn", 24, wd=True), _rnn(5, "har6", "gru", 12, wd=True),
          _rnn(5, "har6", "fastgrnn_lsq", 32, 4, 8, 0.5, wd=True),
          # the mean read-out, FastGRNN, FastGRNN-LSQ and the GRU beside them
          _rnn(5, "har6", "fastgrnn", 24, mean=True),
          _rnn(5, "har6", "fastgrnn_lsq", 32, 4, 8, 0.5, mean=True),
          _rnn(5, "har6", "gru", 12, mean=True)]
  # Tier 5: the imu_gravity front end (a float probe raised validation most), the same
  # three har6 points.
  pts += [_rnn(5, "har6", "fastgrnn", 24, grav=True), _rnn(5, "har6", "gru", 12, grav=True),
          _rnn(5, "har6", "fastgrnn_lsq", 32, 4, 8, 0.5, grav=True),
          # both levers together (each passed on FastGRNN h24 alone), against h24_grav
          _rnn(5, "har6", "fastgrnn", 24, grav=True, mean=True),
          # the FastGRNN family at or below GRU h12 grav's 906 B with the front end (sizes
          # set from that budget before they ran): FastGRNN h22 (866 B), FastGRNN-LSQ
          # h32r3-8s50 (899 B)
          _rnn(5, "har6", "fastgrnn", 22, grav=True),
          _rnn(5, "har6", "fastgrnn_lsq", 32, 3, 8, 0.5, grav=True),
          # training on train + validation, last epoch (chosen by a nested probe on
          # validation subjects, docs/benchmarks.md), with the front end
          _rnn(5, "har6", "fastgrnn", 24, grav=True, refit=True),
          _rnn(5, "har6", "fastgrnn_lsq", 32, 4, 8, 0.5, grav=True, refit=True),
          _rnn(5, "har6", "gru", 12, grav=True, refit=True),
          # the FastGRNN family at or below GRU h12's 906 B, trained the same way
          _rnn(5, "har6", "fastgrnn_lsq", 32, 3, 8, 0.5, grav=True, refit=True)]
  # Tier 5: the LSTM baselines exported as a TFLM practitioner would (EXPORTS), from the
  # float models of the LSTM points above (same settings: reused, not retrained).
  for p in list(pts):
    if p.family in ("lstm", "lowrank_lstm") and not p.kw.get("plain"):
      kw = p.kw
      for knob in (("int16c", "cgrid") if p.family == "lstm" else ("cgrid",)):
        pts.append(_rnn(5, p.dataset, p.family, kw["units"], kw["w_rank"], kw["u_rank"],
                        kw["sparsity"], **{knob: True}))
  return pts


def _ordered(points, seeds):
  """(point, seed) pairs: tier by tier, and within a tier seed by seed."""
  out = []
  for tier in sorted({p.tier for p in points}):
    for seed in range(seeds):
      out += [(p, seed) for p in points if p.tier == tier]
  return out


# A trial's keyword and the settings it changes, applied in this order.
_TRIAL_SETTINGS = (("plain", _PLAIN), ("aug", _AUG), ("aug_light", _AUG_LIGHT),
                   ("aug_norot", _AUG_NOROT), ("hop16", _HOP16), ("wd", _WD), ("grav", _GRAV),
                   ("mean", _MEAN), ("refit", _REFIT))


def settings_for(point):
  """The training settings of a point: its dataset's, with an ablation's changes."""
  settings = dict(SETTINGS.get(point.dataset, SETTINGS["har6"]))
  for key, changes in _TRIAL_SETTINGS:
    if point.kw.get(key):
      settings.update(changes)
  if point.family not in ("fastgrnn_lsq", "fastgrnn", "fastrnn") or point.kw.get("noqat"):
    settings["qat_epochs"] = 0
  return settings


def data_options(point):
  """Dataset options a point's settings ask for (``train_hop``, ``imu_frontend``), for
  ``load_dataset``."""
  settings = settings_for(point)
  opts = {"train_hop": settings["train_hop"]} if "train_hop" in settings else {}
  if "imu_frontend" in settings:
    opts["frontend"] = settings["imu_frontend"]
  return opts


def _git_commit():
  try:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=True,
                          cwd=pathlib.Path(__file__).parent).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return None


def _machine():
  return {"platform": platform.platform(), "processor": platform.machine(),
          "cpus": os.cpu_count()}


def _val_accuracy(history):
  """Validation accuracy of the epoch the run kept (best, or last)."""
  acc = history.get("val_accuracy") or [None]
  if history.get("best_epoch"):
    return acc[history["best_epoch"][0] - 1]
  return acc[-1]


def _spec(point, seed, settings, data_dir):
  """The ``Spec`` of a point's run: the dataset's recipe with the point's settings; the
  tiny-data rules off, no numerics or window model, the LSTM rows as measured (the
  converter's range; tier 5's cgrid points are the fix)."""
  kw = point.kw
  cell = "fastgrnn" if point.family == "fastgrnn_lsq" else point.family
  recipe = {k: settings[k] for k in ("epochs", "qat_epochs", "batch_size", "learning_rate",
                                     "qat_learning_rate", "lr_schedule", "clipnorm",
                                     "weight_decay", "keep_best")}
  recipe.update({k: settings[k] for k in ("augment_strength", "augment_params",
                                          "train_on_val") if k in settings})
  recipe.update(augment=config_lib.resolve_augment(settings.get("augment", "none"),
                                                   point.dataset),
                min_phase_steps=0, max_batch_fraction=1.0, min_val_windows=0)
  model = {"units": kw["units"], "w_rank": kw["w_rank"], "u_rank": kw["u_rank"]}
  model.update({k: settings[k] for k in ("readout",) if k in settings})
  data = {"data_dir": data_dir, "seed": seed, "feature_cache": "none"}
  data.update({k: settings[k] for k in ("imu_frontend",) if k in settings})
  return Spec.preset("recipe", dataset=point.dataset, cell=cell).replace(
      model=model, sparsity={"w": kw["sparsity"], "u": kw["sparsity"]}, recipe=recipe,
      data=data, export={"qat": settings["qat_epochs"] > 0,
                         "max_test_windows": settings["max_test_windows"],
                         "num_test_vectors": 1, "arena_margin": 0, "numerics": False,
                         "window_model": False, "lstm_product_on_cell_grid": False})


def _run_rnn(point, seed, ds, run_dir, settings, data_dir):
  from pipelines import stages  # pylint: disable=import-outside-toplevel
  qat = settings["qat_epochs"] > 0
  config = stages.Config.from_spec(
      _spec(point, seed, settings, data_dir), run_dir,
      resume=(run_dir / "flags.json").exists())
  if (run_dir / "report.json").exists():
    report = json.loads((run_dir / "report.json").read_text())
  else:
    try:
      report = stages.run(config, ds=ds)
    except ValueError as e:
      if "--resume must use the flags" not in str(e):
        raise
      # The folder holds a run made with other settings (an older sweep): start over.
      report = stages.run(dataclasses.replace(config, resume=False), ds=ds)
  # int8 accuracy on the validation split too: what recipes and models may be chosen on
  # (not when it was trained on: then in-sample, left out).
  held_out = not config.train_on_val
  val_int8 = None
  if held_out:
    from tf_fastgrnn import runtime  # pylint: disable=import-outside-toplevel
    runner = runtime.TFLMStepRunner((run_dir / stages.TFLITE_MODEL).read_bytes())
    val_int8 = float(np.mean(runner.window_classes(
        runner.run_windows(ds.x_val)["logits_q"], config.readout) == ds.y_val))
  float_hist = json.loads((run_dir / "float_training.json").read_text())["history"]
  qat_hist = (json.loads((run_dir / "qat_training.json").read_text()) if qat else {})
  size = report["size"]
  return {
      "int8_tflm_accuracy": report["accuracy"]["int8_tflm"],
      "int8_tflm_macro_f1": report["macro_f1_tflm"],
      "float_accuracy": report["accuracy"]["float_sparse_keras"],
      "qat_keras_accuracy": report["accuracy"]["qat_keras"],
      "val_accuracy_float": _val_accuracy(float_hist) if held_out else None,
      "val_accuracy_qat": _val_accuracy(qat_hist) if qat and held_out else None,
      "int8_tflm_val_accuracy": val_int8,
      "best_epoch_float": (float_hist.get("best_epoch") or [None])[0],
      "weights_dense_int8_bytes": size["weights_dense_int8_bytes"],
      "weights_nonzero_int8_bytes": size["weights_nonzero"],
      "tflite_bytes": size["tflite_step_bytes"],
      "arena_bytes": size["tflm_arena_bytes_measured"],
      "macs": size["macs_per_step_dense"],
      "macs_nonzero": size["macs_per_step_nonzero"],
      "macs_unit": "per step",
      "steps_per_window": int(ds.x_train.shape[1]),
      "evaluated_test_windows": report["dataset"]["evaluated_test_windows"],
      "train_seconds": report["seconds"],
  }


# Tier 5's knobs: another int8 export of an LSTM point's float model (its result file
# records which float training it reused).
EXPORTS = {"int16c": "fused LSTM op, int16 c", "cgrid": "int8, σ(f)·c on c's grid"}


def _base_point(point):
  """The point without its export knob: the one whose float model the export reuses."""
  kw = {k: v for k, v in point.kw.items() if k not in EXPORTS}
  return _rnn(point.tier, point.dataset, point.family, kw.pop("units"), kw.pop("w_rank"),
              kw.pop("u_rank"), kw.pop("sparsity"), **kw)


def _is_export(point):
  return any(point.kw.get(k) for k in EXPORTS)


def export_base_dir(point, seed, runs_dir):
  """The run folder whose float model an EXPORTS point reuses (its base point's)."""
  return (pathlib.Path(runs_dir) / point.dataset /
          f"{point.family}_{_base_point(point).size}" / f"seed{seed}")


def _run_export(point, seed, ds, run_dir, base_dir, settings):
  """An EXPORTS variant: the base point's float model from its finished run folder,
  exported the variant's way, evaluated in TFLM on test and validation. Trains nothing:
  a worker never writes into a run folder another worker may be training."""
  from pipelines import report as report_lib  # pylint: disable=import-outside-toplevel
  from pipelines import stages  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import compression  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import deployment  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import fileio  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import lstm_int16  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import stepping  # pylint: disable=import-outside-toplevel
  start = time.time()
  base = _base_point(point)
  # The run's figures that no typed result holds (the report's) are read from report.json.
  base_report = json.loads((base_dir / "report.json").read_text())
  trained = compression.Trained.load(base_dir)
  float_hist = trained.record["history"]
  windows = ds.x_train[:compression.CALIBRATION_WINDOWS]
  x_test, y_test = stages.test_subset(ds, settings["max_test_windows"], seed)
  if point.kw.get("int16c"):
    ev = lstm_int16.export_and_evaluate(trained.model, windows, x_test, ds.x_val)
    tflite_bytes, arena, test_pred, val_pred = ev.tflite, ev.arena, ev.test_pred, \
        ev.validation_pred
    extra = {
        "export": "TFLite's fused UNIDIRECTIONAL_SEQUENCE_LSTM, int8 weights and "
                  "activations, int16 cell state; streaming: one time step per invoke, "
                  "h and c in variable tensors, reset per window",
        "window_model_tflite_bytes": len(ev.window_tflite),
        "window_model_arena_bytes": ev.window_arena,
        **{k: getattr(ev, k) for k in (
            "streaming_equals_window_model", "litert_top1_agreement",
            "litert_logits_max_lsb", "litert_logits_bytes_differing")},
    }
    fileio.write_bytes(run_dir / "model_int8_int16c_window.tflite", ev.window_tflite)
    fileio.write_bytes(run_dir / "model_int8_int16c_step.tflite", tflite_bytes)
  else:
    int8 = deployment.export_int8(trained.model, windows,
                                  lstm_product_on_cell_grid=True).save(run_dir)
    # Each window's class as the device computes it, for the float model's read-out.
    readout = stepping.readout(trained.model)
    test, val = (deployment.evaluate_tflm(int8, x, y, readout=readout, arena_margin=0,
                                          num_test_vectors=0)
                 for x, y in ((x_test, y_test), (ds.x_val, ds.y_val)))
    tflite_bytes, arena, test_pred, val_pred = int8.tflite, test.arena, test.pred, val.pred
    extra = {"export": "the int8 step model (c int8, capped at ±8), σ(f)·c on c's grid "
                       "(export.convert_step_model(forget_product_on_cell_grid=True))"}
  cm = report_lib.confusion_matrix(y_test, test_pred, len(ds.labels))
  size = base_report["size"]
  return {
      "int8_tflm_accuracy": float(np.mean(test_pred == y_test)),
      "int8_tflm_macro_f1": report_lib.macro_f1(cm),
      "float_accuracy": base_report["accuracy"]["float_sparse_keras"],
      "qat_keras_accuracy": None,
      "val_accuracy_float": _val_accuracy(float_hist),
      "val_accuracy_qat": None,
      "int8_tflm_val_accuracy": float(np.mean(val_pred == ds.y_val)),
      "best_epoch_float": (float_hist.get("best_epoch") or [None])[0],
      "weights_dense_int8_bytes": size["weights_dense_int8_bytes"],
      "weights_nonzero_int8_bytes": size["weights_nonzero"],
      "tflite_bytes": len(tflite_bytes),
      "arena_bytes": arena,
      "macs": size["macs_per_step_dense"],
      "macs_nonzero": size["macs_per_step_nonzero"],
      "macs_unit": "per step",
      "steps_per_window": int(ds.x_train.shape[1]),
      "evaluated_test_windows": int(len(x_test)),
      "train_seconds": base_report["seconds"],
      "export_seconds": time.time() - start,
      "float_model_from": {
          "point": base.file(seed), "run_dir": str(base_dir), "reused": True,
          "sha256": hashlib.sha256(
              (base_dir / compression.FLOAT_MODEL).read_bytes()).hexdigest()},
      **extra,
  }


def cnn_model(input_shape, num_classes, filters, kernel):
  """The reference 1D CNN: two strided convolutions, global average, linear classifier."""
  from tf_fastgrnn._keras import keras  # pylint: disable=import-outside-toplevel
  x = keras.Input(tuple(input_shape), name="x")
  h = keras.layers.Conv1D(filters, kernel, strides=2, padding="same", activation="relu",
                          name="conv1")(x)
  h = keras.layers.Conv1D(filters, kernel, strides=2, padding="same", activation="relu",
                          name="conv2")(h)
  h = keras.layers.GlobalAveragePooling1D(name="pool")(h)
  logits = keras.layers.Dense(num_classes, name="logits")(h)
  return keras.Model(x, logits, name="cnn_classifier")


def cnn_macs(model):
  """Multiply-accumulates of one whole window (convolutions and classifier)."""
  macs = 0
  for layer in model.layers:
    if layer.name.startswith("conv"):
      kernel = layer.kernel.shape  # [k, in, out]
      macs += int(layer.output_shape[1]) * int(np.prod(kernel))
    elif layer.name == "logits":
      macs += int(np.prod(layer.kernel.shape))
  return macs


def convert_cnn(model, representative_windows):
  """Full-integer int8 ``.tflite`` of a whole-window model ``[1, T, D] -> [1, C]``."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  steps, dim = model.input_shape[1:]

  @tf.function(input_signature=[tf.TensorSpec([1, steps, dim], tf.float32)])
  def fn(x):
    return model(x)

  from tf_fastgrnn import export  # pylint: disable=import-outside-toplevel
  return export.convert_int8(
      tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], model),
      lambda: ([w[None]] for w in representative_windows))


class WindowRunner:
  """A whole-window int8 model in the TFLM runtime (one invoke per window)."""

  def __init__(self, tflite_bytes, arena_size=None):
    from tflite_micro.python.tflite_micro import runtime  # pylint: disable=import-outside-toplevel
    self.interpreter = runtime.Interpreter.from_bytes(tflite_bytes, arena_size=arena_size)
    inp, out = self.interpreter.get_input_details(0), self.interpreter.get_output_details(0)
    self.in_scale, self.in_zero = inp["quantization_parameters"]["scales"][0], \
        inp["quantization_parameters"]["zero_points"][0]
    self.in_shape = tuple(inp["shape"])
    self.out_quant = (out["quantization_parameters"]["scales"][0],
                      out["quantization_parameters"]["zero_points"][0])

  def logits(self, windows):
    from tf_fastgrnn import runtime  # pylint: disable=import-outside-toplevel
    out = []
    for w in np.asarray(windows, np.float32):
      self.interpreter.set_input(runtime.quantize(w[None], self.in_scale, self.in_zero), 0)
      self.interpreter.invoke()
      out.append(runtime.dequantize(self.interpreter.get_output(0).copy(), *self.out_quant))
    return np.concatenate(out)


def window_arena(tflite_bytes, granularity=16):
  """Smallest arena (bytes) in which the whole-window model allocates and invokes."""
  def fits(size):
    try:
      runner = WindowRunner(tflite_bytes, arena_size=size)
      runner.interpreter.set_input(np.zeros(runner.in_shape, np.int8), 0)
      runner.interpreter.invoke()
      return True
    except RuntimeError:
      return False
  low, high = 0, 4096
  while not fits(high):
    low, high = high, 2 * high
    if high > 1 << 26:
      raise RuntimeError("the TFLM runtime cannot allocate this model")
  while high - low > granularity:
    mid = (low + high) // 2
    low, high = (low, mid) if fits(mid) else (mid, high)
  return high


def _run_cnn(point, seed, ds, run_dir, settings):
  from pipelines import report as report_lib  # pylint: disable=import-outside-toplevel
  from pipelines import stages  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import fileio  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import pruning  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import augment  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import training  # pylint: disable=import-outside-toplevel
  start = time.time()
  kw = point.kw
  training.set_seed(seed)
  model = cnn_model(ds.x_train.shape[1:], len(ds.labels), kw["filters"], kw["kernel"])
  run_dir.mkdir(parents=True, exist_ok=True)
  recipe = Recipe(**{k: settings[k] for k in (
      "epochs", "qat_epochs", "batch_size", "learning_rate", "qat_learning_rate",
      "lr_schedule", "clipnorm", "weight_decay", "keep_best")})
  history = training.fit(
      model, (ds.x_train, ds.y_train), (ds.x_val, ds.y_val), recipe, seed=seed,
      checkpoint_dir=run_dir / "checkpoints", options=training.FitOptions(
          verbose=0, augment=augment.make(settings.get("augment", "none"), point.dataset,
                                          ds.feature_mean, ds.feature_std,
                                          strength=settings.get("augment_strength"),
                                          **settings.get("augment_params", {}))))
  tflite_bytes = convert_cnn(model, ds.x_train[:256])
  fileio.write_bytes(run_dir / "model_int8_window.tflite", tflite_bytes)
  arena = window_arena(tflite_bytes)
  x_test, y_test = stages.test_subset(ds, settings["max_test_windows"], seed)
  runner = WindowRunner(tflite_bytes, arena)
  pred = np.argmax(runner.logits(x_test), -1)
  val_int8 = float(np.mean(np.argmax(runner.logits(ds.x_val), -1) == ds.y_val))
  float_pred = np.argmax(model.predict(x_test, batch_size=512, verbose=0), -1)
  cm = report_lib.confusion_matrix(y_test, pred, len(ds.labels))
  totals = pruning.sparsity_report(model)["totals"]
  return {
      "int8_tflm_accuracy": float(np.mean(pred == y_test)),
      "int8_tflm_macro_f1": report_lib.macro_f1(cm),
      "float_accuracy": float(np.mean(float_pred == y_test)),
      "qat_keras_accuracy": None,
      "val_accuracy_float": _val_accuracy(history),
      "val_accuracy_qat": None,
      "int8_tflm_val_accuracy": val_int8,
      "best_epoch_float": (history.get("best_epoch") or [None])[0],
      "weights_dense_int8_bytes": totals["dense_int8_bytes"],
      "weights_nonzero_int8_bytes": totals["nonzero_int8_bytes"],
      "tflite_bytes": len(tflite_bytes),
      "arena_bytes": arena,
      "macs": cnn_macs(model),
      "macs_nonzero": None,
      "macs_unit": "per window",
      "steps_per_window": int(ds.x_train.shape[1]),
      "evaluated_test_windows": int(len(x_test)),
      "train_seconds": time.time() - start,
  }


def load_results(results_dir, points=None):
  """``{(dataset, family, size): [result, ...]}`` from the result files.

  With ``points``, a file counts only if its settings are those the point runs with now
  (results of an older schedule are left out, never deleted).
  """
  results_dir = pathlib.Path(results_dir)
  wanted = {(p.dataset, p.family, p.size): p for p in points} if points else None
  groups = {}
  for path in sorted(results_dir.glob("*/*.json")):
    result = json.loads(path.read_text())
    key = (result["dataset"], result["family"], result["size"])
    if wanted is not None and (key not in wanted or
                               result["settings"] != _jsonable(settings_for(wanted[key]))):
      continue
    groups.setdefault(key, []).append(result)
  return groups


def _jsonable(obj):
  return json.loads(json.dumps(obj))


def run_point(point, seed, results_dir, runs_dir, ds, data_dir=None):
  """Trains and evaluates one (point, seed) unless its result file exists; returns it."""
  from tf_fastgrnn import fileio  # pylint: disable=import-outside-toplevel
  path = pathlib.Path(results_dir) / point.file(seed)
  settings = settings_for(point)
  if path.exists():
    result = json.loads(path.read_text())
    if result["settings"] != _jsonable(settings):
      raise ValueError(f"{path} was made with other settings ({result['settings']}); "
                       "move it away to rerun the point")
    return result
  run_dir = pathlib.Path(runs_dir) / point.dataset / f"{point.family}_{point.size}" / \
      f"seed{seed}"
  if point.family == "cnn":
    metrics = _run_cnn(point, seed, ds, run_dir, settings)
  elif _is_export(point):
    base_dir = export_base_dir(point, seed, runs_dir)
    if not (base_dir / "report.json").exists():
      raise ValueError(f"{point.file(seed)} exports the float model of "
                       f"{_base_point(point).file(seed)}, whose run folder {base_dir} has "
                       "not finished: run that point first (tier 5 trains nothing)")
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = _run_export(point, seed, ds, run_dir, base_dir, settings)
  else:
    metrics = _run_rnn(point, seed, ds, run_dir, settings, data_dir)
  result = {
      "dataset": point.dataset, "family": point.family, "size": point.size,
      "seed": seed, "tier": point.tier, "knobs": dict(point.knobs), "settings": settings,
      **metrics,
      "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "commit": _git_commit(), "machine": _machine(),
  }
  fileio.write_json(path, _jsonable(result))
  return result


def run(points, seeds, results_dir, runs_dir, *, shard=(0, 1), max_points=0,
        data_dirs=None, load=None):
  """Runs this worker's share of ``points`` x seeds, skipping finished ones.

  Args:
    points: ``Point`` list (``schedule()`` or a test's).
    seeds: number of seeds per point.
    results_dir, runs_dir: where result files and run folders go.
    shard: ``(index, count)``: this worker takes the pairs whose position in the order
      (tier, seed, point) is ``index`` modulo ``count`` (``--shard``, ``--num_shards``).
    max_points: stop after training this many (0: no limit).
    data_dirs: ``{dataset: data_dir}`` for datasets that need a path.
    load: ``(dataset, data_dir, seed) -> Dataset`` (default ``data.load_dataset``).

  Returns:
    the number of points trained.
  """
  shard, num_shards = shard
  if not 0 <= shard < num_shards:
    raise ValueError(f"shard must be in [0, num_shards={num_shards}), got {shard}")
  if load is None:
    import data as data_lib  # pylint: disable=import-outside-toplevel
    load = lambda name, path, seed, **opts: data_lib.load_dataset(name, path, seed=seed,
                                                                 **opts)
  data_dirs = data_dirs or {}
  todo = [(p, s) for i, (p, s) in enumerate(_ordered(points, seeds))
          if i % num_shards == shard]
  cache, trained = {}, 0
  for i, (point, seed) in enumerate(todo):
    path = pathlib.Path(results_dir) / point.file(seed)
    if path.exists():
      if json.loads(path.read_text())["settings"] != _jsonable(settings_for(point)):
        raise ValueError(f"{path} was made with other settings; move it away to rerun "
                         "the point, or restore the settings it was made with")
      continue
    if max_points and trained >= max_points:
      break
    if _is_export(point) and not (export_base_dir(point, seed, runs_dir) /
                                  "report.json").exists():
      print(f"[sweep {shard}/{num_shards}] {i + 1}/{len(todo)}: {point.file(seed)} "
            f"waits for {_base_point(point).file(seed)}'s run folder (tier 5 trains "
            "nothing)", flush=True)
      continue
    opts = data_options(point)
    key = (point.dataset, seed, tuple(sorted(opts.items())))
    if key not in cache:
      cache.clear()
      cache[key] = load(point.dataset, data_dirs.get(point.dataset), seed, **opts)
    print(f"[sweep {shard}/{num_shards}] {i + 1}/{len(todo)}: {point.dataset} "
          f"{point.family} {point.size} seed {seed} (tier {point.tier})", flush=True)
    start = time.time()
    result = run_point(point, seed, results_dir, runs_dir, cache[key],
                       data_dirs.get(point.dataset))
    trained += 1
    print(f"[sweep {shard}/{num_shards}] done in {time.time() - start:.0f} s: int8 TFLM "
          f"{100 * result['int8_tflm_accuracy']:.2f} %, macro-F1 "
          f"{result['int8_tflm_macro_f1']:.3f}, {result['weights_dense_int8_bytes']} B",
          flush=True)
  return trained


# ---- aggregation -------------------------------------------------------------------

METRICS = ("int8_tflm_accuracy", "int8_tflm_macro_f1", "float_accuracy",
           "val_accuracy_float", "int8_tflm_val_accuracy", "weights_dense_int8_bytes", "weights_nonzero_int8_bytes",
           "tflite_bytes", "arena_bytes", "macs")

# The paper's Table 3 figures on a matching task
# (Kusupati et al., NeurIPS 2018). Their HAR-2 preprocessing is not re-checked here.
PAPER = {"har2": [("Table 3", "95.59 % at ~3 KB; FastGRNN-LSQ "
                   "95.38 %", "")]}

BUDGETS = (256, 512, 1024, 2048, 4096, 8192)
# The budgets each dataset's target is set at (dense int8 weight bytes), added to its table.
TARGET_BUDGETS = {"har6": 1024, "har2": 512, "fsdd": 2560}


def budgets_for(dataset):
  """The budgets a dataset's table has: the powers of two and its target's budget."""
  return tuple(sorted(set(BUDGETS) | {TARGET_BUDGETS.get(dataset, BUDGETS[0])}))


def against_gated(agg, dataset, metric):
  """For each GRU/LSTM point, the best FastGRNN-family point of equal or smaller size.

  Returns:
    ``[(gated (family, size, stats), best FastGRNN family (family, size, stats) or
    None)]``, smallest gated point first: the issue's rule, "the best FastGRNN-family
    point at least as accurate as the best GRU/LSTM point of equal or larger size",
    checked point by point.
  """
  rows = []
  for (d, family, size), s in agg.items():
    if d != dataset or family not in GATED or _is_ablation(s) or metric not in s:
      continue
    budget = s["weights_dense_int8_bytes"][0]
    rows.append(((family, size, s),
                 best_under(agg, dataset, FASTGRNN_FAMILY, budget, metric)))
  return sorted(rows, key=lambda r: r[0][2]["weights_dense_int8_bytes"][0])


def aggregate(groups):
  """``{(dataset, family, size): {metric: (mean, std, n)}}``, plus ``knobs`` and seeds."""
  out = {}
  for key, results in groups.items():
    stats = {}
    for metric in METRICS:
      values = [r[metric] for r in results if r.get(metric) is not None]
      if values:
        stats[metric] = (float(np.mean(values)), float(np.std(values)), len(values))
    stats["seeds"] = sorted(r["seed"] for r in results)
    stats["knobs"] = results[0]["knobs"]
    stats["macs_unit"] = results[0]["macs_unit"]
    out[key] = stats
  return out


ABLATIONS = {"plain": "plain recipe", "noqat": "no QAT", "aug": "augmented",
             "aug_light": "augmented, half strength",
             "aug_norot": "augmented, no rotation",
             "hop16": "training hop 16, 15 epochs", "wd": "weight decay 0.02",
             "grav": "imu_gravity front end", "mean": "mean read-out",
             "refit": "trained on train + val"}


def _is_ablation(stats):
  return any(stats["knobs"].get(k) for k in ABLATIONS)


def _score(dataset):
  return "int8_tflm_macro_f1" if dataset == "har6" else "int8_tflm_accuracy"


def best_under(agg, dataset, families, budget, metric):
  """The (size, stats) of ``families`` with the highest mean ``metric`` at <= budget."""
  best = None
  for (d, family, size), s in agg.items():
    if d != dataset or family not in families or _is_ablation(s):
      continue
    if s["weights_dense_int8_bytes"][0] > budget or metric not in s:
      continue
    if best is None or s[metric][0] > best[2][metric][0]:
      best = (family, size, s)
  return best


def _fmt(stat, scale=1.0, digits=2):
  mean, std, n = stat
  return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def markdown(agg):
  lines = ["# Sweep: accuracy per byte", "",
           "Mean ± std over the seeds listed (n); int8 in the TFLM runtime on the test "
           "split; weights: every weight as one int8 byte (what the .tflite stores) and "
           "the non-zero ones. MACs per time step (RNNs) or per window (CNN). Generated "
           "by `python -m benchmarks.sweep --tabulate_only`.", ""]
  for dataset in sorted({k[0] for k in agg}):
    metric = _score(dataset)
    lines += [f"## {dataset}", "",
              "| family | size | n | int8 acc % | macro-F1 | val acc % (float) | "
              "val acc % (int8) | weights B | non-zero B | .tflite B | arena B | MACs |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    rows = sorted(((k, s) for k, s in agg.items() if k[0] == dataset),
                  key=lambda ks: (FAMILIES.index(ks[0][1]), ks[1]["weights_dense_int8_bytes"][0],
                                  ks[0][2]))
    for (_, family, size), s in rows:
      name = LABELS[family] + "".join(f" ({v})" for k, v in {**ABLATIONS, **EXPORTS}.items()
                                      if s["knobs"].get(k))
      lines.append("| " + " | ".join([
          name, size, str(len(s["seeds"])), _fmt(s["int8_tflm_accuracy"], 100),
          _fmt(s["int8_tflm_macro_f1"], 1, 3),
          _fmt(s["val_accuracy_float"], 100) if "val_accuracy_float" in s else "–",
          (_fmt(s["int8_tflm_val_accuracy"], 100) +
           (f" (n={s['int8_tflm_val_accuracy'][2]})"
            if s["int8_tflm_val_accuracy"][2] != len(s["seeds"]) else "")
           if "int8_tflm_val_accuracy" in s else "–"),
          f"{s['weights_dense_int8_bytes'][0]:.0f}",
          f"{s['weights_nonzero_int8_bytes'][0]:.0f}", f"{s['tflite_bytes'][0]:.0f}",
          f"{s['arena_bytes'][0]:.0f}",
          f"{s['macs'][0]:.0f}" + (" /window" if s["macs_unit"] == "per window" else "")])
          + " |")
    lines += ["", f"### {dataset}: who wins at each budget ({metric.replace('int8_tflm_', '')}"
              ", int8 TFLM, dense int8 weight bytes <= budget)", "",
              "| budget | best FastGRNN family | best GRU/LSTM | best CNN | FastGRNN family "
              "minus GRU/LSTM |", "|---|---|---|---|---|"]
    scale, digits = (1, 3) if metric.endswith("f1") else (100, 2)
    for budget in budgets_for(dataset):
      cells = []
      found = [best_under(agg, dataset, fams, budget, metric)
               for fams in (FASTGRNN_FAMILY, GATED, ("cnn",))]
      for b in found:
        cells.append("–" if b is None else
                     f"{LABELS[b[0]]} {b[1]}: {_fmt(b[2][metric], scale, digits)} "
                     f"(n={len(b[2]['seeds'])}, {b[2]['weights_dense_int8_bytes'][0]:.0f} B)")
      fg, gated = found[0], found[1]
      if fg is not None and gated is not None:
        diff = scale * (fg[2][metric][0] - gated[2][metric][0])
        cells.append(f"{diff:+.{digits}f}")
      else:
        cells.append("not measured")
      lines.append(f"| {budget} B | " + " | ".join(cells) + " |")
    rows = against_gated(agg, dataset, metric)
    if rows:
      lines += ["", f"### {dataset}: each GRU/LSTM point against the best FastGRNN-family "
                "point of equal or smaller size", "",
                "| GRU/LSTM point | best FastGRNN family at <= its bytes | FastGRNN family "
                "minus GRU/LSTM |", "|---|---|---|"]
      for gated, fg in rows:
        cells = []
        for b in (gated, fg):
          cells.append("none measured" if b is None else
                       f"{LABELS[b[0]]} {b[1]}: {_fmt(b[2][metric], scale, digits)} "
                       f"(n={len(b[2]['seeds'])}, {b[2]['weights_dense_int8_bytes'][0]:.0f} B)")
        cells.append("–" if fg is None else
                     f"{scale * (fg[2][metric][0] - gated[2][metric][0]):+.{digits}f}")
        lines.append("| " + " | ".join(cells) + " |")
    for name, figure, size in PAPER.get(dataset, []):
      lines.append(f"\nPaper: {name}: {figure}{', ' + size if size else ''} (another "
                   "preprocessing; not re-run here).")
    lines.append("")
  return "\n".join(lines)


# Which export of an LSTM point the fronts plot: TFLite's int16-c LSTM, else σ(f)·c on c's
# grid, else the plain int8 step model (the tables list all of them).
_PLOT_EXPORT_ORDER = ("int16c", "cgrid", None)


def _plotted(agg, dataset, family):
  """The stats a front plots for ``family``: no ablation; per LSTM size, one export."""
  best = {}
  for (d, f, size), s in agg.items():
    if d != dataset or f != family or _is_ablation(s):
      continue
    export = next((k for k in EXPORTS if s["knobs"].get(k)), None)
    base = size[:-len(export) - 1] if export else size
    rank = _PLOT_EXPORT_ORDER.index(export)
    if base not in best or rank < best[base][0]:
      best[base] = (rank, s)
  return [s for _, s in best.values()]


def plot_fronts(agg, path):
  """One panel per dataset: score vs dense int8 weight bytes (log x), ± std, per family."""
  from tf_fastgrnn import fileio  # pylint: disable=import-outside-toplevel
  plt = fileio.pyplot(required="the sweep's fronts")
  import matplotlib.ticker  # pylint: disable=import-outside-toplevel
  datasets = sorted({k[0] for k in agg})
  fig, axes = plt.subplots(1, max(len(datasets), 1), figsize=(5.5 * max(len(datasets), 1),
                                                              4.2), squeeze=False)
  markers = dict(zip(FAMILIES, "os^DvPX"))
  for ax, dataset in zip(axes[0], datasets):
    metric = _score(dataset)
    scale = 1 if metric.endswith("f1") else 100
    for family in FAMILIES:
      pts = sorted((s["weights_dense_int8_bytes"][0], scale * s[metric][0],
                    scale * s[metric][1]) for s in _plotted(agg, dataset, family))
      if not pts:
        continue
      xs, ys, es = map(np.array, zip(*pts))
      line = ax.errorbar(xs, ys, yerr=es, fmt=markers[family], capsize=3, alpha=0.5,
                         label=LABELS[family])
      # The front: points no smaller point of the family beats.
      front, top = [], -math.inf
      for x, y in zip(xs, ys):
        if y > top:
          front.append((x, y))
          top = y
      fx, fy = zip(*front)
      ax.plot(fx, fy, "-", color=line[0].get_color())
    ax.set_xscale("log")
    ticks = [b for b in (128,) + BUDGETS + (16384,)
             if any(b / 2 < s["weights_dense_int8_bytes"][0] < b * 2
                    for k, s in agg.items() if k[0] == dataset)]
    ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%d"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("weights, dense int8 bytes")
    ax.set_ylabel(("int8 TFLM macro-F1" if scale == 1 else "int8 TFLM accuracy %"))
    ax.set_title(dataset)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
  fileio.save_figure(fig, path)


BEGIN, END = "<!-- sweep:begin -->", "<!-- sweep:end -->"


def fill_doc(doc_path, text):
  """Replaces the block between ``BEGIN`` and ``END`` in ``doc_path`` with ``text``.

  Raises:
    ValueError: the document lacks the two marker lines (nothing is written).
  """
  from tf_fastgrnn import fileio  # pylint: disable=import-outside-toplevel
  lines = pathlib.Path(doc_path).read_text().split("\n")
  # Marker lines only: the page's prose may name the markers.
  begin = [i for i, line in enumerate(lines) if line.strip() == BEGIN]
  end = [i for i, line in enumerate(lines) if line.strip() == END]
  if len(begin) != 1 or len(end) != 1 or begin[0] > end[0]:
    raise ValueError(f"{doc_path} needs one line {BEGIN!r} before one line {END!r}")
  fileio.write_text(doc_path, "\n".join(lines[:begin[0] + 1] + [text.strip()] +
                                        lines[end[0]:]))


def write_aggregate(results_dir, report_dir, points=None, doc=None):
  """Writes ``sweep.md``, ``sweep.json`` and ``sweep_fronts.png``; returns the aggregate.

  With ``doc``, the tables also replace the marked block of that document.
  """
  from tf_fastgrnn import fileio  # pylint: disable=import-outside-toplevel
  agg = aggregate(load_results(results_dir, points))
  report_dir = pathlib.Path(report_dir)
  text = markdown(agg)
  fileio.write_text(report_dir / "sweep.md", text)
  if doc:
    # The document has its own title: the tables start at the first dataset.
    fill_doc(doc, text[text.index("## "):] if "## " in text else "(no results yet)")
  fileio.write_json(report_dir / "sweep.json", [
      {"dataset": d, "family": f, "size": z, **{k: (list(v) if isinstance(v, tuple) else v)
                                                 for k, v in s.items()}}
      for (d, f, z), s in sorted(agg.items())])
  if agg:
    plot_fronts(agg, report_dir / "sweep_fronts.png")
  return agg


COMPARED = (("int8_tflm_val_accuracy", "val int8 TFLM %", 100),
            ("val_accuracy_float", "val float %", 100),
            ("int8_tflm_accuracy", "test int8 %", 100),
            ("int8_tflm_macro_f1", "test macro-F1", 1))


def compare(results_dir, trial, base):
  """Markdown rows comparing two points seed by seed, from their result files.

  Args:
    results_dir: the folder of result files.
    trial, base: ``"dataset/family_size"`` (a result file's name without ``_seed<k>.json``).

  Returns:
    the table as a string: per metric of ``COMPARED``, each point's mean ± std over its
    seeds and the mean ± std of (trial - base) over the seeds both have (``n`` each).

  Raises:
    ValueError: a name with no result file.
  """
  def load(name):
    files = sorted(pathlib.Path(results_dir).glob(f"{name}_seed*.json"))
    out = {}
    for f in files:
      seed = f.name[len(pathlib.Path(name).name) + len("_seed"):-len(".json")]
      if seed.isdigit():
        out[int(seed)] = json.loads(f.read_text())
    if not out:
      raise ValueError(f"no result files {results_dir}/{name}_seed<k>.json")
    return out

  runs = {"trial": load(trial), "base": load(base)}

  def fmt(values, scale, sign=""):
    values = [scale * v for v in values]
    if not values:
      return "–"
    digits = 2 if scale == 100 else 3
    sd = float(np.std(values))  # as the tables: the population std over the seeds
    return f"{np.mean(values):{sign}.{digits}f} ± {sd:.{digits}f} (n={len(values)})"

  lines = [f"| metric | {trial} | {base} | paired difference |", "|---|---|---|---|"]
  for key, label, scale in COMPARED:
    got = {k: {s: r.get(key) for s, r in v.items() if r.get(key) is not None}
           for k, v in runs.items()}
    common = sorted(set(got["trial"]) & set(got["base"]))
    delta = [got["trial"][s] - got["base"][s] for s in common]
    lines.append(f"| {label} | {fmt(list(got['trial'].values()), scale)} | "
                 f"{fmt(list(got['base'].values()), scale)} | {fmt(delta, scale, '+')} |")
  return "\n".join(lines) + "\n"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _COMPARE.value:
    if len(_COMPARE.value) != 2:
      print("sweep: --compare takes two names, the trial's and the base's", file=sys.stderr)
      return 2
    try:
      print(compare(_RESULTS_DIR.value, *_COMPARE.value), end="")
    except ValueError as e:
      print(f"sweep: {e}", file=sys.stderr)
      return 1
    return 0
  unknown = set(_FAMILIES.value or ()) - set(FAMILIES)
  if unknown:
    print(f"sweep: unknown families {sorted(unknown)}; choose from {FAMILIES}",
          file=sys.stderr)
    return 2
  points = [p for p in schedule() if p.dataset in _DATASETS.value
            and _MIN_TIER.value <= p.tier <= _MAX_TIER.value
            and (not _FAMILIES.value or p.family in _FAMILIES.value)
            and (not _SIZES.value or p.size in _SIZES.value)]
  if _LIST.value:
    for i, (p, s) in enumerate(_ordered(points, _SEEDS.value)):
      done = (pathlib.Path(_RESULTS_DIR.value) / p.file(s)).exists()
      print(f"{i:4d} tier {p.tier} {p.file(s):50s} {'done' if done else ''}")
    return 0
  if not _TABULATE_ONLY.value:
    if _THREADS.value:
      import tensorflow as tf  # pylint: disable=import-outside-toplevel
      tf.config.threading.set_intra_op_parallelism_threads(_THREADS.value)
      tf.config.threading.set_inter_op_parallelism_threads(_THREADS.value)
    try:
      run(points, _SEEDS.value, _RESULTS_DIR.value, _RUNS_DIR.value,
          shard=(_SHARD.value, _NUM_SHARDS.value), max_points=_MAX_POINTS.value,
          data_dirs={"fsdd": _FSDD_DIR.value})
    except (ValueError, FileNotFoundError) as e:
      print(f"sweep: {e}", file=sys.stderr)
      return 1
  try:
    agg = write_aggregate(_RESULTS_DIR.value, _REPORT_DIR.value, schedule(),
                          doc=_DOC.value or None)
  except (ValueError, FileNotFoundError) as e:
    print(f"sweep: {e}", file=sys.stderr)
    return 1
  print(f"sweep: {len(agg)} points tabulated in {_REPORT_DIR.value}/sweep.md")
  return 0


if __name__ == "__main__":
  app.run(main)
