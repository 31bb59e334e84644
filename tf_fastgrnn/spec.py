"""What a run is: model, sparsity, training recipe, data and export, as frozen values.

Every default of a run is defined once, here: the command line's flags take their
defaults from these dataclasses, the presets are partial values of them, and the sweep
and the benchmarks build their runs with ``Spec.preset(...)`` and ``replace``.

This module imports nothing but the standard library (no TensorFlow), so a command line
checks its flags at once. ``pipelines.config`` loads it without running
``tf_fastgrnn/__init__.py`` (which imports TensorFlow).

Old run folders: ``migrate`` upgrades the flat dict of a ``flags.json`` of any earlier
layout to ``SCHEMA_VERSION``, filling each field a layout lacked with the value runs of
that layout used (not with today's default).

Example:
  >>> spec = Spec.preset("har6")
  >>> spec.data.imu_frontend, spec.recipe.train_on_val, spec.recipe.keep_best
  ('imu_gravity', True, False)
  >>> spec.replace(recipe={"epochs": 6}).recipe.epochs
  6
  >>> Spec.from_json(spec.to_json()) == spec
  True
"""

import dataclasses
import json
import math
import numbers

__all__ = ["AUDIO_DATASETS", "AUGMENT", "AUGMENT_CHOICES", "CELLS", "DISTRIBUTE",
           "DataSpec", "ExportSpec", "IMU_DATASETS", "IMU_FRONTENDS", "AUDIO_FRONTENDS", "LR_SCHEDULES",
           "LSTM_CELLS", "ModelSpec", "PRESETS", "QAT_CELLS", "READOUTS", "RANKED_CELLS",
           "Recipe", "SCHEMA_VERSION", "SparsitySpec", "Spec", "flat_changes", "migrate",
           "resolve_augment"]

# The choices of the fields, defined here alone (TensorFlow-free) and imported by the
# modules that act on them (training, stepping, models, augment, distribute; the CLIs).
LR_SCHEDULES = ("constant", "cosine")
READOUTS = ("last", "mean")
# QAT and pruning cover the FastGRNN cells; the baselines train dense and are quantized
# after training (post-training int8).
CELLS = ("fastgrnn", "fastrnn", "gru", "lstm", "lowrank_lstm")
QAT_CELLS = ("fastgrnn", "fastrnn")
LSTM_CELLS = ("lstm", "lowrank_lstm")  # the cells with a cell state c
RANKED_CELLS = ("fastgrnn", "fastrnn", "lowrank_lstm")  # take w_rank/u_rank
# The augmentations a run may record (resolved: the flag's "auto" and "none" become one
# of these; None for none), and the flag's choices.
AUGMENT = (None, "imu", "audio")
AUGMENT_CHOICES = ("none", "auto", "imu", "audio")
IMU_DATASETS = ("har6", "har2")
AUDIO_DATASETS = ("fsdd", "speech_commands", "google12", "google30")
IMU_FRONTENDS = ("raw_imu", "imu_gravity")
AUDIO_FRONTENDS = ("logmel32", "micro32")
# --distribute's choices: a run option (pipelines.config.Config), not a Spec field.
DISTRIBUTE = ("none", "mirrored", "multi_worker")

# 1: the first layout with a schema_version (flags.json of runs before it: version 0).
SCHEMA_VERSION = 1


def resolve_augment(choice, dataset):
  """The flag ``--augment`` resolved for ``dataset``: None, "imu" or "audio".

  ``auto`` picks by the dataset's sensor (imu for HAR, audio for spoken words, none for
  anything else).

  Raises:
    ValueError: ``choice`` is not one of ``AUGMENT_CHOICES``.
  """
  if choice not in AUGMENT_CHOICES:
    raise ValueError(f"--augment must be one of {', '.join(AUGMENT_CHOICES)}, got "
                     f"{choice!r}")
  if choice == "auto":
    choice = ("imu" if dataset in IMU_DATASETS else
              "audio" if dataset in AUDIO_DATASETS else "none")
  return None if choice == "none" else choice


