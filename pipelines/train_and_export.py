r"""Data → FastGRNN → three-phase sparse training → QAT → int8 export → numerics diff → report.

With no flags it trains on the default HAR task (``har6``, the raw UCI HAPT recordings
shipped on PyPI) and writes everything into ``runs/har6_fastgrnn/``:

  flags.json               the resolved configuration (every flag)
  model_float.keras        the sparse float model (after the three phases)
  model_qat.keras          the quantization-aware model
  model_int8.tflite        the int8 streaming step model (x_t, h_{t-1}) -> (h_t, logits)
  device/                  model_data.cc/.h, model_settings.h, test_vectors.cc/.h
  numerics/                Keras float / QAT / LiteRT / TFLM diff (json, md, png)
  report.md, report.json   accuracy, confusion matrix, sizes, arena, MACs, plots
  tensorboard/             training logs
  checkpoints/             what --resume continues from
  run.log                  TensorFlow's and the converter's own log lines (--verbose:
                           on the console instead)
  manifest.json            every file the run wrote (size, sha256), by stage

An existing --output_dir is used only if it is empty or holds an earlier run of this tool
and nothing else, at any depth; that run is moved aside to <folder>.replaced-<time> (or
deleted with --overwrite) once every check has passed. Any other folder is refused,
untouched. The run locks its folder: a second run into it is refused.

Usage:
  python -m pipelines.train_and_export
  python -m pipelines.train_and_export --dataset=fsdd --units=64 --epochs=30
  python -m pipelines.train_and_export --resume   # after a killed run
  python -m pipelines.train_and_export --preset=plain   # constant rate, last epoch
  python -m pipelines.train_and_export --cell=lstm --units=12   # the LSTM baseline
  python -m pipelines.train_and_export --dataset=google12 --data_dir=... \
      --distribute=mirrored   # every local GPU; docs/training_at_scale.md
  TF_CONFIG='{"cluster": {"worker": ["a:12345", "b:12345"]}, "task": {"type": "worker",
      "index": 0}}' python -m pipelines.train_and_export --distribute=multi_worker ...
      # the same command on every machine, its own index; worker 0 writes the run
"""

import errno
import os
import re
import sys
import tempfile

from absl import app
from absl import flags

from pipelines import config as config_lib

# Every flag's default is the specification's (tf_fastgrnn.spec); the preset's values
# replace those of the flags not given.
_D = config_lib.spec_lib.Spec()
_DATASET = flags.DEFINE_string(
    "dataset", _D.data.dataset, "har6 | har2 | fsdd | google12 | google30 | speech_commands | npz")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", _D.data.data_dir,
    "Local copy of the data (fsdd, speech commands) or the .npz file.")
_CELL = flags.DEFINE_enum(
    "cell", _D.model.cell, list(config_lib.CELLS),
    "Recurrent cell. gru, lstm, lowrank_lstm: the baselines, trained dense and "
    "quantized after training (--qat and sparsity default off for them; lowrank_lstm "
    "needs --w_rank and --u_rank, gru and lstm take neither).")
_UNITS = flags.DEFINE_integer("units", _D.model.units, "Hidden units H.")
_W_RANK = flags.DEFINE_integer("w_rank", _D.model.w_rank, "Rank of W (None: full).")
_U_RANK = flags.DEFINE_integer("u_rank", _D.model.u_rank, "Rank of U (0 or None: full).")
_SPARSITY_W = flags.DEFINE_float(
    "sparsity_w", _D.sparsity.w, "Fraction of W's weights ZEROED (TF-MOT's meaning; 0 = dense).")
_SPARSITY_U = flags.DEFINE_float(
    "sparsity_u", _D.sparsity.u, "Fraction of U's weights ZEROED (TF-MOT's meaning; 0 = dense).")
_EPOCHS = flags.DEFINE_integer(
    "epochs", _D.recipe.epochs,
    "Float training epochs, split in three phases (dense, sparsify, fixed).")
