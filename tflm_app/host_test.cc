// SPDX-License-Identifier: Apache-2.0
// Replays the export's test vectors through TFLM and checks every output byte (state and
// logits after every step) against what the tflite_micro Python runtime produced, and
// each window's class from the app's read-out (WindowReadout: last step, or the int32
// sum over the window) against the class the Python side computed.
#include <cstdint>
#include <cstdio>

#include "model_data.h"
#include "model_settings.h"
#include "step_model.h"
#include "streaming_logic.h"
#include "test_vectors.h"

namespace {
alignas(16) uint8_t g_arena[kTensorArenaSize];
}  // namespace

int main() {
  tf_fastgrnn::StepModel model;
  if (!model.Init(g_model_data, g_arena, kTensorArenaSize)) {
    std::printf("0 passed, 1 failed\n");
    return 1;
  }
  int passed = 0;
  int failed = 0;
  int32_t sums[kNumClasses];
  tf_fastgrnn::WindowReadout readout(kNumClasses, kReadoutMean, kLogitsZeroPoint, sums);
  for (int w = 0; w < kNumTestWindows; ++w) {
    model.Reset();
    readout.Reset();
    int mismatched_bytes = 0;
    for (int t = 0; t < kStepsPerWindow; ++t) {
      if (!model.Step(kTestInputs[w][t])) {
        mismatched_bytes = -1;
        break;
      }
      for (int i = 0; i < kHiddenDim; ++i) {
        mismatched_bytes += model.state()[i] != kTestStates[w][t][i];
      }
      for (int i = 0; i < kNumClasses; ++i) {
        mismatched_bytes += model.logits()[i] != kTestLogits[w][t][i];
      }
      readout.Add(model.logits());
    }
    const bool class_ok = readout.Class() == kTestWindowClasses[w];
    std::printf("window %d (label %s): %s (%d of %d bytes differ); %s read-out class %s %s\n",
                w, kCategoryLabels[kTestLabels[w]],
                mismatched_bytes == 0 ? "bit-exact" : "DIFFERS", mismatched_bytes,
                kStepsPerWindow * (kHiddenDim + kNumClasses), kReadoutMean ? "mean" : "last",
                kCategoryLabels[readout.Class()], class_ok ? "as expected" : "DIFFERS");
    mismatched_bytes == 0 && class_ok ? ++passed : ++failed;
  }
  std::printf("arena used %d of %d bytes\n", static_cast<int>(model.arena_used()),
              kTensorArenaSize);
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
