"""The TFLM app template: its TFLM-free logic always; the TFLM host test against the tree
named by TFLM_ROOT (and the include variables), or else ../shared/tflm where it exists;
the same on a Cortex-M4F under QEMU where arm-none-eabi-gcc and qemu-system-arm exist."""

import hashlib
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from tests.conftest import REPO, SHARED, shared_once

APP = REPO / "tflm_app"
# The TFLM tree CI has beside the clone (tflite-micro 90b983c and the headers it needs).
SHARED_TFLM = SHARED / "tflm"
_INCLUDE_VARS = ("FLATBUFFERS_INCLUDE", "GEMMLOWP_INCLUDE", "RUY_INCLUDE")


def _make(*args, cwd=APP, timeout=1200):
  return subprocess.run(["make", *args], cwd=cwd, capture_output=True, text=True,
                        timeout=timeout)


@pytest.fixture(scope="module")
def logic_binary(tmp_path_factory):
  if not shutil.which("make") or not shutil.which(os.environ.get("CXX", "g++")):
    pytest.skip("needs make and a C++17 compiler (g++) to build tflm_app's logic test")
  build = tmp_path_factory.mktemp("tflm_app_build")
  result = _make("test-logic", f"BUILD={build}")
  assert result.returncode == 0, result.stdout + result.stderr
  assert "0 failed" in result.stdout
  return build / "logic_test"


def test_logic_test_passes(logic_binary):
  result = subprocess.run([str(logic_binary)], capture_output=True, text=True, check=False)
  assert result.returncode == 0 and result.stdout.strip().endswith("passed, 0 failed")


def test_imu_frontend_matches_the_python_front_end(logic_binary):
  """tflm_app/imu_frontend.cc streams what data.har.gravity_split computes (float32 loop
  against the float64 reference, over a minute of IMU samples)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from data import har  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(7)
  n = 3000
  tilt = np.cumsum(rng.normal(0, 0.002, (n, 3)), 0)
  sig = np.concatenate([[0.1, 0.95, 0.2] + tilt + rng.normal(0, 0.3, (n, 3)),
                        rng.normal(0, 1.0, (n, 3))], 1).astype(np.float32)
  text = "\n".join(" ".join(f"{v:.9g}" for v in row) for row in sig) + "\n"
  result = subprocess.run(
      [str(logic_binary), "--imu-stream",
       f"{har.gravity_coefficient():.9g}"], input=text, capture_output=True, text=True,
      check=False, timeout=60)
  assert result.returncode == 0, result.stderr
  frames = np.array([[float(v) for v in line.split()] for line in
                     result.stdout.splitlines()])
  want = har.gravity_split(sig)
  assert frames.shape == want.shape == (n, 9)
  np.testing.assert_allclose(frames, want, atol=2e-5)


def _requant(value, s_out, z_out, s_in, z_in):
  """TFLite's integer requantization, as the Python reference (``fixed_point``)."""
  from tf_fastgrnn import fixed_point  # pylint: disable=import-outside-toplevel
  return int(fixed_point.requantize([value], (s_out, z_out), (s_in, z_in))[0])


def test_requantization_is_tflite_bit_exact(logic_binary):
  result = subprocess.run([str(logic_binary), "--dump-requant"], capture_output=True,
                          text=True, check=True)
  rows = [line.split() for line in result.stdout.splitlines()]
  assert len(rows) == 4 * 256
  for s_out, z_out, s_in, z_in, value, got in rows:
    want = _requant(int(value), float(s_out), int(z_out), float(s_in), int(z_in))
    assert int(got) == want, (s_out, z_out, s_in, z_in, value)


def test_build_without_tflm_root_says_what_it_needs():
  if not shutil.which("make"):
    pytest.skip("needs make")
  env = {k: v for k, v in os.environ.items() if k != "TFLM_ROOT"}
  result = subprocess.run(["make", "test"], cwd=APP, capture_output=True, text=True,
                          env=env, check=False)
  assert result.returncode != 0
  assert "TFLM_ROOT is not set" in result.stdout + result.stderr


