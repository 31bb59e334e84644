"""tf_fastgrnn.spec: one value per default, presets as values, checks, JSON, migrate."""

import ast
import dataclasses
import json
import subprocess
import sys

import pytest

from pipelines import config as config_lib
from tests.conftest import REPO

spec_lib = config_lib.spec_lib
Spec = spec_lib.Spec


def test_spec_imports_without_tensorflow():
  code = ("import sys; from pipelines import config; s = config.spec_lib.Spec(); "
          "print('tensorflow' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                       text=True, timeout=120, env={"PYTHONPATH": str(REPO)})
  assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_each_choice_tuple_is_written_out_in_spec_alone():
  """The product's modules (TensorFlow ones included) take spec's choice tuples; none
  writes one out again, a copy that could drift from it."""
  choices = {frozenset(value): name for name, value in vars(spec_lib).items()
             if name in spec_lib.__all__ and isinstance(value, tuple) and len(value) > 1}
  assert {"CELLS", "READOUTS", "AUGMENT_CHOICES", "LR_SCHEDULES"} <= set(choices.values())
  copies = []
  for package in ("tf_fastgrnn", "pipelines"):
    for path in sorted((REPO / package).glob("*.py")):
      if path.name == "spec.py":
        continue
      for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, (ast.Tuple, ast.List, ast.Set))
            and all(isinstance(e, ast.Constant) for e in node.elts)):
          name = choices.get(frozenset(e.value for e in node.elts))
          if name:
            copies.append(f"{path.relative_to(REPO)}:{node.lineno} spells out spec.{name}")
  assert copies == []


def test_every_bad_value_is_refused_in_one_line_naming_it():
  for part, change, words in (
      ("model", {"units": 0}, "--units must be positive, got 0"),
      ("model", {"readout": "max"}, "--readout must be one of last, mean, got 'max'"),
      ("sparsity", {"w": 1.0}, "--sparsity_w is the fraction zeroed and must be in [0, 1)"),
      ("recipe", {"lr_schedule": "step"}, "--lr_schedule must be one of"),
      ("recipe", {"max_batch_fraction": 0.0}, "--max_batch_fraction must be in (0, 1]"),
      ("recipe", {"epochs": "3"}, "--epochs must be positive, got 3"),
      ("data", {"seed": -1}, "--seed must be >= 0, got -1"),
      ("export", {"arena_margin": -1}, "--arena_margin must be >= 0, got -1")):
    with pytest.raises(ValueError) as e:
      Spec().replace(**{part: change})
    assert words in str(e.value) and "\n" not in str(e.value)
  with pytest.raises(ValueError, match="--cell=lstm is quantized after training"):
    Spec().replace(model={"cell": "lstm", "u_rank": None})
  Spec.preset(cell="lstm")  # the baselines' values: no QAT, dense, full rank


def test_json_round_trip_and_flat_view():
  spec = Spec.preset("har6").replace(model={"units": 24},
                                     recipe={"augment": "imu", "augment_params": {"a": 1}})
  assert Spec.from_json(spec.to_json()) == spec
  assert Spec.from_flat(spec.flat()) == spec
  assert spec.flat()["sparsity_w"] == 0.5 and spec.flat()["units"] == 24
  with pytest.raises(ValueError, match="Spec.recipe: unknown fields \\['epoch'\\]"):
    Spec.from_dict({"recipe": {"epoch": 3}})


def test_migrate_reads_a_run_folder_made_before_the_schema(tmp_path):
  """A flags.json of the first layout (no schema_version, none of the fields added since)
  reads as what such runs did: constant rate, last epoch, converter's LSTM range, no
  tiny-data rules; not as today's defaults."""
  first = {"dataset": "har6", "data_dir": None, "cell": "lstm", "units": 12, "w_rank": None,
           "u_rank": None, "sparsity_w": 0.0, "sparsity_u": 0.0, "epochs": 30,
           "qat": False, "qat_epochs": 0, "batch_size": 64, "learning_rate": 0.01,
           "qat_learning_rate": 0.001, "seed": 0, "output_dir": "runs/x", "resume": False,
           "max_test_windows": None, "num_test_vectors": 4, "arena_margin": 1024}
  (tmp_path / "flags.json").write_text(json.dumps(first))
  values = config_lib.read_flags(tmp_path)
  assert values["schema_version"] == spec_lib.SCHEMA_VERSION
  assert (values["lr_schedule"], values["clipnorm"], values["keep_best"],
          values["lstm_product_on_cell_grid"], values["min_phase_steps"],
          values["max_batch_fraction"], values["feature_cache"]) == (
              "constant", None, False, False, 0, 1.0, "none")
  config = config_lib.Config.from_flags(values)
  assert config.spec.recipe.keep_best is False and config.epochs == 30
  # Today's layout passes unchanged; a newer one is refused, naming its version.
  now = dataclasses.asdict(config_lib.Config.from_spec(Spec(), "runs/y"))
  assert spec_lib.migrate(now) == now
  with pytest.raises(ValueError, match="schema_version 99 is not one this code reads"):
    spec_lib.migrate(dict(now, schema_version=99))
  with pytest.raises(ValueError, match="the run's flags lack \\['units'\\]"):
    config_lib.Config.from_flags({k: v for k, v in first.items() if k != "units"})
