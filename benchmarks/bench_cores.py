r"""The fused int8 step on every core, beside the authors' EdgeML ``q15_fastgrnn_lr``.

  python -m benchmarks.bench_cores \
      --model=har2_paper:runs/har2_paper --model=g12_paper:runs/g12_paper \
      --model=default:runs/har6_fastgrnn --edgeml=$HOME/EdgeML [--kernel_dir=fused]

``--model=NAME:SOURCE``: NAME one of ``SHAPES`` (the paper's HAR-2 and Google-12 shapes,
Table 11, and this project's default model), SOURCE a ``train_and_export`` run folder
(its ``model_int8.tflite``; its ``standalone/`` C model when present) or ``random`` (a
random-weight model of the shape, its W/U zeroed at the shape's sparsity, converted to
int8 here). Per model and core (``benchmarks/cores/harness.py``; ``-Os``):

- the standalone C model's ``model_step`` (one step + classifier): instructions per call
  on QEMU (cycles on the ATmega328P, simavr), flash, static RAM and the stack the calls
  used, for the default build, the cell alone (``logits = NULL``) and the size build
  (``-DFASTGRNN_INT8_SMALL``);
- with ``--edgeml``: EdgeML's ``q15_fastgrnn_lr`` (one call per step, ``-DSHIFT``) on
  random Q15 parameters of the same shape (low-rank W and U only), the same cores and
  flags; on AVR on the ATmega1284P (the same AVR core with 16 KB SRAM) when its Q15
  weights, which avr-gcc keeps in RAM, do not fit the 328P's 2 KB;
- the fused op's arena (the options decoded in ``Prepare``, the kernel's scratch and the
  params struct, on a 32-bit target) beside the builtin graph's (``tflite_micro``'s
  smallest working arena, host).

Prints Markdown (the tables and the issue's targets, met or missed) and writes JSON
(``--json``). Figures quoted from the paper are labelled as such; everything else is
measured in the run, or printed as "not measured". Builds go to a new folder under
``--work_dir``.
"""

import ctypes
import datetime
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from absl import app
from absl import flags

from benchmarks.cores import edgeml
from benchmarks.cores import harness

REPO = pathlib.Path(__file__).resolve().parents[1]

_MODELS = flags.DEFINE_multi_string(
    "model", None, "NAME:SOURCE, NAME in SHAPES (har2_paper, g12_paper, default), SOURCE a "
    "train_and_export run folder or 'random'.")
_EDGEML = flags.DEFINE_string("edgeml", None, "An EdgeML checkout (its c_reference is "
                              "compiled for the side-by-side rows; nothing is copied).")
_KERNEL_DIR = flags.DEFINE_string(
    "kernel_dir", None, "A folder with fastgrnn_int8.c/.h to build instead of the model's "
    "own copy (default: the run's standalone/, or this repo's fused/ for a generated one).")
_GENERATOR_REPO = flags.DEFINE_string(
    "generator_repo", None, "Write the standalone C model with this checkout's "
    "tf_fastgrnn.fused (a subprocess with it on PYTHONPATH), e.g. a branch whose params "
    "struct differs; default: this repo's, or the run's standalone/.")
_CORES = flags.DEFINE_list("cores", list(harness.CORES)[:-1], "Cores (harness.CORES).")
_STEPS = flags.DEFINE_integer("steps", 16, "Step calls per measurement.")
_WORK_DIR = flags.DEFINE_string("work_dir", None, "Builds go to a new folder inside it.")
_JSON = flags.DEFINE_string("json", None, "Also write the results here.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random models.")
_VERIFY = flags.DEFINE_integer(
    "verify_windows", 2, "Also step this many random windows of 8 steps through the "
    "default build on every core and count the h/logits bytes that differ from the "
    "tflite_micro runtime's (0: skip).")
_TABLES_FROM = flags.DEFINE_list(
    "tables_from", None, "Print the tables of earlier --json files (their models merged, "
    "the first file's header) instead of measuring.")

