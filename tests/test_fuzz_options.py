"""The fused kernel's options are data from outside: the parser refuses every value the
kernel's int32 arithmetic could overflow on (explicit blobs), and a bounded fuzz run of
the parser and kernel under AddressSanitizer + UndefinedBehaviorSanitizer finds nothing
(tests/fuzz/: the target, its Makefile, the seed corpus; docs/fused_kernel.md has the
longer libFuzzer run)."""

import ctypes
import os
import re
import shutil
import struct
import subprocess

import numpy as np
import pytest

from tests.conftest import REPO
from tests.test_fused import kernel  # noqa: F401  pylint: disable=unused-import
from tf_fastgrnn import fused

FUZZ = REPO / "tests" / "fuzz"
OK, ERR_FORMAT, ERR_VALUE = 0, -4, -7
HALF = 1 << 30  # QuantizeMultiplier(0.5): multiplier 2^30, shift 0


def _blob(fc_bias=0, fc_shift=-1, term=1 << 19, mul_shift=-1, d=1, w=None, idx=None,
          nnz=None, version=fused.OPTIONS_VERSION, sparse_flags=None):
  """A FastGRNN blob (plain) with H = C = 1 and D = ``d`` inputs, every value explicit.

  The gate's stored bias term must be the one the parser computes from gate_bias = 1 and
  gate_add (in2_offset 0, in2_mult 2^30, in2_shift 0): (1 + 0) 2^20 2^30 / 2^31 = 2^19.
  ``fc_bias``/``fc_shift``: the W layer's bias and shift; ``mul_shift``: z*h's out_shift.
  W is dense (``w``: its ``d`` weights, all 1 by default) unless ``idx`` is given: then
  sparse rows (flag bit 16), ``idx`` its one row's count and column indices, ``w`` the
  non-zeros, ``nnz`` the count stored (len(w) by default). ``sparse_flags`` overrides
  flag bits 16 and up.
  """
  if w is None:
    w = [1] * (d if idx is None else max(idx[0], 0))
  if idx is not None and nnz is None:
    nnz = len(w)
  if sparse_flags is None:
    sparse_flags = 0 if idx is None else 1
  flags = (0b010111  # gate_bias, update_bias, gate_table, coef_table
           | 1 << 6  # gate_bias_term
           | 0b111111 << 8  # pre, gate_add, update_add, zh_mul, ch_mul, out_add
           | sparse_flags << 16)
  i32 = [fused.OPTIONS_MAGIC, version, 1, d, 1, 1, 1, 1, flags]
  # W, U, classifier: rows, cols, out_offset, nnz (-1: dense), bias, mult
  i32 += [1, d, 0, -1 if idx is None else nnz, fc_bias, HALF]
  for _ in range(2):
    i32 += [1, 1, 0, -1, 0, HALF]
  for _ in range(6):  # in1_offset, in2_offset, in1_mult, in2_mult, out_mult, out_offset
    i32 += [0, 0, HALF, HALF, HALF, 0]
  i32 += [term]
  i8 = [-128, 127, fc_shift]  # W: act_min, act_max, shift, (idx,) w
  i8 += ([] if idx is None else [v - 256 if v > 127 else v for v in idx]) + list(w)
  for _ in range(2):
    i8 += [-128, 127, -1, 1]
  for k in range(6):  # in1_shift, in2_shift, out_shift, act_min, act_max
    i8 += [0, 0, mul_shift if k == 3 else -1, -128, 127]
  i8 += [1, 1]  # gate_bias, update_bias
  i8 += list(range(-128, 128)) * 2  # gate_table, coef_table: identity
  return struct.pack(f"<{len(i32)}i", *i32) + np.array(i8, np.int8).tobytes()


def _edge(cols):
  """The largest |FC bias| fc_row_ok accepts with ``cols`` inputs and shift <= 0."""
  return (1 << 31) - (1 << 10) - cols * (1 << 14) - 1


