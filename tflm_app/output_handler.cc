// SPDX-License-Identifier: Apache-2.0
#include "output_handler.h"

#include <cstdio>

#include "model_settings.h"
#include "tensorflow/lite/micro/micro_log.h"

void HandleWindowResult(int window, int class_index, float logit) {
  MicroPrintf("window %d: %s (logit %d/1000)", window, kCategoryLabels[class_index],
              static_cast<int>(logit * 1000));
}

void HandleDetection(int step, int class_index, float score) {
  MicroPrintf("step %d: detected %s (score %d%%)", step, kCategoryLabels[class_index],
              static_cast<int>(score * 100));
}

void LogWrite(const char* text, int size) {
  // fwrite, not printf: no formatting code is linked.
  std::fwrite(text, 1, static_cast<size_t>(size), stderr);
}
