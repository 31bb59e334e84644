// Runs the exported int8 step model (x_t, h_{t-1}) -> (h_t, logits) in TFLM, one time step
// per Invoke, carrying the state between invokes. Used by the app and the host test.
#ifndef TF_FASTGRNN_TFLM_APP_STEP_MODEL_H_
#define TF_FASTGRNN_TFLM_APP_STEP_MODEL_H_

#include <cstdint>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "streaming_logic.h"

namespace tf_fastgrnn {

class StepModel {
 public:
  // Checks schema version, tensor types and dims against model_settings.h; logs every
  // mismatch with MicroPrintf. Returns false on any.
  bool Init(const unsigned char* model_data, uint8_t* arena, int arena_size);
  // Zero state (the state's zero point): call at the start of every window.
  void Reset();
  // One step on an int8 frame [kInputDim]; returns false when Invoke fails. The state
  // output is carried into the state input for the next call.
  bool Step(const int8_t* frame);
  const int8_t* logits() const { return logits_; }
  const int8_t* state() const { return state_; }
  size_t arena_used() const;

 private:
  tflite::MicroInterpreter* interpreter_ = nullptr;
  TfLiteTensor* x_ = nullptr;
  TfLiteTensor* h_in_ = nullptr;
  TfLiteTensor* h_out_ = nullptr;
  TfLiteTensor* logits_tensor_ = nullptr;
  int8_t state_[256] = {};
  int8_t logits_[64] = {};
};

}  // namespace tf_fastgrnn

#endif  // TF_FASTGRNN_TFLM_APP_STEP_MODEL_H_
