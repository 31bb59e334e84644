"""The run folder: what may be written where, who writes it, and replacing an earlier run.

A run writes only into its own folder. An existing folder is used only if it is empty
or holds an earlier run of this tool and nothing else; such a run is moved aside
(``<name>.replaced-<UTC time>``), or deleted with ``--overwrite``, and only after every
other check of the new run has passed. Anything else is refused: a tool that wipes a
user's folder is not run twice.

"Nothing else" is checked over the whole tree, not only its top level:

* ``manifest.json`` (``Manifest``) lists every file the run wrote, with its size and
  sha256, by stage; it is rewritten atomically as each stage finishes. A file the
  manifest does not list is the run's only if it carries a name the tool writes at that
  place (``_own``) and lies in the outputs of a stage that had not finished (a killed
  run's checkpoints, a half-written folder), or is one of the tool's own temporary
  files. ``--overwrite`` also refuses to delete a listed file whose content changed.
* A run folder made before the manifest existed is judged by those names alone: every
  file, at any depth, must carry a name the tool writes there.

A run holds ``.run.lock`` (``lock``: ``fcntl.flock``, released by the kernel when the
process ends, so a killed run never blocks the next) from before it writes anything
until it ends; a second run into the same folder, or ``diff_numerics`` reading it, is
refused while it is held, naming the process that holds it.

A run's record marks its folder: ``flags.json`` for ``train_and_export`` (its resolved
flags), ``deploy.json`` for ``tf_fastgrnn.deploy`` (its arguments). Each kind replaces
or resumes only a folder holding its own record (``record=``): the CLI never takes over
a ``deploy`` folder, nor ``deploy`` a CLI run.

This module imports no TensorFlow: ``pipelines.config`` checks the folder with it
before TensorFlow loads (through ``pipelines.run_folder``, which loads this file without
the ``tf_fastgrnn`` package, whose ``__init__`` starts TensorFlow).
"""

import dataclasses
import datetime
import fcntl
import hashlib
import json
import os
import pathlib
import re
import socket
import time

__all__ = ["ARTIFACTS", "DEPLOY", "DEPLOY_FORMAT", "Executor", "FLAGS", "LOCK_FILE", "MANIFEST",
           "Manifest", "RunFolderError", "RunLock", "Stage", "check", "check_not_in_use",
           "claim", "is_earlier_run", "lock", "replace", "resume_status", "verify"]

MANIFEST = "manifest.json"
LOCK_FILE = ".run.lock"
FLAGS = "flags.json"    # train_and_export's record
DEPLOY = "deploy.json"  # tf_fastgrnn.deploy's record
DEPLOY_FORMAT = "tf_fastgrnn deploy"

# Everything a run of train_and_export or deploy writes at the top of its folder (files
# and folders). The stage table in ``pipelines.stages`` must name only these (a test checks).
ARTIFACTS = frozenset({
    FLAGS, DEPLOY, "run.log", "model_float.keras", "float_training.json", "model_qat.keras",
    "qat_training.json", "model_int8.tflite", "quantization_plan.json",
    "model_int8_source.keras",
    "model_int8_window.tflite", "model_int8_fused.tflite", "tflm_eval.npz", "report.md",
    "report.json", "training.png", "confusion_tflm.png", "checkpoints", "tensorboard",
    "device", "numerics", "standalone", MANIFEST, LOCK_FILE,
})
_TOP_FOLDERS = frozenset({"checkpoints", "tensorboard", "device", "numerics", "standalone"})
_TOP_FILES = ARTIFACTS - _TOP_FOLDERS
# Top-level files never listed in the manifest: run.log grows while the run lasts, the
# manifest describes the others, the lock file holds the current holder's pid.
_UNLISTED = frozenset({"run.log", MANIFEST, LOCK_FILE})

# What the writers put in the run's folders (tests check these against
# device_files.DEVICE_FILES, fused.STANDALONE_FILES, parity.write_report, training).
DEVICE_FILES = frozenset({"model_data.h", "model_data.cc", "model_data_fused.cc",
                          "model_settings.h", "test_vectors.h", "test_vectors.cc",
                          "model.tflite"})
STANDALONE_FILES = frozenset({"model.h", "model.c", "fastgrnn_int8.h", "fastgrnn_int8.c",
                              "example_main.c"})
