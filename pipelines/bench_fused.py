r"""Builtin TFLM vs fused kernel vs standalone C: bit-exactness, bytes, flash, RAM, time.

  python -m pipelines.bench_fused --run_dir=runs/har6_fastgrnn [--windows=200]

On a train_and_export run folder (``model_int8.tflite``, ``flags.json``):

1. steps the run's test windows through the builtin model in the ``tflite_micro``
   runtime and through the fused C kernel (host build, ctypes), and counts every h and
   logits byte that differs (must be 0);
2. generates the standalone C model (``fused.write_standalone``) in a work folder and
   measures, where the tools are installed:
   - host: instructions per step of ``model_step`` under callgrind (``gcc -O2``);
   - Cortex-M4F: ``arm-none-eabi-gcc -Os -mcpu=cortex-m4 -mfloat-abi=hard``, linked
     with ``../shared/tools/cortex_m4`` (m4.ld, startup.c), flash (text + data) and
     static RAM (data + bss) of the model + kernel objects and of the whole ELF, the
     stack of ``model_step`` (``-fstack-usage``, summed over the call chain), and
     instructions per ``model_step`` call on ``qemu-system-arm -M mps2-an386``
     (``run_count.sh``, QEMU TCG plugin counting guest instructions inside the call);
   - ATmega328P: ``avr-gcc -Os -mmcu=atmega328p``, flash and RAM from ``avr-size``, and
     cycles per step on ``simavr`` (Timer1 at clk/1, overflow-extended, printed over
     the UART).

The builtin model's device figures need a TFLM tree and are quoted from issue 13
(measured with ``../shared/tools/cortex_m4``). Prints a Markdown table.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile

import numpy as np
from absl import app
from absl import flags

_RUN_DIR = flags.DEFINE_string("run_dir", None, "A train_and_export run folder.")
_WINDOWS = flags.DEFINE_integer("windows", 200, "Test windows for the bit-exact check.")
_STEPS = flags.DEFINE_integer("steps", 128, "Steps per measured run (one window).")
_STORAGE = flags.DEFINE_enum("storage", "auto", ["auto", "dense", "packed"],
                             "Weight storage of the standalone model (fused.extract).")
_WORK_DIR = flags.DEFINE_string("work_dir", None, "Where builds go (default: a temp dir).")

REPO = pathlib.Path(__file__).resolve().parents[1]
M4_TOOLS = REPO.parent / "shared" / "tools" / "cortex_m4"
M4_ARCH = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
# Issue 13's figures for the builtin model (default HAR run, TFLM reference kernels).
BUILTIN_QUOTED = {"host_insns": 124616, "m4_insns": 138388, "m4_flash": 74464,
                  "m4_ram": 24300}

_BENCH_MAIN = r"""
#include "model.h"
volatile int8_t sink;
static int8_t x[MODEL_INPUT_DIM];
int main(void) {
  int8_t h[MODEL_HIDDEN_DIM], logits[MODEL_NUM_CLASSES];
  int32_t t, i;
  model_reset(h);
  for (t = 0; t < STEPS; ++t) {
    for (i = 0; i < MODEL_INPUT_DIM; ++i) x[i] = (int8_t)(t * 7 + i * 13);
    if (model_step(x, h, logits) != 0) return 1;
  }
  sink = logits[0];
  return 0;
}
"""

_AVR_MAIN = r"""
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/sleep.h>
#include "model.h"
volatile int8_t sink;
static volatile uint16_t overflows;
ISR(TIMER1_OVF_vect) { ++overflows; }
static void put(char c) { while (!(UCSR0A & (1 << UDRE0))) {} UDR0 = c; }
static void put_u32(uint32_t v) {
  char buf[11]; int n = 0;
  do { buf[n++] = (char)('0' + v % 10); v /= 10; } while (v);
  while (n) put(buf[--n]);
}
static uint32_t now(void) {
  uint16_t lo, hi;
  cli(); lo = TCNT1; hi = overflows;
  if ((TIFR1 & (1 << TOV1)) && lo < 0x8000) ++hi;
  sei();
  return ((uint32_t)hi << 16) | lo;
}
int main(void) {
  int8_t x[MODEL_INPUT_DIM], h[MODEL_HIDDEN_DIM], logits[MODEL_NUM_CLASSES];
  int32_t t, i;
  uint32_t start, total;
  UCSR0B = (1 << TXEN0);
  TCCR1A = 0; TIMSK1 = (1 << TOIE1); TCCR1B = (1 << CS10);
  sei();
  model_reset(h);
  start = now();
  for (t = 0; t < STEPS; ++t) {
    for (i = 0; i < MODEL_INPUT_DIM; ++i) x[i] = (int8_t)(t * 7 + i * 13);
    model_step(x, h, logits);
  }
  total = now() - start;
  sink = logits[0];
  put_u32(total); put('\n');
  cli(); sleep_cpu();
  return 0;
}
"""


def _run(cmd, **kwargs):
  return subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs)


def _have(*tools):
  return all(shutil.which(t) for t in tools)


def bit_exact(tflite_bytes, windows, work):
  """Steps ``windows`` through TFLM and the fused kernel; counts differing bytes."""
  from tf_fastgrnn import fused, runtime  # pylint: disable=import-outside-toplevel
  library = fused.compile_kernel(str(work))
  want = runtime.TFLMStepRunner(tflite_bytes).run_windows(windows)
  got = fused.FusedStepRunner(tflite_bytes, library).run_windows(windows)
  return {"windows": len(windows), "steps": int(windows.shape[1]),
          "h_mismatches": int(np.sum(got["h_q"] != want["h_q"])),
          "logits_mismatches": int(np.sum(got["logits_q"] != want["logits_q"])),
          "classes_predicted": int(len(np.unique(want["logits_q"][:, -1].argmax(-1))))}


def host_callgrind(src, work, steps):
  if not _have("gcc", "valgrind"):
    return None
  exe = work / "bench_host"
  (work / "bench_main.c").write_text(_BENCH_MAIN)
  _run(["gcc", "-std=c99", "-O2", "-g", f"-DSTEPS={steps}", f"-I{src}", "-o", str(exe),
        str(src / "model.c"), str(src / "fastgrnn_int8.c"), str(work / "bench_main.c")])
  out = _run(["valgrind", "--tool=callgrind", "--collect-atstart=no",
              "--toggle-collect=model_step", f"--callgrind-out-file={work}/cg.out",
              str(exe)]).stderr
  total = int(re.search(r"Collected : (\d+)", out).group(1))
  return total / steps


def _size(tool, path):
  text, data, bss = (int(v) for v in _run([tool, str(path)]).stdout.splitlines()[1].split()[:3])
  return text, data, bss


def cortex_m4(src, work, steps):
  if not _have("arm-none-eabi-gcc"):
    return None
  flags_ = ["-std=c99", "-Os", *M4_ARCH, "-ffunction-sections", "-fdata-sections",
            "-fstack-usage", f"-DSTEPS={steps}", f"-I{src}"]
  objs = []
  for name in ("model.c", "fastgrnn_int8.c"):
    obj = work / f"m4_{name[:-2]}.o"
    _run(["arm-none-eabi-gcc", *flags_, "-c", str(src / name), "-o", str(obj)], cwd=work)
    objs.append(obj)
  text = data = bss = 0
  for obj in objs:
    t, d, b = _size("arm-none-eabi-size", obj)
    text, data, bss = text + t, data + d, bss + b
  stack = 0
  for su in work.glob("m4_*.su"):
    stack += sum(int(line.split("\t")[1]) for line in su.read_text().splitlines())
  result = {"flash": text + data, "ram": data + bss, "stack_bound": stack}
  (work / "bench_main.c").write_text(_BENCH_MAIN)
  if (M4_TOOLS / "m4.ld").is_file():
    elf = work / "bench_m4.elf"
    _run(["arm-none-eabi-gcc", *flags_, "-DSEMIHOSTING", "-T", str(M4_TOOLS / "m4.ld"),
          "-nostartfiles", "-Wl,--gc-sections", "--specs=nano.specs", "--specs=rdimon.specs",
          "-o", str(elf), str(M4_TOOLS / "startup.c"), str(work / "bench_main.c"),
          *(str(o) for o in objs)])
    t, d, b = _size("arm-none-eabi-size", elf)
    result.update(elf_flash=t + d, elf_ram=d + b)
    if _have("qemu-system-arm", "gcc", "arm-none-eabi-nm"):
      insns = _qemu_count(elf, work)
      if insns is not None and insns[0] == steps:
        result["insns"] = insns[1] / steps
  return result


def _qemu_count(elf, work):
  """(calls, instructions inside) of model_step on qemu mps2-an386 (Cortex-M4F), with
  the insn_window TCG plugin of ../shared/tools/cortex_m4 (built into ``work``)."""
  plugin = work / "libinsn_window.so"
  _run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(plugin), str(M4_TOOLS / "insn_window.c")])
  syms = {}
  for line in _run(["arm-none-eabi-nm", "-S", str(elf)]).stdout.splitlines():
    parts = line.split()
    if len(parts) == 4 and parts[2] in "TtWw":
      syms[parts[3]] = (int(parts[0], 16) & ~1, int(parts[1], 16))
  on, (lo, size) = syms["model_step"][0], syms["main"]
  out = work / "m4.insns"
  _run(["timeout", "600", "qemu-system-arm", "-M", "mps2-an386", "-cpu", "cortex-m4",
        "-nographic", "-monitor", "none", "-serial", "none", "-semihosting-config",
        "enable=on,target=native", "-kernel", str(elf), "-plugin",
        f"{plugin},on={on:#x},lo={lo:#x},hi={lo + size:#x},out={out}", "-d", "plugin"])
  for line in out.read_text().splitlines():
    if line.startswith("# windows"):
      f = line.split()
      return int(f[2]), int(f[4])
  return None


def avr(src, work, steps):
  if not _have("avr-gcc", "avr-size"):
    return None
  flags_ = ["-std=gnu99", "-Os", "-mmcu=atmega328p", "-ffunction-sections",
            "-fdata-sections", f"-DSTEPS={steps}", f"-I{src}"]
  objs = []
  for name in ("model.c", "fastgrnn_int8.c"):
    obj = work / f"avr_{name[:-2]}.o"
    _run(["avr-gcc", *flags_, "-c", str(src / name), "-o", str(obj)])
    objs.append(obj)
  text = data = bss = 0
  for obj in objs:
    t, d, b = _size("avr-size", obj)
    text, data, bss = text + t, data + d, bss + b
  result = {"flash": text + data, "ram": data + bss}
  (work / "avr_main.c").write_text(_AVR_MAIN)
  elf = work / "bench_avr.elf"
  _run(["avr-gcc", *flags_, "-Wl,--gc-sections", "-o", str(elf), str(work / "avr_main.c"),
        *(str(o) for o in objs)])
  t, d, b = _size("avr-size", elf)
  result.update(elf_flash=t + d, elf_ram=d + b)
  if _have("simavr"):
    out = subprocess.run(["timeout", "600", "simavr", "-m", "atmega328p", "-f", "16000000",
                          str(elf)], capture_output=True, text=True)
    match = re.search(r"(\d+)", re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr))
    if match:
      result["cycles"] = int(match.group(1)) / steps
  return result


def run(run_dir, windows=200, steps=128, work_dir=None, storage="auto"):
  """Measures everything; returns the result dict."""
  from tf_fastgrnn import fused  # pylint: disable=import-outside-toplevel
  run_dir = pathlib.Path(run_dir)
  tflite_path = run_dir / "model_int8.tflite"
  if not tflite_path.is_file():
    raise FileNotFoundError(f"{tflite_path} is missing: is {run_dir} a train_and_export run?")
  tflite_bytes = tflite_path.read_bytes()
  work = pathlib.Path(work_dir or tempfile.mkdtemp(prefix="bench_fused_"))
  work.mkdir(parents=True, exist_ok=True)
  src = work / "standalone_c"
  fused.write_standalone(tflite_bytes, str(src), storage=storage, overwrite=True)
  params = fused.extract(tflite_bytes, storage)
  result = {"tflite_bytes": len(tflite_bytes), "param_bytes": fused.param_bytes(params),
            "storage": {f"{k}{i}": ("packed" if fc["mask"] is not None else "dense")
                        for k in ("w", "u") for i, fc in enumerate(params[k])},
            "builtin_quoted": BUILTIN_QUOTED}
  if windows:
    import data  # pylint: disable=import-outside-toplevel
    cfg = json.loads((run_dir / "flags.json").read_text())
    ds = data.load_dataset(cfg["dataset"], cfg.get("data_dir"), seed=cfg.get("seed", 0))
    result["bit_exact"] = bit_exact(tflite_bytes, ds.x_test[:windows], work)
  result["host_insns"] = host_callgrind(src, work, steps)
  result["m4"] = cortex_m4(src, work, steps)
  result["avr"] = avr(src, work, steps)
  return result


def table(r):
  def f(v):
    return "n/a" if v is None else (f"{v:,.0f}" if isinstance(v, (int, float)) else str(v))
  m4, av, q = r["m4"] or {}, r["avr"] or {}, r["builtin_quoted"]
  rows = [
      "| | builtin TFLM (issue 13) | fused kernel / standalone C |",
      "|---|---|---|",
      f"| model bytes | {f(r['tflite_bytes'])} (.tflite) | {f(r['param_bytes'])} (const "
      "params: weights, masks, biases, multipliers, tables) |",
      f"| host instructions / step (callgrind, -O2) | {f(q['host_insns'])} | "
      f"{f(r['host_insns'])} |",
      f"| Cortex-M4F instructions / step (QEMU, -Os) | {f(q['m4_insns'])} | "
      f"{f(m4.get('insns'))} |",
      f"| Cortex-M4F flash, model + kernel (text + data) | (app {f(q['m4_flash'])}) | "
      f"{f(m4.get('flash'))} (whole bench ELF {f(m4.get('elf_flash'))}) |",
      f"| Cortex-M4F static RAM (data + bss) | (app {f(q['m4_ram'])}) | "
      f"{f(m4.get('ram'))} + stack <= {f(m4.get('stack_bound'))} (whole ELF "
      f"{f(m4.get('elf_ram'))}) |",
      f"| ATmega328P flash, model + kernel | - | {f(av.get('flash'))} (ELF "
      f"{f(av.get('elf_flash'))}) |",
      f"| ATmega328P static RAM | - | {f(av.get('ram'))} (ELF {f(av.get('elf_ram'))}) |",
      f"| ATmega328P cycles / step (simavr) | - | {f(av.get('cycles'))} |",
  ]
  if "bit_exact" in r:
    b = r["bit_exact"]
    rows.append(f"| bit-exact on {b['windows']} test windows x {b['steps']} steps | | h "
                f"mismatches {b['h_mismatches']}, logits mismatches "
                f"{b['logits_mismatches']} |")
  return "\n".join(rows)


def main(argv):
  del argv
  if not _RUN_DIR.value:
    raise app.UsageError("--run_dir is required")
  result = run(_RUN_DIR.value, _WINDOWS.value, _STEPS.value, _WORK_DIR.value,
               _STORAGE.value)
  print(json.dumps(result, indent=2, default=str))
  print(table(result))


if __name__ == "__main__":
  app.run(main)
