"""The public path from a user's model to the board: ``compress`` and ``deploy``.

The example of docs/api.md runs as written; its folder is checked against the runtimes
directly (TFLM stepped over the same windows, the fused op through the C kernel), and
every bad argument is refused before anything is trained or written.
"""

import json
import re

import numpy as np
import pytest

from tests.conftest import REPO
from tests.test_fused import kernel  # noqa: F401  pylint: disable=unused-import

MARK = "<!-- tests/test_api.py runs this block -->\n```python\n"


def _doc_example():
  text = (REPO / "docs" / "api.md").read_text()
  assert MARK in text, "docs/api.md lost its runnable example"
  return re.search(re.escape(MARK) + r"(.*?)```", text, re.S).group(1)


def _snapshot(root):
  return sorted((str(p.relative_to(root)), p.read_bytes() if p.is_file() else None)
                for p in root.rglob("*"))


@pytest.mark.slow
def test_the_doc_example_deploys_what_tflm_and_the_fused_kernel_compute(
    tmp_path, monkeypatch, kernel):  # pylint: disable=redefined-outer-name
  from tf_fastgrnn import fused  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import pruning  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import run_folder  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import runtime  # pylint: disable=import-outside-toplevel
  monkeypatch.chdir(tmp_path)
  namespace = {}
  exec(compile(_doc_example(), "docs/api.md example", "exec"), namespace)  # pylint: disable=exec-used
  deployment, compressed = namespace["deployment"], namespace["compressed"]
  xt, yt = namespace["xt"], namespace["yt"]
  out = tmp_path / "runs" / "mine"
  assert deployment.folder.resolve() == out
  # Every U matrix reached the asked sparsity (as TF-MOT rounds it).
  report = pruning.sparsity_report(compressed.float_model)
  u = {k: m for k, m in report["matrices"].items() if "/U" in k}
  assert u and all(m["sparsity"] == pytest.approx(pruning.achievable_sparsity(m["size"], 0.5))
                   for m in u.values()), u
  # The int8 accuracy deploy reports is TFLM's own on the same .tflite and windows
  # (what the CLI's evaluation computes), and so is what it saved.
  tflite = (out / "model_int8.tflite").read_bytes()
  assert tflite == deployment.int8.tflite
  tflm = runtime.TFLMStepRunner(tflite)
  want = tflm.run_windows(xt)
  pred = tflm.window_classes(want["logits_q"], "last")
  assert np.array_equal(deployment.evaluation.pred, pred)
  assert deployment.evaluation.accuracy == float(np.mean(pred == yt))
  with np.load(out / "tflm_eval.npz") as saved:
    assert np.array_equal(saved["pred"], pred) and np.array_equal(saved["y_test"], yt)
  # The fused .tflite, through the C parser and kernel, is the builtin model bit for bit.
  fused_bytes = (out / "model_int8_fused.tflite").read_bytes()
  got = fused.FusedOpRunner(fused_bytes, kernel).run_windows(xt)
  for key in ("h_q", "logits_q"):
    assert np.array_equal(got[key], want[key]), key
  assert (out / "standalone" / "model.c").read_text() == fused.standalone_sources(tflite)[
      "model.c"]
  # Keras QAT, rebuilt from the plan and source, is TFLM byte for byte.
  numerics = json.loads((out / "numerics" / "numerics.json").read_text())
  assert numerics["summary"]["qat_vs_tflm_top1"] == 1.0
  assert numerics["vs_tflm"]["keras_qat"]["logits_lsb_max"] == 0.0
  assert 'kCategoryLabels[kNumClasses] = {"up", "down", "flat"}' in (
      out / "device" / "model_settings.h").read_text()
  # A folder of ours: the manifest lists every file; a second deploy moves it aside.
  manifest = json.loads((out / "manifest.json").read_text())
  assert {"deploy.json", "model_int8.tflite", "device/model_data.cc",
          "standalone/model.c", "numerics/numerics.json"} <= set(manifest["files"])
  assert run_folder.check(out, resume=False, overwrite=True,
                          record=run_folder.DEPLOY) == "earlier_run"


