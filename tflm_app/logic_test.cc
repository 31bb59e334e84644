// SPDX-License-Identifier: Apache-2.0
// Host test of the TFLM-free logic. With --dump-requant it prints, for the cases the
// pytest compares against a NumPy port of TFLite's arithmetic, "in out" per line. With
// --imu-stream ALPHA it reads samples of 6 floats from stdin and prints each
// GravitySplit frame (9 floats, %.9g) on a line, for the pytest to compare with data.har.
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "imu_frontend.h"
#include "log_format.h"
#include "streaming_logic.h"

namespace {

int g_passed = 0;
int g_failed = 0;

void Check(bool ok, const char* what) {
  if (ok) {
    ++g_passed;
  } else {
    ++g_failed;
    std::printf("FAILED: %s\n", what);
  }
}

void TestQuantizeFrame() {
  const float raw[3] = {1.0f, 3.0f, 100.0f};
  const float mean[3] = {0.0f, 1.0f, 0.0f};
  const float std_dev[3] = {1.0f, 2.0f, 1.0f};
  int8_t out[3];
  tf_fastgrnn::QuantizeFrame(raw, mean, std_dev, 3, 0.5f, -3, out);
  Check(out[0] == -1 && out[1] == -1 && out[2] == 127, "QuantizeFrame normalises, rounds, saturates");
  // Quotients whose float32 value is a tie (1.5f, 2.5f, -2.5f, 2.5f) but whose exact
  // value is not (1.4999999458, 2.4999999458, -2.4999999458, 1.5000000542 for the
  // 4th, whose float32 quotient is 1.5f too): rounded as the exact quotient, as
  // runtime.quantize (double) and the converter's QUANTIZE do; a true tie away from 0.
  const float tie_raw[6] = {0x1.a66666p-5f, 0x1.6p-4f, -0x1.6p-4f, 0x1.a66668p-5f, 0.25f, -0.25f};
  const float zero[6] = {};
  const float one[6] = {1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f};
  int8_t tie_out[6];
  tf_fastgrnn::QuantizeFrame(tie_raw, zero, one, 4, 0x1.19999ap-5f, 0, tie_out);
  Check(tie_out[0] == 1 && tie_out[1] == 2 && tie_out[2] == -2 && tie_out[3] == 2,
        "QuantizeFrame rounds the exact quotient where float32's is a tie");
  tf_fastgrnn::QuantizeFrame(tie_raw + 4, zero, one, 2, 0.5f, 0, tie_out + 4);
  Check(tie_out[4] == 1 && tie_out[5] == -1, "QuantizeFrame: an exact tie rounds away from zero");
}

void TestCopyCarry() {
  tf_fastgrnn::StateCarry carry(0.0078125f, 0, 0.0078125f, 0);
  const int8_t h_out[4] = {-128, -1, 0, 127};
  int8_t h_in[4] = {};
  carry.Carry(h_out, 4, h_in);
  Check(carry.is_copy() && std::memcmp(h_in, h_out, 4) == 0, "equal params carry by copy");
}

void TestRequantCloseToReal() {
  tf_fastgrnn::StateCarry carry(0.01f, 5, 0.013f, -3);
  bool ok = !carry.is_copy();
  for (int v = -128; v <= 127; ++v) {
    const double real = (v - 5) * 0.01 / 0.013 - 3;
    const double clipped = real < -128 ? -128 : (real > 127 ? 127 : real);
    ok = ok && std::fabs(carry.Requantize(static_cast<int8_t>(v)) - clipped) <= 0.5001;
  }
  Check(ok, "requantization within half an LSB of the real value");
}

void TestSmoother() {
  float history[tf_fastgrnn::PosteriorSmoother::HistorySize(3, 3)];
  tf_fastgrnn::PosteriorSmoother smoother(3, 3, 0.8f, 4, history);
  const int8_t quiet[3] = {0, 0, 0};
  const int8_t word[3] = {0, 100, 0};
  float score = 0;
  int detections = 0;
  int first = -1;
  for (int step = 0; step < 12; ++step) {
    const int got = smoother.Update(step < 2 ? quiet : word, 0.1f, 0, &score);
    if (got >= 0) {
      ++detections;
      if (first < 0) first = step;
      Check(got == 1, "smoother reports the dominant class");
    }
  }
  // Uniform for 2 steps, then class 1: the 3-step mean passes 0.8 at step 4; the
  // suppression of 4 steps allows detections at steps 4, 8 only.
  Check(first == 4 && detections == 2, "smoothing delays, suppression spaces detections");
  smoother.Reset();
  Check(smoother.Update(word, 0.1f, 0, &score) == -1, "no detection before a full window");
}

void TestSmootherStaysInItsHistory() {
  // 5 classes, a 4-step window: 20 floats; the canaries around them must survive.
  constexpr int kSize = tf_fastgrnn::PosteriorSmoother::HistorySize(5, 4);
  Check(kSize == 20, "smoother history is classes x window floats");
  float buffer[kSize + 2];
  buffer[0] = 123.0f;
  buffer[kSize + 1] = 456.0f;
  tf_fastgrnn::PosteriorSmoother smoother(5, 4, 0.5f, 0, buffer + 1);
  int8_t logits[5] = {0, 0, 0, 0, 0};
  float score = 0;
  int detected = -1;
  for (int step = 0; step < 9; ++step) {
    logits[step % 5] = 50;  // a different class each step: the averages move
    detected = smoother.Update(logits, 0.1f, 0, &score);
    logits[step % 5] = 0;
  }
  Check(buffer[0] == 123.0f && buffer[kSize + 1] == 456.0f,
        "smoother writes only its classes x window history");
  // The last 4 steps put classes 0..3 (steps 5..8) on top once each: no class above 0.5.
  Check(detected == -1 && score < 0.5f && score > 0.2f, "smoother averages the last window");
}

void TestRecurrentStates() {
  // h (3 bytes, shared grid: copy) and c (2 bytes, other grids: requantized).
  const tf_fastgrnn::StateSpec specs[2] = {{3, 0.01f, -1, 0.01f, -1},
                                           {2, 0.02f, 8, 0.01f, 4}};
  constexpr int kBytes = tf_fastgrnn::RecurrentStates::BufferBytes(specs, 2);
  Check(kBytes == 5, "state buffer is the sum of the state sizes");
  int8_t buffer[kBytes + 1];
  buffer[kBytes] = 77;
  tf_fastgrnn::RecurrentStates states;
  Check(!states.Init(specs, 2, buffer, kBytes - 1), "a buffer too small is refused");
  Check(!states.Init(specs, 0, buffer, kBytes), "no states is refused");
  Check(states.Init(specs, 2, buffer, kBytes) && states.num_states() == 2, "init");
  const int8_t zero_h[3] = {-1, -1, -1};
  const int8_t zero_c[2] = {8, 8};
  Check(std::memcmp(states.state(0), zero_h, 3) == 0 &&
            std::memcmp(states.state(1), zero_c, 2) == 0,
        "reset puts each state at its own input zero point");
  const int8_t h_out[3] = {5, -7, 127};
  const int8_t c_out[2] = {14, -6};  // (v - 4) * 0.01 / 0.02 + 8 -> 13, 3
  states.Carry(0, h_out);
  states.Carry(1, c_out);
  const int8_t want_c[2] = {13, 3};
  Check(std::memcmp(states.state(0), h_out, 3) == 0, "h carried by copy");
  Check(std::memcmp(states.state(1), want_c, 2) == 0, "c carried by requantization");
  Check(buffer[kBytes] == 77 && states.state(1) == buffer + 3, "states laid out in order");
  states.Reset();
  Check(std::memcmp(states.state(1), zero_c, 2) == 0, "reset after a step");
}

void TestWindowReadoutLastAndMeanDisagree() {
  // 3 classes, zero point -2, 3 steps whose centred logits are {10,0,0}, {10,0,0},
  // {0,2,0}: the last step says class 1, the window's sums {20,2,0} say class 0.
  const int8_t steps[3][3] = {{8, -2, -2}, {8, -2, -2}, {-2, 0, -2}};
  int32_t last_sums[3];
  int32_t mean_sums[3];
  tf_fastgrnn::WindowReadout last(3, false, -2, last_sums);
  tf_fastgrnn::WindowReadout mean(3, true, -2, mean_sums);
  for (const auto& logits : steps) {
    last.Add(logits);
    mean.Add(logits);
  }
  Check(last.Class() == 1 && mean.Class() == 0 && mean.steps() == 3,
        "last step's class 1, the window sum's class 0");
  Check(mean_sums[0] == 20 && mean_sums[1] == 2 && mean_sums[2] == 0,
        "the mean read-out sums logits minus the zero point in int32");
  Check(std::fabs(mean.Logit(0, 0.5f) - 20 * 0.5f / 3) < 1e-6f &&
            std::fabs(last.Logit(1, 0.5f) - 1.0f) < 1e-6f,
        "logit: scale * sum / steps (mean), scale * (last - zero point)");
  mean.Reset();
  Check(mean.steps() == 0 && mean_sums[0] == 0, "reset clears the sums");
}

void TestWindowReadoutTiesAndRange() {
  // A tie between classes 1 and 2 of the sums: the lowest index wins.
  int32_t sums[4];
  tf_fastgrnn::WindowReadout mean(4, true, 0, sums);
  const int8_t a[4] = {-5, 3, 1, 0};
  const int8_t b[4] = {-5, 1, 3, 4};
  mean.Add(a);
  mean.Add(b);
  Check(mean.Class() == 1, "a tie of the sums goes to the lowest class index");
  // 1000 steps at the int8 extremes: the sum leaves int8 and int16, stays exact in int32.
  int32_t big[2];
  tf_fastgrnn::WindowReadout wide(2, true, -128, big);
  const int8_t top[2] = {127, -128};
  for (int t = 0; t < 1000; ++t) wide.Add(top);
  Check(big[0] == 255 * 1000 && big[1] == 0 && wide.Class() == 0,
        "the sum is exact past int16");
}

// FormatLog and the C library's vsnprintf on the same arguments.
bool SameAsSnprintf(size_t size, const char* format, ...) {
  char got[64];
  char want[64];
  std::memset(got, 'X', sizeof(got));
  std::memset(want, 'X', sizeof(want));
  va_list args;
  va_start(args, format);
  va_list copy;
  va_copy(copy, args);
  const int got_length = tf_fastgrnn::FormatLog(got, size, format, args);
  const int want_length = std::vsnprintf(want, size, format, copy);
  va_end(copy);
  va_end(args);
  const bool ok = got_length == want_length && std::memcmp(got, want, sizeof(got)) == 0;
  if (!ok) std::printf("FormatLog(\"%s\"): \"%.*s\" (%d), vsnprintf \"%.*s\" (%d)\n", format,
                       static_cast<int>(size), got, got_length, static_cast<int>(size), want,
                       want_length);
  return ok;
}

bool FormatsAs(const char* want, const char* format, ...) {
  char got[64];
  va_list args;
  va_start(args, format);
  tf_fastgrnn::FormatLog(got, sizeof(got), format, args);
  va_end(args);
  return std::strcmp(got, want) == 0;
}

void TestFormatLog() {
  Check(SameAsSnprintf(64, "%s: type %d, expected int8", "h in", 9), "%s %d");
  Check(SameAsSnprintf(64, "%d %d %i %u", 0, -2147483647 - 1, 2147483647, 4294967295u),
        "int extremes");
  Check(SameAsSnprintf(64, "%ld %lld %llu %zu", -5L, -1234567890123LL,
                       18446744073709551615ULL, static_cast<size_t>(77)),
        "length modifiers");
  Check(SameAsSnprintf(64, "[%5d|%-5d|%05d|%-05d|%05d]", 42, 42, 42, 42, -42), "widths");
  Check(SameAsSnprintf(64, "[%x %X %o %#x %#X %#x %08x %#8x]", 0xbeefu, 0xbeefu, 8u, 255u,
                       255u, 0u, 255u, 255u), "hex");
  Check(SameAsSnprintf(64, "[%c|%3c|%-3c|%%|%s|%6s|%-6s|%.2s|%*d]", 'a', 'b', 'c', "str",
                       "ab", "ab", "abcdef", 4, 7),
        "chars, strings, percent");
  Check(SameAsSnprintf(8, "window %d: %s", 12, "walking"), "cut to the buffer, full length");
  Check(SameAsSnprintf(1, "abc%d", 5), "size 1: only the NUL");
  Check(SameAsSnprintf(0, "abc%d", 5), "size 0: nothing written, full length");
  Check(FormatsAs("scale  ? then 3 ?", "scale %2.2f then %d %g", 0.5, 3, 1e300),
        "floating point prints ? and keeps the arguments in step");
}

void DumpRequant() {
  const float cases[][4] = {{0.01f, 5, 0.013f, -3}, {0.0078125f, 0, 0.005f, 10},
                            {0.02f, -128, 0.0039f, 127}, {0.004f, 7, 0.0041f, 7}};
  for (const auto& c : cases) {
    tf_fastgrnn::StateCarry carry(c[0], static_cast<int>(c[1]), c[2], static_cast<int>(c[3]));
    for (int v = -128; v <= 127; ++v) {
      std::printf("%.9g %d %.9g %d %d %d\n", c[0], static_cast<int>(c[1]), c[2],
                  static_cast<int>(c[3]), v, carry.Requantize(static_cast<int8_t>(v)));
    }
  }
}

bool NearF(float a, float b) { return std::fabs(a - b) <= 1e-6f; }

void TestGravitySplitByHand() {
  // alpha = 0.5: x axis 2, 4, 4 -> gravity 2, 3, 3.5 (the first sample starts it), body
  // 0, 1, 0.5; y constant 1 -> gravity 1, body 0; gyro passed through.
  tf_fastgrnn::GravitySplit split(0.5f);
  const float raw[3][6] = {{2, 1, -1, 0.25f, -0.5f, 3}, {4, 1, -1, 1, 2, 3},
                           {4, 1, 1, 1, 2, 3}};
  float f[3][9];
  for (int t = 0; t < 3; ++t) split.Process(raw[t], f[t]);
  Check(NearF(f[0][3], 2) && NearF(f[1][3], 3) && NearF(f[2][3], 3.5f), "gravity x by hand");
  Check(NearF(f[0][0], 0) && NearF(f[1][0], 1) && NearF(f[2][0], 0.5f), "body x by hand");
  Check(NearF(f[2][4], 1) && NearF(f[2][1], 0), "a constant axis is all gravity");
  Check(NearF(f[2][5], 0) && NearF(f[2][2], 1), "z: gravity -1 -> 0 after a step of 2");
  Check(f[0][6] == 0.25f && f[0][7] == -0.5f && f[1][8] == 3, "gyro passes through");
  split.Reset();
  float g[9];
  split.Process(raw[2], g);
  Check(NearF(g[3], 4) && NearF(g[0], 0), "Reset: the next sample starts gravity again");
}

int StreamGravitySplit(float alpha) {
  tf_fastgrnn::GravitySplit split(alpha);
  float raw[6], frame[9];
  for (;;) {
    for (int i = 0; i < 6; ++i) {
      if (std::scanf("%f", &raw[i]) != 1) return i == 0 ? 0 : 1;
    }
    split.Process(raw, frame);
    for (int i = 0; i < 9; ++i) std::printf(i ? " %.9g" : "%.9g", frame[i]);
    std::printf("\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--dump-requant") == 0) {
    DumpRequant();
    return 0;
  }
  if (argc == 3 && std::strcmp(argv[1], "--imu-stream") == 0) {
    return StreamGravitySplit(std::strtof(argv[2], nullptr));
  }
  TestQuantizeFrame();
  TestCopyCarry();
  TestRequantCloseToReal();
  TestSmoother();
  TestSmootherStaysInItsHistory();
  TestRecurrentStates();
  TestWindowReadoutLastAndMeanDisagree();
  TestWindowReadoutTiesAndRange();
  TestFormatLog();
  TestGravitySplitByHand();
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
