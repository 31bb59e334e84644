// SPDX-License-Identifier: Apache-2.0
// TFLM-free parts of the streaming app: frame quantization, the recurrent states and
// their carry between invokes, the window read-out (last step or mean over the window),
// and keyword-spotting posterior smoothing. They compile with any C++17 compiler and are
// tested on the host by logic_test.cc without TensorFlow Lite Micro.
#ifndef TF_FASTGRNN_TFLM_APP_STREAMING_LOGIC_H_
#define TF_FASTGRNN_TFLM_APP_STREAMING_LOGIC_H_

#include <cstdint>

namespace tf_fastgrnn {

// Normalises a raw feature frame ((raw - mean) / std) and quantizes it to int8 with the
// model input's scale and zero point (the exact quotient rounded half away from zero,
// saturating), as the converter's QUANTIZE op and runtime.quantize do.
void QuantizeFrame(const float* raw, const float* mean, const float* std_dev, int size,
                   float scale, int zero_point, int8_t* out);

// TFLite's fixed-point multiplier: real_multiplier = multiplier * 2^(shift - 31).
void QuantizeMultiplier(double real_multiplier, int32_t* multiplier, int* shift);
int32_t MultiplyByQuantizedMultiplier(int32_t x, int32_t multiplier, int shift);

// Carries h_t (the step model's output) into h_{t-1} (its input) for the next invoke:
// a copy when both tensors share scale and zero point (what the export guarantees),
// otherwise an exact integer requantization (as TFLite's QUANTIZE int8 -> int8).
class StateCarry {
 public:
  // The identity (a copy), until assigned. All-zero, so a static holder lands in .bss.
  StateCarry() = default;
  StateCarry(float out_scale, int out_zero_point, float in_scale, int in_zero_point);
  bool is_copy() const { return !requantize_; }
  void Carry(const int8_t* h_out, int size, int8_t* h_in) const;
  int8_t Requantize(int8_t value) const;

 private:
  bool requantize_ = false;
  int out_zero_point_ = 0;
  int in_zero_point_ = 0;
  int32_t multiplier_ = 0;
  int shift_ = 0;
};

// The recurrent states of a step model (h; an LSTM also c), as model_settings.h lists
// them: each state's size and the quantization of its input and output tensors.
struct StateSpec {
  int size;
  float in_scale;
  int in_zero_point;
  float out_scale;
  int out_zero_point;
};

// Holds every recurrent state in one caller-provided buffer (the states one after the
// other, in the order of the specs) and carries each state output into its input.
class RecurrentStates {
 public:
  static constexpr int kMaxStates = 4;
  // Bytes the buffer must hold for `num_states` specs.
  static constexpr int BufferBytes(const StateSpec* specs, int num_states) {
    int bytes = 0;
    for (int i = 0; i < num_states; ++i) bytes += specs[i].size;
    return bytes;
  }
  // Returns false (and holds no state) when num_states is outside [1, kMaxStates], a size
  // is not positive, or the buffer is smaller than BufferBytes.
  bool Init(const StateSpec* specs, int num_states, int8_t* buffer, int buffer_bytes);
  int num_states() const { return num_states_; }
  int size(int i) const { return sizes_[i]; }
  const int8_t* state(int i) const { return buffer_ + offsets_[i]; }
  // Every state to its input zero point (the zero state): the start of a window.
  void Reset();
  // State i's next value from the model's output tensor (copy or exact requantization).
  void Carry(int i, const int8_t* state_out);

 private:
  int num_states_ = 0;
  int8_t* buffer_ = nullptr;
  int sizes_[kMaxStates] = {};
  int offsets_[kMaxStates] = {};
  int zero_points_[kMaxStates] = {};
  StateCarry carries_[kMaxStates];
};

// Continuous keyword spotting: averages the class posteriors (softmax of the dequantized
// logits) over the last `window` steps; reports a class when its average exceeds
// `threshold`, then stays quiet for `suppression` steps (like micro_speech's
// RecognizeCommands). The history of window x num_classes floats is the caller's, sized
// from the model (HistorySize); the app creates it only for audio tasks.
class PosteriorSmoother {
 public:
  static constexpr int HistorySize(int num_classes, int window) {
    return num_classes * window;
  }
  // `history` holds HistorySize(num_classes, window) floats; window >= 1.
  PosteriorSmoother(int num_classes, int window, float threshold, int suppression,
                    float* history);
  // Returns the detected class or -1; *score is the best average posterior.
  int Update(const int8_t* logits, float scale, int zero_point, float* score);
  void Reset();

 private:
  int num_classes_;
  int window_;
  float threshold_;
  int suppression_;
  float* history_;
  int count_ = 0;
  int next_ = 0;
  int quiet_ = 0;
};

// Window classification: a window's class from the int8 logits of its steps, as
// training defined it (model_settings.h's kReadoutMean). Last-step read-out: the argmax
// of the last step's logits. Mean read-out: the argmax of the int32 sum over the window's
// steps of (logits - zero point), exact integers (the mean logit is scale * sum / steps;
// an int32 holds the sum of 8 million steps). Ties: the lowest class index, as
// numpy.argmax on the Python side (stepping.window_classes). The sums, num_classes
// int32, are the caller's.
class WindowReadout {
 public:
  WindowReadout(int num_classes, bool mean, int zero_point, int32_t* sums);
  // The start of a window: no step seen.
  void Reset();
  // One step's logits (int8, num_classes of them).
  void Add(const int8_t* logits);
  int steps() const { return steps_; }
  // The window's class so far (0 before any step).
  int Class() const;
  // Its logit in float: scale * (sum / steps) for the mean, scale * (last - zero point).
  float Logit(int class_index, float scale) const;

 private:
  int num_classes_;
  bool mean_;
  int zero_point_;
  int32_t* sums_;
  int steps_ = 0;
};

int ArgMax(const int8_t* values, int size);

}  // namespace tf_fastgrnn

#endif  // TF_FASTGRNN_TFLM_APP_STREAMING_LOGIC_H_
