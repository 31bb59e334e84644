"""Presets: the dataset's recipe by default, explicit flags win, flags.json records it."""

import dataclasses

import pytest
from absl import flags

from pipelines import presets
from pipelines import train_and_export


@pytest.fixture
def parse():
  def _parse(*args):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["train_and_export", *args])
    return train_and_export._config_from_flags()  # pylint: disable=protected-access
  yield _parse
  flags.FLAGS.unparse_flags()


def test_dataset_preset_is_the_default_and_flags_override_it(parse):
  config = parse("--dataset=har2")
  assert config.preset == "har2"
  for key, value in presets.PRESETS["har2"].items():
    assert getattr(config, key) == value, key
  config = parse("--dataset=har2", "--epochs=3", "--nokeep_best", "--clipnorm=0")
  assert (config.epochs, config.keep_best, config.clipnorm) == (3, False, None)
  assert config.lr_schedule == "cosine"  # not given: the preset's


def test_plain_preset_is_the_earlier_recipe(parse):
  config = parse("--dataset=har6", "--preset=plain")
  assert (config.lr_schedule, config.keep_best, config.clipnorm) == ("constant", False, None)
  assert config.epochs == 45  # plain sets no lengths: the flags' defaults
  assert "preset" in dataclasses.asdict(config)  # so flags.json records it


def test_unknown_dataset_gets_the_recipe_without_lengths(parse, tmp_path):
  config = parse("--dataset=npz", f"--data_dir={tmp_path}/x.npz", "--epochs=6")
  assert config.preset == "recipe" and config.keep_best and config.epochs == 6


def test_unknown_preset_is_refused():
  with pytest.raises(ValueError, match="--preset must be 'auto' or one of"):
    presets.resolve("fast", "har6")
