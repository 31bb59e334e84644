"""model_int8_fused.tflite: the builtin step model as one FASTGRNN_INT8 custom op.

The Python ``tflite_micro`` runtime cannot run a custom op it was not built with, so CI
checks the two halves the TFLM op is made of: the export's custom options parsed by the
C parser (fused/fastgrnn_int8_options.c, no TFLM headers) and stepped by the C kernel must
give the builtin model's h and logits in the ``tflite_micro`` runtime byte for byte;
``tflm_app``'s ``make test FUSED=1`` runs the .tflite itself through TFLM.
"""

import ctypes
import struct

import numpy as np
import pytest

from tf_fastgrnn import export
from tf_fastgrnn import fused
from tf_fastgrnn import models
from tf_fastgrnn import runtime
from tests.test_fused import _FLOAT_VARIANTS
from tests.test_fused import _model
from tests.test_fused import _variant
from tests.test_fused import _windows
from tests.test_fused import C, D, H, T
from tests.test_fused import kernel  # noqa: F401  pylint: disable=unused-import
from tests.test_fused import pytestmark  # noqa: F401  (skip without a C compiler)


def _assert_same(got, want, what):
  for key in ("h_q", "logits_q"):
    mismatch = np.argwhere(got[key] != want[key])
    assert not len(mismatch), (f"{what}: {key} differs at (window, step, unit) "
                               f"{mismatch[:5].tolist()} of {len(mismatch)}")


def _dense(fc):
  """An extracted FC's weights as the dense [rows, cols] int8 matrix."""
  if fc.get("idx") is not None:
    dense, at, k = np.zeros((fc["rows"], fc["cols"]), np.int8), 0, 0
    for r in range(fc["rows"]):
      n = int(fc["idx"][at])
      dense[r, fc["idx"][at + 1:at + 1 + n]] = fc["w"][k:k + n]
      at, k = at + 1 + n, k + n
    return dense
  if fc["mask"] is None:
    return fc["w"].reshape(fc["rows"], fc["cols"])
  bits = np.unpackbits(fc["mask"].astype(np.uint8), bitorder="little").reshape(
      fc["rows"], -1)[:, :fc["cols"]].astype(bool)
  dense = np.zeros((fc["rows"], fc["cols"]), np.int8)
  dense[bits] = fc["w"]
  return dense


def _assert_decoded(runner, params, expand):
  """What the C parser decoded (tables, per-row shifts/biases, expanded rows, bias terms)
  equals ``extract``'s parameters byte for byte."""
  c = runner._c  # pylint: disable=protected-access
  for k in fused._ARRAYS:  # pylint: disable=protected-access
    n = params["hidden_dim"] if k.endswith("bias") else 256
    if params[k] is None:
      assert not getattr(c, k), k
    else:
      assert np.array_equal(np.ctypeslib.as_array(getattr(c, k), (n,)), params[k]), k
  fcs = [c.w[i] for i in range(len(params["w"]))] + [c.u[i] for i in range(
      len(params["u"]))] + [c.classifier]
  for got, want in zip(fcs, params["w"] + params["u"] + [params["classifier"]]):
    for k, n in (("bias", got.rows), ("mult", got.rows), ("shift", got.rows)):
      assert np.array_equal(np.ctypeslib.as_array(getattr(got, k), (n,)), want[k]), k
    if want.get("idx") is not None:  # sparse rows: read in place, never expanded
      assert not got.mask and got.idx
      n = want["idx"].size
      assert np.array_equal(np.ctypeslib.as_array(got.idx, (n,)), want["idx"])
      assert np.array_equal(np.ctypeslib.as_array(got.w, (want["w"].size,)), want["w"])
    elif expand or want["mask"] is None:
      assert not got.mask
      w = np.ctypeslib.as_array(got.w, (got.rows * got.cols,)).reshape(got.rows, got.cols)
      assert np.array_equal(w, _dense(want))
  for k in ("gate_bias_term", "update_bias_term"):
    if expand and params[k] is not None:
      got = np.ctypeslib.as_array(getattr(c, k), (params["hidden_dim"],))
      assert np.array_equal(got, params[k]), k


