"""Presets: the dataset's recipe by default, explicit flags win, the run prints it."""

import json
import os
import subprocess
import sys

import pytest

from pipelines import presets
from tests.conftest import REPO

FLAGS = {"epochs": 45, "qat_epochs": 8, "lr_schedule": "cosine", "clipnorm": 5.0,
         "weight_decay": 0.0, "keep_best": True, "imu_frontend": "raw_imu"}


def test_dataset_preset_is_the_default_and_given_flags_override_it():
  name, values = presets.apply("auto", "har2", dict(FLAGS, epochs=3, keep_best=False), set())
  assert name == "har2" and values == dict(presets.PRESETS["har2"], imu_frontend="raw_imu")
  name, values = presets.apply("auto", "har2", dict(FLAGS, epochs=3, keep_best=False,
                                                   clipnorm=0.0),
                               {"epochs", "keep_best", "clipnorm"})
  assert (values["epochs"], values["keep_best"], values["clipnorm"]) == (3, False, None)
  assert values["lr_schedule"] == "cosine"  # not given: the preset's


def test_plain_preset_is_the_earlier_recipe_with_the_flags_lengths():
  name, values = presets.apply("plain", "har6", dict(FLAGS, epochs=7), set())
  assert name == "plain" and values["epochs"] == 7
  assert (values["lr_schedule"], values["keep_best"], values["clipnorm"]) == (
      "constant", False, None)


def test_unknown_dataset_gets_the_recipe_and_unknown_preset_is_refused():
  name, values = presets.apply("auto", "npz", dict(FLAGS, epochs=6), set())
  assert name == "recipe" and values["keep_best"] and values["epochs"] == 6
  with pytest.raises(ValueError, match="--preset must be 'auto' or one of"):
    presets.resolve("fast", "har6")


def test_train_and_export_reads_the_preset_and_the_given_flags(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
  # A missing data folder stops the run after the configuration is resolved and printed.
  result = subprocess.run(
      [sys.executable, "-m", "pipelines.train_and_export", "--dataset=fsdd",
       f"--data_dir={tmp_path / 'absent'}", "--qat_epochs=2",
       f"--output_dir={tmp_path / 'run'}"],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode != 0
  assert ("preset fsdd: epochs 45, QAT 2, lr cosine, clipnorm 5.0, weight_decay 0.0, "
          "keep_best True") in result.stdout
  assert not (tmp_path / "run").exists()


def test_har6_preset_reads_the_gravity_front_end_and_a_flag_overrides_it(tmp_path):
  """The har6 preset's imu_gravity (chosen on validation) reaches the run's
  configuration; --imu_frontend=raw_imu wins over it; fsdd never gets an IMU front end."""
  name, values = presets.apply("auto", "har6", FLAGS, set())
  assert name == "har6" and values["imu_frontend"] == "imu_gravity"
  _, values = presets.apply("auto", "har6", FLAGS, {"imu_frontend"})
  assert values["imu_frontend"] == "raw_imu"
  assert presets.apply("auto", "har2", FLAGS, set())[1]["imu_frontend"] == "raw_imu"
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
  out = tmp_path / "run"
  for flags, words in (([], "IMU front end imu_gravity"),
                       (["--imu_frontend=raw_imu"], "IMU front end raw_imu")):
    # --epochs=1 is refused (three pruning phases) after the configuration is printed.
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.train_and_export", "--dataset=har6", "--epochs=1",
         f"--output_dir={out}", *flags],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert words in result.stdout, result.stdout + result.stderr
    assert not out.exists()


def test_har6_preset_trains_sparse_models_on_train_and_val_as_one_choice(tmp_path):
  """har6's ``sparse`` values (train_on_val, last epoch) apply to pruned models only, and
  a flag given for either sets both aside (the pair is one choice)."""
  flags = dict(FLAGS, train_on_val=False)
  _, dense = presets.apply("auto", "har6", flags, set())
  assert (dense["train_on_val"], dense["keep_best"]) == (False, True)
  _, sparse = presets.apply("auto", "har6", flags, set(), sparse=True)
  assert (sparse["train_on_val"], sparse["keep_best"]) == (True, False)
  assert "sparse" not in sparse and sparse["imu_frontend"] == "imu_gravity"
  _, kept = presets.apply("auto", "har6", flags, {"keep_best"}, sparse=True)
  assert (kept["train_on_val"], kept["keep_best"]) == (False, True)
  _, off = presets.apply("auto", "har6", flags, {"train_on_val"}, sparse=True)
  assert (off["train_on_val"], off["keep_best"]) == (False, True)
  _, har2 = presets.apply("auto", "har2", flags, set(), sparse=True)
  assert (har2["train_on_val"], har2["keep_best"]) == (False, True)
  # As train_and_export resolves its flags: the default har6 model is sparse.
  from tests.test_pipeline import _RESOLVE  # pylint: disable=import-outside-toplevel
  out = f"--output_dir={tmp_path / 'run'}"
  argvs = [["--dataset=har6", out], ["--dataset=har6", "--sparsity_w=0", "--sparsity_u=0", out],
           ["--dataset=har6", "--keep_best", out], ["--dataset=har2", out]]
  env = dict(os.environ, PYTHONPATH=str(REPO))
  result = subprocess.run([sys.executable, "-c", _RESOLVE, json.dumps(argvs)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  configs = [json.loads(line) for line in result.stdout.splitlines()]
  assert [(c["train_on_val"], c["keep_best"]) for c in configs] == [
      (True, False), (False, True), (False, True), (False, True)]
