// TFLM-free parts of the streaming app: frame quantization, state carry between invokes,
// and keyword-spotting posterior smoothing. They compile with any C++17 compiler and are
// tested on the host by logic_test.cc without TensorFlow Lite Micro.
#ifndef TF_FASTGRNN_TFLM_APP_STREAMING_LOGIC_H_
#define TF_FASTGRNN_TFLM_APP_STREAMING_LOGIC_H_

#include <cstdint>

namespace tf_fastgrnn {

// Normalises a raw feature frame ((raw - mean) / std) and quantizes it to int8 with the
// model input's scale and zero point (round half away from zero, saturating), as the
// converter's QUANTIZE op does.
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
  StateCarry(float out_scale, int out_zero_point, float in_scale, int in_zero_point);
  bool is_copy() const { return is_copy_; }
  void Carry(const int8_t* h_out, int size, int8_t* h_in) const;
  int8_t Requantize(int8_t value) const;

 private:
  bool is_copy_;
  int out_zero_point_;
  int in_zero_point_;
  int32_t multiplier_;
  int shift_;
};

// Continuous keyword spotting: averages the class posteriors (softmax of the dequantized
// logits) over the last `window` steps; reports a class when its average exceeds
// `threshold`, then stays quiet for `suppression` steps (like micro_speech's
// RecognizeCommands). Returns the detected class or -1.
class PosteriorSmoother {
 public:
  static constexpr int kMaxClasses = 64;
  static constexpr int kMaxWindow = 64;
  PosteriorSmoother(int num_classes, int window, float threshold, int suppression);
  int Update(const int8_t* logits, float scale, int zero_point, float* score);
  void Reset();

 private:
  int num_classes_;
  int window_;
  float threshold_;
  int suppression_;
  int count_ = 0;
  int next_ = 0;
  int quiet_ = 0;
  float history_[kMaxWindow][kMaxClasses] = {};
};

int ArgMax(const int8_t* values, int size);

}  // namespace tf_fastgrnn

#endif  // TF_FASTGRNN_TFLM_APP_STREAMING_LOGIC_H_