NUMERICS_FILES = frozenset({"numerics.json", "numerics.md", "numerics.png"})
TRAINING_PHASES = frozenset({"float", "qat"})  # checkpoints/<phase>, tensorboard/<phase>
CHECKPOINT_FILES = frozenset({"checkpoint", "history.json", "run.json", "best_weights.npz"})
_CHECKPOINT = re.compile(  # TensorFlow's checkpoint files, and its temporary names
    r"checkpoint\.tmp[0-9a-f]+|ckpt-\d+\.(index|data-\d{5}-of-\d{5})(\.tempstate\d+)?")
_CHECKPOINT_TEMP_DIR = re.compile(r"ckpt-\d+_temp")
_CHECKPOINT_PART = re.compile(
    r"part-\d{5}-of-\d{5}\.(index|data-\d{5}-of-\d{5})(\.tempstate\d+)?")
_TENSORBOARD_DIRS = frozenset({"train", "validation"})
_TENSORBOARD_FILE = re.compile(r"events\.out\.tfevents\..+")
# tempfile's names: prefix, 8 characters of [a-z0-9_], suffix (fileio.atomic_path uses
# ".<name>." and the name's suffix; device_files' mkdtemp ".device." and ".device.old.").
_RANDOM = r"[a-z0-9_]{8}"
_DEVICE_TEMP = re.compile(rf"\.device\.{_RANDOM}")
_DEVICE_OLD = re.compile(rf"\.device\.old\.{_RANDOM}")

FORMAT = "tf_fastgrnn run manifest"
# How long ``lock`` retries: a ``check`` elsewhere may hold the lock shared for a moment.
_LOCK_WAIT_SECONDS = 2.0


class RunFolderError(ValueError):
  """The output folder cannot be used; the message says why and how to proceed."""


def _is_temporary(name, names):
  """``name`` is fileio.atomic_path's temporary file for one of ``names``."""
  if not name.startswith("."):
    return False
  for target in names:
    suffix = pathlib.PurePath(target).suffix
    if re.fullmatch(rf"\.{re.escape(target)}\.{_RANDOM}{re.escape(suffix)}", name):
      return True
  return False


def _own(parts, is_dir):
  """Whether the tool writes a folder (``is_dir``) or file at ``parts`` (the path
  relative to the run folder, as a tuple of names)."""
  name, parent = parts[-1], parts[:-1]
  if not parent:
    if is_dir:
      return (name in _TOP_FOLDERS or bool(_DEVICE_TEMP.fullmatch(name))
              or bool(_DEVICE_OLD.fullmatch(name)))
    return name in _TOP_FILES or _is_temporary(name, _TOP_FILES)
  top, depth = parent[0], len(parent)
  if top == "device" or _DEVICE_TEMP.fullmatch(top):
    return depth == 1 and not is_dir and name in DEVICE_FILES
  if _DEVICE_OLD.fullmatch(top):
    return (depth == 1 and is_dir and name == "device") or (
        depth == 2 and not is_dir and parent[1] == "device" and name in DEVICE_FILES)
  if top in ("standalone", "numerics"):
    names = STANDALONE_FILES if top == "standalone" else NUMERICS_FILES
    return depth == 1 and not is_dir and (name in names or _is_temporary(name, names))
  if top == "checkpoints":
    if depth == 1:
      return is_dir and name in TRAINING_PHASES
    if depth == 2:
      if is_dir:
        return bool(_CHECKPOINT_TEMP_DIR.fullmatch(name))
      return (name in CHECKPOINT_FILES or bool(_CHECKPOINT.fullmatch(name))
              or _is_temporary(name, CHECKPOINT_FILES))
    return (depth == 3 and not is_dir and bool(_CHECKPOINT_TEMP_DIR.fullmatch(parent[2]))
            and bool(_CHECKPOINT_PART.fullmatch(name)))
  if top == "tensorboard":
    if depth == 1:
      return is_dir and name in TRAINING_PHASES
    if depth == 2:
      return is_dir and name in _TENSORBOARD_DIRS
    return depth == 3 and not is_dir and bool(_TENSORBOARD_FILE.fullmatch(name))
  return False