def _tflm_tree():
  """The make variables naming a TFLM tree: the environment's (TFLM_ROOT and whichever of
  the include variables are set), else ../shared/tflm's; None when there is neither."""
  root = os.environ.get("TFLM_ROOT")
  if root:
    return [f"TFLM_ROOT={root}"] + [f"{v}={os.environ[v]}" for v in _INCLUDE_VARS
                                    if os.environ.get(v)]
  if not (SHARED_TFLM / "tflite-micro/tensorflow/lite/micro/micro_interpreter.cc").is_file():
    return None
  shared = {"FLATBUFFERS_INCLUDE": SHARED_TFLM / "flatbuffers/include",
            "GEMMLOWP_INCLUDE": SHARED_TFLM / "gemmlowp", "RUY_INCLUDE": SHARED_TFLM / "ruy"}
  return [f"TFLM_ROOT={SHARED_TFLM / 'tflite-micro'}"] + [
      f"{v}={os.environ.get(v) or shared[v]}" for v in _INCLUDE_VARS]


def _cores():
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _tflm_library(tmp_path_factory, target):
  """Make variables for app builds that link one TFLM library, built here once per test
  run for ``target`` (``make lib -j<cores>``; the xdist workers share it), under
  TFLM_APP_BUILD if set (kept across runs: the Makefile rebuilds what changed) or the
  run's temporary folder."""
  tree = _tflm_tree()
  if tree is None:
    pytest.skip(f"no TFLM tree: set TFLM_ROOT (and {', '.join(_INCLUDE_VARS)}) to a "
                f"tflite-micro tree, or provide {SHARED_TFLM} (see tflm_app/README.md)")
  if not shutil.which("make") or not shutil.which(os.environ.get("CXX", "g++")):
    pytest.skip("needs make and a C++17 compiler (g++) to build the TFLM app")
  variables = tree + [f"TARGET={target}"]
  key = hashlib.sha256(repr(variables).encode()).hexdigest()[:12]

  def build(folder):
    root = os.environ.get("TFLM_APP_BUILD") or folder
    result = _make("lib", f"-j{_cores()}", f"TFLM_LIB_ROOT={root}", *variables, timeout=3000)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (folder / "lib_root").write_text(str(root))

  folder = shared_once(tmp_path_factory, f"tflm-lib-{key}", build)
  return variables + [f"TFLM_LIB_ROOT={(folder / 'lib_root').read_text()}"]


@pytest.fixture(scope="session")
def tflm_host(tmp_path_factory):
  return _tflm_library(tmp_path_factory, "host")


@pytest.fixture(scope="session")
def tflm_cortex_m4(tmp_path_factory):
  """The Cortex-M4F build: needs arm-none-eabi-gcc with newlib (semihosting's rdimon) and
  qemu-system-arm (the app runs on its mps2-an386 board)."""
  missing = [t for t in ("arm-none-eabi-gcc", "arm-none-eabi-g++", "qemu-system-arm")
             if not shutil.which(t)]
  if missing:
    pytest.skip(f"needs {', '.join(missing)} (Debian gcc-arm-none-eabi, "
                "libnewlib-arm-none-eabi, qemu-system-arm) for the Cortex-M4F build")
  specs = subprocess.run(["arm-none-eabi-gcc", "-print-file-name=rdimon.specs"],
                         capture_output=True, text=True, check=False).stdout.strip()
  if not os.path.isabs(specs):
    pytest.skip("arm-none-eabi-gcc has no newlib rdimon.specs (Debian libnewlib-arm-none-eabi)")
  return _tflm_library(tmp_path_factory, "cortex-m4")


def _tflm_test_args(tflm, tmp_path, model_dir=None, fused=False):
  """``make test`` of the app in its own BUILD folder, linking the shared library."""
  args = ["test", f"BUILD={tmp_path / 'app_build'}", *tflm] + (["FUSED=1"] if fused else [])
  model_dir = model_dir or os.environ.get("MODEL_DIR")
  if model_dir:
    args.append(f"MODEL_DIR={model_dir}")
  return args


@pytest.mark.slow
@pytest.mark.device
def test_app_builds_link_the_library_built_once(tflm_host, tmp_path):
  """After the run's one `make lib`, an app build (builtin or fused, any model folder)
  compiles no TFLM source: it links the shared library."""
  for fused in (False, True):
    result = _make("-n", *_tflm_test_args(tflm_host, tmp_path, fused=fused))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "libtflm.a" in result.stdout
    tflm = [l for l in result.stdout.splitlines() if " -c " in l and "tensorflow/lite" in l]
    assert not tflm and "tflm_pch.h.gch" not in result.stdout, tflm[:3]


