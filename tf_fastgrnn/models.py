"""The sequence classifier the pipelines train, export and benchmark.

Layout (QAT, the export and the numerics diff rely on it, and find the layers by type:
``stepping.parts``): ``Input([T, D])`` → one recurrent layer returning its last hidden
state → ``Dense(num_classes)`` giving logits; any layer names, Sequential or functional. The
classifier is linear on the last hidden state, as in the authors' code (EdgeML). With
``readout="mean"``: ``Input → RNN(return_sequences=True) → Dense (per step) →
GlobalAveragePooling1D``, the window's logits the mean of the per-step logits (the device
sums its int8 logits over the window: ``stepping.window_logits``).
"""

from tf_fastgrnn import baselines
from tf_fastgrnn import cells
from tf_fastgrnn import spec as spec_lib
from tf_fastgrnn import stepping
from tf_fastgrnn._keras import keras

__all__ = ["sequence_classifier"]


def sequence_classifier(cell, units, input_shape, num_classes, *, name=None,
                        readout="last", **cell_kwargs):
  """Builds ``Input(input_shape) → RNN(cell) → Dense(num_classes)`` (logits).

  Args:
    cell: one of ``spec.CELLS``.
    units: hidden size H.
    input_shape: ``(T, D)``; T may be None for variable-length use (not for export).
    num_classes: number of classes C.
    name: model name.
    readout: ``"last"``: the logits of the last step's state; ``"mean"``: the mean over
      the steps of the per-step logits (``RNN(return_sequences=True) → Dense →
      GlobalAveragePooling1D``). The deployed step model is the same for both.
    **cell_kwargs: the cell's arguments (``w_rank``, ``u_rank``, activations, ...).
      ``lowrank_lstm`` needs ``w_rank`` and ``u_rank``; ``lstm``/``gru`` take none.

  Returns:
    An uncompiled ``keras.Model`` mapping ``[N, T, D]`` to (window) logits ``[N, C]``.

  Raises:
    ValueError: unknown cell or read-out, bad shape or class count.
  """
  stepping.check_readout(readout)
  if cell not in spec_lib.CELLS:
    raise ValueError(f"cell must be one of {spec_lib.CELLS}, got {cell!r}")
  if len(tuple(input_shape)) != 2 or input_shape[-1] is None:
    raise ValueError(f"input_shape must be (T, D) with D known, got {input_shape!r}")
  if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
    raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
  sequences = readout == "mean"
  if cell == "fastgrnn":
    rnn = cells.FastGRNN(units, name="rnn", return_sequences=sequences, **cell_kwargs)
  elif cell == "fastrnn":
    rnn = cells.FastRNN(units, name="rnn", return_sequences=sequences, **cell_kwargs)
  elif cell == "lowrank_lstm":
    rnn = keras.layers.RNN(baselines.LowRankLSTMCell(units, **cell_kwargs), name="rnn",
                           return_sequences=sequences)
  else:
    if cell_kwargs:
      raise ValueError(f"{cell} takes no cell arguments, got {sorted(cell_kwargs)}")
    layer = keras.layers.LSTM if cell == "lstm" else keras.layers.GRU
    rnn = layer(units, name="rnn", return_sequences=sequences)
  inputs = keras.Input(tuple(input_shape), name="x")
  logits = keras.layers.Dense(num_classes, name="logits")(rnn(inputs))
  if sequences:
    logits = keras.layers.GlobalAveragePooling1D(name="mean_logits")(logits)
  return keras.Model(inputs, logits, name=name or f"{cell}_classifier")


def macs_per_step(model):
  """Multiply-accumulates of one time step of a ``sequence_classifier``.

  Counts the matrix products (the cost that matters on an MCU), both dense and over the
  non-zero weights only (what a sparse kernel would do), plus the classifier applied once
  per step as the streaming step model does.

  Args:
    model: a ``stepping.LAYOUT`` model, any layer names (stripped of pruning
      wrappers).

  Returns:
    ``{"dense": int, "nonzero": int}``.
  """
  rnn, dense = stepping.parts(model)
  cell = getattr(rnn, "cell", None)
  if isinstance(cell, cells.FAST_CELLS):
    mats = list(cell.w_factors) + list(cell.u_factors)
  else:  # LSTM / GRU: kernel [D, gH] and recurrent kernel [H, gH].
    mats = [w for w in rnn.weights if "bias" not in w.name]
  mats += [dense.kernel]
  return {"dense": sum(int(w.shape.num_elements()) for w in mats),
          "nonzero": sum(int((w.numpy() != 0).sum()) for w in mats)}