def _is_scratch(parts):
  """A temporary file or folder of the tool (never listed in a manifest)."""
  name = parts[-1]
  return (bool(_DEVICE_TEMP.fullmatch(parts[0])) or bool(_DEVICE_OLD.fullmatch(parts[0]))
          or bool(_CHECKPOINT_TEMP_DIR.fullmatch(parts[2] if len(parts) > 3 else ""))
          or name.startswith(".") or ".tmp" in name or ".tempstate" in name)


def _digest(path):
  """``(size, sha256 hex)`` of a file."""
  sha = hashlib.sha256()
  size = 0
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      sha.update(block)
      size += len(block)
  return size, sha.hexdigest()


def _walk(folder, start=()):
  """``(parts, is_dir, own)`` of everything under ``folder / start``, depth first in
  name order; enters only the folders the tool writes; a link, or anything but a
  regular file or folder, is never the tool's (``own`` False, ``is_dir`` False)."""
  with os.scandir(pathlib.Path(folder).joinpath(*start)) as it:
    entries = sorted(it, key=lambda e: e.name)
  for entry in entries:
    parts = start + (entry.name,)
    if entry.is_symlink():
      yield parts, False, False
      continue
    is_dir = entry.is_dir(follow_symlinks=False)
    if not is_dir and not entry.is_file(follow_symlinks=False):
      yield parts, False, False
      continue
    own = _own(parts, is_dir)
    yield parts, is_dir, own
    if is_dir and own:
      yield from _walk(folder, parts)


@dataclasses.dataclass
class _Survey:
  files: list    # the run's files (relative, "/"-separated)
  folders: list  # the run's folders
  foreign: list  # what the run did not write (a folder ends in "/")
  changed: list  # listed in the manifest, content differs (checked with ``hash_files``)


def _survey(folder, manifest, hash_files):
  survey = _Survey([], [], [], [])
  for parts, is_dir, own in _walk(folder):
    rel = "/".join(parts)
    if not own:
      survey.foreign.append(rel + ("/" if is_dir else ""))
    elif is_dir:
      survey.folders.append(rel)
    else:
      if manifest is not None and rel not in _UNLISTED and not _is_scratch(parts):
        verdict = manifest.judge(rel, hash_files)
        if verdict == "foreign":
          survey.foreign.append(rel)
          continue
        if verdict == "changed":
          survey.changed.append(rel)
      survey.files.append(rel)
  return survey


def _listed(paths, limit=5):
  return ", ".join(paths[:limit]) + (f" and {len(paths) - limit} more"
                                     if len(paths) > limit else "")


