"""Presets: the dataset's recipe by default, explicit flags win, the run prints it."""

import json
import os
import subprocess
import sys

import pytest

from pipelines import config as config_lib
from tests.conftest import REPO

spec_lib = config_lib.spec_lib
Spec = spec_lib.Spec


def test_dataset_preset_is_the_default_and_given_flags_override_it(tmp_path):
  har2 = Spec.preset("auto", dataset="har2")
  assert har2 == Spec().replace(data={"dataset": "har2"})  # har2's preset: the defaults
  assert (har2.recipe.lr_schedule, har2.recipe.clipnorm, har2.recipe.keep_best) == (
      "cosine", 5.0, True)
  configs = _resolve(tmp_path, [["--dataset=har2"],
                                ["--dataset=har2", "--epochs=3", "--nokeep_best",
                                 "--clipnorm=0"]])
  assert configs[0]["preset"] == "har2" and configs[0]["epochs"] == 45
  assert (configs[1]["epochs"], configs[1]["keep_best"], configs[1]["clipnorm"]) == (
      3, False, None)
  assert configs[1]["lr_schedule"] == "cosine"  # not given: the preset's


def test_plain_preset_is_the_earlier_recipe_with_the_default_lengths():
  plain = Spec.preset("plain", dataset="har6")
  assert plain.recipe.epochs == Spec().recipe.epochs
  assert (plain.recipe.lr_schedule, plain.recipe.keep_best, plain.recipe.clipnorm) == (
      "constant", False, None)
  assert plain.data.imu_frontend == "raw_imu"  # plain is a recipe, not har6's front end


def test_unknown_dataset_gets_the_recipe_and_unknown_preset_is_refused():
  name, values = Spec.preset_values("auto", dataset="npz")
  assert name == "recipe" and Spec().replace(**values).recipe == Spec().recipe
  with pytest.raises(ValueError, match="--preset must be 'auto' or one of"):
    Spec.preset("fast")


_CLI_DEFAULTS = """
import dataclasses, json
from absl import flags
from pipelines import train_and_export
flags.FLAGS(["train_and_export"])
print(json.dumps({name: flags.FLAGS[name].default for name in flags.FLAGS}))
"""


def test_cli_flag_defaults_are_the_spec_defaults(tmp_path):
  """Every flag of a Spec field defaults to that field's value in ``Spec()`` (rank 0,
  clipnorm 0 and augment "none" being the flags' spellings of None)."""
  env = dict(os.environ, PYTHONPATH=str(REPO))
  result = subprocess.run([sys.executable, "-c", _CLI_DEFAULTS], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  defaults = json.loads(result.stdout)
  spec = Spec().flat()
  with_flags = [name for name in spec if name in defaults]
  # The fields without a flag: the Python API's (and the sweep's) only.
  assert sorted(set(spec) - set(with_flags)) == ["augment_params", "min_lr_fraction"]
  spelled = {"clipnorm": lambda v: v or None, "augment": lambda v: None if v == "none" else v}
  for name in with_flags:
    assert spelled.get(name, lambda v: v)(defaults[name]) == spec[name], name


def test_cli_resolves_to_the_preset_spec_field_by_field(tmp_path):
  """With only --dataset (and --cell) given, the run's configuration is the preset's
  Spec, field by field (the dataset's own preset, the baselines' dense, QAT-free one)."""
  argvs = [[], ["--dataset=har2"], ["--dataset=fsdd"], ["--dataset=npz", "--data_dir=d.npz"],
           ["--dataset=har6", "--cell=lstm"], ["--dataset=har6", "--preset=plain"]]
  configs = _resolve(tmp_path, argvs)
  wants = [Spec.preset("har6"), Spec.preset("har2"), Spec.preset("fsdd"),
           Spec.preset(dataset="npz").replace(data={"data_dir": "d.npz"}),
           Spec.preset("har6", cell="lstm"),
           Spec.preset("plain", dataset="har6")]
  for argv, config, want in zip(argvs, configs, wants):
    got = config_lib.Config.from_flags(config)
    assert got.spec == want.replace(export={"lstm_product_on_cell_grid": (
        want.model.cell in config_lib.LSTM_CELLS)}), argv
  # The default run: har6's preset, sparse, so trained on train + val, the last epoch.
  assert (configs[0]["preset"], configs[0]["train_on_val"], configs[0]["keep_best"],
          configs[0]["imu_frontend"]) == ("har6", True, False, "imu_gravity")


def _resolve(tmp_path, argvs):
  from tests.test_pipeline import _RESOLVE  # pylint: disable=import-outside-toplevel
  out = f"--output_dir={tmp_path / 'run'}"
  env = dict(os.environ, PYTHONPATH=str(REPO))
  result = subprocess.run([sys.executable, "-c", _RESOLVE,
                           json.dumps([[*argv, out] for argv in argvs])], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  return [json.loads(line) for line in result.stdout.splitlines()]


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
  assert Spec.preset("har6").data.imu_frontend == "imu_gravity"
  assert Spec.preset("har2").data.imu_frontend == "raw_imu"
  assert Spec.preset("har6", dataset="fsdd").data.imu_frontend == "raw_imu"
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
  dense = Spec.preset("har6", sparse=False).recipe
  assert (dense.train_on_val, dense.keep_best) == (False, True)
  sparse = Spec.preset("har6").recipe  # the default model prunes
  assert (sparse.train_on_val, sparse.keep_best) == (True, False)
  har2 = Spec.preset("har2", sparse=True).recipe
  assert (har2.train_on_val, har2.keep_best) == (False, True)
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
