r"""The numerics diff Keras float / QAT ↔ LiteRT ↔ TFLM on an existing run folder.

  python -m pipelines.diff_numerics --run_dir=runs/har6_fastgrnn
  python -m pipelines.diff_numerics --run_dir=... --windows_npz=my_windows.npz

Reads ``model_float.keras`` and ``model_int8.tflite`` from the run folder and, for a QAT
run, what the export converted: ``model_int8_source.keras`` and ``quantization_plan.json``
(the Keras QAT column is rebuilt from them; run folders older than that file fall back to
``model_qat.keras``), the test windows of the run's dataset (``flags.json``) or of
``--windows_npz`` (arrays ``x`` [N, T, D] normalised as in training, ``y`` [N]), and
writes ``numerics/`` (json, md, png) into ``--output_dir`` (default: the run folder).

Every file it reads must be the one the run wrote (its ``manifest.json``; folders made
before manifests are not checked), and no run may be writing the folder (its lock,
held meanwhile): a swapped ``model_int8.tflite`` is refused in one line, not diffed.
"""

import json
import sys

from absl import app
from absl import flags

from pipelines.run_numerics import run

_RUN_DIR = flags.DEFINE_string("run_dir", None, "A train_and_export run folder.")
_WINDOWS_NPZ = flags.DEFINE_string("windows_npz", None, "npz with x, y instead of the "
                                   "run's test set.")
_MAX_WINDOWS = flags.DEFINE_integer("max_windows", None, "Use at most this many windows.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where numerics/ goes (default: "
                                  "run_dir).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _RUN_DIR.value:
    print("diff_numerics: --run_dir is required", file=sys.stderr)
    return 2
  try:
    result = run(_RUN_DIR.value, _WINDOWS_NPZ.value, _MAX_WINDOWS.value, _OUTPUT_DIR.value)
  except (ValueError, FileNotFoundError) as e:
    print(f"diff_numerics: {e}", file=sys.stderr)
    return 1
  print(json.dumps(result["summary"], indent=2))
  return 0


if __name__ == "__main__":
  app.run(main)
