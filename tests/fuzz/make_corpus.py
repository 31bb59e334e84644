"""Writes the fuzz target's seed corpus: FASTGRNN_INT8 options blobs (version 3) of tiny
models.

  PYTHONPATH=$PWD .venv/bin/python tests/fuzz/make_corpus.py OUT_DIR

OUT_DIR must be new or empty (nothing is overwritten). The committed corpus,
tests/fuzz/corpus/, was made this way; tests/test_fuzz_options.py checks that the parser
accepts every blob in it and that it holds every form (so a format change that
invalidates them is noticed), and the fuzz loop refuses to start on a refused seed. Each
blob is one model (cell, ranks, sparsity, activations: D=3, H=4, C=2 unless given, a few
hundred bytes) in one encoding: ``convert_fused``'s default (the zero-copy fast form:
dense or sparse rows per matrix, stored bias terms), all sparse rows, sparse and dense
rows mixed, ``fused.SMALLEST_FORM`` (packed, COMPACT + EXPAND), COMPACT with sparse rows,
plain packed.
"""

import pathlib
import sys

import numpy as np

from tf_fastgrnn import export
from tf_fastgrnn import fused
from tf_fastgrnn import models

T, D, H, C = 3, 3, 4, 2
ZERO_COPY = dict(bias_terms=True, compact=False, expand=False)  # convert_fused's default

# name: (cell, cell kwargs, dims (D, H, C), zeroed fraction of W/U, storage, options_blob
# kwargs). storage: an extract storage, or a tuple of one per FC layer (w..., u...,
# classifier), each "dense" or "sparse".
SEEDS = {
    "grnn_fast_default": ("fastgrnn", {}, (D, H, C), 0.0, "fast:dsp", ZERO_COPY),
    "grnn_fast_sparse_lowrank": ("fastgrnn", {"w_rank": 2, "u_rank": 2}, (D, H, C), 0.6,
                                 "sparse", ZERO_COPY),
    "grnn_fast_mixed_rows": ("fastgrnn", {"u_rank": 5}, (5, 9, 3), 0.6,
                             ("sparse", "dense", "sparse", "dense"), ZERO_COPY),
    "grnn_smallest_lowrank": ("fastgrnn", {"w_rank": 2, "u_rank": 2}, (D, H, C), 0.6,
                              fused.SMALLEST_FORM["storage"],
                              {k: v for k, v in fused.SMALLEST_FORM.items() if k != "storage"}),
    "grnn_compact_terms_relu": ("fastgrnn", {"update_activation": "relu", "u_rank": 3},
                                (D, H, C), 0.0, "dense",
                                dict(bias_terms=True, compact=True, expand=False)),
    "grnn_plain_packed": ("fastgrnn", {}, (D, H, C), 0.6, "packed",
                          dict(bias_terms=False, compact=False, expand=False)),
    "rnn_fast_default": ("fastrnn", {}, (D, H, C), 0.0, "fast:dsp", ZERO_COPY),
    "rnn_fast_sparse": ("fastrnn", {}, (D, H, C), 0.6, "sparse", ZERO_COPY),
    "rnn_smallest_lowrank": ("fastrnn", {"w_rank": 2, "u_rank": 2}, (D, H, C), 0.6,
                             fused.SMALLEST_FORM["storage"],
                             {k: v for k, v in fused.SMALLEST_FORM.items() if k != "storage"}),
    "rnn_compact_sparse_sigmoid": ("fastrnn", {"update_activation": "sigmoid", "w_rank": 2},
                                   (D, H, C), 0.6, "sparse",
                                   dict(bias_terms=False, compact=True, expand=True)),
}


def _params(builtin, storage):
  """``extract``'s parameters, each FC layer in its own storage when ``storage`` is a
  tuple."""
  if isinstance(storage, str):
    return fused.extract(builtin, storage)
  params = fused.extract(builtin, "dense")
  sparse = fused.extract(builtin, "sparse")
  layers = ([("w", k) for k in range(len(params["w"]))] +
            [("u", k) for k in range(len(params["u"]))] + [("classifier", None)])
  if len(storage) != len(layers):
    raise ValueError(f"{len(layers)} FC layers, {len(storage)} storages given")
  for (key, k), kind in zip(layers, storage):
    if kind == "sparse":
      if k is None:
        params[key] = sparse[key]
      else:
        params[key][k] = sparse[key][k]
  return params


def blobs(seed=0):
  """``{name: blob bytes}`` for ``SEEDS``, weights drawn from ``seed``."""
  out = {}
  for k, (name, (cell, kwargs, dims, zeros, storage, options)) in enumerate(
      sorted(SEEDS.items())):
    d, h, c = dims
    rng = np.random.default_rng(seed + k)
    model = models.sequence_classifier(cell, h, (T, d), c, **kwargs)
    for var in model.weights:
      value = rng.normal(0, 0.5, var.shape)
      if zeros and any(part in var.name for part in ("/W", "/U")):
        value[rng.random(var.shape) < zeros] = 0.0
      var.assign(value)
    builtin = export.convert_step_model(model, rng.normal(0, 1.5, (16, T, d)))
    out[name] = fused.options_blob(_params(builtin, storage), **options)
    if storage == "fast:dsp" and options == ZERO_COPY:  # exactly what convert_fused writes
      assert out[name] == fused.custom_options(fused.convert_fused(builtin)), name
  return out


def main(argv):
  if len(argv) != 2:
    sys.exit(f"usage: {argv[0]} OUT_DIR (new or empty)")
  out = pathlib.Path(argv[1])
  if out.exists() and (not out.is_dir() or any(out.iterdir())):
    sys.exit(f"{out} is not a new or empty folder: nothing written")
  made = blobs()
  out.mkdir(parents=True, exist_ok=True)
  for name, blob in made.items():
    (out / f"{name}.bin").write_bytes(blob)
    print(f"{out / name}.bin: {len(blob)} bytes")


if __name__ == "__main__":
  main(sys.argv)
