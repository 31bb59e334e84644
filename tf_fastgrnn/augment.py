"""Input augmentation of training batches, fitting each sensor (IMU windows, audio frames).

Only training batches are augmented (``training.FitOptions(augment=...)``): validation, test and
every calibration set see the data as it is. Each batch's random draws come from
``batch_rng(seed, epoch, batch)``, a function of the run's seed, the epoch and the
batch's position alone, so a run resumed at any epoch sees the very batches the
uninterrupted run saw.

The windows arrive normalised (``(raw - feature_mean) / feature_std``, see
``data.Dataset``); an ``Augmenter`` is built with the dataset's ``feature_mean`` and
``feature_std`` and changes each window where the change has a physical meaning:

``imu`` (tri-axial sensors, e.g. HAR's acc-x/y/z, gyro-x/y/z; D a multiple of 3): on the
  raw signal (g, rad/s), one small rotation about a random axis per window, applied to
  every triplet (the device sits a little differently on the body: every sensor of
  the board turns together), a gain per sensor (triplet) and per window (calibration
  spread), and white noise of ``jitter`` training standard deviations per channel.
``audio`` (log-mel frames ``[T, mels]``): a time shift of up to ``max_shift`` frames
  either way (the frames shifted in repeat the window's first frame: the silence or
  background before the word), SpecAugment masks (``freq_masks`` bands of up to
  ``max_freq_width`` mel channels and ``time_masks`` spans of up to ``max_time_width``
  frames set to the training mean, 0 once normalised) and white noise of ``noise``
  standard deviations.

Example (``training.fit(..., options=FitOptions(augment=aug))`` applies it per batch):
  >>> aug = make("auto", "har6", feature_mean=np.zeros(6), feature_std=np.ones(6))
  >>> windows = np.zeros((2, 4, 6), np.float32)
  >>> aug(windows, batch_rng(seed=0, epoch=0, batch=0)).shape
  (2, 4, 6)
"""

import dataclasses
import math

import numpy as np

from tf_fastgrnn import spec as spec_lib

__all__ = ["Augmenter", "batch_rng", "make", "resolve", "rotation_matrices"]

_STREAM = 0xA06  # separates the augmentation's draws from the epoch order's


def resolve(choice, dataset):
  """The augmentation a run uses: ``None``, ``"imu"`` or ``"audio"``.

  ``choice`` None is no augmentation; otherwise ``spec.resolve_augment``: ``auto``
  picks by the dataset's sensor, ``imu`` for HAR, ``audio`` for spoken words, none for
  anything else (``npz``: the layout of its features is unknown).

  Raises:
    ValueError: ``choice`` is not one of ``spec.AUGMENT_CHOICES``.
  """
  return None if choice is None else spec_lib.resolve_augment(choice, dataset)


def batch_rng(seed, epoch, batch):
  """The random generator of training batch ``batch`` (0-based) of epoch ``epoch``."""
  return np.random.default_rng([int(seed), int(epoch), int(batch), _STREAM])


def rotation_matrices(axes, angles):
  """Rotation matrices ``[N, 3, 3]`` about unit ``axes [N, 3]`` by ``angles [N]`` (rad)
  (Rodrigues' formula)."""
  axes = np.asarray(axes, np.float64)
  axes = axes / np.linalg.norm(axes, axis=-1, keepdims=True)
  angles = np.asarray(angles, np.float64)[:, None, None]
  x, y, z = axes[:, 0], axes[:, 1], axes[:, 2]
  zero = np.zeros_like(x)
  k = np.stack([np.stack([zero, -z, y], -1), np.stack([z, zero, -x], -1),
                np.stack([-y, x, zero], -1)], -2)
  eye = np.eye(3)[None]
  return eye + np.sin(angles) * k + (1.0 - np.cos(angles)) * (k @ k)


@dataclasses.dataclass(frozen=True)
class Augmenter:
  """Augments a batch of normalised windows ``[N, T, D]``; ``spec`` says how (JSON).

  Build with ``make``. ``aug(x, rng)`` returns a new float32 array of ``x``'s shape and
  leaves ``x`` unchanged.
  """
  kind: str
  feature_mean: np.ndarray
  feature_std: np.ndarray
  params: tuple  # sorted (name, value) pairs

  @property
  def spec(self):
    """What the run records (checkpoints refuse a resume with another)."""
    return {"kind": self.kind, **dict(self.params)}

  def __call__(self, x, rng):
    x = np.asarray(x, np.float32)
    if x.ndim != 3 or x.shape[2] != len(self.feature_mean):
      raise ValueError(f"augment: windows must be [N, T, {len(self.feature_mean)}], got "
                       f"shape {x.shape}")
    if self.kind == "imu":
      out = _imu(x, rng, self.feature_mean, self.feature_std, **dict(self.params))
    else:  # the masks fill with the training mean: 0 in normalised units
      out = _audio(x, rng, **dict(self.params))
    return out.astype(np.float32)


_IMU_DEFAULTS = {"max_angle_deg": 10.0, "gain": 0.1, "jitter": 0.03}
_AUDIO_DEFAULTS = {"max_shift": 4, "freq_masks": 1, "max_freq_width": 4, "time_masks": 1,
                   "max_time_width": 8, "noise": 0.05}


