// SPDX-License-Identifier: Apache-2.0
#include "step_model.h"

#include <cstring>
#include <new>

#include "model_settings.h"
#ifdef TF_FASTGRNN_FUSED_OP
#include "fused_op.h"
#endif
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace tf_fastgrnn {
namespace {

#ifdef TF_FASTGRNN_FUSED_OP
// model_int8_fused.tflite: one FASTGRNN_INT8 custom op (fused_op.h).
using OpResolver = tflite::MicroMutableOpResolver<1>;
#else
using OpResolver = tflite::MicroMutableOpResolver<kNumModelOps>;
#endif

// Static storage: no heap on the device.
alignas(OpResolver) uint8_t g_resolver_buffer[sizeof(OpResolver)];
alignas(tflite::MicroInterpreter) uint8_t g_interpreter_buffer[sizeof(tflite::MicroInterpreter)];

constexpr StateSpec MakeSpec(int i) {
  return {kStateSizes[i], kStateInScales[i], kStateInZeroPoints[i], kStateOutScales[i],
          kStateOutZeroPoints[i]};
}
static_assert(kNumStates >= 1 && kNumStates <= RecurrentStates::kMaxStates,
              "model_settings.h lists more states than the app carries");

// `name` and `role` ("x", "" or "h", " in") say which tensor a message is about.
bool CheckTensor(const TfLiteTensor* t, const char* name, const char* role, int dim,
                 float scale, int zero_point) {
  if (t == nullptr) {
    MicroPrintf("%s%s: tensor missing", name, role);
    return false;
  }
  bool ok = true;
  if (t->type != kTfLiteInt8) {
    MicroPrintf("%s%s: type %d, expected int8", name, role, t->type);
    ok = false;
  }
  if (t->dims->size != 2 || t->dims->data[0] != 1 || t->dims->data[1] != dim) {
    MicroPrintf("%s%s: dims do not match [1, %d] from model_settings.h", name, role, dim);
    ok = false;
  }
  if (t->params.scale != scale || t->params.zero_point != zero_point) {
    MicroPrintf("%s%s: quantization differs from model_settings.h", name, role);
    ok = false;
  }
  return ok;
}

}  // namespace

bool StepModel::Init(const unsigned char* model_data, uint8_t* arena, int arena_size) {
  const tflite::Model* model = tflite::GetModel(model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    MicroPrintf("model schema version %d, this TFLM supports %d",
                static_cast<int>(model->version()), TFLITE_SCHEMA_VERSION);
    return false;
  }
  StateSpec specs[kNumStates];
  for (int i = 0; i < kNumStates; ++i) specs[i] = MakeSpec(i);
  if (!states_.Init(specs, kNumStates, state_buffer_, kStateBytes)) {
    MicroPrintf("model_settings.h: bad state sizes (kStateBytes=%d)", kStateBytes);
    return false;
  }
  OpResolver* resolver = new (g_resolver_buffer) OpResolver();
#ifdef TF_FASTGRNN_FUSED_OP
  if (resolver->AddCustom(kFusedOpName, Register_FASTGRNN_INT8()) != kTfLiteOk) {
    MicroPrintf("could not register op %s", kFusedOpName);
    return false;
  }
#else
#define TF_FASTGRNN_ADD_OP(name)                      \
  if (resolver->Add##name() != kTfLiteOk) {           \
    MicroPrintf("could not register op " #name);     \
    return false;                                     \
  }
  TF_FASTGRNN_MODEL_OPS(TF_FASTGRNN_ADD_OP)
#undef TF_FASTGRNN_ADD_OP
#endif
  interpreter_ = new (g_interpreter_buffer)
      tflite::MicroInterpreter(model, *resolver, arena, arena_size);
  if (interpreter_->AllocateTensors() != kTfLiteOk) {
    MicroPrintf("AllocateTensors failed: kTensorArenaSize=%d may be too small", arena_size);
    return false;
  }
  // An input the app does not feed (an LSTM's c, say) would run with whatever the arena
  // holds: the counts must be exactly x + states in, logits + states out.
  if (static_cast<int>(interpreter_->inputs_size()) != kNumModelInputs ||
      static_cast<int>(interpreter_->outputs_size()) != kNumModelOutputs) {
    MicroPrintf("model has %d inputs and %d outputs; model_settings.h says %d and %d "
                "(x/logits + %d states): regenerate the device files from this model",
                static_cast<int>(interpreter_->inputs_size()),
                static_cast<int>(interpreter_->outputs_size()), kNumModelInputs,
                kNumModelOutputs, kNumStates);
    return false;
  }
  x_ = interpreter_->input(kInputIndex);
  logits_tensor_ = interpreter_->output(kLogitsIndex);
  bool ok = CheckTensor(x_, "x", "", kInputDim, kInputScale, kInputZeroPoint);
  ok &= CheckTensor(logits_tensor_, "logits", "", kNumClasses, kLogitsScale, kLogitsZeroPoint);
  for (int i = 0; i < kNumStates; ++i) {
    state_in_[i] = interpreter_->input(kStateInIndices[i]);
    state_out_[i] = interpreter_->output(kStateOutIndices[i]);
    ok &= CheckTensor(state_in_[i], kStateNames[i], " in", kStateSizes[i], kStateInScales[i],
                      kStateInZeroPoints[i]);
    ok &= CheckTensor(state_out_[i], kStateNames[i], " out", kStateSizes[i], kStateOutScales[i],
                      kStateOutZeroPoints[i]);
  }
  Reset();
  return ok;
}

void StepModel::Reset() {
  states_.Reset();
  std::memset(logits_, kLogitsZeroPoint, sizeof(logits_));
}

bool StepModel::Step(const int8_t* frame) {
  // Every input before every invoke: TFLM may reuse input buffers for intermediates.
  std::memcpy(x_->data.int8, frame, kInputDim);
  for (int i = 0; i < kNumStates; ++i) {
    std::memcpy(state_in_[i]->data.int8, states_.state(i), kStateSizes[i]);
  }
  if (interpreter_->Invoke() != kTfLiteOk) {
    MicroPrintf("Invoke failed");
    return false;
  }
  for (int i = 0; i < kNumStates; ++i) states_.Carry(i, state_out_[i]->data.int8);
  std::memcpy(logits_, logits_tensor_->data.int8, kNumClasses);
  return true;
}

size_t StepModel::arena_used() const {
  return interpreter_ == nullptr ? 0 : interpreter_->arena_used_bytes();
}

}  // namespace tf_fastgrnn
