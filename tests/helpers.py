"""Builders the tests share: a random classifier and its int8 export."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from tf_fastgrnn import export
from tf_fastgrnn import models
from tf_fastgrnn import spec
from tf_fastgrnn import training


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


def recipe(**changes):
  """A ``Recipe`` of the ``plain`` preset (constant rate, no clipping, last epoch kept)
  with ``changes``: the recipe the training tests were written for."""
  return spec.Spec.preset("plain").recipe.replace(**changes)


def options(**fields):
  """``training.FitOptions(**fields)``, callbacks as a tuple."""
  if "callbacks" in fields:
    fields["callbacks"] = tuple(fields["callbacks"])
  return training.FitOptions(**fields)


_OPTIONS = {f for f in training.FitOptions.__dataclass_fields__}


def fit_args(**kwargs):
  """The keyword arguments of ``training.fit``/``pruning.train_three_phase`` from one
  flat dict: recipe fields (on the plain preset, see ``recipe``), ``FitOptions`` fields,
  ``seed`` and ``checkpoint_dir``."""
  direct = {k: kwargs.pop(k) for k in ("seed", "checkpoint_dir") if k in kwargs}
  opts = {k: kwargs.pop(k) for k in list(kwargs) if k in _OPTIONS}
  return {"recipe": recipe(**kwargs), **direct, "options": options(**opts)}


def run_under_backend(test_file, backend, pytest_args, timeout):
  """Runs ``test_file``'s tests again in a subprocess under Keras 3's ``backend``; skips
  when that backend is not installed, fails unless some passed and none failed."""
  if importlib.util.find_spec(backend) is None:
    pytest.skip(f"the {backend} backend is not installed (scripts/test.sh installs the "
                "keras3 extra)")
  result = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
       test_file, *pytest_args], env={**os.environ, "KERAS_BACKEND": backend},
      capture_output=True, text=True, check=False, timeout=timeout,
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert " passed" in result.stdout and "failed" not in result.stdout
