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

import sys

from pipelines import _light

sys.modules[__name__] = _light.load("run_folder")