def test_parser_refuses_values_the_kernel_would_overflow_on(kernel):
  assert fused.parse_options(kernel, _blob())[0] == OK
  assert fused.parse_options(kernel, _blob(version=2))[0] == ERR_FORMAT  # v3 only
  # A stored bias term other than the computed one: 2 * term overflowed int32 in the
  # fast path (UBSan, fastgrnn_int8.c term_loop), and any other value broke bit-exactness.
  assert fused.parse_options(kernel, _blob(term=(1 << 30) + 1))[0] == ERR_VALUE
  assert fused.parse_options(kernel, _blob(term=(1 << 19) + 1))[0] == ERR_VALUE
  # An FC accumulator |bias| + cols 2^14 (here cols = 1), left-shifted, below 2^31 - 2^10.
  edge = (1 << 31) - (1 << 10) - (1 << 14) - 1
  for bias in (edge, -edge):
    assert fused.parse_options(kernel, _blob(fc_bias=bias))[0] == OK
  for bias in (edge + 1, -edge - 1, 2**31 - 1, -2**31):
    assert fused.parse_options(kernel, _blob(fc_bias=bias))[0] == ERR_VALUE, bias
  assert fused.parse_options(kernel, _blob(fc_bias=1 << 20, fc_shift=10))[0] == OK
  assert fused.parse_options(kernel, _blob(fc_bias=1 << 20, fc_shift=11))[0] == ERR_VALUE
  # MUL: 255^2 2^shift must stay below 2^31 - 2^10: shift 15 at most.
  assert fused.parse_options(kernel, _blob(mul_shift=15))[0] == OK
  assert fused.parse_options(kernel, _blob(mul_shift=16))[0] == ERR_VALUE


def test_sparse_rows_are_bounded_as_dense_ones(kernel):
  """Options v3's sparse rows (flag bit 16 + k): the accumulator bound counts every
  column (a row's non-zeros are at most cols: the bound of its dense form, the one
  extract applies), and the rows must index inside x exactly nnz times."""
  parse = lambda **kw: fused.parse_options(kernel, _blob(**kw))[0]
  assert parse(d=2, idx=[2, 0, 1]) == OK
  assert parse(d=2, idx=[0], w=[]) == OK  # an empty row
  # One non-zero of two columns: the bound is still the two columns' (as extract's).
  edge = _edge(2)
  for bias in (edge, -edge):
    assert parse(d=2, idx=[1, 1], fc_bias=bias) == OK
  for bias in (edge + 1, -edge - 1, 2**31 - 1, -2**31):
    assert parse(d=2, idx=[1, 1], fc_bias=bias) == ERR_VALUE, bias
  assert parse(d=2, idx=[1, 1], fc_bias=1 << 20, fc_shift=10) == OK
  assert parse(d=2, idx=[1, 1], fc_bias=1 << 20, fc_shift=11) == ERR_VALUE
  # Indices: below cols, strictly ascending; counts: adding up to nnz.
  assert parse(d=2, idx=[1, 2]) == ERR_VALUE  # index == cols: x[2] is past x
  assert parse(d=2, idx=[1, 255]) == ERR_VALUE
  assert parse(d=2, idx=[2, 1, 0]) == ERR_VALUE  # descending
  assert parse(d=2, idx=[2, 0, 0]) == ERR_VALUE  # a column twice
  assert parse(d=2, idx=[1, 0, 0], w=[1, 1], nnz=2) == ERR_VALUE  # counts 1 of nnz 2
  assert parse(d=2, idx=[3, 0, 1], w=[1, 1], nnz=2) == ERR_VALUE  # count 3 > nnz 2
  # The flag: only with a count (not dense, nnz -1), only for layers that exist, and
  # only for up to 255 columns (one-byte indices).
  assert parse(d=2, sparse_flags=1) == ERR_VALUE
  assert parse(d=2, idx=[2, 0, 1], sparse_flags=1 | 1 << 3) == ERR_VALUE
  assert parse(d=255, idx=[1, 254]) == OK
  assert parse(d=256, idx=[1, 0]) == ERR_VALUE
  assert parse(d=256) == OK  # dense: any cols