SHAPES = {
    # Table 11 of the FastGRNN paper. HAR-2: 9 inputs (the imu_gravity front end).
    "har2_paper": {"units": 80, "input_dim": 9, "classes": 2, "w_rank": 5, "u_rank": 40,
                   "sparsity_w": 0.8, "sparsity_u": 0.7, "steps": 128},
    # Google-12's shape; FSDD (10 classes, 32 log-mel inputs) is its stand-in.
    "g12_paper": {"units": 100, "input_dim": 32, "classes": 10, "w_rank": 16,
                  "u_rank": 25, "sparsity_w": 0.7, "sparsity_u": 0.7, "steps": 98},
    # train_and_export's defaults (har6, imu_gravity).
    "default": {"units": 48, "input_dim": 9, "classes": 6, "w_rank": None, "u_rank": 16,
                "sparsity_w": 0.5, "sparsity_u": 0.5, "steps": 128},
}
# The paper's per-step figures (cycles), quoted, not measured here.
PAPER = {"har2_paper": {"Arduino Due (Cortex-M3)": 40_700, "MKR1000 (Cortex-M0+)": 60_800},
         "g12_paper": {"Arduino Due (Cortex-M3)": 205_000, "MKR1000 (Cortex-M0+)": 260_000}}
# The targets: (model, core, bound on the default build's count per step).
STEP_TARGETS = [("har2_paper", "m3", 20_000), ("har2_paper", "m0", 45_000),
                ("har2_paper", "m4f", 15_000), ("har2_paper", "atmega328p", 400_000),
                ("g12_paper", "m3", 30_000), ("g12_paper", "m0", 60_000),
                ("g12_paper", "m4f", 20_000), ("default", "m4f", 10_000)]
FLASH_TARGETS = [("har2_paper", "m3", 8 * 1024)]
AVR_FALLBACK = "atmega1284p"


def _log(msg):
  print(f"[bench_cores] {msg}", file=sys.stderr, flush=True)


def random_model(shape, seed):
  """A random-weight classifier of ``shape`` (W/U factors zeroed at its sparsity, at
  random) and its int8 step model, calibrated on random windows."""
  from tf_fastgrnn import export, models  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  s = SHAPES[shape]
  model = models.sequence_classifier("fastgrnn", s["units"], (8, s["input_dim"]),
                                     s["classes"], w_rank=s["w_rank"], u_rank=s["u_rank"])
  cell = model.layers[1].cell
  w_vars = {id(v) for v in cell.w_factors}
  u_vars = {id(v) for v in cell.u_factors}
  for var in model.weights:
    value = rng.normal(0, 0.4, var.shape)
    sparsity = (s["sparsity_w"] if id(var) in w_vars else
                s["sparsity_u"] if id(var) in u_vars else 0.0)
    if sparsity:
      flat = value.reshape(-1)
      flat[rng.permutation(flat.size)[:int(round(sparsity * flat.size))]] = 0.0
    var.assign(value)
  x = rng.normal(0, 1, (16, 8, s["input_dim"])).astype(np.float32)
  return export.convert_step_model(model, x)


def prepare(name, source, work, kernel_dir=None, generator_repo=None, seed=0):
  """The model's int8 bytes and a folder with its standalone C (``model.c``,
  ``model.h``, the kernel): ``(tflite_bytes, folder, origin)``."""
  from tf_fastgrnn import fused  # pylint: disable=import-outside-toplevel
  folder = work / name / "standalone"
  if source == "random":
    tflite = random_model(name, seed)
    origin = f"random weights of the shape (seed {seed})"
    run_standalone = None
  else:
    run_dir = pathlib.Path(source)
    tflite = (run_dir / "model_int8.tflite").read_bytes()
    origin = f"run {run_dir}"
    run_standalone = run_dir / "standalone"
  (work / name).mkdir(parents=True, exist_ok=True)
  (work / name / "model_int8.tflite").write_bytes(tflite)
  if generator_repo:
    subprocess.run([sys.executable, "-c",
                    "import sys; from tf_fastgrnn import fused; fused.write_standalone("
                    "open(sys.argv[1], 'rb').read(), sys.argv[2], overwrite=True)",
                    str(work / name / "model_int8.tflite"), str(folder)],
                   check=True, env=_env(generator_repo), cwd=generator_repo,
                   capture_output=True)
    origin += f"; C written by {generator_repo}'s generator"
  elif run_standalone is not None and (run_standalone / "model.c").is_file():
    shutil.copytree(run_standalone, folder)
    origin += "; its standalone/"
  else:
    fused.write_standalone(tflite, str(folder), overwrite=True)
  if kernel_dir:
    for f in ("fastgrnn_int8.c", "fastgrnn_int8.h"):
      shutil.copy(pathlib.Path(kernel_dir) / f, folder / f)
    origin += f"; kernel from {kernel_dir}"
  return tflite, folder, origin


