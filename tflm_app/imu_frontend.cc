// SPDX-License-Identifier: Apache-2.0
#include "imu_frontend.h"

namespace tf_fastgrnn {

void GravitySplit::Process(const float* raw, float* frame) {
  for (int i = 0; i < 3; ++i) {
    if (!started_) gravity_[i] = raw[i];
    gravity_[i] += alpha_ * (raw[i] - gravity_[i]);
    frame[i] = raw[i] - gravity_[i];
    frame[3 + i] = gravity_[i];
    frame[6 + i] = raw[3 + i];
  }
  started_ = true;
}

}  // namespace tf_fastgrnn
