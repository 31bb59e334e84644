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
import re
import wave

import numpy as np
from absl import logging

from data import paths as data_paths
from data import splits

__all__ = ["FRONTENDS", "SKIP_REASONS", "features", "file_features", "frame_count",
           "load_fsdd", "load_speech_commands", "log_mel", "mel_filterbank",
           "micro_frontend", "read_wav"]

NUM_MELS, WINDOW_MS, HOP_MS = 32, 25, 10
# The rates the datasets are recorded at; a file at another rate is skipped and counted.
FSDD_RATE, SPEECH_COMMANDS_RATE = 8000, 16000
# FSDD's file names: {digit}_{speaker}_{index}, digit and index in ASCII (str.isdigit
# accepts other scripts' digits and superscripts, which int() may not read).
_FSDD_NAME = re.compile(r"([0-9])_([^_]+)_([0-9]+)", re.ASCII)
GOOGLE12 = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")


def read_wav(path):
  """``(samples float32 in [-1, 1), sample_rate)`` of a 16-bit PCM mono WAV.

  Raises:
    ValueError: naming the file, when it is not such a WAV.
  """
  found = data_paths.kind(path)  # os.stat: a FIFO or a device named *.wav is never opened
  if found != "a file":
    raise ValueError(f"{path}: not a readable WAV file (it is {found})")
  try:
    with wave.open(str(path), "rb") as w:
      if w.getsampwidth() != 2 or w.getnchannels() != 1:
        raise ValueError(f"{path}: need 16-bit mono PCM, got {8 * w.getsampwidth()}-bit "
                         f"{w.getnchannels()} channel(s)")
      rate, frames = w.getframerate(), w.readframes(w.getnframes())
  except EOFError as e:
    raise ValueError(f"{path}: not a readable WAV file (its header or a chunk is cut "
                     "short)") from e
  except RuntimeError as e:  # the wave module's chunk seek past a chunk's stated size
    raise ValueError(f"{path}: not a readable WAV file (a chunk's stated size does not "
                     "match its contents)") from e
  except (wave.Error, OSError) as e:
    reason = (e.strerror if isinstance(e, OSError) else None) or str(e) or type(e).__name__
    raise ValueError(f"{path}: not a readable WAV file ({reason})") from e
  whole = len(frames) - len(frames) % 2  # a data chunk cut inside its last sample
  return np.frombuffer(frames[:whole], "<i2").astype(np.float32) / 32768.0, rate


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


SKIP_REASONS = ("unreadable", "empty", "sample_rate")


def file_features(path, frontend, max_frames, sample_rate):
  """One file's features, or why it is skipped.

  Unreadable files, empty ones (0 samples) and files at another sample rate than
  ``sample_rate`` are skipped, not resampled: a model trained on resampled audio would
  meet different spectra on the device, whose microphone runs at one rate.

  Returns:
    ``(features [frames, 32], None, "")`` or ``(None, reason, message)`` with ``reason``
    one of ``SKIP_REASONS``.
  """
  compute = _frontend(frontend)
  try:
    samples, rate = read_wav(path)
  except ValueError as e:
    return None, "unreadable", str(e)
  if len(samples) == 0:
    return None, "empty", f"{path}: no samples"
  if rate != sample_rate:
    return None, "sample_rate", f"{path}: {rate} Hz, not {sample_rate} Hz"
  try:
    return compute(samples, rate, max_frames), None, ""
  except ValueError as e:
    return None, "unreadable", f"{path}: {e}"


def features(paths, max_frames, frontend, sample_rate, *, cache=None, dataset=None,
             split=None):
  """Features of every usable file (``file_features``), and what was skipped.

  Args:
    paths: the audio files.
    max_frames, frontend, sample_rate: as ``file_features``.
    cache: a ``data.feature_cache.FeatureCache``: the features are computed in parallel
      once, then read from its shards (``dataset`` and ``split`` name its entry).

  Returns:
    ``(feats, keep, skipped)``: feature arrays, the indices of the files they came from,
    and ``{reason: [message, ...]}`` for the skipped ones (``SKIP_REASONS``).
  """
  _frontend(frontend)
  if cache is not None:
    x, keep, skipped = cache.features(paths, frontend, max_frames, sample_rate,
                                      dataset=dataset, split=split)
    return list(x), keep, skipped
  feats, keep = [], []
  skipped = {reason: [] for reason in SKIP_REASONS}
  for i, path in enumerate(paths):
    feat, reason, message = file_features(path, frontend, max_frames, sample_rate)
    if reason is None:
      feats.append(feat)
      keep.append(i)
    else:
      skipped[reason].append(message)
    if (i + 1) % 500 == 0:
      logging.info("features: %d/%d files", i + 1, len(paths))
  return feats, keep, skipped


def _skip_summary(skipped, total, meta):
  """Puts the skip counts into ``meta`` (and a warning line when any was skipped)."""
  meta["skipped_files"] = sum(len(v) for v in skipped.values())
  meta["skipped_by_reason"] = {k: len(v) for k, v in skipped.items()}
  if meta["skipped_files"]:
    first = next(v[0] for v in skipped.values() if v)
    meta.setdefault("warnings", []).append(
        f"skipped {meta['skipped_files']} of {total} audio files "
        f"({', '.join(f'{len(v)} {k}' for k, v in skipped.items() if v)}); first: {first}")


