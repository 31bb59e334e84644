"""The quantization plan: JSON round trip, every point placed and read back, refusals."""

import dataclasses

import numpy as np
import pytest

from tf_fastgrnn import export
from tf_fastgrnn import models
from tf_fastgrnn import plan as plan_lib
from tf_fastgrnn import quantization
from tf_fastgrnn import runtime
from tf_fastgrnn import stepping

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
  assert plan.points["h"] == plan.points["h_next"] == plan.state
  assert (plan.cell_type, plan.units, plan.input_dim, plan.w_rank, plan.u_rank) == (
      "FastGRNNCell", H, D, None, 3)
  path = plan.save(tmp_path / plan_lib.PLAN_FILE)
  assert plan_lib.QuantizationPlan.load(path) == plan


def test_every_plan_point_is_read_back_from_the_tflite(exported):
  *_, plan, _, tflite_bytes = exported
  export.verify_plan(tflite_bytes, plan)  # raises on any difference
  assert export.plan_point_quantization(tflite_bytes, plan) == plan.points


def test_from_plan_rebuilds_the_qat_model_bit_exact_with_tflm(exported):
  # The export's inputs alone (float model + plan, no QAT model) give the Keras QAT
  # numerics: the same plan back, and h and logits equal to TFLM's at every step.
  qat, float_model, plan, windows, tflite_bytes = exported
  rebuilt = quantization.from_plan(float_model, plan)
  assert quantization.plan(rebuilt) == plan
  x = np.concatenate([windows, np.random.default_rng(4).normal(0, 2, (8, T, D))])
  x = x.astype(np.float32)
  quantization.use_int8_kernels(qat, True)
  try:
    want = stepping.run_steps(qat, x)
  finally:
    quantization.use_int8_kernels(qat, False)
  got = stepping.run_steps(rebuilt, x)
  for name in ("h_next", "logits"):
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)
  tflm = runtime.TFLMStepRunner(tflite_bytes).run_windows(x)
  io = runtime.step_io(tflite_bytes)
  np.testing.assert_array_equal(
      runtime.quantize(got["logits"], io["logits"]["scale"], io["logits"]["zero_point"]),
      tflm["logits_q"])


def test_from_plan_refuses_a_plan_lacking_a_point(exported):
  _, float_model, plan, _, _ = exported
  points = dict(plan.points)
  del points["zeta_term"]
  with pytest.raises(plan_lib.PlanMismatchError, match="no grid for \\['zeta_term'\\]"):
    quantization.from_plan(float_model, dataclasses.replace(plan, points=points))


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