@pytest.mark.slow
@pytest.mark.device
@pytest.mark.parametrize("model", ["builtin", "fused"])
def test_tflm_host_test_bit_exact(tflm_host, tmp_path, model):
  """Builds against a real TFLM tree and replays MODEL_DIR's (or the example's) vectors,
  with the builtin model or (FUSED=1) model_int8_fused.tflite's FASTGRNN_INT8 op."""
  result = _make(*_tflm_test_args(tflm_host, tmp_path, fused=model == "fused"), timeout=3000)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert re.search(r"^[1-9]\d* passed, 0 failed$", result.stdout, re.MULTILINE), result.stdout


@pytest.mark.slow
@pytest.mark.device
@pytest.mark.parametrize("model", ["builtin", "fused"])
def test_cortex_m4_build_on_qemu_bit_exact(tflm_cortex_m4, tmp_path, model):
  """The same host test cross-built for a Cortex-M4F (arm-none-eabi-g++, newlib-nano,
  hard float) and run on QEMU's mps2-an386: every state and logits byte as the
  tflite_micro Python runtime computed them on x86-64."""
  result = _make(*_tflm_test_args(tflm_cortex_m4, tmp_path, fused=model == "fused"),
                 timeout=3000)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert "qemu-system-arm" in result.stdout  # it ran on QEMU, not on the host
  windows = re.findall(r"^window \d+ .*: bit-exact \(0 of \d+ bytes differ\)", result.stdout,
                       re.MULTILINE)
  assert windows and f"{len(windows)} passed, 0 failed" in result.stdout, result.stdout


@pytest.mark.slow
@pytest.mark.device
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_tflm_host_test_runs_the_baselines(tflm_host, tmp_path, cell):
  """The app carries an LSTM's c as well as h (it used to leave c unfed), and a GRU's h."""
  args = _tflm_test_args(tflm_host, tmp_path, model_dir=tmp_path / "device")
  from tests import helpers  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import device_files, runtime  # pylint: disable=import-outside-toplevel
  steps, dim, classes = 6, 3, 3
  _, tflite_bytes, windows, _ = helpers.converted_classifier(cell, 5, (steps, dim), classes,
                                                             windows=4)
  arena = runtime.measure_arena(tflite_bytes)
  traces = runtime.TFLMStepRunner(tflite_bytes, arena_size=arena).run_windows(windows[:3])
  settings = device_files.settings_from_model(
      tflite_bytes,
      device_files.Task(
          labels=["a", "b", "c"], steps_per_window=steps, feature_mean=[0.0] * dim,
          feature_std=[1.0] * dim),
      arena_used=arena, arena_margin=256)
  assert settings.states == (("h", "c") if cell == "lstm" else ("h",))
  vectors = dict({k: traces[k] for k in ("x_q", "h_q", "logits_q")}, labels=[0, 1, 2])
  device_files.write_device_files(tmp_path / "device", tflite_bytes, settings, vectors)
  result = _make(*args, timeout=3000)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert "3 passed, 0 failed" in result.stdout


@pytest.mark.slow
@pytest.mark.device
def test_tflm_host_test_checks_the_mean_readouts_window_classes(tflm_host, tmp_path):
  """A mean read-out model: the app's WindowReadout sums the int8 logits of every step and
  reports the Python side's class, also on windows where the last step says another."""
  args = _tflm_test_args(tflm_host, tmp_path, model_dir=tmp_path / "device")
  from tests import helpers  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import device_files, runtime  # pylint: disable=import-outside-toplevel
  steps, dim, classes = 8, 3, 4
  _, tflite_bytes, windows, _ = helpers.converted_classifier(
      "fastgrnn", 6, (steps, dim), classes, windows=40, seed=1, std=1.5, readout="mean")
  arena = runtime.measure_arena(tflite_bytes)
  runner = runtime.TFLMStepRunner(tflite_bytes, arena_size=arena)
  traces = runner.run_windows(windows)
  mean = runner.window_classes(traces["logits_q"], "mean")
  differ = np.flatnonzero(mean != runner.window_classes(traces["logits_q"], "last"))
  assert len(differ) >= 2, "no window where the read-outs disagree: pick another seed"
  pick = np.concatenate([differ[:2], np.flatnonzero(mean == mean[differ[0]])[:1]])
  settings = device_files.settings_from_model(
      tflite_bytes,
      device_files.Task(
          labels=["a", "b", "c", "d"], steps_per_window=steps, feature_mean=[0.0] * dim,
          feature_std=[1.0] * dim, readout="mean"),
      arena_used=arena, arena_margin=256)
  vectors = dict({k: traces[k][pick] for k in ("x_q", "h_q", "logits_q")}, labels=[0, 1, 2])
  device_files.write_device_files(tmp_path / "device", tflite_bytes, settings, vectors)
  result = _make(*args, timeout=3000)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert "3 passed, 0 failed" in result.stdout
  assert result.stdout.count("mean read-out class") == 3