@pytest.mark.parametrize("variant", sorted(_FLOAT_VARIANTS))
def test_fused_tflite_is_bit_exact_with_the_builtin_model(variant, kernel):
  rng, builtin = _variant(variant, seed_offset=100)
  fused_bytes = fused.convert_fused(builtin)  # the pipeline's form: zero-copy, fast
  # Same interface: tensor names, shapes, I/O order and quantization; one custom op.
  assert runtime.step_io(fused_bytes) == runtime.step_io(builtin)
  assert export.model_ops(fused_bytes) == [f"CUSTOM({fused.CUSTOM_CODE})"]
  assert not export.read_model(fused_bytes).signatureDefs  # 176+ B TFLM never reads
  assert len(fused_bytes) < len(builtin)
  # The parser points int32 arrays into the options: they must start 4-byte aligned.
  assert fused_bytes.find(fused.custom_options(fused_bytes)) % 4 == 0
  windows = _windows(rng)
  want = runtime.TFLMStepRunner(builtin).run_windows(windows)
  assert len(np.unique(want["h_q"])) > 10  # the state moves
  runner = fused.FusedOpRunner(fused_bytes, kernel)
  _assert_decoded(runner, fused.extract(builtin, "fast:dsp"), expand=False)
  assert runner.ram_bytes == 0 == fused.decoded_ram_bytes(fused.extract(builtin))
  _assert_same(runner.run_windows(windows), want, variant)
  # The smallest form (version 2's default) decodes into the arena, same bytes out.
  small = fused.FusedOpRunner(fused.convert_fused(builtin, **fused.SMALLEST_FORM), kernel)
  assert small.ram_bytes == fused.decoded_ram_bytes(
      fused.extract(builtin), bias_terms=False, compact=True, expand=True)
  _assert_decoded(small, fused.extract(builtin), expand=True)
  _assert_same(small.run_windows(windows), want, f"{variant} smallest")


@pytest.mark.parametrize("storage,compact,expand", [
    ("dense", False, False), ("packed", False, False), ("packed", True, False),
    ("packed", False, True), ("dense", True, True), ("sparse", False, False),
    ("sparse", True, True)])
def test_every_encoding_round_trips_through_the_options(storage, compact, expand, kernel):
  rng = np.random.default_rng(21)
  builtin = export.convert_step_model(_model(rng, "fastgrnn", True, w_rank=2, u_rank=4),
                                      rng.normal(0, 1.5, (16, T, D)))
  fused_bytes = fused.convert_fused(builtin, storage=storage, bias_terms=False,
                                    compact=compact, expand=expand)
  windows = _windows(rng)
  want = runtime.TFLMStepRunner(builtin).run_windows(windows)
  runner = fused.FusedOpRunner(fused_bytes, kernel)
  assert (runner.ram_bytes == 0) == (not compact and not expand)  # plain: zero-copy
  assert runner.ram_bytes == fused.decoded_ram_bytes(fused.extract(builtin, storage),
                                                     bias_terms=False, compact=compact,
                                                     expand=expand)
  _assert_decoded(runner, fused.extract(builtin, storage), expand)
  _assert_same(runner.run_windows(windows), want, f"{storage} {compact} {expand}")


@pytest.mark.parametrize("cell,kwargs", [("fastgrnn", {"u_rank": 4}),
                                         ("fastrnn", {"w_rank": 2})])
def test_fastest_form_with_bias_terms_is_bit_exact_too(cell, kwargs, kernel):
  rng = np.random.default_rng(31)
  builtin = export.convert_step_model(_model(rng, cell, True, **kwargs),
                                      rng.normal(0, 1.5, (16, T, D)))
  params = fused.extract(builtin, "dense")
  assert params["update_bias_term"] is not None  # the float models have biases
  fused_bytes = fused.convert_fused(builtin, storage="dense", bias_terms=True,
                                    compact=False, expand=False)
  blob = fused.custom_options(fused_bytes)
  assert len(blob) == len(fused.options_blob(params, bias_terms=False, compact=False)) + 4 * sum(
      params[k].size for k in ("gate_bias_term", "update_bias_term") if params[k] is not None)
  runner = fused.FusedOpRunner(fused_bytes, kernel)
  assert bool(runner._c.update_bias_term) and runner.ram_bytes == 0  # pylint: disable=protected-access
  windows = _windows(rng)
  want = runtime.TFLMStepRunner(builtin).run_windows(windows)
  _assert_same(runner.run_windows(windows), want, f"{cell} dense + bias terms")
  # A term without its bias vector is refused.
  flags = struct.unpack_from("<i", blob, 32)[0]
  if not flags & 1:
    bad = bytearray(blob)
    struct.pack_into("<i", bad, 32, flags | (1 << 6))
    assert _parse(kernel, bytes(bad)) == -7


