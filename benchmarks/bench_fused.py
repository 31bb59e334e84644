r"""Builtin TFLM vs fused kernel vs standalone C: bit-exactness, bytes, flash, RAM, time.

  python -m benchmarks.bench_fused --run_dir=runs/har6_fastgrnn [--windows=200]

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
     (``run_count.sh``, QEMU TCG plugin counting guest instructions inside the call),
     and those instructions by part of the step (FC dot products, requantisation, the
     elementwise passes: each address's inline chain through ``addr2line -i``);
   - ATmega328P: ``avr-gcc -Os -mmcu=atmega328p``, flash and RAM from ``avr-size``, and
     cycles per step on ``simavr`` (Timer1 at clk/1, overflow-extended, printed over
     the UART).

3. writes ``model_int8_fused.tflite`` (``fused.convert_fused``: one FASTGRNN_INT8 custom
   op, the pipeline's form: the zero-copy fast form) and counts its bytes, where they
   go (``fused.options_sizes``) and the arena bytes the op's Prepare decodes them into;
   its custom options go through the C parser and kernel on the same windows (must
   differ in 0 bytes too);
4. with ``--tflm_root`` (and the include flags of ``tflm_app/README.md``): builds
   ``tflm_app``'s host test for both models (``make test`` and ``make test FUSED=1``,
   each bit-exact on the run's test vectors) and counts the host instructions per
   ``MicroInterpreter::Invoke`` under callgrind for each; with ``--m4_tflm_lib`` (a
   Cortex-M4F ``libtflm.a`` built with ``../shared/tools/cortex_m4``'s flags) and
   ``--m4_deps`` also cross-builds that host test for both models with the same tools,
   runs it on QEMU (bit-exact verdict, arena used) and counts the instructions per
   ``Invoke`` (``run_count.sh``).

The builtin model's figures need a TFLM tree (``--tflm_root``; on the Cortex-M4F also
``--m4_tflm_lib`` and ``--m4_deps``); without one its column says "not measured": every
figure printed is measured in this run. Prints a Markdown table.
"""

import bisect
import dataclasses
import json
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
_WORK_DIR = flags.DEFINE_string("work_dir", None, "Builds go to a new folder of this run "
                                "inside it (default: in the system temp dir).")
_TFLM_ROOT = flags.DEFINE_string("tflm_root", None, "A tflite-micro tree: also build and "
                                 "time tflm_app's host test for the builtin and fused models.")
_TFLM_BUILD = flags.DEFINE_string("tflm_build", None, "tflm_app BUILD folder to reuse (its "
                                  "libtflm.a takes long to build); default: in --work_dir.")
_FLATBUFFERS = flags.DEFINE_string("flatbuffers_include", None, "flatbuffers 25.9.23 include/")
_GEMMLOWP = flags.DEFINE_string("gemmlowp_include", "/usr/include/gemmlowp", "gemmlowp headers")
_RUY = flags.DEFINE_string("ruy_include", None, "a google/ruy checkout")
_M4_LIB = flags.DEFINE_string("m4_tflm_lib", None, "A Cortex-M4F libtflm.a built with "
                              "../shared/tools/cortex_m4 (-Os, reference kernels).")
_M4_DEPS = flags.DEFINE_string("m4_deps", None, "DEPS of ../shared/tools/cortex_m4 (holds "
                               "flatbuffers-25.9.23/ and ruy/).")

REPO = pathlib.Path(__file__).resolve().parents[1]
M4_TOOLS = REPO.parent / "shared" / "tools" / "cortex_m4"
M4_ARCH = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]

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