def test_user_cxxflags_keep_the_mandatory_flags(tmp_path):
  if not shutil.which("make"):
    pytest.skip("needs make")
  result = _make("-n", "test-logic", f"BUILD={tmp_path}", "CXXFLAGS=-O1 -g")
  assert result.returncode == 0, result.stderr
  compile_line = next(l for l in result.stdout.splitlines() if "logic_test.cc" in l)
  for flag in ("-O1", "-g", "-std=c++17", "-fno-exceptions", "-fno-rtti"):
    assert flag in compile_line.split(), (flag, compile_line)


def _fake_tflm_tree(root):
  """Just enough of a tflite-micro tree for make -n: the files the Makefile looks for."""
  for rel in ("tensorflow/lite/micro/micro_interpreter.cc", "tensorflow/lite/micro/debug_log.cc",
              "tensorflow/lite/kernels/kernel_util.cc", "fb/flatbuffers/flatbuffers.h",
              "gl/fixedpoint/fixedpoint.h", "ruy/ruy/profiler/instrumentation.h"):
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text("")
  return [f"TFLM_ROOT={root}", f"FLATBUFFERS_INCLUDE={root}/fb",
          f"GEMMLOWP_INCLUDE={root}/gl", f"RUY_INCLUDE={root}/ruy"]


