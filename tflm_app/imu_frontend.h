// SPDX-License-Identifier: Apache-2.0
// The imu_gravity front end (data/har.py gravity_split; --imu_frontend=imu_gravity): UCI
// HAR's split of the acceleration into gravity and body motion, causal so it streams.
// Per accelerometer axis, gravity is a one-pole low-pass,
//   g[t] = g[t-1] + alpha * (acc[t] - g[t-1]),  g[-1] = acc[0] (the first sample),
// alpha = 1 - exp(-2 pi f_c / f_s) (0.3 Hz at 50 Hz: model_settings.h's kGravityAlpha),
// and a frame is [acc - g, g, gyro]: 9 floats from the 6 raw ones. Run it on every sample
// of the IMU stream (not only inside windows): the model was trained on windows cut from
// the filtered stream. TFLM-free; tested on the host by logic_test.cc.
#ifndef TF_FASTGRNN_TFLM_APP_IMU_FRONTEND_H_
#define TF_FASTGRNN_TFLM_APP_IMU_FRONTEND_H_

namespace tf_fastgrnn {

class GravitySplit {
 public:
  static constexpr int kRawChannels = 6;  // acc x, y, z (g); gyro x, y, z (rad/s)
  static constexpr int kChannels = 9;     // body acc xyz, gravity xyz, gyro xyz
  explicit GravitySplit(float alpha) : alpha_(alpha) {}
  // The next sample starts a new stream (gravity restarts from it).
  void Reset() { started_ = false; }
  // One sample: raw[kRawChannels] in, frame[kChannels] out (may not alias raw).
  void Process(const float* raw, float* frame);
  const float* gravity() const { return gravity_; }

 private:
  float alpha_;
  bool started_ = false;
  float gravity_[3] = {};
};

}  // namespace tf_fastgrnn

#endif  // TF_FASTGRNN_TFLM_APP_IMU_FRONTEND_H_