def _tiny_model(cell="fastgrnn", **kwargs):
  from tf_fastgrnn import models  # pylint: disable=import-outside-toplevel
  return models.sequence_classifier(cell, 4, (5, 3), 3, **kwargs)


def _windows(n, steps=5, features=3, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(n, steps, features)).astype(np.float32),
          rng.integers(0, 3, n).astype(np.int64))


@pytest.mark.parametrize("kwargs,message", [
    ({"calibration": np.zeros((4, 6, 3), np.float32)},
     "calibration must be [N, 5, 3] windows with N > 0 (the model's input), got [4, 6, 3]"),
    ({"calibration": np.full((4, 5, 3), np.nan, np.float32)},
     "calibration holds non-finite values"),
    ({"test": (np.zeros((2, 5, 3), np.float32), np.array([0, 3]))},
     "test labels must lie in [0, 3) (the model's classes), got 0..3"),
    ({"test": (np.zeros((2, 5, 3), np.float32), np.array([0.0, 1.0]))},
     "test labels must be 2 integers"),
    ({"labels": ["a", "b"]}, "labels must name the model's 3 classes, got 2"),
    ({"labels": ["a", "b", "c\0"]}, "label 2"),
    ({"normalisation": (np.zeros(3), np.array([1.0, 0.0, 1.0]))},
     "normalisation std must be positive, got [1.0, 0.0, 1.0]"),
    ({"normalisation": (np.zeros(2), np.ones(2))},
     "normalisation mean and std must have 3 values (the model's features), got 2 and 2"),
    ({"arena_margin": -1}, "arena_margin must be an int >= 0, got -1"),
    ({"overwrit": True}, "deploy() got unknown options ['overwrit']"),
    ({"model": "model.keras"}, "model must be a tf_keras model (tf_fastgrnn.keras) or the "
                               "result of tf_fastgrnn.compress, got builtins.str"),
])
def test_deploy_refuses_a_bad_argument_before_any_write(tmp_path, kwargs, message):
  import tf_fastgrnn as tfg  # pylint: disable=import-outside-toplevel
  args = {"model": _tiny_model(), "calibration": _windows(4)[0],
          "output_dir": tmp_path / "out", **kwargs}
  with pytest.raises(ValueError) as info:
    tfg.deploy(**args)
  assert message in str(info.value) and "\n" not in str(info.value)
  assert list(tmp_path.iterdir()) == []


def test_deploy_refuses_a_folder_it_did_not_write_and_leaves_it_alone(tmp_path):
  import tf_fastgrnn as tfg  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import run_folder  # pylint: disable=import-outside-toplevel
  mine = tmp_path / "mine"
  mine.mkdir()
  (mine / "notes.txt").write_text("keep\n")
  # A train_and_export run (its record is flags.json): not deploy's to replace.
  cli = tmp_path / "cli"
  cli.mkdir()
  (cli / "flags.json").write_text(json.dumps({"dataset": "npz", "cell": "fastgrnn"}))
  (cli / "model_int8.tflite").write_bytes(b"x")
  before = _snapshot(tmp_path)
  for folder, name in ((mine, "notes.txt"), (cli, "flags.json")):
    with pytest.raises(run_folder.RunFolderError,
                       match=f"no deploy.json; it holds .*{name}.*nothing was changed"):
      tfg.deploy(_tiny_model(), _windows(4)[0], folder, overwrite=True)
  assert _snapshot(tmp_path) == before


def test_deploy_of_a_float_lstm_writes_no_fused_forms_and_says_why(tmp_path, capsys):
  import tf_fastgrnn as tfg  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import deployment as deployment_lib  # pylint: disable=import-outside-toplevel
  out = tmp_path / "lstm"
  deployment = tfg.deploy(_tiny_model("lstm"), _windows(8)[0], out, labels=["a", "b", "c"])
  assert isinstance(deployment.fused, deployment_lib.NotApplicable)
  assert "cannot express this model" in deployment.fused.reason
  assert "model_int8_fused.tflite and the standalone C model not written" in (
      capsys.readouterr().out)
  assert sorted(p.name for p in out.iterdir()) == [
      ".run.lock", "deploy.json", "device", "manifest.json", "model_int8.tflite"]
  assert deployment.evaluation is None and deployment.numerics is None
  record = json.loads((out / "deploy.json").read_text())
  assert record["labels"] == ["a", "b", "c"] and record["qat"] is False
  # Deployed again: the earlier deploy is moved aside, whole.
  again = tfg.deploy(_tiny_model("lstm"), _windows(8)[0], out)
  assert again.folder == out
  (moved,) = tmp_path.glob("lstm.replaced-*")
  assert (moved / "model_int8.tflite").read_bytes() == deployment.int8.tflite