def _require_dir(data_dir, what):
  if data_dir is None:
    raise ValueError(f"{what} needs --data_dir")
  data_paths.check_data_dir(what, data_dir)
  return pathlib.Path(data_dir)


def load_fsdd(data_dir, seed=0, max_frames=98, frontend="logmel32", feature_cache=None):
  """Free Spoken Digit Dataset: ``{digit}_{speaker}_{index}.wav``; index 0–4 is test.

  ``frontend``: ``logmel32`` (numpy log-mel, the paper's) or ``micro32`` (TFLM's micro
  front end); ``meta["frontend"]`` names it and the device must compute the same.
  ``feature_cache``: None (computed here, one file after another) or a
  ``data.feature_cache.FeatureCache`` (computed once on all cores, then read back).

  Returns:
    ``(splits, labels, meta)``: ``[(x, y)]`` for train, val, test (raw features, for
    ``datasets.normalise``), the class names and the provenance.
  """
  _frontend(frontend)
  root = _require_dir(data_dir, "fsdd")
  files = sorted(root.glob("*.wav"))
  if not files:
    raise FileNotFoundError(f"fsdd: no .wav files in {root}")
  parsed = []
  for p in files:
    match = _FSDD_NAME.fullmatch(p.stem)
    if match is None:
      raise ValueError(f"fsdd: {p.name} is not named {{digit}}_{{speaker}}_{{index}}.wav "
                       "(digit 0-9 and index in ASCII digits)")
    parsed.append((int(match[1]), int(match[3])))
  feats, keep, skipped = features(files, max_frames, frontend, FSDD_RATE,
                                  cache=feature_cache, dataset="fsdd", split="all")
  if not feats:
    raise ValueError(f"fsdd: none of the {len(files)} files in {root} could be used "
                     f"(skipped: { {k: len(v) for k, v in skipped.items()} }; the first: "
                     f"{next((v[0] for v in skipped.values() if v), '')})")
  x = np.stack(feats)
  y = np.array([parsed[i][0] for i in keep], np.int32)
  test = np.array([parsed[i][1] <= 4 for i in keep])
  train, val = splits.carve_val(x[~test], y[~test], 0.1, seed)
  meta = {"source": str(root), "frontend": frontend, "sample_rate_hz": FSDD_RATE,
          "window_ms": WINDOW_MS, "hop_ms": HOP_MS, "num_mels": NUM_MELS,
          "max_frames": max_frames}
  _skip_summary(skipped, len(files), meta)
  return [train, val, (x[test], y[test])], [str(d) for d in range(10)], meta


def load_speech_commands(data_dir, task="google12", seed=0, max_frames=98,
                         max_per_class=None, silence_per_split=None, frontend="logmel32",
                         feature_cache=None):
  """Google Speech Commands (v1/v2 layout) with its validation/testing lists.

  ``google12``: the ten words, ``_silence_`` (1 s clips cut from
  ``_background_noise_``) and ``_unknown_`` (every other word); ``google30``: every word.
  ``max_per_class`` caps each class per split, for quick runs. ``feature_cache``: as
  ``load_fsdd`` (the clips; the ``_silence_`` clips, cut from the noise per seed, are
  computed here).

  Returns:
    ``(splits, labels, meta)`` as ``load_fsdd``.
  """
  frontend_fn = _frontend(frontend)
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
  skipped_all, total = {}, 0
  for part in ("train", "val", "test"):
    items = splits[part]
    if max_per_class:
      by = {}
      for item in rng.permutation(len(items)):
        by.setdefault(items[item][1], []).append(items[item])
      items = [it for group in by.values() for it in group[:max_per_class]]
    feats, keep, skipped = features([p for p, _ in items], max_frames, frontend,
                                    SPEECH_COMMANDS_RATE, cache=feature_cache,
                                    dataset=f"speech_commands_{task}", split=part)
    total += len(items)
    for reason, messages in skipped.items():
      skipped_all.setdefault(reason, []).extend(messages)
    y = [items[i][1] for i in keep]
    if task == "google12":
      noise = [p for p in sorted((root / "_background_noise_").glob("*.wav"))
               if read_wav(p)[1] == SPEECH_COMMANDS_RATE]
      count = silence_per_split or max(1, len(feats) // len(labels))
      for k in range(count if noise else 0):
        samples, rate = read_wav(noise[k % len(noise)])
        start = int(rng.integers(0, max(1, len(samples) - rate)))
        feats.append(frontend_fn(samples[start:start + rate], rate, max_frames))
        y.append(labels.index("_silence_"))
    if not feats:
      raise ValueError(f"speech_commands: no readable clips in the {part} split")
    out.append((np.stack(feats), np.array(y, np.int32)))
  meta = {"source": str(root), "frontend": frontend,
          "sample_rate_hz": SPEECH_COMMANDS_RATE, "window_ms": WINDOW_MS, "hop_ms": HOP_MS,
          "num_mels": NUM_MELS, "max_frames": max_frames, "task": task}
  _skip_summary(skipped_all, total, meta)
  return out, labels, meta