_QAT = flags.DEFINE_boolean("qat", _D.export.qat, "Quantization-aware fine-tuning before export.")
_QAT_EPOCHS = flags.DEFINE_integer("qat_epochs", _D.recipe.qat_epochs, "QAT fine-tuning epochs.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", _D.recipe.batch_size, "Batch size.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", _D.recipe.learning_rate, "Adam learning rate.")
_QAT_LEARNING_RATE = flags.DEFINE_float("qat_learning_rate", _D.recipe.qat_learning_rate,
                                        "Adam learning rate of the QAT fine-tuning.")
_SEED = flags.DEFINE_integer("seed", _D.data.seed, "Seed of data splits, initialisation and order.")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Run folder (default runs/<dataset>_<cell>). It must be new, "
    "empty, or hold an earlier run of this tool and nothing else: that run is moved to "
    "<folder>.replaced-<time> (see --overwrite); any other folder is refused.")
_RESUME = flags.DEFINE_boolean(
    "resume", config_lib.RUN_DEFAULTS["resume"], "Continue a killed run in --output_dir from its checkpoints (a "
    "stage whose files are no longer as manifest.json lists them runs again).")
_OVERWRITE = flags.DEFINE_boolean(
    "overwrite", config_lib.RUN_DEFAULTS["overwrite"], "Delete an earlier run in --output_dir instead of moving it aside "
    "(only the files it wrote; refused if one changed since).")
_WINDOW_MODEL = flags.DEFINE_boolean(
    "window_model", _D.export.window_model,
    "Also export the unrolled whole-window model for comparison "
    "(skipped, with a line saying why, above 512 steps per window).")
_VERBOSE = flags.DEFINE_boolean(
    "verbose", False, "Show TensorFlow's and the converter's own log lines on the console "
    "(default: they go to run.log in the run folder).")
_MAX_TEST_WINDOWS = flags.DEFINE_integer(
    "max_test_windows", _D.export.max_test_windows,
    "Evaluate int8 TFLM/LiteRT on at most this many test "
    "windows (default: all).")
_NUM_TEST_VECTORS = flags.DEFINE_integer(
    "num_test_vectors", _D.export.num_test_vectors,
    "Test windows written as C test vectors for the app.")
_NUMERICS = flags.DEFINE_boolean(
    "numerics", _D.export.numerics,
    "Run the numerics diff Keras ↔ LiteRT ↔ TFLM and put it in the report.")
_AUDIO_FRONTEND = flags.DEFINE_enum(
    "audio_frontend", _D.data.audio_frontend, list(config_lib.spec_lib.AUDIO_FRONTENDS),
    "Audio features (fsdd, speech_commands): logmel32 = numpy log-mel as in the paper; "
    "micro32 = TFLM's micro front end. The device must compute the same.")
_IMU_FRONTEND = flags.DEFINE_enum(
    "imu_frontend", _D.data.imu_frontend, list(config_lib.IMU_FRONTENDS),
    "IMU features (har6, har2): raw_imu = the 6 raw channels; imu_gravity = UCI HAR's "
    "9 (body acceleration, gravity by a 0.3 Hz one-pole low-pass, gyro; data.har."
    "gravity_split, tflm_app/imu_frontend.h). The device must compute the same.")
_DISTRIBUTE = flags.DEFINE_string(
    "distribute", config_lib.RUN_DEFAULTS["distribute"],
    "Training stages (float, the three pruning phases, QAT) under tf.distribute: none "
    "(one device), mirrored (MirroredStrategy: every local GPU), multi_worker "
    "(MultiWorkerMirroredStrategy from TF_CONFIG; the same command on every worker, "
    "worker 0 writes the run folder). --batch_size is the global batch. Export and "
    "evaluation run on one process.")
_FEATURE_CACHE = flags.DEFINE_string(
    "feature_cache", _D.data.feature_cache,
    "Audio features (fsdd, speech_commands) computed once on all cores and kept: "
    "default = $TF_FASTGRNN_FEATURE_CACHE or ~/.cache/tf_fastgrnn/features; a folder; "
    "none = computed in this process on every run.")
