"""A Keras 3 classifier copied into its tf_keras twin (and back), checked on windows.

The one module that knows both Keras hierarchies: Keras 3 (``import keras``, the cells of
``tf_fastgrnn.keras3``, any backend) and tf_keras (Keras 2, ``tf_fastgrnn.keras``: the
cells of ``tf_fastgrnn.cells``, which TF-MOT's pruning, our QAT and the export take).
Nothing crosses implicitly: the twin is built from the source layers' constructor
arguments (``get_config``; an argument the other Keras does not take is refused by name),
every weight is copied by its name (``W1``, ``bias_gate``, ``kernel``, ...), never by
position, and then both models' logits are compared on windows the caller gives.

The layouts are those of ``stepping.LAYOUT``, with a FastGRNN or FastRNN cell:
``Input([T, D]) → RNN(cell) → Dense(C)``, or the mean read-out ``Input → RNN(cell,
return_sequences=True) → Dense → GlobalAveragePooling1D``; Sequential or functional, any
layer names (``tf_fastgrnn.keras3.FastGRNN``/``FastRNN`` are such an RNN).

Usage::

    import keras
    import tf_fastgrnn
    from tf_fastgrnn import keras3
    model = keras.Sequential([keras.Input((128, 9)), keras3.FastGRNN(48, u_rank=16),
                              keras.layers.Dense(6)])
    ...  # train on any backend
    twin = tf_fastgrnn.to_tf_keras(model, x_val[:256])   # a tf_keras model
"""

import dataclasses
import inspect

import keras as _keras3
import numpy as np

from tf_fastgrnn import cells
from tf_fastgrnn import keras3
from tf_fastgrnn._keras import keras as _tf_keras

__all__ = ["ACCEPTED", "to_keras3", "to_tf_keras"]

ACCEPTED = ("Input([T, D]) → RNN(FastGRNNCell | FastRNNCell) → Dense (linear), or the mean "
            "read-out Input → RNN(cell, return_sequences=True) → Dense → "
            "GlobalAveragePooling1D; a Sequential or functional model, float32, not "
            "stateful, no return_state or go_backwards")

# How many windows each predict() call takes.
_BATCH = 256


@dataclasses.dataclass(frozen=True)
class _Keras:
  """One Keras hierarchy: its module, its FastGRNN/FastRNN cells, how it names weights."""

  name: str        # for messages
  module: object   # keras (3) or tf_keras
  cells: dict      # our cell class name → class in this hierarchy
  cell_prefix: str  # the cells' public path, for messages

  def short_name(self, variable):
    # Keras 3: v.name is the bare name ("W1"); tf_keras: "rnn/fast_grnn_cell/W1:0".
    return variable.name.split("/")[-1].split(":")[0]

  def numpy(self, variable):
    if self.module is _keras3:
      return np.asarray(_keras3.ops.convert_to_numpy(variable.value))
    return variable.numpy()

  def cell_kind(self, cell):
    """``"FastGRNNCell"`` or ``"FastRNNCell"`` (subclasses too: the logits check judges
    them), else None."""
    for kind, cls in self.cells.items():
      if isinstance(cell, cls):
        return kind
    return None


_K3 = _Keras("Keras 3", _keras3,
             {"FastGRNNCell": keras3.FastGRNNCell, "FastRNNCell": keras3.FastRNNCell},
             "tf_fastgrnn.keras3")
_K2 = _Keras("tf_keras", _tf_keras,
             {"FastGRNNCell": cells.FastGRNNCell, "FastRNNCell": cells.FastRNNCell},
             "tf_fastgrnn")


def to_tf_keras(model, check_windows, *, atol=1e-5):
  """The tf_keras twin of a Keras 3 FastGRNN/FastRNN classifier, its weights copied.

  The twin (``tf_fastgrnn.cells`` cells in ``tf_fastgrnn.keras`` layers) is what
  pruning, QAT and the int8 export take. It is built from the same constructor arguments
  and layer names, every weight is copied by name, and both models' logits on
  ``check_windows`` must agree within ``atol``. The Keras 3 model may run on any backend
  (TensorFlow, JAX, PyTorch); it is not changed.

  Args:
    model: a Keras 3 ``keras.Model`` of the layout ``ACCEPTED``, with
      ``tf_fastgrnn.keras3`` cells.
    check_windows: ``[N, T, D]`` float windows (N >= 1) both models are run on.
    atol: the largest absolute difference of any logit allowed (float arithmetic of two
      frameworks differs in the last bits).

  Returns:
    A tf_keras ``keras.Model`` (Sequential if ``model`` is) with the same layer names.

  Raises:
    ValueError: another layout or Keras (one line saying what is accepted), bad windows or
      ``atol``, a constructor argument or weight with no twin (named), or logits that
      differ by more than ``atol`` (the largest difference named).

  Example:
    >>> import keras
    >>> from tf_fastgrnn import keras3
    >>> k3 = keras.Sequential([keras.Input((5, 3)), keras3.FastGRNN(4, u_rank=2),
    ...                        keras.layers.Dense(2)])
    >>> twin = to_tf_keras(k3, np.zeros((1, 5, 3), np.float32))
    >>> [w.name.split("/")[-1] for w in twin.weights]
    ['W:0', 'U1:0', 'U2:0', 'bias_gate:0', 'bias_update:0', 'zeta:0', 'nu:0', \
'kernel:0', 'bias:0']
  """
  return _copy(model, check_windows, atol, _K3, _K2, "to_tf_keras")


