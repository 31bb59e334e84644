"""Every kernel path of the fused step, forced by its macro, byte-identical to TFLM.

Host builds (ctypes, the system compiler): the 32-bit-only rescaling of cores without a
64-bit multiply (``-DFASTGRNN_INT8_MUL32``, what M0/M23 run), with and without the
SIMD code paths (``-DFASTGRNN_INT8_SIMD_EMULATE``) and the size build; each on sparse,
packed and dense storage. Where ``arm-none-eabi-gcc`` and ``qemu-system-arm`` are
installed, the standalone C model built for the Cortex-M0, M3 and M4F (their inline
assembly: Thumb-1 and Thumb-2 sparse rows, SMLAD dense rows) runs a few steps on QEMU and
its bytes are compared with TFLM's; where ``avr-gcc`` and ``simavr`` are, the ATmega328P
builds too.
"""

import os
import shutil
import subprocess

import numpy as np
import pytest

from tests import helpers
from tests.conftest import compiled_kernel
from tf_fastgrnn import export
from tf_fastgrnn import fixed_point
from tf_fastgrnn import fused
from tf_fastgrnn import models
from tf_fastgrnn import runtime

T, D, C = 6, 5, 3
ARMRUN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "armrun")  # m0.ld
# The Cortex-M start-up and mps2 linker script the TFLM app's QEMU build uses.
CORTEX_M = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "tflm_app", "cortex_m4")
_BUILDS = {"mul32": ("-O2", "-DFASTGRNN_INT8_MUL32"),
           "mul32_simd": ("-O2", "-DFASTGRNN_INT8_MUL32", "-DFASTGRNN_INT8_SIMD_EMULATE"),
           "mul32_small": ("-O2", "-DFASTGRNN_INT8_MUL32", "-DFASTGRNN_INT8_SMALL")}
# cell x rank x activation, sparse (70 % of W/U zeroed).
_VARIANTS = {
    "fastgrnn_full": ("fastgrnn", {}),
    "fastgrnn_low": ("fastgrnn", {"w_rank": 3, "u_rank": 4}),
    "fastgrnn_low_relu": ("fastgrnn", {"u_rank": 4, "update_activation": "relu"}),
    "fastrnn_full": ("fastrnn", {}),
    "fastrnn_low_sigmoid": ("fastrnn", {"w_rank": 2, "u_rank": 4,
                                        "update_activation": "sigmoid"}),
}


def _sparse_model(rng, cell, hidden, dim, classes, zeros=0.7, **kwargs):
  model = helpers.random_classifier(rng, cell, hidden, (T, dim), classes, std=0.5, **kwargs)
  rnn_cell = model.layers[1].cell
  for var in rnn_cell.trainable_weights:
    name = var.name.split("/")[-1]
    if name[:1] in "WU":
      w = var.numpy()
      w[rng.random(w.shape) < zeros] = 0
      var.assign(w)
  return model


def _export(variant, hidden=12):
  rng = np.random.default_rng(sorted(_VARIANTS).index(variant) + 40)
  cell, kwargs = _VARIANTS[variant]
  model = _sparse_model(rng, cell, hidden, D, C, **kwargs)
  return rng, export.convert_step_model(model, rng.normal(0, 1.5, (16, T, D)))


@pytest.fixture(scope="module", params=sorted(_BUILDS))
def build(request, tmp_path_factory):
  return compiled_kernel(tmp_path_factory, flags=_BUILDS[request.param])


@pytest.mark.parametrize("variant", sorted(_VARIANTS))
def test_every_path_is_bit_exact(variant, build):
  rng, tflite_bytes = _export(variant)
  windows = rng.normal(0, 1.5, (4, 16, D)).astype(np.float32)
  want = runtime.TFLMStepRunner(tflite_bytes).run_windows(windows)
  assert len(np.unique(want["h_q"])) > 10
  for storage in ("sparse", "packed", "dense", "fast:scalar"):
    got = fused.FusedStepRunner(tflite_bytes, build, storage).run_windows(windows)
    for key in ("h_q", "logits_q"):
      np.testing.assert_array_equal(got[key], want[key], err_msg=f"{storage} {key}")


_CORES = {  # gcc flags, QEMU machine, linker script
    "m0": (["-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft"], ["-M", "microbit"], "m0.ld"),
    "m3": (["-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft"],
           ["-M", "mps2-an385", "-cpu", "cortex-m3"], "m4.ld"),
    "m4": (["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
           ["-M", "mps2-an386", "-cpu", "cortex-m4"], "m4.ld"),
}


def _run_on_qemu(core, src, x_q, flags=()):
  arch, machine, ld = _CORES[core]
  n, t, d = x_q.shape
  body = ",".join("{" + ",".join("{" + ",".join(str(int(v)) for v in x_q[i, j]) + "}"
                                 for j in range(t)) + "}" for i in range(n))
  with open(os.path.join(src, "windows.h"), "w") as f:
    f.write(f"#define N_WINDOWS {n}\n#define N_STEPS {t}\n"
            f"static const int8_t windows[{n}][{t}][{d}] = {{{body}}};\n")
  with open(os.path.join(src, "verify_main.c"), "w") as f:
    from benchmarks import bench_fused  # pylint: disable=import-outside-toplevel
    f.write(bench_fused.VERIFY_MAIN)  # the benchmark's verify harness, the same C
  elf = os.path.join(src, f"verify_{core}.elf")
  subprocess.run(["arm-none-eabi-gcc", "-std=gnu99", "-Os", *arch, *flags, "-DSEMIHOSTING",
                  f"-I{src}", "-T", os.path.join(ARMRUN if ld == "m0.ld" else CORTEX_M, ld),
                  "-nostartfiles",
                  "-Wl,--gc-sections", "--specs=nano.specs", "--specs=rdimon.specs", "-o", elf,
                  os.path.join(CORTEX_M, "startup.c"), os.path.join(src, "verify_main.c"),
                  os.path.join(src, "model.c"), os.path.join(src, "fastgrnn_int8.c")],
                 check=True, capture_output=True)
  out = subprocess.run(["timeout", "300", "qemu-system-arm", *machine, "-nographic",
                        "-monitor", "none", "-serial", "none", "-semihosting-config",
                        "enable=on,target=native", "-kernel", elf],
                       check=True, capture_output=True, text=True).stdout
  return np.array([[int(v) for v in line.split()] for line in out.splitlines() if line.strip()])


@pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                    reason="needs arm-none-eabi-gcc and qemu-system-arm")
@pytest.mark.parametrize("core", sorted(_CORES))
def test_cortex_m_builds_on_qemu_are_bit_exact(core, tmp_path):
  # Cols up to 40 and ~12 non-zeros per row: the unrolled loops and their remainders.
  rng = np.random.default_rng(7)
  model = _sparse_model(rng, "fastgrnn", 40, 9, 4, w_rank=3, u_rank=20)
  tflite_bytes = export.convert_step_model(model, rng.normal(0, 1.5, (16, T, 9)))
  windows = rng.normal(0, 1.5, (2, 8, 9)).astype(np.float32)
  want = runtime.TFLMStepRunner(tflite_bytes).run_windows(windows)
  expected = np.concatenate([want["h_q"], want["logits_q"]], -1).reshape(16, -1)
  for storage, flags in (("auto", ()), ("auto", ("-DFASTGRNN_INT8_SMALL",)),
                         ("sparse", ()), ("dense", ())):
    src = tmp_path / f"{storage}{len(flags)}"
    fused.write_standalone(tflite_bytes, str(src), storage=storage)
    got = _run_on_qemu(core, str(src), want["x_q"], flags)
    np.testing.assert_array_equal(got, expected, err_msg=f"{core} {storage} {flags}")


