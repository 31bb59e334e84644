"""The resolved configuration of a run, and the checks of the flags alone.

Kept free of TensorFlow, so ``train_and_export`` refuses bad flags and a bad output
folder at once, before TensorFlow is even imported.
"""

import dataclasses
import json
import math
import os
import pathlib

from data import paths
from pipelines import run_folder

__all__ = ["AUGMENT", "AUGMENT_CHOICES", "CELLS", "Config", "DISTRIBUTE", "LR_SCHEDULES",
           "LSTM_CELLS", "NOT_COMPARED_ON_RESUME", "QAT_CELLS", "READOUTS",
           "dataset_args", "lstm_product_grid", "run_dataset_args",
           "multi_worker_task", "resolve_augment", "validate_config"]

# training.LR_SCHEDULES and distribute.CHOICES, repeated here to keep this module free of
# TensorFlow (a test checks they agree).
LR_SCHEDULES = ("constant", "cosine")
DISTRIBUTE = ("none", "mirrored", "multi_worker")
# stepping.READOUTS, repeated for the same reason.
READOUTS = ("last", "mean")
# models.CELL_TYPES, repeated for the same reason. QAT and pruning cover the FastGRNN
# cells; the baselines train dense and are quantized after training (post-training int8).
CELLS = ("fastgrnn", "fastrnn", "gru", "lstm", "lowrank_lstm")
QAT_CELLS = ("fastgrnn", "fastrnn")
LSTM_CELLS = ("lstm", "lowrank_lstm")  # the cells with a cell state c
_RANKED_CELLS = ("fastgrnn", "fastrnn", "lowrank_lstm")  # take --w_rank/--u_rank
# Flags a resumed run may change: how it runs, not what it computes (a checkpoint
# restores under any strategy; the cache holds the same features wherever it is).
NOT_COMPARED_ON_RESUME = ("resume", "overwrite", "output_dir", "distribute",
                          "feature_cache")

# tf_fastgrnn.augment: the augmentations a run may record (resolved: "auto" and "none" are
# the flag's; a Config holds what runs, None for none).
AUGMENT = (None, "imu", "audio")
AUGMENT_CHOICES = ("none", "auto", "imu", "audio")  # augment.CHOICES
IMU_DATASETS = ("har6", "har2")
IMU_FRONTENDS = ("raw_imu", "imu_gravity")  # data.har.FRONTENDS (without importing numpy)
_AUDIO_DATASETS = ("fsdd", "speech_commands", "google12", "google30")


def resolve_augment(choice, dataset):
  """``--augment`` resolved for ``dataset`` (``augment.resolve``, without TensorFlow):
  None, "imu" or "audio".

  Raises:
    ValueError: ``choice`` is not one of ``AUGMENT_CHOICES``.
  """
  if choice not in AUGMENT_CHOICES:
    raise ValueError(f"--augment must be one of {', '.join(AUGMENT_CHOICES)}, got "
                     f"{choice!r}")
  if choice == "auto":
    choice = ("imu" if dataset in IMU_DATASETS else
              "audio" if dataset in _AUDIO_DATASETS else "none")
  return None if choice == "none" else choice


