"""tf_fastgrnn: FastGRNN and FastRNN from tf_keras training to TensorFlow Lite Micro."""

from tf_fastgrnn import activations
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
]
