"""Bad input to train_and_export: one clear line, a non-zero exit, nothing touched.

Each case runs ``python -m pipelines.train_and_export`` as a user would and asserts the exit status, the one-line message naming the problem, that no
stage ran (no checkpoint, no model), and that every file the user had, including an
earlier finished run in ``--output_dir``, is byte for byte as before. The loaders' own
refusals (length mismatches, dtypes, WAVs, damaged checkpoints) are in
``test_bad_inputs_data.py``.
"""

import dataclasses
import hashlib
import json
import os
import pathlib
import stat
import subprocess
import sys

import numpy as np
import pytest

from pipelines import config as config_lib
from pipelines import run_folder
from pipelines import stages
from tests.conftest import REPO


def _snapshot(root):
  """Every path under ``root`` with its kind, mode and content hash."""
  root = pathlib.Path(root)
  if not root.exists():
    return None
  out = {}
  for p in sorted(root.rglob("*")):
    st = p.lstat()
    digest = (hashlib.sha256(p.read_bytes()).hexdigest()
              if stat.S_ISREG(st.st_mode) else None)
    out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                                     digest)
  return out


def _npz(path, *, n=40, t=5, d=3, classes=3, seed=0, **overrides):
  rng = np.random.default_rng(seed)
  arrays = {
      "x_train": rng.normal(size=(n, t, d)).astype(np.float32),
      "y_train": np.arange(n) % classes,
      "x_test": rng.normal(size=(n // 2, t, d)).astype(np.float32),
      "y_test": np.arange(n // 2) % classes,
  }
  arrays.update(overrides)
  np.savez(path, **arrays)
  return path


def _user_folder(root):
  """A user's project folder: data, notes, sources (the folder issue 11 saw wiped)."""
  root.mkdir(parents=True)
  _npz(root / "my_data.npz")
  (root / "notes.md").write_text("experiment log, three weeks of it\n")
  (root / "src").mkdir()
  (root / "src" / "main.c").write_text("int main(void) { return 0; }\n")
  return root


def _earlier_run(root):
  """A finished run's folder as this tool leaves it (contents are stand-ins)."""
  root.mkdir(parents=True)
  (root / "flags.json").write_text(json.dumps({"dataset": "npz", "cell": "fastgrnn"}))
  (root / "model_int8.tflite").write_bytes(b"TFL3 stand-in model bytes")
  (root / "report.json").write_text("{}")
  (root / "device").mkdir()
  (root / "device" / "model_settings.h").write_text("// settings\n")
  return root


def _main(args, umask=None):
  """Runs ``python -m pipelines.train_and_export ARGS``; returns (status, stdout, stderr)."""
  env = dict(os.environ, PYTHONPATH=str(REPO))
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)
  env.pop("TF_CONFIG", None)  # the CLI itself must keep TF's lines away
  result = subprocess.run(
      [sys.executable, "-m", "pipelines.train_and_export", *args], env=env, cwd=REPO,
      capture_output=True, text=True, timeout=900,
      preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)
  return result.returncode, result.stdout, result.stderr


TINY = ["--dataset=npz", "--units=6", "--u_rank=3", "--epochs=3", "--qat_epochs=1",
        "--batch_size=16", "--num_test_vectors=2", "--max_test_windows=8",
        "--nonumerics", "--nowindow_model", "--min_phase_steps=0",
        "--max_batch_fraction=1", "--min_val_windows=0"]  # the tiny-data rules off


def _assert_refused(result, expected, message_parts):
  status, _, err = result
  err = err.strip().splitlines()
  assert status == expected, err
  assert len(err) == 1, err  # one line
  assert err[0].startswith("train_and_export: "), err
  for part in message_parts:
    assert part in err[0], (part, err[0])


# (case id, extra flags, data overrides or None for the default npz, exit status, words
# the message must hold). Status 2: refused from the flags alone, before TensorFlow is
# imported or the data read; 1: refused once the data is read, before any training.
# Every case runs with an earlier finished run in --output_dir, which must survive
# untouched: these are the inputs that used to be caught only after it was wiped.
BAD_INPUTS = [
    ("one class", [], {"y_train": np.zeros(40, np.int64), "y_test": np.zeros(20, np.int64)},
     1, ["1 class", "at least 2"]),
    ("D = 0", [], {"x_train": np.zeros((40, 5, 0), np.float32),
                   "x_test": np.zeros((20, 5, 0), np.float32)}, 1, ["D"]),
    ("epochs too short for three phases", ["--epochs=2"], None, 1,
     ["--epochs=2", "three pruning phases"]),
    ("w_rank above D", ["--w_rank=5"], None, 1, ["--w_rank=5", "D=3"]),
    ("negative u_rank", ["--u_rank=-2"], None, 2, ["--u_rank", "-2"]),
    ("learning rate inf", ["--learning_rate=inf"], None, 2, ["--learning_rate", "inf"]),
    ("learning rate nan", ["--learning_rate=nan"], None, 2, ["--learning_rate", "nan"]),
    ("negative max_test_windows", ["--max_test_windows=-5"], None, 2,
     ["--max_test_windows", "-5"]),
    ("negative seed", ["--seed=-1"], None, 2, ["--seed", "-1"]),
    ("resume and overwrite", ["--resume", "--overwrite"], None, 2,
     ["--resume", "--overwrite"]),
    ("u_rank above units", ["--u_rank=9"], None, 2, ["--u_rank=9", "--units=6"]),
    ("unknown strategy", ["--distribute=tpu"], None, 2, ["--distribute", "'tpu'"]),
    ("multi_worker without TF_CONFIG", ["--distribute=multi_worker"], None, 2,
     ["--distribute=multi_worker", "TF_CONFIG"]),
    ("feature cache is a file", ["--feature_cache=__DATA__"], None, 2,
     ["--feature_cache", "a file"]),
    ("IMU front end on other data", ["--imu_frontend=imu_gravity"], None, 2,
     ["--imu_frontend=imu_gravity", "har6, har2", "--dataset=npz"]),
]


@pytest.mark.parametrize("case,extra,overrides,status,words", BAD_INPUTS,
                         ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_leaves_earlier_run_untouched(tmp_path, case, extra, overrides, status,
                                                words):
  del case
  data = _npz(tmp_path / "data.npz", **(overrides or {}))
  out = _earlier_run(tmp_path / "run")
  before = _snapshot(tmp_path)
  extra = [e.replace("__DATA__", str(data)) for e in extra]
  _assert_refused(_main(TINY + extra + [f"--data_dir={data}", f"--output_dir={out}"]),
                  status, words)
  assert _snapshot(tmp_path) == before  # nothing trained, written, moved or deleted


@pytest.mark.parametrize("slash", ["", "/"])
def test_user_folder_is_refused_and_untouched(tmp_path, slash):
  data = _npz(tmp_path / "data.npz")
  project = _user_folder(tmp_path / "project")
  before = _snapshot(tmp_path)
  _assert_refused(_main(TINY + [f"--data_dir={data}", f"--output_dir={project}{slash}"]), 2,
                  ["not a tf_fastgrnn run folder", "my_data.npz", "notes.md", "src",
                   "nothing was changed"])
  assert _snapshot(tmp_path) == before


def test_earlier_run_with_user_files_is_refused(tmp_path):
  data = _npz(tmp_path / "data.npz")
  out = _earlier_run(tmp_path / "run")
  (out / "my_notes.txt").write_text("mine\n")
  before = _snapshot(tmp_path)
  for extra in ([], ["--overwrite"]):
    _assert_refused(_main(TINY + extra + [f"--data_dir={data}", f"--output_dir={out}"]),
                    2, ["files this tool did not write", "my_notes.txt"])
  assert _snapshot(tmp_path) == before


def test_symlink_in_earlier_run_is_foreign(tmp_path):
  out = _earlier_run(tmp_path / "run")
  (tmp_path / "precious").mkdir()
  (out / "checkpoints").symlink_to(tmp_path / "precious")
  assert not run_folder.is_earlier_run(out)
  with pytest.raises(run_folder.RunFolderError, match="did not write"):
    run_folder.check(out, resume=False)


@pytest.mark.parametrize("layout,words", [
    ("file", ["is a file, not a folder"]),
    ("under_file", ["which is a file, not a folder"]),
])
def test_output_dir_that_cannot_be_a_folder(tmp_path, layout, words):
  data = _npz(tmp_path / "data.npz")
  blocker = tmp_path / "a_file"
  blocker.write_text("user's file\n")
  out = blocker if layout == "file" else blocker / "run"
  before = _snapshot(tmp_path)
  _assert_refused(_main(TINY + [f"--data_dir={data}", f"--output_dir={out}"]), 2, words + [str(out)])
  assert _snapshot(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any folder: the "
                    "unwritable-folder case needs an ordinary user")
def test_output_dir_not_writable(tmp_path):
  data = _npz(tmp_path / "data.npz")
  locked = tmp_path / "locked"
  locked.mkdir()
  locked.chmod(0o500)
  try:
    _assert_refused(_main(TINY + [f"--data_dir={data}", f"--output_dir={locked / 'run'}"]),
                    2, ["not writable"])
    assert list(locked.iterdir()) == []
  finally:
    locked.chmod(0o700)


def test_resume_without_earlier_run(tmp_path):
  data = _npz(tmp_path / "data.npz")
  project = _user_folder(tmp_path / "project")
  before = _snapshot(tmp_path)
  _assert_refused(_main(TINY + ["--resume", f"--data_dir={data}", f"--output_dir={project}"]), 2, ["--resume needs an earlier run"])
  assert _snapshot(tmp_path) == before


def test_resume_accepts_the_folder_written_with_a_slash(tmp_path):
  out = tmp_path / "run"
  config = config_lib.Config.from_flags(dict(
      dataset="npz", data_dir="d.npz", cell="fastgrnn", units=6, w_rank=None, u_rank=3,
      sparsity_w=0.5, sparsity_u=0.5, epochs=3, qat=True, qat_epochs=1, batch_size=16,
      learning_rate=0.01, qat_learning_rate=0.001, seed=0, output_dir=str(out),
      resume=False, max_test_windows=None, num_test_vectors=2, arena_margin=0))
  out.mkdir()
  (out / "flags.json").write_text(json.dumps(dataclasses.asdict(config)))
  again = dataclasses.replace(config, output_dir=f"{out}/", resume=True)
  config_lib.validate_config(again)
  stages._check_resume(again, out)  # pylint: disable=protected-access
  changed = dataclasses.replace(again, units=7)
  with pytest.raises(ValueError, match="'units': \\(6, 7\\)"):
    stages._check_resume(changed, out)  # pylint: disable=protected-access


def test_replace_moves_an_earlier_run_aside_and_overwrite_deletes_only_it(tmp_path):
  out = _earlier_run(tmp_path / "run")
  before = _snapshot(out)
  moved = run_folder.replace(out, overwrite=False)
  assert not out.exists() and moved.parent == tmp_path
  assert moved.name.startswith("run.replaced-")
  assert _snapshot(moved) == before
  again = _earlier_run(tmp_path / "run")
  assert run_folder.replace(again, overwrite=True) is None
  assert not again.exists() and _snapshot(moved) == before
  project = _user_folder(tmp_path / "project")
  with pytest.raises(run_folder.RunFolderError, match="not an earlier run"):
    run_folder.replace(project, overwrite=True)
  assert (project / "notes.md").is_file()


def test_every_stage_artifact_is_known_to_the_run_folder():
  owners = {}
  for stage in stages.STAGES:
    assert stage.artifact.split("/")[0] in run_folder.ARTIFACTS, stage.artifact
    assert stage.artifact in stage.files or any(
        stage.artifact.startswith(out + "/") for out in stage.files), stage.name
    for out in stage.files:  # each a file or folder the tool writes, of one stage only
      parts = tuple(out.split("/"))
      assert run_folder._own(parts, False) or all(  # pylint: disable=protected-access
          run_folder._own(parts[:i + 1], True)  # pylint: disable=protected-access
          for i in range(len(parts))), out
      assert not [o for o in owners if o == out or o.startswith(out + "/")
                  or out.startswith(o + "/")], (out, owners)
      owners[out] = stage.name


def test_the_run_folder_knows_the_names_its_writers_use():
  from tf_fastgrnn import device_files  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import fused  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import training  # pylint: disable=import-outside-toplevel
  assert run_folder.DEVICE_FILES == device_files.DEVICE_FILES
  assert run_folder.STANDALONE_FILES == set(fused.STANDALONE_FILES)
  assert {training.HISTORY_FILE, training.BEST_WEIGHTS_FILE,
          "run.json"} <= run_folder.CHECKPOINT_FILES


def test_window_model_skipped_above_the_stated_length():
  config = config_lib.Config.from_flags(dict(
      dataset="npz", data_dir="d.npz", cell="fastgrnn", units=8, w_rank=None, u_rank=None,
      sparsity_w=0.0, sparsity_u=0.0, epochs=3, qat=False, qat_epochs=1, batch_size=16,
      learning_rate=0.01, qat_learning_rate=0.001, seed=0, output_dir="x", resume=False,
      max_test_windows=None, num_test_vectors=2, arena_margin=0))
  skip = stages._window_model_skip_reason  # pylint: disable=protected-access
  assert skip(config, 128) is None
  assert skip(config, stages.WINDOW_MODEL_MAX_STEPS) is None
  assert "T=5000 steps exceeds 512" in skip(config, 5000)
  assert "not asked for" in skip(dataclasses.replace(config, window_model=False), 128)


@pytest.mark.slow
def test_diverging_training_stops_with_one_line_also_on_resume(tmp_path):
  data = _npz(tmp_path / "data.npz")
  out = tmp_path / "run"
  args = TINY + ["--learning_rate=1e30", "--sparsity_w=0", "--sparsity_u=0",
                 f"--data_dir={data}", f"--output_dir={out}"]
  _assert_refused(_main(args), 1, ["diverged", "--learning_rate"])
  assert not (out / "model_int8.tflite").exists()
  _assert_refused(_main(args + ["--resume"]), 1, ["diverged", "--learning_rate"])


@pytest.mark.slow
def test_valid_run_replaces_earlier_run_keeps_umask_and_a_quiet_console(tmp_path):
  data = _npz(tmp_path / "data.npz")
  out = _earlier_run(tmp_path / "run")
  before = _snapshot(out)
  status, stdout, stderr = _main(TINY + [f"--data_dir={data}", f"--output_dir={out}"],
                                 umask=0o022)
  assert status == 0, stderr[-2000:]
  moved = list(tmp_path.glob("run.replaced-*"))
  assert len(moved) == 1 and _snapshot(moved[0]) == before  # moved aside, whole
  for name in ("flags.json", "model_int8.tflite", "report.json", "run.log",
               "device/model_settings.h"):
    assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name
  assert stat.S_IMODE((out / "device").stat().st_mode) == 0o755
  # TensorFlow's own lines went to run.log, not the console.
  assert stderr == ""
  for noise in ("I0000", "W0000", "tensorflow/", "WARNING", "Not handling type"):
    assert noise not in stdout, noise
  assert "Estimated count of arithmetic ops" in (out / "run.log").read_text()  # converter
  assert "[train_and_export]" in stdout and "int8 TFLM test accuracy" in stdout


def test_export_refuses_a_diverged_model_before_tflm_sees_it(rng):
  """Weights of 4e30 made TFLM's loader abort the process; the export refuses them."""
  from tf_fastgrnn import export  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import models  # pylint: disable=import-outside-toplevel
  model = models.sequence_classifier("fastgrnn", 4, (3, 2), 3)
  model.set_weights([np.full_like(w, 4e30) if w.ndim == 2 else w
                     for w in model.get_weights()])
  with pytest.raises(export.TFLMCompatibilityError, match="training diverged"):
    export.convert_step_model(model, rng.normal(size=(8, 3, 2)).astype(np.float32))


def test_multi_worker_resume_needs_the_chiefs_folder(tmp_path, monkeypatch):
  """Another worker resumes from the chief's run folder: not visible, refused at once."""
  monkeypatch.setenv("TF_CONFIG", json.dumps(
      {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}))
  config = config_lib.Config.from_flags(dict(
      dataset="npz", data_dir="x.npz", cell="fastgrnn", units=6, w_rank=None, u_rank=3,
      sparsity_w=0.5, sparsity_u=0.5, epochs=3, qat=True, qat_epochs=1, batch_size=8,
      learning_rate=0.01, qat_learning_rate=0.001, seed=0,
      output_dir=str(tmp_path / "run"), resume=True, max_test_windows=None,
      num_test_vectors=2, arena_margin=0, distribute="multi_worker"))
  with pytest.raises(ValueError, match="cannot see; put --output_dir on a file system"):
    config_lib.validate_config(config)
  # Not resuming, the other worker never looks at the folder (the chief makes it).
  config_lib.validate_config(dataclasses.replace(config, resume=False))
  assert not (tmp_path / "run").exists()


def test_preflight_refuses_data_of_another_imu_front_end(tmp_path, rng):
  from data import datasets  # pylint: disable=import-outside-toplevel
  from pipelines import stages  # pylint: disable=import-outside-toplevel
  x = rng.normal(size=(12, 4, 6)).astype(np.float32)
  y = np.arange(12) % 2
  ds = datasets.normalise([(x, y), (x, y), (x, y)], ["a", "b"], {"frontend": "raw_imu"})
  config = stages.Config.from_flags(dict(
      dataset="har6", data_dir=None, cell="fastgrnn", units=4, w_rank=None, u_rank=None,
      sparsity_w=0.0, sparsity_u=0.0, epochs=3, qat=False, qat_epochs=0, batch_size=4,
      learning_rate=0.01, qat_learning_rate=0.001, seed=0,
      output_dir=str(tmp_path / "run"), resume=False, max_test_windows=None,
      num_test_vectors=1, arena_margin=0, imu_frontend="imu_gravity"))
  with pytest.raises(ValueError, match="--imu_frontend=imu_gravity, but the data handed "
                     "over was made with the raw_imu front end"):
    stages.preflight(config, ds)
  stages.preflight(dataclasses.replace(config, imu_frontend="raw_imu"), ds)
  assert not (tmp_path / "run").exists()


def test_preflight_refuses_labels_no_c_string_can_hold(tmp_path, rng):
  # The labels become C string literals in model_settings.h: a NUL in one is refused
  # before training, not after it at the device files.
  from data import datasets  # pylint: disable=import-outside-toplevel
  x = rng.normal(size=(12, 4, 6)).astype(np.float32)
  y = np.arange(12) % 2
  ds = datasets.normalise([(x, y), (x, y), (x, y)], ["a", "b\0c"], {"frontend": "npz"})
  config = stages.Config.from_flags(dict(
      dataset="npz", data_dir=None, cell="fastgrnn", units=4, w_rank=None, u_rank=None,
      sparsity_w=0.0, sparsity_u=0.0, epochs=3, qat=False, qat_epochs=0, batch_size=4,
      learning_rate=0.01, qat_learning_rate=0.001, seed=0,
      output_dir=str(tmp_path / "run"), resume=False, max_test_windows=None,
      num_test_vectors=1, arena_margin=0))
  with pytest.raises(ValueError, match=r"the data's label 1 'b\\x00c' holds a NUL character"):
    stages.preflight(config, ds)
  stages.preflight(config, dataclasses.replace(ds, labels=["a", 'b"}; int x; //??/']))


# --- issue 26: one line, not a traceback, and no temporary log left behind ----------------

# Runs train_and_export's main with a stand-in for pipelines.stages (no TensorFlow) whose
# run() makes the run folder, writes a line on fd 2 as TensorFlow would, then fails the
# way FAKE_STAGE says.
_FAKE_STAGES = """
import errno, os, sys, types
import pipelines
mode = os.environ["FAKE_STAGE"]

class ResourceExhaustedError(Exception):  # tf.errors.OpError's shape: .message
  def __init__(self, message):
    super().__init__(message)
    self.message = message

def run(config, on_output_ready=None):
  out = config.output_dir
  os.write(2, b"tensorflow: a native log line\\n")
  if mode == "interrupt early":
    raise KeyboardInterrupt
  if mode == "crash early":
    raise RuntimeError("a bug")
  os.makedirs(out)
  on_output_ready(out)
  if mode == "disk full":
    raise OSError(errno.ENOSPC, "No space left on device",
                  os.path.join(out, "model_qat.keras"))
  if mode == "disk full in a checkpoint":
    raise ResourceExhaustedError(
        f"{out}/checkpoints/ckpt-3.data-00000-of-00001.tempstate42; No space left on "
        "device [Op:SaveV2]")
  if mode == "interrupt":
    raise KeyboardInterrupt
  raise RuntimeError("a bug")

fake = types.ModuleType("pipelines.stages")
fake.run, fake.summary_line = run, lambda report: "done"
sys.modules["pipelines.stages"] = pipelines.stages = fake
from absl import app
from pipelines import train_and_export
app.run(train_and_export.main, argv=["train_and_export"] + sys.argv[1:])
"""


@pytest.mark.parametrize("mode,status,line", [
    ("disk full", 1, "train_and_export: No space left on device while writing "
     "{out}/model_qat.keras: free space, then run the same command with --resume to "
     "continue the run in {out}"),
    ("disk full in a checkpoint", 1, "train_and_export: No space left on device while "
     "writing {out}/checkpoints/ckpt-3.data-00000-of-00001.tempstate42: free space, then "
     "run the same command with --resume to continue the run in {out}"),
    ("interrupt", 130, "train_and_export: interrupted; run the same command with --resume "
     "to continue the run in {out} from its last finished stage (training: its last "
     "epoch)"),
    ("interrupt early", 130, "train_and_export: interrupted before the run folder was "
     "made: nothing was written"),
    ("crash early", 1, None),
])
def test_disk_full_and_ctrl_c_give_one_line_and_leave_no_temporary_log(tmp_path, mode,
                                                                        status, line):
  data = _npz(tmp_path / "data.npz")
  out = tmp_path / "run"
  tmp = tmp_path / "tmp"
  tmp.mkdir()
  env = dict(os.environ, PYTHONPATH=str(REPO), FAKE_STAGE=mode, TMPDIR=str(tmp))
  result = subprocess.run(
      [sys.executable, "-c", _FAKE_STAGES, "--dataset=npz", f"--data_dir={data}",
       f"--output_dir={out}"], env=env, cwd=REPO, capture_output=True, text=True,
      timeout=300)
  err = result.stderr.strip().splitlines()
  assert result.returncode == status, result.stderr
  if line is None:  # a bug still shows its traceback, after the log's last lines
    assert "tensorflow: a native log line" in result.stderr
    assert err[-1] == "RuntimeError: a bug", err
  else:
    assert err == [line.format(out=out)], err
  assert sorted(os.listdir(tmp)) == []  # no tf_fastgrnn-*.log left in the temp folder
  if not mode.endswith("early"):
    assert "tensorflow: a native log line" in (out / "run.log").read_text()


@pytest.mark.parametrize("what", ["FIFO", "folder", "/dev/zero"])
def test_data_dir_of_another_kind_is_refused_from_the_flags(tmp_path, what):
  if what == "FIFO":
    path, kind = tmp_path / "d.npz", "a FIFO (named pipe)"
    os.mkfifo(path)
  elif what == "folder":
    path, kind = tmp_path / "d.npz", "a folder"
    path.mkdir()
  else:
    path, kind = "/dev/zero", "a character device"
  _assert_refused(_main(TINY + [f"--data_dir={path}", f"--output_dir={tmp_path / 'run'}"]),
                  2, [f"--data_dir: npz: data_dir {path} is {kind}, not an .npz file"])
  assert not (tmp_path / "run").exists()
