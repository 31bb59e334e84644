"""``tf_fastgrnn.run_folder`` for the CLIs, loaded without importing ``tf_fastgrnn``.

The run-folder rules belong to the product (``tf_fastgrnn.deploy`` writes by them too),
but the CLIs check ``--output_dir`` before TensorFlow loads, and importing the
``tf_fastgrnn`` package starts TensorFlow (its ``__init__`` registers the cells, so a
saved model loads after ``import tf_fastgrnn``). So this module executes
``tf_fastgrnn/run_folder.py`` (which imports no TensorFlow) on its own, registered under
its own name ``tf_fastgrnn.run_folder``, and stands for it: ``pipelines.run_folder`` and
``tf_fastgrnn.run_folder`` are one module object, whichever is imported first, so its
classes (``RunFolderError``, ``Manifest``) are the same on both paths.
"""

import importlib.util
import sys

_NAME = "tf_fastgrnn.run_folder"


def _load():
  if _NAME in sys.modules:
    return sys.modules[_NAME]
  package = importlib.util.find_spec("tf_fastgrnn")  # finds, does not import, it
  (folder,) = package.submodule_search_locations
  spec = importlib.util.spec_from_file_location(_NAME, f"{folder}/run_folder.py")
  module = importlib.util.module_from_spec(spec)
  sys.modules[_NAME] = module
  try:
    spec.loader.exec_module(module)
  except BaseException:
    del sys.modules[_NAME]
    raise
  return module


sys.modules[__name__] = _load()
