"""The README's Python examples run as written, so they cannot rot."""

import re

import pytest

from tests.conftest import REPO

BLOCKS = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)


def test_the_readme_has_python_examples():
  assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # an example that writes a folder writes it here
  namespace = {}
  exec(compile(BLOCKS[index], f"README.md python block {index}", "exec"), namespace)  # pylint: disable=exec-used
  model = namespace["model"]
  assert model.count_params() > 0 and len(model.trainable_weights) >= 5
  if "deployment" in namespace:  # the compress/deploy example: what it says it writes
    folder = namespace["deployment"].folder
    for name in ("model_int8.tflite", "model_int8_fused.tflite", "standalone",
                 "device/model_settings.h", "tflm_eval.npz", "numerics/numerics.json"):
      assert (folder / name).exists(), name
    assert 0 <= namespace["deployment"].evaluation.accuracy <= 1


def test_the_readme_has_the_api_example():
  assert any("tfg.compress(" in b and "tfg.deploy(" in b for b in BLOCKS)


def test_readme_results_table_is_generated_from_the_committed_sweep():
  from benchmarks import readme_results  # pylint: disable=import-outside-toplevel
  import json  # pylint: disable=import-outside-toplevel
  readme = (REPO / "README.md").read_text(encoding="utf-8")
  points = json.loads(readme_results.SWEEP_JSON.read_text())
  assert readme_results.readme_with(readme, readme_results.table(points)) == readme, (
      "python -m benchmarks.readme_results --write")
  # the table is the sweep's numbers: a changed point changes the table
  point = next(p for p in points if (p["dataset"], p["family"], p["size"]) ==
               ("har2", "gru", "h8"))
  point["int8_tflm_accuracy"] = [0.5, 0.25, 5]
  assert "GRU 50.00 ± 25.00 % at 402 B" in readme_results.table(points)