def _blob_and_params(seed=3, cell="fastgrnn", compact=False, **kwargs):
  rng = np.random.default_rng(seed)
  builtin = export.convert_step_model(_model(rng, cell, True, **kwargs),
                                      rng.normal(0, 1.5, (16, T, D)))
  params = fused.extract(builtin)
  return (fused.custom_options(fused.convert_fused(builtin, storage="auto", bias_terms=False,
                                                   compact=compact, expand=False)),
          params)


def test_options_hold_the_parameters_and_little_else():
  blob, params = _blob_and_params(u_rank=4)
  assert blob == fused.options_blob(params, bias_terms=False, compact=False)
  magic, version = struct.unpack_from("<II", blob)
  assert (magic, version) == (fused.OPTIONS_MAGIC, fused.OPTIONS_VERSION)
  n_fc = len(params["w"]) + len(params["u"]) + 1
  n_binops = sum(params[k] is not None for k in ("pre", "gate_add", "update_add",
                                                 "zh_mul", "ch_mul", "out_add"))
  # Header 9 int32; per FC 4 int32 + 2 int8; per binop 6 int32 + 5 int8; the rest is
  # exactly what param_bytes counts (weights, masks, bias/mult/shift, vectors, tables).
  framing = 9 * 4 + n_fc * (4 * 4 + 2) + n_binops * (6 * 4 + 5)
  assert len(blob) == framing + fused.param_bytes(params)
  # COMPACT: per FC the input offset replaces bias[rows] and 3 bytes + bit streams
  # replace shift[rows]; each table is 7 bytes + its deltas.
  compact, _ = _blob_and_params(u_rank=4, compact=True)
  assert struct.unpack_from("<i", compact, 32)[0] & fused.OPT_COMPACT
  assert len(compact) < len(blob) - 3 * 256 // 2