def _is_int(value):
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
  return (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and math.isfinite(value))


class _Part:
  """Shared by the parts: validation at construction, ``replace``, dict form."""

  def __post_init__(self):
    problems = self._problems()
    if problems:
      raise ValueError("; ".join(problems))

  def _problems(self):
    return []

  def replace(self, **changes):
    """A copy with ``changes`` (checked like any new value)."""
    return dataclasses.replace(self, **changes)

  def to_dict(self):
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ModelSpec(_Part):
  """The classifier ``Input[T, D] → RNN(cell) → Dense(C)`` (``models.sequence_classifier``).

  Args:
    cell: one of ``CELLS``; gru, lstm, lowrank_lstm are the baselines (trained dense,
      int8 after training).
    units: hidden units H.
    w_rank, u_rank: ranks of W and U (None: full); fastgrnn, fastrnn, lowrank_lstm only
      (lowrank_lstm needs both).
    readout: how a window's logits come from the per-step logits: ``last`` step's, or
      ``mean`` over the window (the device sums its int8 logits).
  """
  cell: str = "fastgrnn"
  units: int = 48
  w_rank: int | None = None
  u_rank: int | None = 16
  readout: str = "last"

  def _problems(self):
    problems = []
    if self.cell not in CELLS:
      problems.append(f"--cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
    elif self.cell not in RANKED_CELLS and (self.w_rank is not None
                                            or self.u_rank is not None):
      problems.append(f"--cell={self.cell} has full-rank matrices: --w_rank and --u_rank "
                      f"do not apply (got {self.w_rank}, {self.u_rank})")
    if self.cell == "lowrank_lstm" and (self.w_rank is None or self.u_rank is None):
      problems.append(f"--cell=lowrank_lstm needs --w_rank and --u_rank (got "
                      f"{self.w_rank}, {self.u_rank})")
    if not _is_int(self.units) or self.units <= 0:
      problems.append(f"--units must be positive, got {self.units}")
    for name in ("w_rank", "u_rank"):
      value = getattr(self, name)
      if value is not None and (not _is_int(value) or value < 1):
        problems.append(f"--{name} must be a positive rank (0 or unset: full rank), "
                        f"got {value}")
      elif value is not None and _is_int(self.units) and 0 < self.units < value:
        problems.append(f"--{name}={value} exceeds --units={self.units}")
    if self.readout not in READOUTS:
      problems.append(f"--readout must be one of {', '.join(READOUTS)}, got "
                      f"{self.readout!r}")
    return problems


@dataclasses.dataclass(frozen=True)
class SparsitySpec(_Part):
  """Targets and timing of the three-phase training (``pruning.train_three_phase``).

  Args:
    w: fraction of the entries of W (or of each of W1, W2) ZEROED, in [0, 1). TF-MOT's
      meaning; EdgeML's ``sW`` is the fraction kept (``sW = 1 - w``). 0 and ``u`` 0: the
      model trains dense (no pruning).
    u: likewise for U (or each of U1, U2).
    phase_fractions: fractions of the epochs for (dense, IHT, sparse retraining); they
      must sum to 1. Phase boundaries fall on epoch ends: ``round(epochs * f1)`` and
      ``round(epochs * (f1 + f2))``.
    frequency: training steps between two hard thresholdings in the IHT phase (EdgeML:
      15).
  """
  w: float = 0.5
  u: float = 0.5
  phase_fractions: tuple = (1 / 3, 1 / 3, 1 / 3)
  frequency: int = 15

  def __post_init__(self):
    fractions = self.phase_fractions
    if isinstance(fractions, list):  # from JSON
      object.__setattr__(self, "phase_fractions", tuple(fractions))
    super().__post_init__()
    for name in ("w", "u"):
      object.__setattr__(self, name, float(getattr(self, name)))
    object.__setattr__(self, "phase_fractions",
                       tuple(float(f) for f in self.phase_fractions))

  @property
  def sparse(self):
    """True if the run prunes (any target above 0)."""
    return bool(self.w or self.u)

  def _problems(self):
    problems = []
    for name in ("w", "u"):
      value = getattr(self, name)
      if not _is_number(value) or not 0.0 <= value < 1.0:
        problems.append(f"--sparsity_{name} is the fraction zeroed and must be in [0, 1), "
                        f"got {value!r}")
    fractions = self.phase_fractions
    if not isinstance(fractions, tuple) or len(fractions) != 3 or any(
        not _is_number(f) or not f > 0 for f in fractions):
      problems.append(f"phase_fractions must be three numbers > 0 (dense, IHT, sparse), "
                      f"got {fractions!r}")
    elif not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
      problems.append(f"phase_fractions must sum to 1, got {fractions!r} "
                      f"(sum {sum(fractions):.6g})")
    if not _is_int(self.frequency) or self.frequency <= 0:
      problems.append(f"frequency must be a positive int (steps between hard "
                      f"thresholdings), got {self.frequency!r}")
    return problems

  def phase_epochs(self, epochs):
    """The epochs of each phase, ``(dense, iht, sparse)``, summing to ``epochs``.

    Raises:
      ValueError: a phase would get no epoch.
    """
    f1, f2, _ = self.phase_fractions
    b1, b2 = round(epochs * f1), round(epochs * (f1 + f2))
    counts = (b1, b2 - b1, epochs - b2)
    if min(counts) < 1:
      raise ValueError(
          f"epochs={epochs} cannot hold three phases with phase_fractions="
          f"{self.phase_fractions} (epochs per phase {counts}); use more epochs (at least "
          f"3 with equal thirds) or phase_fractions that give every phase an epoch")
    return counts


@dataclasses.dataclass(frozen=True)
class Recipe(_Part):
  """How the model trains (``training.fit``, ``pruning.train_three_phase``, QAT).

  Args:
    epochs: float training epochs (with sparsity: all three phases).
    qat_epochs: epochs of the quantization-aware fine-tuning.
    batch_size: windows per step (under ``tf.distribute``: the global batch).
    learning_rate: Adam's rate of the float training; ``qat_learning_rate`` of QAT.
    lr_schedule: ``constant``, or ``cosine`` (decay within each pruning phase and over
      QAT, down to ``min_lr_fraction`` of the rate).
    clipnorm: each gradient clipped to this L2 norm; None: no clipping.
    weight_decay: decoupled weight decay (AdamW) on the weight matrices; 0: plain Adam.
    keep_best: keep the epoch with the best validation accuracy (of the fixed-support
      phase when pruning; of QAT) instead of the last.
    train_on_val: train on the training and the validation windows together (the last
      epoch kept: needs ``keep_best=False``).
    augment: augmentation of the training batches (``tf_fastgrnn.augment``): None,
      ``imu`` or ``audio`` (the flag's ``auto`` resolved by ``resolve_augment``);
      ``augment_strength`` scales every magnitude; ``augment_params`` replaces settings
      of ``augment.make`` (e.g. ``{"max_angle_deg": 0}``; no flag).
    min_phase_steps, max_batch_fraction, min_val_windows: the tiny-data rules
      (``training.step_budget``): the batch is at most ``max_batch_fraction`` of the
      training windows, the epochs raised so every phase gets ``min_phase_steps``
      optimizer steps, and with fewer than ``min_val_windows`` validation windows the
      last epoch is kept; 0, 1, 0: off.
    label_smoothing: the cross-entropy's targets are ``(1 - ε)·onehot + ε/C`` (ε this
      value, C the classes; ``training.classification_loss``); 0: plain one-hot.
  """
  epochs: int = 45
  qat_epochs: int = 8
  batch_size: int = 64
  learning_rate: float = 0.01
  qat_learning_rate: float = 0.001
  lr_schedule: str = "cosine"
  min_lr_fraction: float = 0.05
  clipnorm: float | None = 5.0
  weight_decay: float = 0.0
  keep_best: bool = True
  train_on_val: bool = False
  augment: str | None = None
  augment_strength: float = 1.0
  augment_params: dict | None = None
  min_phase_steps: int = 256
  max_batch_fraction: float = 0.25
  min_val_windows: int = 100
  label_smoothing: float = 0.0

  def _problems(self):
    problems = []
    for name in ("epochs", "batch_size"):
      if not _is_int(getattr(self, name)) or getattr(self, name) <= 0:
        problems.append(f"--{name} must be positive, got {getattr(self, name)}")
    if not _is_int(self.qat_epochs) or self.qat_epochs < 0:
      problems.append(f"--qat_epochs must be >= 0, got {self.qat_epochs}")
    for name in ("learning_rate", "qat_learning_rate"):
      value = getattr(self, name)
      if not (_is_number(value) and value > 0):
        problems.append(f"--{name} must be a finite number > 0, got {value}")
    if self.lr_schedule not in LR_SCHEDULES:
      problems.append(f"--lr_schedule must be one of {LR_SCHEDULES}, got "
                      f"{self.lr_schedule!r}")
    if not (_is_number(self.min_lr_fraction) and 0 <= self.min_lr_fraction <= 1):
      problems.append(f"min_lr_fraction must be a number in [0, 1], got "
                      f"{self.min_lr_fraction!r}")
    if self.clipnorm is not None and not (_is_number(self.clipnorm) and self.clipnorm > 0):
      problems.append(f"--clipnorm must be a finite number > 0 (or unset), got "
                      f"{self.clipnorm}")
    if not (_is_number(self.weight_decay) and self.weight_decay >= 0):
      problems.append(f"--weight_decay must be a finite number >= 0, got "
                      f"{self.weight_decay}")
    if self.train_on_val and self.keep_best:
      problems.append("--train_on_val trains on the validation windows, so no epoch can "
                      "be chosen on them: pass --nokeep_best (the last epoch is kept)")
    if self.augment not in AUGMENT:
      problems.append(f"--augment must be one of none, auto, imu, audio (a run holds "
                      f"None, imu or audio), got {self.augment!r}")
    if self.augment_params is not None and not isinstance(self.augment_params, dict):
      problems.append(f"augment_params must be None or a dict of augment settings, got "
                      f"{self.augment_params!r}")
    if not (_is_number(self.augment_strength) and self.augment_strength > 0):
      problems.append(f"--augment_strength must be a finite number > 0, got "
                      f"{self.augment_strength}")
    for name in ("min_phase_steps", "min_val_windows"):
      if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
        problems.append(f"--{name} must be >= 0 (0: off), got {getattr(self, name)}")
    if not (_is_number(self.label_smoothing) and 0 <= self.label_smoothing < 1):
      problems.append(f"--label_smoothing must be in [0, 1) (0: off), got "
                      f"{self.label_smoothing}")
    if not (_is_number(self.max_batch_fraction) and 0 < self.max_batch_fraction <= 1):
      problems.append(f"--max_batch_fraction must be in (0, 1] (1: off), got "
                      f"{self.max_batch_fraction}")
    return problems

  def qat(self):
    """The recipe of the QAT fine-tuning: ``qat_epochs`` epochs at ``qat_learning_rate``."""
    return dataclasses.replace(self, epochs=self.qat_epochs,
                               learning_rate=self.qat_learning_rate)


@dataclasses.dataclass(frozen=True)
class DataSpec(_Part):
  """The data a run loads (``data.load_dataset``).

  Args:
    dataset: har6, har2, fsdd, google12, google30, speech_commands or npz.
    data_dir: a local copy of the data (audio sets) or the ``.npz`` file; None: the
      default source.
    imu_frontend: HAR features (``raw_imu``: 6 raw channels; ``imu_gravity``: 9).
    audio_frontend: audio features (``logmel32``, ``micro32``).
    feature_cache: audio features kept across runs: ``default``, ``none`` or a folder.
    seed: the validation split, the initialisation and the training order.
  """
  dataset: str = "har6"
  data_dir: str | None = None
  imu_frontend: str = "raw_imu"
  audio_frontend: str = "logmel32"
  feature_cache: str = "default"
  seed: int = 0

  def _problems(self):
    problems = []
    if not isinstance(self.dataset, str) or not self.dataset:
      problems.append(f"--dataset must name a dataset, got {self.dataset!r}")
    if self.imu_frontend not in IMU_FRONTENDS:
      problems.append(f"--imu_frontend must be one of {', '.join(IMU_FRONTENDS)}, got "
                      f"{self.imu_frontend!r}")
    elif self.imu_frontend != "raw_imu" and self.dataset not in IMU_DATASETS:
      problems.append(f"--imu_frontend={self.imu_frontend} applies to the IMU datasets "
                      f"({', '.join(IMU_DATASETS)}), got --dataset={self.dataset}")
    if self.audio_frontend not in AUDIO_FRONTENDS:
      problems.append(f"--audio_frontend must be one of {', '.join(AUDIO_FRONTENDS)}, got "
                      f"{self.audio_frontend!r}")
    if not isinstance(self.feature_cache, str) or not self.feature_cache:
      problems.append(f"--feature_cache must be none, default or a folder, got "
                      f"{self.feature_cache!r}")
    if not _is_int(self.seed) or self.seed < 0:
      problems.append(f"--seed must be >= 0, got {self.seed}")
    return problems


@dataclasses.dataclass(frozen=True)
class ExportSpec(_Part):
  """What the run makes of the trained model.

  Args:
    qat: quantization-aware fine-tuning before the int8 export (the FastGRNN cells only;
      the baselines are quantized after training).
    window_model: also export the unrolled whole-window model, for comparison.
    numerics: run the numerics diff Keras ↔ LiteRT ↔ TFLM.
    lstm_product_on_cell_grid: for lstm and lowrank_lstm, the int8 step model puts
      σ(f)·c on the cell state c's grid (else the converter's range); no effect on the
      other cells.
    arena_margin: bytes added to the measured TFLM arena in ``model_settings.h``.
    num_test_vectors: test windows written as C test vectors.
    max_test_windows: evaluate int8 on at most this many test windows (None: all).
  """
  qat: bool = True
  window_model: bool = True
  numerics: bool = True
  lstm_product_on_cell_grid: bool = True
  arena_margin: int = 1024
  num_test_vectors: int = 4
  max_test_windows: int | None = None

  def _problems(self):
    problems = []
    if not _is_int(self.num_test_vectors) or self.num_test_vectors <= 0:
      problems.append(f"--num_test_vectors must be positive, got {self.num_test_vectors}")
    if not _is_int(self.arena_margin) or self.arena_margin < 0:
      problems.append(f"--arena_margin must be >= 0, got {self.arena_margin}")
    if self.max_test_windows is not None and (not _is_int(self.max_test_windows)
                                              or self.max_test_windows <= 0):
      problems.append(f"--max_test_windows must be positive (or unset: all), got "
                      f"{self.max_test_windows}")
    return problems


_PARTS = {"model": ModelSpec, "sparsity": SparsitySpec, "recipe": Recipe,
          "data": DataSpec, "export": ExportSpec}

# Presets: partial values of the parts, by name. A dataset's preset is what its runs
# train with unless flags say otherwise; ``recipe`` is the defaults themselves (any
# other dataset); ``plain`` the recipe every run used before the recipe (constant rate,
# no clipping, last epoch), kept for comparison. ``sparse``: values for pruned models
# only, applied as one choice. How the values were chosen (validation split only, never
# test): docs/benchmarks.md, "Training recipe".
PRESETS = {
    "plain": {"recipe": {"lr_schedule": "constant", "clipnorm": None, "keep_best": False}},
    "recipe": {},
    # imu_gravity: chosen on har6 validation (docs/benchmarks.md, "Recipe trials on
    # har6"). sparse: training on train + validation with the last epoch kept, chosen
    # leaving validation subjects out (docs/benchmarks.md, "Training on the validation
    # subjects too"); dense models keep the best epoch.
    "har6": {"data": {"imu_frontend": "imu_gravity"},
             "sparse": {"recipe": {"train_on_val": True, "keep_best": False}}},
    "har2": {},
    "fsdd": {},
}


def _cell_values(cell):
  """The part values a cell changes from the defaults (the FastGRNN ones): the baselines
  train dense without QAT; gru and lstm have full-rank matrices."""
  if cell in QAT_CELLS:
    return {}
  values = {"export": {"qat": False}, "sparsity": {"w": 0.0, "u": 0.0}}
  if cell not in RANKED_CELLS:
    values["model"] = {"w_rank": None, "u_rank": None}
  return values


@dataclasses.dataclass(frozen=True)
class Spec:
  """A whole run: the five parts and the layout version of its JSON.

  Cross-part checks happen at construction (e.g. a baseline cell with QAT or sparsity,
  an IMU front end on audio data); each part checks its own fields.
  """
  model: ModelSpec = ModelSpec()
  sparsity: SparsitySpec = SparsitySpec()
  recipe: Recipe = Recipe()
  data: DataSpec = DataSpec()
  export: ExportSpec = ExportSpec()
  schema_version: int = SCHEMA_VERSION

  def __post_init__(self):
    for name, kind in _PARTS.items():
      if not isinstance(getattr(self, name), kind):
        raise ValueError(f"Spec.{name} must be a {kind.__name__}, got "
                         f"{type(getattr(self, name)).__name__}")
    if self.schema_version != SCHEMA_VERSION:
      raise ValueError(f"schema_version must be {SCHEMA_VERSION} (migrate() upgrades an "
                       f"older one), got {self.schema_version!r}")
    cell = self.model.cell
    problems = []
    if cell not in QAT_CELLS:
      if self.export.qat:
        problems.append(f"--cell={cell} is quantized after training (QAT covers "
                        f"{' and '.join(QAT_CELLS)}): pass --noqat")
      if self.sparsity.sparse:
        problems.append(f"--cell={cell} trains dense (pruning covers "
                        f"{' and '.join(QAT_CELLS)}): pass --sparsity_w=0 --sparsity_u=0")
    if self.export.qat and self.recipe.qat_epochs <= 0:
      problems.append(f"--qat needs --qat_epochs > 0, got {self.recipe.qat_epochs} "
                      "(or pass --noqat)")
    if self.data.imu_frontend != "raw_imu" and self.data.dataset not in IMU_DATASETS:
      problems.append(f"--imu_frontend={self.data.imu_frontend} applies to the IMU "
                      f"datasets ({', '.join(IMU_DATASETS)}), got "
                      f"--dataset={self.data.dataset}")
    if problems:
      raise ValueError("; ".join(problems))

  @classmethod
  def preset(cls, name="auto", *, dataset=None, cell=None, sparse=None):
    """The ``Spec`` a run of ``dataset`` with ``cell`` uses under preset ``name``.

    Args:
      name: ``auto`` (the dataset's own preset if it has one, else ``recipe``) or a key
        of ``PRESETS``; a dataset's name also sets ``dataset`` when that is None.
      dataset: the dataset (default: ``name`` if it is one, else ``DataSpec()``'s).
      cell: the cell (default ``ModelSpec()``'s); a baseline's values apply (no QAT, no
        sparsity, gru/lstm without ranks).
      sparse: whether the run prunes, for the preset's ``sparse`` values; None: as the
        resulting sparsity says.

    Raises:
      ValueError: an unknown preset.
    """
    name, values = cls.preset_values(name, dataset=dataset, cell=cell, sparse=sparse)
    del name
    return cls().replace(**values)

  @classmethod
  def preset_values(cls, name="auto", *, dataset=None, cell=None, sparse=None):
    """``(preset name, {part: {field: value}})``: ``preset``'s changes to ``Spec()``,
    resolved (``auto`` by the dataset), for the caller to override field by field."""
    if dataset is None:
      dataset = name if name in PRESETS and name not in ("plain", "recipe") else (
          DataSpec().dataset)
    if name == "auto":
      name = dataset if dataset in PRESETS else "recipe"
    if name not in PRESETS:
      raise ValueError(f"--preset must be 'auto' or one of {sorted(PRESETS)}, got "
                       f"{name!r}")
    cell = ModelSpec().cell if cell is None else cell
    values = {"data": {"dataset": dataset}, "model": {"cell": cell}}
    _merge(values, _cell_values(cell))
    preset = {k: dict(v) for k, v in PRESETS[name].items() if k != "sparse"}
    if dataset not in IMU_DATASETS:  # an IMU front end applies to IMU data only
      preset.get("data", {}).pop("imu_frontend", None)
    _merge(values, preset)
    if sparse is None:
      sparsity = {**SparsitySpec().to_dict(), **values.get("sparsity", {})}
      sparse = bool(sparsity["w"] or sparsity["u"])
    if sparse:
      _merge(values, PRESETS[name].get("sparse", {}))
    return name, values

  def replace(self, **parts):
    """A copy with some parts replaced: each value a part, or a dict of field changes
    to this spec's part (``spec.replace(recipe={"epochs": 6})``)."""
    changes = {}
    for name, value in parts.items():
      if name not in _PARTS:
        raise ValueError(f"Spec has no part {name!r} (parts: {', '.join(_PARTS)})")
      if isinstance(value, dict):
        value = getattr(self, name).replace(**value)
      changes[name] = value
    return dataclasses.replace(self, **changes)

  def to_dict(self):
    """Plain JSON values: ``{"schema_version": ..., part: {field: value}}``."""
    return {"schema_version": self.schema_version,
            **{name: getattr(self, name).to_dict() for name in _PARTS}}

  def to_json(self):
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, values):
    """The ``Spec`` of ``to_dict``'s form (the nested one).

    Raises:
      ValueError: an unknown part or field, or a bad value (named).
    """
    if not isinstance(values, dict):
      raise ValueError(f"a Spec is a JSON object, got {type(values).__name__}")
    unknown = set(values) - set(_PARTS) - {"schema_version"}
    if unknown:
      raise ValueError(f"Spec has no part {sorted(unknown)[0]!r} (parts: "
                       f"{', '.join(_PARTS)})")
    parts = {}
    for name, kind in _PARTS.items():
      given = values.get(name, {})
      fields = {f.name for f in dataclasses.fields(kind)}
      if not isinstance(given, dict) or set(given) - fields:
        raise ValueError(f"Spec.{name}: unknown fields "
                         f"{sorted(set(given) - fields) if isinstance(given, dict) else given!r}")
      parts[name] = kind(**given)
    return cls(schema_version=values.get("schema_version", SCHEMA_VERSION), **parts)

  @classmethod
  def from_json(cls, text):
    return cls.from_dict(json.loads(text))

  def flat(self):
    """``{flat name: value}``: every field under its flag's name (``sparsity_w``,
    ``sparsity_u`` for the sparsity targets; the rest by field name)."""
    out = {}
    for flat_name, (part, name) in _FLAT.items():
      out[flat_name] = getattr(getattr(self, part), name)
    return out

  @classmethod
  def from_flat(cls, values):
    """The ``Spec`` of a ``flat()`` dict (keys outside the spec are ignored)."""
    parts = {name: {} for name in _PARTS}
    for flat_name, (part, name) in _FLAT.items():
      if flat_name in values:
        parts[part][name] = values[flat_name]
    return cls().replace(**parts)


