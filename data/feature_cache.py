"""Audio features computed once, in parallel, and kept on disk as checked shards.

A cache entry is a folder ``<cache_dir>/<dataset>-<split>-<frontend>-<key>/`` where
``key`` is a hash of everything the features depend on: the dataset and split names,
the front end and its settings (window, hop, filters, ``max_frames``, a version of our
feature code) and the file list (each file's path, size and modification time). A
changed setting or file list gives a new key, hence a new folder; nothing is ever
deleted. The folder holds:

- ``key.json``: the settings and file count the key was made from (readable);
- ``shard-00000.npz`` …: of ``shard_size`` consecutive files, the features
  ``x [kept, frames, 32]`` float32 of the usable ones, and per file ``reason`` (empty
  for a usable file, else why it was skipped: ``data.audio.SKIP_REASONS``) and
  ``message``;
- ``shard-00000.sha256``: the SHA-256 of that shard, written after it.

A shard is used only when its bytes match its checksum; a damaged or missing one is
computed again (atomically written, ``tf_fastgrnn.fileio``), so a killed build resumes
where it stopped. Shards are computed by a pool of processes (all cores by default)
and progress is printed.

The cache writes only its own entry folders, and inside them only the files above. An
existing folder of an entry's name that is not one of ours (no ``key.json``, or one for
other settings) is refused, untouched; nothing is ever deleted.

Default location: ``$TF_FASTGRNN_FEATURE_CACHE`` if set, else
``~/.cache/tf_fastgrnn/features`` (``--feature_cache`` overrides; ``none`` disables).
"""

import hashlib
import io
import json
import multiprocessing
import os
import pathlib
import re
import time

import numpy as np


__all__ = ["FeatureCache", "VERSION", "default_dir", "resolve"]

VERSION = 2  # bump when the feature code changes what it computes or stores
SHARD_SIZE = 256
# tf_fastgrnn.fileio's temporary name for key.json while it is written.
_KEY_BEING_WRITTEN = re.compile(r"\.key\.json\..+")


def default_dir():
  """``$TF_FASTGRNN_FEATURE_CACHE`` or ``~/.cache/tf_fastgrnn/features``."""
  env = os.environ.get("TF_FASTGRNN_FEATURE_CACHE")
  return pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "tf_fastgrnn" / "features"


def resolve(cache):
  """A ``FeatureCache`` from a ``FeatureCache``, a folder, ``"default"`` or None/"none"."""
  if cache is None or isinstance(cache, FeatureCache):
    return cache
  if str(cache) == "none":
    return None
  return FeatureCache(default_dir() if str(cache) == "default" else cache)


def _progress(message):
  # On the console, like the pipeline's own stage lines (absl's log goes to run.log).
  print(f"[feature_cache] {message}", flush=True)


def _compute(args):
  """One shard's features (in a worker process): ``(index, x, reasons, messages)``."""
  index, paths, frontend, max_frames, sample_rate = args
  from data import audio  # pylint: disable=import-outside-toplevel
  feats, reasons, messages = [], [], []
  for path in paths:
    feat, reason, message = audio.file_features(path, frontend, max_frames, sample_rate)
    if reason is None:
      feats.append(feat)
    reasons.append(reason or "")
    messages.append(message)
  x = np.stack(feats) if feats else np.zeros((0, 0, 0), np.float32)
  return index, x.astype(np.float32), reasons, messages