_ARENA_MARGIN = flags.DEFINE_integer(
    "arena_margin", _D.export.arena_margin,
    "Bytes added to the measured TFLM arena in model_settings.h.")
_PRESET = flags.DEFINE_string(
    "preset", "auto", "Training preset (tf_fastgrnn/spec.py, PRESETS): auto = the dataset's own "
    "(har6, har2, fsdd) else recipe; plain = constant rate, last epoch; flags given explicitly override its values.")
_LR_SCHEDULE = flags.DEFINE_enum(
    "lr_schedule", _D.recipe.lr_schedule, list(config_lib.LR_SCHEDULES),
    "Learning rate: constant, or cosine decay within each pruning phase and over QAT.")
_CLIPNORM = flags.DEFINE_float(
    "clipnorm", _D.recipe.clipnorm or 0.0,
    "Clip each gradient to this L2 norm (0: no clipping).")
_WEIGHT_DECAY = flags.DEFINE_float("weight_decay", _D.recipe.weight_decay,
                                   "Decoupled weight decay (AdamW); 0 = plain Adam.")
_AUGMENT = flags.DEFINE_string(
    "augment", _D.recipe.augment or "none", "Input augmentation of the training batches only "
    "(tf_fastgrnn/augment.py): none; auto = by the dataset's sensor (imu for har6/har2, "
    "audio for spoken words, none for npz); imu = small rotation of each tri-axial "
    "triplet, gain per sensor, jitter; audio = time shift, SpecAugment masks, noise. "
    "Dense training only (--sparsity_w=0 --sparsity_u=0) for now.")
_AUGMENT_STRENGTH = flags.DEFINE_float(
    "augment_strength", _D.recipe.augment_strength,
    "Every magnitude of --augment (angle, gain, jitter, shift, "
    "mask widths, noise) times this.")
_LSTM_PRODUCT_ON_CELL_GRID = flags.DEFINE_boolean(
    "lstm_product_on_cell_grid", _D.export.lstm_product_on_cell_grid,
    "--cell=lstm|lowrank_lstm only (ignored for the other cells): the int8 step model "
    "puts the product σ(f)·c on the cell state c's int8 grid (c capped at ±8, 1/16 per "
    "LSB) instead of the converter's range, calibrated on a float c that drifts far "
    "wider (docs/benchmarks.md). --nolstm_product_on_cell_grid: the converter's range.")
_READOUT = flags.DEFINE_string(
    "readout", _D.model.readout, "How a window's logits come from the per-step logits: last = the "
    "last step's; mean = the mean over the window's steps (trained that way; the "
    "deployed step model is the same, the device sums its int8 logits over the window "
    "in int32 and takes the argmax).")
_KEEP_BEST = flags.DEFINE_boolean(
    "keep_best", _D.recipe.keep_best, "Keep the epoch with the best validation accuracy (of the "
    "fixed-support phase when sparsifying; of QAT) instead of the last one.")

_TRAIN_ON_VAL = flags.DEFINE_boolean(
    "train_on_val", _D.recipe.train_on_val,
    "Train (float, pruning phases, QAT) on the training and the "
    "validation windows together and keep the last epoch (needs --nokeep_best): the "
    "model learns from more subjects or speakers; validation figures are then "
    "in-sample.")
_MIN_PHASE_STEPS = flags.DEFINE_integer(
    "min_phase_steps", _D.recipe.min_phase_steps,
    "Tiny data sets: raise --epochs/--qat_epochs so that every "
    "training phase (dense float, each pruning phase, QAT) gets at least this many "
    "optimizer steps (36 windows in batches of 64 are one step an epoch); 0: off. "
    "256 binds on no preset's default run (the fewest, fsdd's QAT: 8 x 38 = 304).")
_MAX_BATCH_FRACTION = flags.DEFINE_float(
    "max_batch_fraction", _D.recipe.max_batch_fraction,
    "Tiny data sets: the batch is at most this fraction of "
    "the training windows (at least 1), so an epoch is several steps; 1: off.")