def bit_exact(tflite_bytes, windows, work, fused_bytes=None, readout="last"):
  """Steps ``windows`` through TFLM and the fused kernel (and the fused .tflite's
  options through the C parser); counts differing bytes. ``readout``: the run's
  (``flags.json``), for the classes its windows predict."""
  from tf_fastgrnn import fused, runtime  # pylint: disable=import-outside-toplevel
  library = fused.compile_kernel(str(work))
  tflm = runtime.TFLMStepRunner(tflite_bytes)
  want = tflm.run_windows(windows)
  got = fused.FusedStepRunner(tflite_bytes, library).run_windows(windows)
  result = {"windows": len(windows), "steps": int(windows.shape[1]),
            "h_mismatches": int(np.sum(got["h_q"] != want["h_q"])),
            "logits_mismatches": int(np.sum(got["logits_q"] != want["logits_q"])),
            "classes_predicted": int(len(np.unique(tflm.window_classes(
                want["logits_q"], readout))))}
  if fused_bytes is not None:
    op = fused.FusedOpRunner(fused_bytes, library).run_windows(windows)
    result["fused_tflite_mismatches"] = int(np.sum(op["h_q"] != want["h_q"]) +
                                            np.sum(op["logits_q"] != want["logits_q"]))
  return result


def tflm_app_invoke(run_dir, fused_bytes, work, tflm_root, tflm_build, includes):
  """``make test`` of tflm_app for the builtin and the fused model on the run's device
  files (the fused model data written beside a copy of them); per model: the host
  test's verdict and callgrind's instructions per ``MicroInterpreter::Invoke``."""
  from tf_fastgrnn import device_files  # pylint: disable=import-outside-toplevel
  device = work / "device"
  shutil.copytree(run_dir / "device", device)
  (device / "model_data_fused.cc").write_text(
      device_files.model_data_source(fused_bytes, "model_int8_fused.tflite"))
  settings = (device / "model_settings.h").read_text()
  steps = int(re.search(r"kStepsPerWindow = (\d+)", settings).group(1))
  build = pathlib.Path(tflm_build or work / "tflm_build")
  make = ["make", "-C", str(REPO / "tflm_app"), f"BUILD={build}", f"MODEL_DIR={device}",
          f"TFLM_ROOT={tflm_root}", *(f"{k}={v}" for k, v in includes.items() if v)]
  result = {"device": device}
  for name, extra, exe in (("builtin", [], "host_test"), ("fused", ["FUSED=1"],
                                                          "host_test_fused")):
    (build / exe).unlink(missing_ok=True)  # another model's binary must not be reused
    out = subprocess.run([*make, *extra, "test"], capture_output=True, text=True)
    verdict = re.search(r"(\d+) passed, (\d+) failed", out.stdout)
    entry = {"passed": int(verdict.group(1)) if verdict else None,
             "failed": int(verdict.group(2)) if verdict else None,
             "log": out.stdout.strip().splitlines()[-6:] if out.returncode else None}
    windows = len(re.findall(r"^window \d+", out.stdout, re.MULTILINE))
    if out.returncode == 0 and _have("valgrind") and windows:
      cg = _run(["valgrind", "--tool=callgrind", "--collect-atstart=no",
                 "--toggle-collect=tflite::MicroInterpreter::Invoke()",
                 f"--callgrind-out-file={work}/cg_{name}.out", str(build / exe)]).stderr
      entry["host_insns_per_invoke"] = int(
          re.search(r"Collected : (\d+)", cg).group(1)) / (windows * steps)
    result[name] = entry
  return result


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


def cortex_m4(src, work, steps, defines=()):
  if not _have("arm-none-eabi-gcc"):
    return None
  work.mkdir(parents=True, exist_ok=True)
  flags_ = ["-std=c99", "-Os", "-g", *M4_ARCH, *defines, "-ffunction-sections",
            "-fdata-sections", "-fstack-usage", f"-DSTEPS={steps}", f"-I{src}"]
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
        if _have("arm-none-eabi-addr2line", "arm-none-eabi-objdump"):
          result["breakdown"] = _m4_breakdown(elf, work / "m4.insns", steps)
  return result


