"""benchmarks.sweep on a tiny npz task: result files, reuse, resume, aggregation."""

import json

import numpy as np
import pytest

import data as data_lib
from benchmarks import sweep
from tests.test_pipeline import _npz

TINY = dict(epochs=3, qat_epochs=1, batch_size=16, learning_rate=0.01,
            qat_learning_rate=0.001, lr_schedule="cosine", clipnorm=5.0,
            weight_decay=0.0, keep_best=True, max_test_windows=8)


@pytest.fixture
def tiny(tmp_path, rng, monkeypatch):
  monkeypatch.setitem(sweep.SETTINGS, "npz", dict(TINY))
  path = _npz(tmp_path / "tiny.npz", rng, d=3)
  loads = []

  def load(name, data_dir, seed):
    loads.append((name, seed))
    return data_lib.load_dataset("npz", str(path), seed=seed)

  points = [sweep._rnn(1, "npz", "fastgrnn_lsq", 6, 2, 3, 0.5),  # pylint: disable=protected-access
            sweep._rnn(1, "npz", "gru", 4),  # pylint: disable=protected-access
            sweep._cnn(2, "npz", 4, 3)]  # pylint: disable=protected-access
  return points, load, loads, tmp_path


@pytest.mark.slow
def test_sweep_writes_reuses_resumes_and_aggregates(tiny):
  points, load, loads, tmp = tiny
  results, runs = tmp / "results", tmp / "runs"
  # Two workers share the schedule; together they run every (point, seed) once.
  trained = [sweep.run(points, 2, results, runs, shard=(s, 2), load=load)
             for s in (0, 1)]
  assert sum(trained) == 6
  files = sorted(p.relative_to(results).as_posix() for p in results.rglob("*.json"))
  assert files == sorted(p.file(s) for p in points for s in (0, 1))
  lsq = json.loads((results / points[0].file(1)).read_text())
  assert lsq["seed"] == 1 and lsq["settings"]["epochs"] == 3
  assert lsq["weights_nonzero_int8_bytes"] < lsq["weights_dense_int8_bytes"]
  assert lsq["macs_unit"] == "per step" and lsq["evaluated_test_windows"] == 8
  assert 0.0 <= lsq["int8_tflm_val_accuracy"] <= 1.0
  cnn = json.loads((results / points[2].file(0)).read_text())
  assert cnn["macs_unit"] == "per window" and cnn["settings"]["qat_epochs"] == 0
  assert cnn["tflite_bytes"] > 0 and cnn["arena_bytes"] > 0
  assert 0.0 <= cnn["int8_tflm_val_accuracy"] <= 1.0
  gru = json.loads((results / points[1].file(0)).read_text())
  assert gru["settings"]["qat_epochs"] == 0 and 0.0 <= gru["int8_tflm_accuracy"] <= 1.0

  # Reuse: a finished point is never trained again (no dataset even loaded).
  loads.clear()
  assert sweep.run(points, 2, results, runs, load=load) == 0 and loads == []

  # Resume: a fresh checkout has the result files but not runs/; a point whose run
  # folder finished but whose result file was lost is rebuilt from the folder.
  report = runs / "npz" / f"gru_{points[1].size}" / "seed0" / "report.json"
  stamp = report.stat().st_mtime_ns
  (results / points[1].file(0)).unlink()
  assert sweep.run(points, 2, results, runs, load=load) == 1
  assert report.stat().st_mtime_ns == stamp  # not retrained
  assert json.loads((results / points[1].file(0)).read_text())["int8_tflm_accuracy"] == \
      gru["int8_tflm_accuracy"]

  # Aggregation: mean and std over the seeds' files.
  agg = sweep.write_aggregate(results, tmp / "report", points)
  stats = agg[("npz", "fastgrnn_lsq", points[0].size)]
  accs = [json.loads((results / points[0].file(s)).read_text())["int8_tflm_accuracy"]
          for s in (0, 1)]
  assert stats["int8_tflm_accuracy"][0] == pytest.approx(np.mean(accs))
  assert stats["int8_tflm_accuracy"][1] == pytest.approx(np.std(accs))
  assert stats["int8_tflm_accuracy"][2] == 2 and stats["seeds"] == [0, 1]
  text = (tmp / "report" / "sweep.md").read_text()
  assert "FastGRNN-LSQ" in text and "1D CNN" in text and "who wins" in text
  assert (tmp / "report" / "sweep_fronts.png").stat().st_size > 0

  # Results made with other settings are left out of the aggregate, and refused.
  sweep.SETTINGS["npz"]["epochs"] = 4
  assert sweep.aggregate(sweep.load_results(results, points)) == {}
  with pytest.raises(ValueError, match="made with other settings"):
    sweep.run(points, 1, results, runs, load=load)


