"""tf_fastgrnn: FastGRNN and FastRNN from tf_keras training to TensorFlow Lite Micro.

Modules: ``cells`` (the cells and layers), ``models`` (the classifier layout),
``pruning`` and ``training`` (three-phase sparse training), ``quantization`` (QAT),
``int8_kernels`` (TFLM's integer arithmetic as TF ops, for bit-exact QAT),
``export`` (int8 step model), ``runtime`` (TFLM/LiteRT on the host), ``device_files``
(C arrays and headers), ``parity`` (numerics diff), ``baselines`` (low-rank LSTM).
"""

from tf_fastgrnn import activations
from tf_fastgrnn import baselines
from tf_fastgrnn import models
from tf_fastgrnn import pruning
from tf_fastgrnn import quantization
from tf_fastgrnn import training
from tf_fastgrnn.cells import FastGRNN
from tf_fastgrnn.cells import FastGRNNCell
from tf_fastgrnn.cells import FastRNN
from tf_fastgrnn.cells import FastRNNCell

__all__ = [
    "FastGRNN",
    "FastGRNNCell",
    "FastRNN",
    "FastRNNCell",
    "activations",
    "baselines",
    "models",
    "pruning",
    "quantization",
    "training",
]
