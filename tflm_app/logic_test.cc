// Host test of the TFLM-free logic. With --dump-requant it prints, for the cases the
// pytest compares against a NumPy port of TFLite's arithmetic, "in out" per line.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

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
  tf_fastgrnn::PosteriorSmoother smoother(3, 3, 0.8f, 4);
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

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--dump-requant") == 0) {
    DumpRequant();
    return 0;
  }
  TestQuantizeFrame();
  TestCopyCarry();
  TestRequantCloseToReal();
  TestSmoother();
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
