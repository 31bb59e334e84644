"""Tiny data sets (issue 26): every training phase gets a number of optimizer steps, and a
validation split too small to choose an epoch by keeps the last one."""
import dataclasses
import json

import numpy as np
import pytest

from pipelines import config as config_lib
from pipelines import report as report_lib
from pipelines import stages
from tf_fastgrnn import pruning
from tf_fastgrnn import training

THIRDS = pruning.SparsitySpec(w=0.5, u=0.5).phase_epochs
RULES = {"min_phase_steps": 256, "max_batch_fraction": 0.25}  # train_and_export's


def test_step_budget_caps_the_batch_and_raises_the_epochs_on_tiny_data():
  # The issue's run: 36 windows in batches of 64 are 1 step an epoch, 45 + 8 in all.
  assert training.step_budget(36, 64, 45, phases=THIRDS) == (64, 45)  # rules off
  # Batch <= 36 / 4 = 9: 4 steps an epoch; 256 steps are 64 epochs in each phase.
  assert training.step_budget(36, 64, 45, phases=THIRDS, **RULES) == (9, 192)
  assert THIRDS(192) == (64, 64, 64)
  assert training.step_budget(36, 64, 8, **RULES) == (9, 64)  # QAT: one phase
  assert training.step_budget(36, 64, 100, **RULES) == (9, 100)  # never fewer than asked
  assert training.step_budget(37, 64, 8, **RULES) == (9, 52)  # 5 steps an epoch
  assert training.step_budget(3, 64, 8, min_phase_steps=10,
                              max_batch_fraction=0.25) == (1, 8)  # batch at least 1
  assert training.step_budget(36, 64, 8, max_batch_fraction=0.25) == (9, 8)  # cap alone
  # Off, a batch above the windows stays as asked (the run's records keep it).
  assert training.step_budget(36, 64, 45, min_phase_steps=0, max_batch_fraction=1.0,
                              phases=THIRDS) == (64, 45)


def test_step_budget_leaves_runs_with_many_windows_alone():
  # har6's default run (train + val: 7143 windows) and fsdd's (2430): unchanged.
  assert training.step_budget(7143, 64, 45, phases=THIRDS, **RULES) == (64, 45)
  assert training.step_budget(7143, 64, 8, **RULES) == (64, 8)  # 112 steps an epoch
  assert training.step_budget(2430, 64, 45, phases=THIRDS, **RULES) == (64, 45)
  assert training.step_budget(2430, 64, 8, **RULES) == (64, 8)  # 8 x 38 = 304 steps
  # The bound: 2000 windows are 32 steps an epoch, 8 x 32 = 256; 1984 are 31.
  assert training.step_budget(2000, 64, 8, **RULES) == (64, 8)
  assert training.step_budget(1984, 64, 8, **RULES) == (64, 9)


@pytest.mark.parametrize("kwargs, match", [
    ({"min_phase_steps": -1}, "min_phase_steps must be an int >= 0, got -1"),
    ({"min_phase_steps": 2.5}, "min_phase_steps must be an int >= 0, got 2.5"),
    ({"max_batch_fraction": 0}, r"max_batch_fraction must be in \(0, 1\], got 0"),
    ({"max_batch_fraction": 1.5}, r"max_batch_fraction must be in \(0, 1\], got 1.5"),
])
def test_step_budget_refuses_bad_rules(kwargs, match):
  with pytest.raises(ValueError, match=match):
    training.step_budget(36, 64, 8, **kwargs)


def _config(**changes):
  base = config_lib.Config.from_flags(dict(
      dataset="npz", data_dir="x.npz", cell="fastgrnn", units=4, w_rank=None, u_rank=None,
      sparsity_w=0.5, sparsity_u=0.5, epochs=45, qat=True, qat_epochs=8, batch_size=64,
      learning_rate=0.01, qat_learning_rate=0.001, seed=0, output_dir="unused",
      resume=False, max_test_windows=None, num_test_vectors=1, arena_margin=0,
      keep_best=True))
  return dataclasses.replace(base, **changes)


