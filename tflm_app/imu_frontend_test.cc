// Host test of the imu_gravity front end. Without arguments: cases worked by hand. With
// --stream ALPHA: reads samples of 6 floats from stdin (whitespace separated) and prints
// each 9-float frame on a line (%.9g), for the pytest to compare with data.har.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "imu_frontend.h"

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

bool Near(float a, float b) { return std::fabs(a - b) <= 1e-6f; }

void TestByHand() {
  // alpha = 0.5: x axis 2, 4, 4 -> gravity 2, 3, 3.5 (the first sample starts it), body
  // 0, 1, 0.5; y constant 1 -> gravity 1, body 0; gyro passed through.
  tf_fastgrnn::GravitySplit split(0.5f);
  const float raw[3][6] = {{2, 1, -1, 0.25f, -0.5f, 3}, {4, 1, -1, 1, 2, 3},
                           {4, 1, 1, 1, 2, 3}};
  float f[3][9];
  for (int t = 0; t < 3; ++t) split.Process(raw[t], f[t]);
  Check(Near(f[0][3], 2) && Near(f[1][3], 3) && Near(f[2][3], 3.5f), "gravity x by hand");
  Check(Near(f[0][0], 0) && Near(f[1][0], 1) && Near(f[2][0], 0.5f), "body x by hand");
  Check(Near(f[2][4], 1) && Near(f[2][1], 0), "a constant axis is all gravity");
  Check(Near(f[2][5], 0) && Near(f[2][2], 1), "z: gravity -1 -> 0 after a step of 2");
  Check(f[0][6] == 0.25f && f[0][7] == -0.5f && f[1][8] == 3, "gyro passes through");
  split.Reset();
  float g[9];
  split.Process(raw[2], g);
  Check(Near(g[3], 4) && Near(g[0], 0), "Reset: the next sample starts gravity again");
}

int Stream(float alpha) {
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
  if (argc == 3 && std::strcmp(argv[1], "--stream") == 0) {
    return Stream(std::strtof(argv[2], nullptr));
  }
  TestByHand();
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