def _env(generator_repo):
  """The environment of a subprocess whose ``tf_fastgrnn`` is ``generator_repo``'s (run
  it there: ``python -c`` puts its working folder first on the path)."""
  import os  # pylint: disable=import-outside-toplevel
  env = dict(os.environ)
  env["PYTHONPATH"] = f"{generator_repo}{os.pathsep}{REPO}"
  return env


def arena_with(tflite_path, work, generator_repo=None):
  """``arena`` here, or in a subprocess with ``generator_repo``'s ``tf_fastgrnn`` (its
  ``convert_fused`` and options parser)."""
  if not generator_repo:
    return arena(pathlib.Path(tflite_path).read_bytes(), work)
  out = subprocess.run(
      [sys.executable, "-c", "import json, pathlib, sys; from benchmarks import "
       "bench_cores; print(json.dumps(bench_cores.arena(open(sys.argv[1], 'rb').read(), "
       "pathlib.Path(sys.argv[2]))))", str(tflite_path), str(work)],
      check=True, env=_env(generator_repo), cwd=generator_repo, capture_output=True,
      text=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def arena(tflite, work):
  """The fused op's arena beside the builtin graph's."""
  from tf_fastgrnn import fused, runtime  # pylint: disable=import-outside-toplevel
  out = {"builtin_graph": runtime.measure_arena(tflite)}
  fused_bytes = fused.convert_fused(tflite)
  library = fused.compile_kernel(str(work))
  code, params, keep = fused.parse_options(library, fused.custom_options(fused_bytes))
  if code != 0:
    raise RuntimeError(f"fastgrnn_int8_parse_options returned {code}")
  lib = ctypes.CDLL(library)
  lib.fastgrnn_int8_scratch_bytes.restype = ctypes.c_int32
  lib.fastgrnn_int8_options_ram_bytes.restype = ctypes.c_int32
  out["decoded_options"] = 0 if keep[1] is None else int(
      lib.fastgrnn_int8_options_ram_bytes(
          keep[0].ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)),
          ctypes.c_uint32(len(keep[0]))))
  out["scratch"] = int(lib.fastgrnn_int8_scratch_bytes(ctypes.byref(params)))
  out["fused_tflite_bytes"] = len(fused_bytes)
  out["builtin_tflite_bytes"] = len(tflite)
  return out


def params_struct_bytes(folder, work):
  """sizeof(fastgrnn_int8_params) on a 32-bit Cortex-M (arm-none-eabi-gcc), or None."""
  if not shutil.which("arm-none-eabi-gcc"):
    return None
  probe = work / "params_probe.c"
  probe.write_text('#include "fastgrnn_int8.h"\nfastgrnn_int8_params probe_params;\n')
  obj = work / "params_probe.o"
  subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-c", "-fno-common",
                  f"-I{folder}", str(probe), "-o", str(obj)], check=True)
  for line in subprocess.run(["arm-none-eabi-nm", "-S", str(obj)], capture_output=True,
                             text=True, check=True).stdout.splitlines():
    p = line.split()
    if p[-1] == "probe_params":
      return int(p[1], 16)
  return None


def shape_of(tflite):
  from tf_fastgrnn import fused  # pylint: disable=import-outside-toplevel
  p = fused.extract(tflite, "dense")
  rank = lambda fcs: fcs[0]["rows"] if len(fcs) == 2 else None  # noqa: E731
  return {"units": p["hidden_dim"], "input_dim": p["input_dim"],
          "classes": p["num_classes"], "w_rank": rank(p["w"]), "u_rank": rank(p["u"])}


