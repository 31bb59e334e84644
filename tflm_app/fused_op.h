// SPDX-License-Identifier: Apache-2.0
// The FASTGRNN_INT8 custom op: one int8 FastGRNN/FastRNN step plus the classifier, the
// whole of model_int8_fused.tflite (tf_fastgrnn.fused.convert_fused). It wraps the C
// kernel fused/fastgrnn_int8.c and computes, byte for byte, what the builtin int8 step
// model computes with TFLM's own kernels.
//
//   tflite::MicroMutableOpResolver<1> resolver;
//   resolver.AddCustom(tf_fastgrnn::kFusedOpName, tf_fastgrnn::Register_FASTGRNN_INT8());
//
// Inputs x [1, D], h [1, H]; outputs h_next [1, H], logits [1, C]; all int8. The custom
// options are the kernel's parameters (fused/fastgrnn_int8_options.h), used in place;
// what they store compactly (flag COMPACT: shifts, biases, tables) or ask to expand (flag
// EXPAND: bitmap-packed W/U to dense rows, int32 bias terms) Prepare decodes once into a
// persistent arena buffer of fastgrnn_int8_options_ram_bytes bytes.
#ifndef TF_FASTGRNN_TFLM_APP_FUSED_OP_H_
#define TF_FASTGRNN_TFLM_APP_FUSED_OP_H_

#include "tensorflow/lite/micro/micro_common.h"

namespace tf_fastgrnn {

constexpr const char* kFusedOpName = "FASTGRNN_INT8";

TFLMRegistration* Register_FASTGRNN_INT8();

}  // namespace tf_fastgrnn

#endif  // TF_FASTGRNN_TFLM_APP_FUSED_OP_H_
