"""tf_fastgrnn: FastGRNN and FastRNN from tf_keras training to TensorFlow Lite Micro.

``tf_fastgrnn.keras`` is the Keras the package works with (``tf_keras``, Keras 2: TF-MOT
needs it). Importing ``tf_fastgrnn`` registers the cells, so saved models load.

Modules: ``cells`` (the cells and layers), ``models`` (the classifier layout),
``stepping`` (the Input → RNN → Dense layout, or its mean read-out, found by type; the
step model; window logits from per-step logits),
``pruning`` and ``training`` (three-phase sparse training), ``quantization`` (QAT and its
``plan``), ``plan`` (the quantization plan record), ``int8_kernels`` and ``fixed_point``
(TFLM's integer arithmetic as TF ops and in NumPy), ``export`` (int8 step model from a
float model and a plan), ``runtime`` (TFLM/LiteRT on the host), ``device_files`` (C arrays
and headers), ``parity`` (numerics diff), ``baselines`` (low-rank LSTM), ``lstm_int16``
(a Keras LSTM as TFLite's fused int8 LSTM with an int16 cell state), ``tfmot_compat``
(the TF-MOT internals pruning needs), ``distribute`` and ``input_pipeline`` (training
under ``tf.distribute``, tf.data input ordered by (seed, epoch)), ``spec`` (what a run is:
``Spec`` and its parts ``ModelSpec``, ``SparsitySpec``, ``Recipe``, ``DataSpec``,
``ExportSpec``; TensorFlow-free), ``compression`` and ``deployment`` (the stages from a
model to the board as typed results, and the public path over them: ``compress`` a
user's model (three sparsity phases, QAT), ``deploy`` it into a folder with the int8
``.tflite``, fused ``.tflite``, standalone C, device files, TFLM evaluation and numerics
diff), ``run_folder`` (which folder a run may write, its manifest, lock and resume;
TensorFlow-free).

``tf_fastgrnn.keras3`` holds the Keras 3 cells (``import keras``, any backend);
``to_tf_keras`` / ``to_keras3`` (``keras3_bridge``) copy a classifier between the two
Kerases, checked on windows. Both import Keras 3 only when first used.
"""

from tf_fastgrnn import activations
from tf_fastgrnn import baselines
from tf_fastgrnn import models
from tf_fastgrnn import pruning
from tf_fastgrnn import quantization
from tf_fastgrnn import spec
from tf_fastgrnn import training
from tf_fastgrnn._keras import keras
from tf_fastgrnn.cells import FastGRNN
from tf_fastgrnn.cells import FastGRNNCell
from tf_fastgrnn.cells import FastRNN
from tf_fastgrnn.cells import FastRNNCell
from tf_fastgrnn.compression import Compressed
from tf_fastgrnn.compression import compress
from tf_fastgrnn.deployment import Deployment
from tf_fastgrnn.deployment import deploy
from tf_fastgrnn.spec import DataSpec
from tf_fastgrnn.spec import ExportSpec
from tf_fastgrnn.spec import ModelSpec
from tf_fastgrnn.spec import Recipe
from tf_fastgrnn.spec import SparsitySpec
from tf_fastgrnn.spec import Spec

__all__ = [
    "to_keras3",
    "to_tf_keras",
    "FastGRNN",
    "FastGRNNCell",
    "FastRNN",
    "FastRNNCell",
    "Compressed",
    "Deployment",
    "compress",
    "deploy",
    "DataSpec",
    "ExportSpec",
    "ModelSpec",
    "Recipe",
    "SparsitySpec",
    "Spec",
    "keras",
    "activations",
    "baselines",
    "models",
    "pruning",
    "quantization",
    "spec",
    "training",
]


def __getattr__(name):
  # The Keras 3 bridge is imported on first use: importing tf_fastgrnn (tf_keras) never
  # imports Keras 3.
  if name in ("to_tf_keras", "to_keras3"):
    from tf_fastgrnn import keras3_bridge  # pylint: disable=import-outside-toplevel
    return getattr(keras3_bridge, name)
  raise AttributeError(f"module 'tf_fastgrnn' has no attribute {name!r}")
