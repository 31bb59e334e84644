"""The resolved configuration of a run, and the checks of the flags alone.

Kept free of TensorFlow, so ``train_and_export`` refuses bad flags and a bad output
folder at once, before TensorFlow is even imported.
"""

import dataclasses
import math

from pipelines import run_folder

__all__ = ["Config", "LR_SCHEDULES", "validate_config"]

# training.LR_SCHEDULES, repeated here to keep this module free of TensorFlow (a test
# checks the two agree).
LR_SCHEDULES = ("constant", "cosine")


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
  overwrite: bool = False
  # Training recipe (training.fit); the defaults are the plain recipe of earlier runs.
  lr_schedule: str = "constant"
  clipnorm: float | None = None
  weight_decay: float = 0.0
  keep_best: bool = False
  preset: str | None = None


def validate_config(config, data_given=False):
  """Raises ValueError naming the flags that contradict each other or are out of range.

  ``data_given``: the caller hands the loaded data over (the sweep, the benchmark), so
  no ``--data_dir`` is needed. Also checks that ``--output_dir`` can be used (``run_folder.check``), so a bad flag
  stops the run before any data is loaded or anything is written.
  """
  problems = []
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
  if config.resume and config.overwrite:
    problems.append("--resume continues the run in --output_dir, --overwrite replaces "
                    "it: pass one of them")
  if not problems:
    try:
      run_folder.check(config.output_dir, resume=config.resume)
    except run_folder.RunFolderError as e:
      problems.append(str(e))
  if problems:
    raise ValueError("; ".join(problems))
