"""The quantization plan: JSON round trip, every point placed and read back, refusals."""

import dataclasses

import numpy as np
import pytest

from tf_fastgrnn import export
from tf_fastgrnn import models
from tf_fastgrnn import plan as plan_lib
from tf_fastgrnn import quantization

T, D, H, C = 4, 3, 6, 3


@pytest.fixture(scope="module")
def exported():
  rng = np.random.default_rng(3)
  model = models.sequence_classifier("fastgrnn", H, (T, D), C, u_rank=3)
  for var in model.weights:
    var.assign(rng.normal(0, 0.5, var.shape))
  windows = rng.normal(0, 1.5, (16, T, D)).astype(np.float32)
  qat = quantization.quantize_model(model, windows)
  float_model, plan = quantization.export_inputs(qat)
  return qat, float_model, plan, windows, export.convert_step_model(
      float_model, windows, plan=plan)


def test_plan_names_every_point_and_round_trips_through_json(exported, tmp_path):
  qat, _, plan, _, _ = exported
  cell = qat.get_layer("rnn").cell
  assert set(plan.points) == set(cell.ranges) | {"logits", "gate_out", "update_out", "h",
                                                 "h_next"}
  assert plan.points["gate_out"] == (1 / 256, -128)  # LOGISTIC's fixed output grid
  assert plan.points["h"] == plan.state == (1 / 128, 0)
  assert (plan.cell_type, plan.units, plan.input_dim, plan.w_rank, plan.u_rank) == (
      "FastGRNNCell", H, D, None, 3)
  path = plan.save(tmp_path / plan_lib.PLAN_FILE)
  assert plan_lib.QuantizationPlan.load(path) == plan


def test_every_plan_point_is_read_back_from_the_tflite(exported):
  *_, plan, _, tflite_bytes = exported
  export.verify_plan(tflite_bytes, plan)  # raises on any difference
  assert export.plan_point_quantization(tflite_bytes, plan) == plan.points


def test_a_plan_point_missing_from_the_graph_raises(exported):
  _, float_model, plan, windows, tflite_bytes = exported
  extra = dataclasses.replace(plan, points=dict(plan.points, xw1=(0.01, 0)))
  with pytest.raises(export.PlanMismatchError, match=r"\['xw1'\] not found"):
    export.verify_plan(tflite_bytes, extra)
  with pytest.raises(export.PlanMismatchError, match=r"\['xw1'\] not found"):
    export.convert_step_model(float_model, windows, plan=extra)


def test_a_plan_point_on_another_grid_raises(exported):
  *_, plan, _, tflite_bytes = exported
  scale, zero_point = plan.points["zeta_term"]
  other = dataclasses.replace(plan, points=dict(plan.points,
                                                zeta_term=(scale, zero_point + 1)))
  with pytest.raises(export.PlanMismatchError, match="zeta_term: plan"):
    export.verify_plan(tflite_bytes, other)


def test_export_refuses_a_qat_model_and_a_foreign_plan(exported):
  qat, float_model, plan, windows, _ = exported
  with pytest.raises(ValueError, match="is a QAT model.*export_inputs"):
    export.convert_step_model(qat, windows, plan=plan)
  with pytest.raises(ValueError, match="u_rank: model 3, plan 2"):
    export.convert_step_model(float_model, windows, plan=dataclasses.replace(plan, u_rank=2))


def test_plan_refuses_an_uncalibrated_model(exported):
  qat = quantization.quantize_model(exported[1])
  with pytest.raises(ValueError, match="not calibrated"):
    quantization.plan(qat)


def test_plan_rejects_bad_records():
  with pytest.raises(ValueError, match="cell_type must be one of"):
    plan_lib.QuantizationPlan("LSTMCell", 4, 2, None, None, None, "tanh", (0.1, 0), {})
  with pytest.raises(ValueError, match="point 'x'.*scale must be > 0"):
    plan_lib.QuantizationPlan("FastRNNCell", 4, 2, None, None, None, "tanh", (0.1, 0),
                              {"x": (0.0, 0)})
  with pytest.raises(ValueError, match="version"):
    plan_lib.QuantizationPlan.from_dict({"cell_type": "FastRNNCell"})