class Manifest:
  """``manifest.json``: every file the run wrote (size, sha256) and which stages finished.

  ``stages`` maps each stage to its outputs (files or folders, relative to the run
  folder; the stage ``flags`` owns the run's record, ``flags.json`` or ``deploy.json``)
  and whether it finished; ``files``
  maps each file a finished stage wrote to its size and sha256. ``begin`` (a stage
  starts: its files are forgotten) and ``finish`` (its files are listed) rewrite the
  file atomically.
  """

  def __init__(self, folder, data):
    self.folder = pathlib.Path(folder)
    self.data = data

  @classmethod
  def read(cls, folder):
    """The folder's manifest, or None where it has none (a run made before manifests,
    or not a run at all).

    Raises:
      RunFolderError: ``manifest.json`` is there but unreadable or not one of ours.
    """
    path = pathlib.Path(folder) / MANIFEST
    if not path.exists() and not path.is_symlink():
      return None
    try:
      data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
      raise RunFolderError(f"{path} is unreadable ({type(e).__name__}): not a manifest "
                           "this tool wrote; nothing was changed") from e
    if not (isinstance(data, dict) and data.get("format") == FORMAT
            and isinstance(data.get("stages"), dict) and isinstance(data.get("files"), dict)
            and all(isinstance(v, dict) and isinstance(v.get("outputs"), list)
                    and all(isinstance(o, str) and o for o in v["outputs"])
                    for v in data["stages"].values())
            and all(isinstance(v, dict) and isinstance(v.get("size"), int)
                    and isinstance(v.get("sha256"), str) for v in data["files"].values())):
      raise RunFolderError(f"{path} is not a manifest this tool wrote; nothing was changed")
    return cls(folder, data)

  @classmethod
  def create(cls, folder, stages, done=(), record=FLAGS):
    """A new manifest listing the run's ``record`` (written before it) and the stages in
    ``done`` (finished, their files as they are now); the others not finished.

    Args:
      folder: the run folder.
      stages: ``{stage: outputs}`` in run order.
      done: stages whose files are taken as they are (an earlier run from before
        manifests, resumed: its trained models).
      record: ``FLAGS`` (train_and_export) or ``DEPLOY``.
    """
    manifest = cls(folder, {"format": FORMAT, "version": 1, "stages": {}, "files": {}})
    manifest.add_stages({"flags": (record,), **stages}, write=False)
    for name in ("flags", *done):
      manifest._record(name)
    manifest._write()
    return manifest

  def add_stages(self, stages, write=True):
    """Adds the stages it does not know yet (not finished); for a manifest written
    before a stage existed."""
    missing = {k: v for k, v in stages.items() if k not in self.data["stages"]}
    for name, outputs in missing.items():
      self.data["stages"][name] = {"outputs": list(outputs), "done": False}
    if missing and write:
      self._write()

  def owner(self, rel):
    """The stage whose outputs hold ``rel``, or None."""
    for name, stage in self.data["stages"].items():
      for out in stage["outputs"]:
        if rel == out or rel.startswith(out + "/"):
          return name
    return None

  def done(self, stage):
    return bool(self.data["stages"].get(stage, {}).get("done"))

  def files_of(self, stage):
    return sorted(rel for rel in self.data["files"] if self.owner(rel) == stage)

  def begin(self, stage):
    """``stage`` starts (again): its files are forgotten until it finishes."""
    for rel in self.files_of(stage):
      del self.data["files"][rel]
    self.data["stages"][stage]["done"] = False
    self._write()

  def finish(self, stage):
    """``stage`` finished: every file of its outputs is listed, with size and sha256."""
    self._record(stage)
    self._write()

  def refresh(self, rel):
    """Lists anew the files of the finished stage whose outputs hold ``rel`` (another
    tool of ours, ``diff_numerics``, rewrote them); an unfinished stage stays so."""
    owner = self.owner(rel)
    if owner is not None and self.done(owner):
      self.finish(owner)

  def _record(self, stage):
    for rel in self.files_of(stage):
      del self.data["files"][rel]
    for out in self.data["stages"][stage]["outputs"]:
      path = self.folder / out
      parts = tuple(out.split("/"))
      if path.is_symlink():
        continue
      if path.is_file() and _own(parts, False):
        found = [parts]
      elif path.is_dir() and all(_own(parts[:i + 1], True) for i in range(len(parts))):
        found = [p for p, is_dir, own in _walk(self.folder, parts) if own and not is_dir]
      else:
        found = []
      for file_parts in found:
        if not _is_scratch(file_parts):
          size, sha = _digest(self.folder.joinpath(*file_parts))
          self.data["files"]["/".join(file_parts)] = {"size": size, "sha256": sha}
    self.data["stages"][stage]["done"] = True

  def _write(self):
    from tf_fastgrnn import fileio  # pylint: disable=import-outside-toplevel
    fileio.write_json(self.folder / MANIFEST, self.data)

  def differs(self, rel):
    """None if ``rel`` is the file the run wrote; else why not (one clause)."""
    record = self.data["files"].get(rel)
    path = self.folder / rel
    if record is None:
      return f"is not listed in {MANIFEST}: this run did not write it (or did not finish it)"
    if path.is_symlink() or not path.is_file():
      return f"is missing (listed in {MANIFEST})"
    size, sha = _digest(path)
    if (size, sha) != (record["size"], record["sha256"]):
      return (f"is not the file this run wrote ({MANIFEST} lists {record['size']} B, "
              f"sha256 {record['sha256'][:12]}…; it is {size} B, sha256 {sha[:12]}…)")
    return None

  def mismatch(self, stage):
    """The first file of a finished ``stage`` that differs from what it wrote, with why;
    None if all are as written."""
    for rel in self.files_of(stage):
      why = self.differs(rel)
      if why:
        return rel, why
    return None

  def judge(self, rel, hash_files):
    """``"ok"``, ``"changed"`` (listed, other content: with ``hash_files`` only) or
    ``"foreign"`` (not listed, and in no unfinished stage's outputs) for a file that
    carries one of the tool's names."""
    record = self.data["files"].get(rel)
    if record is not None:
      if hash_files and _digest(self.folder / rel) != (record["size"], record["sha256"]):
        return "changed"
      return "ok"
    owner = self.owner(rel)
    return "ok" if owner is not None and not self.done(owner) else "foreign"