def _data(num_train, num_val):
  return type("DS", (), {"x_train": np.zeros((num_train, 1, 1), np.float32),
                         "y_train": np.arange(num_train) % 2,
                         "x_val": np.zeros((num_val, 1, 1), np.float32),
                         "y_val": np.arange(num_val) % 2})()


TINY_RULES = {"min_phase_steps": 256, "max_batch_fraction": 0.25, "min_val_windows": 100}


def test_training_budget_of_the_issues_run_and_its_notes():
  config = _config(**TINY_RULES)
  ds = _data(36, 4)
  budget = stages.training_budget(config, ds)
  assert budget == {
      "batch_size": 9, "epochs": 192, "qat_epochs": 64, "keep_best": False,
      "steps_per_epoch": 4, "notes": [
          "tiny data: 36 training windows: batch 64 → 9, 4 steps an epoch, epochs 45 → "
          "192 (64/64/64 in three phases), QAT epochs 8 → 64 (--min_phase_steps=256: "
          "every training phase gets >= 256 optimizer steps; --max_batch_fraction=0.25)",
          "tiny data: 4 validation windows < --min_val_windows=100: the last epoch is "
          "kept, not the best (one window is 25.0 points of validation accuracy)"]}
  assert stages._recipe(config, ds).keep_best is False  # pylint: disable=protected-access
  # Dense training is one phase of all the epochs.
  dense = stages.training_budget(_config(sparsity_w=0.0, sparsity_u=0.0, **TINY_RULES), ds)
  assert (dense["batch_size"], dense["epochs"], dense["qat_epochs"]) == (9, 64, 64)
  assert "epochs 45 → 64, QAT" in dense["notes"][0]


def test_training_budget_rules_apply_one_by_one():
  ds = _data(36, 4)
  # The Config's defaults are the rules off, as in every run folder made before them.
  off = stages.training_budget(_config(), ds)
  assert off == {"batch_size": 64, "epochs": 45, "qat_epochs": 8, "keep_best": True,
                 "steps_per_epoch": 1, "notes": []}
  val_only = stages.training_budget(_config(min_val_windows=100), ds)
  assert (val_only["batch_size"], val_only["epochs"], val_only["keep_best"]) == (64, 45,
                                                                                 False)
  assert len(val_only["notes"]) == 1 and "4 validation windows" in val_only["notes"][0]
  # keep_best already off (e.g. --train_on_val): nothing to say about validation.
  last = stages.training_budget(_config(keep_best=False, **TINY_RULES), ds)
  assert last["keep_best"] is False and len(last["notes"]) == 1
  # 100 validation windows are enough; no QAT: its epochs stay as given.
  enough = stages.training_budget(_config(qat=False, **TINY_RULES), _data(36, 100))
  assert enough["keep_best"] is True and enough["qat_epochs"] == 8
  assert "QAT" not in enough["notes"][0]


def test_training_budget_is_inactive_on_the_default_har6_and_fsdd_runs():
  # har6: sparse, train + val (5992 + 1151 windows), last epoch; fsdd: 2430 + 270, best.
  har6 = stages.training_budget(_config(train_on_val=True, keep_best=False, **TINY_RULES),
                                _data(5992, 1151))
  assert har6 == {"batch_size": 64, "epochs": 45, "qat_epochs": 8, "keep_best": False,
                  "steps_per_epoch": 112, "notes": []}
  fsdd = stages.training_budget(_config(**TINY_RULES), _data(2430, 270))
  assert fsdd == {"batch_size": 64, "epochs": 45, "qat_epochs": 8, "keep_best": True,
                  "steps_per_epoch": 38, "notes": []}


def test_bad_rule_flags_are_refused_in_one_line(tmp_path):
  config = _config(output_dir=str(tmp_path / "run"))
  config_lib.validate_config(dataclasses.replace(config, **TINY_RULES))
  for changes, words in (({"min_phase_steps": -1}, "--min_phase_steps must be >= 0"),
                         ({"min_val_windows": -5}, "--min_val_windows must be >= 0"),
                         ({"max_batch_fraction": 0.0}, "--max_batch_fraction must be in"),
                         ({"max_batch_fraction": float("nan")},
                          "--max_batch_fraction must be in")):
    with pytest.raises(ValueError, match=words):
      config_lib.validate_config(dataclasses.replace(config, **changes))


