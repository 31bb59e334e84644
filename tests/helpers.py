"""Builders the tests share: a random classifier and its int8 export."""

import numpy as np

from tf_fastgrnn import export
from tf_fastgrnn import models


def random_classifier(rng, cell, units, input_shape, num_classes, std=0.4, **cell_kwargs):
  """``models.sequence_classifier`` with every weight drawn from N(0, std) by ``rng``."""
  model = models.sequence_classifier(cell, units, input_shape, num_classes, **cell_kwargs)
  for var in model.weights:
    var.assign(rng.normal(0, std, var.shape))
  return model


def converted_classifier(cell, units, input_shape, num_classes, *, windows, seed=0,
                         std=0.4, **cell_kwargs):
  """A random float classifier, ``windows`` random windows (N(0, 1)) and the int8 step
  model calibrated on them: ``(model, tflite_bytes, windows, rng)``, all from ``seed``."""
  rng = np.random.default_rng(seed)
  model = random_classifier(rng, cell, units, input_shape, num_classes, std, **cell_kwargs)
  x = rng.normal(0, 1, (windows,) + tuple(input_shape)).astype(np.float32)
  return model, export.convert_step_model(model, x), x, rng
