"""The classifier layouts, found by type, and stepping them one time step at a time.

Every model the pipeline trains, quantizes and exports has one of two layouts
(``models.sequence_classifier`` builds both; a user's Sequential or functional model with
any layer names is the same):

- read-out ``"last"``: ``Input([T, D]) → RNN(cell) → Dense(C)``: the logits of the last
  hidden state;
- read-out ``"mean"``: ``Input([T, D]) → RNN(cell, return_sequences=True) → Dense(C) →
  GlobalAveragePooling1D``: the mean over the T steps of the per-step logits (= the Dense
  of the mean state, the Dense being linear).

``parts`` finds the RNN and the Dense by their types, ``readout`` says which layout;
``step_model`` is one recurrent step plus the classifier, the deploy form (the same for
both read-outs: the read-out lives in the window logic); ``window_logits`` turns the
per-step logits into the window's, in float or as the device's exact integers;
``run_steps`` steps any such model through windows (Keras side, batched), which the
export's calibration, QAT's calibration and the numerics diff all use.
"""

import numpy as np
import tensorflow as tf

from tf_fastgrnn import spec as spec_lib
from tf_fastgrnn._keras import keras

__all__ = ["LAYOUT", "check_readout", "parts", "readout", "representative_pairs",
           "run_steps", "step_function", "step_model", "window_classes", "window_logits"]

LAYOUT = ("Input → RNN(cell) → Dense, or Input → RNN(cell, return_sequences=True) → "
          "Dense → GlobalAveragePooling1D for the mean read-out (the layouts of "
          "tf_fastgrnn.models.sequence_classifier)")


def _layers(model):
  layers = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
  if any(type(l).__name__ == "PruneLowMagnitude" for l in layers):
    raise ValueError("the model still has pruning wrappers: call "
                     "tfmot.sparsity.keras.strip_pruning (pruning.train_three_phase "
                     "returns a stripped model)")
  return layers


def _is_mean_pool(layer):
  return type(layer) is keras.layers.GlobalAveragePooling1D  # pylint: disable=unidiomatic-typecheck


def parts(model):
  """``(rnn, dense)``: the model's one ``keras.layers.RNN`` and the ``Dense`` after it.

  Found by type, so any layer names and a Sequential or functional model do. Both
  layouts of ``LAYOUT`` give the same parts; ``readout`` tells them apart.

  Raises:
    ValueError: pruning wrappers left on, or a layout other than ``LAYOUT`` (a second
      layer, a sequence output without the mean pooling, another pooling, an activation
      on the Dense, ...).
  """
  layers = _layers(model)
  kinds = [type(l).__name__ for l in layers]
  mean = len(layers) == 3 and _is_mean_pool(layers[2])
  if (len(layers) != (3 if mean else 2) or not isinstance(layers[0], keras.layers.RNN)
      or not isinstance(layers[1], keras.layers.Dense)):
    raise ValueError(f"expected {LAYOUT}, got layers {kinds}")
  rnn, dense = layers[:2]
  if len(model.inputs) != 1 or len(model.outputs) != 1:
    raise ValueError(f"expected {LAYOUT} with one input and one output, got "
                     f"{len(model.inputs)} inputs and {len(model.outputs)} outputs")
  if not _is_chain(model, layers):
    raise ValueError(f"expected {LAYOUT}: each layer must read the one before it and the "
                     "last give the model's output")
  flags = [f for f in ("return_state", "go_backwards", "stateful") if getattr(rnn, f, False)]
  if flags:
    raise ValueError(f"expected {LAYOUT}; {rnn.name!r} has "
                     f"{', '.join(f + '=True' for f in flags)}")
  if mean and not rnn.return_sequences:
    raise ValueError(f"expected {LAYOUT}: the mean read-out averages the per-step logits, "
                     f"so {rnn.name!r} needs return_sequences=True")
  if not mean and rnn.return_sequences:
    raise ValueError(f"expected {LAYOUT} whose RNN returns its last state only; "
                     f"{rnn.name!r} has return_sequences=True (add GlobalAveragePooling1D "
                     "after the Dense for the mean read-out)")
  if dense.activation is not keras.activations.linear:
    raise ValueError(f"expected {LAYOUT} giving logits; the Dense {dense.name!r} has "
                     f"activation {getattr(dense.activation, '__name__', dense.activation)!r}"
                     " (drop it: the logits are what is exported)")
  if mean:
    pool = layers[2]
    if pool.data_format != "channels_last" or getattr(pool, "keepdims", False):
      raise ValueError(f"expected {LAYOUT}: the pooling {pool.name!r} must average over "
                       "the time axis (data_format='channels_last', keepdims=False)")
  return rnn, dense


