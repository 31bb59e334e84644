"""One training run for tests/test_distribute.py, in its own process.

``python -m tests.distribute_worker MODE OUT [--interrupt_at=E]``: MODE is ``none``,
``mirrored`` (2 logical CPU devices) or ``multi_worker`` (``TF_CONFIG`` set by the
test). Trains a tiny FastGRNN through the three pruning phases and QAT, exports the int8
step model, and writes ``OUT/result.npz`` (float and QAT weights), ``OUT/sparsity.json``
and ``OUT/model_int8.tflite``. The training recipe of the pipeline is on (cosine rate
restarted per phase, gradient clipping, AdamW, best fixed-support epoch kept). With
``--interrupt_at=E`` the run stops at the start of epoch E (1-based) of the three
phases, as a kill would; a second call resumes.

Under ``multi_worker`` only the chief writes ``OUT``: the other worker trains in step
(its checkpoints go to a temporary folder that ``training.fit`` removes) and writes
nothing; it prints the temporary folders it saw, so the test can check they are gone.
"""

import argparse
import json
import pathlib
import sys


class Interrupted(Exception):
  pass


def data():
  import numpy as np  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(7)
  x = rng.normal(size=(44, 5, 4)).astype(np.float32)
  y = ((x[:, -1, 0] + x[:, -2, 1]) > 0).astype(np.int32)
  return x, y


EPOCHS, QAT_EPOCHS, BATCH = 6, 2, 8
RECIPE = {"lr_schedule": "cosine", "clipnorm": 1.0, "weight_decay": 1e-4,
          "keep_best": True}


def main(argv):
  parser = argparse.ArgumentParser()
  parser.add_argument("mode")
  parser.add_argument("out")
  parser.add_argument("--interrupt_at", type=int, default=None)
  args = parser.parse_args(argv)
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  if args.mode == "mirrored":  # before anything initialises TensorFlow's devices
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  early = (tf.distribute.MultiWorkerMirroredStrategy() if args.mode == "multi_worker"
           else None)  # collectives are configured before TensorFlow initialises
  from tf_fastgrnn import distribute  # pylint: disable=import-outside-toplevel
  if early is not None:
    distribute.register(early)
  strategy = distribute.get_strategy(args.mode)
  import numpy as np  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import export, models, pruning, quantization, training  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn._keras import keras  # pylint: disable=import-outside-toplevel
  from tests import helpers  # pylint: disable=import-outside-toplevel

  out = pathlib.Path(args.out)
  x, y = data()
  callbacks = []
  if args.interrupt_at:
    class Stop(keras.callbacks.Callback):
      def on_epoch_begin(self, epoch, logs=None):
        if epoch + 1 == args.interrupt_at:
          raise Interrupted()
    callbacks.append(Stop())
  training.set_seed(0)
  model = models.sequence_classifier("fastgrnn", 6, (5, 4), 2, u_rank=3)
  chief = distribute.is_chief(strategy)
  temp_dirs = []
  if not chief:
    import tempfile  # pylint: disable=import-outside-toplevel
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp(*a, **k):  # records the folders fit makes, to check they are removed
      temp_dirs.append(real_mkdtemp(*a, **k))
      return temp_dirs[-1]
    tempfile.mkdtemp = mkdtemp
  try:
    result = pruning.train_three_phase(
        model, (x, y), (x[:8], y[:8]), pruning.SparsitySpec(w=0.5, u=0.75),
        **helpers.fit_args(epochs=EPOCHS, batch_size=BATCH, learning_rate=1e-2,
                           checkpoint_dir=out / "ckpt_float", seed=0, verbose=0,
                           callbacks=callbacks, distribute=strategy, **RECIPE))
  except Interrupted:
    print("interrupted")
    return 3
  float_weights = [w.copy() for w in result.model.get_weights()]
  qat = quantization.quantize_model(result.model, x[:16])
  training.fit(qat, (x, y), (x[:8], y[:8]),
               **helpers.fit_args(epochs=QAT_EPOCHS, batch_size=BATCH, learning_rate=1e-3,
                                  checkpoint_dir=out / "ckpt_qat", seed=0, verbose=0,
                                  distribute=strategy, **RECIPE))
  print("worker temp dirs:", json.dumps(temp_dirs))
  print(f"replicas in sync: {strategy.num_replicas_in_sync}")
  # Export and evaluation on one process, from the ordinary model written back.
  if chief:
    quantization.calibrate(qat, x[:16])
    float_twin, plan = quantization.export_inputs(qat)
    tflite = export.convert_step_model(float_twin, x[:16], plan=plan)
    export.check_tflm_compatible(tflite)
    (out / "model_int8.tflite").write_bytes(tflite)
    np.savez(out / "result.npz", *float_weights,
             *[np.asarray(w) for w in qat.get_weights()],
             n_float=len(float_weights))
    (out / "sparsity.json").write_text(json.dumps(result.phase_reports[-1]["matrices"]))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