def test_tables_encode_losslessly_and_compactly():
  x = np.arange(-128, 128)
  tables = {"sigmoid": np.round(255 / (1 + np.exp(-x / 12)) - 128),
            "coef": np.round(127 - 250 / (1 + np.exp(-x / 30))),
            "constant": np.full(256, 5), "identity": x,
            "wild": np.random.default_rng(0).integers(-128, 128, 256)}
  for name, t in tables.items():
    enc = fused.encode_table(t.astype(np.int8))
    assert enc.size <= (7 + 255 * 9 // 8 + 1), name
    if name != "wild":
      assert enc.size < 110, (name, enc.size)
    assert np.array_equal(_decode_table_py(enc), t.astype(np.int8)), name


def _decode_table_py(enc):
  """A Python reading of the COMPACT table format (fused/fastgrnn_int8_options.h), to pin
  the encoder to the documented layout; the C decoder is checked on every variant."""
  first = int(enc[0].astype(np.int8))
  order, start, count, bits = (int(v) for v in enc[[1, 2, 3, 6]])
  dmin = int(np.frombuffer(enc[4:6].tobytes(), "<i2")[0])
  stream = np.unpackbits(enc[7:], bitorder="little")
  out, v, d = [first], first, 0
  for i in range(1, 256):
    if start <= i < start + count:
      k = (i - start) * bits
      e = dmin + int(sum(int(stream[k + b]) << b for b in range(bits)))
      d = d + e if order == 2 else e
      v += d
    out.append(v)
  return np.array(out, np.int8)


def _parse(kernel, blob, misalign=False, ram=None):
  if not misalign and ram is None:
    return fused.parse_options(kernel, blob)[0]
  lib = ctypes.CDLL(kernel)
  buf = np.zeros(len(blob) + 8, np.uint8)
  off = 1 if misalign else 0
  buf[off:off + len(blob)] = np.frombuffer(blob, np.uint8)
  mem = np.zeros(1 + (ram or 0) // 4 + 1, np.int32)
  ram_ptr = mem.ctypes.data + (1 if misalign == "ram" else 0)
  if misalign == "ram":
    buf[:len(blob)] = np.frombuffer(blob, np.uint8)
    off = 0
  return lib.fastgrnn_int8_parse_options(
      ctypes.c_void_p(buf.ctypes.data + off), ctypes.c_uint32(len(blob)),
      ctypes.c_void_p(ram_ptr), ctypes.c_uint32(ram or 0),
      ctypes.byref(fused._Params()))  # pylint: disable=protected-access


def test_parser_refuses_malformed_options(kernel):
  blob, params = _blob_and_params(w_rank=2, u_rank=4)
  assert _parse(kernel, blob) == 0
  err_dims, err_format, err_size, err_align, err_value = -2, -4, -5, -6, -7
  for cut in (0, 3, 4, 40, len(blob) // 2, len(blob) - 1):
    assert _parse(kernel, blob[:cut]) == err_size, cut
  assert _parse(kernel, blob + b"\0") == err_size
  assert _parse(kernel, b"XGRN" + blob[4:]) == err_format
  for version in (1, 2, 4):  # 1: before COMPACT/EXPAND, 2: before sparse rows; unknown
    assert _parse(kernel, blob[:4] + struct.pack("<i", version) + blob[8:]) == err_format
  assert _parse(kernel, blob, misalign=True) == err_align
  hidden = bytearray(blob)
  struct.pack_into("<i", hidden, 16, H + 1)  # hidden_dim no longer matches the FCs
  assert _parse(kernel, bytes(hidden)) == err_dims
  flags = bytearray(blob)
  struct.pack_into("<i", flags, 32, struct.unpack_from("<i", blob, 32)[0] & ~(1 << 12))
  assert _parse(kernel, bytes(flags)) in (err_value, err_size)  # a binop less: all shifts
  unknown = bytearray(blob)
  struct.pack_into("<i", unknown, 32, struct.unpack_from("<i", blob, 32)[0] | (1 << 21))
  assert _parse(kernel, bytes(unknown)) == err_value  # a flag this version does not know
  n_fc = len(params["w"]) + len(params["u"]) + 1
  no_layer = bytearray(blob)  # sparse rows for a layer the model does not have
  struct.pack_into("<i", no_layer, 32, struct.unpack_from("<i", blob, 32)[0] | (1 << (16 + n_fc)))
  assert _parse(kernel, bytes(no_layer)) == err_value
  # The first FC (W factor 1, packed at this sparsity) starts at 36: rows, cols,
  # out_offset, nnz. One non-zero more than the mask holds must be refused, not read.
  fc = params["w"][0]
  assert fc["mask"] is not None
  nnz = bytearray(blob)
  struct.pack_into("<i", nnz, 48, fc["w"].size - 1)
  assert _parse(kernel, bytes(nnz)) in (err_value, err_size)
  # A shift out of range: the first FC's first shift, after the int32 section's end.
  int32_end = len(blob) - len(np.concatenate(
      [np.zeros(2 + f["rows"] + (0 if f["mask"] is None else f["mask"].size) + f["w"].size)
       for f in params["w"] + params["u"] + [params["classifier"]]]
      + [np.zeros(5 * 6)] + [np.zeros(params[k].size) for k in fused._ARRAYS  # pylint: disable=protected-access
                             if params[k] is not None]))
  bad_shift = bytearray(blob)
  bad_shift[int32_end + 2] = 40
  assert _parse(kernel, bytes(bad_shift)) == err_value


def test_parser_refuses_malformed_compact_options(kernel):
  """COMPACT/EXPAND blobs: truncation, bad bit widths, tables that leave int8, and decode
  memory that is too small or misaligned are refused, never decoded out of bounds."""
  rng = np.random.default_rng(5)
  builtin = export.convert_step_model(_model(rng, "fastgrnn", True, w_rank=2, u_rank=4),
                                      rng.normal(0, 1.5, (16, T, D)))
  params = fused.extract(builtin)
  blob = fused.custom_options(fused.convert_fused(builtin, **fused.SMALLEST_FORM))
  code, _, (_, ram) = fused.parse_options(kernel, blob)
  need = len(ram) * 4 - 4
  assert code == 0 and need > 0
  err_scratch, err_size, err_align, err_value = -3, -5, -6, -7
  for cut in (3, 40, len(blob) // 2, len(blob) - 1):
    assert _parse(kernel, blob[:cut]) == err_size, cut
  assert _parse(kernel, blob + b"\0") == err_size
  assert _parse(kernel, blob, ram=need) == 0
  assert _parse(kernel, blob, ram=need - 4) == err_scratch
  assert _parse(kernel, blob, ram=0) == err_scratch
  assert _parse(kernel, blob, misalign="ram", ram=need) == err_align
  # The int8 section: the first FC's act_min, act_max, shift_min, shift_bits, bias_bits.
  n_fc = len(params["w"]) + len(params["u"]) + 1
  rows = [f["rows"] for f in params["w"] + params["u"] + [params["classifier"]]]
  n_binops = sum(params[k] is not None for k in fused._BINOPS)  # pylint: disable=protected-access
  int8_start = 4 * (9 + 5 * n_fc + sum(rows) + 6 * n_binops)
  assert blob[int8_start:int8_start + 2] == bytes(
      np.array([params["w"][0]["act_min"], params["w"][0]["act_max"]], np.int8))
  for at, value in ((3, 7), (4, 33)):  # shift_bits > 6, bias_bits > 32
    bad = bytearray(blob)
    bad[int8_start + at] = value
    assert _parse(kernel, bytes(bad)) == err_value, at
  # The last table (coef, 7-byte header + deltas at the end of the blob).
  enc = fused.encode_table(params["coef_table"])
  table = len(blob) - enc.size
  assert blob[table:] == enc.tobytes()
  for at, value in ((1, 3), (6, 11), (2, 0), (3, 255)):  # order, bits, start, count
    bad = bytearray(blob)
    bad[table + at] = value
    assert _parse(kernel, bytes(bad)) in (err_value, err_size), at
  bad = bytearray(blob)
  bad[table] = 127  # first value 127 with falling deltas stays in range; rising leaves it
  bad[table + 4:table + 6] = struct.pack("<h", 100)
  assert _parse(kernel, bytes(bad)) == err_value


def test_fused_export_refuses_models_the_kernel_cannot_express(rng):
  for cell in ("lstm", "gru"):
    builtin = export.convert_step_model(models.sequence_classifier(cell, H, (T, D), C),
                                        rng.normal(0, 1, (8, T, D)))
    with pytest.raises(fused.FusedExportError):
      fused.convert_fused(builtin)
  with pytest.raises(fused.FusedExportError, match="one FASTGRNN_INT8"):
    fused.custom_options(builtin)


def test_fuse_decides_once_and_the_stages_write_its_forms_or_say_why_not(tmp_path, rng,
                                                                         capsys):
  """deployment.fuse: NotApplicable (with the extractor's reason) for an LSTM; for a
  FastRNN the fused .tflite, standalone C and sizes equal those fused computes on its
  own (each storage extracted once and handed over)."""
  from pipelines import stages  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import deployment  # pylint: disable=import-outside-toplevel
  lstm = deployment.Int8Export(export.convert_step_model(
      models.sequence_classifier("lstm", H, (T, D), C), rng.normal(0, 1, (8, T, D))))
  fusion = deployment.fuse(lstm)
  assert isinstance(fusion, deployment.NotApplicable)
  assert "cannot express this model" in fusion.reason
  stages._standalone_c(tmp_path, fusion)  # pylint: disable=protected-access
  stages._fused_tflite(tmp_path, lstm, fusion)  # pylint: disable=protected-access
  assert list(tmp_path.iterdir()) == []
  assert "not written (model_int8.tflite is)" in capsys.readouterr().out
  fastrnn = deployment.Int8Export(export.convert_step_model(
      _model(rng, "fastrnn", u_rank=3), rng.normal(0, 1, (8, T, D))))
  fusion = deployment.fuse(fastrnn)
  assert fusion.tflite == fused.convert_fused(fastrnn.tflite)
  assert fusion.sources == fused.standalone_sources(fastrnn.tflite)
  params = fused.extract(fastrnn.tflite)
  assert fusion.param_bytes == fused.param_bytes(params)
  assert fusion.decoded_ram_bytes == fused.decoded_ram_bytes(params)
  stages._standalone_c(tmp_path, fusion)  # pylint: disable=protected-access
  stages._fused_tflite(tmp_path, fastrnn, fusion)  # pylint: disable=protected-access
  assert (tmp_path / stages.FUSED_MODEL).read_bytes() == fusion.tflite
  assert {p.name: p.read_text() for p in (tmp_path / "standalone").iterdir()} == (
      fusion.sources)


def test_test_vectors_take_the_classes_in_turn():
  from pipelines import stages  # pylint: disable=import-outside-toplevel
  labels = np.array([3, 3, 3, 0, 3, 1, 0])
  assert stages.vector_windows(labels, 4).tolist() == [3, 5, 0, 6]
  assert sorted(stages.vector_windows(labels, 10).tolist()) == list(range(7))
  assert stages.vector_windows(np.array([2, 2]), 1).tolist() == [0]


def test_device_files_carry_the_fused_model(tmp_path, rng):
  import re  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import device_files  # pylint: disable=import-outside-toplevel
  builtin = export.convert_step_model(_model(rng, "fastgrnn", u_rank=4),
                                      rng.normal(0, 1.5, (16, T, D)))
  settings = device_files.settings_from_model(
      builtin,
      device_files.Task(
          labels=['a', 'b', 'c'], steps_per_window=T, feature_mean=np.zeros(D),
          feature_std=np.ones(D)),
      arena_used=1000)
  fused_bytes = fused.convert_fused(builtin)
  device_files.write_device_files(tmp_path / "dev", builtin, settings,
                                  fused_tflite_bytes=fused_bytes)
  text = (tmp_path / "dev" / "model_data_fused.cc").read_text()
  body = text[text.index("{") + 1:text.index("};")]
  assert bytes(int(v, 16) for v in re.findall(r"0x([0-9a-f]{2})", body)) == fused_bytes
  assert "alignas(16)" in text  # the parser needs the options 4-byte aligned
  other = fused.convert_fused(export.convert_step_model(
      _model(rng, "fastrnn"), rng.normal(0, 1.5, (16, T, D))))
  with pytest.raises(ValueError, match="differ"):
    device_files.write_device_files(tmp_path / "dev2", builtin, settings,
                                    fused_tflite_bytes=other)


def test_parser_refuses_malformed_sparse_rows(kernel):
  """Sparse rows the kernel would read out of bounds: counts that do not add up to nnz,
  a column index at or past cols, indices that do not ascend."""
  rng = np.random.default_rng(8)
  builtin = export.convert_step_model(_model(rng, "fastgrnn", True, u_rank=4),
                                      rng.normal(0, 1.5, (16, T, D)))
  params = fused.extract(builtin, "sparse")
  blob = fused.options_blob(params, compact=False)
  assert _parse(kernel, blob) == 0
  fcs = params["w"] + params["u"] + [params["classifier"]]
  # The int8 section: per FC act_min, act_max, shift[rows], then idx, then w.
  int8_start = len(blob) - sum(2 + f["rows"] + f["idx"].size + f["w"].size for f in fcs) - (
      5 * sum(params[k] is not None for k in fused._BINOPS)) - sum(  # pylint: disable=protected-access
          params[k].size for k in fused._ARRAYS if params[k] is not None)  # pylint: disable=protected-access
  # The first row with two non-zeros or more, and where its count lies in the blob.
  at = int8_start
  for fc in fcs:
    idx, pos = fc["idx"], 0
    while pos < idx.size and idx[pos] < 2:
      pos += 1 + int(idx[pos])
    if pos < idx.size:
      break
    at += 2 + fc["rows"] + idx.size + fc["w"].size
  idx_at = at + 2 + fc["rows"] + pos
  n0 = int(idx[pos])
  for at, value in ((idx_at, n0 + 1), (idx_at + 1, fc["cols"]),
                    (idx_at + 2, idx[pos + 1])):
    bad = bytearray(blob)
    bad[at] = value
    assert _parse(kernel, bytes(bad)) == -7, (at, value)
  too_wide = bytearray(blob)  # sparse flag on a dense-stored layer's nnz of -1
  struct.pack_into("<i", too_wide, 48, -1)
  assert _parse(kernel, bytes(too_wide)) in (-7, -5)
