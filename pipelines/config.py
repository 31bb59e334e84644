"""The resolved configuration of a run, and the checks of the flags alone.

Kept free of TensorFlow, so ``train_and_export`` refuses bad flags and a bad output
folder at once, before TensorFlow is even imported.
"""

import dataclasses
import json
import math
import os

from pipelines import run_folder

__all__ = ["Config", "validate_config"]


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
  distribute: str = "none"  # tf.distribute strategy of the training stages (issue 14)
  feature_cache: str | None = "default"  # audio feature cache folder, "default", "none"


def validate_config(config):
  """Raises ValueError naming the flags that contradict each other or are out of range.

  Also checks that ``--output_dir`` can be used (``run_folder.check``), so a bad flag
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
  if config.dataset == "npz" and not config.data_dir:
    problems.append("--dataset=npz needs --data_dir=<file.npz>")
  if config.resume and config.overwrite:
    problems.append("--resume continues the run in --output_dir, --overwrite replaces "
                    "it: pass one of them")
  if config.distribute not in ("none", "mirrored", "multi_worker"):
    problems.append(f"--distribute must be none, mirrored or multi_worker, got "
                    f"{config.distribute!r}")
  if config.distribute == "multi_worker":
    try:
      tf_config = json.loads(os.environ.get("TF_CONFIG") or "null")
      tf_config["cluster"]["worker"], tf_config["task"]["index"]  # pylint: disable=pointless-statement
    except (ValueError, KeyError, TypeError):
      problems.append("--distribute=multi_worker needs TF_CONFIG (JSON with "
                      "cluster.worker and task.type/index; see README 'Several machines')")
  if not problems:
    try:
      run_folder.check(config.output_dir, resume=config.resume)
    except run_folder.RunFolderError as e:
      problems.append(str(e))
  if problems:
    raise ValueError("; ".join(problems))
