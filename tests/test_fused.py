"""The fused int8 FastGRNN/FastRNN kernel (fused/fastgrnn_int8.c) against TFLM.

The C kernel is compiled with the system compiler and driven through ctypes; its h and
logits must equal the builtin int8 step model's in the ``tflite_micro`` runtime byte for
byte at every step of every window, for every cell x rank x storage x activation.
"""

import ctypes
import os
import shutil
import subprocess

import numpy as np
import pytest

from tests.conftest import compiled_kernel
from tf_fastgrnn import export
from tf_fastgrnn import fused
from tf_fastgrnn import models
from tf_fastgrnn import quantization
from tf_fastgrnn import runtime
from tests import helpers

T, D, H, C = 5, 4, 8, 3
STEPS, WINDOWS = 12, 5

_CC = os.environ.get("CC", "cc")
pytestmark = pytest.mark.skipif(shutil.which(_CC) is None,
                                reason=f"no C compiler ({_CC}) to build the fused kernel")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
  return compiled_kernel(tmp_path_factory)


def _model(rng, cell, sparse=False, **kwargs):
  model = models.sequence_classifier(cell, H, (T, D), C, **kwargs)
  for var in model.weights:
    value = rng.normal(0, 0.5, var.shape)
    if sparse and any(k in var.name for k in ("/W", "/U")):
      value[rng.random(var.shape) < 0.6] = 0.0  # a pruned matrix
    var.assign(value)
  return model


# cell, cell kwargs, pruned. Every activation the cells accept, both cells, full and
# low-rank W/U.
_FLOAT_VARIANTS = {
    "fastgrnn_lowrank_sparse": ("fastgrnn", {"w_rank": 2, "u_rank": 4}, True),
    "fastgrnn_full": ("fastgrnn", {}, False),
    "fastgrnn_full_sparse": ("fastgrnn", {}, True),
    "fastgrnn_urank": ("fastgrnn", {"u_rank": 3}, False),
    "fastgrnn_sigmoid_sigmoid": ("fastgrnn", {"update_activation": "sigmoid"}, False),
    "fastgrnn_tanh_gate": ("fastgrnn", {"gate_activation": "tanh", "u_rank": 4}, False),
    "fastgrnn_relu": ("fastgrnn", {"update_activation": "relu", "w_rank": 2}, False),
    "fastgrnn_quantized": ("fastgrnn", {"gate_activation": "quantized_sigmoid",
                                        "update_activation": "quantized_tanh"}, True),
    "fastrnn_full": ("fastrnn", {}, False),
    "fastrnn_lowrank_sparse": ("fastrnn", {"w_rank": 2, "u_rank": 3}, True),
    "fastrnn_relu": ("fastrnn", {"update_activation": "relu"}, False),
    "fastrnn_quantized_tanh": ("fastrnn", {"update_activation": "quantized_tanh"}, False),
    "fastrnn_sigmoid": ("fastrnn", {"update_activation": "sigmoid", "u_rank": 4}, False),
}


def _variant(variant, seed_offset=0):
  """``(rng, builtin int8 step model)`` of a ``_FLOAT_VARIANTS`` entry, its weights drawn
  from its own seed (``seed_offset`` + its index); ``rng`` goes on for the windows."""
  rng = np.random.default_rng(seed_offset + sorted(_FLOAT_VARIANTS).index(variant))
  cell, kwargs, sparse = _FLOAT_VARIANTS[variant]
  return rng, export.convert_step_model(_model(rng, cell, sparse, **kwargs),
                                        rng.normal(0, 1.5, (16, T, D)))


def _windows(rng):
  return rng.normal(0, 1.5, (WINDOWS, STEPS, D)).astype(np.float32)


