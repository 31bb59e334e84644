"""Spoken words: WAV reading, log-mel features, FSDD and Speech Commands loaders.

Front end (``logmel32``), as in the FastGRNN paper's keyword-spotting setup: 25 ms Hann
window, 10 ms hop, |FFT|² → 32 triangular mel filters (0 Hz to Nyquist) → log(· + 1e-6).
A clip of ``n`` samples gives ``1 + (n - win) // hop`` frames; a short clip gets
silence (zeros) *before* it, so the word ends at the window's last frame, where the
classifier reads the state (a streaming detector sees a word just as it ends; silence
after the word would make the model carry it through up to a second of padding), and a
long clip is cut to ``max_frames`` (FSDD default 98 frames = 1 s at 8 kHz; Speech
Commands 98 = 1 s at 16 kHz).

The other front end, ``micro32``, is TFLM's own micro front end (``audio_microfrontend``,
shipped in TensorFlow) on the same framing: what a device running TFLM's
``experimental/microfrontend`` library computes, so training sees the device's features.
Whichever is chosen, the device must compute the same features per 10 ms frame (the
app's feature provider is the place); ``meta["frontend"]`` names it and it travels into
``model_settings.h``.
"""

import pathlib
import wave

import numpy as np
from absl import logging

from data import datasets
from data import feature_cache

__all__ = ["FRONTENDS", "frame_count", "load_fsdd", "load_speech_commands", "log_mel",
           "mel_filterbank", "micro_frontend", "read_wav"]

NUM_MELS, WINDOW_MS, HOP_MS = 32, 25, 10
GOOGLE12 = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")


def read_wav(path):
  """``(samples float32 in [-1, 1), sample_rate)`` of a 16-bit PCM mono WAV.

  Raises:
    ValueError: naming the file, when it is not such a WAV.
  """
  try:
    with wave.open(str(path), "rb") as w:
      if w.getsampwidth() != 2 or w.getnchannels() != 1:
        raise ValueError(f"{path}: need 16-bit mono PCM, got {8 * w.getsampwidth()}-bit "
                         f"{w.getnchannels()} channel(s)")
      rate, frames = w.getframerate(), w.readframes(w.getnframes())
  except (wave.Error, EOFError) as e:
    raise ValueError(f"{path}: not a readable WAV file ({e})") from e
  return np.frombuffer(frames, "<i2").astype(np.float32) / 32768.0, rate


def mel_filterbank(sample_rate, n_fft, num_mels=NUM_MELS):
  """Triangular filters ``[n_fft // 2 + 1, num_mels]`` evenly spaced on the mel scale."""
  def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + f / 700.0)
  def mel_to_hz(m):
    return 700.0 * (10 ** (m / 2595.0) - 1.0)
  freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
  edges = mel_to_hz(np.linspace(0, hz_to_mel(sample_rate / 2), num_mels + 2))
  bank = np.zeros((len(freqs), num_mels), np.float32)
  for m in range(num_mels):
    lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
    rising = (freqs - lo) / (mid - lo)
    falling = (hi - freqs) / (hi - mid)
    bank[:, m] = np.maximum(0.0, np.minimum(rising, falling))
  return bank


def frame_count(num_samples, sample_rate):
  win, hop = sample_rate * WINDOW_MS // 1000, sample_rate * HOP_MS // 1000
  return 0 if num_samples < win else 1 + (num_samples - win) // hop


def _fit(samples, sample_rate, max_frames):
  """Silence before a short clip, a long one cut: exactly ``max_frames`` frames."""
  win, hop = sample_rate * WINDOW_MS // 1000, sample_rate * HOP_MS // 1000
  if max_frames is not None:
    needed = win + hop * (max_frames - 1)
    samples = np.pad(samples[:needed], (max(0, needed - len(samples)), 0))
  if frame_count(len(samples), sample_rate) == 0:
    raise ValueError(f"clip of {len(samples)} samples is shorter than one window ({win})")
  return samples