def _ram_bytes(library_path, blob):
  """fastgrnn_int8_options_ram_bytes of ``blob`` (copied to aligned memory)."""
  lib = ctypes.CDLL(library_path)
  lib.fastgrnn_int8_options_ram_bytes.restype = ctypes.c_int32
  copy_ = np.zeros(len(blob) // 4 + 1, np.int32).view(np.uint8)[:len(blob)]
  copy_[:] = np.frombuffer(blob, np.uint8)
  return lib.fastgrnn_int8_options_ram_bytes(copy_.ctypes.data_as(ctypes.c_void_p),
                                             ctypes.c_uint32(len(blob)))


def test_the_seed_corpus_is_version_3_and_holds_every_form(kernel):
  """Every seed parses (the fuzz loop refuses to start otherwise), and together they hold
  every form of options v3: convert_fused's zero-copy default, sparse rows alone and
  mixed with dense, SMALLEST_FORM (COMPACT + EXPAND over packed), COMPACT over sparse
  rows; both cells, full and low rank."""
  seeds = sorted((FUZZ / "corpus").glob("*.bin"))
  assert seeds
  forms = set()
  for path in seeds:
    blob = path.read_bytes()
    assert fused.parse_options(kernel, blob)[0] == OK, path.name
    _, version, cell, _, _, _, wf, uf, flags = struct.unpack("<9i", blob[:36])
    assert version == fused.OPTIONS_VERSION == 3, path.name
    n_fc = wf + uf + 1
    sparse = (flags >> 16) & ((1 << n_fc) - 1)
    compact, expand = bool(flags & fused.OPT_COMPACT), bool(flags & fused.OPT_EXPAND)
    terms = (flags >> 6) & 3
    zero_copy = not compact and not expand and terms == (flags & 3)
    forms.add(("fastgrnn" if cell == 1 else "fastrnn", "low" if wf + uf > 2 else "full"))
    if zero_copy:
      assert _ram_bytes(kernel, blob) == 0, path.name
      forms.add("zero-copy " + ("sparse" if sparse == (1 << n_fc) - 1 else
                                "mixed" if sparse else "dense"))
    if compact and expand and not terms:
      forms.add("smallest")
    if compact and sparse:
      forms.add("compact sparse")
  assert forms >= {("fastgrnn", "full"), ("fastgrnn", "low"), ("fastrnn", "full"),
                   ("fastrnn", "low"), "zero-copy dense", "zero-copy sparse",
                   "zero-copy mixed", "smallest", "compact sparse"}, forms


def _sanitizer_compiler(tmp_path):
  """The first of $CC, gcc, clang that builds and runs a program with ASan + UBSan."""
  probe = tmp_path / "probe.c"
  probe.write_text("int main(void) { return 0; }\n")
  for cc in dict.fromkeys(c for c in (os.environ.get("CC"), "gcc", "clang") if c):
    if shutil.which(cc) is None:
      continue
    exe = tmp_path / f"probe_{cc}"
    built = subprocess.run([cc, "-fsanitize=address,undefined", str(probe), "-o", str(exe)],
                           capture_output=True)
    if built.returncode == 0 and subprocess.run([str(exe)]).returncode == 0:
      return cc
  return None


def test_fuzzing_the_parser_and_kernel_finds_no_sanitizer_report(tmp_path):
  cc = _sanitizer_compiler(tmp_path)
  if cc is None:
    pytest.skip("no C compiler here builds with -fsanitize=address,undefined")
  if shutil.which("make") is None:
    pytest.skip("needs make to build tests/fuzz")
  build = tmp_path / "build"
  made = subprocess.run(["make", "-s", "-C", str(FUZZ), f"BUILD={build}", f"CC={cc}", "loop"],
                        capture_output=True, text=True)
  assert made.returncode == 0, made.stderr
  seeds = sorted(str(p) for p in (FUZZ / "corpus").glob("*.bin"))
  assert len(seeds) >= 5
  env = dict(os.environ, ASAN_OPTIONS="abort_on_error=0:detect_leaks=1",
             UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
  run = subprocess.run([str(build / "fuzz_loop"), "25", "1", *seeds], capture_output=True,
                       text=True, env=env, timeout=120)
  report = run.stderr[-4000:]
  assert run.returncode == 0, report
  assert "runtime error" not in run.stderr and "Sanitizer" not in run.stderr, report
  counts = re.search(r"(\d+) seeds, (\d+) mutants run, (\d+) accepted", run.stderr)
  assert counts, report
  seeds_run, mutants, accepted = (int(v) for v in counts.groups())
  assert seeds_run == len(seeds) and mutants > 1000 and accepted > 0, report



def _with_classifier_bias(tflite_bytes, row, value):
  """The model with its classifier's int32 bias ``row`` set to ``value``."""
  from tensorflow.lite.python import schema_py_generated as schema  # pylint: disable=import-outside-toplevel
  from tensorflow.lite.tools import flatbuffer_utils  # pylint: disable=import-outside-toplevel
  model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_bytes))
  graph = model.subgraphs[0]
  fc = [op for op in graph.operators
        if model.operatorCodes[op.opcodeIndex].builtinCode ==
        schema.BuiltinOperator.FULLY_CONNECTED and int(op.outputs[0]) in graph.outputs]
  assert len(fc) == 1 and len(fc[0].inputs) == 3
  buffer = model.buffers[graph.tensors[int(fc[0].inputs[2])].buffer]
  bias = np.frombuffer(bytes(buffer.data), "<i4").copy()
  bias[row] = value
  buffer.data = np.frombuffer(bias.tobytes(), np.uint8)
  return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def test_extract_refuses_a_classifier_bias_the_parser_would_refuse(kernel):
  from tests.test_fused import _variant  # pylint: disable=import-outside-toplevel
  _, builtin = _variant("fastgrnn_full")
  cls = fused.extract(builtin)["classifier"]
  fold = int(cls["bias"][0]) - int(cls["raw_bias"][0])  # input offset x row sum
  cols, shift = cls["cols"], int(cls["shift"][0])
  assert shift <= 0
  edge = (1 << 31) - (1 << 10) - cols * (1 << 14) - 1  # the largest |folded bias| accepted
  at_edge = _with_classifier_bias(builtin, 0, edge - fold)
  # Every v3 form parses it: plain, convert_fused's zero-copy default, sparse rows stored
  # plain or COMPACT (the parser folds the bias over the row's non-zeros), SMALLEST_FORM.
  for storage, options in (("auto", dict(compact=False)),
                           ("fast:dsp", dict(bias_terms=True, compact=False)),
                           ("sparse", dict(bias_terms=True, compact=False)),
                           ("sparse", dict(compact=True, expand=True)),
                           (fused.SMALLEST_FORM["storage"],
                            {k: v for k, v in fused.SMALLEST_FORM.items() if k != "storage"})):
    ok = fused.extract(at_edge, storage)
    assert ok["classifier"]["bias"][0] == edge
    assert (ok["classifier"]["idx"] is not None) == (storage == "sparse")
    blob = fused.options_blob(ok, **options)
    assert fused.parse_options(kernel, blob)[0] == OK, (storage, options)
  for storage in ("auto", "sparse", "fast:dsp"):
    with pytest.raises(fused.FusedExportError,
                       match=f"bias {edge + 1} with {cols} inputs and shift {shift} may "
                       "overflow"):
      fused.extract(_with_classifier_bias(builtin, 0, edge + 1 - fold), storage)


def test_convert_fused_refuses_dims_the_parser_refuses(kernel):
  """The parser takes D, H, C and every FC layer's rows and cols up to 4096 (ERR_DIMS
  beyond): convert_fused must not write a blob it refuses."""
  from tf_fastgrnn import export, models  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(5)

  def builtin(dim):
    model = models.sequence_classifier("fastgrnn", 2, (2, dim), 2)
    for var in model.weights:
      var.assign(rng.normal(0, 0.01, var.shape))
    return export.convert_step_model(model, rng.normal(0, 1, (4, 2, dim)))

  assert fused.parse_options(kernel, fused.custom_options(
      fused.convert_fused(builtin(4096))))[0] == OK
  wide = builtin(4097)
  with pytest.raises(fused.FusedExportError, match="input_dim 4097: .* at most 4096"):
    fused.convert_fused(wide)
  with pytest.raises(fused.FusedExportError, match="at most 4096"):
    fused.convert_fused(wide, **fused.SMALLEST_FORM)