def _assert_bit_exact(tflite_bytes, library, windows):
  want = runtime.TFLMStepRunner(tflite_bytes).run_windows(windows)
  # The comparison means something only if the state moves.
  assert len(np.unique(want["h_q"])) > 10
  for storage in ("auto", "dense", "packed", "sparse", "fast:dsp", "fast:scalar"):
    got = fused.FusedStepRunner(tflite_bytes, library, storage).run_windows(windows)
    for key in ("h_q", "logits_q"):
      mismatch = np.argwhere(got[key] != want[key])
      assert not len(mismatch), (
          f"{storage}: {key} differs at (window, step, unit) {mismatch[:5].tolist()} of "
          f"{len(mismatch)}")


@pytest.mark.parametrize("variant", sorted(_FLOAT_VARIANTS))
def test_fused_kernel_is_bit_exact_with_tflm(variant, kernel):
  rng, tflite_bytes = _variant(variant)
  _assert_bit_exact(tflite_bytes, kernel, _windows(rng))


@pytest.mark.parametrize("cell,kwargs", [("fastgrnn", {"w_rank": 2, "u_rank": 4}),
                                         ("fastrnn", {"u_rank": 3})])
def test_fused_kernel_is_bit_exact_with_tflm_on_qat_exports(cell, kwargs, kernel):
  rng = np.random.default_rng(7)
  model = _model(rng, cell, sparse=True, **kwargs)
  windows = rng.normal(0, 1.5, (32, T, D)).astype(np.float32)
  qat = quantization.quantize_model(model, windows)
  twin, plan = quantization.export_inputs(qat)
  tflite_bytes = export.convert_step_model(twin, windows, plan=plan)
  _assert_bit_exact(tflite_bytes, kernel, _windows(rng))


@pytest.fixture(scope="module")
def small_export():
  rng = np.random.default_rng(3)
  model = _model(rng, "fastgrnn", sparse=True, u_rank=4)
  return export.convert_step_model(model, rng.normal(0, 1.5, (16, T, D)))


def test_params_from_the_graph(small_export):
  params = fused.extract(small_export)
  assert params["cell"] == fused.FASTGRNN
  assert (params["input_dim"], params["hidden_dim"], params["num_classes"]) == (D, H, C)
  assert [fc["rows"] for fc in params["u"]] == [4, H] and len(params["w"]) == 1
  for table in ("gate_table", "update_table", "coef_table"):
    assert params[table].shape == (256,) and params[table].dtype == np.int8
  # The sigmoid table is monotone and spans most of int8 (the TFLM LOGISTIC output grid
  # is 1/256 with zero point -128).
  gate = params["gate_table"].astype(int)
  assert np.all(np.diff(gate) >= 0) and gate[0] < -100 and gate[-1] > 100
  # Storage: each matrix packed only where smaller than dense, and the packed form holds
  # exactly the non-zeros.
  fcs = params["w"] + params["u"] + [params["classifier"]]
  assert any(fc["mask"] is not None for fc in fcs)  # W [8, 4] at 60 % zeros packs
  for fc in fcs:
    dense = fc["rows"] * fc["cols"]
    if fc["mask"] is None:
      assert fc["w"].size == dense
    else:
      assert fc["mask"].size + fc["w"].size < dense
      assert np.all(fc["w"] != 0)
  for storage in ("dense", "packed"):
    forced = fused.extract(small_export, storage)
    for a, b in zip(forced["u"], params["u"]):
      np.testing.assert_array_equal(a["bias"], b["bias"])


def test_packed_weights_round_trip():
  w = np.array([[0, 3, 0, 0, 0, 0, 0, 0, -5], [1, 0, 0, 0, 0, 0, 0, 0, 0]], np.int8)
  mask, values = fused._pack(w)  # pylint: disable=protected-access
  assert mask.tolist() == [0b10, 0b1, 0b1, 0]
  assert values.tolist() == [3, -5, 1]


def test_sparse_rows_round_trip():
  w = np.array([[0, 3, 0, 0, 0, 0, 0, 0, -5], [0] * 9, [1, 0, 0, 0, 0, 0, 0, 0, 0]], np.int8)
  idx, values = fused._sparse(w)  # pylint: disable=protected-access
  assert idx.tolist() == [2, 1, 8, 0, 1, 0]
  assert values.tolist() == [3, -5, 1]


