"""A TensorFlow-free module of ``tf_fastgrnn``, loaded without the package's ``__init__``.

``import tf_fastgrnn`` starts TensorFlow (about 6 s, and a multi-worker strategy must be
set up before it); the CLIs check flags, data and folders first with the modules that do
not need it (``spec``, ``run_folder``). Each is executed under its own name, so a later
``import tf_fastgrnn`` uses the very same module object.
"""

import importlib.util
import sys


def load(module):
  """``tf_fastgrnn.<module>`` (e.g. ``"spec"``), imported or executed from its file."""
  name = f"tf_fastgrnn.{module}"
  if name in sys.modules:
    return sys.modules[name]
  package = importlib.util.find_spec("tf_fastgrnn")  # finds, does not import, it
  (folder,) = package.submodule_search_locations
  spec = importlib.util.spec_from_file_location(name, f"{folder}/{module}.py")
  loaded = importlib.util.module_from_spec(spec)
  sys.modules[name] = loaded
  try:
    spec.loader.exec_module(loaded)
  except BaseException:
    del sys.modules[name]
    raise
  return loaded