_INT32_MIN, _INT32_MAX = -2**31, 2**31 - 1
_BINOP_FIELDS = ("in1_offset", "in2_offset", "in1_mult", "in2_mult", "out_mult", "out_offset",
                 "in1_shift", "in2_shift", "out_shift", "act_min", "act_max")


def _c_int(v):
  return "(-2147483647 - 1)" if v == _INT32_MIN else str(v)


def _c_array(ctype, name, values):
  return f"static const {ctype} {name}[{len(values)}] = {{{','.join(values)}}};\n"


def _add(sa, sb, so, z1, z2, zo):
  (m1, e1), (m2, e2), (mo, eo) = fused._addsub_constants(sa, sb, so, False)  # pylint: disable=protected-access
  return {"in1_offset": -z1, "in2_offset": -z2, "out_offset": zo, "act_min": -128,
          "act_max": 127, "in1_mult": m1, "in1_shift": e1, "in2_mult": m2, "in2_shift": e2,
          "out_mult": mo, "out_shift": eo}


def _mul(rng):
  """A MUL below one half (shift <= -1: the fast form's range) of random zero points."""
  z1, z2, zo = (int(v) for v in rng.integers(-128, 128, 3))
  m, e = fused._quantize_multiplier(2.0 ** -rng.uniform(1.5, 20))  # pylint: disable=protected-access
  return {"in1_offset": -z1, "in2_offset": -z2, "out_offset": zo, "act_min": -128,
          "act_max": 127, "in1_mult": 0, "in1_shift": 0, "in2_mult": 0, "in2_shift": 0,
          "out_mult": int(m.reshape(-1)[0]), "out_shift": int(e.reshape(-1)[0])}


def _ew_cases(rng):
  """FastGRNN elementwise chains for the Thumb-2 fused pass: (binops pre, update ADD, gate
  ADD, MUL(z, h), MUL(coef, h~), output ADD; biases [2][256]; whether the fused pass
  takes them). Random scales (both output-ADD orders), then edge cases: offsets at the
  parser's bounds, MUL multipliers near 2^31 and at 2^30 with shifts -1 and -23, the
  output ADD's g-side multiplier just above 2^10 (shift -31) and near 2^31 (shift -1); and
  chains it must decline (pre of unequal scales, the two bias ADDs' pre offsets unequal,
  an output ADD of equal scales); both orders of the output ADD's sides."""
  cases = []
  for k in range(10):
    s_pre = float(np.exp(rng.uniform(np.log(1e-3), 0.0)))
    z = [int(v) for v in rng.integers(-128, 128, 12)]
    pre = _add(s_pre * 0.7, s_pre * 0.7 if k != 7 else s_pre * 0.3, s_pre, z[0], z[1], z[2])
    # pre is the h side (the larger scale) of both bias ADDs, its zero point z[2]
    upd = _add(s_pre, s_pre * 2.0 ** -rng.uniform(0.1, 9), s_pre * 1.5, z[2], z[3], z[4])
    gate = _add(s_pre, s_pre * 2.0 ** -rng.uniform(0.1, 9), 1 / 256, z[2] if k != 8 else z[5],
                z[5], -128)
    # the output ADD(MUL(coef, h~), MUL(z, h)): MUL(z, h) of the larger scale (its h side,
    # the kernel's swapped form) for odd k, MUL(coef, h~) for even k; equal scales for k = 9
    s_lo = float(np.exp(rng.uniform(np.log(1e-3), np.log(0.5))))
    s_hi = s_lo if k == 9 else s_lo * 2.0 ** rng.uniform(0.2, 8)
    out = _add(s_lo, s_hi, s_hi * 1.3, z[6], z[7], z[8]) if k % 2 else \
        _add(s_hi, s_lo, s_hi * 1.3, z[6], z[7], z[8])
    zh, ch = _mul(rng), _mul(rng)
    if k == 1:  # offsets at the parser's bounds
      for b in (pre, upd, gate, out, zh, ch):
        b.update(in1_offset=128, in2_offset=-127)
      upd.update(out_offset=127)
      out.update(out_offset=-128)
      gate["in1_offset"] = upd["in1_offset"]
    if k == 2:
      zh.update(out_mult=2**31 - 1, out_shift=-1)
      ch.update(out_mult=2**30, out_shift=-23)
    if k == 3:
      zh.update(out_mult=2**30, out_shift=-23)
      ch.update(out_mult=2**31 - 2, out_shift=-1)
    g = "in2" if (out["in1_mult"], out["in1_shift"]) == (2**30, 0) else "in1"  # the g side
    if k == 4:
      out.update({f"{g}_mult": 1025, f"{g}_shift": -31})
    if k == 5:
      out.update({f"{g}_mult": 2**31 - 1, f"{g}_shift": -1, "out_mult": 2**31 - 1,
                  "out_shift": -1})
    biases = rng.integers(-128, 128, (2, 256))
    cases.append(((pre, upd, gate, zh, ch, out), biases, k not in (7, 8, 9)))
  return cases


