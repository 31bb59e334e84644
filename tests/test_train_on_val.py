"""--train_on_val: the training stages fit the training and validation windows together."""
import dataclasses
import json

import numpy as np
import pytest

from pipelines import config as config_lib
from pipelines import stages
from benchmarks import sweep


def _config(tmp_path, **changes):
  base = config_lib.Config.from_flags(dict(
      dataset="npz", data_dir="x.npz", cell="fastgrnn", units=4, w_rank=None, u_rank=None,
      sparsity_w=0.0, sparsity_u=0.0, epochs=3, qat=True, qat_epochs=1, batch_size=8,
      learning_rate=0.01, qat_learning_rate=0.001, seed=0, output_dir=str(tmp_path / "run"),
      resume=False, max_test_windows=None, num_test_vectors=1, arena_margin=0))
  return dataclasses.replace(base, **changes)


def test_train_on_val_refuses_keep_best_before_any_work(tmp_path):
  assert _config(tmp_path).train_on_val is False  # and so for run folders made before it
  config_lib.validate_config(_config(tmp_path, train_on_val=True, keep_best=False))
  with pytest.raises(ValueError, match="--train_on_val trains on the validation windows, "
                     "so no epoch can be chosen on them: pass --nokeep_best"):
    config_lib.validate_config(_config(tmp_path, train_on_val=True, keep_best=True))


def test_training_windows_append_the_validation_split(tmp_path):
  x_train = np.arange(2 * 3 * 1, dtype=np.float32).reshape(2, 3, 1)
  x_val = -np.ones((1, 3, 1), np.float32)
  data = type("DS", (), {"x_train": x_train, "y_train": np.array([0, 1]),
                         "x_val": x_val, "y_val": np.array([2])})()
  x, y = stages._training_windows(_config(tmp_path), data)  # pylint: disable=protected-access
  assert x is x_train and y.tolist() == [0, 1]
  x, y = stages._training_windows(  # pylint: disable=protected-access
      _config(tmp_path, train_on_val=True, keep_best=False), data)
  np.testing.assert_array_equal(x, np.concatenate([x_train, x_val]))
  assert y.tolist() == [0, 1, 2]


def test_sweep_refit_points_train_on_val_and_keep_the_last_epoch():
  points = {p.file(0): p for p in sweep.schedule() if p.kw.get("refit")}
  assert set(points) == {"har6/fastgrnn_h24_grav_refit_seed0.json",
                         "har6/fastgrnn_lsq_h32r4-8s50_grav_refit_seed0.json",
                         "har6/gru_h12_grav_refit_seed0.json",
                         "har6/fastgrnn_lsq_h32r3-8s50_grav_refit_seed0.json"}
  for point in points.values():
    settings = sweep.settings_for(point)
    assert settings["train_on_val"] is True and settings["keep_best"] is False
    assert settings["imu_frontend"] == "imu_gravity" and point.tier == 5
  # Points without the knob carry no train_on_val key: their result files keep matching.
  assert all("train_on_val" not in sweep.settings_for(p) for p in sweep.schedule()
             if not p.kw.get("refit"))
  assert sweep.ABLATIONS["refit"] == "trained on train + val"


@pytest.mark.slow
def test_end_to_end_tiny_train_on_val(tmp_path, rng):
  from tests.test_pipeline import _run, tiny_args  # pylint: disable=import-outside-toplevel
  args, out = tiny_args(tmp_path, rng)
  refused = _run(args + ["--train_on_val"], tmp_path)  # keep_best is on by default
  assert refused.returncode == 2 and "pass --nokeep_best" in refused.stderr
  assert not out.exists()
  result = _run(args + ["--train_on_val", "--nokeep_best"], tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "training on train + val" in result.stdout
  report = json.loads((out / "report.json").read_text())
  sizes = report["dataset"]
  assert sizes["val"] > 0
  for stage in ("float", "qat"):  # what each training stage fitted (its resume record)
    run = json.loads((out / "checkpoints" / stage / "run.json").read_text())
    assert run["num_train"] == sizes["train"] + sizes["val"], stage
  assert json.loads((out / "flags.json").read_text())["train_on_val"] is True
  assert "(`--train_on_val`)" in (out / "report.md").read_text()