def to_keras3(model, check_windows, *, atol=1e-5):
  """The Keras 3 twin of a tf_keras FastGRNN/FastRNN classifier: ``to_tf_keras`` reversed.

  The twin uses the ``tf_fastgrnn.keras3`` cells and runs on the current Keras 3 backend.
  Pruning wrappers must be stripped first (``stepping.parts`` names the call).

  Args:
    model: a tf_keras ``keras.Model`` of the layout ``ACCEPTED`` with
      ``tf_fastgrnn`` cells.
    check_windows, atol: as ``to_tf_keras``.

  Returns:
    A Keras 3 ``keras.Model`` with the same layer names and weights.

  Raises:
    ValueError: as ``to_tf_keras``.
  """
  return _copy(model, check_windows, atol, _K2, _K3, "to_keras3")


def _copy(model, check_windows, atol, source, target, caller):
  if isinstance(atol, bool) or not isinstance(atol, (int, float)) or not 0 < atol < np.inf:
    raise ValueError(f"{caller}: atol must be a positive finite number, got {atol!r}")
  layers, sequential, input_name, input_shape = _layout(model, source, target, caller)
  windows = _check_windows(check_windows, input_shape, caller)
  twin = _build_twin(model.name, layers, sequential, input_name, input_shape, source,
                     target)
  for src, dst in zip(layers, _twin_layers(twin, target)):
    _copy_weights(src, dst, source, target)
  _compare(model, twin, windows, atol, source, target)
  return twin


def _refuse(caller, source, got):
  return ValueError(f"{caller} accepts a {source.name} model {ACCEPTED}, with "
                    f"{source.cell_prefix} cells; got {got}")


def _layout(model, source, target, caller):
  """``(layers, sequential, input name, (T, D))`` of an ``ACCEPTED`` model, else the
  one-line refusal."""
  k = source.module
  if isinstance(model, target.module.Model):
    raise _refuse(caller, source, f"a {target.name} model {model.name!r}, which is "
                  "already what it would return")
  if not isinstance(model, k.Model):
    raise _refuse(caller, source, f"a {type(model).__module__}.{type(model).__name__}")
  sequential = isinstance(model, k.Sequential)
  if not sequential and type(model).__name__ != "Functional":
    raise _refuse(caller, source, f"a subclassed model {type(model).__name__}")
  try:
    inputs, outputs = model.inputs, model.outputs
  except (AttributeError, ValueError) as exc:
    raise _refuse(caller, source, f"a model with no input yet ({exc}): start it with "
                  "keras.Input((T, D))") from None
  if not inputs or len(inputs) != 1 or len(outputs) != 1:
    raise _refuse(caller, source, f"{len(inputs or [])} inputs and "
                  f"{len(outputs or [])} outputs")
  layers = [l for l in model.layers if not isinstance(l, k.layers.InputLayer)]
  kinds = [type(l).__name__ for l in layers]
  mean = len(layers) == 3 and type(layers[2]) is k.layers.GlobalAveragePooling1D  # pylint: disable=unidiomatic-typecheck
  if (len(layers) != (3 if mean else 2) or type(layers[0]) is not k.layers.RNN  # pylint: disable=unidiomatic-typecheck
      or type(layers[1]) is not k.layers.Dense):  # pylint: disable=unidiomatic-typecheck
    raise _refuse(caller, source, f"layers {kinds}")
  rnn, dense = layers[:2]
  kind = source.cell_kind(rnn.cell)
  if kind is None:
    raise _refuse(caller, source, f"the cell {type(rnn.cell).__module__}."
                  f"{type(rnn.cell).__name__} in {rnn.name!r}")
  flags = [f for f in ("return_state", "go_backwards", "stateful") if getattr(rnn, f)]
  if flags:
    raise _refuse(caller, source, f"{rnn.name!r} with "
                  f"{', '.join(f + '=True' for f in flags)}")
  if rnn.return_sequences != mean:
    raise _refuse(caller, source, f"{rnn.name!r} with return_sequences="
                  f"{rnn.return_sequences} and layers {kinds}")
  if dense.get_config().get("activation") != "linear":
    raise _refuse(caller, source, f"the Dense {dense.name!r} with activation "
                  f"{dense.get_config().get('activation')!r}")
  if mean:
    pool = layers[2]
    if pool.data_format != "channels_last" or getattr(pool, "keepdims", False):
      raise _refuse(caller, source, f"the pooling {pool.name!r} with data_format="
                    f"{pool.data_format!r}, keepdims={getattr(pool, 'keepdims', False)}")
  for layer in layers + [rnn.cell]:
    policy = layer.dtype_policy.name
    if policy != "float32":
      raise _refuse(caller, source, f"{layer.name!r} with dtype policy {policy!r}")
  input_name = "x"
  if not sequential:
    # The chain is read from the model's own graph (its config), so a layer called
    # twice, a skip connection or a side output is refused.
    config = model.get_config()
    by_name = {l["name"]: l for l in config.get("layers", [])}
    previous = _input_layer_names(config.get("input_layers", []))
    input_name = previous[0] if previous else None
    for layer in layers:
      nodes = by_name.get(layer.name, {}).get("inbound_nodes", [])
      if len(previous) != 1 or len(nodes) != 1 or _inbound_layer_names(nodes) != previous:
        raise _refuse(caller, source, f"layers that do not form one chain from the input "
                      f"to the output (at {layer.name!r})")
      previous = [layer.name]
    if _input_layer_names(config.get("output_layers", [])) != previous:
      raise _refuse(caller, source, "a model whose output is not its last layer's")
  shape = tuple(inputs[0].shape)
  if len(shape) != 3 or shape[-1] is None:
    raise _refuse(caller, source, f"an input of shape {shape}")
  return layers, sequential, input_name, (shape[1], int(shape[2]))