def _arm_cases(rng):
  """arm_cases.h for fastgrnn_int8_arm_equiv.c, and the cases as Python values."""
  from tests.test_fused import _random_add, _random_mul  # pylint: disable=import-outside-toplevel
  edges_a = [_INT32_MIN, _INT32_MIN + 1, -2**30 - 1, -2**30, -2**30 + 1, -3 * 2**29, -3, -2,
             -1, 0, 1, 2, 3, 3 * 2**29, 2**30 - 1, 2**30, 2**30 + 1, _INT32_MAX - 1, _INT32_MAX]
  edges_b = [0, 1, 2, 3, 2**29, 2**30 - 1, 2**30, 2**30 + 1, 3 * 2**29, _INT32_MAX - 1,
             _INT32_MAX]
  srdhm = [(a, b) for a in edges_a for b in edges_b]
  srdhm += [(int(a), int(b)) for a, b in zip(rng.integers(_INT32_MIN, _INT32_MAX, 300,
                                                           endpoint=True),
                                              rng.integers(0, _INT32_MAX, 300, endpoint=True))]
  srdhm.append((_INT32_MIN, _INT32_MIN))  # outside the kernel's domain (multipliers >= 0)
  # FC rows: multipliers as QuantizeMultiplier gives them (incl. 0, shifts -31..+6), and
  # accumulators within the parser's bound |acc 2^max(s, 0)| < 2^31 - 2^10: edges, the
  # ties of every shift, random.
  fc = []
  pairs = [fixed_point.quantize_multiplier(2.0 ** v) for v in rng.uniform(-33, 6, 40)]
  pairs += [(0, 0), (2**30, 0), (2**30, -1), (_INT32_MAX, -1), (2**30, 3), (_INT32_MAX, -31)]
  for m, s in pairs:
    bound = (2**31 - 2**10 - 1) >> max(s, 0)
    accs = [0, 1, -1, bound, -bound, bound // 2, -bound // 2]
    for e in (1, 2, 5, 12, 20):
      accs += [k * 2**(e - 1) for k in (-3, -1, 1, 3)]
    accs += [int(v) for v in rng.integers(-bound, bound, 8, endpoint=True)]
    fc += [(a, m, s) for a in accs if -bound <= a <= bound]
  # accumulators beyond 2^30 (2 acc overflows: the DSP rows' SMULL form) at the ties of
  # RoundingDivideByPOT after an exact srdhm (m = 2^30: t = floor((acc + 1) / 2))
  for e in (1, 2, 20, 29, 30):
    t = 2**29 + (2**(e - 1) if e < 30 else 0)
    fc += [(sg * (2 * t + d), 2**30, -e) for sg in (1, -1) for d in (-2, -1, 0, 1)]
  zos = [-128, -1, 0, 77, 127]
  adds = [_random_add(rng, equal_scales=k % 3 == 0)[0] for k in range(9)]
  # Scales in power-of-two ratios: exact ties in the roundings (where RoundingDivideByPOT's
  # sign correction decides): equal input scales, and 2^20 apart (the smaller operand's
  # term (v + offset) / 2 before rounding) in both operand orders.
  for sa, sb, so in ((0.01, 0.01, 0.02), (2.0**-4, 2.0**-24, 2.0**-3),
                     (2.0**-24, 2.0**-4, 2.0**-5)):
    (m1, e1), (m2, e2), (mo, eo) = fused._addsub_constants(sa, sb, so, False)  # pylint: disable=protected-access
    z1, z2, zo = (int(v) for v in rng.integers(-128, 128, 3))
    adds.append({"in1_offset": -z1, "in2_offset": -z2, "out_offset": zo, "act_min": -128,
                 "act_max": 127, "in1_mult": m1, "in1_shift": e1, "in2_mult": m2,
                 "in2_shift": e2, "out_mult": mo, "out_shift": eo})
  muls = [_random_mul(rng) for _ in range(2 * len(adds))]
  for k in range(len(adds) - 3, len(adds)):  # their MULs: s1 s2 / s_out = 2^-9, 2^-6
    for j, shift in ((2 * k, -8), (2 * k + 1, -5)):
      muls[j].update(out_mult=2**30, out_shift=shift)
  # Edges of the fast forms' domain: input offsets at the parser's bounds (-127, 128: |v +
  # offset| up to 255, MUL products up to 65025 in magnitude), output offsets at both ends,
  # multipliers just above 2^10 (the g side's lower bound) and at 2^31 - 1, output shifts
  # -1 and -23, multipliers whose low half is 0 or 1 (the MUL32 splits' ends).
  for o1, o2, zo, gm, gs, om, os_, mm in (
      (128, -127, -128, 2**10 + 1, -1, 2**31 - 1, -1, (2**31 - 1, -1)),
      (-127, 128, 127, 2**31 - 1, -1, 2**30, -23, (2**30, -23)),
      (128, 128, 0, 2**31 - 1, -31, 2**30 + 1, -1, (2**30 + 1, -1)),
      (-127, -127, -1, 2**30, -2, 2**31 - 2**16, -12, (2**31 - 2**16, -9))):
    adds.append({"in1_offset": o1, "in2_offset": o2, "out_offset": zo, "act_min": -128,
                 "act_max": 127, "in1_mult": 2**30, "in1_shift": 0, "in2_mult": gm,
                 "in2_shift": gs, "out_mult": om, "out_shift": os_})
    for j in range(2):
      muls.append({"in1_offset": o1 if j else o2, "in2_offset": o2 if j else o1,
                   "out_offset": zo, "act_min": -128, "act_max": 127, "in1_mult": 0,
                   "in1_shift": 0, "in2_mult": 0, "in2_shift": 0, "out_mult": mm[0],
                   "out_shift": mm[1]})
  table = rng.integers(-128, 128, 256)
  other = rng.integers(-128, 128, 256)
  binop = lambda b: "{" + ",".join(str(int(b[f])) for f in _BINOP_FIELDS) + "}"  # noqa: E731
  terms = [fused._bias_term(np.arange(-128, 128).astype(np.int8), a)  # pylint: disable=protected-access
           for a in adds]
  header = (f"#define N_SRDHM {len(srdhm)}\n#define N_FC {len(fc)}\n#define N_ZO {len(zos)}\n"
            f"#define N_ADD {len(adds)}\n" +
            "static const int32_t kSrdhm[N_SRDHM][2] = {" +
            ",".join(f"{{{_c_int(a)},{_c_int(b)}}}" for a, b in srdhm) + "};\n" +
            _c_array("int32_t", "kFcAcc", [str(a) for a, _, _ in fc]) +
            _c_array("int32_t", "kFcMult", [str(m) for _, m, _ in fc]) +
            _c_array("int8_t", "kFcShift", [str(s) for _, _, s in fc]) +
            _c_array("int32_t", "kZo", [str(z) for z in zos]) +
            _c_array("fastgrnn_int8_binop", "kAdd", [binop(a) for a in adds]) +
            _c_array("fastgrnn_int8_binop", "kMul", [binop(m) for m in muls]) +
            _c_array("int8_t", "kTable", [str(int(v)) for v in table]) +
            _c_array("int8_t", "kOther", [str(int(v)) for v in other]) +
            "static const int32_t kTerm[N_ADD][256] = {" +
            ",".join("{" + ",".join(str(int(v)) for v in t) + "}" for t in terms) + "};\n")
  ew = _ew_cases(rng)
  rows = lambda a: "{" + ",".join(str(int(v)) for v in a) + "}"  # noqa: E731
  header += (f"#define N_EW {len(ew)}\n" +
             "static const fastgrnn_int8_binop kEw[N_EW][6] = {" +
             ",".join("{" + ",".join(binop(b) for b in ops) + "}" for ops, _, _ in ew) +
             "};\nstatic const int8_t kEwBias[N_EW][2][256] = {" +
             ",".join("{" + ",".join(rows(b) for b in bias) + "}" for _, bias, _ in ew) +
             "};\nstatic const int32_t kEwTerm[N_EW][2][256] = {" +
             ",".join("{" + ",".join(rows(fused._bias_term(b.astype(np.int8), a))  # pylint: disable=protected-access
                                     for b, a in zip(bias, ops[1:3])) + "}"
                      for ops, bias, _ in ew) + "};\n" +
             "static const int8_t kEwTab[4][256] = {" +
             ",".join(rows(t) for t in rng.integers(-128, 128, (4, 256))) + "};\n")
  return header, srdhm, fc, zos, [taken for _, _, taken in ew]


@pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                    reason="needs arm-none-eabi-gcc and qemu-system-arm")
@pytest.mark.parametrize("core", ["m0", "m3", "m4"])
def test_thumb2_arithmetic_on_qemu(core, tmp_path):
  """The Arm builds' own arithmetic on QEMU: Thumb-2 (M3, M4F: SMULL-form
  SaturatingRoundingDoublingHighMul, the sparse and dense layers' requantisation in
  assembly, the elementwise loops) and Thumb-1 (M0: the 32-bit-only srdhm, the sparse
  layer's and the elementwise loops' assembly): srdhm over edge cases (INT32_MIN/MAX
  operands, products at +-1/2 ulp: the negative rounding) against the NumPy reference; FC
  requantisation (every shift sign, m = 0, ties of each shift, the parser's accumulator
  bound) against it; every int8 operand pair of the ADD/MUL/table passes against the
  generic passes, for random parameters and edge ones (offsets at the parser's bounds,
  multipliers 2^10 + 1 and 2^31 - 1, output shifts -1 and -23)."""
  arch, machine, ld = _CORES[core]
  header, srdhm, fc, zos, ew_taken = _arm_cases(np.random.default_rng(29))
  (tmp_path / "arm_cases.h").write_text(header)
  here = os.path.dirname(os.path.abspath(__file__))
  elf = str(tmp_path / "arm_equiv.elf")
  subprocess.run(["arm-none-eabi-gcc", "-std=gnu99", "-Os", *arch, "-DSEMIHOSTING",
                  f"-I{tmp_path}", f"-I{here}", f"-I{fused.KERNEL_DIR}",
                  "-T", os.path.join(ARMRUN if ld == "m0.ld" else CORTEX_M, ld),
                  "-nostartfiles", "-Wl,--gc-sections",
                  "--specs=nano.specs", "--specs=rdimon.specs", "-o", elf,
                  os.path.join(CORTEX_M, "startup.c"),
                  os.path.join(here, "fastgrnn_int8_arm_equiv.c")],
                 check=True, capture_output=True)
  out = subprocess.run(["timeout", "600", "qemu-system-arm", *machine, "-nographic",
                        "-monitor", "none", "-serial", "none", "-semihosting-config",
                        "enable=on,target=native", "-kernel", elf],
                       check=True, capture_output=True, text=True).stdout
  lines = [ln.split() for ln in out.splitlines() if ln.strip()]
  got_srdhm = [[int(v) for v in ln[1:]] for ln in lines if ln[0] == "srdhm"]
  assert [(a, b) for a, b, _ in got_srdhm] == srdhm
  for a, b, r in got_srdhm:
    if a == b == _INT32_MIN:  # 2^62 + 2^30 >> 31 wraps as in the kernel's C form
      assert r == _INT32_MIN
    else:
      assert r == int(fixed_point.multiply_by_quantized_multiplier(a, b, 0)), (a, b, r)
  got_fc = [[int(v) for v in ln[1:]] for ln in lines if ln[0] == "fc"]
  assert len(got_fc) == len(fc) * len(zos)
  for zo, acc, m, s, sparse_out, c_out, dense_out in got_fc:
    want = int(np.clip(fixed_point.multiply_by_quantized_multiplier(acc, m, s) + zo, -128, 127))
    assert (sparse_out, c_out, dense_out) == (want, want, want), (zo, acc, m, s)
  counts = {(ln[0], int(ln[1])): int(ln[2]) for ln in lines if ln[0] in ("add", "bias", "grnn")}
  assert len(counts) == 3 * 16
  # -1: the fast pass declined the parameters (a shift out of its range, a MUL multiplier
  # >= 1/2) and the generic one runs; every fast pass that ran equals the generic one
  assert all(v in (0, -1) for v in counts.values()), sorted(counts.items())
  for kind in ("add", "bias", "grnn"):
    assert sum(v == 0 for k, v in counts.items() if k[0] == kind) >= 5, sorted(counts.items())
  # FastGRNN's chain fused in one pass (Thumb-2) against the generic passes, out of place
  # and in place (h_out = h_in): 0 differing bytes where it applies, -1 (declined) elsewhere
  ew = {int(ln[1]): int(ln[2]) for ln in lines if ln[0] == "ew"}
  assert ew == ({} if core == "m0" else {k: 0 if taken else -1 for k, taken in enumerate(ew_taken)})
  gates = [int(ln[2]) for ln in lines if ln[0] == "gates"]  # the M0's fused gate passes
  assert len(gates) == (16 if core == "m0" else 0)
  assert all(v in (0, -1) for v in gates) and (core != "m0" or gates.count(0) >= 5), gates


