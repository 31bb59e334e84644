"""The run folder: nothing the tool did not write is moved or deleted, at any depth; a
run locks its folder; ``diff_numerics`` reads only the files the run wrote.

Most cases are hand-made folders (``flags.json``, a few stand-in artifacts, a
``manifest.json``) refused before TensorFlow loads; ``test_pipeline.py`` resumes a real
tiny run whose files were tampered with.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from pipelines import run_folder
from tests.conftest import REPO
from tests.test_bad_inputs import TINY
from tests.test_bad_inputs import _assert_refused
from tests.test_bad_inputs import _earlier_run
from tests.test_bad_inputs import _main
from tests.test_bad_inputs import _npz
from tests.test_bad_inputs import _snapshot

# Stages of the hand-made runs below and what they wrote (as pipelines.stages lists them).
STAGES = {"int8 export": ("model_int8.tflite",), "device files": ("device",),
          "numerics diff": ("numerics",), "report": ("report.json",)}


def _listed_run(root):
  """``_earlier_run`` with the manifest.json a run of today leaves: every stage done."""
  out = _earlier_run(root)
  manifest = run_folder.Manifest.create(out, STAGES)
  for name in STAGES:
    manifest.finish(name)
  return out


@contextlib.contextmanager
def _unwritable(folder):
  """``folder`` made unwritable: mode 0500 for an ordinary user; for root (who writes
  any folder whatever its mode) the immutable attribute, where chattr can set it."""
  if os.geteuid() != 0:
    folder.chmod(0o500)
    try:
      yield
    finally:
      folder.chmod(0o700)
    return
  if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
    pytest.skip("root, and chattr +i is not available here: no folder is unwritable")
  try:
    yield
  finally:
    subprocess.run(["chattr", "-i", str(folder)], check=True)


# --- issue 26, 1: a user's file anywhere in an earlier run ---------------------------

USER_FILES = ["device/my_notes.txt", "standalone/my_main.c", ".report.md.orig",
              "checkpoints/float/notes.txt", "device/model.tflite/mine.bin"]


@pytest.mark.parametrize("user_file", USER_FILES)
@pytest.mark.parametrize("extra", [[], ["--overwrite"]], ids=["move_aside", "overwrite"])
def test_user_file_inside_an_earlier_run_is_refused(tmp_path, user_file, extra):
  data = _npz(tmp_path / "data.npz")
  out = _earlier_run(tmp_path / "run")  # made before manifests: judged by names
  (out / user_file).parent.mkdir(parents=True, exist_ok=True)
  (out / user_file).write_text("keep\n")
  before = _snapshot(tmp_path)
  # A folder named like one of the tool's files is the user's, listed as a folder.
  first = "device/model.tflite/" if user_file.endswith("mine.bin") else user_file
  _assert_refused(_main(TINY + extra + [f"--data_dir={data}", f"--output_dir={out}"]), 2,
                  ["files this tool did not write", first, "nothing was changed"])
  assert _snapshot(tmp_path) == before


def test_listed_run_refuses_unlisted_and_overwrite_of_changed_files(tmp_path):
  out = _listed_run(tmp_path / "run")
  assert run_folder.check(out, resume=False, overwrite=True) == "earlier_run"
  # A name the tool writes, but the finished device stage did not write it.
  (out / "device" / "model_data_fused.cc").write_text("// from another run\n")
  with pytest.raises(run_folder.RunFolderError,
                     match=r"did not write \(device/model_data_fused.cc\)"):
    run_folder.check(out, resume=False)
  (out / "device" / "model_data_fused.cc").unlink()
  # A file the run wrote, edited since: kept by moving the run aside, never deleted.
  (out / "report.json").write_text('{"edited": true}')
  with pytest.raises(run_folder.RunFolderError,
                     match=r"--overwrite would delete files changed since .*\(report.json\)"):
    run_folder.check(out, resume=False, overwrite=True)
  assert run_folder.check(out, resume=False) == "earlier_run"
  assert run_folder.check(out, resume=True) == "earlier_run"  # the stage runs again
  # A stage killed midway: its files are the run's though not listed yet.
  run_folder.Manifest.read(out).begin("device files")
  (out / "device" / "test_vectors.h").write_text("// half\n")
  assert run_folder.is_earlier_run(out)


def test_names_of_the_tool_at_any_depth(tmp_path):
  out = _earlier_run(tmp_path / "run")
  for rel in ("checkpoints/float/ckpt-3.index", "checkpoints/float/ckpt-3.data-00000-of-00001",
              "checkpoints/qat/checkpoint", "checkpoints/float/history.json",
              "checkpoints/float/.history.json.ab_cd123.json",
              "checkpoints/float/ckpt-4_temp/part-00000-of-00001.index",
              "tensorboard/float/train/events.out.tfevents.1796527301.vm.8996.0.v2",
              "numerics/numerics.md", "standalone/model.c", ".report.md.k2j4l5m6.md",
              ".device.x1y2z3w4/model_settings.h"):
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    (out / rel).write_text("ours\n")
  assert run_folder.is_earlier_run(out)
  for rel in ("model_float.keras/notes.txt", "numerics/extra.csv", "tensorboard/float/x.txt",
              "checkpoints/mine/ckpt-1.index", "device/sub/model.tflite"):
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    (out / rel).write_text("mine\n")
    assert not run_folder.is_earlier_run(out), rel
    (out / rel).unlink()


@pytest.mark.parametrize("extra", [[], ["--overwrite"]], ids=["move_aside", "overwrite"])
def test_earlier_run_in_an_unwritable_folder(tmp_path, extra):
  data = _npz(tmp_path / "data.npz")
  parent = tmp_path / "locked"
  parent.mkdir()
  out = _earlier_run(parent / "run")
  with _unwritable(parent):
    before = _snapshot(tmp_path)
    _assert_refused(_main(TINY + extra + [f"--data_dir={data}", f"--output_dir={out}"]),
                    2, [str(parent), "not writable", "nothing was changed"])
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("extra", [[], ["--overwrite"]], ids=["move_aside", "overwrite"])
def test_output_dir_a_symlink_to_an_earlier_run(tmp_path, extra):
  data = _npz(tmp_path / "data.npz")
  out = _earlier_run(tmp_path / "run")
  link = tmp_path / "latest"
  link.symlink_to(out)
  dangling = tmp_path / "gone"
  dangling.symlink_to(tmp_path / "nothing")
  before = _snapshot(tmp_path)
  _assert_refused(_main(TINY + extra + [f"--data_dir={data}", f"--output_dir={link}"]), 2,
                  ["symbolic link", str(out), "nothing was changed"])
  _assert_refused(_main(TINY + extra + [f"--data_dir={data}", f"--output_dir={dangling}"]),
                  2, ["symbolic link", "does not exist"])
  assert _snapshot(tmp_path) == before


# --- issue 26, 5: one run per folder ------------------------------------------------------

def test_the_lock_admits_one_holder(tmp_path):
  held = run_folder.lock(tmp_path, what="first")
  with pytest.raises(run_folder.RunFolderError,
                     match=rf"in use by another run \(first, pid {os.getpid()} on "):
    run_folder.lock(tmp_path)
  with pytest.raises(run_folder.RunFolderError, match="in use by another run"):
    run_folder.check(tmp_path, resume=False)
  held.release()
  run_folder.lock(tmp_path).release()
  assert run_folder.check(tmp_path, resume=False) == "empty"  # its lock file alone


_HOLD = """
import sys, time
from pipelines import run_folder
held = run_folder.lock(sys.argv[1], what="train_and_export")
print("locked", flush=True)
time.sleep(600)
"""


def test_second_run_is_refused_and_a_killed_holder_blocks_nothing(tmp_path):
  data = _npz(tmp_path / "data.npz")
  out = _earlier_run(tmp_path / "run")
  holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    before = _snapshot(tmp_path)
    for extra in ([], ["--overwrite"], ["--resume"]):
      _assert_refused(_main(TINY + extra + [f"--data_dir={data}", f"--output_dir={out}"]),
                      2, ["in use by another run", f"pid {holder.pid}", str(out),
                          "nothing was changed"])
    assert _snapshot(tmp_path) == before
    with pytest.raises(run_folder.RunFolderError, match=f"pid {holder.pid}"):
      run_folder.claim(out, "earlier_run", resume=False, overwrite=True)
    assert _snapshot(tmp_path) == before
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  # The kernel released the killed holder's lock: its stale file blocks nothing.
  assert run_folder.check(out, resume=False, overwrite=True) == "earlier_run"
  held, note = run_folder.claim(out, "earlier_run", resume=False, overwrite=True)
  held.release()
  assert "deleted (--overwrite)" in note
  assert [p.name for p in out.iterdir()] == [run_folder.LOCK_FILE]
  assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npz", "run"]


def test_claim_refuses_a_folder_another_run_took_after_the_check(tmp_path):
  out = tmp_path / "run"
  assert run_folder.check(out, resume=False) == "new"
  # Another run, started at the same time, made the folder first and holds it.
  out.mkdir()
  other = run_folder.lock(out, what="the other run")
  with pytest.raises(run_folder.RunFolderError, match="in use by another run .the other"):
    run_folder.claim(out, "new", resume=False, overwrite=False)
  (out / "flags.json").write_text(json.dumps({"dataset": "npz", "cell": "fastgrnn"}))
  other.release()  # it finished: its run must not be replaced by one that expected none
  with pytest.raises(run_folder.RunFolderError, match="changed since it was checked"):
    run_folder.claim(out, "new", resume=False, overwrite=False)
  assert (out / "flags.json").is_file()


def test_claim_moves_the_earlier_run_aside_as_it_was_and_holds_the_new_folder(tmp_path):
  out = _earlier_run(tmp_path / "run")
  before = _snapshot(out)
  held, note = run_folder.claim(out, "earlier_run", resume=False, overwrite=False)
  try:
    (moved,) = tmp_path.glob("run.replaced-*")
    assert str(moved) in note and _snapshot(moved) == before  # no lock file left in it
    with pytest.raises(run_folder.RunFolderError, match="in use by another run"):
      run_folder.lock(out)
  finally:
    held.release()


# --- diff_numerics reads only the files the run wrote ---------------------------------------

def test_diff_numerics_refuses_a_swapped_model(tmp_path):
  from tests.helpers import converted_classifier  # pylint: disable=import-outside-toplevel
  model, tflite, x, _ = converted_classifier("fastgrnn", 4, (6, 3), 3, windows=8, seed=0)
  _, other, _, _ = converted_classifier("fastgrnn", 4, (6, 3), 3, windows=8, seed=1)
  assert other != tflite
  out = tmp_path / "run"
  out.mkdir()
  (out / "flags.json").write_text(json.dumps({"dataset": "npz", "cell": "fastgrnn"}))
  model.save(out / "model_float.keras")
  (out / "model_int8.tflite").write_bytes(tflite)
  manifest = run_folder.Manifest.create(out, {
      "float training": ("model_float.keras",), "int8 export": ("model_int8.tflite",),
      "numerics diff": ("numerics",)})
  for name in ("float training", "int8 export", "numerics diff"):
    manifest.finish(name)
  np.savez(tmp_path / "w.npz", x=x, y=np.arange(len(x)) % 3)
  cmd = [sys.executable, "-m", "pipelines.diff_numerics", f"--run_dir={out}",
         f"--windows_npz={tmp_path / 'w.npz'}"]

  def diff():
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)

  (out / "model_int8.tflite").write_bytes(other)  # another model of the same shapes
  result = diff()
  err = result.stderr.strip().splitlines()
  assert result.returncode == 1 and len(err) == 1, result.stderr[-2000:]
  assert err[0].startswith("diff_numerics: ") and "model_int8.tflite is not the file this " \
      "run wrote" in err[0], err
  assert not (out / "numerics").exists()
  (out / "model_int8.tflite").write_bytes(tflite)
  with run_folder.lock(out, what="train_and_export"):  # a run is writing the folder
    busy = diff()
  assert busy.returncode == 1 and "in use by another run (train_and_export" in busy.stderr
  result = diff()
  assert result.returncode == 0, result.stderr[-2000:]
  # It rewrote numerics/ and listed it: the run is still exactly what the manifest says.
  assert "numerics/numerics.json" in run_folder.Manifest.read(out).data["files"]
  assert run_folder.check(out, resume=False, overwrite=True) == "earlier_run"
