// SPDX-License-Identifier: Apache-2.0
// Where feature frames come from. The reference version is platform-free: it replays the
// test windows of test_vectors.cc as raw frames. A board port replaces this file with one
// that reads the sensor (IMU) or runs the audio front end named by kFrontend, and keeps
// the interface.
#ifndef TF_FASTGRNN_TFLM_APP_FEATURE_PROVIDER_H_
#define TF_FASTGRNN_TFLM_APP_FEATURE_PROVIDER_H_

// Writes the next raw (un-normalised) frame of kInputDim floats. Returns false when there
// are no more frames. *window_start is true on the first frame of a new window.
bool GetFeatureFrame(float* frame, bool* window_start);

#endif  // TF_FASTGRNN_TFLM_APP_FEATURE_PROVIDER_H_
