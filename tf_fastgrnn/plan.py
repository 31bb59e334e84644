"""The quantization plan: what QAT trained on, as plain data the export must honour.

QAT (``quantization.plan``) writes down every int8 point of the cell and the classifier:
its name, scale and zero point, the state grid, the activations and the cell's shape.
The export (``export.convert_step_model(float_model, windows, plan=...)``) puts every
point on its tensor of the int8 graph, reads every one back from the ``.tflite`` and
raises ``PlanMismatchError`` naming the point that is missing or differs. The pipeline
saves the plan as ``quantization_plan.json`` next to ``model_int8.tflite``.

Point names (those of the QAT cell): ``x`` (the int8 input), ``xw``/``hu`` and the
low-rank halves ``xw1``/``hu1``, ``pre``, ``gate_pre``/``update_pre``, ``gate_out``/
``update_out`` (the activations' outputs), FastGRNN's ``zh``, ``one_minus_z``,
``zeta_term``, ``coef``, ``coef_update``, FastRNN's ``alpha_term``, ``beta_term``, the
state ``h`` and ``h_next``, and ``logits``.
"""

import dataclasses
import json
import pathlib
from typing import Dict, Optional, Tuple

from tf_fastgrnn import fileio

__all__ = ["EXPORTABLE_ACTIVATIONS", "PLAN_FILE", "PlanMismatchError", "QuantizationPlan",
           "check_exportable"]

PLAN_FILE = "quantization_plan.json"
CELL_TYPES = ("FastGRNNCell", "FastRNNCell")
# Activations whose int8 op the export places bit-exactly (LOGISTIC, TANH). The
# piecewise-linear and ReLU ones fuse into the converter's ADD (or become
# MINIMUM/MAXIMUM chains) that QAT does not model: the export refuses them.
EXPORTABLE_ACTIVATIONS = ("sigmoid", "tanh")
_VERSION = 1


def check_exportable(activations):
  """Raises ``ValueError`` naming the first activation the int8 export cannot place
  bit-exactly with its QAT model.

  Args:
    activations: ``{argument: activation name}``, e.g. ``{"gate_activation": "relu"}``.
  """
  for argument, act in sorted(activations.items()):
    if act is not None and act not in EXPORTABLE_ACTIVATIONS:
      raise ValueError(
          f"{argument}={act!r} cannot be exported bit-exact with its QAT model: the int8 "
          f"export supports {list(EXPORTABLE_ACTIVATIONS)} (the converter fuses {act!r} "
          "into other ops, whose roundings QAT does not model); train this cell without "
          "QAT and export it post-training (export.convert_step_model without a plan)")


class PlanMismatchError(ValueError):
  """The int8 model does not carry a point of the plan (missing or on another grid)."""


def _grid(value, what):
  scale, zero_point = value
  scale, zero_point = float(scale), int(zero_point)
  if not scale > 0 or not -128 <= zero_point <= 127:
    raise ValueError(f"{what}: scale must be > 0 and zero point in [-128, 127], "
                     f"got ({scale}, {zero_point})")
  return scale, zero_point


@dataclasses.dataclass(frozen=True)
class QuantizationPlan:
  """Every int8 point of a FastGRNN/FastRNN classifier, as QAT trained on it.

  Attributes:
    cell_type: ``"FastGRNNCell"`` or ``"FastRNNCell"``.
    units: hidden size H.
    input_dim: D.
    w_rank, u_rank: low ranks of W and U, None for full rank.
    gate_activation: FastGRNN's gate activation (None for FastRNN).
    update_activation: the update activation.
    state: ``(scale, zero_point)`` of h and h_next.
    points: ``{point: (scale, zero_point)}``, state and logits included.
  """
  cell_type: str
  units: int
  input_dim: int
  w_rank: Optional[int]
  u_rank: Optional[int]
  gate_activation: Optional[str]
  update_activation: str
  state: Tuple[float, int]
  points: Dict[str, Tuple[float, int]]

  def __post_init__(self):
    if self.cell_type not in CELL_TYPES:
      raise ValueError(f"cell_type must be one of {CELL_TYPES}, got {self.cell_type!r}")
    object.__setattr__(self, "state", _grid(self.state, "state"))
    object.__setattr__(self, "points", {name: _grid(v, f"point {name!r}")
                                        for name, v in sorted(self.points.items())})

  @property
  def activations(self):
    """``{"gate_activation": ..., "update_activation": ...}`` (gate only for FastGRNN)."""
    acts = {"update_activation": self.update_activation}
    if self.cell_type == "FastGRNNCell":
      acts["gate_activation"] = self.gate_activation
    return acts

  def check_cell(self, cell):
    """Raises ``ValueError`` unless this plan was made for ``cell`` (type, shape, ranks,
    activations) and every activation is one the export places bit-exactly."""
    wanted = {"cell_type": type(cell).__name__, "units": int(cell.units),
              "input_dim": int(cell.input_dim), "w_rank": cell.w_rank,
              "u_rank": cell.u_rank, "update_activation": cell.update_activation,
              "gate_activation": getattr(cell, "gate_activation", None)}
    differ = [f"{k}: model {v!r}, plan {getattr(self, k)!r}" for k, v in wanted.items()
              if getattr(self, k) != v]
    if differ:
      raise ValueError("the quantization plan is not this model's: " + "; ".join(differ))
    check_exportable(self.activations)

  def to_dict(self):
    d = dataclasses.asdict(self)
    d["state"] = list(self.state)
    d["points"] = {k: list(v) for k, v in self.points.items()}
    d["version"] = _VERSION
    return d

  @classmethod
  def from_dict(cls, d):
    d = dict(d)
    version = d.pop("version", None)
    if version != _VERSION:
      raise ValueError(f"quantization plan version {version!r}, this code reads {_VERSION}")
    fields = {f.name for f in dataclasses.fields(cls)}
    if set(d) != fields:
      raise ValueError(f"quantization plan fields {sorted(d)}, expected {sorted(fields)}")
    return cls(**d)

  def save(self, path):
    """Writes the plan as JSON (atomically); returns the path."""
    return fileio.write_json(path, self.to_dict())

  @classmethod
  def load(cls, path):
    return cls.from_dict(json.loads(pathlib.Path(path).read_text()))
