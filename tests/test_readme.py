"""The README's Python examples run as written, so they cannot rot."""

import re

import pytest

from tests.conftest import REPO

BLOCKS = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)


def test_the_readme_has_python_examples():
  assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index):
  namespace = {}
  exec(compile(BLOCKS[index], f"README.md python block {index}", "exec"), namespace)  # pylint: disable=exec-used
  model = namespace["model"]
  assert model.count_params() > 0 and len(model.trainable_weights) >= 5