def _input_layer_names(entries):
  """Layer names of a config's ``input_layers``/``output_layers``: one ``[name, 0, 0]``
  (Keras 3 gives it bare for one input) or a list of them."""
  if entries and isinstance(entries[0], str):
    return [entries[0]]
  return [e[0] for e in entries]


def _inbound_layer_names(nodes):
  """The layers one inbound node reads, in a Keras 3 (``{"args": [...]}``) or tf_keras
  (``[[name, node, tensor, kwargs], ...]``) functional config."""
  node = nodes[0]
  if isinstance(node, dict):
    return [a["config"]["keras_history"][0] for a in node.get("args", [])
            if isinstance(a, dict) and "keras_history" in a.get("config", {})]
  return [entry[0] for entry in node]


def _check_windows(windows, input_shape, caller):
  try:
    x = np.asarray(windows, dtype=np.float32)
  except (TypeError, ValueError) as exc:
    raise ValueError(f"{caller}: check_windows must be a float array [N, T, D], got "
                     f"{type(windows).__name__} ({exc})") from None
  steps, dim = input_shape
  if x.ndim != 3 or len(x) < 1 or x.shape[2] != dim or (steps is not None
                                                        and x.shape[1] != steps):
    raise ValueError(f"{caller}: check_windows must be [N >= 1, {steps or 'T'}, {dim}] "
                     f"as the model's input, got shape {x.shape}")
  if not np.isfinite(x).all():
    raise ValueError(f"{caller}: check_windows has {int((~np.isfinite(x)).sum())} "
                     "non-finite values")
  return x


def _translate(source, target, family, serialized, where):
  """An initializer, regularizer or constraint of one Keras as the other's object, its
  arguments carried; None stays None."""
  if serialized is None:
    return None
  if isinstance(serialized, str):
    serialized = {"class_name": serialized, "config": {}}
  classes = []
  for keras_ in (source, target):
    try:
      classes.append(type(getattr(keras_.module, family).get(serialized["class_name"])))
    except (ValueError, TypeError):
      raise ValueError(f"{where} is {serialized['class_name']!r}, which {keras_.name} "
                       "does not have built in; use a built-in one") from None
  source_cls, target_cls = classes
  return target_cls.from_config(_arguments(source_cls, target_cls,
                                           serialized.get("config", {}), where, target))


def _defaults(cls):
  return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
          if p.default is not inspect.Parameter.empty}