# Kernel source functions -> the part of the step they compute (for the M4 breakdown).
_PARTS = {
    "dot4": "FC: dot products", "dot2": "FC: dot products", "dot": "FC: dot products",
    "dot_packed": "FC: dot products",
    "fc_out_full": "FC: requantisation", "fc8_dense_full": "FC: row loops",
    "fc8": "FC: row loops",
    "add_vec_fast": "pre = ADD(xW, hU)", "add_vec": "pre = ADD(xW, hU)",
    "term_loop": "gate/update ADD(pre, bias) + table",
    "bias_loop": "gate/update ADD(pre, bias) + table",
    "bias_vec_fast": "gate/update ADD(pre, bias) + table",
    "bias_vec": "gate/update ADD(pre, bias) + table",
    "grnn_loop": "h_t: MULs + ADD", "grnn_out_fast": "h_t: MULs + ADD",
    "grnn_out": "h_t: MULs + ADD", "rnn_loop": "h_t: MULs + ADD",
    "rnn_out_fast": "h_t: MULs + ADD", "rnn_out": "h_t: MULs + ADD",
    "fast_add": "per-step setup", "fast_in": "per-step setup", "fast_out": "per-step setup",
    "check": "checks", "fc_ok": "checks",
}
# Out of line in the size build, where their callers are not known statically.
_HELPERS = ("add8", "mul8", "mbqm", "srdhm", "rdbp", "clamp8")


def _m4_breakdown(elf, counts, steps):
  """Instructions per step by part of the step: each executed instruction's inline chain
  (``addr2line -i``, the ELF built with -g) is charged to the innermost kernel function
  named in ``_PARTS``; out-of-line helpers to their own line; the rest (call, step entry)
  to "other"."""
  dis = _run(["arm-none-eabi-objdump", "-d", str(elf)]).stdout
  addrs = sorted(int(m, 16) for m in re.findall(r"^\s+([0-9a-f]+):\s", dis, re.M))
  executed = {}
  for line in counts.read_text().splitlines():
    if line.startswith("#"):
      continue
    vaddr, n, execs_in, _ = (int(v, 16) if i == 0 else int(v)
                             for i, v in enumerate(line.split()))
    if execs_in:
      first = bisect.bisect_left(addrs, vaddr)
      for a in addrs[first:first + n]:
        executed[a] = executed.get(a, 0) + execs_in
  out = _run(["arm-none-eabi-addr2line", "-a", "-i", "-f", "-e", str(elf),
              *(hex(a) for a in sorted(executed))]).stdout.splitlines()
  parts, addr, k = {}, None, 0
  while k < len(out):
    if out[k].startswith("0x"):
      addr, k = int(out[k], 16), k + 1
      chain = []
      while k < len(out) and not out[k].startswith("0x"):
        chain.append(out[k])
        k += 2
      part = next((_PARTS[f] for f in chain if f in _PARTS), None)
      if part is None:
        part = ("rescaling helpers (out of line)" if chain and chain[-1] in _HELPERS
                else "other")
      parts[part] = parts.get(part, 0) + executed[addr] / steps
    else:
      k += 1
  return dict(sorted(parts.items(), key=lambda kv: -kv[1]))


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


VERIFY_MAIN = r"""
#include <stdio.h>
#include "model.h"
#include "windows.h"
int main(void) {
  int8_t h[MODEL_HIDDEN_DIM], logits[MODEL_NUM_CLASSES];
  int32_t n, t, i;
  for (n = 0; n < N_WINDOWS; ++n) {
    model_reset(h);
    for (t = 0; t < N_STEPS; ++t) {
      if (model_step(windows[n][t], h, logits) != 0) return 1;
      for (i = 0; i < MODEL_HIDDEN_DIM; ++i) printf("%d ", h[i]);
      for (i = 0; i < MODEL_NUM_CLASSES; ++i) printf("%d ", logits[i]);
      printf("\n");
    }
  }
  return 0;
}
"""


