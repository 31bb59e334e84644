// SPDX-License-Identifier: Apache-2.0
// The TFLM headers nearly every TFLM source includes (the flatbuffers schema above all),
// precompiled once per library build: parsing them is most of the time of each object.
// The Makefile copies this file into the library's build folder and compiles it there
// (TFLM_PCH=1, GCC); each TFLM object is then compiled with -include of the copy.
#ifndef TF_FASTGRNN_TFLM_APP_TFLM_PCH_H_
#define TF_FASTGRNN_TFLM_APP_TFLM_PCH_H_

#include "tensorflow/lite/kernels/internal/common.h"
#include "tensorflow/lite/kernels/internal/quantization_util.h"
#include "tensorflow/lite/kernels/kernel_util.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_common.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

#endif  // TF_FASTGRNN_TFLM_APP_TFLM_PCH_H_
