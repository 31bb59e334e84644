"""Writes the fuzz target's seed corpus: FASTGRNN_INT8 options blobs of tiny models.

  PYTHONPATH=$PWD .venv/bin/python tests/fuzz/make_corpus.py OUT_DIR

OUT_DIR must be new or empty (nothing is overwritten). The committed corpus,
tests/fuzz/corpus/, was made this way; tests/test_fuzz_options.py checks that the parser
accepts every blob in it, so a format change that invalidates them is noticed. Each blob
is one model (cell, ranks, sparsity, activations: D=3, H=4, C=2, a few hundred bytes) in
one encoding (plain/COMPACT, EXPAND, dense/packed, stored bias terms).
"""

import pathlib
import sys

import numpy as np

from tf_fastgrnn import export
from tf_fastgrnn import fused
from tf_fastgrnn import models

T, D, H, C = 3, 3, 4, 2

# name: (cell, cell kwargs, sparse, storage, options_blob kwargs)
SEEDS = {
    "grnn_plain_dense_terms": ("fastgrnn", {}, False, "dense",
                               dict(bias_terms=True, compact=False, expand=False)),
    "grnn_plain_packed": ("fastgrnn", {}, True, "packed",
                          dict(bias_terms=False, compact=False, expand=False)),
    "grnn_compact_expand_lowrank": ("fastgrnn", {"w_rank": 2, "u_rank": 2}, True, "packed",
                                    dict(bias_terms=False, compact=True, expand=True)),
    "grnn_compact_terms_relu": ("fastgrnn", {"update_activation": "relu", "u_rank": 3}, False,
                                "dense", dict(bias_terms=True, compact=True, expand=False)),
    "rnn_plain_dense": ("fastrnn", {}, False, "dense",
                        dict(bias_terms=True, compact=False, expand=False)),
    "rnn_compact_expand_lowrank": ("fastrnn", {"w_rank": 2, "u_rank": 2}, True, "packed",
                                   dict(bias_terms=False, compact=True, expand=True)),
    "rnn_compact_sigmoid": ("fastrnn", {"update_activation": "sigmoid"}, False, "auto",
                            dict(bias_terms=False, compact=True, expand=False)),
}


def blobs(seed=0):
  """``{name: blob bytes}`` for ``SEEDS``, weights drawn from ``seed``."""
  out = {}
  for k, (name, (cell, kwargs, sparse, storage, options)) in enumerate(sorted(SEEDS.items())):
    rng = np.random.default_rng(seed + k)
    model = models.sequence_classifier(cell, H, (T, D), C, **kwargs)
    for var in model.weights:
      value = rng.normal(0, 0.5, var.shape)
      if sparse and any(part in var.name for part in ("/W", "/U")):
        value[rng.random(var.shape) < 0.6] = 0.0
      var.assign(value)
    builtin = export.convert_step_model(model, rng.normal(0, 1.5, (16, T, D)))
    out[name] = fused.options_blob(fused.extract(builtin, storage), **options)
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