def _try(fn, *args, **kwargs):
  try:
    return fn(*args, **kwargs)
  except (harness.HarnessError, subprocess.TimeoutExpired) as e:
    _log(f"failed: {str(e)[:600]}")
    text = str(e)
    if "not within region" in text or "do not fit" in text or "leave no stack" in text:
      return {"error": "does not fit the SRAM"}
    return {"error": text.splitlines()[0][:200]}


def _verify(core, out, folder, want):
  h, logits = harness.verify(core, out, folder, want["x_q"])
  return {"differing": int(np.sum(h != want["h_q"]) + np.sum(logits != want["logits_q"])),
          "compared": int(want["h_q"].size + want["logits_q"].size)}


def bench_model(name, source, cores, work, steps, edgeml_dir=None, kernel_dir=None,
                generator_repo=None, seed=0, verify_windows=0):
  tflite, folder, origin = prepare(name, source, work, kernel_dir, generator_repo, seed)
  shape = shape_of(tflite)
  _log(f"{name}: {origin}; {shape}")
  result = {"source": origin, "shape": shape, "cores": {}}
  result["arena"] = arena_with(work / name / "model_int8.tflite", work / name,
                              generator_repo)
  result["arena"]["params_struct_m4"] = params_struct_bytes(folder, work / name)
  want = None
  if verify_windows:
    from tf_fastgrnn import runtime  # pylint: disable=import-outside-toplevel
    x = np.random.default_rng(seed).normal(
        0, 1, (verify_windows, 8, shape["input_dim"])).astype(np.float32)
    want = runtime.TFLMStepRunner(tflite).run_windows(x)
  srcs = [folder / "model.c", folder / "fastgrnn_int8.c"]
  main = harness.HERE / "step_main.c"
  eml = None
  if edgeml_dir and shape["w_rank"] and shape["u_rank"]:
    files, include = edgeml.sources(edgeml_dir)
    header = edgeml.write_model(work / name / "edgeml", shape["units"], shape["input_dim"],
                                shape["w_rank"], shape["u_rank"], seed)
    eml = (files, [header.parent, include])
  for core in cores:
    reason = harness.missing(core)
    if reason:
      result["cores"][core] = {"missing": reason}
      _log(f"{name} {core}: skipped, needs {reason}")
      continue
    out = work / name / core
    row = {}
    for key, defines in (("fused", []), ("fused_cell", ["-DNO_LOGITS"]),
                         ("fused_small", ["-DFASTGRNN_INT8_SMALL"])):
      row[key] = _try(harness.measure, core, out, key, main, "model_step", srcs, [folder],
                      defines, steps)
    if want is not None:
      row["verify"] = _try(_verify, core, out / "verify", folder, want)
    if eml:
      row["edgeml"] = _try(harness.measure, core, out, "edgeml",
                           harness.HERE / "edgeml_main.c", "q15_fastgrnn_lr", eml[0],
                           eml[1], list(edgeml.DEFINES), steps)
      if ("error" in row["edgeml"] and harness.CORES[core].family == "avr"
          and not harness.missing(AVR_FALLBACK)):
        row["edgeml"]["fallback"] = _try(
            harness.measure, AVR_FALLBACK, work / name / AVR_FALLBACK, "edgeml",
            harness.HERE / "edgeml_main.c", "q15_fastgrnn_lr", eml[0], eml[1],
            list(edgeml.DEFINES), steps)
    result["cores"][core] = row
    _log(f"{name} {core}: " + ", ".join(
        f"{k} {v.get('per_step', v.get('differing', v.get('error')))}"
        for k, v in row.items()))
  return result


def _edgeml_figures(row):
  e = row.get("edgeml") or {}
  if "per_step" in e:
    return e, ""
  fb = e.get("fallback") or {}
  if "per_step" in fb:
    return fb, f" ({AVR_FALLBACK}: the 328P's 2 KB SRAM cannot hold its Q15 weights)"
  if e.get("error") == "does not fit the SRAM":
    return None, (" (its Q15 weights, in SRAM with avr-gcc, fit neither the 328P's 2 KB "
                  f"nor the {AVR_FALLBACK}'s 16 KB)" if fb else " (does not fit the SRAM)")
  return None, ""


