"""Shared fixtures: a fixed seed for every test, and the path of the shared data."""

import fcntl
import hashlib
import os
import pathlib
import shutil

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


def shared_once(tmp_path_factory, name, build):
  """A folder ``build(folder)`` fills once per test run, shared by the xdist workers.

  Under ``pytest -n`` every worker is its own session, so a module fixture that trains
  or converts runs once per worker that needs it. The first worker builds the folder
  under a file lock; the others wait for it and reuse it. ``build`` must leave the
  folder complete or raise (the next caller then builds it afresh).
  """
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent  # the run's folder, common to the workers
  folder = root / f"shared-{name}"
  with open(root / f"shared-{name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not (folder / ".done").exists():
      if folder.exists():  # left by a build that failed: start afresh
        shutil.rmtree(folder)
      folder.mkdir()
      build(folder)
      (folder / ".done").touch()
  return folder


def compiled_kernel(tmp_path_factory, flags=("-O2",)):
  """``fused.compile_kernel(flags=flags)``'s library, built once per test run for these
  kernel sources, compiler and flags (the fused tests' modules share it)."""
  from tf_fastgrnn import fused  # pylint: disable=import-outside-toplevel
  digest = hashlib.sha256(repr((os.environ.get("CC", "cc"), tuple(flags))).encode())
  for path in sorted(pathlib.Path(fused.KERNEL_DIR).iterdir()):
    if path.is_file():
      digest.update(path.name.encode() + b"\0" + path.read_bytes())
  folder = shared_once(tmp_path_factory, f"kernel-{digest.hexdigest()[:16]}",
                       lambda out: fused.compile_kernel(str(out), flags=flags))
  return str(folder / "libfastgrnn_int8.so")


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
  """Runs the ``slow`` tests first, in collection order otherwise (a stable sort).

  With ``pytest -n 2`` (scripts/test.sh) the workers take tests in this order: the long
  ones start at once on both cores instead of leaving one core busy with a trailing
  training run while the other idles. Runs after pytest's own reordering for shared
  fixtures, which the stable sort keeps within each group.
  """
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)
