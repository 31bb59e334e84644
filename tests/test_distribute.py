"""tf.distribute training (tf_fastgrnn.distribute) and the tf.data input.

The strategy runs happen in subprocesses (``tests/distribute_worker.py``): logical CPU
devices and multi-worker collectives must be set before TensorFlow initialises. Each
trains a tiny FastGRNN through the three pruning phases and QAT and exports it; the
weights must equal a one-device run's within float tolerance.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

from pipelines import config as config_lib
from tests.conftest import shared_once
from tf_fastgrnn import distribute
from tf_fastgrnn import input_pipeline

REPO = pathlib.Path(__file__).resolve().parents[1]


def _worker(mode, out, *extra, env=None):
  base = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
  env = {**base, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
  return subprocess.Popen([sys.executable, "-m", "tests.distribute_worker", mode, str(out),
                           *extra], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _finish(proc, expect=0):
  output, _ = proc.communicate(timeout=900)
  assert proc.returncode == expect, output[-3000:]
  return output


def _weights(out):
  with np.load(out / "result.npz") as z:
    return [z[f"arr_{i}"] for i in range(len(z.files) - 1)]


def _assert_same_weights(a, b):
  assert len(a) == len(b)
  for u, v in zip(a, b):
    np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-5)


def _assert_targets(out):
  matrices = json.loads((out / "sparsity.json").read_text())
  assert {e["target"] for e in matrices.values()} == {0.5, 0.75}
  for key, entry in matrices.items():
    want = round(entry["size"] * (1 - entry["target"]))
    assert entry["nonzero"] <= want, (key, entry)
  assert (out / "model_int8.tflite").stat().st_size > 0


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
  """The one-device reference run, made once for both strategy tests (on either worker)."""
  return shared_once(tmp_path_factory, "distribute-one-device",
                     lambda out: _finish(_worker("none", out)))


@pytest.mark.slow
def test_mirrored_two_cpu_devices_resumes_and_equals_one_device(one_device, tmp_path):
  # Killed at the start of epoch 4 (IHT phase), then resumed under the strategy.
  out = tmp_path / "mirrored"
  _finish(_worker("mirrored", out, "--interrupt_at=4"), expect=3)
  assert (out / "ckpt_float" / "history.json").exists()
  assert json.loads((out / "ckpt_float" / "history.json").read_text())["epochs_done"] == 3
  log = _finish(_worker("mirrored", out))
  assert "replicas in sync: 2" in log
  _assert_targets(out)
  _assert_same_weights(_weights(out), _weights(one_device))


def _free_ports(n):
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(("localhost", 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def _multi_worker(out, *extra):
  """Both workers run with the same OUT (one machine: a folder both see)."""
  workers = [f"localhost:{p}" for p in _free_ports(2)]
  procs = []
  for i in range(2):
    tf_config = json.dumps({"cluster": {"worker": workers},
                            "task": {"type": "worker", "index": i}})
    procs.append(_worker("multi_worker", out, *extra, env={"TF_CONFIG": tf_config}))
  return procs


@pytest.mark.slow
def test_multi_worker_two_processes_resumes_and_equals_one_device(one_device, tmp_path):
  out = tmp_path / "run"
  # Both workers stopped at the start of epoch 4 (IHT phase), then resumed: the second
  # worker reads the chief's checkpoints.
  for proc in _multi_worker(out, "--interrupt_at=4"):
    _finish(proc, expect=3)
  assert json.loads((out / "ckpt_float" / "history.json").read_text())["epochs_done"] == 3
  chief, other = _multi_worker(out)
  _finish(chief)
  log = _finish(other)
  assert "replicas in sync: 2" in log
  _assert_targets(out)
  _assert_same_weights(_weights(out), _weights(one_device))
  # Only the chief wrote into OUT; the other worker's checkpoints went to temporary
  # folders, removed at the end of each fit.
  assert sorted(p.name for p in out.iterdir()) == [
      "ckpt_float", "ckpt_qat", "model_int8.tflite", "result.npz", "sparsity.json"]
  temp_dirs = json.loads(log.split("worker temp dirs:")[1].splitlines()[0])
  assert len(temp_dirs) == 2 and not any(os.path.exists(d) for d in temp_dirs)


@pytest.mark.slow
def test_pipeline_multi_worker_only_the_chief_writes_the_run(tmp_path):
  """train_and_export with 2 workers on localhost: the same command and --output_dir;
  worker 0 writes the whole run, the other trains in step and writes nothing."""
  rng = np.random.default_rng(0)
  data = tmp_path / "data.npz"
  np.savez(data, x_train=rng.normal(size=(48, 5, 3)).astype(np.float32),
           y_train=np.arange(48) % 3, x_test=rng.normal(size=(12, 5, 3)).astype(np.float32),
           y_test=np.arange(12) % 3)
  out = tmp_path / "run"
  args = ["--dataset=npz", f"--data_dir={data}", f"--output_dir={out}", "--units=6",
          "--u_rank=3", "--epochs=3", "--qat_epochs=1", "--batch_size=16",
          "--num_test_vectors=2", "--nonumerics", "--nowindow_model",
          "--min_phase_steps=0", "--max_batch_fraction=1", "--min_val_windows=0",
          "--distribute=multi_worker"]
  workers = [f"localhost:{p}" for p in _free_ports(2)]
  procs = []
  for i in range(2):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(PYTHONPATH=str(REPO), TF_CONFIG=json.dumps(
        {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}))
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "pipelines.train_and_export", *args], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
  chief_log, other_log = (_finish(p) for p in procs)
  assert "int8 TFLM test accuracy" in chief_log
  assert "the chief writes" in other_log and "int8 TFLM" not in other_log
  assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npz", "run"]
  report = json.loads((out / "report.json").read_text())
  assert report["config"]["distribute"] == "multi_worker"
  assert len(report["phase_reports"]) == 3


def test_epoch_order_is_a_function_of_seed_and_epoch():
  x = np.arange(10, dtype=np.float32).reshape(10, 1, 1)
  y = np.arange(10, dtype=np.int32)
  ds = input_pipeline.train_dataset(x, y, 4, seed=3, first_epoch=1, last_epoch=3)
  batches = [b.numpy().tolist() for _, b in ds]
  assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2]
  want = np.concatenate([input_pipeline.epoch_order(10, 3, e) for e in (1, 2)]).tolist()
  assert sum(batches, []) == want
  later = input_pipeline.train_dataset(x, y, 4, seed=3, first_epoch=2, last_epoch=3)
  assert sum([b.numpy().tolist() for _, b in later], []) == want[10:]


def test_eval_dataset_from_a_memmap_keeps_order(tmp_path):
  path = tmp_path / "x.npy"
  np.save(path, np.arange(12, dtype=np.float32).reshape(6, 2, 1))
  x = np.load(path, mmap_mode="r")
  y = np.arange(6, dtype=np.int32)
  got = np.concatenate([xb.numpy() for xb, _ in input_pipeline.eval_dataset(x, y, 4)])
  np.testing.assert_array_equal(got, np.asarray(x))


def _tf_config(index, kind="worker", workers=2, chief=0):
  cluster = {"worker": [f"h{i}:1" for i in range(workers)]}
  if chief:
    cluster["chief"] = ["c:1"]
  return json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})


def test_bad_strategy_names_and_tf_config():
  with pytest.raises(ValueError, match="distribute must be one of"):
    distribute.get_strategy("tpu")
  with pytest.raises(ValueError, match="needs the TF_CONFIG"):
    distribute.check_tf_config("")
  with pytest.raises(ValueError, match="TF_CONFIG must be JSON"):
    distribute.check_tf_config('{"cluster": {}}')
  with pytest.raises(ValueError, match="task worker 2 is not in the cluster"):
    distribute.check_tf_config(_tf_config(2))
  assert distribute.is_chief(distribute.get_strategy("none"))


@pytest.mark.parametrize("text,chief", [
    (_tf_config(0), True), (_tf_config(1), False), (_tf_config(0, chief=1), False),
    (_tf_config(0, "chief", chief=1), True), (_tf_config(2), None), ("", None),
    ("not json", None), (_tf_config(0, "ps"), None)])
def test_pipeline_and_library_read_tf_config_alike(text, chief):
  """pipelines.config reads TF_CONFIG without TensorFlow; it must agree with the
  library (which the strategy's own cluster resolver then follows)."""
  if chief is None:
    with pytest.raises(ValueError):
      config_lib.multi_worker_task(text)
    with pytest.raises(ValueError):
      distribute.check_tf_config(text)
  else:
    assert config_lib.multi_worker_task(text)[1] is chief
    distribute.check_tf_config(text)