def test_best_under_picks_the_best_within_the_budget():
  def stats(acc, size, plain=False):
    out = {m: (1.0, 0.0, 5) for m in sweep.METRICS}
    out.update({"int8_tflm_accuracy": (acc, 0.0, 5), "weights_dense_int8_bytes": (size, 0, 5),
                "seeds": list(range(5)), "knobs": {"plain": plain}, "macs_unit": "per step"})
    return out
  agg = {("har2", "gru", "h8"): stats(0.95, 400), ("har2", "gru", "h16"): stats(0.99, 1200),
         ("har2", "fastgrnn", "h16"): stats(0.97, 420),
         ("har2", "fastgrnn", "h8p"): stats(0.999, 200, plain=True)}
  best = sweep.best_under(agg, "har2", sweep.GATED, 512, "int8_tflm_accuracy")
  assert best[:2] == ("gru", "h8")
  best = sweep.best_under(agg, "har2", sweep.FASTGRNN_FAMILY, 512, "int8_tflm_accuracy")
  assert best[:2] == ("fastgrnn", "h16")  # the recipe ablation never enters a front
  assert sweep.best_under(agg, "har2", sweep.GATED, 256, "int8_tflm_accuracy") is None
  # Point by point: GRU h8 (400 B) meets FastGRNN h16? No, 420 B > 400 B: nothing at
  # <= 400 B but the ablation, which never counts; GRU h16 (1200 B) meets FastGRNN h16.
  rows = sweep.against_gated(agg, "har2", "int8_tflm_accuracy")
  assert [(g[1], None if f is None else f[1]) for g, f in rows] == [("h8", None),
                                                                    ("h16", "h16")]
  text = sweep.markdown(agg)
  assert "| GRU h16: 99.00 ± 0.00 (n=5, 1200 B) | FastGRNN h16: 97.00 ± 0.00 (n=5, 420 B) | -2.00 |" in text
  assert "| GRU h8: 95.00 ± 0.00 (n=5, 400 B) | none measured | – |" in text
  assert sweep.budgets_for("fsdd") == (256, 512, 1024, 2048, 2560, 4096, 8192)


def test_schedule_names_are_unique_and_ordered_by_tier():
  points = sweep.schedule()
  names = [p.file(0) for p in points]
  assert len(names) == len(set(names))
  order = sweep._ordered(points, 2)  # pylint: disable=protected-access
  tiers = [p.tier for p, _ in order]
  assert tiers == sorted(tiers)
  assert order[0][1] == 0 and order[len([p for p in points if p.tier == 1])][1] == 1


def test_bad_shard_is_refused(tmp_path):
  with pytest.raises(ValueError, match=r"shard must be in \[0, num_shards=2\)"):
    sweep.run([], 1, tmp_path, tmp_path, shard=(2, 2))


def test_fill_doc_replaces_only_the_marked_block(tmp_path):
  doc = tmp_path / "doc.md"
  doc.write_text(f"# Title\nintro\n{sweep.BEGIN}\nold table\n{sweep.END}\nafter\n")
  sweep.fill_doc(doc, "## har2\nnew table\n")
  assert doc.read_text() == (f"# Title\nintro\n{sweep.BEGIN}\n## har2\nnew table\n"
                             f"{sweep.END}\nafter\n")
  bad = tmp_path / "bad.md"
  bad.write_text("no markers\n")
  with pytest.raises(ValueError, match="needs one line"):
    sweep.fill_doc(bad, "x")
  assert bad.read_text() == "no markers\n"
  # The page's prose may name the markers: only whole marker lines count.
  prose = tmp_path / "prose.md"
  prose.write_text(f"see `{sweep.BEGIN}` and `{sweep.END}`\n{sweep.BEGIN}\nold\n{sweep.END}\n")
  sweep.fill_doc(prose, "new")
  assert prose.read_text() == (f"see `{sweep.BEGIN}` and `{sweep.END}`\n{sweep.BEGIN}\nnew\n"
                               f"{sweep.END}\n")


