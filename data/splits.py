"""Splitting helpers shared by the dataset loaders (no dependency on any loader)."""

import numpy as np

__all__ = ["carve_val"]


def carve_val(x, y, fraction, seed):
  """``((x_train, y_train), (x_val, y_val))``: a random ``fraction`` (at least one
  example) of ``x``/``y`` held out for validation, by ``seed``."""
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(x))
  n_val = max(1, int(round(fraction * len(x))))
  return (x[order[n_val:]], y[order[n_val:]]), (x[order[:n_val]], y[order[:n_val]])
