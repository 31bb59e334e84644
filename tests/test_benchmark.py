"""benchmarks.benchmark on a tiny npz task: it runs, tabulates, reuses, and refuses."""

import json

import numpy as np
import pytest

from benchmarks import benchmark
from tests.test_pipeline import _npz

LENGTHS = dict(epochs=3, qat_epochs=1, units=8, max_test_windows=8)
BASE = benchmark.base_spec(**LENGTHS)


@pytest.mark.slow
def test_benchmark_runs_on_a_tiny_task(tmp_path, rng, monkeypatch):
  data = _npz(tmp_path / "tiny.npz", rng, d=3)
  # The task has 3 features: the LSQ ranks shrink to fit it (W rank <= D).
  monkeypatch.setitem(benchmark.MODELS, "fastgrnn_lsq",
                      dict(benchmark.MODELS["fastgrnn_lsq"], w_rank=2, u_rank=4))
  out = tmp_path / "bench"
  models = ["fastgrnn_lsq", "lstm"]
  rows, agg = benchmark.run(BASE, ["npz"], models, [0], out,
                             data_dirs={"npz": str(data)}, timing_steps=5)
  assert sorted(rows) == [("npz", "fastgrnn_lsq", 0), ("npz", "lstm", 0)]
  lsq, lstm = agg[("npz", "fastgrnn_lsq")], agg[("npz", "lstm")]
  for stats in (lsq, lstm):
    assert 0.0 <= stats["int8_tflm_accuracy"][0] <= 1.0
    assert stats["tflite_bytes"][0] > 0 and stats["arena_bytes"][0] > 0
    assert stats["tflm_us_per_step"][0] > 0
  # FastGRNN-LSQ at H=8 (ranks 2/4, half of W and U zeroed) has fewer non-zero weights
  # than an LSTM of the same H: 4 gates of full W and U.
  assert lsq["weights_nonzero"][0] < lstm["weights_nonzero"][0]
  report = json.loads((out / "npz" / "lstm" / "seed0" / "report.json").read_text())
  assert report["size"]["tflite_step_bytes"] == lstm["tflite_bytes"][0]

  text = benchmark.markdown(agg, "python -m benchmarks.benchmark (test)", dict(LENGTHS))
  assert "fastgrnn_lsq" in text and "lstm" in text
  benchmark.plot_pareto(agg, out / "pareto.png")
  assert (out / "pareto.png").stat().st_size > 0

  # Finished runs are reused as they are...
  rows_again, _ = benchmark.run(BASE, ["npz"], models, [0], out,
                                data_dirs={"npz": str(data)}, timing_steps=5,
                                aggregate_only=True)
  assert sorted(rows_again) == sorted(rows)
  assert (rows_again[("npz", "lstm", 0)]["int8_tflm_accuracy"] ==
          rows[("npz", "lstm", 0)]["int8_tflm_accuracy"])
  # ...but never under other settings.
  with pytest.raises(ValueError, match="made with other settings"):
    benchmark.run(benchmark.base_spec(**dict(LENGTHS, epochs=6)), ["npz"], models, [0],
                  out, data_dirs={"npz": str(data)}, timing_steps=5)


def test_unknown_model_is_refused(tmp_path):
  with pytest.raises(ValueError, match="unknown model 'transformer'"):
    benchmark.run(BASE, ["npz"], ["transformer"], [0], tmp_path, timing_steps=5)


def test_aggregate_is_mean_and_std_over_seeds():
  rows = {("har2", "lstm", s): {"int8_tflm_accuracy": v, "train_seconds_per_epoch": None}
          for s, v in enumerate([0.90, 0.94, 0.92])}
  stats = benchmark.aggregate(rows)[("har2", "lstm")]
  mean, std, n = stats["int8_tflm_accuracy"]
  assert n == 3 and mean == pytest.approx(0.92) and std == pytest.approx(np.std([0.9, .94, .92]))
  assert "train_seconds_per_epoch" not in stats