def test_augmented_points_come_last_and_leave_the_other_tiers_settings_alone():
  points = sweep.schedule()
  first = [p for p in points if p.tier <= 3]
  assert points[:len(first)] == first  # tiers 1-3 keep their positions (workers index them)
  assert all("augment" not in sweep.settings_for(p) for p in first)
  aug = {p.file(0): sweep.settings_for(p) for p in points if p.tier == 4}
  assert aug["fsdd/fastgrnn_h32_aug_seed0.json"]["augment"] == "auto"
  assert "augment_strength" not in aug["fsdd/fastgrnn_h32_aug_seed0.json"]
  assert aug["fsdd/gru_h16_aug_light_seed0.json"]["augment_strength"] == 0.5
  assert aug["fsdd/gru_h16_aug_light_seed0.json"]["qat_epochs"] == 0
  assert aug["har6/fastgrnn_h24_aug_norot_seed0.json"]["augment_params"] == {
      "max_angle_deg": 0.0}
  # Labelled in the tables, kept out of the fronts (another recipe).
  stats = {"int8_tflm_accuracy": (0.99, 0.0, 3), "weights_dense_int8_bytes": (400, 0, 3),
           "seeds": [0, 1, 2], "knobs": {"aug": True}}
  assert sweep.best_under({("fsdd", "gru", "h16_aug"): stats}, "fsdd", sweep.GATED, 512,
                          "int8_tflm_accuracy") is None


def test_hop_points_ask_the_loader_for_dense_training_windows(tmp_path):
  points = sweep.schedule()
  hop = [p for p in points if p.kw.get("hop16")]
  assert {p.file(0) for p in hop} == {"har6/fastgrnn_h24_hop16_seed0.json",
                                      "har6/gru_h12_hop16_seed0.json"}
  assert all(p.tier == 5 for p in hop)
  wd = {p.file(0): sweep.settings_for(p) for p in points if p.kw.get("wd")}
  assert {s["weight_decay"] for s in wd.values()} == {0.02}
  assert wd["har6/gru_h12_wd_seed0.json"]["qat_epochs"] == 0  # post-training int8
  settings = sweep.settings_for(hop[0])
  assert settings["train_hop"] == 16 and settings["epochs"] == 15
  assert sweep.data_options(hop[0]) == {"train_hop": 16}
  assert all(sweep.data_options(p) == {} for p in points if p.tier <= 4)

  # run() hands the options to the loader (here a loader that stops the run at once).
  seen = []

  def load(name, data_dir, seed, **opts):
    seen.append((name, seed, opts))
    raise RuntimeError("stop")

  with pytest.raises(RuntimeError, match="stop"):
    sweep.run(hop[:1], 1, tmp_path / "results", tmp_path / "runs", load=load)
  assert seen == [("har6", 0, {"train_hop": 16})]


def test_lstm_export_points_follow_every_lstm_point_with_its_settings():
  points = sweep.schedule()
  lstm = [p for p in points if p.family in ("lstm", "lowrank_lstm") and p.tier < 5]
  exports = [p for p in points if sweep._is_export(p)]  # pylint: disable=protected-access
  assert {sweep._base_point(p).file(0) for p in exports} == {  # pylint: disable=protected-access
      p.file(0) for p in lstm}
  assert {p.size for p in exports if p.dataset == "har6" and p.family == "lstm"} >= {
      "h12_int16c", "h12_cgrid"}
  assert all(p.kw.get("cgrid") for p in exports if p.family == "lowrank_lstm")
  for p in exports:
    assert sweep.settings_for(p) == sweep.settings_for(sweep._base_point(p))  # pylint: disable=protected-access