def _arguments(source_cls, target_cls, config, where, target, skip=()):
  """The entries of ``config`` that ``target_cls``'s constructor takes. Another entry is
  dropped if it is ``source_cls``'s default (nothing lost), else refused by name."""
  taken = set(inspect.signature(target_cls.__init__).parameters) | {"name", "trainable"}
  defaults = _defaults(source_cls)
  kept = {}
  for key, value in config.items():
    if key in skip:
      continue
    if key in taken:
      kept[key] = value
    elif key not in defaults or value != defaults[key]:
      raise ValueError(f"{where} has {key}={value!r}, which {target.name}'s "
                       f"{target_cls.__name__} does not take")
  return kept


def _layer_arguments(layer, target_cls, source, target, skip=()):
  """``layer``'s config as ``target_cls`` arguments: dtype dropped (float32 checked),
  initializers, regularizers and constraints translated."""
  where = f"{layer.name!r} ({type(layer).__name__})"
  config = {k: v for k, v in layer.get_config().items() if k != "dtype"}
  for key, value in config.items():
    for suffix, family in (("_initializer", "initializers"),
                           ("_regularizer", "regularizers"),
                           ("_constraint", "constraints")):
      if key.endswith(suffix):
        config[key] = _translate(source, target, family, value, f"{where} {key}")
  return _arguments(type(layer), target_cls, config, where, target, skip)


def _build_twin(name, layers, sequential, input_name, input_shape, source, target):
  k = target.module
  rnn, dense = layers[:2]
  cell_cls = target.cells[source.cell_kind(rnn.cell)]
  cell = cell_cls(**_layer_arguments(rnn.cell, cell_cls, source, target))
  twin_rnn = k.layers.RNN(cell, **_layer_arguments(rnn, k.layers.RNN, source, target,
                                                   skip=("cell",)))
  twins = [twin_rnn,
           k.layers.Dense(**_layer_arguments(dense, k.layers.Dense, source, target))]
  if len(layers) == 3:
    pool_cls = k.layers.GlobalAveragePooling1D
    twins.append(pool_cls(**_layer_arguments(layers[2], pool_cls, source, target)))
  if sequential:
    return k.Sequential([k.Input(input_shape)] + twins, name=name)
  inputs = k.Input(input_shape, name=input_name)
  out = inputs
  for layer in twins:
    out = layer(out)
  return k.Model(inputs, out, name=name)


def _twin_layers(twin, target):
  return [l for l in twin.layers if not isinstance(l, target.module.layers.InputLayer)]


def _copy_weights(src, dst, source, target):
  """Every weight of ``src`` into the ``dst`` weight of the same name; a weight of either
  without a namesake, or of another shape, is refused by name."""
  def by_name(layer, keras_):
    named = {}
    for variable in layer.weights:
      name = keras_.short_name(variable)
      if name in named:
        raise ValueError(f"{keras_.name} layer {layer.name!r} has two weights named "
                         f"{name!r}: a copy by name would be ambiguous")
      named[name] = variable
    return named
  theirs, ours = by_name(src, source), by_name(dst, target)
  for name in theirs:
    if name not in ours:
      raise ValueError(f"weight {src.name}/{name} of the {source.name} model has no twin "
                       f"in {target.name}'s {type(dst).__name__} "
                       f"{_describe(dst, target)} (its weights: {sorted(ours)})")
  for name in ours:
    if name not in theirs:
      raise ValueError(f"the {target.name} twin's weight {dst.name}/{name} has no source "
                       f"in the {source.name} layer {src.name!r} (its weights: "
                       f"{sorted(theirs)})")
  for name, variable in theirs.items():
    value = source.numpy(variable)
    if tuple(value.shape) != tuple(ours[name].shape):
      raise ValueError(f"weight {src.name}/{name}: shape {tuple(value.shape)} in the "
                       f"{source.name} model, {tuple(ours[name].shape)} in its twin")
    ours[name].assign(value)


def _describe(layer, keras_):
  cell = getattr(layer, "cell", None)
  return f"({keras_.cell_prefix}.{type(cell).__name__})" if cell is not None else ""


def _compare(model, twin, windows, atol, source, target):
  got = np.asarray(model.predict(windows, batch_size=_BATCH, verbose=0), np.float64)
  want = np.asarray(twin.predict(windows, batch_size=_BATCH, verbose=0), np.float64)
  diff = np.abs(got - want)
  if np.isnan(diff).any():
    raise ValueError(f"the {source.name} model or its {target.name} twin gives non-finite "
                     "logits on check_windows: nothing to compare")
  worst = np.unravel_index(np.argmax(diff), diff.shape)
  if diff[worst] > atol:
    raise ValueError(
        f"the {target.name} twin's logits differ from the {source.name} model's by up to "
        f"{diff[worst]:.3g} (window {worst[0]}, class {worst[1]}: {want[worst]:.6g} vs "
        f"{got[worst]:.6g}), above atol={atol}: the two do not compute the same function")