def readout(model):
  """``"last"`` or ``"mean"``: how ``model`` (a ``LAYOUT`` model) makes a window's logits
  from its per-step logits. Raises ValueError as ``parts`` for another layout."""
  parts(model)
  return "mean" if len(_layers(model)) == 3 else "last"


def check_readout(name):
  """Raises ValueError unless ``name`` is one of ``spec.READOUTS``."""
  if name not in spec_lib.READOUTS:
    raise ValueError(f"readout must be one of {spec_lib.READOUTS}, got {name!r}")


def window_logits(step_logits, readout_name, zero_point=None):
  """A window's logits from the logits after each of its steps.

  Args:
    step_logits: ``[N, T, C]`` per-step logits: float (Keras, dequantized) or the int8
      model's integers (with ``zero_point``).
    readout_name: ``"last"`` (the last step's) or ``"mean"`` (the mean over the T steps).
    zero_point: the int8 logits' zero point. Given, the result is what the device
      computes, exact integers: int32 ``logits_q - zero_point`` of the last step, or
      their int32 sum over the window's steps for ``"mean"`` (the mean logit is
      ``scale * sum / T``; the sum has the same argmax and no rounding).

  Returns:
    ``[N, C]``: float32, or int32 with ``zero_point``.
  """
  check_readout(readout_name)
  step_logits = np.asarray(step_logits)
  if step_logits.ndim != 3:
    raise ValueError(f"step logits must be [N, T, C], got shape {step_logits.shape}")
  if zero_point is not None:
    if step_logits.dtype != np.int8:
      raise ValueError(f"with zero_point the step logits must be int8, got {step_logits.dtype}")
    centred = step_logits.astype(np.int32) - np.int32(zero_point)
    return centred[:, -1] if readout_name == "last" else centred.sum(axis=1, dtype=np.int32)
  step_logits = step_logits.astype(np.float32)
  return step_logits[:, -1] if readout_name == "last" else step_logits.mean(axis=1)


def window_classes(step_logits, readout_name, zero_point=None):
  """The class of each window: argmax of ``window_logits`` (ties: the lowest class
  index, as ``tflm_app``'s ``ArgMax``). ``[N]`` int64."""
  return np.argmax(window_logits(step_logits, readout_name, zero_point), axis=-1)


def _inbound_names(nodes):
  """Layer names in a functional config's ``inbound_nodes`` (nested lists or dicts)."""
  if isinstance(nodes, dict):
    return [a["config"]["keras_history"][0] for a in nodes.get("args", [])
            if isinstance(a, dict) and "keras_history" in a.get("config", {})]
  if isinstance(nodes, (list, tuple)):
    if nodes and isinstance(nodes[0], str):
      return [nodes[0]]
    return [n for node in nodes for n in _inbound_names(node)]
  return []


def _is_chain(model, layers):
  """Each layer reads the one before it and the last is the output, checked on the
  model's own graph (its config), not on the layers' first call: a layer shared with
  another model (TF-MOT's strip_pruning clones around them) keeps the tensors of the
  first model it was called in."""
  if isinstance(model, keras.Sequential):
    return True  # layers in order: each reads the one before and the last is the output
  config = model.get_config()
  by_name = {layer["name"]: layer for layer in config.get("layers", [])}
  if any(l.name not in by_name for l in layers):
    return False
  outputs = _inbound_names(config.get("output_layers", []))
  return (all(_inbound_names(by_name[b.name].get("inbound_nodes", [])) == [a.name]
              for a, b in zip(layers, layers[1:]))
          and outputs == [layers[-1].name])


def _state_sizes(cell):
  sizes = cell.state_size
  return list(sizes) if isinstance(sizes, (list, tuple)) else [sizes]


def step_model(model, batch_size=1):
  """One recurrent step plus the classifier, sharing ``model``'s layers (and weights).

  The same for both read-outs (the read-out is the window logic's: ``window_logits``).

  Args:
    model: a ``LAYOUT`` model (float or QAT).
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
