"""Every cell × activation × rank: Keras QAT = TFLM byte for byte at every step, or the
export refuses the model naming the activation."""

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
RANKS = {"full": {}, "lowrank": {"w_rank": 2, "u_rank": 3}}
FIXED = plan_lib.EXPORTABLE_ACTIVATIONS
REFUSED = ("relu", "quantized_sigmoid", "quantized_tanh")


def _qat(cell, rank, seed=11, **acts):
  rng = np.random.default_rng(seed)
  model = models.sequence_classifier(cell, H, (T, D), C, **RANKS[rank], **acts)
  for var in model.weights:
    var.assign(rng.normal(0, 0.6, var.shape))
  windows = rng.normal(0, 1.5, (24, T, D)).astype(np.float32)
  return quantization.quantize_model(model, windows), windows, rng


def assert_qat_equals_tflm_every_step(qat, tflite_bytes, windows):
  """h and logits of Keras QAT (int8 kernels) and TFLM, as int8, at every step."""
  quantization.use_int8_kernels(qat, True)
  try:
    keras = stepping.run_steps(qat, windows)
  finally:
    quantization.use_int8_kernels(qat, False)
  tflm = runtime.TFLMStepRunner(tflite_bytes).run_windows(windows)
  io = runtime.step_io(tflite_bytes)
  for name, key in (("h_next", "h_q"), ("logits", "logits_q")):
    want = runtime.quantize(keras[name], io[name]["scale"], io[name]["zero_point"])
    np.testing.assert_array_equal(want, tflm[key], err_msg=name)


# Every pair of factors at least once (a covering design, not the full product): the
# activation tables and their plan points do not depend on the rank, which only shapes
# the W/U matmuls in front of them. FastGRNN: every gate x update pair low-rank, and each
# activation in each position full-rank (sigmoid-tanh, tanh-sigmoid); FastRNN: each
# activation once, at each rank once.
_CASES = ([("fastgrnn", "lowrank", {"gate_activation": g, "update_activation": u})
           for g in FIXED for u in FIXED]
          + [("fastgrnn", "full", {"gate_activation": g, "update_activation": u})
             for g, u in zip(FIXED, reversed(FIXED))]
          + [("fastrnn", rank, {"update_activation": u})
             for rank, u in zip(RANKS, reversed(FIXED))])


@pytest.mark.parametrize("cell,rank,acts", _CASES,
                         ids=[f"{c}-{r}-{'-'.join(a.values())}" for c, r, a in _CASES])
def test_exported_activations_are_bit_exact_at_every_step(cell, rank, acts):
  qat, windows, rng = _qat(cell, rank, **acts)
  float_model, plan = quantization.export_inputs(qat)
  tflite_bytes = export.convert_step_model(float_model, windows, plan=plan)
  test = rng.normal(0, 1.5, (8, T, D)).astype(np.float32)
  assert_qat_equals_tflm_every_step(qat, tflite_bytes, np.concatenate([windows[:8], test]))


_REFUSALS = ([("fastgrnn", "gate_activation", a) for a in REFUSED]
             + [("fastgrnn", "update_activation", a) for a in REFUSED]
             + [("fastrnn", "update_activation", a) for a in REFUSED])


@pytest.mark.parametrize("cell,argument,act", _REFUSALS)
def test_qat_refuses_activations_the_export_cannot_place(cell, argument, act):
  model = models.sequence_classifier(cell, H, (T, D), C, **RANKS["lowrank"],
                                     **{argument: act})
  with pytest.raises(ValueError, match=f"{argument}='{act}' cannot be exported bit-exact"):
    quantization.quantize_model(model)


@pytest.mark.parametrize("cell,argument,act", _REFUSALS)
def test_export_refuses_a_plan_with_activations_it_cannot_place(cell, argument, act):
  # A plan written elsewhere (QAT refuses these activations before training): the export
  # checks the plan's activations too, before converting anything.
  qat, windows, _ = _qat(cell, "lowrank")
  _, plan = quantization.export_inputs(qat)
  other = models.sequence_classifier(cell, H, (T, D), C, **RANKS["lowrank"],
                                     **{argument: act})
  plan = dataclasses.replace(plan, **{argument: act})
  with pytest.raises(ValueError, match=f"{argument}='{act}' cannot be exported bit-exact"):
    export.convert_step_model(other, windows, plan=plan)
