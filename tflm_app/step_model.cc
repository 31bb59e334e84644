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

StateCarry MakeCarry() {
  return StateCarry(kStateOutScale, kStateOutZeroPoint, kStateInScale, kStateInZeroPoint);
}

bool CheckTensor(const TfLiteTensor* t, const char* name, int dim, float scale,
                 int zero_point) {
  if (t == nullptr) {
    MicroPrintf("%s: tensor missing", name);
    return false;
  }
  bool ok = true;
  if (t->type != kTfLiteInt8) {
    MicroPrintf("%s: type %d, expected int8", name, t->type);
    ok = false;
  }
  if (t->dims->size != 2 || t->dims->data[0] != 1 || t->dims->data[1] != dim) {
    MicroPrintf("%s: dims do not match [1, %d] from model_settings.h", name, dim);
    ok = false;
  }
  if (t->params.scale != scale || t->params.zero_point != zero_point) {
    MicroPrintf("%s: quantization differs from model_settings.h", name);
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
  if (kHiddenDim > static_cast<int>(sizeof(state_)) ||
      kNumClasses > static_cast<int>(sizeof(logits_))) {
    MicroPrintf("model too wide for the app buffers (H=%d, C=%d)", kHiddenDim, kNumClasses);
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
  x_ = interpreter_->input(kInputIndex);
  h_in_ = interpreter_->input(kStateInIndex);
  h_out_ = interpreter_->output(kStateOutIndex);
  logits_tensor_ = interpreter_->output(kLogitsIndex);
  bool ok = CheckTensor(x_, "x", kInputDim, kInputScale, kInputZeroPoint);
  ok &= CheckTensor(h_in_, "h", kHiddenDim, kStateInScale, kStateInZeroPoint);
  ok &= CheckTensor(h_out_, "h_next", kHiddenDim, kStateOutScale, kStateOutZeroPoint);
  ok &= CheckTensor(logits_tensor_, "logits", kNumClasses, kLogitsScale, kLogitsZeroPoint);
  Reset();
  return ok;
}

void StepModel::Reset() {
  std::memset(state_, kStateInZeroPoint, sizeof(state_));
  std::memset(logits_, kLogitsZeroPoint, sizeof(logits_));
}

bool StepModel::Step(const int8_t* frame) {
  static const StateCarry carry = MakeCarry();
  // Every input before every invoke: TFLM may reuse input buffers for intermediates.
  std::memcpy(x_->data.int8, frame, kInputDim);
  std::memcpy(h_in_->data.int8, state_, kHiddenDim);
  if (interpreter_->Invoke() != kTfLiteOk) {
    MicroPrintf("Invoke failed");
    return false;
  }
  carry.Carry(h_out_->data.int8, kHiddenDim, state_);
  std::memcpy(logits_, logits_tensor_->data.int8, kNumClasses);
  return true;
}

size_t StepModel::arena_used() const {
  return interpreter_ == nullptr ? 0 : interpreter_->arena_used_bytes();
}

}  // namespace tf_fastgrnn