def _verified(v):
  if not v or "differing" not in v:
    return "not measured"
  return f"{v['differing']:,} of {v['compared']:,}"


def _n(v):
  return "not measured" if v is None else f"{v:,.0f}"


def _ram(r):
  if not r or "ram" not in r:
    return "not measured"
  stack = (f"> {r['stack_over']:,}" if "stack_over" in r else _n(r.get("stack")))
  return f"{r['ram']:,} + {stack}"


def table(results):
  lines = []
  for name, res in results["models"].items():
    s = res["shape"]
    lines += ["", f"### {name}: H {s['units']}, D {s['input_dim']}, C {s['classes']}, "
              f"W rank {s['w_rank'] or 'full'}, U rank {s['u_rank'] or 'full'}", "",
              f"Source: {res['source']}.", "",
              "| core | unit | fused step (+ classifier) | fused cell only | size build "
              "| flash: default / size build (B) | static RAM + stack: default / size (B) "
              "| EdgeML q15_fastgrnn_lr (cell) | EdgeML flash | EdgeML RAM + stack "
              "| EdgeML ÷ fused cell | default build vs TFLM: bytes differing |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for core, row in res["cores"].items():
      title = harness.CORES[core].title
      if "missing" in row:
        lines.append(f"| {title} | | not measured (needs {row['missing']}) "
                     "| | | | | | | | | |")
        continue
      f, c, sm = (row.get(k) or {} for k in ("fused", "fused_cell", "fused_small"))
      e, note = _edgeml_figures(row)
      ratio = (f"{e['per_step'] / c['per_step']:.1f}×" if e and c.get("per_step")
               and e["unit"] == c["unit"] else "not measured")
      lines.append(
          f"| {title} | {f.get('unit', '')} | {_n(f.get('per_step'))} | "
          f"{_n(c.get('per_step'))} | {_n(sm.get('per_step'))} | "
          f"{_n(f.get('flash'))} / {_n(sm.get('flash'))} | {_ram(f)} / {_ram(sm)} | "
          f"{_n(e and e['per_step'])}{note} | {_n(e and e['flash'])} | {_ram(e)} | "
          f"{ratio} | {_verified(row.get('verify'))} |")
    if name in PAPER:
      lines += ["", "The paper's per-step figures (quoted, cycles on the boards, not "
                "measured here): " + "; ".join(f"{k} ~{v:,}" for k, v in PAPER[name].items())
                + "."]
    a = res["arena"]
    op = (a["decoded_options"] + a["scratch"] + a["params_struct_m4"]
          if a.get("params_struct_m4") is not None else None)
    lines += ["", f"Arena: builtin graph {_n(a['builtin_graph'])} B (tflite_micro, host, "
              f"whole graph); fused op {_n(op)} B (options decoded in Prepare "
              f"{a['decoded_options']:,} + scratch {a['scratch']:,} + params struct "
              f"{_n(a.get('params_struct_m4'))} on a Cortex-M); .tflite builtin "
              f"{a['builtin_tflite_bytes']:,} B, fused {a['fused_tflite_bytes']:,} B."]
  lines += ["", "### Targets", "", "| target | measured | verdict |", "|---|---|---|"]
  lines += [f"| {t} | {m} | {v} |" for t, m, v in targets(results)]
  return "\n".join(lines)


def targets(results):
  """``(target, measured, "met"/"missed"/"not measured")`` for STEP_TARGETS and FLASH_TARGETS."""
  rows, models = [], results["models"]

  def get(model, core, key="fused"):
    return ((models.get(model) or {}).get("cores", {}).get(core) or {}).get(key) or {}
  for model, core, bound in STEP_TARGETS:
    r = get(model, core)
    v = r.get("per_step")
    unit = "cycles" if harness.CORES[core].family == "avr" else "instructions"
    rows.append((f"{model} {core} ≤ {bound:,} {unit}/step", _n(v),
                 "not measured" if v is None else ("met" if v <= bound else "missed")))
  for model, core, bound in FLASH_TARGETS:
    sizes = {k: get(model, core, k).get("flash") for k in ("fused", "fused_small")}
    best = min((v, k) for k, v in sizes.items() if v is not None) if any(
        v is not None for v in sizes.values()) else None
    rows.append((f"{model} standalone flash ≤ {bound:,} B on {core}",
                 "not measured" if best is None else f"{best[0]:,} ({best[1]})",
                 "not measured" if best is None else ("met" if best[0] <= bound else
                                                      "missed")))
  for model in models:
    ratios, missing = [], []
    for core, row in models[model]["cores"].items():
      e, _ = _edgeml_figures(row)
      f = (row.get("fused") or {}).get("per_step")
      if e is None or f is None or "edgeml" not in row:
        missing.append(core)
        continue
      ratios.append((e["per_step"] / f, core))
    if not ratios:
      continue
    worst = min(ratios)
    rows.append((f"{model}: ≥ 2× fewer than EdgeML Q15 on every core (fused step + "
                 "classifier vs EdgeML's cell)",
                 f"worst {worst[0]:.1f}× ({worst[1]})" + (
                     f"; not measured on {', '.join(missing)}" if missing else ""),
                 "met" if worst[0] >= 2 and not missing else
                 ("missed" if worst[0] < 2 else "not measured on every core")))
  for model, res in models.items():
    a = res["arena"]
    if a.get("params_struct_m4") is None:
      continue
    op = a["decoded_options"] + a["scratch"] + a["params_struct_m4"]
    rows.append((f"{model}: fused op arena ≤ builtin graph's",
                 f"{op:,} vs {a['builtin_graph']:,}",
                 "met" if op <= a["builtin_graph"] else "missed"))
  return rows


def run(models, cores, steps=16, work_dir=None, edgeml_dir=None, kernel_dir=None,
        generator_repo=None, seed=0, verify_windows=0):
  if work_dir:
    pathlib.Path(work_dir).mkdir(parents=True, exist_ok=True)
  work = pathlib.Path(tempfile.mkdtemp(prefix="bench_cores_", dir=work_dir))
  _log(f"builds in {work}")
  results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds"), "steps": steps, "versions": harness.versions(cores),
             "kernel_dir": str(kernel_dir) if kernel_dir else None,
             "edgeml": str(edgeml_dir) if edgeml_dir else None, "models": {}}
  for name, source in models:
    results["models"][name] = bench_model(name, source, cores, work, steps, edgeml_dir,
                                          kernel_dir, generator_repo, seed, verify_windows)
  return results