_AVR_MAIN = r"""
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/sleep.h>
#include "model.h"
#include "windows.h"
static void put(char c) { while (!(UCSR0A & (1 << UDRE0))) {} UDR0 = c; }
static void put_i(int v) {
  char b[6]; int n = 0; unsigned u;
  if (v < 0) { put('-'); v = -v; }
  u = (unsigned)v;
  do { b[n++] = (char)('0' + u % 10); u /= 10; } while (u);
  while (n) put(b[--n]);
  put(' ');
}
int main(void) {
  int8_t h[MODEL_HIDDEN_DIM], logits[MODEL_NUM_CLASSES], x[MODEL_INPUT_DIM];
  int n, t, i;
  UCSR0B = (1 << TXEN0);
  for (n = 0; n < N_WINDOWS; ++n) {
    model_reset(h);
    for (t = 0; t < N_STEPS; ++t) {
      for (i = 0; i < MODEL_INPUT_DIM; ++i) x[i] = windows[n][t][i];
      if (model_step(x, h, logits) != 0) put('E');
      for (i = 0; i < MODEL_HIDDEN_DIM; ++i) put_i(h[i]);
      for (i = 0; i < MODEL_NUM_CLASSES; ++i) put_i(logits[i]);
      put('\n'); /* simavr prints the UART line by line */
    }
  }
  cli();
  sleep_cpu();
  return 0;
}
"""