def _merge(into, changes):
  for part, fields in changes.items():
    into.setdefault(part, {}).update(fields)


def _flat_names():
  names = {}
  for part, kind in _PARTS.items():
    for field in dataclasses.fields(kind):
      if part == "sparsity" and field.name in ("w", "u"):
        names[f"sparsity_{field.name}"] = (part, field.name)
      elif part == "sparsity":
        continue  # phase split and thresholding frequency: no flag, not in flags.json
      else:
        names[field.name] = (part, field.name)
  return names


# flat name (a flag's, a flags.json key) → (part, field).
_FLAT = _flat_names()
FLAT_NAMES = tuple(_FLAT)


def flat_changes(values):
  """``{part: {field: value}}`` (``Spec.preset_values``) as ``{flat name: value}``, left
  unchecked (a caller adds its own changes before building the ``Spec``)."""
  names = {where: name for name, where in _FLAT.items()}
  return {names[(part, field)]: value for part, fields in values.items()
          for field, value in fields.items()}

# migrate: the fields each older flags.json layout lacked, with the value its runs used
# (the behaviour before the field existed; the history of pipelines/config.py).
_V0_ADDED = (  # each added to the layout of version 0 (no schema_version) over time
    ("numerics", True), ("window_model", True), ("audio_frontend", "logmel32"),
    ("overwrite", False),
    # the recipe (3a41d0d): before it, constant rate, no clipping, last epoch
    ("lr_schedule", "constant"), ("clipnorm", None), ("weight_decay", 0.0),
    ("keep_best", False), ("preset", None),
    ("min_lr_fraction", 0.05),  # the cosine's floor, fixed before it was recorded
    ("distribute", "none"), ("feature_cache", "none"),  # b29f011: no cache, one device
    ("augment", None), ("augment_strength", 1.0), ("augment_params", None),
    ("lstm_product_on_cell_grid", False),  # 3628971: the converter's range
    ("readout", "last"), ("imu_frontend", "raw_imu"), ("train_on_val", False),
    # 15d61e2: the tiny-data rules, off before
    ("min_phase_steps", 0), ("max_batch_fraction", 1.0), ("min_val_windows", 0),
    ("label_smoothing", 0.0),
)
def migrate(values):
  """A run's ``flags.json`` dict of any layout, upgraded to ``SCHEMA_VERSION``.

  Version 0 (no ``schema_version``; every run before it) gained fields over time: each
  one a file lacks reads as what runs before that field did (e.g. no
  ``lstm_product_on_cell_grid``: False, the converter's range; no ``min_phase_steps``:
  0, the tiny-data rules off), never as today's default.

  The fields of the first layout (``dataset`` ... ``arena_margin``) are every file's;
  one missing is left missing (``Config.from_flags`` names it).

  Raises:
    ValueError: not a dict, or a version newer than this code.
  """
  if not isinstance(values, dict):
    raise ValueError(f"a run's flags must be a JSON object, got {type(values).__name__}")
  out = dict(values)
  version = out.pop("schema_version", 0)
  if not _is_int(version) or not 0 <= version <= SCHEMA_VERSION:
    raise ValueError(f"schema_version {version!r} is not one this code reads (0 to "
                     f"{SCHEMA_VERSION}): a run made by a newer tf_fastgrnn?")
  if version == 0:
    for name, value in _V0_ADDED:
      out.setdefault(name, value)
  out["schema_version"] = SCHEMA_VERSION
  return out