_MIN_VAL_WINDOWS = flags.DEFINE_integer(
    "min_val_windows", _D.recipe.min_val_windows,
    "With fewer validation windows than this, --keep_best keeps "
    "the last epoch instead (one window would move validation accuracy by more than a "
    "point; the log and the report say so); 0: off.")
_LABEL_SMOOTHING = flags.DEFINE_float(
    "label_smoothing", _D.recipe.label_smoothing, "Cross-entropy on (1 - e) one-hot + e/C "
    "targets (e this value, C the classes) in every training stage; 0: plain one-hot.")

# The flags of the specification's fields, by flat name (Spec.flat()): every flag of
# this module named as a field (a new field's flag is its DEFINE line alone).
_HOLDERS = {name: flags.FLAGS[name] for name in _D.flat() if name in flags.FLAGS}


def _spec_from_flags():
  """The specification of the run: the preset's (``--preset``, by dataset and cell),
  with the value of every flag given on the command line on top.

  Returns:
    ``(preset name, Spec)``.
  """
  spec_lib = config_lib.spec_lib
  given = {name for name, holder in _HOLDERS.items() if holder.present}
  dataset, cell = _DATASET.value, _CELL.value
  name, values = spec_lib.Spec.preset_values(_PRESET.value, dataset=dataset, cell=cell,
                                             sparse=False)
  # Checked once, whole: the preset alone may not be a valid run (lowrank_lstm's ranks).
  flat = {**spec_lib.Spec().flat(), **spec_lib.flat_changes(values)}
  flat.update({k: _HOLDERS[k].value for k in given})
  # A preset's values for pruned models apply as one choice: a flag given for any of
  # them sets them aside whole.
  overlay_flat = spec_lib.flat_changes(spec_lib.PRESETS[name].get("sparse", {}))
  if (flat["sparsity_w"] or flat["sparsity_u"]) and not set(overlay_flat) & given:
    flat.update(overlay_flat)
  # The flags' own spellings: rank 0 and clipnorm 0 mean none; --augment auto/none.
  for rank in ("w_rank", "u_rank"):
    flat[rank] = flat[rank] or None
  flat["clipnorm"] = flat["clipnorm"] or None
  if "augment" in given:
    flat["augment"] = config_lib.resolve_augment(flat["augment"], dataset)
  return name, spec_lib.Spec.from_flat(flat)


def _config_from_flags():
  """Reads the flags (only here) and checks that they fit together."""
  preset, spec = _spec_from_flags()
  output_dir = os.path.normpath(
      _OUTPUT_DIR.value or os.path.join("runs", f"{_DATASET.value}_{_CELL.value}"))
  config = config_lib.Config.from_spec(
      spec, output_dir, resume=_RESUME.value, overwrite=_OVERWRITE.value,
      distribute=_DISTRIBUTE.value, preset=preset)
  config_lib.validate_config(config)
  return config


class _NativeLog:
  """Sends file descriptor 2 (TensorFlow's C++ log, the converter's, Python warnings)
  to a file, so the console keeps our stage lines, progress and warnings.

  Until the run folder exists the lines go to an anonymous temporary file (no name, so
  nothing is left behind however the process ends); ``to_run_folder`` copies them into
  ``<run>/run.log`` and appends there from then on.
  """

  def __init__(self):
    sys.stderr.flush()
    self._saved = os.dup(2)
    self._file = tempfile.TemporaryFile("w+b", prefix="tf_fastgrnn-", suffix=".log")
    self.path = None  # the run folder's run.log, once there
    os.dup2(self._file.fileno(), 2)

  def _read(self):
    sys.stderr.flush()
    with open(self._file.fileno(), "rb", closefd=False) as f:
      f.seek(0)
      return f.read()

  def to_run_folder(self, out):
    target = os.path.join(out, "run.log")
    with open(target, "ab") as dst:
      dst.write(self._read())
    old, self._file = self._file, open(target, "a+b")  # pylint: disable=consider-using-with
    os.dup2(self._file.fileno(), 2)
    old.close()
    self.path = target

  def tail(self, lines=15):
    return b"".join(self._read().splitlines(keepends=True)[-lines:]).decode(
        errors="replace")

  def restore(self):
    """Puts the console back (idempotent); the temporary log is gone with it."""
    if self._saved is None:
      return
    sys.stderr.flush()
    os.dup2(self._saved, 2)
    os.close(self._saved)
    self._saved = None
    self._file.close()