@dataclasses.dataclass(frozen=True)
class Config:
  """The resolved configuration of a run (train_and_export's flags), as plain values.

  Written as ``flags.json`` beside the artifacts.
  """
  dataset: str
  data_dir: str | None
  cell: str
  units: int
  w_rank: int | None
  u_rank: int | None
  sparsity_w: float
  sparsity_u: float
  epochs: int
  qat: bool
  qat_epochs: int
  batch_size: int
  learning_rate: float
  qat_learning_rate: float
  seed: int
  output_dir: str
  resume: bool
  max_test_windows: int | None
  num_test_vectors: int
  arena_margin: int
  numerics: bool = True
  window_model: bool = True
  audio_frontend: str = "logmel32"
  # HAR features (data.har.FRONTENDS); the default reads run folders made before it.
  imu_frontend: str = "raw_imu"
  overwrite: bool = False
  # Training recipe (training.fit); the defaults are the plain recipe of earlier runs.
  lr_schedule: str = "constant"
  clipnorm: float | None = None
  weight_decay: float = 0.0
  keep_best: bool = False
  # Input augmentation of the training batches (tf_fastgrnn.augment), resolved from
  # --augment: None, "imu" or "audio". None also reads run folders made before it.
  augment: str | None = None
  augment_strength: float = 1.0  # every magnitude of the augmentation times this
  # Settings of the augmentation replacing its defaults (augment.make's ``params``, e.g.
  # {"max_angle_deg": 0}); None: the defaults. Python API and sweep only, no flag.
  augment_params: dict | None = None
  preset: str | None = None
  # Training at scale (issue 14): tf.distribute strategy of the training stages, and the
  # audio feature cache ("default", "none" or a folder).
  distribute: str = "none"
  feature_cache: str = "none"
  # LSTM cells: the int8 step model puts the MUL σ(f)·c on c's grid
  # (export.convert_step_model(forget_product_on_cell_grid=True)). False here, the
  # converter's range, is how run folders made before it (and the sweep's LSTM rows)
  # were exported; train_and_export's flag turns it on. Always False for other cells.
  lstm_product_on_cell_grid: bool = False
  # How a window's logits come from the per-step logits (stepping.READOUTS): "last"
  # step's, or "mean" over the window (the device sums its int8 logits). "last" also
  # reads run folders made before it.
  readout: str = "last"
  # The training stages (float, the pruning phases, QAT) train on the training and the
  # validation windows together and keep the last epoch (keep_best must be off): the
  # deployed model sees more subjects/speakers; validation then holds nothing out (it
  # is still evaluated every epoch, in-sample). False also reads run folders made
  # before it.
  train_on_val: bool = False
  # Tiny data sets (issue 26; training.step_budget): the batch is capped at
  # max_batch_fraction of the training windows and the epochs raised so that every
  # training phase (dense float, each pruning phase, QAT) gets min_phase_steps optimizer
  # steps; with fewer than min_val_windows validation windows the last epoch is kept
  # instead of the best (keep_best), one window being too large a share to choose by.
  # The defaults (off) read run folders made before them; train_and_export's flags turn
  # them on, and bind on no preset's default run.
  min_phase_steps: int = 0
  max_batch_fraction: float = 1.0
  min_val_windows: int = 0


def dataset_args(run):
  """How a run's data is loaded: ``(name, data_dir, options)`` for
  ``data.load_dataset(name, data_dir, **options)``.

  The one place that turns a run's flags into the loader's arguments (the pipeline, and
  every tool that reloads a finished run's data: diff_numerics, bench_fused,
  lstm_int8_loss), so none can load the data differently from the run: the seed of the
  validation split, the IMU front end (``imu_frontend``: 6 or 9 channels), the audio
  front end and its feature cache.

  Args:
    run: a ``Config``, or the dict of a run's ``flags.json``; a field it lacks reads as
      ``Config``'s default (what runs made before the field used).

  Raises:
    ValueError: ``run`` names no dataset.
  """
  values = dataclasses.asdict(run) if isinstance(run, Config) else dict(run)
  defaults = {f.name: f.default for f in dataclasses.fields(Config)
              if f.default is not dataclasses.MISSING}

  def get(name):
    return values.get(name, defaults.get(name))
  name = values.get("dataset")
  if not isinstance(name, str) or not name:
    raise ValueError(f"the run's flags name no dataset (got {name!r})")
  options = {"seed": get("seed") or 0}
  if name in _AUDIO_DATASETS:
    options.update(frontend=get("audio_frontend"), feature_cache=get("feature_cache"))
  elif name in IMU_DATASETS:
    options.update(frontend=get("imu_frontend"))
  return name, get("data_dir"), options


def run_dataset_args(run_dir):
  """``dataset_args`` of the finished run in ``run_dir``, read from its ``flags.json``.

  Raises:
    FileNotFoundError / ValueError: in one line, naming ``flags.json`` and what it lacks.
  """
  path = pathlib.Path(run_dir) / "flags.json"
  if not path.is_file():
    raise FileNotFoundError(f"{path} is missing: is {run_dir} a train_and_export run?")
  try:
    values = json.loads(path.read_text())
  except (OSError, UnicodeDecodeError, ValueError) as e:
    raise ValueError(f"{path}: not readable JSON ({e})") from e
  if not isinstance(values, dict):
    raise ValueError(f"{path}: must hold a JSON object of flags, got "
                     f"{type(values).__name__}")
  try:
    return dataset_args(values)
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from e


def lstm_product_grid(config):
  """Where the int8 step model quantizes an LSTM's σ(f)·c, in words (the log, the
  report); None for a cell without c."""
  if config.cell not in LSTM_CELLS:
    return None
  if config.lstm_product_on_cell_grid:
    return "the cell state c's grid (--lstm_product_on_cell_grid)"
  return ("the converter's range, calibrated on the float c "
          "(--nolstm_product_on_cell_grid)")