def test_tflm_objects_are_keyed_by_flags_and_tree(tmp_path):
  if not shutil.which("make"):
    pytest.skip("needs make")
  tree = _fake_tflm_tree(tmp_path / "tflm")
  other = _fake_tflm_tree(tmp_path / "tflm2")

  def objects(*args):
    result = _make("-n", "test", f"BUILD={tmp_path / 'build'}", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [l for l in result.stdout.splitlines() if " -c " in l and "micro_interpreter" in l]
    assert len(lines) == 1, result.stdout
    # the app's debug_log.cc replaces TFLM's, which is not compiled
    assert "micro/debug_log.cc" not in result.stdout
    return lines[0].split(" -o ")[-1].strip()

  base = objects(*tree)
  assert "/tflm-" in base
  assert objects(*tree) == base
  assert objects(*tree, "CXXFLAGS=-Os") != base
  assert objects(*other) != base


@pytest.mark.slow
@pytest.mark.device
def test_smoother_is_linked_only_for_keyword_spotting(tflm_host, tmp_path):
  """A window-classification app has no posterior smoother (it cost HAR 16 KB of RAM)."""
  from tests import helpers  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import device_files, runtime  # pylint: disable=import-outside-toplevel
  if not shutil.which("nm"):
    pytest.skip("needs nm")
  _, tflite_bytes, windows, _ = helpers.converted_classifier("fastgrnn", 4, (5, 3), 3,
                                                             windows=2)
  traces = runtime.TFLMStepRunner(tflite_bytes).run_windows(windows)
  vectors = dict({k: traces[k] for k in ("x_q", "h_q", "logits_q")}, labels=[0, 1])
  symbols = {}
  for kws in (False, True):
    device = tmp_path / f"device_kws{kws}"
    settings = device_files.settings_from_model(
        tflite_bytes,
        device_files.Task(
            labels=["a", "b", "c"], steps_per_window=5, feature_mean=[0.0] * 3,
            feature_std=[1.0] * 3, keyword_spotting=kws),
        arena_used=8000)
    device_files.write_device_files(device, tflite_bytes, settings, vectors)
    args = _tflm_test_args(tflm_host, tmp_path, model_dir=device)
    build = next(a for a in args if a.startswith("BUILD=")).split("=", 1)[1]
    result = _make(*[a if a != "test" else f"{build}/app" for a in args], timeout=3000)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    symbols[kws] = subprocess.run(["nm", "-C", f"{build}/app"], capture_output=True,
                                  text=True, check=True).stdout
  # The smoother object and its history (static RAM); its code may stay in a host build
  # without --gc-sections.
  assert "g_smoother" not in symbols[False] and "g_history" not in symbols[False]
  assert "g_smoother" in symbols[True] and "g_history" in symbols[True]


def _makefile_kernels():
  """The Makefile's op → kernel sources table (``KERNELS_<Op> := stems``) and APP_OPS."""
  text = (APP / "Makefile").read_text().replace("\\\n", " ")
  table = {m.group(1): m.group(2).split()
           for m in re.finditer(r"^KERNELS_(\w+) := (.*)$", text, re.MULTILINE)}
  app_ops = re.search(r"^APP_OPS := (.*)$", text, re.MULTILINE).group(1).split()
  return table, app_ops


def test_the_library_compiles_the_kernel_of_every_op_the_app_registers():
  """The library holds only the kernels of the ops the app can register: every op the
  device files can name (and TFLM's resolver has) must have its Register_<OP>'s source in
  the Makefile's table, or a model using it would not link."""
  from tf_fastgrnn import device_files  # pylint: disable=import-outside-toplevel
  tree = _tflm_tree()
  if tree is None:
    pytest.skip(f"no TFLM tree: set TFLM_ROOT or provide {SHARED_TFLM}")
  root = next(v for v in tree if v.startswith("TFLM_ROOT=")).split("=", 1)[1]
  micro = os.path.join(root, "tensorflow/lite/micro")
  with open(os.path.join(micro, "micro_mutable_op_resolver.h")) as f:
    resolver = f.read()
  table, app_ops = _makefile_kernels()
  assert sorted(app_ops) == sorted(table)
  written = set(device_files._RESOLVER.values())  # pylint: disable=protected-access
  checked = 0
  for op in sorted(written):
    method = re.search(rf"TfLiteStatus Add{op}\((.*?)TfLiteStatus ", resolver, re.DOTALL)
    assert method is not None, f"TFLM's resolver has no Add{op}: the app would not compile"
    register = re.search(r"Register_\w+", method.group(1)).group(0)
    assert op in table, f"{op} ({register}) has no KERNELS_{op} line in tflm_app/Makefile"
    sources = "".join(open(os.path.join(micro, "kernels", f"{stem}.cc")).read()
                      for stem in table[op])
    assert re.search(rf"TFLMRegistration {register}\(\)", sources), (op, register, table[op])
    checked += 1
  assert checked >= 20


@pytest.mark.slow
@pytest.mark.device
def test_every_op_the_app_can_register_links_against_the_library(tflm_host, tmp_path):
  """A resolver registering every op of the Makefile's table links against the library
  built from that table's kernels alone (no undefined Register_* or kernel helper)."""
  _, app_ops = _makefile_kernels()
  source = tmp_path / "all_ops.cc"
  source.write_text(
      '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n'
      f"int main() {{\n  static tflite::MicroMutableOpResolver<{len(app_ops)}> resolver;\n"
      "  int failed = 0;\n"
      + "".join(f"  failed += resolver.Add{op}() != kTfLiteOk;\n" for op in app_ops)
      + "  return failed;\n}\n")
  variables = dict(v.split("=", 1) for v in tflm_host)
  lib = subprocess.run(["make", "-s", "-C", str(APP), "print-tflm-lib", *tflm_host],
                       capture_output=True, text=True, check=True).stdout.strip()
  includes = [f"-I{variables[v]}" for v in ("TFLM_ROOT", *_INCLUDE_VARS)]
  exe = tmp_path / "all_ops"
  result = subprocess.run(
      [os.environ.get("CXX", "g++"), "-std=c++17", "-fno-exceptions", "-fno-rtti",
       "-DTF_LITE_STATIC_MEMORY", *includes, "-I", str(APP), "-I", str(APP / "example_model"),
       str(source),
       str(APP / "debug_log.cc"), str(APP / "log_format.cc"), str(APP / "output_handler.cc"),
       lib, "-o", str(exe)], capture_output=True, text=True, check=False, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert subprocess.run([str(exe)], check=False).returncode == 0
