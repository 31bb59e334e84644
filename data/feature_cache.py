"""Audio features computed once, in parallel, and kept on disk as checked shards.

A cache entry is a folder ``<cache_dir>/<dataset>-<split>-<frontend>-<key>/`` where
``key`` is a hash of everything the features depend on: the dataset and split names,
the front end and its settings (window, hop, filters, ``max_frames``, a version of our
feature code) and the file list (each file's path, size and modification time). A
changed setting or file list gives a new key, hence a new folder; nothing is ever
deleted. The folder holds:

- ``key.json``: the settings and file count the key was made from (readable);
- ``shard-00000.npz`` …: features ``x [n, frames, 32]`` float32 and ``ok [n]`` (False for
  a file that could not be read, with its message in ``errors``) of ``shard_size``
  consecutive files;
- ``shard-00000.sha256``: the SHA-256 of that shard, written after it.

A shard is used only when its bytes match its checksum; a damaged or missing one is
computed again (atomically written, ``tf_fastgrnn.fileio``), so a killed build resumes
where it stopped. Shards are computed by a pool of processes (all cores by default)
and progress is logged.

Default location: ``$TF_FASTGRNN_FEATURE_CACHE`` if set, else
``~/.cache/tf_fastgrnn/features`` (``--feature_cache`` overrides; ``none`` disables).
"""

import hashlib
import io
import json
import multiprocessing
import os
import pathlib
import time

import numpy as np
from absl import logging


__all__ = ["FeatureCache", "VERSION", "default_dir", "resolve"]

VERSION = 1  # bump when the feature code changes what it computes
SHARD_SIZE = 256


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


def _compute(args):
  """One shard's features (in a worker process): ``(index, x, ok, errors)``."""
  index, paths, frontend, max_frames = args
  from data import audio  # pylint: disable=import-outside-toplevel
  fn = audio.FRONTENDS[frontend]
  feats, ok, errors = [], [], []
  for path in paths:
    try:
      samples, rate = audio.read_wav(path)
      feats.append(fn(samples, rate, max_frames))
      ok.append(True)
      errors.append("")
    except ValueError as e:
      ok.append(False)
      errors.append(str(e))
  x = np.stack(feats) if feats else np.zeros((0, 0, 0), np.float32)
  return index, x.astype(np.float32), np.array(ok), errors


class FeatureCache:
  """Features of audio files, by (dataset, split, front end, settings, file list).

  Args:
    directory: the cache's root folder (created if missing).
    workers: processes computing shards (default: all cores; 1 computes in this
      process).
    shard_size: files per shard.

  Example:
    >>> cache = FeatureCache("~/.cache/tf_fastgrnn/features")
    >>> x, keep, skipped = cache.features(paths, "logmel32", 98, dataset="fsdd",
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

  def entry(self, paths, frontend, max_frames, *, dataset, split):
    """The folder of this set of files and settings (not created)."""
    from data import audio  # pylint: disable=import-outside-toplevel
    files = []
    for p in paths:
      st = pathlib.Path(p).stat()
      files.append([str(p), st.st_size, st.st_mtime_ns])
    settings = {"version": VERSION, "dataset": dataset, "split": split,
                "frontend": frontend, "max_frames": max_frames,
                "window_ms": audio.WINDOW_MS, "hop_ms": audio.HOP_MS,
                "num_mels": audio.NUM_MELS, "shard_size": self.shard_size}
    key = hashlib.sha256(json.dumps([settings, files]).encode()).hexdigest()[:16]
    return self.directory / f"{dataset}-{split}-{frontend}-{key}", settings

  @staticmethod
  def _valid(shard):
    check = shard.with_suffix(".sha256")
    if not (shard.is_file() and check.is_file()):
      return False
    return hashlib.sha256(shard.read_bytes()).hexdigest() == check.read_text().strip()

  def features(self, paths, frontend, max_frames, *, dataset, split):
    """Features of ``paths``: ``(x [kept, frames, 32], keep [indices], skipped [msgs])``.

    Reads valid shards, computes missing or damaged ones in parallel, writes them.
    """
    paths = [pathlib.Path(p) for p in paths]
    folder, settings = self.entry(paths, frontend, max_frames, dataset=dataset, split=split)
    chunks = [paths[i:i + self.shard_size] for i in range(0, len(paths), self.shard_size)]
    shards = [folder / f"shard-{i:05d}.npz" for i in range(len(chunks))]
    todo = [i for i, s in enumerate(shards) if not self._valid(s)]
    damaged = [i for i in todo if shards[i].exists()]
    if damaged:
      logging.warning("feature cache: %d damaged shard(s) in %s, computing them again",
                      len(damaged), folder)
    start = time.time()
    if todo:
      # Here, not at the top: the worker processes import this module and must not pay
      # for TensorFlow (tf_fastgrnn's package import) unless the front end needs it.
      from tf_fastgrnn import fileio  # pylint: disable=import-outside-toplevel
      folder.mkdir(parents=True, exist_ok=True)
      fileio.write_json(folder / "key.json", {**settings, "files": len(paths)})
      logging.info("feature cache: computing %d of %d shard(s) (%d files) of %s/%s %s "
                   "with %d process(es) into %s", len(todo), len(shards),
                   sum(len(chunks[i]) for i in todo), dataset, split, frontend,
                   min(self.workers, len(todo)), folder)
      jobs = [(i, [str(p) for p in chunks[i]], frontend, max_frames) for i in todo]
      done_files = 0
      for i, x, ok, errors in self._map(jobs):
        buf = io.BytesIO()
        np.savez(buf, x=x, ok=ok, errors=np.array(errors, dtype=str))
        data = buf.getvalue()
        fileio.write_bytes(shards[i], data)
        fileio.write_text(shards[i].with_suffix(".sha256"),
                          hashlib.sha256(data).hexdigest() + "\n")
        done_files += len(ok)
        rate = done_files / max(time.time() - start, 1e-9)
        logging.info("feature cache: %d/%d files, %.0f files/s", done_files,
                     sum(len(chunks[j]) for j in todo), rate)
    xs, keep, skipped = [], [], []
    for i, shard in enumerate(shards):
      with np.load(shard) as z:
        ok, errors = z["ok"], z["errors"]
        if ok.any():
          xs.append(z["x"])
      base = i * self.shard_size
      keep.extend(base + j for j in np.flatnonzero(ok))
      skipped.extend(str(e) for e, good in zip(errors, ok) if not good)
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