def multi_worker_task(tf_config_text):
  """``(index, is_chief)`` of this process in ``TF_CONFIG``, read without TensorFlow.

  The chief is the ``chief`` task if the cluster has one, else worker 0 (TensorFlow's
  rule); it alone writes the run folder.

  Raises:
    ValueError: TF_CONFIG is missing or does not name this task among the workers.
  """
  if not tf_config_text:
    raise ValueError("--distribute=multi_worker needs the TF_CONFIG environment variable "
                     "(JSON: cluster.worker addresses and this task; see "
                     "docs/training_at_scale.md, 'Several machines')")
  try:
    conf = json.loads(tf_config_text)
    cluster, task = conf["cluster"], conf["task"]
    workers = cluster["worker"]
    kind, index = task["type"], int(task["index"])
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f"TF_CONFIG must be JSON with cluster.worker (a list of host:port) "
                     f"and task.type/task.index, got {tf_config_text!r}") from e
  size = {"worker": len(workers) if isinstance(workers, list) else 0,
          "chief": len(cluster.get("chief", []))}
  if kind not in size or not 0 <= index < size[kind]:
    raise ValueError(f"TF_CONFIG: task {kind} {index} is not in the cluster "
                     f"({size['worker']} workers, {size['chief']} chief)")
  chief = kind == "chief" or (index == 0 and not size["chief"])
  return index, chief