@pytest.mark.skipif(not (shutil.which("avr-gcc") and shutil.which("simavr")),
                    reason="needs avr-gcc and simavr")
def test_avr_builds_on_simavr_are_bit_exact(tmp_path):
  """ATmega328P: weights and tables in __flash, int16 products, byte-wise variable
  shifts; the default build (assembly sparse rows and rescales, fast elementwise passes),
  the size build and the default build's C (``-DFASTGRNN_INT8_NO_ASM``)."""
  import re  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(9)
  model = _sparse_model(rng, "fastgrnn", 24, 9, 4, w_rank=3, u_rank=12)
  tflite_bytes = export.convert_step_model(model, rng.normal(0, 1.5, (16, T, 9)))
  windows = rng.normal(0, 1.5, (2, 4, 9)).astype(np.float32)
  want = runtime.TFLMStepRunner(tflite_bytes).run_windows(windows)
  expected = np.concatenate([want["h_q"], want["logits_q"]], -1).reshape(-1)
  src = str(tmp_path)
  fused.write_standalone(tflite_bytes, src)
  x_q = want["x_q"]
  body = ",".join("{" + ",".join("{" + ",".join(str(int(v)) for v in x_q[i, j]) + "}"
                                 for j in range(x_q.shape[1])) + "}"
                  for i in range(x_q.shape[0]))
  with open(os.path.join(src, "windows.h"), "w") as f:
    f.write(f"#define N_WINDOWS {x_q.shape[0]}\n#define N_STEPS {x_q.shape[1]}\n"
            f"static const int8_t windows[{x_q.shape[0]}][{x_q.shape[1]}][9] = {{{body}}};\n")
  with open(os.path.join(src, "avr_main.c"), "w") as f:
    f.write(_AVR_MAIN)
  for flags in ((), ("-DFASTGRNN_INT8_SMALL",), ("-DFASTGRNN_INT8_NO_ASM",)):
    elf = os.path.join(src, "verify_avr.elf")
    subprocess.run(["avr-gcc", "-std=gnu99", "-Os", "-mmcu=atmega328p", *flags, f"-I{src}",
                    os.path.join(src, "avr_main.c"), os.path.join(src, "model.c"),
                    os.path.join(src, "fastgrnn_int8.c"), "-o", elf],
                   check=True, capture_output=True)
    run = subprocess.run(["timeout", "300", "simavr", "-m", "atmega328p", "-f", "16000000", elf],
                         capture_output=True, text=True)
    # simavr echoes the UART on stderr in colour, broken into chunks: join them.
    text = "".join(line for line in run.stderr.splitlines() if not line.startswith("Loaded"))
    got = np.array([int(v) for v in re.findall(r"-?\d+", re.sub(r"\x1b\[[0-9;]*m", "", text))])
    np.testing.assert_array_equal(got, expected, err_msg=f"avr {flags}")


def test_har2_shape_is_bit_exact_on_every_path(tmp_path_factory):
  """The paper's HAR-2 shape (H = 80, 9 inputs, W rank 5, U rank 40, 80 % of W / 70 % of U
  zeroed): every host build x the storages the cost models pick, and sparse rows
  (~15 s on a loaded 2-core machine: not marked slow)."""
  rng = np.random.default_rng(23)
  model = helpers.random_classifier(rng, "fastgrnn", 80, (T, 9), 2, std=0.3, w_rank=5,
                                    u_rank=40)
  for var in model.layers[1].cell.trainable_weights:
    name = var.name.split("/")[-1]
    if name[:1] in "WU":
      w = var.numpy()
      w[rng.random(w.shape) < (0.8 if name[0] == "W" else 0.7)] = 0
      var.assign(w)
  tflite_bytes = export.convert_step_model(model, rng.normal(0, 1, (16, T, 9)))
  windows = rng.normal(0, 1.5, (3, 16, 9)).astype(np.float32)
  want = runtime.TFLMStepRunner(tflite_bytes).run_windows(windows)
  assert len(np.unique(want["h_q"])) > 10
  builds = {"default": ("-O2",), **_BUILDS,
            "simd_emulate": ("-O2", "-DFASTGRNN_INT8_SIMD_EMULATE")}
  for name, flags in builds.items():
    library = compiled_kernel(tmp_path_factory, flags=flags)
    for storage in ("fast:dsp", "fast:scalar", "sparse"):
      got = fused.FusedStepRunner(tflite_bytes, library, storage).run_windows(windows)
      for key in ("h_q", "logits_q"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=f"{name} {storage} {key}")


_AVR_ARITH_MAIN = r"""
#include <avr/io.h>
#include <avr/sleep.h>
#include <avr/interrupt.h>
#include "fastgrnn_int8.c"
#include "arith_cases.h"
static void put(char c) { while (!(UCSR0A & (1 << UDRE0))) {} UDR0 = c; }
static void put_i32(int32_t v) {
  char b[12]; int n = 0; uint32_t u = (uint32_t)v;
  if (v < 0) { put('-'); u = 0u - u; }
  do { b[n++] = (char)('0' + u % 10u); u /= 10u; } while (u);
  while (n) put(b[--n]);
  put(' ');
}
int main(void) {
  int i;
  UCSR0B = (1 << TXEN0);
  for (i = 0; i < N_PAIRS; ++i) {
    put_i32(srdhm(kA[i], kB[i]));
    put_i32(smmulr(kA[i], kB[i]));
    put('\n');
  }
  for (i = 0; i < N_ROWS; ++i) {
    const __flash uint8_t *ip = kIdx[i];
    const __flash int8_t *wp = kW[i];
    put_i32(sparse_row(&ip, &wp, kX[i], kAcc[i]));
    put_i32((int32_t)(ip - kIdx[i]) * 1000 + (int32_t)(wp - kW[i]));
    put('\n');
  }
  cli();
  sleep_cpu();
  return 0;
}
"""


@pytest.mark.skipif(not (shutil.which("avr-gcc") and shutil.which("simavr")),
                    reason="needs avr-gcc and simavr")
