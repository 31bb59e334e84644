// SPDX-License-Identifier: Apache-2.0
#include "streaming_logic.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace tf_fastgrnn {
namespace {

int8_t Saturate(int32_t value) {
  if (value < -128) return -128;
  if (value > 127) return 127;
  return static_cast<int8_t>(value);
}

// gemmlowp's SaturatingRoundingDoublingHighMul and RoundingDivideByPOT, as TFLite uses.
int32_t SaturatingRoundingDoublingHighMul(int32_t a, int32_t b) {
  const bool overflow = a == b && a == std::numeric_limits<int32_t>::min();
  const int64_t ab = static_cast<int64_t>(a) * static_cast<int64_t>(b);
  const int32_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
  const int32_t high = static_cast<int32_t>((ab + nudge) / (1ll << 31));
  return overflow ? std::numeric_limits<int32_t>::max() : high;
}

int32_t RoundingDivideByPOT(int32_t x, int exponent) {
  const int32_t mask = static_cast<int32_t>((1ll << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + ((x < 0) ? 1 : 0);
  return (x >> exponent) + ((remainder > threshold) ? 1 : 0);
}

// round(value / scale), half away from zero, for the exact quotient (as the converter's
// QUANTIZE and runtime.quantize, which divide in double): a float32 quotient of exactly
// k + 0.5 may stand for an exact one just below or above it (e.g. 0x1.a66666p-5f /
// 0x1.19999ap-5f is 1.49999995 but 1.5f in float32), so that case is settled by the sign
// of value - (k + 0.5) * scale, which one fused multiply-add gives exactly. Elsewhere the
// correctly rounded float32 quotient rounds as the exact one does. scale > 0.
int32_t RoundQuotient(float value, float scale) {
  const float q = value / scale;
  const float rounded = std::round(q);  // a tie goes away from zero
  if (std::fabs(rounded - q) == 0.5f) {
    const float remainder = std::fma(-q, scale, value);  // value - q * scale, one rounding
    const int32_t away = static_cast<int32_t>(rounded);
    // the exact quotient lies towards zero from the tie: round towards zero instead
    if (q > 0.0f ? remainder < 0.0f : remainder > 0.0f) return away + (q > 0.0f ? -1 : 1);
    return away;
  }
  return static_cast<int32_t>(rounded);
}

}  // namespace

void QuantizeFrame(const float* raw, const float* mean, const float* std_dev, int size,
                   float scale, int zero_point, int8_t* out) {
  for (int i = 0; i < size; ++i) {
    const float normalised = (raw[i] - mean[i]) / std_dev[i];
    out[i] = Saturate(RoundQuotient(normalised, scale) + zero_point);
  }
}

void QuantizeMultiplier(double real_multiplier, int32_t* multiplier, int* shift) {
  if (real_multiplier == 0.0) {
    *multiplier = 0;
    *shift = 0;
    return;
  }
  const double q = std::frexp(real_multiplier, shift);
  int64_t q_fixed = static_cast<int64_t>(std::round(q * (1ll << 31)));
  if (q_fixed == (1ll << 31)) {
    q_fixed /= 2;
    ++*shift;
  }
  if (*shift < -31) {
    *shift = 0;
    q_fixed = 0;
  }
  *multiplier = static_cast<int32_t>(q_fixed);
}

int32_t MultiplyByQuantizedMultiplier(int32_t x, int32_t multiplier, int shift) {
  const int left_shift = shift > 0 ? shift : 0;
  const int right_shift = shift > 0 ? 0 : -shift;
  return RoundingDivideByPOT(
      SaturatingRoundingDoublingHighMul(x * (1 << left_shift), multiplier), right_shift);
}

StateCarry::StateCarry(float out_scale, int out_zero_point, float in_scale,
                       int in_zero_point)
    : requantize_(out_scale != in_scale || out_zero_point != in_zero_point),
      out_zero_point_(out_zero_point),
      in_zero_point_(in_zero_point),
      multiplier_(0),
      shift_(0) {
  QuantizeMultiplier(static_cast<double>(out_scale) / static_cast<double>(in_scale),
                     &multiplier_, &shift_);
}

int8_t StateCarry::Requantize(int8_t value) const {
  const int32_t centred = static_cast<int32_t>(value) - out_zero_point_;
  return Saturate(MultiplyByQuantizedMultiplier(centred, multiplier_, shift_) +
                  in_zero_point_);
}

void StateCarry::Carry(const int8_t* h_out, int size, int8_t* h_in) const {
  if (!requantize_) {
    std::memcpy(h_in, h_out, static_cast<size_t>(size));
    return;
  }
  for (int i = 0; i < size; ++i) h_in[i] = Requantize(h_out[i]);
}

bool RecurrentStates::Init(const StateSpec* specs, int num_states, int8_t* buffer,
                           int buffer_bytes) {
  num_states_ = 0;
  buffer_ = nullptr;
  if (num_states < 1 || num_states > kMaxStates || buffer == nullptr) return false;
  int offset = 0;
  for (int i = 0; i < num_states; ++i) {
    if (specs[i].size < 1) return false;
    sizes_[i] = specs[i].size;
    offsets_[i] = offset;
    zero_points_[i] = specs[i].in_zero_point;
    carries_[i] = StateCarry(specs[i].out_scale, specs[i].out_zero_point, specs[i].in_scale,
                             specs[i].in_zero_point);
    offset += specs[i].size;
  }
  if (offset > buffer_bytes) return false;
  num_states_ = num_states;
  buffer_ = buffer;
  Reset();
  return true;
}

void RecurrentStates::Reset() {
  for (int i = 0; i < num_states_; ++i) {
    std::memset(buffer_ + offsets_[i], zero_points_[i], static_cast<size_t>(sizes_[i]));
  }
}

void RecurrentStates::Carry(int i, const int8_t* state_out) {
  carries_[i].Carry(state_out, sizes_[i], buffer_ + offsets_[i]);
}

PosteriorSmoother::PosteriorSmoother(int num_classes, int window, float threshold,
                                     int suppression, float* history)
    : num_classes_(num_classes),
      window_(window < 1 ? 1 : window),
      threshold_(threshold),
      suppression_(suppression),
      history_(history) {}

void PosteriorSmoother::Reset() {
  count_ = 0;
  next_ = 0;
  quiet_ = 0;
}

int PosteriorSmoother::Update(const int8_t* logits, float scale, int zero_point,
                              float* score) {
  float max_logit = -1e30f;
  for (int c = 0; c < num_classes_; ++c) {
    const float v = (logits[c] - zero_point) * scale;
    if (v > max_logit) max_logit = v;
  }
  float sum = 0.0f;
  float* row = history_ + next_ * num_classes_;
  for (int c = 0; c < num_classes_; ++c) {
    row[c] = std::exp((logits[c] - zero_point) * scale - max_logit);
    sum += row[c];
  }
  for (int c = 0; c < num_classes_; ++c) row[c] /= sum;
  next_ = (next_ + 1) % window_;
  if (count_ < window_) ++count_;
  if (quiet_ > 0) --quiet_;
  int best = -1;
  float best_score = 0.0f;
  for (int c = 0; c < num_classes_; ++c) {
    float mean = 0.0f;
    for (int k = 0; k < count_; ++k) mean += history_[k * num_classes_ + c];
    mean /= static_cast<float>(count_);
    if (mean > best_score) {
      best_score = mean;
      best = c;
    }
  }
  if (score != nullptr) *score = best_score;
  if (count_ < window_ || quiet_ > 0 || best_score < threshold_) return -1;
  quiet_ = suppression_;
  return best;
}

WindowReadout::WindowReadout(int num_classes, bool mean, int zero_point, int32_t* sums)
    : num_classes_(num_classes), mean_(mean), zero_point_(zero_point), sums_(sums) {
  Reset();
}

void WindowReadout::Reset() {
  steps_ = 0;
  for (int c = 0; c < num_classes_; ++c) sums_[c] = 0;
}

void WindowReadout::Add(const int8_t* logits) {
  for (int c = 0; c < num_classes_; ++c) {
    const int32_t centred = static_cast<int32_t>(logits[c]) - zero_point_;
    sums_[c] = mean_ ? sums_[c] + centred : centred;
  }
  ++steps_;
}

int WindowReadout::Class() const {
  int best = 0;
  for (int c = 1; c < num_classes_; ++c) {
    if (sums_[c] > sums_[best]) best = c;  // strictly greater: ties keep the lowest index
  }
  return best;
}

float WindowReadout::Logit(int class_index, float scale) const {
  const float value = static_cast<float>(sums_[class_index]) * scale;
  return mean_ && steps_ > 0 ? value / static_cast<float>(steps_) : value;
}

int ArgMax(const int8_t* values, int size) {
  int best = 0;
  for (int i = 1; i < size; ++i) {
    if (values[i] > values[best]) best = i;
  }
  return best;
}

}  // namespace tf_fastgrnn
