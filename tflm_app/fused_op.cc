// SPDX-License-Identifier: Apache-2.0
#include "fused_op.h"

#include <new>

#include "fastgrnn_int8.h"
#include "fastgrnn_int8_options.h"
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace tf_fastgrnn {
namespace {

constexpr int kInputX = 0;
constexpr int kInputH = 1;
constexpr int kOutputH = 0;
constexpr int kOutputLogits = 1;

struct OpData {
  const uint8_t* options = nullptr;  // the custom options, inside the model (flash)
  uint32_t options_size = 0;
  fastgrnn_int8_params params;       // points into options and into decoded
  void* decoded = nullptr;           // persistent: what the options store compactly or
  int32_t decoded_bytes = 0;         // ask to expand (dense rows, bias terms, tables)
  int scratch_index = -1;
  int32_t scratch_bytes = 0;
};

void* Init(TfLiteContext* context, const char* buffer, size_t length) {
  void* raw = context->AllocatePersistentBuffer(context, sizeof(OpData));
  if (raw == nullptr) return nullptr;
  OpData* data = new (raw) OpData();
  data->options = reinterpret_cast<const uint8_t*>(buffer);
  data->options_size = static_cast<uint32_t>(length);
  return data;
}

bool CheckTensor(const TfLiteTensor* t, const char* name, int dim) {
  if (t == nullptr) {
    MicroPrintf("FASTGRNN_INT8: %s missing", name);
    return false;
  }
  if (t->type != kTfLiteInt8) {
    MicroPrintf("FASTGRNN_INT8: %s has type %s, expected int8", name,
                TfLiteTypeGetName(t->type));
    return false;
  }
  if (t->dims->size != 2 || t->dims->data[0] != 1 || t->dims->data[1] != dim) {
    MicroPrintf("FASTGRNN_INT8: %s is not [1, %d] as the options say", name, dim);
    return false;
  }
  return true;
}

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  OpData* data = static_cast<OpData*>(node->user_data);
  if (data == nullptr) {
    MicroPrintf("FASTGRNN_INT8: no op data (arena full?)");
    return kTfLiteError;
  }
  if (node->inputs->size != 2 || node->outputs->size != 2) {
    MicroPrintf("FASTGRNN_INT8: expected 2 inputs (x, h) and 2 outputs (h_next, logits), "
                "got %d and %d", node->inputs->size, node->outputs->size);
    return kTfLiteError;
  }
  if (data->options == nullptr) {
    MicroPrintf("FASTGRNN_INT8: the op has no custom options");
    return kTfLiteError;
  }
  // Decoded once: the persistent buffer (4-byte aligned, as the arena's allocations are)
  // holds what the options store compactly or ask to expand; Prepare may run again
  // (e.g. after a reset), so the buffer is reused.
  const int32_t need = fastgrnn_int8_options_ram_bytes(data->options, data->options_size);
  int rc = need < 0 ? need : FASTGRNN_INT8_OK;
  if (rc == FASTGRNN_INT8_OK && need > 0 && data->decoded == nullptr) {
    data->decoded = context->AllocatePersistentBuffer(context, need);
    if (data->decoded == nullptr) {
      MicroPrintf("FASTGRNN_INT8: no room in the arena for %d bytes of decoded options",
                  static_cast<int>(need));
      return kTfLiteError;
    }
    data->decoded_bytes = need;
  }
  if (rc == FASTGRNN_INT8_OK) {
    rc = fastgrnn_int8_parse_options(data->options, data->options_size, data->decoded,
                                     static_cast<uint32_t>(data->decoded_bytes),
                                     &data->params);
  }
  if (rc != FASTGRNN_INT8_OK) {
    MicroPrintf("FASTGRNN_INT8: bad custom options (%d bytes): %s (%d)",
                static_cast<int>(data->options_size), fastgrnn_int8_error_string(rc), rc);
    return kTfLiteError;
  }
  const fastgrnn_int8_params& p = data->params;
  tflite::MicroContext* micro_context = tflite::GetMicroContext(context);
  TfLiteTensor* x = micro_context->AllocateTempInputTensor(node, kInputX);
  TfLiteTensor* h = micro_context->AllocateTempInputTensor(node, kInputH);
  TfLiteTensor* h_next = micro_context->AllocateTempOutputTensor(node, kOutputH);
  TfLiteTensor* logits = micro_context->AllocateTempOutputTensor(node, kOutputLogits);
  bool ok = CheckTensor(x, "x", p.input_dim);
  ok &= CheckTensor(h, "h", p.hidden_dim);
  ok &= CheckTensor(h_next, "h_next", p.hidden_dim);
  ok &= CheckTensor(logits, "logits", p.num_classes);
  for (TfLiteTensor* t : {x, h, h_next, logits}) {
    if (t != nullptr) micro_context->DeallocateTempTfLiteTensor(t);
  }
  if (!ok) return kTfLiteError;
  data->scratch_bytes = fastgrnn_int8_scratch_bytes(&p);
  if (data->scratch_bytes <= 0) {
    MicroPrintf("FASTGRNN_INT8: the kernel refuses the parameters (%d)",
                static_cast<int>(data->scratch_bytes));
    return kTfLiteError;
  }
  return context->RequestScratchBufferInArena(context, data->scratch_bytes,
                                              &data->scratch_index);
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  OpData* data = static_cast<OpData*>(node->user_data);
  const TfLiteEvalTensor* x = tflite::micro::GetEvalInput(context, node, kInputX);
  const TfLiteEvalTensor* h = tflite::micro::GetEvalInput(context, node, kInputH);
  TfLiteEvalTensor* h_next = tflite::micro::GetEvalOutput(context, node, kOutputH);
  TfLiteEvalTensor* logits = tflite::micro::GetEvalOutput(context, node, kOutputLogits);
  fastgrnn_int8_scratch scratch;
  scratch.buf = static_cast<int8_t*>(context->GetScratchBuffer(context, data->scratch_index));
  scratch.size = data->scratch_bytes;
  const int rc = fastgrnn_int8_step(
      &data->params, tflite::micro::GetTensorData<int8_t>(x),
      tflite::micro::GetTensorData<int8_t>(h), tflite::micro::GetTensorData<int8_t>(h_next),
      tflite::micro::GetTensorData<int8_t>(logits), &scratch);
  if (rc != FASTGRNN_INT8_OK) {
    MicroPrintf("FASTGRNN_INT8: step failed: %s (%d)", fastgrnn_int8_error_string(rc), rc);
    return kTfLiteError;
  }
  return kTfLiteOk;
}

}  // namespace

TFLMRegistration* Register_FASTGRNN_INT8() {
  static TFLMRegistration registration = tflite::micro::RegisterOp(Init, Prepare, Eval);
  return &registration;
}

}  // namespace tf_fastgrnn