class FeatureCache:
  """Features of audio files, by (dataset, split, front end, settings, file list).

  Args:
    directory: the cache's root folder (created if missing).
    workers: processes computing shards (default: all cores; 1 computes in this
      process).
    shard_size: files per shard.

  Example:
    >>> cache = FeatureCache("~/.cache/tf_fastgrnn/features")
    >>> x, keep, skipped = cache.features(paths, "logmel32", 98, 8000, dataset="fsdd",
    ...                                   split="all")
  """

  def __init__(self, directory, workers=None, shard_size=SHARD_SIZE):
    self.directory = pathlib.Path(directory).expanduser()
    if self.directory.exists() and not self.directory.is_dir():
      raise ValueError(f"feature cache {self.directory} exists and is not a folder")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
      raise ValueError(f"workers must be a positive int or None, got {workers!r}")
    self.workers = workers or os.cpu_count() or 1
    self.shard_size = int(shard_size)
    self.last_stats = {}

  def entry(self, paths, frontend, max_frames, sample_rate, *, dataset, split):
    """``(folder, settings)`` of this set of files and settings (nothing created)."""
    from data import audio  # pylint: disable=import-outside-toplevel
    files = []
    for p in paths:
      st = pathlib.Path(p).stat()
      files.append([str(p), st.st_size, st.st_mtime_ns])
    settings = {"version": VERSION, "dataset": dataset, "split": split,
                "frontend": frontend, "max_frames": int(max_frames),
                "sample_rate": int(sample_rate), "window_ms": audio.WINDOW_MS,
                "hop_ms": audio.HOP_MS, "num_mels": audio.NUM_MELS,
                "shard_size": self.shard_size, "files": len(files)}
    key = hashlib.sha256(json.dumps([settings, files]).encode()).hexdigest()[:16]
    return self.directory / f"{dataset}-{split}-{frontend}-{key}", settings

  @staticmethod
  def _valid(shard):
    check = shard.with_suffix(".sha256")
    if not (shard.is_file() and check.is_file()):
      return False
    return hashlib.sha256(shard.read_bytes()).hexdigest() == check.read_text().strip()

  @staticmethod
  def _check_ours(folder, settings):
    """Refuses an existing folder of the entry's name that this cache did not make.

    Ours: its ``key.json`` holds these settings, or it holds nothing but the temporary
    file of a ``key.json`` being written (another process building the same entry at
    this moment: ``key.json`` is the first file an entry gets).
    """
    if not folder.exists():
      return
    key_file = folder / "key.json"
    try:
      if json.loads(key_file.read_text()) == settings:
        return
    except (OSError, ValueError):
      pass
    if folder.is_dir() and not key_file.exists() and all(
        _KEY_BEING_WRITTEN.fullmatch(p.name) for p in folder.iterdir()):
      return
    raise ValueError(f"feature cache: {folder} exists and is not a cache entry of these "
                     f"settings ({key_file.name} missing or different); it is left "
                     f"untouched: choose another --feature_cache folder")

  def features(self, paths, frontend, max_frames, sample_rate, *, dataset, split):
    """Features of ``paths`` as ``data.audio.features`` computes them.

    Reads valid shards, computes missing or damaged ones in parallel, writes them.

    Returns:
      ``(x [kept, frames, 32], keep [indices into paths], skipped {reason: [message]})``.

    Raises:
      ValueError: the entry's folder exists but was not made by this cache.
    """
    from data import audio  # pylint: disable=import-outside-toplevel
    paths = [pathlib.Path(p) for p in paths]
    folder, settings = self.entry(paths, frontend, max_frames, sample_rate,
                                  dataset=dataset, split=split)
    self._check_ours(folder, settings)
    chunks = [paths[i:i + self.shard_size] for i in range(0, len(paths), self.shard_size)]
    shards = [folder / f"shard-{i:05d}.npz" for i in range(len(chunks))]
    todo = [i for i, s in enumerate(shards) if not self._valid(s)]
    damaged = [i for i in todo if shards[i].exists()]
    if damaged:
      _progress(f"{len(damaged)} damaged shard(s) in {folder}, computing them again")
    start = time.time()
    if todo:
      # Here, not at the top: the worker processes import this module and must not pay
      # for TensorFlow (tf_fastgrnn's package import) unless the front end needs it.
      from tf_fastgrnn import fileio  # pylint: disable=import-outside-toplevel
      folder.mkdir(parents=True, exist_ok=True)
      if not (folder / "key.json").exists():
        fileio.write_json(folder / "key.json", settings)
      total = sum(len(chunks[i]) for i in todo)
      _progress(f"computing {len(todo)} of {len(shards)} shard(s) ({total} files) of "
                f"{dataset}/{split} {frontend} with {min(self.workers, len(todo))} "
                f"process(es) into {folder}")
      jobs = [(i, [str(p) for p in chunks[i]], frontend, max_frames, sample_rate)
              for i in todo]
      done_files = 0
      for i, x, reasons, messages in self._map(jobs):
        buf = io.BytesIO()
        np.savez(buf, x=x, reason=np.array(reasons, dtype=str),
                 message=np.array(messages, dtype=str))
        data = buf.getvalue()
        fileio.write_bytes(shards[i], data)
        fileio.write_text(shards[i].with_suffix(".sha256"),
                          hashlib.sha256(data).hexdigest() + "\n")
        done_files += len(reasons)
        rate = done_files / max(time.time() - start, 1e-9)
        _progress(f"{done_files}/{total} files, {rate:.0f} files/s")
    xs, keep = [], []
    skipped = {reason: [] for reason in audio.SKIP_REASONS}
    for i, shard in enumerate(shards):
      with np.load(shard) as z:
        reasons, messages = z["reason"], z["message"]
        usable = reasons == ""
        if usable.any():
          xs.append(z["x"])
      base = i * self.shard_size
      keep.extend(base + int(j) for j in np.flatnonzero(usable))
      for reason, message in zip(reasons, messages):
        if reason:
          skipped[str(reason)].append(str(message))
    self.last_stats = {"folder": str(folder), "computed_shards": len(todo),
                       "shards": len(shards), "seconds": time.time() - start}
    x = np.concatenate(xs) if xs else np.zeros((0, 0, 0), np.float32)
    return x, keep, skipped

  def _map(self, jobs):
    if self.workers == 1 or len(jobs) == 1:
      yield from map(_compute, jobs)
      return
    # spawn: workers must not inherit a TensorFlow runtime (not fork-safe).
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(min(self.workers, len(jobs))) as pool:
      yield from pool.imap_unordered(_compute, jobs)