def test_avr_assembly_arithmetic_is_exact_on_edge_cases(tmp_path):
  """AVR's inline assembly against the NumPy/int reference: ``srdhm`` (TFLM's
  SaturatingRoundingDoublingHighMul, ``fixed_point.multiply_by_quantized_multiplier``
  with shift 0) and ``smmulr`` ((a b + 2^31) >> 32) from sixteen 8 x 8 MULs, on operands
  whose bytes carry (0xff, 0x80 patterns), both signs, the int32 extremes and
  QuantizeMultiplier values; the sparse row's 24-bit sum at its bound (255 products of
  ±2^14 and 127 · −128) and on a random row, with the bias added and both pointers
  advanced past the row."""
  import re  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import fixed_point  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(5)
  edges = [0, 1, -1, 2, -2, 127, -128, 255, -256, 0xff, 0xffff, -0xffff, 0x10000, -0x10000,
           0x7fffff, -0x800000, 0xffffff, 0x1000000, 0x7fffffff, -0x7fffffff, -0x80000000,
           0x40000000, -0x40000000, 0x3fffffff, 0x7f7f7f7f, -0x7f7f7f7f, 0x00ff00ff,
           -0x00ff00ff, 0x12345678, -0x12345678, 0x7fff8000, 0x80ff * 0x100]
  mults = [0, 1, 0xff, 0xffff, 0x10000, 0x40000000, 0x7fffffff, 0x7f7f7f7f, 0x7fff8001,
           0x4000ffff, 0x00ff00ff] + [fixed_point.quantize_multiplier(r)[0]
                                      for r in rng.uniform(0.01, 1.0, 6)]
  pairs = [(a, m) for a in edges for m in mults]
  pairs += [(int(a), int(m)) for a, m in zip(
      rng.integers(-2**31, 2**31, 400) >> rng.integers(0, 31, 400),
      rng.integers(0, 2**31, 400) >> rng.integers(0, 31, 400))]
  # smmulr also takes a negative second operand (its correction for b < 0)
  pairs += [(a, -m) for a, m in pairs[:60] if m]
  # sparse rows: (x, the row's column indices, weights, bias)
  rows = [(np.full(255, -128), np.arange(255), np.full(255, -128), 0),
          (np.full(255, -128), np.arange(255), np.full(255, 127), 0),
          (np.full(255, 127), np.arange(255), np.full(255, 127), -2**30),
          (np.full(255, -128), np.arange(255), np.full(255, 127), 2**30)]
  x = rng.integers(-128, 128, 200)
  idx = np.sort(rng.choice(200, 77, replace=False))
  rows += [(x, idx, rng.integers(-128, 128, 77), 123456), (x, idx[:1], np.array([-128]), -7),
           (x, idx[:0], idx[:0], 99)]

  def c_array(values):
    return "{" + ",".join(str(int(v)) for v in values) + "}"

  lines = [f"#define N_PAIRS {len(pairs)}\n#define N_ROWS {len(rows)}",
           f"static const __flash int32_t kA[] = {c_array(a for a, _ in pairs)};".replace(
               "-2147483648", "(-2147483647 - 1)"),
           f"static const __flash int32_t kB[] = {c_array(m for _, m in pairs)};"]
  xs = []  # the x vectors in RAM (2 KB on the 328P): each distinct one once
  for k, (xr, ir, wr, _) in enumerate(rows):
    lines.append(f"static const __flash uint8_t kIdx{k}[] = {c_array([len(ir), *ir])};")
    lines.append(f"static const __flash int8_t kW{k}[] = {c_array([*wr, 0])};")
    if not any(np.array_equal(xr, v) for v in xs):
      lines.append(f"static int8_t kXv{len(xs)}[] = {c_array(xr)};")
      xs.append(xr)
    lines.append(f"#define kX{k} kXv{[np.array_equal(xr, v) for v in xs].index(True)}")
  lines.append("static const __flash uint8_t *const kIdx[] = {"
               + ",".join(f"kIdx{k}" for k in range(len(rows))) + "};")
  lines.append("static const __flash int8_t *const kW[] = {"
               + ",".join(f"kW{k}" for k in range(len(rows))) + "};")
  lines.append("static int8_t *const kX[] = {" + ",".join(f"kX{k}" for k in range(len(rows)))
               + "};")
  lines.append(f"static const int32_t kAcc[] = {c_array(r[3] for r in rows)};")
  (tmp_path / "arith_cases.h").write_text("\n".join(lines) + "\n")
  (tmp_path / "arith_main.c").write_text(_AVR_ARITH_MAIN)
  fused_dir = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fused")
  elf = str(tmp_path / "arith.elf")
  subprocess.run(["avr-gcc", "-std=gnu99", "-Os", "-mmcu=atmega328p", f"-I{tmp_path}",
                  f"-I{fused_dir}", str(tmp_path / "arith_main.c"), "-o", elf],
                 check=True, capture_output=True)
  run = subprocess.run(["timeout", "300", "simavr", "-m", "atmega328p", "-f", "16000000", elf],
                       capture_output=True, text=True)
  text = "".join(line for line in run.stderr.splitlines() if not line.startswith("Loaded"))
  got = [int(v) for v in re.findall(r"-?\d+", re.sub(r"\x1b\[[0-9;]*m", "", text))]
  want = []
  for a, m in pairs:
    srdhm = (int(fixed_point.multiply_by_quantized_multiplier(a, m, 0)) if m >= 0 and
             not (a == m == -2**31) else (a * m + 2**30) >> 31)
    want += [srdhm, (a * m + 2**31) >> 32]
  for xr, ir, wr, bias in rows:
    want += [bias + int(np.dot(xr[ir].astype(np.int64), wr.astype(np.int64))),
             (len(ir) + 1) * 1000 + len(ir)]
  assert len(got) == len(want), (len(got), len(want))
  bad = [(i, g, w) for i, (g, w) in enumerate(zip(got, want)) if g != w]
  assert not bad, f"{len(bad)} differ, first {bad[:5]}"