def m4_bit_exact(src, work, traces):
  """Runs the standalone model built for the Cortex-M4F (SMLAD path) on QEMU over the
  run's TFLM test-vector windows; returns (differing bytes, bytes compared)."""
  if not _have("arm-none-eabi-gcc", "qemu-system-arm") or not (M4_TOOLS / "m4.ld").is_file():
    return None
  x_q, want = traces["x_q"], np.concatenate([traces["h_q"], traces["logits_q"]], -1)
  n, t, d = x_q.shape
  body = ",".join("{" + ",".join("{" + ",".join(str(int(v)) for v in x_q[i, j]) + "}"
                                 for j in range(t)) + "}" for i in range(n))
  (work / "windows.h").write_text(f"#define N_WINDOWS {n}\n#define N_STEPS {t}\n"
                                  f"static const int8_t windows[{n}][{t}][{d}] = {{{body}}};\n")
  (work / "verify_main.c").write_text(VERIFY_MAIN)
  elf = work / "verify_m4.elf"
  _run(["arm-none-eabi-gcc", "-std=c99", "-Os", *M4_ARCH, "-DSEMIHOSTING", f"-I{src}",
        f"-I{work}", "-T", str(M4_TOOLS / "m4.ld"), "-nostartfiles", "-Wl,--gc-sections",
        "--specs=nano.specs", "--specs=rdimon.specs", "-o", str(elf),
        str(M4_TOOLS / "startup.c"), str(work / "verify_main.c"), str(src / "model.c"),
        str(src / "fastgrnn_int8.c")])
  out = _run(["timeout", "600", "qemu-system-arm", "-M", "mps2-an386", "-cpu", "cortex-m4",
              "-nographic", "-monitor", "none", "-serial", "none", "-semihosting-config",
              "enable=on,target=native", "-kernel", str(elf)]).stdout
  got = np.array([[int(v) for v in line.split()] for line in out.splitlines() if line.strip()])
  if got.shape != (n * t, want.shape[-1]):
    return {"differing": None, "compared": int(want.size), "error": f"output {got.shape}"}
  return {"differing": int(np.sum(got != want.reshape(n * t, -1))),
          "compared": int(want.size)}


def avr(src, work, steps, defines=()):
  if not _have("avr-gcc", "avr-size"):
    return None
  work.mkdir(parents=True, exist_ok=True)
  flags_ = ["-std=gnu99", "-Os", "-mmcu=atmega328p", *defines, "-ffunction-sections",
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
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + "\n" + out.stderr)
    match = re.search(r"^(\d+)\.?$", text, re.MULTILINE)  # the UART line
    if match:
      result["cycles"] = int(match.group(1)) / steps
  return result


def tflm_app_m4(device, work, tflm_root, deps, lib):
  """tflm_app's host test cross-built for the Cortex-M4F with ``../shared/tools/
  cortex_m4`` (its flags and object rules; the kernel's C files with arm-none-eabi-gcc
  -std=c99 -Os) for both models, linked with ``lib``, run on QEMU under ``run_count.sh``:
  per model the verdict, the arena used, the ELF's text + data and the instructions per
  ``MicroInterpreter::Invoke``."""
  if not _have("arm-none-eabi-gcc", "qemu-system-arm") or not (M4_TOOLS / "Makefile").is_file():
    return None
  result = {}
  for name, is_fused in (("builtin", False), ("fused", True)):
    build = work / f"m4_app_{name}"  # new: ``work`` is this run's own folder
    data = "model_data_fused" if is_fused else "model_data"
    objs = [build / "app/host_test.o", build / "app/step_model.o",
            build / "app/streaming_logic.o", build / f"model/{data}.o",
            build / "model/test_vectors.o", build / "startup_sh.o"]
    objs += [build / "app/fused_op.o"] if is_fused else []
    extra = f"-DTF_FASTGRNN_FUSED_OP -I{REPO / 'fused'}" if is_fused else ""
    _run(["make", "-C", str(M4_TOOLS), f"APP_DIR={REPO / 'tflm_app'}", f"MODEL_DIR={device}",
          f"TFLM_ROOT={tflm_root}", f"DEPS={deps}", f"BUILD={build}", f"EXTRA={extra}",
          *(str(o) for o in objs)])
    if is_fused:
      for c_file in ("fastgrnn_int8", "fastgrnn_int8_options"):
        obj = build / f"{c_file}.o"
        _run(["arm-none-eabi-gcc", "-std=c99", "-Os", *M4_ARCH, "-ffunction-sections",
              "-fdata-sections", "-c", str(REPO / "fused" / f"{c_file}.c"), "-o", str(obj)])
        objs.append(obj)
    elf = build / "host_test.elf"
    _run(["arm-none-eabi-g++", *M4_ARCH, "-T", str(M4_TOOLS / "m4.ld"), "-nostartfiles",
          "-Wl,--gc-sections", "--specs=nano.specs", "--specs=rdimon.specs", "-o", str(elf),
          *(str(o) for o in objs), str(lib)])
    text, data_bytes, _ = _size("arm-none-eabi-size", elf)
    out = subprocess.run([str(M4_TOOLS / "run_count.sh"), str(elf), str(build / "insns")],
                         capture_output=True, text=True).stdout
    verdict = re.search(r"(\d+) passed, (\d+) failed", out)
    count = re.search(r"(\d+) calls, (\d+) instructions inside", out)
    arena = re.search(r"arena used (\d+)", out)
    result[name] = {"passed": int(verdict.group(1)) if verdict else None,
                    "failed": int(verdict.group(2)) if verdict else None,
                    "arena_used": int(arena.group(1)) if arena else None,
                    "elf_flash": text + data_bytes,
                    "insns_per_invoke": (int(count.group(2)) / int(count.group(1))
                                         if count else None)}
  return result