def validate_config(config, data_given=False):
  """Raises ValueError naming the flags that contradict each other or are out of range.

  ``data_given``: the caller hands the loaded data over (the sweep, the benchmark), so
  no ``--data_dir`` is needed. Also checks that ``--output_dir`` can be used (``run_folder.check``), so a bad flag
  stops the run before any data is loaded or anything is written.
  """
  problems = []
  if config.cell not in CELLS:
    problems.append(f"--cell must be one of {', '.join(CELLS)}, got {config.cell!r}")
  elif config.cell not in QAT_CELLS:
    if config.qat:
      problems.append(f"--cell={config.cell} is quantized after training (QAT covers "
                      f"{' and '.join(QAT_CELLS)}): pass --noqat")
    if config.sparsity_w or config.sparsity_u:
      problems.append(f"--cell={config.cell} trains dense (pruning covers "
                      f"{' and '.join(QAT_CELLS)}): pass --sparsity_w=0 --sparsity_u=0")
  if config.cell in CELLS and config.cell not in _RANKED_CELLS and (
      config.w_rank is not None or config.u_rank is not None):
    problems.append(f"--cell={config.cell} has full-rank matrices: --w_rank and --u_rank "
                    f"do not apply (got {config.w_rank}, {config.u_rank})")
  if config.cell == "lowrank_lstm" and (config.w_rank is None or config.u_rank is None):
    problems.append(f"--cell=lowrank_lstm needs --w_rank and --u_rank (got "
                    f"{config.w_rank}, {config.u_rank})")
  if config.lstm_product_on_cell_grid and config.cell not in LSTM_CELLS:
    problems.append(f"lstm_product_on_cell_grid applies to --cell="
                    f"{'|'.join(LSTM_CELLS)} only (a Config holds what runs), got "
                    f"--cell={config.cell}")
  for name in ("units", "epochs", "batch_size", "num_test_vectors"):
    if getattr(config, name) <= 0:
      problems.append(f"--{name} must be positive, got {getattr(config, name)}")
  for name in ("sparsity_w", "sparsity_u"):
    value = getattr(config, name)
    if not 0.0 <= value < 1.0:
      problems.append(f"--{name} is the fraction zeroed and must be in [0, 1), got {value}")
  if config.qat and config.qat_epochs <= 0:
    problems.append(f"--qat needs --qat_epochs > 0, got {config.qat_epochs} "
                    "(or pass --noqat)")
  for name in ("learning_rate", "qat_learning_rate"):
    value = getattr(config, name)
    if not (math.isfinite(value) and value > 0):
      problems.append(f"--{name} must be a finite number > 0, got {value}")
  if config.readout not in READOUTS:
    problems.append(f"--readout must be one of {', '.join(READOUTS)}, got "
                    f"{config.readout!r}")
  if config.train_on_val and config.keep_best:
    problems.append("--train_on_val trains on the validation windows, so no epoch can be "
                    "chosen on them: pass --nokeep_best (the last epoch is kept)")
  for name in ("min_phase_steps", "min_val_windows"):
    if getattr(config, name) < 0:
      problems.append(f"--{name} must be >= 0 (0: off), got {getattr(config, name)}")
  if not 0 < config.max_batch_fraction <= 1:
    problems.append(f"--max_batch_fraction must be in (0, 1] (1: off), got "
                    f"{config.max_batch_fraction}")
  if config.lr_schedule not in LR_SCHEDULES:
    problems.append(f"--lr_schedule must be one of {LR_SCHEDULES}, got "
                    f"{config.lr_schedule!r}")
  if config.clipnorm is not None and not (math.isfinite(config.clipnorm)
                                          and config.clipnorm > 0):
    problems.append(f"--clipnorm must be a finite number > 0 (or unset), got "
                    f"{config.clipnorm}")
  if not (math.isfinite(config.weight_decay) and config.weight_decay >= 0):
    problems.append(f"--weight_decay must be a finite number >= 0, got "
                    f"{config.weight_decay}")
  if config.augment not in AUGMENT:
    problems.append(f"--augment must be one of none, auto, imu, audio (a Config holds "
                    f"None, imu or audio), got {config.augment!r}")
  if config.augment_params is not None and not isinstance(config.augment_params, dict):
    problems.append(f"augment_params must be None or a dict of augment settings, got "
                    f"{config.augment_params!r}")
  if not (math.isfinite(config.augment_strength) and config.augment_strength > 0):
    problems.append(f"--augment_strength must be a finite number > 0, got "
                    f"{config.augment_strength}")
  if config.imu_frontend not in IMU_FRONTENDS:
    problems.append(f"--imu_frontend must be one of {', '.join(IMU_FRONTENDS)}, got "
                    f"{config.imu_frontend!r}")
  elif config.imu_frontend != "raw_imu" and config.dataset not in IMU_DATASETS:
    problems.append(f"--imu_frontend={config.imu_frontend} applies to the IMU datasets "
                    f"({', '.join(IMU_DATASETS)}), got --dataset={config.dataset}")
  if config.arena_margin < 0:
    problems.append(f"--arena_margin must be >= 0, got {config.arena_margin}")
  if config.seed < 0:
    problems.append(f"--seed must be >= 0, got {config.seed}")
  if config.max_test_windows is not None and config.max_test_windows <= 0:
    problems.append(f"--max_test_windows must be positive (or unset: all), got "
                    f"{config.max_test_windows}")
  for name in ("w_rank", "u_rank"):
    value = getattr(config, name)
    if value is not None and value < 1:
      problems.append(f"--{name} must be a positive rank (0 or unset: full rank), "
                      f"got {value}")
  if config.u_rank is not None and config.u_rank > config.units:
    problems.append(f"--u_rank={config.u_rank} exceeds --units={config.units}")
  if config.w_rank is not None and config.w_rank > config.units:
    problems.append(f"--w_rank={config.w_rank} exceeds --units={config.units}")
  if config.dataset == "npz" and not config.data_dir and not data_given:
    problems.append("--dataset=npz needs --data_dir=<file.npz>")
  elif not data_given:
    try:  # by os.stat only: a FIFO or a device given as data is never opened
      paths.check_data_dir(config.dataset, config.data_dir)
    except FileNotFoundError:
      pass  # a missing path: the loader refuses it in one line, after the flags
    except ValueError as e:
      problems.append(f"--data_dir: {e}")
  if config.resume and config.overwrite:
    problems.append("--resume continues the run in --output_dir, --overwrite replaces "
                    "it: pass one of them")
  chief = True
  if config.distribute not in DISTRIBUTE:
    problems.append(f"--distribute must be one of {', '.join(DISTRIBUTE)}, got "
                    f"{config.distribute!r}")
  elif config.distribute == "multi_worker":
    try:
      _, chief = multi_worker_task(os.environ.get("TF_CONFIG"))
    except ValueError as e:
      problems.append(str(e))
  if config.feature_cache not in ("none", "default"):
    cache = pathlib.Path(config.feature_cache).expanduser()
    if cache.exists() and not cache.is_dir():
      problems.append(f"--feature_cache must be none, default or a folder, got "
                      f"{config.feature_cache!r} (a file)")
  if not problems and not chief:
    # Another worker only trains, in step with the chief, and writes nothing there; to
    # resume it reads the chief's run folder, which must be visible at the same path.
    if config.resume and not (pathlib.Path(config.output_dir) / "flags.json").is_file():
      problems.append(f"--resume with --distribute=multi_worker: this worker reads the "
                      f"chief's run folder {config.output_dir}, which it cannot see; put "
                      f"--output_dir on a file system every worker mounts at that path")
  elif not problems:
    try:
      run_folder.check(config.output_dir, resume=config.resume,
                       overwrite=config.overwrite)
    except run_folder.RunFolderError as e:
      problems.append(str(e))
  if problems:
    raise ValueError("; ".join(problems))
