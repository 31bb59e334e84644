"""The README's results table, generated from the committed sweep results.

The table lives in README.md between the markers below and is never edited by hand:

  python -m benchmarks.readme_results            # prints the table
  python -m benchmarks.readme_results --write    # puts it into README.md
  python -m benchmarks.readme_results --check    # exit 1 if README.md differs

`tests/test_readme.py` runs the check, so the README cannot drift from
`benchmarks/sweep.json` (the aggregate of `benchmarks/results/`, written by the sweep).
"""

import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SWEEP_JSON = ROOT / "benchmarks" / "sweep.json"
README = ROOT / "README.md"
BEGIN = "<!-- results table: python -m benchmarks.readme_results --write -->"
END = "<!-- end of results table -->"

# (data set, what it is, metric key, ours (family, size), theirs (family, size))
ROWS = (
    ("har2", "moving vs static", "int8_tflm_accuracy",
     ("fastgrnn_lsq", "h16r3-4"), ("gru", "h8")),
    ("har6", "six activities", "int8_tflm_macro_f1",
     ("fastgrnn_lsq", "h32r4-8s50_grav_refit"), ("gru", "h12_grav_refit")),
    ("fsdd", "spoken digits", "int8_tflm_accuracy",
     ("fastgrnn_lsq", "h48r8-12"), ("gru", "h16")),
)
_METRIC = {"int8_tflm_accuracy": "accuracy", "int8_tflm_macro_f1": "macro-F1"}
_FAMILY = {"gru": "GRU", "lstm": "LSTM", "fastrnn": "FastRNN", "cnn": "1D CNN"}


def _point(points, dataset, family, size):
  for p in points:
    if (p["dataset"], p["family"], p["size"]) == (dataset, family, size):
      return p
  raise KeyError(f"benchmarks/sweep.json has no {family} {size} point on {dataset}")


def _value(point, metric):
  mean, std, _ = point[metric]
  if metric == "int8_tflm_accuracy":
    return f"{100 * mean:.2f} ± {100 * std:.2f} %"
  return f"{mean:.3f} ± {std:.3f}"


def _bytes(point):
  return f"{point['weights_dense_int8_bytes'][0]:.0f} B"


def table(points):
  """The Markdown table of ``ROWS`` from the sweep's aggregated points."""
  lines = ["| data set | metric | FastGRNN family | GRU at a similar size |",
           "|---|---|---|---|"]
  for dataset, what, metric, ours, theirs in ROWS:
    a, b = _point(points, dataset, *ours), _point(points, dataset, *theirs)
    lines.append(f"| {dataset} ({what}) | {_METRIC[metric]} | {_value(a, metric)} at "
                 f"{_bytes(a)} | {_FAMILY[theirs[0]]} {_value(b, metric)} at {_bytes(b)} |")
  return "\n".join(lines)


def readme_with(readme_text, table_text):
  """``readme_text`` with the part between the markers replaced by ``table_text``."""
  start, end = readme_text.find(BEGIN), readme_text.find(END)
  if start < 0 or end < start:
    raise ValueError(f"README.md lacks the markers {BEGIN!r} … {END!r}")
  return readme_text[:start + len(BEGIN)] + "\n" + table_text + "\n" + readme_text[end:]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  mode = parser.add_mutually_exclusive_group()
  mode.add_argument("--write", action="store_true", help="update README.md")
  mode.add_argument("--check", action="store_true", help="exit 1 if README.md differs")
  args = parser.parse_args(argv)
  text = table(json.loads(SWEEP_JSON.read_text()))
  if not (args.write or args.check):
    print(text)
    return 0
  old = README.read_text(encoding="utf-8")
  new = readme_with(old, text)
  if args.check:
    if new != old:
      print("README.md's results table differs from benchmarks/sweep.json: "
            "python -m benchmarks.readme_results --write", file=sys.stderr)
      return 1
    return 0
  if new != old:
    tmp = README.with_name(README.name + ".tmp")
    tmp.write_text(new, encoding="utf-8")
    tmp.replace(README)
  return 0


if __name__ == "__main__":
  sys.exit(main())