@pytest.mark.slow
def test_lstm_exports_reuse_the_lstm_points_float_model(tiny):
  _, load, _, tmp = tiny
  results, runs = tmp / "results", tmp / "runs"
  base = sweep._rnn(1, "npz", "lstm", 4)  # pylint: disable=protected-access
  int16c = sweep._rnn(5, "npz", "lstm", 4, int16c=True)  # pylint: disable=protected-access
  cgrid = sweep._rnn(5, "npz", "lstm", 4, cgrid=True)  # pylint: disable=protected-access
  # Tier 5 trains nothing: an export point waits for its LSTM point's run folder.
  assert sweep.run([int16c], 1, results, runs, load=load) == 0
  assert not (runs / "npz" / "lstm_h4").exists() and not (results / "npz").exists()
  with pytest.raises(ValueError, match="has not finished: run that point first"):
    sweep.run_point(int16c, 0, results, runs, load("npz", None, 0))
  assert sweep.run([base, int16c], 1, results, runs, load=load) == 2
  first = json.loads((results / int16c.file(0)).read_text())
  assert first["float_model_from"]["point"] == base.file(0)
  assert first["float_model_from"]["reused"] is True
  assert first["streaming_equals_window_model"] is True
  assert first["litert_logits_max_lsb"] <= 2 and first["tflite_bytes"] > 0
  assert first["arena_bytes"] > 0 and 0.0 <= first["int8_tflm_val_accuracy"] <= 1.0
  model_file = runs / "npz" / "lstm_h4" / "seed0" / "model_float.keras"
  stamp = model_file.stat().st_mtime_ns
  # The other export reuses the same float model: nothing is trained again.
  assert sweep.run([base, int16c, cgrid], 1, results, runs, load=load) == 1
  assert model_file.stat().st_mtime_ns == stamp
  base_result = json.loads((results / base.file(0)).read_text())
  second = json.loads((results / cgrid.file(0)).read_text())
  assert second["float_model_from"]["reused"] is True
  assert second["float_model_from"]["sha256"] == first["float_model_from"]["sha256"]
  for key in ("float_accuracy", "val_accuracy_float", "weights_dense_int8_bytes", "macs"):
    assert first[key] == second[key] == base_result[key]
  assert second["settings"] == base_result["settings"]
  text = sweep.markdown(sweep.aggregate(sweep.load_results(results)))
  assert "| LSTM (fused LSTM op, int16 c) | h4_int16c | 1 |" in text
  assert "| LSTM (int8, σ(f)·c on c's grid) | h4_cgrid | 1 |" in text


def test_compare_pairs_the_seeds_both_points_have(tmp_path):
  def put(name, seed, val, f1):
    path = tmp_path / "har6" / f"{name}_seed{seed}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"int8_tflm_val_accuracy": val, "int8_tflm_macro_f1": f1,
                                "val_accuracy_float": None}))

  put("gru_h12_wd", 0, 0.90, 0.80)
  put("gru_h12_wd", 1, 0.94, 0.90)
  put("gru_h12", 0, 0.91, 0.70)
  put("gru_h12", 1, 0.92, 0.80)
  put("gru_h12", 2, 0.99, 0.90)  # no trial seed 2: not paired
  rows = sweep.compare(tmp_path, "har6/gru_h12_wd", "har6/gru_h12").splitlines()
  by_metric = {r.split(" | ")[0].strip("| "): r.split(" | ")[1:] for r in rows[2:]}
  # val: trial 92 ± 2, base 94 ± 3.56 (n=3), paired (-1, +2) -> +0.50 ± 1.50
  assert by_metric["val int8 TFLM %"] == ["92.00 ± 2.00 (n=2)", "94.00 ± 3.56 (n=3)",
                                          "+0.50 ± 1.50 (n=2) |"]
  assert by_metric["test macro-F1"] == ["0.850 ± 0.050 (n=2)", "0.800 ± 0.082 (n=3)",
                                        "+0.100 ± 0.000 (n=2) |"]
  assert by_metric["val float %"] == ["–", "–", "– |"]  # null in every file
  with pytest.raises(ValueError, match="no result files"):
    sweep.compare(tmp_path, "har6/gru_h99", "har6/gru_h12")


def test_fronts_plot_one_export_per_lstm_size_and_no_ablation():
  def stats(score, **knobs):
    return {"int8_tflm_accuracy": (score, 0.0, 5), "weights_dense_int8_bytes": (498, 0, 5),
            "knobs": knobs}

  agg = {("har2", "lstm", "h8"): stats(0.980),
         ("har2", "lstm", "h8_cgrid"): stats(0.985, cgrid=True),
         ("har2", "lstm", "h8_int16c"): stats(0.984, int16c=True),  # preferred, not the best
         ("har2", "lstm", "h12"): stats(0.990),  # no export yet: the plain one
         ("har2", "lstm", "h16_cgrid"): stats(0.991, cgrid=True),
         ("har2", "lstm", "h16"): stats(0.970),
         ("har2", "lstm", "h8_wd"): stats(0.999, wd=True),  # an ablation: never plotted
         ("fsdd", "lstm", "h8"): stats(0.5)}
  got = sorted(s["int8_tflm_accuracy"][0] for s in sweep._plotted(agg, "har2", "lstm"))  # pylint: disable=protected-access
  assert got == [0.984, 0.990, 0.991]
