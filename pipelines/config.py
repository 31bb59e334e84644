"""The resolved configuration of a run (``Config``: ``Spec``'s flat view plus how the
run runs), its ``flags.json``, and the checks that need the machine (folders, TF_CONFIG).

Kept free of TensorFlow, so ``train_and_export`` refuses bad flags and a bad output
folder at once, before TensorFlow is even imported. The specification itself
(``tf_fastgrnn.spec``: every default, the presets, the checks of the values) is loaded
without ``tf_fastgrnn/__init__.py``, which imports TensorFlow.
"""

import dataclasses
import json
import os
import pathlib

from data import paths
from pipelines import _light
from pipelines import run_folder


spec_lib = _light.load("spec")

__all__ = ["CELLS", "Config", "DISTRIBUTE", "IMU_DATASETS", "IMU_FRONTENDS", "LR_SCHEDULES",
           "LSTM_CELLS", "NOT_COMPARED_ON_RESUME", "dataset_args", "lstm_product_grid",
           "multi_worker_task", "read_flags", "resolve_augment", "run_dataset_args",
           "spec_lib", "validate_config"]

# The choices the CLIs use, defined once in tf_fastgrnn.spec (the same objects).
LR_SCHEDULES = spec_lib.LR_SCHEDULES
CELLS = spec_lib.CELLS
LSTM_CELLS = spec_lib.LSTM_CELLS
IMU_DATASETS = spec_lib.IMU_DATASETS
IMU_FRONTENDS = spec_lib.IMU_FRONTENDS
_AUDIO_DATASETS = spec_lib.AUDIO_DATASETS
resolve_augment = spec_lib.resolve_augment
DISTRIBUTE = spec_lib.DISTRIBUTE
# Flags a resumed run may change: how it runs, not what it computes (a checkpoint
# restores under any strategy; the cache holds the same features wherever it is).
NOT_COMPARED_ON_RESUME = ("resume", "overwrite", "output_dir", "distribute",
                          "feature_cache")

# How a run runs, beside its Spec (not part of what it computes): the run folder,
# --resume/--overwrite, the tf.distribute strategy, the preset's name (a record).
_RUN_FIELDS = (("output_dir", str), ("resume", bool), ("overwrite", bool),
               ("distribute", str), ("preset", "str | None"))
RUN_DEFAULTS = {"resume": False, "overwrite": False, "distribute": "none", "preset": None}


def _spec_fields():
  hints = {}
  for part in ("model", "sparsity", "recipe", "data", "export"):
    kind = type(getattr(spec_lib.Spec(), part))
    hints.update({f.name: f.type for f in dataclasses.fields(kind)})
  return [(name, hints["w" if name == "sparsity_w" else "u" if name == "sparsity_u"
                       else name]) for name in spec_lib.FLAT_NAMES]


class _ConfigMethods:
  """What ``Config`` adds to its fields."""

  @classmethod
  def from_spec(cls, spec, output_dir, **run):
    """The ``Config`` of ``spec`` run into ``output_dir``; ``run``: ``resume``,
    ``overwrite``, ``distribute``, ``preset`` (else ``RUN_DEFAULTS``).

    ``lstm_product_on_cell_grid`` becomes what runs: False for a cell without c.
    """
    unknown = set(run) - set(RUN_DEFAULTS)
    if unknown:
      raise ValueError(f"unknown run options {sorted(unknown)} (known: "
                       f"{', '.join(RUN_DEFAULTS)})")
    flat = spec.flat()
    flat["lstm_product_on_cell_grid"] = (flat["lstm_product_on_cell_grid"]
                                         and flat["cell"] in LSTM_CELLS)
    return cls(**flat, schema_version=spec.schema_version, output_dir=str(output_dir),
               **{**RUN_DEFAULTS, **run})

  @classmethod
  def from_flags(cls, values):
    """The ``Config`` of a ``flags.json`` dict of any layout (``spec.migrate``).

    Raises:
      ValueError: a field missing or unknown, named.
    """
    values = spec_lib.migrate(values)
    names = {f.name for f in dataclasses.fields(cls)}
    missing, unknown = names - set(values), set(values) - names
    if missing or unknown:
      raise ValueError(f"the run's flags lack {sorted(missing)}" if missing else
                       f"the run's flags hold unknown fields {sorted(unknown)}")
    return cls(**values)

  @property
  def spec(self):
    """The run's ``Spec`` (checked: ValueError naming a bad value)."""
    return spec_lib.Spec.from_flat(dataclasses.asdict(self))