def test_fast_storage_follows_the_cost_model():
  # An 80 x 40 matrix: without SIMD sparse rows win at 70 % zeros, with SIMD at 90 %
  # but not at 25 %; on Armv6-M (dense rows in pairs) at 70 % but not at 10 %.
  for core, nnz, want in (("scalar", 960, "sparse"), ("dsp", 320, "sparse"),
                          ("dsp", 2400, "dense"), ("m0", 960, "sparse"),
                          ("m0", 2880, "dense")):
    costs = {k: fused.storage_cost(80, 40, nnz, k, core) for k in ("dense", "sparse")}
    assert min(costs, key=costs.get) == want, (core, nnz, costs)


def test_refuses_models_it_cannot_compute_exactly(rng):
  lstm = models.sequence_classifier("lstm", H, (T, D), C)
  tflite_bytes = export.convert_step_model(lstm, rng.normal(0, 1, (8, T, D)))
  with pytest.raises(fused.FusedExportError, match="signature"):
    fused.extract(tflite_bytes)
  gru = models.sequence_classifier("gru", H, (T, D), C)
  tflite_bytes = export.convert_step_model(gru, rng.normal(0, 1, (8, T, D)))
  with pytest.raises(fused.FusedExportError):
    fused.extract(tflite_bytes)
  with pytest.raises(ValueError, match="storage"):
    fused.extract(export.convert_step_model(_model(rng, "fastrnn"), rng.normal(
        0, 1, (8, T, D))), storage="csr")


def test_kernel_error_codes(small_export, kernel):
  runner = fused.FusedStepRunner(small_export, kernel)
  lib = ctypes.CDLL(kernel)
  need = lib.fastgrnn_int8_scratch_bytes(
      ctypes.byref(runner._c))
  assert need == 2 * H + 4
  buf = np.zeros(need, np.int8)
  i8 = lambda a: a.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
  x, h = np.zeros(D, np.int8), np.zeros(H, np.int8)
  small = fused._Scratch(i8(buf), need - 1)  # pylint: disable=protected-access
  assert lib.fastgrnn_int8_step(ctypes.byref(runner._c), i8(x), i8(h), i8(h), None,  # pylint: disable=protected-access
                                ctypes.byref(small)) == -3
  enough = fused._Scratch(i8(buf), need)  # pylint: disable=protected-access
  assert lib.fastgrnn_int8_step(ctypes.byref(runner._c), None, i8(h), i8(h), None,  # pylint: disable=protected-access
                                ctypes.byref(enough)) == -1
  assert lib.fastgrnn_int8_step(None, i8(x), i8(h), i8(h), None, ctypes.byref(enough)) == -1
  bad = fused._Params.from_buffer_copy(runner._c)  # pylint: disable=protected-access
  bad.u_factors = 3
  assert lib.fastgrnn_int8_step(ctypes.byref(bad), i8(x), i8(h), i8(h), None,
                                ctypes.byref(enough)) == -2
  # In place (h_out == h_in) and without logits gives the same state.
  h_in = np.full(H, 5, np.int8)
  h_ref, _ = runner.step(x, h_in.copy())
  assert lib.fastgrnn_int8_step(ctypes.byref(runner._c), i8(x), i8(h_in), i8(h_in), None,  # pylint: disable=protected-access
                                ctypes.byref(enough)) == 0
  np.testing.assert_array_equal(h_in, h_ref.reshape(-1))


