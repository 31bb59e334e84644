// SPDX-License-Identifier: Apache-2.0
// Runs the exported int8 step model (x_t, states_{t-1}) -> (states_t, logits) in TFLM, one
// time step per Invoke, carrying every recurrent state (h; an LSTM also c) between
// invokes. Used by the app and the host test.
#ifndef TF_FASTGRNN_TFLM_APP_STEP_MODEL_H_
#define TF_FASTGRNN_TFLM_APP_STEP_MODEL_H_

#include <cstddef>
#include <cstdint>

#include "model_settings.h"
#include "streaming_logic.h"
#include "tensorflow/lite/micro/micro_interpreter.h"

namespace tf_fastgrnn {

class StepModel {
 public:
  // Checks schema version, the model's input and output counts, tensor types, dims and
  // quantization against model_settings.h; logs every mismatch with MicroPrintf.
  // Returns false on any.
  bool Init(const unsigned char* model_data, uint8_t* arena, int arena_size);
  // Zero states (each state's zero point): call at the start of every window.
  void Reset();
  // One step on an int8 frame [kInputDim]; returns false when Invoke fails. Every state
  // output is carried into its state input for the next call.
  bool Step(const int8_t* frame);
  const int8_t* logits() const { return logits_; }
  // h, the hidden state after the last step [kHiddenDim].
  const int8_t* state() const { return states_.state(0); }
  // State i of kNumStates (0: h, 1: an LSTM's c), as model_settings.h orders them.
  const int8_t* state(int i) const { return states_.state(i); }
  size_t arena_used() const;

 private:
  tflite::MicroInterpreter* interpreter_ = nullptr;
  TfLiteTensor* x_ = nullptr;
  TfLiteTensor* state_in_[kNumStates] = {};
  TfLiteTensor* state_out_[kNumStates] = {};
  TfLiteTensor* logits_tensor_ = nullptr;
  RecurrentStates states_;
  int8_t state_buffer_[kStateBytes] = {};
  int8_t logits_[kNumClasses] = {};
};

}  // namespace tf_fastgrnn

#endif  // TF_FASTGRNN_TFLM_APP_STEP_MODEL_H_