# Spec's flat view (every field under its flag's name, tf_fastgrnn.spec.FLAT_NAMES) and
# the run fields: built from the Spec's fields, so no field or default is restated.
# Written as ``flags.json`` beside the artifacts.
Config = dataclasses.make_dataclass(
    "Config", [*_spec_fields(), ("schema_version", int), *_RUN_FIELDS],
    bases=(_ConfigMethods,), frozen=True)
Config.__module__ = __name__
Config.__doc__ = ("The resolved configuration of a run: ``Spec.flat()``, its "
                  "``schema_version`` and how it runs (output_dir, resume, overwrite, "
                  "distribute, preset). Build it with ``Config.from_spec`` or "
                  "``Config.from_flags``.")


def read_flags(run_dir):
  """The ``flags.json`` of the run in ``run_dir`` as a dict of the current layout
  (``spec.migrate``: any earlier layout upgraded).

  Raises:
    FileNotFoundError / ValueError: in one line, naming ``flags.json``.
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
    return spec_lib.migrate(values)
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from e


def dataset_args(run):
  """How a run's data is loaded: ``(name, data_dir, options)`` for
  ``data.load_dataset(name, data_dir, **options)``.

  The one place that turns a run's flags into the loader's arguments (the pipeline, and
  every tool that reloads a finished run's data: diff_numerics, bench_fused,
  lstm_int8_loss), so none can load the data differently from the run: the seed of the
  validation split, the IMU front end (``imu_frontend``: 6 or 9 channels), the audio
  front end and its feature cache.

  Args:
    run: a ``Config``, or the dict of a run's ``flags.json`` of any layout (a field an
      older layout lacks reads as runs of that layout used: ``spec.migrate``).

  Raises:
    ValueError: ``run`` names no dataset.
  """
  values = (dataclasses.asdict(run) if isinstance(run, Config)
            else spec_lib.migrate(dict(run)))
  name = values.get("dataset")
  if not isinstance(name, str) or not name:
    raise ValueError(f"the run's flags name no dataset (got {name!r})")
  options = {"seed": values.get("seed") or 0}
  if name in _AUDIO_DATASETS:
    options.update(frontend=values["audio_frontend"],
                   feature_cache=values["feature_cache"])
  elif name in IMU_DATASETS:
    options.update(frontend=values["imu_frontend"])
  return name, values.get("data_dir"), options


def run_dataset_args(run_dir):
  """``dataset_args`` of the finished run in ``run_dir``, read from its ``flags.json``.

  Raises:
    FileNotFoundError / ValueError: in one line, naming ``flags.json`` and what it lacks.
  """
  values = read_flags(run_dir)
  try:
    return dataset_args(values)
  except ValueError as e:
    raise ValueError(f"{pathlib.Path(run_dir) / 'flags.json'}: {e}") from e


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
  """Raises ValueError naming the flags that contradict each other or are out of range
  (``Spec``'s checks) or that the machine refuses (data path, folders, TF_CONFIG).

  ``data_given``: the caller hands the loaded data over (the sweep, the benchmark), so
  no ``--data_dir`` is needed. Also checks that ``--output_dir`` can be used (``run_folder.check``), so a bad flag
  stops the run before any data is loaded or anything is written.
  """
  problems = []
  try:  # every value and how they fit together: tf_fastgrnn.spec's checks
    config.spec  # pylint: disable=pointless-statement
  except ValueError as e:
    problems.append(str(e))
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
