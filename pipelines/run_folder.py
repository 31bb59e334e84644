"""The run folder: what may be written where, and replacing an earlier run safely.

A run writes only into its own folder. An existing folder is used only if it is empty
or holds an earlier run of this tool and nothing else (``flags.json`` plus the known
artifacts); such a run is moved aside (``<name>.replaced-<UTC time>``), or deleted with
``--overwrite``, and only after every other check of the new run has passed. Anything
else is refused: a tool that wipes a user's folder is not run twice.
"""

import datetime
import json
import os
import pathlib
import shutil

__all__ = ["ARTIFACTS", "RunFolderError", "check", "is_earlier_run", "replace"]

# Everything a run of train_and_export writes at the top of its folder (files and
# folders). The stage table in ``pipelines.stages`` must name only these (a test checks).
ARTIFACTS = frozenset({
    "flags.json", "run.log", "model_float.keras", "float_training.json", "model_qat.keras",
    "qat_training.json", "model_int8.tflite", "quantization_plan.json",
    "model_int8_source.keras",
    "model_int8_window.tflite", "model_int8_fused.tflite", "tflm_eval.npz", "report.md",
    "report.json", "training.png", "confusion_tflm.png", "checkpoints", "tensorboard",
    "device", "numerics", "standalone",
})


class RunFolderError(ValueError):
  """The output folder cannot be used; the message says why and how to proceed."""


def _is_own_temporary(name):
  # fileio's atomic writers and device_files use ".<artifact>.<random>" beside the target.
  return name.startswith(".") and any(name[1:].startswith(a + ".") for a in ARTIFACTS)


def _foreign_entries(folder):
  foreign = []
  for entry in sorted(folder.iterdir()):
    if entry.is_symlink() or not (entry.name in ARTIFACTS or _is_own_temporary(entry.name)):
      foreign.append(entry.name)
  return foreign


def is_earlier_run(folder):
  """True if ``folder`` holds a run of this tool and nothing else."""
  folder = pathlib.Path(folder)
  try:
    flags = json.loads((folder / "flags.json").read_text())
  except (OSError, ValueError):
    return False
  return (isinstance(flags, dict) and "dataset" in flags and "cell" in flags
          and not _foreign_entries(folder))


def check(output_dir, *, resume, flag="--output_dir"):
  """Checks, without writing anything, that a run may use ``output_dir``.

  Returns:
    ``"new"`` (absent: will be created), ``"empty"``, or ``"earlier_run"``.

  Raises:
    RunFolderError: a file where a folder is needed, a folder we may not write, a
      folder holding anything but an earlier run, or ``resume`` without an earlier run.
  """
  path = pathlib.Path(output_dir)
  shown = f"{flag}={output_dir}"
  if path.exists() and not path.is_dir():
    raise RunFolderError(f"{shown} is a file, not a folder: choose a folder path")
  existing = path
  while not existing.exists():
    if existing.parent == existing:
      break
    existing = existing.parent
  if existing != path and not existing.is_dir():
    raise RunFolderError(f"{shown} lies under {existing}, which is a file, not a folder")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise RunFolderError(f"{shown}: {existing} is not writable by this user")
  if not path.exists():
    if resume:
      raise RunFolderError(f"--resume needs an earlier run in {shown} (it does not exist)")
    return "new"
  entries = list(path.iterdir())
  if not entries:
    if resume:
      raise RunFolderError(f"--resume needs an earlier run in {shown} (it is empty)")
    return "empty"
  if is_earlier_run(path):
    return "earlier_run"
  if not (path / "flags.json").is_file():
    what = ("--resume needs an earlier run in" if resume else "refusing to write into")
    foreign = _foreign_entries(path)
    listed = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5
                                       else "")
    raise RunFolderError(
        f"{what} {shown}: it is not a tf_fastgrnn run folder (no flags.json; it holds "
        f"{listed}); choose a new or empty folder, nothing was changed")
  foreign = _foreign_entries(path)
  if foreign:
    listed = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5
                                       else "")
    raise RunFolderError(
        f"{shown} holds an earlier run and files this tool did not write ({listed}); "
        "move those files out or choose another folder, nothing was changed")
  raise RunFolderError(f"{shown}/flags.json is not a run's flags.json (unreadable or "
                       "not ours); choose another folder, nothing was changed")


def replace(output_dir, *, overwrite):
  """Clears the way for a new run in ``output_dir`` (after ``check`` said earlier_run).

  The earlier run is moved to a sibling ``<name>.replaced-<UTC time>``, or deleted when
  ``overwrite``. Checked again here, so nothing but an earlier run is ever moved or
  deleted.

  Returns:
    The path the earlier run was moved to, or None (deleted).
  """
  path = pathlib.Path(output_dir)
  if not is_earlier_run(path):
    raise RunFolderError(f"{path} is not an earlier run of this tool; nothing was changed")
  if overwrite:
    shutil.rmtree(path)
    return None
  stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
  target = path.with_name(f"{path.name}.replaced-{stamp}")
  n = 1
  while target.exists():
    n += 1
    target = path.with_name(f"{path.name}.replaced-{stamp}-{n}")
  os.rename(path, target)
  return target