# errno values meaning the disk (or the user's quota, or a file size limit) is full.
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_FULL_WORDS = ("No space left on device", "Disk quota exceeded", "File too large")


def _disk_full_line(error, out):
  """The one line for a write that failed for lack of space, naming the file; None for
  any other error. TensorFlow's ResourceExhaustedError (checkpoints) carries the file
  and the reason in its message; an OSError in ``filename`` and ``errno``."""
  if isinstance(error, OSError) and error.errno in _FULL:
    where, reason = error.filename, error.strerror
  else:
    text = getattr(error, "message", None) or str(error)
    word = next((w for w in _FULL_WORDS if w in text), None)
    if word is None:
      return None
    where = next((t.rstrip(";:,") for t in re.split(r"[\s'\"]", text.split(word)[0])
                  if os.sep in t), None)
    reason = word
  resume = (f"free space, then run the same command with --resume to continue the run in "
            f"{out}" if out is not None else "free space and run the command again "
            "(the run folder was not made yet)")
  return (f"{reason} while writing {where or 'a file (the error names none)'}: {resume}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:  # the flags and the output folder first: no TensorFlow needed to refuse them
    config = _config_from_flags()
    print(f"[train_and_export] preset {config.preset}: epochs {config.epochs}, QAT "
          f"{config.qat_epochs if config.qat else 'off'}, lr {config.lr_schedule}, "
          f"clipnorm {config.clipnorm}, weight_decay {config.weight_decay}, keep_best "
          f"{config.keep_best}, augment {config.augment or 'none'}, readout "
          f"{config.readout}"
          + (f", IMU front end {config.imu_frontend}"
             if config.dataset in config_lib.IMU_DATASETS else "")
          + (", training on train + val" if config.train_on_val else ""), flush=True)
  except ValueError as e:
    print(f"train_and_export: {e}", file=sys.stderr)
    return 2
  if config.distribute == "multi_worker":
    # The strategy's collectives must be configured before anything initialises
    # TensorFlow (importing tf_fastgrnn does); validate_config has checked TF_CONFIG.
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    from tf_fastgrnn import distribute  # pylint: disable=import-outside-toplevel
    distribute.register(strategy)
  log = None if _VERBOSE.value else _NativeLog()
  made = []  # the run folder, once it exists (what --resume continues)

  def output_ready(out):
    made.append(out)
    if log is not None:
      log.to_run_folder(out)
  message, status, report = None, 1, None
  try:
    # Imported here, not at the top: TensorFlow's import already logs.
    from pipelines import stages  # pylint: disable=import-outside-toplevel
    report = stages.run(config, on_output_ready=output_ready)
  except (ValueError, FileNotFoundError) as e:
    message = str(e)
  except KeyboardInterrupt:
    status = 130
    message = ("interrupted; run the same command with --resume to continue the run in "
               f"{made[0]} from its last finished stage (training: its last epoch)"
               if made else "interrupted before the run folder was made: nothing was "
               "written")
  except Exception as e:  # pylint: disable=broad-except
    message = _disk_full_line(e, made[0] if made else None)
    if message is None:
      if log is not None:
        tail = log.tail()
        log.restore()
        where = f" ({log.path})" if log.path else ""
        print(f"train_and_export: failed; the last lines of TensorFlow's log{where}:\n"
              f"{tail}", file=sys.stderr)
      raise
  finally:
    if log is not None:
      log.restore()
  if message is not None:
    print(f"train_and_export: {message}", file=sys.stderr)
    return status
  if report is None:  # a multi-worker worker other than the chief
    print("[train_and_export] this worker's part (training) is done; the chief writes "
          f"{config.output_dir}")
    return 0
  print(stages.summary_line(report))
  return 0


if __name__ == "__main__":
  app.run(main)
