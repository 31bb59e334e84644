"""The docstring examples of the public modules run as written (doctest), so they cannot rot."""

import doctest
import importlib
import pkgutil

import numpy as np
import pytest

import tf_fastgrnn

PUBLIC = sorted(m.name for m in pkgutil.iter_modules(tf_fastgrnn.__path__, "tf_fastgrnn.")
                if not m.name.rsplit(".", 1)[1].startswith("_"))


def _examples(name):
  module = importlib.import_module(name)
  return module, [t for t in doctest.DocTestFinder().find(module) if t.examples]


WITH_EXAMPLES = [name for name in PUBLIC if _examples(name)[1]]


def test_the_examples_are_found():
  assert {"tf_fastgrnn.cells", "tf_fastgrnn.c_text", "tf_fastgrnn.training",
          "tf_fastgrnn.pruning", "tf_fastgrnn.augment"} <= set(WITH_EXAMPLES)


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  module, tests = _examples(name)
  monkeypatch.chdir(tmp_path)  # examples that write files write them here
  tf.keras.utils.set_random_seed(0)
  runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  for test in tests:
    test.globs = {"np": np, "tf": tf, "tf_fastgrnn": tf_fastgrnn, **vars(module)}
    runner.run(test)
  failed, attempted = runner.summarize(verbose=False)
  assert attempted and not failed, f"{failed} of {attempted} examples of {name} failed"
