"""What a data path is, found with ``os.stat`` alone: a FIFO or a device given as data
would block or never end if opened, so nothing here opens the path.

Standard library only, so ``pipelines/config.py`` checks ``--data_dir`` before TensorFlow
loads, with the same words as the loaders.
"""

import os
import stat

__all__ = ["check_data_dir", "kind"]

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISSOCK, "a socket"))
_NPZ = "npz"
_FOLDER_DATASETS = ("fsdd", "speech_commands", "google12", "google30")


def kind(path):
  """``"missing"``, ``"a file"`` (a regular file), ``"a folder"``, ``"a character
  device"``, ``"a block device"``, ``"a FIFO (named pipe)"``, ``"a socket"`` or
  ``"unreadable (<reason>)"``; symlinks are followed."""
  try:
    mode = os.stat(path).st_mode
  except FileNotFoundError:
    return "missing"
  except OSError as e:
    return f"unreadable ({e.strerror or type(e).__name__})"
  if stat.S_ISREG(mode):
    return "a file"
  for test, name in _KINDS:
    if test(mode):
      return name
  return "neither a file nor a folder"


def check_data_dir(dataset, data_dir):
  """Raises if ``data_dir`` cannot be ``dataset``'s data: an npz dataset needs a regular
  file, the audio datasets a folder; other datasets (HAR) do not read it.

  Raises:
    FileNotFoundError: ``data_dir`` does not exist.
    ValueError: it is another kind of thing, named (``kind``).
  """
  if data_dir is None or dataset not in (_NPZ,) + _FOLDER_DATASETS:
    return
  found = kind(data_dir)
  if dataset == _NPZ:
    if found == "missing":
      raise FileNotFoundError(f"npz file not found: {data_dir}")
    if found != "a file":
      raise ValueError(f"npz: data_dir {data_dir} is {found}, not an .npz file")
    return
  if found == "missing":
    raise FileNotFoundError(f"{dataset}: data_dir {data_dir} does not exist")
  if found != "a folder":
    raise ValueError(f"{dataset}: data_dir {data_dir} is {found}, not a folder of "
                     "recordings")
