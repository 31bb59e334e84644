"""Shared fixtures: a fixed seed for every test, and the path of the shared data."""

import os
import pathlib

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True)
def seed():
  """Seeds NumPy, Python and TensorFlow for every test; returns the seed."""
  from tf_fastgrnn._keras import keras  # pylint: disable=import-outside-toplevel
  keras.utils.set_random_seed(1234)
  np.random.seed(1234)
  return 1234


@pytest.fixture
def rng(seed):
  return np.random.default_rng(seed)


@pytest.fixture
def fsdd_dir():
  """The real Free Spoken Digit recordings, or a skip where ../shared is absent."""
  path = SHARED / "data" / "fsdd" / "recordings"
  if not path.is_dir():
    pytest.skip(f"needs the shared FSDD copy at {path} (../shared is absent here)")
  return path


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