@pytest.mark.slow
def test_fused_kernel_bit_exact_on_a_model_trained_on_real_har(kernel, tmp_path):
  """A small FastGRNN trained a few epochs on the installed HAR data (6 classes)."""
  import data  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import training  # pylint: disable=import-outside-toplevel
  ds = data.load_dataset("har6", seed=0)
  pick = np.random.default_rng(0)
  train = pick.choice(len(ds.x_train), 1200, replace=False)
  x_tr, y_tr = ds.x_train[train, ::4], ds.y_train[train]
  x_te = ds.x_test[pick.choice(len(ds.x_test), 24, replace=False), ::4]
  training.set_seed(0)
  model = models.sequence_classifier("fastgrnn", 16, x_tr.shape[1:], 6, u_rank=4)
  training.fit(
      model, (x_tr, y_tr), None, helpers.recipe(epochs=3, batch_size=32, learning_rate=0.01),
      options=helpers.options(verbose=0))
  tflite_bytes = export.convert_step_model(model, x_tr[:128])
  want = runtime.TFLMStepRunner(tflite_bytes).run_windows(x_te)
  got = fused.FusedStepRunner(tflite_bytes, kernel).run_windows(x_te)
  np.testing.assert_array_equal(got["h_q"], want["h_q"])
  np.testing.assert_array_equal(got["logits_q"], want["logits_q"])
  assert len(np.unique(want["logits_q"][:, -1].argmax(-1))) > 1  # several classes
  fused.write_standalone(tflite_bytes, str(tmp_path))
  h_q, logits_q = _run_standalone(str(tmp_path), want["x_q"], x_te.shape[1], 16, 6)
  np.testing.assert_array_equal(h_q, want["h_q"])
  np.testing.assert_array_equal(logits_q, want["logits_q"])


def _run_standalone(folder, windows_q, steps, hidden, classes, flags=()):
  exe = os.path.join(folder, "example_main")
  subprocess.run([_CC, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", *flags, "-o", exe,
                  *(os.path.join(folder, f) for f in ("model.c", "fastgrnn_int8.c",
                                                      "example_main.c"))],
                 check=True, capture_output=True)
  out = subprocess.run([exe, str(steps)], input=windows_q.tobytes(), capture_output=True,
                       check=True).stdout
  out = np.frombuffer(out, np.int8).reshape(len(windows_q), steps, hidden + classes)
  return out[..., :hidden], out[..., hidden:]


@pytest.mark.parametrize("cell,kwargs", [("fastgrnn", {"u_rank": 4}),
                                         ("fastrnn", {"w_rank": 2})])
def test_standalone_c_model_is_bit_exact_with_tflm(cell, kwargs, tmp_path):
  rng = np.random.default_rng(11)
  model = _model(rng, cell, sparse=True, **kwargs)
  tflite_bytes = export.convert_step_model(model, rng.normal(0, 1.5, (16, T, D)))
  paths = fused.write_standalone(tflite_bytes, str(tmp_path))
  assert sorted(os.path.basename(p) for p in paths) == sorted(fused.STANDALONE_FILES)
  windows = _windows(rng)
  want = runtime.TFLMStepRunner(tflite_bytes).run_windows(windows)
  # Each build with its own storage: dense + bias terms, and the size build's packed.
  for flags in ((), ("-DFASTGRNN_INT8_SMALL",), ("-DFASTGRNN_INT8_SIMD_EMULATE",)):
    h_q, logits_q = _run_standalone(str(tmp_path), want["x_q"], STEPS, H, C, flags)
    np.testing.assert_array_equal(h_q, want["h_q"])
    np.testing.assert_array_equal(logits_q, want["logits_q"])
  header = (tmp_path / "model.h").read_text()
  assert f"#define MODEL_HIDDEN_DIM {H}" in header
  with pytest.raises(FileExistsError):
    fused.write_standalone(tflite_bytes, str(tmp_path))


def test_size_build_is_bit_exact_too(small_export, tmp_path_factory):
  """-DFASTGRNN_INT8_SMALL changes only inlining: same bytes."""
  library = compiled_kernel(tmp_path_factory, flags=("-O2", "-DFASTGRNN_INT8_SMALL"))
  windows = _windows(np.random.default_rng(5))
  want = runtime.TFLMStepRunner(small_export).run_windows(windows)
  got = fused.FusedStepRunner(small_export, library).run_windows(windows)
  np.testing.assert_array_equal(got["h_q"], want["h_q"])
  np.testing.assert_array_equal(got["logits_q"], want["logits_q"])