def _print(results):
  print(f"Measured {results['date']}; {results['steps']} step calls per figure; "
        + "; ".join(f"{k}: {v}" for k, v in results["versions"].items()))
  print(table(results))


def main(argv):
  del argv
  if _TABLES_FROM.value:
    merged = None
    for path in _TABLES_FROM.value:
      r = json.loads(pathlib.Path(path).read_text())
      if merged is None:
        merged = r
      else:
        merged["models"].update(r["models"])
        merged["date"] += f", {r['date']}"
    _print(merged)
    return
  models = []
  for spec in _MODELS.value or []:
    name, _, source = spec.partition(":")
    if name not in SHAPES or not source:
      raise app.UsageError(f"--model must be NAME:SOURCE with NAME in {sorted(SHAPES)}, "
                           f"got {spec!r}")
    if source != "random" and not (pathlib.Path(source) / "model_int8.tflite").is_file():
      raise app.UsageError(f"--model {spec}: {source} has no model_int8.tflite")
    models.append((name, source))
  if not models:
    raise app.UsageError("give at least one --model=NAME:SOURCE")
  unknown = [c for c in _CORES.value if c not in harness.CORES]
  if unknown:
    raise app.UsageError(f"unknown cores {unknown}; known: {sorted(harness.CORES)}")
  if _EDGEML.value:
    edgeml.sources(_EDGEML.value)  # refuse a wrong folder before building anything
  results = run(models, _CORES.value, _STEPS.value, _WORK_DIR.value, _EDGEML.value,
                _KERNEL_DIR.value, _GENERATOR_REPO.value, _SEED.value, _VERIFY.value)
  if _JSON.value:
    pathlib.Path(_JSON.value).write_text(json.dumps(results, indent=2, default=str))
  _print(results)


if __name__ == "__main__":
  app.run(main)