_MUL32_EDGES = r"""
#include "fastgrnn_int8_equiv.c"
/* out8 (FG_MUL32: four 16 x 16 products, one unsigned middle sum) against mbqm_add at the
 * ends of its range, x2 = 2x with -2^29 <= x < 2^29, and on a sweep between. */
int32_t edges_out8(int32_t mult, int32_t shift, int32_t offset) {
  fastgrnn_int8_binop p = {0};
  fg_out o;
  int32_t x, bad = 0;
  p.out_mult = mult;
  p.out_shift = shift;
  p.out_offset = offset;
  p.act_min = -128;
  p.act_max = 127;
  if (!fast_out(&o, &p)) return -1;
  for (x = -(INT32_C(1) << 29); x < -(INT32_C(1) << 29) + (INT32_C(1) << 17); ++x)
    bad += out8(&o, 2 * x) != clamp8(mbqm_add(x, mult, shift) + offset, -128, 127);
  for (x = (INT32_C(1) << 29) - (INT32_C(1) << 17); x < (INT32_C(1) << 29); ++x)
    bad += out8(&o, 2 * x) != clamp8(mbqm_add(x, mult, shift) + offset, -128, 127);
  for (x = -(INT32_C(1) << 29); x < (INT32_C(1) << 29) - 65521; x += 65521)
    bad += out8(&o, 2 * x) != clamp8(mbqm_add(x, mult, shift) + offset, -128, 127);
  return bad;
}
/* mul_fast (FG_MUL32: two products) on every int8 operand pair, out[(a + 128) 256 + b +
 * 128]; -1 if the fast form refuses the op. */
int32_t mul_all(int32_t mult, int32_t shift, int32_t o1, int32_t o2, int32_t zo,
                int8_t *out) {
  fastgrnn_int8_binop p = {0};
  fg_out o;
  int32_t a, b;
  p.in1_offset = o1;
  p.in2_offset = o2;
  p.out_mult = mult;
  p.out_shift = shift;
  p.out_offset = zo;
  p.act_min = -128;
  p.act_max = 127;
  if (!fast_out(&o, &p)) return -1;
  for (a = -128; a < 128; ++a)
    for (b = -128; b < 128; ++b) out[(a + 128) * 256 + b + 128] = (int8_t)mul_fast(&o, a, b);
  return 0;
}
"""


def test_mul32_elementwise_passes_equal_the_generic_ones(tmp_path):
  """The 32-bit-only build (-DFASTGRNN_INT8_MUL32, what the M0 runs) of the fast
  elementwise passes against its generic passes (tests/fastgrnn_int8_equiv.c: every int8
  operand pair of random ADDs and MULs, both operand orders, stored bias terms), and its
  output rescale (out8: four 16 x 16 products summed unsigned, valid for -2^30 <= x2 <
  2^30) at both ends of that range for multipliers at the ends of [0, 2^31) and shifts
  -1 and -23."""
  import ctypes  # pylint: disable=import-outside-toplevel
  from tests import test_fused  # pylint: disable=import-outside-toplevel
  tests_dir = os.path.dirname(os.path.abspath(__file__))
  (tmp_path / "edges.c").write_text(_MUL32_EDGES)
  lib_path = str(tmp_path / "libmul32equiv.so")
  subprocess.run([os.environ.get("CC", "cc"), "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2",
                  "-shared", "-fPIC", "-DFASTGRNN_INT8_MUL32", f"-I{fused.KERNEL_DIR}",
                  f"-I{tests_dir}", str(tmp_path / "edges.c"), "-o", lib_path],
                 check=True, capture_output=True)
  lib = ctypes.CDLL(lib_path)
  for name in ("equiv_add", "equiv_bias", "equiv_grnn", "equiv_rnn", "equiv_terms",
               "equiv_mul", "equiv_fc", "edges_out8"):
    getattr(lib, name).restype = ctypes.c_int32
  for mult in (0, 1, 0xffff, 0x10000, 1 << 30, 0x7fff0000, 0x4000ffff, 2**31 - 1):
    for shift, offset in ((-1, 0), (-1, -128), (-23, 127), (-20, 128)):
      assert lib.edges_out8(mult, shift, offset) == 0, (mult, shift, offset)
  test_fused.test_fast_passes_equal_the_generic_ones(lib)
  # The MUL's two-product form against fixed_point on every operand pair: the input
  # offsets at the parser's ends (-127, 128: |P| up to 255^2), multipliers whose low half
  # is odd (the b0 term) or at the ends of [2^30, 2^31), shifts from -1 to -23.
  from tf_fastgrnn import fixed_point  # pylint: disable=import-outside-toplevel
  lib.mul_all.restype = ctypes.c_int32
  a = np.arange(-128, 128).repeat(256)
  b = np.tile(np.arange(-128, 128), 256)
  out = np.zeros(65536, np.int8)
  for mult in (1 << 30, 0x40000001, 0x4000ffff, 0x40008001, 0x7fff8001, 0x7fffffff,
               0x7ffeffff, 0x55555555, 0x6d3a06d3):
    for shift, o1, o2, zo in ((-1, 128, 128, 0), (-8, -127, -127, -128), (-23, 128, -127, 127),
                              (-12, 0, 128, 5), (-16, -127, 128, -3)):
      assert lib.mul_all(mult, shift, o1, o2, zo, out.ctypes.data_as(ctypes.c_void_p)) == 0
      want = np.clip(fixed_point.multiply_by_quantized_multiplier((a + o1) * (b + o2), mult,
                                                                  shift) + zo, -128, 127)
      np.testing.assert_array_equal(out, want, err_msg=f"{mult:#x} {shift} {o1} {o2} {zo}")
  assert lib.mul_all(1 << 30, -1, -128, 0, 0, out.ctypes.data_as(ctypes.c_void_p)) == -1


_M0_ROWS_MAIN = r"""
#include <stdio.h>
#include "fastgrnn_int8.c"
#include "rows_cases.h"
int main(void) {
  int8_t out[N_ROWS];
  int32_t l, r;
  for (l = 0; l < N_LAYERS; ++l) {
    fc8_sparse_full(&kLayers[l], kX, out);
    for (r = 0; r < kLayers[l].rows; ++r) printf("%d ", out[r]);
    printf("\n");
  }
  return 0;
}
"""


@pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                    reason="needs arm-none-eabi-gcc and qemu-system-arm")
def test_m0_sparse_layer_assembly_is_exact_on_edge_cases(tmp_path):
  """The Cortex-M0's layer function (``fc8_sparse_full``: the row sums and the rows'
  rescale in Thumb-1 assembly, blocks of 32 rows) against ``fixed_point`` on QEMU: rows
  without non-zeros whose bias is the accumulator (int32 extremes within the parser's
  bound, carries across the 16-bit halves, ties of both roundings, negative values) under
  edge multipliers and every shift from −31 to 8 (left shifts within the bound), four
  output offsets; then rows of 0 … 9 non-zeros (every entry into the unrolled loop), of
  255 at the product bound, and random rows, more than one block per layer; dense layers
  (rows in pairs) of odd and even width and row count."""
  from tf_fastgrnn import fixed_point  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(11)
  bound = 2**31 - 2**10
  accs = [0, 1, -1, 2, -2, 0x7fff, 0x8000, -0x8000, 0xffff, 0x10000, -0x10000, 0x10001,
          -0xffff, 0x12345678, -0x12345678, 0x40000000, -0x40000000, bound - 1, -(bound - 1),
          0x7fff0000 - 2**10, -0x7fff0000, 0x00ff00ff, -0x00ff00ff]
  mults = [0, 1, 0x8000, 0xffff, 0x10000, 0x40000000, 0x7fffffff, 0x7fff8000, 0x40008000,
           0x4000ffff] + [fixed_point.quantize_multiplier(r)[0]
                          for r in rng.uniform(0.01, 1.0, 4)]
  x = rng.integers(-128, 128, 255).astype(np.int8)
  x[:4] = [-128, 127, -128, 127]
  layers = []  # (rows of (cols idx, weights), bias, mult, shift, zo)
  for zo in (-128, 0, 5, 127):
    rows, bias, mult, shift = [], [], [], []
    for s in range(-31, 9):
      for a in accs:
        m = mults[len(bias) % len(mults)]
        if s > 0:  # the parser's bound: |bias| 2^shift < 2^31 - 2^10
          a = int(np.clip(a, -(bound >> s), bound >> s))
        rows.append((np.zeros(0, int), np.zeros(0, int)))
        bias.append(a)
        mult.append(m)
        shift.append(s)
    # ties: acc m / 2^31 exactly half-way for both srdhm and the division by 2^e
    for e in range(1, 12):
      for sign in (1, -1):
        rows.append((np.zeros(0, int), np.zeros(0, int)))
        bias.append(sign * ((2 * 7 + 1) << (e - 1)))
        mult.append(2**30)
        shift.append(-e + 1)
    layers.append((rows, bias, mult, shift, zo))
  rows = []
  for n in list(range(10)) + [40, 255, 255, 255, 77]:
    idx = np.sort(rng.choice(255, n, replace=False))
    rows.append((idx, rng.integers(-128, 128, n)))
  rows[-4] = (np.arange(255), np.full(255, -128))
  rows[-3] = (np.arange(255), np.full(255, 127))
  rows += [(np.sort(rng.choice(255, k, replace=False)), None) for k in rng.integers(0, 30, 60)]
  rows = [(i, w if w is not None else rng.integers(-128, 128, len(i))) for i, w in rows]
  n = len(rows)
  layers.append((rows, list(rng.integers(-2**20, 2**20, n)),
                 [fixed_point.quantize_multiplier(r)[0] for r in rng.uniform(0.001, 0.9, n)],
                 list(rng.integers(-20, 1, n)), -3))
  # Dense layers (the M0's rows in pairs; cols odd and even, an odd number of rows in the
  # last block): random weights, rows of -128 and of 127 at the product bound; each row's
  # scale brings its accumulator to about +-90, so that no product goes unseen.
  for n, cols in ((75, 255), (33, 40)):
    w = rng.integers(-128, 128, (n, cols))
    w[0], w[1] = -128, 127
    bias = rng.integers(-2**12, 2**12, n)
    accs = bias + w.astype(np.int64) @ x[:cols].astype(np.int64)
    ms = [fixed_point.quantize_multiplier(90.0 / max(1, abs(int(a)))) for a in accs]
    layers.append((w, list(bias), [int(m) for m, _ in ms], [int(e) for _, e in ms], 9))

  def c_array(values):
    return ("{" + ",".join(str(int(v)) for v in values) + "}").replace(
        "-2147483648", "(-2147483647 - 1)")

  lines = [f"#define N_LAYERS {len(layers)}",
           f"#define N_ROWS {max(len(l[0]) for l in layers)}",
           f"static int8_t kX[] = {c_array(x)};"]
  structs, want = [], []
  for k, (rows, bias, mult, shift, zo) in enumerate(layers):
    lines += [f"static const int32_t kBias{k}[] = {c_array(bias)};",
              f"static const int32_t kMult{k}[] = {c_array(mult)};",
              f"static const int8_t kShift{k}[] = {c_array(shift)};"]
    if isinstance(rows, np.ndarray):  # dense
      lines.append(f"static const int8_t kW{k}[] = {c_array(rows.reshape(-1))};")
      structs.append(f"{{{len(rows)}, {rows.shape[1]}, kW{k}, 0, 0, kBias{k}, kMult{k}, "
                     f"kShift{k}, {zo}, -128, 127}}")
      rows = [(np.arange(rows.shape[1]), wr) for wr in rows]
    else:
      idx = [v for i, _ in rows for v in (len(i), *i)]
      w = [v for _, wr in rows for v in wr] + [0]
      lines += [f"static const uint8_t kIdx{k}[] = {c_array(idx)};",
                f"static const int8_t kW{k}[] = {c_array(w)};"]
      structs.append(f"{{{len(rows)}, 255, kW{k}, 0, kIdx{k}, kBias{k}, kMult{k}, "
                     f"kShift{k}, {zo}, -128, 127}}")
    for (i, wr), b, m, s in zip(rows, bias, mult, shift):
      acc = int(b) + int(np.dot(x[i].astype(np.int64), np.asarray(wr, np.int64)))
      want.append(int(np.clip(int(fixed_point.multiply_by_quantized_multiplier(acc, m, s))
                              + zo, -128, 127)))
  lines.append("static const fastgrnn_int8_fc kLayers[] = {" + ",".join(structs) + "};")
  (tmp_path / "rows_cases.h").write_text("\n".join(lines) + "\n")
  (tmp_path / "rows_main.c").write_text(_M0_ROWS_MAIN)
  fused_dir = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fused")
  elf = str(tmp_path / "rows.elf")
  arch, machine, _ = _CORES["m0"]
  subprocess.run(["arm-none-eabi-gcc", "-std=gnu99", "-Os", *arch, "-DSEMIHOSTING",
                  f"-I{tmp_path}", f"-I{fused_dir}", "-T", os.path.join(ARMRUN, "m0.ld"),
                  "-nostartfiles", "-Wl,--gc-sections", "--specs=nano.specs",
                  "--specs=rdimon.specs", "-o", elf, os.path.join(CORTEX_M, "startup.c"),
                  str(tmp_path / "rows_main.c")], check=True, capture_output=True)
  out = subprocess.run(["timeout", "300", "qemu-system-arm", *machine, "-nographic",
                        "-monitor", "none", "-serial", "none", "-semihosting-config",
                        "enable=on,target=native", "-kernel", elf],
                       check=True, capture_output=True, text=True).stdout
  got = [int(v) for v in out.split()]
  assert len(got) == len(want), (len(got), len(want))
  bad = [(i, g, w) for i, (g, w) in enumerate(zip(got, want)) if g != w]
  assert not bad, f"{len(bad)} of {len(want)} differ, first {bad[:5]}"
  assert len(set(want)) > 100  # the cases reach most of the int8 range
