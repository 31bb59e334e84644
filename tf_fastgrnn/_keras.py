"""The one place that imports Keras.

TF-MOT (pruning and quantization) works only with Keras 2, which TensorFlow >= 2.16 ships
as the separate ``tf_keras`` package. Mixing objects of TensorFlow's default Keras 3 with
``tf_keras`` objects breaks pruning and QAT without an error, so every module of this
project takes Keras from here: ``from tf_fastgrnn._keras import keras``.
"""

import tf_keras as keras

__all__ = ["keras"]
