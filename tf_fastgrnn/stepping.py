"""The classifier layout, found by type, and stepping it one time step at a time.

Every model the pipeline trains, quantizes and exports is ``Input([T, D]) → RNN(cell) →
Dense(C)`` (``models.sequence_classifier`` builds one; a user's Sequential or functional
model with any layer names is the same). ``parts`` finds the RNN and the Dense by their
types; ``step_model`` is one recurrent step plus the classifier, the deploy form;
``run_steps`` steps any such model through windows (Keras side, batched), which the
export's calibration, QAT's calibration and the numerics diff all use.
"""

import numpy as np
import tensorflow as tf

from tf_fastgrnn._keras import keras

__all__ = ["parts", "representative_pairs", "run_steps", "step_function", "step_model"]

LAYOUT = "Input → RNN(cell) → Dense (the layout of tf_fastgrnn.models.sequence_classifier)"


def parts(model):
  """``(rnn, dense)``: the model's one ``keras.layers.RNN`` and the ``Dense`` after it.

  Found by type, so any layer names and a Sequential or functional model do.

  Raises:
    ValueError: pruning wrappers left on, or a layout other than Input → RNN → Dense
      (a second layer, a sequence output, an activation on the Dense, ...).
  """
  layers = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
  if any(type(l).__name__ == "PruneLowMagnitude" for l in layers):
    raise ValueError("the model still has pruning wrappers: call "
                     "tfmot.sparsity.keras.strip_pruning (pruning.train_three_phase "
                     "returns a stripped model)")
  kinds = [type(l).__name__ for l in layers]
  if (len(layers) != 2 or not isinstance(layers[0], keras.layers.RNN)
      or not isinstance(layers[1], keras.layers.Dense)):
    raise ValueError(f"expected {LAYOUT}, got layers {kinds}")
  rnn, dense = layers
  if len(model.inputs) != 1 or len(model.outputs) != 1:
    raise ValueError(f"expected {LAYOUT} with one input and one output, got "
                     f"{len(model.inputs)} inputs and {len(model.outputs)} outputs")
  # model.layers is in graph order and holds only layers on the path to the one output,
  # so [RNN, Dense] means Input → RNN → Dense → output. (Not ``dense.input is
  # rnn.output``: a layer shared with another graph, as after strip_pruning's clone,
  # answers for its first graph.)
  flags = [f for f in ("return_sequences", "return_state", "go_backwards", "stateful")
           if getattr(rnn, f, False)]
  if flags:
    raise ValueError(f"expected {LAYOUT} whose RNN returns its last state only; "
                     f"{rnn.name!r} has {', '.join(f + '=True' for f in flags)}")
  if dense.activation is not keras.activations.linear:
    raise ValueError(f"expected {LAYOUT} giving logits; the Dense {dense.name!r} has "
                     f"activation {getattr(dense.activation, '__name__', dense.activation)!r}"
                     " (drop it: the logits are what is exported)")
  return rnn, dense


def _state_sizes(cell):
  sizes = cell.state_size
  return list(sizes) if isinstance(sizes, (list, tuple)) else [sizes]


def step_model(model, batch_size=1):
  """One recurrent step plus the classifier, sharing ``model``'s layers (and weights).

  Args:
    model: an Input → RNN(cell) → Dense model (float or QAT).
    batch_size: 1 for export; None to step many windows at once in Keras.

  Returns:
    A ``keras.Model`` with inputs ``{"x": [B, D], "h": [B, H]}`` (plus ``"c"`` for an
    LSTM) and outputs ``{"h_next": [B, H], "logits": [B, C]}`` (plus ``"c_next"``).
  """
  rnn, dense = parts(model)
  cell = rnn.cell
  input_dim = int(model.input_shape[-1])
  sizes = _state_sizes(cell)
  x = keras.Input((input_dim,), batch_size=batch_size, name="x")
  states = [keras.Input((n,), batch_size=batch_size, name=name)
            for n, name in zip(sizes, ("h", "c"))]
  _, new_states = cell(x, states if len(states) > 1 else [states[0]])
  new_states = list(new_states) if isinstance(new_states, (list, tuple)) else [new_states]
  outputs = {"h_next": new_states[0], "logits": dense(new_states[0])}
  if len(new_states) > 1:
    outputs["c_next"] = new_states[1]
  inputs = {"x": x, "h": states[0]}
  if len(states) > 1:
    inputs["c"] = states[1]
  return keras.Model(inputs, outputs, name=f"{model.name}_step")


def step_function(step, batch_size=1):
  """``step`` as a ``tf.function`` of its inputs in sorted name order (the converter's
  and the stepping loops' form)."""
  specs = {name: tf.TensorSpec([batch_size] + list(t.shape[1:]), tf.float32, name=name)
           for name, t in step.input.items()}
  names = sorted(specs)

  @tf.function(input_signature=[specs[n] for n in names], autograph=False)
  def fn(*args):
    return step(dict(zip(names, args)))
  return fn


def run_steps(model, windows, batch_size=512):
  """Steps ``model`` through ``windows`` [N, T, D] from a zero state, as the device does.

  Returns:
    ``{"x": [N, T, D], "h": [N, T, H] (the state each step reads), "h_next",
    "logits" [N, T, C] (after each step), and "c"/"c_next" for an LSTM}``, float32.
  """
  windows = np.asarray(windows, np.float32)
  if windows.ndim != 3:
    raise ValueError(f"windows must be [N, T, D], got shape {windows.shape}")
  step = step_model(model, batch_size=None)
  fn = step_function(step, batch_size=None)
  names = sorted(step.input)
  chunks = []
  for start in range(0, len(windows), batch_size):
    xb = windows[start:start + batch_size]
    state = {n: np.zeros((len(xb),) + tuple(step.input[n].shape[1:]), np.float32)
             for n in names if n != "x"}
    trace = {}
    for t in range(xb.shape[1]):
      feed = dict(state, x=xb[:, t])
      out = {k: v.numpy() for k, v in fn(*[feed[n] for n in names]).items()}
      for key, value in list(feed.items()) + list(out.items()):
        trace.setdefault(key, []).append(value)
      state = {n: out[f"{n}_next"] for n in names if n != "x"}
    chunks.append({k: np.stack(v, 1) for k, v in trace.items()})
  return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def representative_pairs(model, windows, max_pairs=2000, seed=0):
  """(x_t, states_{t-1}) pairs met when ``model`` runs over ``windows`` [N, T, D].

  The converter calibrates the int8 ranges on these, so they must be what the device
  will see: real frames and the states the model itself produces from a zero start.

  Returns:
    A dict of float32 arrays ``{"x": [P, D], "h": [P, H], ("c": ...)}``, ordered by time
    step then window, a random ``max_pairs`` of them (``seed``) when there are more.
  """
  trace = run_steps(model, windows)
  names = [n for n in ("x", "h", "c") if n in trace]
  # Time-major, as the pairs were always drawn (the subset depends on the order).
  pairs = {n: np.concatenate(list(np.swapaxes(trace[n], 0, 1))) for n in names}
  total = len(pairs["x"])
  if total > max_pairs:
    keep = np.random.default_rng(seed).choice(total, max_pairs, replace=False)
    pairs = {n: v[keep] for n, v in pairs.items()}
  return pairs