def micro_frontend(samples, sample_rate, max_frames=None):
  """TFLM's micro front end (``audio_microfrontend``, as shipped in TensorFlow) on our
  framing: 25 ms window, 10 ms hop, 32 channels, its noise reduction, PCAN gain control
  and log scale, 125 Hz up to 7.5 kHz or just under Nyquist. ``[frames, 32]`` float32.

  The device computes these with TFLM's ``tensorflow/lite/experimental/microfrontend``
  library (what the micro_speech example runs) configured with the same numbers; it
  adapts its noise estimate from the clip's start, as it does here.
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from tensorflow.lite.experimental.microfrontend.python.ops import audio_microfrontend_op  # pylint: disable=import-outside-toplevel
  samples = _fit(np.asarray(samples, np.float32), sample_rate, max_frames)
  pcm = np.clip(np.round(samples * 32768.0), -32768, 32767).astype(np.int16)
  feats = audio_microfrontend_op.audio_microfrontend(
      tf.constant(pcm), sample_rate=sample_rate, window_size=WINDOW_MS,
      window_step=HOP_MS, num_channels=NUM_MELS, upper_band_limit=min(
          7500.0, 0.5 * sample_rate - 100.0), out_scale=1, out_type=tf.float32)
  return feats.numpy().astype(np.float32)


def log_mel(samples, sample_rate, max_frames=None):
  """Log-mel frames ``[frames, 32]``; silence before a short clip, a long one cut, to
  ``max_frames``."""
  win, hop = sample_rate * WINDOW_MS // 1000, sample_rate * HOP_MS // 1000
  samples = _fit(samples, sample_rate, max_frames)
  n = frame_count(len(samples), sample_rate)
  n_fft = 1 << (win - 1).bit_length()
  idx = np.arange(win)[None, :] + hop * np.arange(n)[:, None]
  frames = samples[idx] * np.hanning(win).astype(np.float32)
  power = np.abs(np.fft.rfft(frames, n_fft)) ** 2
  return np.log(power @ mel_filterbank(sample_rate, n_fft) + 1e-6).astype(np.float32)


FRONTENDS = {"logmel32": log_mel, "micro32": micro_frontend}


def _frontend(name):
  if name not in FRONTENDS:
    raise ValueError(f"audio front end must be one of {sorted(FRONTENDS)}, got {name!r}")
  return FRONTENDS[name]


def _features(paths, max_frames, frontend="logmel32", cache=None, dataset=None,
              split=None):
  """Features of every readable file; unreadable ones are skipped and counted.

  ``cache``: a ``feature_cache.FeatureCache`` (or folder / ``"default"``): computed in
  parallel once, then read from its shards.
  """
  # --- feature cache (issue 14)
  cache = feature_cache.resolve(cache)
  if cache is not None:
    x, keep, skipped = cache.features(paths, frontend, max_frames, dataset=dataset,
                                      split=split)
    if skipped:
      logging.warning("skipped %d unreadable audio files, first: %s", len(skipped),
                      skipped[0])
    return list(x), keep, skipped
  # --- end feature cache
  features = _frontend(frontend)
  feats, keep, skipped = [], [], []
  for i, path in enumerate(paths):
    try:
      samples, rate = read_wav(path)
      feats.append(features(samples, rate, max_frames))
      keep.append(i)
    except ValueError as e:
      skipped.append(str(e))
    if (i + 1) % 500 == 0:
      logging.info("features: %d/%d files", i + 1, len(paths))
  if skipped:
    logging.warning("skipped %d unreadable audio files, first: %s", len(skipped), skipped[0])
  return feats, keep, skipped


def _require_dir(data_dir, what):
  if data_dir is None:
    raise ValueError(f"{what} needs --data_dir")
  path = pathlib.Path(data_dir)
  if not path.is_dir():
    raise FileNotFoundError(f"{what}: data_dir {path} does not exist")
  return path


def load_fsdd(data_dir, seed=0, max_frames=98, frontend="logmel32", feature_cache=None):
  """Free Spoken Digit Dataset: ``{digit}_{speaker}_{index}.wav``; index 0–4 is test.

  ``frontend``: ``logmel32`` (numpy log-mel, the paper's) or ``micro32`` (TFLM's micro
  front end); ``meta["frontend"]`` names it and the device must compute the same.
  ``feature_cache``: None (compute in this process), ``"default"``, a folder or a
  ``data.feature_cache.FeatureCache``.
  """
  _frontend(frontend)
  root = _require_dir(data_dir, "fsdd")
  paths = sorted(root.glob("*.wav"))
  if not paths:
    raise FileNotFoundError(f"fsdd: no .wav files in {root}")
  parsed = []
  for p in paths:
    parts = p.stem.split("_")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[2].isdigit():
      raise ValueError(f"fsdd: {p.name} is not named {{digit}}_{{speaker}}_{{index}}.wav")
    parsed.append((int(parts[0]), int(parts[2])))
  feats, keep, skipped = _features(paths, max_frames, frontend, feature_cache, "fsdd",
                                   "all")
  if not feats:
    raise ValueError(f"fsdd: none of the {len(paths)} files in {root} could be read")
  x = np.stack(feats)
  y = np.array([parsed[i][0] for i in keep], np.int32)
  test = np.array([parsed[i][1] <= 4 for i in keep])
  train, val = datasets._carve_val(x[~test], y[~test], 0.1, seed)  # pylint: disable=protected-access
  meta = {"source": str(root), "frontend": frontend, "sample_rate_hz": 8000,
          "window_ms": WINDOW_MS, "hop_ms": HOP_MS, "num_mels": NUM_MELS,
          "max_frames": max_frames, "skipped_files": len(skipped)}
  return datasets.normalise([train, val, (x[test], y[test])],
                            [str(d) for d in range(10)], meta)


def load_speech_commands(data_dir, task="google12", seed=0, max_frames=98,
                         max_per_class=None, silence_per_split=None, frontend="logmel32",
                         feature_cache=None):
  """Google Speech Commands (v1/v2 layout) with its validation/testing lists.

  ``google12``: the ten words, ``_silence_`` (1 s clips cut from
  ``_background_noise_``) and ``_unknown_`` (every other word); ``google30``: every word.
  ``max_per_class`` caps each class per split, for quick runs. ``feature_cache``: as
  ``load_fsdd`` (the clips' features; the silence clips are cut per seed and computed).
  """
  features = _frontend(frontend)
  root = _require_dir(data_dir, "speech_commands")
  if task not in ("google12", "google30"):
    raise ValueError(f"speech_commands task must be google12 or google30, got {task!r}")
  lists = {}
  for name in ("validation_list.txt", "testing_list.txt"):
    f = root / name
    if not f.is_file():
      raise FileNotFoundError(f"speech_commands: {f} is missing (the dataset's own split)")
    lists[name] = set(f.read_text().split())
  words = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_"))
  if not words:
    raise FileNotFoundError(f"speech_commands: no word folders in {root}")
  labels = (list(GOOGLE12) + ["_silence_", "_unknown_"] if task == "google12" else words)
  rng = np.random.default_rng(seed)
  splits = {"train": [], "val": [], "test": []}
  for word in words:
    label = (labels.index(word) if word in labels else
             labels.index("_unknown_") if task == "google12" else None)
    for p in sorted((root / word).glob("*.wav")):
      rel = f"{word}/{p.name}"
      part = ("val" if rel in lists["validation_list.txt"] else
              "test" if rel in lists["testing_list.txt"] else "train")
      splits[part].append((p, label))
  out = []
  for part in ("train", "val", "test"):
    items = splits[part]
    if max_per_class:
      by = {}
      for item in rng.permutation(len(items)):
        by.setdefault(items[item][1], []).append(items[item])
      items = [it for group in by.values() for it in group[:max_per_class]]
    feats, keep, _ = _features([p for p, _ in items], max_frames, frontend,
                               feature_cache, f"speech_commands_{task}", part)
    y = [items[i][1] for i in keep]
    if task == "google12":
      noise = sorted((root / "_background_noise_").glob("*.wav"))
      count = silence_per_split or max(1, len(feats) // len(labels))
      for k in range(count if noise else 0):
        samples, rate = read_wav(noise[k % len(noise)])
        start = int(rng.integers(0, max(1, len(samples) - rate)))
        feats.append(features(samples[start:start + rate], rate, max_frames))
        y.append(labels.index("_silence_"))
    if not feats:
      raise ValueError(f"speech_commands: no readable clips in the {part} split")
    out.append((np.stack(feats), np.array(y, np.int32)))
  meta = {"source": str(root), "frontend": frontend, "sample_rate_hz": 16000,
          "window_ms": WINDOW_MS, "hop_ms": HOP_MS, "num_mels": NUM_MELS,
          "max_frames": max_frames, "task": task}
  return datasets.normalise(out, labels, meta)
