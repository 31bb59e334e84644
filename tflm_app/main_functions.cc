// SPDX-License-Identifier: Apache-2.0
#include "main_functions.h"

#include <cstdint>

#include "feature_provider.h"
#include "model_data.h"
#include "model_settings.h"
#include "output_handler.h"
#include "step_model.h"
#include "streaming_logic.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace {

// kTensorArenaSize comes from the export: the arena TFLM needed on the 64-bit host,
// measured with the RecordingMicroAllocator and a search for the smallest arena that
// allocates, plus a margin (see model_settings.h). A 32-bit MCU needs less (default HAR
// model: 5886 B on the host, 4176 B on a Cortex-M4F); -DTF_FASTGRNN_TENSOR_ARENA_SIZE
// sets a figure measured on the target.
alignas(16) uint8_t g_arena[kTensorArenaSize];
tf_fastgrnn::StepModel g_model;
#ifdef TF_FASTGRNN_KEYWORD_SPOTTING
// Audio tasks only (model_settings.h defines the macro): kSmoothingSteps x kNumClasses.
float g_history[tf_fastgrnn::PosteriorSmoother::HistorySize(kNumClasses, kSmoothingSteps)];
tf_fastgrnn::PosteriorSmoother g_smoother(kNumClasses, kSmoothingSteps, kDetectionThreshold,
                                          kSuppressionSteps, g_history);
#endif
// The window's read-out (kReadoutMean: the int32 sum of every step's logits; else the
// last step's), reported at the window's end.
int32_t g_window_sums[kNumClasses];
tf_fastgrnn::WindowReadout g_readout(kNumClasses, kReadoutMean, kLogitsZeroPoint,
                                     g_window_sums);
int g_step_in_window = 0;
int g_window = 0;
int g_total_steps = 0;

}  // namespace

bool setup() {
  if (!g_model.Init(g_model_data, g_arena, kTensorArenaSize)) {
    MicroPrintf("setup failed");
    return false;
  }
  MicroPrintf("tf_fastgrnn app: %d-byte model, arena used %d of %d bytes", kModelBytes,
              static_cast<int>(g_model.arena_used()), kTensorArenaSize);
  return true;
}

bool loop() {
  float raw[kInputDim];
  bool window_start = false;
  if (!GetFeatureFrame(raw, &window_start)) return false;
  if (window_start) {
    g_model.Reset();  // every window starts from h = 0
    g_readout.Reset();
    g_step_in_window = 0;
  }
  int8_t frame[kInputDim];
  tf_fastgrnn::QuantizeFrame(raw, kFeatureMean, kFeatureStd, kInputDim, kInputScale,
                             kInputZeroPoint, frame);
  if (!g_model.Step(frame)) return false;
  ++g_total_steps;
  g_readout.Add(g_model.logits());
#ifdef TF_FASTGRNN_KEYWORD_SPOTTING
  float score = 0.0f;
  const int detected =
      g_smoother.Update(g_model.logits(), kLogitsScale, kLogitsZeroPoint, &score);
  if (detected >= 0) HandleDetection(g_total_steps, detected, score);
#endif
  if (++g_step_in_window == kStepsPerWindow) {
    const int top = g_readout.Class();
    HandleWindowResult(g_window++, top, g_readout.Logit(top, kLogitsScale));
  }
  return true;
}