def test_report_says_what_the_rules_changed():
  budget = stages.training_budget(_config(**TINY_RULES), _data(36, 4))
  report = {"command": "c", "finished": "f", "seconds": 1.0, "config": {"cell": "fastgrnn",
            "dataset": "npz"}, "accuracy": {"int8_tflm": 0.8}, "size": {},
            "macro_f1_tflm": 0.8, "sparsity": {}, "training": budget}
  text = report_lib.markdown(report)
  assert ("Tiny data: 4 validation windows < --min_val_windows=100: the last epoch is kept, "
          "not the best (one window is 25.0 points of validation accuracy).") in text
  assert "Tiny data: 36 training windows: batch 64 → 9, 4 steps an epoch" in text
  # A report written before the rules (no "training") renders as before.
  assert "Tiny data" not in report_lib.markdown(
      {k: v for k, v in report.items() if k != "training"})


@pytest.mark.slow
def test_end_to_end_tiny_set_trains_by_the_step_budget(tmp_path, rng):
  from tests.test_pipeline import _run, tiny_args  # pylint: disable=import-outside-toplevel
  args, out = tiny_args(tmp_path, rng)
  # The tiny runs' flags turn the rules off; set small ones again: 48 windows carve into
  # 43 training and 5 validation ones; batch 16 → 10, 5 steps an epoch, 12 steps a
  # phase: 3 epochs a phase (9 in all, asked 3), QAT 1 → 3; the last epoch is kept.
  result = _run(args + ["--nonumerics", "--nowindow_model", "--min_phase_steps=12",
                        "--max_batch_fraction=0.25", "--min_val_windows=100"], tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  assert ("tiny data: 43 training windows: batch 16 → 10, 5 steps an epoch, epochs 3 → 9 "
          "(3/3/3 in three phases), QAT epochs 1 → 3") in result.stdout
  assert "tiny data: 5 validation windows < --min_val_windows=100" in result.stdout
  report = json.loads((out / "report.json").read_text())
  assert {k: report["training"][k] for k in ("batch_size", "epochs", "qat_epochs",
                                             "keep_best")} == {
      "batch_size": 10, "epochs": 9, "qat_epochs": 3, "keep_best": False}
  for stage, epochs in (("float", 9), ("qat", 3)):  # what each stage ran (resume record)
    run = json.loads((out / "checkpoints" / stage / "run.json").read_text())
    assert (run["batch_size"], run["epochs"]) == (10, epochs), stage
  assert "best_epoch" not in json.loads((out / "qat_training.json").read_text())
  assert "Tiny data: 5 validation windows" in (out / "report.md").read_text()


def test_resume_of_a_run_from_before_the_rules_depends_on_what_they_change(tmp_path):
  """A flags.json written before the rules existed has none of their fields (they read as
  off): resuming with the CLI's rules on is refused only where they change the run."""
  config = _config(**TINY_RULES)
  old = {k: v for k, v in dataclasses.asdict(config).items()
         if k not in ("min_phase_steps", "max_batch_fraction", "min_val_windows",
                      "schema_version", "min_lr_fraction")}  # a pre-schema layout
  (tmp_path / "flags.json").write_text(json.dumps(old))
  resumed = dataclasses.replace(config, resume=True)
  stages._check_resume(resumed, tmp_path, _data(7143, 1151))  # pylint: disable=protected-access
  with pytest.raises(ValueError, match="min_phase_steps"):
    stages._check_resume(resumed, tmp_path, _data(36, 4))  # pylint: disable=protected-access
  with pytest.raises(ValueError, match="min_phase_steps"):  # without the data: compared
    stages._check_resume(resumed, tmp_path)  # pylint: disable=protected-access
  # Another flag changed as well: refused whatever the rules do.
  with pytest.raises(ValueError, match="units"):
    stages._check_resume(dataclasses.replace(resumed, units=8), tmp_path,  # pylint: disable=protected-access
                         _data(7143, 1151))