def verify(folder, names):
  """Refuses a run folder whose ``names`` (those present) are not the files its run
  wrote, per its ``manifest.json``. A folder without a manifest (made before manifests
  existed, or by hand) is not checked; returns its manifest or None.

  Raises:
    RunFolderError: one line naming the first file that differs.
  """
  folder = pathlib.Path(folder)
  manifest = Manifest.read(folder)
  if manifest is None:
    return None
  for name in names:
    if (folder / name).exists() or (folder / name).is_symlink():
      why = manifest.differs(name)
      if why:
        raise RunFolderError(f"{folder / name} {why}; nothing was read from it")
  return manifest


# --- the lock --------------------------------------------------------------------------

class RunLock:
  """An exclusive ``flock`` on a run folder's ``.run.lock``; ``release`` (or the end of
  the process, however it ends) frees it."""

  def __init__(self, fd, folder):
    self._fd = fd
    self.folder = pathlib.Path(folder)

  def release(self):
    if self._fd is not None:
      os.close(self._fd)  # the kernel drops the flock with the last descriptor
      self._fd = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.release()


def _holder(fd):
  try:
    text = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
  except OSError:
    text = ""
  return text or "a process that did not say which"


def _in_use(shown, holder):
  return (f"{shown} is in use by another run ({holder}): wait for it to finish or choose "
          "another folder, nothing was changed")


def lock(folder, *, what="train_and_export", shown=None):
  """Takes the run folder's lock for this process, creating ``.run.lock``.

  Args:
    folder: an existing folder.
    what: who holds it (written into the lock file, so a refused run can name it).
    shown: how messages name the folder (default: its path).

  Raises:
    RunFolderError: another process holds it.
  """
  folder = pathlib.Path(folder)
  shown = shown or str(folder)
  try:
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o666)
  except OSError as e:
    raise RunFolderError(f"{shown}: cannot create its lock file {LOCK_FILE} "
                         f"({e.strerror}); nothing was changed") from e
  try:
    deadline = time.monotonic() + _LOCK_WAIT_SECONDS
    while True:
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        break
      except BlockingIOError:
        if time.monotonic() > deadline:
          raise RunFolderError(_in_use(shown, _holder(fd))) from None
        time.sleep(0.02)
    try:
      now = os.stat(folder / LOCK_FILE, follow_symlinks=False)
    except OSError:
      now = None
    mine = os.fstat(fd)
    if now is None or (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
      # The folder was moved aside (or the file replaced) while we waited: this lock
      # is no longer the folder's.
      raise RunFolderError(f"{shown} was replaced by another run while this one waited "
                           "for it: run again to check it afresh; nothing was changed")
    since = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{what}, pid {os.getpid()} on {socket.gethostname()}, since {since}\n"
              .encode(), 0)
  except BaseException:
    os.close(fd)
    raise
  return RunLock(fd, folder)


def check_not_in_use(folder, *, shown=None):
  """Raises RunFolderError if a process holds ``folder``'s lock; writes nothing."""
  holder = _probe(folder)
  if holder is not None:
    raise RunFolderError(_in_use(shown or str(folder), holder))


