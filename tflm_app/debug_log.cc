// SPDX-License-Identifier: Apache-2.0
// The app's DebugLog for TFLM (MicroPrintf, and the interpreter's own messages): formats
// with log_format.cc instead of vfprintf, and hands the text to LogWrite
// (output_handler.cc), so neither the C library's printf nor its floating-point
// conversions are linked on a board. Compile this file instead of TFLM's
// tensorflow/lite/micro/debug_log.cc (or a platform's), not beside it.
#include "tensorflow/lite/micro/debug_log.h"

#include "log_format.h"
#include "output_handler.h"

namespace {
// One MicroPrintf call's text; longer messages are cut.
constexpr int kLogLineBytes = 128;
}  // namespace

extern "C" void DebugLog(const char* format, va_list args) {
  char line[kLogLineBytes];
  const int length = tf_fastgrnn::FormatLog(line, sizeof(line), format, args);
  LogWrite(line, length < kLogLineBytes ? length : kLogLineBytes - 1);
}

extern "C" int DebugVsnprintf(char* buffer, size_t buf_size, const char* format,
                              va_list vlist) {
  return tf_fastgrnn::FormatLog(buffer, buf_size, format, vlist);
}
