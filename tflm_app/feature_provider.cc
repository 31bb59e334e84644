// SPDX-License-Identifier: Apache-2.0
#include "feature_provider.h"

#include "model_settings.h"
#include "test_vectors.h"

namespace {
int g_window = 0;
int g_step = 0;
}  // namespace

bool GetFeatureFrame(float* frame, bool* window_start) {
  if (g_window >= kNumTestWindows) return false;
  // Undo the quantization and the normalisation the export applied, so the app's own
  // normalise-and-quantize path is exercised as on a device.
  const int8_t* q = kTestInputs[g_window][g_step];
  for (int i = 0; i < kInputDim; ++i) {
    const float normalised = (q[i] - kInputZeroPoint) * kInputScale;
    frame[i] = normalised * kFeatureStd[i] + kFeatureMean[i];
  }
  *window_start = g_step == 0;
  if (++g_step == kStepsPerWindow) {
    g_step = 0;
    ++g_window;
  }
  return true;
}