# Settings that set a magnitude (scaled by ``strength``); the rest are counts.
_MAGNITUDES = ("max_angle_deg", "gain", "jitter", "max_shift", "max_freq_width",
               "max_time_width", "noise")


def make(choice, dataset, feature_mean, feature_std, strength=None, **params):
  """The ``Augmenter`` of ``choice`` for a dataset, or None (no augmentation).

  Args:
    choice: one of ``spec.AUGMENT_CHOICES`` (``auto``: by ``dataset``, see ``resolve``) or None.
    dataset: the dataset's name.
    strength: None or 1 for the defaults; otherwise every magnitude (angle, gain,
      jitter, shift, mask widths, noise; the widths and shift rounded) times this, > 0.
    feature_mean, feature_std: the normalisation of the windows ``[D]``.
    **params: the kind's settings, replacing the defaults (imu: ``max_angle_deg``,
      ``gain`` (each sensor's gain uniform in ``1 ± gain``), ``jitter``; audio:
      ``max_shift``, ``freq_masks``, ``max_freq_width``, ``time_masks``,
      ``max_time_width``, ``noise``).

  Raises:
    ValueError: an unknown choice or setting, a negative setting, or ``imu`` on
      features that are not tri-axial triplets (D not a multiple of 3).
  """
  kind = resolve(choice, dataset)
  if kind is None:
    return None
  mean = np.asarray(feature_mean, np.float32).reshape(-1)
  std = np.asarray(feature_std, np.float32).reshape(-1)
  if mean.shape != std.shape or not np.all(std > 0):
    raise ValueError(f"augment: feature_mean and feature_std must be [D] with std > 0, "
                     f"got shapes {mean.shape} and {std.shape}")
  if kind == "imu" and len(mean) % 3:
    raise ValueError(f"--augment=imu needs tri-axial sensors (D a multiple of 3), the "
                     f"data has D={len(mean)} features; use --augment=none")
  defaults = dict(_IMU_DEFAULTS if kind == "imu" else _AUDIO_DEFAULTS)
  if strength is not None:
    if not (isinstance(strength, (int, float)) and math.isfinite(strength) and
            strength > 0):
      raise ValueError(f"augment strength must be a number > 0, got {strength!r}")
    for name in _MAGNITUDES:
      if name in defaults:
        value = defaults[name] * strength
        defaults[name] = round(value) if isinstance(defaults[name], int) else value
  unknown = set(params) - set(defaults)
  if unknown:
    raise ValueError(f"augment {kind}: unknown settings {sorted(unknown)}; known: "
                     f"{sorted(defaults)}")
  values = {**defaults, **params}
  for name, value in values.items():
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
      raise ValueError(f"augment {kind}: {name} must be a number >= 0, got {value!r}")
  if kind == "imu" and values["gain"] >= 1:
    raise ValueError(f"augment imu: gain must be < 1 (gains in 1 ± gain), got "
                     f"{values['gain']}")
  return Augmenter(kind, mean, std, tuple(sorted(values.items())))


def _imu(x, rng, mean, std, *, max_angle_deg, gain, jitter):
  n, steps, dim = x.shape
  raw = x * std + mean
  triplets = raw.reshape(n, steps, dim // 3, 3)
  axes = rng.normal(size=(n, 3))
  axes[np.linalg.norm(axes, axis=-1) < 1e-12] = (0.0, 0.0, 1.0)
  angles = np.deg2rad(rng.uniform(-max_angle_deg, max_angle_deg, size=n))
  rot = rotation_matrices(axes, angles)                          # [n, 3, 3]
  triplets = np.einsum("nij,ntsj->ntsi", rot, triplets)
  gains = rng.uniform(1.0 - gain, 1.0 + gain, size=(n, 1, dim // 3, 1))
  raw = (triplets * gains).reshape(n, steps, dim)
  out = (raw - mean) / std
  return out + jitter * rng.normal(size=out.shape)


def _audio(x, rng, *, max_shift, freq_masks, max_freq_width, time_masks, max_time_width,
           noise):
  n, steps, mels = x.shape
  out = np.empty_like(x)
  shifts = rng.integers(-int(max_shift), int(max_shift) + 1, size=n)
  for i, s in enumerate(shifts):
    if s > 0:    # later: the first frame repeated before, the last s frames dropped
      out[i, :s], out[i, s:] = x[i, :1], x[i, :steps - s]
    elif s < 0:  # earlier: the first s frames dropped, the first frame repeated after
      out[i, :steps + s], out[i, steps + s:] = x[i, -s:], x[i, :1]
    else:
      out[i] = x[i]
  for i in range(n):
    for _ in range(int(freq_masks)):
      width = int(rng.integers(0, min(int(max_freq_width), mels) + 1))
      start = int(rng.integers(0, mels - width + 1))
      out[i, :, start:start + width] = 0.0
    for _ in range(int(time_masks)):
      width = int(rng.integers(0, min(int(max_time_width), steps) + 1))
      start = int(rng.integers(0, steps - width + 1))
      out[i, start:start + width, :] = 0.0
  return out + noise * rng.normal(size=out.shape)