@dataclasses.dataclass(frozen=True)
class TflmApp:
  """Where the builtin column's ``tflm_app`` figures come from: a TFLM checkout
  (``root``), its host build folder (``build``; default under ``work_dir``), the include
  folders of its third-party code (``includes``: {make variable: folder}), and for the
  Cortex-M4F build a prebuilt library and its dependencies (``m4_lib``, ``m4_deps``)."""
  root: str
  build: str | None = None
  includes: dict | None = None
  m4_lib: str | None = None
  m4_deps: str | None = None


def run(run_dir, windows=200, steps=128, work_dir=None, storage="auto", tflm=None):
  """Measures everything; returns the result dict. ``tflm``: a ``TflmApp``, or None
  (the builtin column's app figures are then not measured)."""
  from tf_fastgrnn import fused  # pylint: disable=import-outside-toplevel
  tflm_root = tflm.root if tflm else None
  tflm_build = tflm.build if tflm else None
  includes, m4_lib, m4_deps = ((tflm.includes, tflm.m4_lib, tflm.m4_deps) if tflm
                               else (None, None, None))
  run_dir = pathlib.Path(run_dir)
  tflite_path = run_dir / "model_int8.tflite"
  if not tflite_path.is_file():
    raise FileNotFoundError(f"{tflite_path} is missing: is {run_dir} a train_and_export run?")
  tflite_bytes = tflite_path.read_bytes()
  # Every build goes to a folder of this run's own (--work_dir may hold the user's files
  # and earlier runs): nothing outside it is written over or deleted; a default TFLM build
  # folder is the one exception, kept in --work_dir so that libtflm.a is reused.
  if work_dir is not None:
    pathlib.Path(work_dir).mkdir(parents=True, exist_ok=True)
    tflm_build = tflm_build or pathlib.Path(work_dir) / "tflm_build"
  work = pathlib.Path(tempfile.mkdtemp(prefix="bench_fused_", dir=work_dir))
  print(f"bench_fused: builds in {work}", flush=True)
  src = work / "standalone_c"
  fused.write_standalone(tflite_bytes, str(src), storage=storage, overwrite=True)
  # What each build of the standalone model holds (fused.standalone_sources): the default
  # build dense weights (for "auto") and the int32 bias terms, the size build neither.
  fast = fused.extract(tflite_bytes, "dense" if storage == "auto" else storage)
  small = fused.extract(tflite_bytes, storage)
  # The fused .tflite the pipeline writes (zero-copy: dense or sparse rows by the
  # Armv7E-M cost model, bias terms stored, nothing decoded into the arena).
  fused_bytes = (fused.convert_fused(tflite_bytes) if storage == "auto" else
                 fused.convert_fused(tflite_bytes, storage))
  (work / "model_int8_fused.tflite").write_bytes(fused_bytes)
  fused_ram = fused.FusedOpRunner(fused_bytes, fused.compile_kernel(str(work))).ram_bytes

  def kinds(params):
    return {f"{k}{i}": ("packed" if fc["mask"] is not None else
                        "sparse" if fc.get("idx") is not None else "dense")
            for k in ("w", "u") for i, fc in enumerate(params[k])}
  result = {"tflite_bytes": len(tflite_bytes),
            "param_bytes": fused.param_bytes(fast, with_terms=True),
            "param_bytes_small": fused.param_bytes(small),
            "storage": kinds(fast), "storage_small": kinds(small),
            "fused_tflite_bytes": len(fused_bytes),
            "fused_options_bytes": len(fused.custom_options(fused_bytes)),
            "fused_options_sizes": fused.options_sizes(small),
            "fused_decoded_ram_bytes": fused_ram}
  if windows:
    import data  # pylint: disable=import-outside-toplevel
    from pipelines import config  # pylint: disable=import-outside-toplevel
    cfg = config.read_flags(run_dir)  # any layout (spec.migrate)
    name, data_dir, options = config.run_dataset_args(run_dir)
    ds = data.load_dataset(name, data_dir, **options)
    result["bit_exact"] = bit_exact(tflite_bytes, ds.x_test[:windows], work, fused_bytes,
                                    readout=cfg["readout"])
  if tflm_root:
    result["tflm_app"] = tflm_app_invoke(run_dir, fused_bytes, work, tflm_root, tflm_build,
                                         includes or {})
    if m4_lib and m4_deps:
      result["tflm_app_m4"] = tflm_app_m4(result["tflm_app"].pop("device"), work, tflm_root,
                                          m4_deps, m4_lib)
    result["tflm_app"].pop("device", None)
  result["host_insns"] = host_callgrind(src, work, steps)
  result["m4"] = cortex_m4(src, work / "m4", steps)
  result["m4_small"] = cortex_m4(src, work / "m4_small", steps, ["-DFASTGRNN_INT8_SMALL"])
  traces_path = run_dir / "tflm_eval.npz"
  if traces_path.is_file():
    with np.load(traces_path) as traces:
      result["m4_bit_exact"] = m4_bit_exact(src, work, dict(traces))
  result["avr"] = avr(src, work / "avr", steps, ["-DFASTGRNN_INT8_SMALL"])
  return result