# The kernel's builds: the default one (fast elementwise passes, rows in pairs/fours on
# SIMD targets), the SIMD code paths on portable C (what an Armv7E-M build runs, minus the
# inline assembly), and the size build (generic passes only).
_BUILDS = {"simd_emulate": ("-O2", "-DFASTGRNN_INT8_SIMD_EMULATE"),
           "small": ("-O2", "-DFASTGRNN_INT8_SMALL")}


@pytest.fixture(scope="module", params=sorted(_BUILDS))
def build(request, tmp_path_factory):
  return compiled_kernel(tmp_path_factory, flags=_BUILDS[request.param])


@pytest.mark.parametrize("variant", ["fastgrnn_lowrank_sparse", "fastgrnn_relu",
                                     "fastrnn_lowrank_sparse", "fastgrnn_urank"])
def test_every_build_is_bit_exact(variant, build):
  rng, tflite_bytes = _variant(variant)
  _assert_bit_exact(tflite_bytes, build, _windows(rng))


@pytest.mark.parametrize("cell,hidden,dim,kwargs", [("fastgrnn", 7, 5, {"u_rank": 3}),
                                                    ("fastrnn", 11, 3, {"w_rank": 2}),
                                                    ("fastgrnn", 13, 6, {})])
def test_odd_sizes_are_bit_exact(cell, hidden, dim, kwargs, kernel, build):
  """Row counts that are not multiples of 4 or 2, columns that are not multiples of 4."""
  rng = np.random.default_rng(hidden)
  model = models.sequence_classifier(cell, hidden, (T, dim), C, **kwargs)
  for var in model.weights:
    var.assign(rng.normal(0, 0.5, var.shape))
  tflite_bytes = export.convert_step_model(model, rng.normal(0, 1.5, (16, T, dim)))
  windows = rng.normal(0, 1.5, (WINDOWS, STEPS, dim)).astype(np.float32)
  for library in (kernel, build):
    _assert_bit_exact(tflite_bytes, library, windows)


def test_bias_terms_are_optional(small_export, kernel):
  """gate_bias_term / update_bias_term are what the kernel computes without them."""
  params = fused.extract(small_export)
  for k in ("gate_bias_term", "update_bias_term"):
    assert params[k].dtype == np.int32 and params[k].shape == (H,)
  windows = _windows(np.random.default_rng(9))
  want = runtime.TFLMStepRunner(small_export).run_windows(windows)
  runner = fused.FusedStepRunner(small_export, kernel)
  null = ctypes.POINTER(ctypes.c_int32)()
  runner._c.gate_bias_term = runner._c.update_bias_term = null  # pylint: disable=protected-access
  got = runner.run_windows(windows)
  np.testing.assert_array_equal(got["h_q"], want["h_q"])
  np.testing.assert_array_equal(got["logits_q"], want["logits_q"])
  assert fused.param_bytes(params, with_terms=True) == fused.param_bytes(params) + 8 * H


@pytest.fixture(scope="module")
def equiv(tmp_path_factory):
  """tests/fastgrnn_int8_equiv.c: the fast passes against the generic ones, exhaustively."""
  path = str(tmp_path_factory.mktemp("equiv") / "libequiv.so")
  source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fastgrnn_int8_equiv.c")
  subprocess.run([_CC, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-shared", "-fPIC",
                  f"-I{fused.KERNEL_DIR}", source, "-o", path], check=True, capture_output=True)
  lib = ctypes.CDLL(path)
  for name in ("equiv_add", "equiv_bias", "equiv_grnn", "equiv_rnn", "equiv_terms",
               "equiv_mul", "equiv_fc"):
    getattr(lib, name).restype = ctypes.c_int32
  return lib


def _scales(rng, n):
  return [float(np.float32(v)) for v in np.exp(rng.uniform(np.log(1e-3), 0.0, n))]