def _probe(folder):
  """Who holds ``folder``'s lock, or None (free, or no lock file). Takes it shared for
  a moment, so writes nothing."""
  try:
    fd = os.open(pathlib.Path(folder) / LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
  except OSError:
    return None
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
      return _holder(fd)
    fcntl.flock(fd, fcntl.LOCK_UN)
    return None
  finally:
    os.close(fd)


# --- checking and claiming a folder ------------------------------------------------------

def _writable(path):
  return os.access(path, os.W_OK | os.X_OK)


def _read_record(folder, record):
  """The run's record (``FLAGS`` or ``DEPLOY``) if it is one of ours, else None."""
  try:
    data = json.loads((folder / record).read_text())
  except (OSError, ValueError):
    return None
  if not isinstance(data, dict):
    return None
  if record == DEPLOY:
    return data if data.get("format") == DEPLOY_FORMAT else None
  return data if "dataset" in data and "cell" in data else None


def is_earlier_run(folder, record=FLAGS):
  """True if ``folder`` holds a run of this tool (of the kind ``record`` marks) and
  nothing else (at any depth)."""
  folder = pathlib.Path(folder)
  if folder.is_symlink() or not folder.is_dir() or _read_record(folder, record) is None:
    return False
  try:
    manifest = Manifest.read(folder)
  except RunFolderError:
    return False
  return not _survey(folder, manifest, hash_files=False).foreign


def _lock_only(entries):
  return [e for e in entries if not (e.name == LOCK_FILE and e.is_file()
                                     and not e.is_symlink())]


def _state(path, *, resume, overwrite, shown, record=FLAGS):
  """``check`` without looking at the lock."""
  if path.is_symlink() and not path.exists():
    raise RunFolderError(f"{shown} is a symbolic link to {os.readlink(path)}, which does "
                         "not exist: choose a folder path, nothing was changed")
  if path.exists() and not path.is_dir():
    raise RunFolderError(f"{shown} is a file, not a folder: choose a folder path")
  existing = path
  while not existing.exists():
    if existing.parent == existing:
      break
    existing = existing.parent
  if existing != path and not existing.is_dir():
    raise RunFolderError(f"{shown} lies under {existing}, which is a file, not a folder")
  if not _writable(existing):
    raise RunFolderError(f"{shown}: {existing} is not writable by this user")
  if not path.exists():
    if resume:
      raise RunFolderError(f"--resume needs an earlier run in {shown} (it does not exist)")
    return "new"
  entries = _lock_only(path.iterdir())
  if not entries:  # a run killed before it wrote anything leaves its lock file alone
    if resume:
      raise RunFolderError(f"--resume needs an earlier run in {shown} (it is empty)")
    return "empty"
  if not (path / record).is_file():
    what = ("--resume needs an earlier run in" if resume else "refusing to write into")
    names = sorted(e.name for e in entries)
    foreign = [n for n in names if not _own((n,), (path / n).is_dir())] or names
    raise RunFolderError(
        f"{what} {shown}: it is not a tf_fastgrnn run folder (no {record}; it holds "
        f"{_listed(foreign)}); choose a new or empty folder, nothing was changed")
  if _read_record(path, record) is None:
    raise RunFolderError(f"{shown}/{record} is not a run's {record} (unreadable or "
                         "not ours); choose another folder, nothing was changed")
  manifest = Manifest.read(path)
  survey = _survey(path, manifest, hash_files=overwrite and not resume)
  if survey.foreign:
    raise RunFolderError(
        f"{shown} holds an earlier run and files this tool did not write "
        f"({_listed(survey.foreign)}); move those files out or choose another folder, "
        "nothing was changed")
  if survey.changed:
    raise RunFolderError(
        f"{shown}: --overwrite would delete files changed since the run wrote them "
        f"({_listed(survey.changed)}); move them out, or leave out --overwrite to move the "
        "earlier run aside, nothing was changed")
  if resume:
    stuck = [f for f in [""] + survey.folders if not _writable(path / f)]
    if stuck:
      raise RunFolderError(f"--resume writes into {path / stuck[0]}, which is not "
                           "writable by this user; nothing was changed")
    return "earlier_run"
  if path.is_symlink():
    raise RunFolderError(
        f"{shown} is a symbolic link to {os.readlink(path)}: an earlier run is replaced "
        "only through its own path (pass that as --output_dir), nothing was changed")
  parent = path.resolve().parent
  if not _writable(parent):
    how = "deleted" if overwrite else "moved aside"
    raise RunFolderError(
        f"{shown} holds an earlier run, which is {how} in {parent}; that folder is not "
        "writable by this user: choose another --output_dir, nothing was changed")
  if overwrite:
    stuck = [f for f in [""] + survey.folders if not _writable(path / f)]
    if stuck:
      raise RunFolderError(f"--overwrite cannot delete the earlier run: {path / stuck[0]} "
                           "is not writable by this user; nothing was changed")
  return "earlier_run"


def check(output_dir, *, resume, overwrite=False, flag="--output_dir", record=FLAGS):
  """Checks, without writing anything, that a run may use ``output_dir``.

  Returns:
    ``"new"`` (absent: will be created), ``"empty"``, or ``"earlier_run"``.

  Raises:
    RunFolderError: a file where a folder is needed, a folder we may not write, a
      folder another run is using, a folder holding anything but an earlier run (at
      any depth), ``--overwrite`` of files changed since the run wrote them, an earlier
      run to replace through a symbolic link or in a folder we may not write, or
      ``resume`` without an earlier run. An earlier run is one whose folder holds
      ``record`` (``FLAGS``: train_and_export's; ``DEPLOY``: deploy's).
  """
  path = pathlib.Path(output_dir)
  shown = f"{flag}={output_dir}"
  if path.is_dir():
    check_not_in_use(path, shown=shown)
  return _state(path, resume=resume, overwrite=overwrite, shown=shown, record=record)


def _aside(path):
  """Renames the (locked) run ``path`` to ``<name>.replaced-<UTC time>``; its lock file
  goes, so the folder is as the run left it."""
  stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
  target = path.with_name(f"{path.name}.replaced-{stamp}")
  n = 1
  while target.exists():
    n += 1
    target = path.with_name(f"{path.name}.replaced-{stamp}-{n}")
  os.rename(path, target)
  try:
    (target / LOCK_FILE).unlink()
  except OSError:
    pass
  return target


def _delete_run(folder):
  """Deletes the run in ``folder`` (moved aside, so no run uses it): only the files the
  tool wrote, then its folders. Returns None, or why something was kept."""
  try:
    survey = _survey(folder, Manifest.read(folder), hash_files=False)
  except RunFolderError as e:
    return f"{e}; it is kept in {folder}"
  if survey.foreign:
    return (f"{folder} holds files this tool did not write ({_listed(survey.foreign)}); "
            "it is kept")
  try:
    for rel in survey.files:
      (folder / rel).unlink()
    for rel in sorted(survey.folders, key=lambda f: -f.count("/")):
      (folder / rel).rmdir()  # fails if something appeared meanwhile: kept
    folder.rmdir()
  except OSError as e:
    return f"it could not be deleted completely ({e}); what is left is in {folder}"
  return None


def claim(output_dir, state, *, resume, overwrite, what="train_and_export",
          flag="--output_dir", record=FLAGS):
  """Takes ``output_dir`` for a run, after ``check`` returned ``state`` and every other
  check passed: locks it, checks it again under the lock, and moves an earlier run aside
  (deleting it with ``overwrite``) unless resuming.

  Returns:
    ``(RunLock, note)``: the lock (release it when the run ends) and a line for the
    log about the earlier run, or None.

  Raises:
    RunFolderError: another run holds the folder, or it changed since ``check``.
  """
  path = pathlib.Path(output_dir)
  shown = f"{flag}={output_dir}"
  if state == "new":
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
      os.mkdir(path)
    except FileExistsError:
      pass  # made by another process since: its lock and the check below decide
  held = lock(path, what=what, shown=shown)
  try:
    now = _state(path, resume=resume, overwrite=overwrite, shown=shown, record=record)
    if now != ("empty" if state == "new" else state):
      raise RunFolderError(f"{shown} changed since it was checked (another run wrote into "
                           "it): run again to check it afresh; nothing was changed")
  except BaseException:
    held.release()
    raise
  if state != "earlier_run" or resume:
    return held, None
  try:  # the old lock is held until the new folder is ours
    moved = _aside(path)
    try:
      os.mkdir(path)
    except FileExistsError:
      raise RunFolderError(f"{shown} was made again by another process once the earlier "
                           f"run was moved to {moved}; nothing else was changed") from None
    new = lock(path, what=what, shown=shown)
  finally:
    held.release()
  if not overwrite:
    return new, (f"the earlier run in {output_dir} was moved to {moved} (delete it when "
                 "you no longer need it)")
  kept = _delete_run(moved)
  return new, (f"the earlier run in {output_dir} was deleted (--overwrite)" if kept is None
               else f"the earlier run in {output_dir} was moved to {moved}, not deleted: "
               f"{kept}")


def replace(output_dir, *, overwrite):
  """Moves the earlier run in ``output_dir`` to a sibling ``<name>.replaced-<UTC time>``,
  or deletes it when ``overwrite`` (only the files it wrote). Checked again under its
  lock, so nothing but an earlier run is ever moved or deleted.

  Returns:
    The path the earlier run was moved to, or None (deleted).
  """
  path = pathlib.Path(output_dir)
  if not is_earlier_run(path):
    raise RunFolderError(f"{path} is not an earlier run of this tool; nothing was changed")
  with lock(path):
    _state(path, resume=False, overwrite=overwrite, shown=str(path))
    moved = _aside(path)
  if not overwrite:
    return moved
  kept = _delete_run(moved)
  if kept is not None:
    raise RunFolderError(f"the earlier run was moved to {moved}, not deleted: {kept}")
  return None


# --- running stages: resume -----------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Stage:
  """One step of a run, as the manifest knows it: ``artifact`` (relative to the run
  folder) is written last; ``outputs`` (default: the artifact alone) are the files and
  folders it writes; ``distributed``: a training stage, run on every worker."""
  name: str
  artifact: str
  outputs: tuple = ()
  distributed: bool = False

  @property
  def files(self):
    """What the stage writes: ``outputs``, or its artifact alone."""
    return tuple(self.outputs) or (self.artifact,)


def resume_status(manifest, stage, out):
  """On resume: True if ``stage`` finished and its files are as it wrote them
  (``manifest.json``), a reason (str) if it finished but they are not, None if it did
  not finish. Without a manifest (another worker reading a run from before manifests),
  only a training stage's existing model is taken.

  Raises:
    RunFolderError: a finished stage's checkpoint is not the one it wrote: continuing
      from it is not safe.
  """
  if manifest is None:
    return True if stage.distributed and (pathlib.Path(out) / stage.artifact).exists() else None
  if not manifest.done(stage.name):
    return None
  mismatch = manifest.mismatch(stage.name)
  if mismatch is None:
    return True
  rel, why = mismatch
  if rel.startswith("checkpoints/"):
    raise RunFolderError(f"--resume: {pathlib.Path(out) / rel} {why}: the {stage.name} "
                         "cannot continue from it; run again without --resume")
  return f"{rel} {why}"


class Executor:
  """Runs a run's stages in order and owns resume.

  ``run(name, compute, load)`` returns the stage's result: ``load()`` where resuming,
  the stage finished, its files are as it wrote them (``manifest.json``), its artifact
  exists and no stage before it ran again; else ``compute()``, which writes the stage's
  files (artifact last), after which the manifest lists them. Once one stage runs
  again, every later one does. A stage that finished without its artifact (one a
  model does not have, e.g. the fused kernel of an LSTM) is computed again and, as it
  changes nothing, does not make the later stages run.
  """

  def __init__(self, out, stages, *, manifest, resume, log, whose="",
               write_manifest=True):
    """
    Args:
      out: the run folder.
      stages: the ``Stage``s this run has, in order.
      manifest: the run's ``Manifest``, or None (a run from before manifests, read by
        a worker that is not the chief).
      resume: load what finished (else compute every stage).
      log: ``log(line)``.
      whose: how the log names the artifacts' writer (e.g. "the chief's ").
      write_manifest: False: ``manifest`` is only read (a worker that is not the
        chief, reading the chief's folder, writes nothing there).
    """
    self.out = pathlib.Path(out)
    self.stages = {stage.name: stage for stage in stages}
    self.manifest, self.log, self.whose = manifest, log, whose
    self._writes = manifest is not None and write_manifest
    self._again = not resume
    self._status = ({name: resume_status(manifest, stage, self.out)
                     for name, stage in self.stages.items()} if resume else {})

  def run(self, name, compute, load):
    stage = self.stages[name]
    status = self._status.get(name)
    trusted = not self._again and status is True
    if trusted and (self.out / stage.artifact).exists():
      self.log(f"resume: {self.whose}{stage.artifact} exists, {name} skipped")
      return load()
    if not self._again and isinstance(status, str):
      self.log(f"resume: {status}: {name} and every stage after it run again")
    if self._writes:
      self.manifest.begin(name)
    result = compute()
    if self._writes:
      self.manifest.finish(name)
    self._again = self._again or not trusted
    return result