def table(r):
  def f(v):
    return ("not measured" if v is None else
            (f"{v:,.0f}" if isinstance(v, (int, float)) else str(v)))
  m4, m4s, av = r["m4"] or {}, r.get("m4_small") or {}, r["avr"] or {}
  # The builtin model's figures: tflm_app measured in this run (--tflm_root, and
  # --m4_tflm_lib/--m4_deps for the Cortex-M4F), else "not measured".
  app_host = (r.get("tflm_app") or {}).get("builtin") or {}
  app_m4 = (r.get("tflm_app_m4") or {}).get("builtin") or {}
  rows = [
      "| | builtin TFLM (tflm_app, this run) | fused: default build | fused: "
      "-DFASTGRNN_INT8_SMALL |",
      "|---|---|---|---|",
      f"| model bytes (const params: weights, masks, biases, multipliers, tables) | "
      f"{f(r['tflite_bytes'])} (.tflite) | {f(r['param_bytes'])} "
      f"({', '.join(sorted(set(r['storage'].values())))} W/U, bias terms) | "
      f"{f(r['param_bytes_small'])} ({', '.join(sorted(set(r['storage_small'].values())))} "
      "W/U) |",
      f"| fused .tflite bytes (one FASTGRNN_INT8 op; its options; options decoded "
      f"into the arena by the op's Prepare) | | {f(r.get('fused_tflite_bytes'))} "
      f"({f(r.get('fused_options_bytes'))}: "
      + ", ".join(f"{k} {v}" for k, v in r["fused_options_sizes"].items() if k != "total")
      + f"; decoded {f(r.get('fused_decoded_ram_bytes'))}) | |",
      f"| host instructions / step (callgrind, -O2; builtin: per Invoke, app -O2) | "
      f"{f(app_host.get('host_insns_per_invoke'))} | {f(r['host_insns'])} | |",
      f"| Cortex-M4F instructions / step (QEMU, -Os; builtin: per Invoke) | "
      f"{f(app_m4.get('insns_per_invoke'))} | "
      f"{f(m4.get('insns'))} | {f(m4s.get('insns'))} |",
      f"| Cortex-M4F flash, model + kernel (text + data; builtin: host-test ELF) | "
      f"{f(app_m4.get('elf_flash'))} | "
      f"{f(m4.get('flash'))} (bench ELF {f(m4.get('elf_flash'))}) | "
      f"{f(m4s.get('flash'))} (bench ELF {f(m4s.get('elf_flash'))}) |",
      f"| Cortex-M4F static RAM (data + bss) + stack bound (builtin: arena used) | "
      f"{f(app_m4.get('arena_used'))} | "
      f"{f(m4.get('ram'))} + {f(m4.get('stack_bound'))} (bench ELF "
      f"{f(m4.get('elf_ram'))}) | {f(m4s.get('ram'))} + {f(m4s.get('stack_bound'))} |",
      f"| ATmega328P flash, model + kernel | not measured | | {f(av.get('flash'))} "
      f"(bench ELF {f(av.get('elf_flash'))}) |",
      f"| ATmega328P static RAM (bench ELF: data + bss) | not measured | | "
      f"{f(av.get('elf_ram'))} |",
      f"| ATmega328P cycles / step (simavr, 16 MHz) | not measured | | "
      f"{f(av.get('cycles'))} |",
  ]
  if r.get("m4_bit_exact"):
    e = r["m4_bit_exact"]
    rows.append(f"| Cortex-M4F build (QEMU) vs TFLM traces (tflm_eval.npz) | | "
                f"{e['differing']} of {e['compared']} bytes differ | |")
  if "bit_exact" in r:
    b = r["bit_exact"]
    rows.append(f"| host kernel vs TFLM, {b['windows']} test windows x {b['steps']} steps "
                f"| | h mismatches {b['h_mismatches']}, logits mismatches "
                f"{b['logits_mismatches']}; fused .tflite options (C parser) "
                f"{f(b.get('fused_tflite_mismatches'))} bytes differ | |")
  if r.get("tflm_app"):
    a, b = r["tflm_app"]["builtin"], r["tflm_app"]["fused"]
    rows.append(f"| tflm_app host test (make test / FUSED=1): windows passed, failed | "
                f"{a['passed']}, {a['failed']} | {b['passed']}, {b['failed']} | |")
    rows.append(f"| host instructions / Invoke, TFLM (callgrind, app -O2) | "
                f"{f(a.get('host_insns_per_invoke'))} | "
                f"{f(b.get('host_insns_per_invoke'))} (FASTGRNN_INT8 op) | |")
  if r.get("tflm_app_m4"):
    a, b = r["tflm_app_m4"]["builtin"], r["tflm_app_m4"]["fused"]
    rows.append(f"| Cortex-M4F tflm_app host test on QEMU: windows passed, failed; arena used "
                f"| {a['passed']}, {a['failed']}; {f(a['arena_used'])} | {b['passed']}, "
                f"{b['failed']}; {f(b['arena_used'])} | |")
    rows.append(f"| Cortex-M4F instructions / Invoke (QEMU, -Os); host-test ELF text + data | "
                f"{f(a['insns_per_invoke'])}; {f(a['elf_flash'])} | "
                f"{f(b['insns_per_invoke'])}; {f(b['elf_flash'])} | |")
  for key, build in (("m4", "default build"), ("m4_small", "-DFASTGRNN_INT8_SMALL")):
    parts = (r.get(key) or {}).get("breakdown")
    if parts:
      rows += ["", f"Cortex-M4F instructions per step by part ({build}):", "",
               "| part | instructions |", "|---|---|"]
      rows += [f"| {name} | {f(v)} |" for name, v in parts.items()]
  return "\n".join(rows)


def main(argv):
  del argv
  if not _RUN_DIR.value:
    raise app.UsageError("--run_dir is required")
  includes = {"FLATBUFFERS_INCLUDE": _FLATBUFFERS.value,
              "GEMMLOWP_INCLUDE": _GEMMLOWP.value, "RUY_INCLUDE": _RUY.value}
  tflm = (TflmApp(_TFLM_ROOT.value, _TFLM_BUILD.value, includes, _M4_LIB.value,
                  _M4_DEPS.value) if _TFLM_ROOT.value else None)
  result = run(_RUN_DIR.value, _WINDOWS.value, _STEPS.value, _WORK_DIR.value,
               _STORAGE.value, tflm)
  print(json.dumps(result, indent=2, default=str))
  print(table(result))


if __name__ == "__main__":
  app.run(main)
