"""Atomic writers: the destination is whole or untouched."""

import json

import numpy as np
import pytest

from tf_fastgrnn import fileio


def test_write_json_numpy_values(tmp_path):
  path = fileio.write_json(tmp_path / "a" / "r.json", {"x": np.float32(0.5),
                                                       "y": np.arange(3)})
  assert json.loads(path.read_text()) == {"x": 0.5, "y": [0, 1, 2]}


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
  path = tmp_path / "model.bin"
  fileio.write_bytes(path, b"old")
  with pytest.raises(RuntimeError):
    with fileio.atomic_path(path) as tmp:
      tmp.write_bytes(b"half")
      raise RuntimeError("killed")
  assert path.read_bytes() == b"old"
  assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]


def test_a_full_disk_names_the_file_being_written(tmp_path):
  """A write that fails for lack of space names no file; the writer names its target."""
  import errno  # pylint: disable=import-outside-toplevel
  path = tmp_path / "model_qat.keras"
  path.write_bytes(b"old")
  with pytest.raises(OSError) as e:
    with fileio.atomic_path(path):
      raise OSError(errno.ENOSPC, "No space left on device")
  assert (e.value.errno, e.value.filename) == (errno.ENOSPC, str(path))
  assert path.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [path]