@pytest.mark.parametrize("change,message", [
    ({"train": (np.zeros((8, 5, 2), np.float32), np.zeros(8, np.int64))},
     "train windows must be [N, 5, 3] with N > 0 (the model's input), got [8, 5, 2]"),
    ({"validation": (np.zeros((4, 5, 3), np.float32), np.array([0, 1, 2, 5]))},
     "validation labels must lie in [0, 3) (the model's classes), got 0..5"),
    ({"sparsity": 0.5}, "sparsity must be a tf_fastgrnn.SparsitySpec or None, got float"),
    ({"recipe": {"epochs": 3}}, "recipe must be a tf_fastgrnn.Recipe, got dict"),
    ({"recipe_epochs": 2}, "epochs=2 cannot hold three phases"),
    ({"model_cell": "lstm"},
     "compress prunes and quantizes FastGRNNCell and FastRNNCell models, got a LSTMCell"),
])
def test_compress_refuses_a_bad_argument_before_training(change, message):
  import tf_fastgrnn as tfg  # pylint: disable=import-outside-toplevel
  model = _tiny_model(change.pop("model_cell", "fastgrnn"))
  weights = [w.copy() for w in model.get_weights()]
  args = {"train": _windows(8), "validation": _windows(4, seed=1),
          "recipe": tfg.Recipe(epochs=change.pop("recipe_epochs", 3), qat_epochs=1,
                               batch_size=4), **change}
  with pytest.raises(ValueError) as info:
    tfg.compress(model, **args)
  assert message in str(info.value) and "\n" not in str(info.value)
  assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))


@pytest.mark.slow
def test_run_of_a_spec_is_the_cli_run(tmp_path, rng):
  """``pipelines.stages.run(spec, output_dir=...)`` (what the sweep and the benchmarks
  call) and the command line with the same values run the same stages: the same int8
  model, byte for byte, and the same report figures."""
  from pipelines import stages  # pylint: disable=import-outside-toplevel
  from tests.test_pipeline import TINY  # pylint: disable=import-outside-toplevel
  from tests.test_pipeline import _npz  # pylint: disable=import-outside-toplevel
  from tests.test_pipeline import _run  # pylint: disable=import-outside-toplevel
  import tf_fastgrnn as tfg  # pylint: disable=import-outside-toplevel
  data = _npz(tmp_path / "tiny.npz", rng)
  cli, api = tmp_path / "cli", tmp_path / "api"
  extra = ["--nowindow_model", "--max_test_windows=8"]
  result = _run(TINY + extra + [f"--data_dir={data}", f"--output_dir={cli}"], tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  spec = tfg.Spec.preset(dataset="npz").replace(  # the CLI's --preset=auto
      data={"dataset": "npz", "data_dir": str(data)}, model={"units": 6, "u_rank": 3},
      sparsity={"w": 0.3, "u": 0.5},
      recipe={"epochs": 3, "qat_epochs": 1, "batch_size": 16, "min_phase_steps": 0,
              "max_batch_fraction": 1, "min_val_windows": 0},
      export={"num_test_vectors": 2, "window_model": False, "max_test_windows": 8})
  report = stages.run(spec, output_dir=api)
  assert (api / "model_int8.tflite").read_bytes() == (cli / "model_int8.tflite").read_bytes()
  cli_report = json.loads((cli / "report.json").read_text())
  assert report["accuracy"] == cli_report["accuracy"]
  assert report["size"] == cli_report["size"]
  with pytest.raises(ValueError, match="run\\(spec\\) needs output_dir"):
    stages.run(spec)
