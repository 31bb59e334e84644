r"""Figures for training at scale: feature extraction and training throughput.

  python -m benchmarks.benchmark_scale [--data_dir=../shared/data/fsdd/recordings]
      [--cache_dir=<fresh folder>] [--frontend=logmel32] [--workers=N]

Prints and writes (``--json``) three feature-extraction figures on the FSDD clips: one
process without the cache, the parallel cache build (into ``--cache_dir``; a fresh
temporary folder by default, removed at the end, so the build is measured, not a hit)
and a second load served from that cache; then training windows/s of the same FastGRNN on one device and
under ``MirroredStrategy`` over ``--devices`` logical CPU devices (each in its own
process: logical devices are fixed at TensorFlow's start).
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

_DATA_DIR = flags.DEFINE_string("data_dir", None, "FSDD recordings (default: shared copy).")
_CACHE_DIR = flags.DEFINE_string("cache_dir", None, "Cache to build (default: fresh temp).")
_FRONTEND = flags.DEFINE_enum("frontend", "logmel32", ["logmel32", "micro32"], "Front end.")
_WORKERS = flags.DEFINE_integer("workers", None, "Processes for the cache (default: cores).")
_DEVICES = flags.DEFINE_integer("devices", 2, "Logical CPU devices for the mirrored run.")
_TRAIN_WINDOWS = flags.DEFINE_integer("train_windows", 1024, "Windows per training epoch.")
_EPOCHS = flags.DEFINE_integer("epochs", 3, "Epochs timed (the first, with tracing, not).")
_TRAIN = flags.DEFINE_boolean("train", True, "Also measure training windows/s.")
_JSON = flags.DEFINE_string("json", None, "Write the figures here too.")
_TRAIN_ONLY = flags.DEFINE_string("train_only", None, "Internal: none|mirrored.")


def _train_rate(distribute, devices, windows, epochs):
  """Windows/s of FastGRNN H=32 on [windows, 98, 32], batch 64, epochs after the first."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  if distribute == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
  import numpy as np  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import models, spec, training  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn._keras import keras  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  x = rng.normal(size=(windows, 98, 32)).astype(np.float32)
  y = rng.integers(0, 10, windows).astype(np.int32)
  model = models.sequence_classifier("fastgrnn", 32, (98, 32), 10, u_rank=16)
  times = []

  class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
      self.t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
      times.append(time.perf_counter() - self.t)

  recipe = spec.Recipe(epochs=epochs, batch_size=64, learning_rate=1e-3,
                       lr_schedule="constant", clipnorm=None, keep_best=False)
  training.fit(model, (x, y), None, recipe, options=training.FitOptions(
      verbose=0, callbacks=(Timer(),), distribute=distribute))
  return windows * (len(times) - 1) / sum(times[1:])


def main(argv):
  del argv
  if _TRAIN_ONLY.value:
    rate = _train_rate(_TRAIN_ONLY.value, _DEVICES.value, _TRAIN_WINDOWS.value,
                       _EPOCHS.value)
    print(json.dumps({"windows_per_s": rate}))
    return
  from data import audio, datasets, feature_cache  # pylint: disable=import-outside-toplevel
  # The cache writes with tf_fastgrnn.fileio (whose package imports TensorFlow); a run
  # has TensorFlow loaded already, so its import time is not the cache's.
  from tf_fastgrnn import fileio  # pylint: disable=import-outside-toplevel,unused-import
  root = pathlib.Path(_DATA_DIR.value or datasets.DEFAULT_FSDD)
  paths = sorted(root.glob("*.wav"))
  if not paths:
    raise app.UsageError(f"no .wav files in {root}")
  fig = {"clips": len(paths), "frontend": _FRONTEND.value, "cores": os.cpu_count()}
  t = time.perf_counter()
  _, keep, _ = audio.features(paths, 98, _FRONTEND.value, audio.FSDD_RATE)
  fig["one_process_clips_per_s"] = len(paths) / (time.perf_counter() - t)
  fig["usable_clips"] = len(keep)
  cache_dir = _CACHE_DIR.value or tempfile.mkdtemp(prefix="feature_cache_bench_")
  cache = feature_cache.FeatureCache(cache_dir, workers=_WORKERS.value)
  fig["cache_dir"], fig["workers"] = cache_dir, cache.workers
  for name in ("cache_build_clips_per_s", "cache_hit_clips_per_s"):
    t = time.perf_counter()
    cache.features(paths, _FRONTEND.value, 98, audio.FSDD_RATE, dataset="fsdd",
                   split="all")
    fig[name] = len(paths) / (time.perf_counter() - t)
    fig[name.replace("clips_per_s", "computed_shards")] = cache.last_stats["computed_shards"]
  if not _CACHE_DIR.value:  # our own temporary folder
    shutil.rmtree(cache_dir)
    fig["cache_dir"] = None
  for mode in ("none", "mirrored") if _TRAIN.value else ():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.benchmark_scale", f"--train_only={mode}",
         f"--devices={_DEVICES.value}", f"--train_windows={_TRAIN_WINDOWS.value}",
         f"--epochs={_EPOCHS.value}"], check=True, capture_output=True, text=True)
    fig[f"train_{mode}_windows_per_s"] = json.loads(out.stdout.strip().splitlines()[-1])[
        "windows_per_s"]
  fig["devices"] = _DEVICES.value
  print(json.dumps(fig, indent=2))
  line = (f"features: one process {fig['one_process_clips_per_s']:.0f} clips/s; cache "
          f"build ({fig['workers']} processes) {fig['cache_build_clips_per_s']:.0f} clips/s; "
          f"from the cache {fig['cache_hit_clips_per_s']:.0f} clips/s")
  if _TRAIN.value:
    line += (f" | training: one device {fig['train_none_windows_per_s']:.0f} windows/s, "
             f"mirrored over {fig['devices']} CPU devices "
             f"{fig['train_mirrored_windows_per_s']:.0f} windows/s")
  print(line)
  if _JSON.value:
    from tf_fastgrnn import fileio  # pylint: disable=import-outside-toplevel
    fileio.write_json(_JSON.value, fig)


if __name__ == "__main__":
  app.run(main)