def _random_add(rng, equal_scales=False):
  """ADD params as fused.extract derives them, for random scales and zero points."""
  sa, sb, so = _scales(rng, 3)
  if equal_scales:
    sb = sa
  z1, z2, zo = (int(v) for v in rng.integers(-128, 128, 3))
  (m1, e1), (m2, e2), (mo, eo) = fused._addsub_constants(
      sa, sb, so, False)
  return {"in1_offset": -z1, "in2_offset": -z2, "out_offset": zo, "act_min": -128,
          "act_max": 127, "in1_mult": m1, "in1_shift": e1, "in2_mult": m2, "in2_shift": e2,
          "out_mult": mo, "out_shift": eo}, sb > sa


def _random_mul(rng):
  s1, s2 = _scales(rng, 2)
  so = s1 * s2 * 2.0 ** rng.uniform(0, 10)
  z1, z2, zo = (int(v) for v in rng.integers(-128, 128, 3))
  m, e = fused._quantize_multiplier(s1 * s2 / so)  # pylint: disable=protected-access
  return {"in1_offset": -z1, "in2_offset": -z2, "out_offset": zo, "act_min": -128,
          "act_max": 127, "in1_mult": 0, "in1_shift": 0, "in2_mult": 0, "in2_shift": 0,
          "out_mult": int(m.reshape(-1)[0]), "out_shift": int(e.reshape(-1)[0])}


def test_fast_passes_equal_the_generic_ones(equiv):
  """Every int8 operand pair, both operand orders (which ADD operand has the larger
  scale), equal scales, bias terms given or not, both cells' output ops."""
  rng = np.random.default_rng(13)
  table = rng.integers(-128, 128, 256).astype(np.int8)
  other = rng.integers(-128, 128, 256).astype(np.int8)
  i8 = lambda a: a.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
  orders, grnn_cases = set(), 0
  for case in range(12):
    add, second_larger = _random_add(rng, equal_scales=case % 4 == 0)
    orders.add(second_larger)
    binop = fused._Binop(**add)  # pylint: disable=protected-access
    assert equiv.equiv_add(ctypes.byref(binop)) == 0, add
    assert equiv.equiv_terms(ctypes.byref(binop)) == 0, add
    term = fused._bias_term(
        np.arange(-128, 128).astype(np.int8), add)
    assert equiv.equiv_bias(ctypes.byref(binop), term.ctypes.data_as(
        ctypes.POINTER(ctypes.c_int32)), i8(table)) == 0, add
    assert equiv.equiv_bias(ctypes.byref(binop), None, i8(table)) == 0, add
    assert equiv.equiv_rnn(ctypes.byref(binop), i8(table)) == 0, add
    params = fused._Params()  # pylint: disable=protected-access
    params.zh_mul = fused._Binop(**_random_mul(rng))  # pylint: disable=protected-access
    params.ch_mul = fused._Binop(**_random_mul(rng))  # pylint: disable=protected-access
    for mul in (params.zh_mul, params.ch_mul):
      assert equiv.equiv_mul(ctypes.byref(mul)) in (0, -1)
    params.out_add, params.coef_table = binop, i8(table)
    got = equiv.equiv_grnn(ctypes.byref(params), i8(other))
    assert got in (0, -1), add  # -1: a MUL with multiplier >= 1/2 takes the generic pass
    grnn_cases += got == 0
  assert orders == {False, True} and grnn_cases >= 8


def test_fast_fc_requantisation_equals_the_generic_one(equiv):
  """Every accumulator in [-2^21, 2^21] (all residues of the shifts, ties included) and
  random ones over the whole int32 range, for random per-channel multipliers and shifts
  (positive shifts take the generic form inside the fast path)."""
  rng = np.random.default_rng(17)
  acc = np.concatenate([np.arange(-2**21, 2**21 + 1),
                        rng.integers(-2**31, 2**31, 100000)]).astype(np.int32)
  ptr = acc.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
  for _ in range(8):
    m, e = fused._quantize_multiplier(
        2.0 ** rng.uniform(-24, 0.5))
    zo = int(rng.integers(-128, 128))
    assert equiv.equiv_fc(ptr, len(acc), int(m.reshape(-1)[0]), int(e.reshape(-1)[0]), zo) == 0
