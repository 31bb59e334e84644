// SPDX-License-Identifier: Apache-2.0
// printf-style formatting without the C library's printf (which, with its floating-point
// conversions, costs several KB of flash on a board): integers, characters and strings.
// TFLM-free; debug_log.cc builds TFLM's DebugLog/MicroPrintf on it.
#ifndef TF_FASTGRNN_TFLM_APP_LOG_FORMAT_H_
#define TF_FASTGRNN_TFLM_APP_LOG_FORMAT_H_

#include <cstdarg>
#include <cstddef>

namespace tf_fastgrnn {

// Like vsnprintf for %d %i %u %x %X %o %c %s %p %% with the flags '-', '0' and '#' (hex
// only), a width
// (a number or '*'), a precision for %s, and the length modifiers hh h l ll z j t.
// Floating-point conversions (%f %e %g %a) take their argument and print "?": a board's
// log is integers (the app prints logits as thousandths). Writes at most size - 1
// characters and a terminating NUL (nothing when size is 0); returns the length the
// whole text has.
int FormatLog(char* buffer, size_t size, const char* format, va_list args);

}  // namespace tf_fastgrnn

#endif  // TF_FASTGRNN_TFLM_APP_LOG_FORMAT_H_
