// SPDX-License-Identifier: Apache-2.0
#include "log_format.h"

#include <cstdint>

namespace tf_fastgrnn {
namespace {

// Appends to the caller's buffer, counting what does not fit.
class Sink {
 public:
  Sink(char* buffer, size_t size) : buffer_(buffer), size_(size) {}
  void Put(char c) {
    if (length_ + 1 < size_) buffer_[length_] = c;
    ++length_;
  }
  void Pad(char c, int count) {
    for (int i = 0; i < count; ++i) Put(c);
  }
  int Finish() {
    if (size_ > 0) buffer_[length_ < size_ ? length_ : size_ - 1] = '\0';
    return static_cast<int>(length_);
  }

 private:
  char* buffer_;
  size_t size_;
  size_t length_ = 0;
};

struct Spec {
  bool left = false;
  bool zero = false;
  bool alternate = false;  // '#': 0x before non-zero hex
  int width = 0;
  int precision = -1;
};

void PutText(Sink* sink, const Spec& spec, const char* text, int length) {
  const int pad = spec.width > length ? spec.width - length : 0;
  if (!spec.left) sink->Pad(' ', pad);
  for (int i = 0; i < length; ++i) sink->Put(text[i]);
  if (spec.left) sink->Pad(' ', pad);
}

// *value / base, returning the remainder, in 16-bit steps: 32-bit divisions only, so a
// 32-bit MCU links no 64-bit division routine (base <= 16).
unsigned DivideInPlace(uint64_t* value, unsigned base) {
  uint32_t remainder = 0;
  uint64_t quotient = 0;
  for (int shift = 48; shift >= 0; shift -= 16) {
    const uint32_t part = (remainder << 16) | static_cast<uint32_t>((*value >> shift) & 0xffffu);
    quotient |= static_cast<uint64_t>(part / base) << shift;
    remainder = part % base;
  }
  *value = quotient;
  return remainder;
}

void PutNumber(Sink* sink, const Spec& spec, uint64_t magnitude, bool negative,
               unsigned base, bool upper) {
  const bool prefix = spec.alternate && base == 16 && magnitude != 0;
  char digits[24];
  int n = 0;
  do {
    const unsigned d = DivideInPlace(&magnitude, base);
    digits[n++] = static_cast<char>(d < 10 ? '0' + d : (upper ? 'A' : 'a') + d - 10);
  } while (magnitude != 0);
  const int length = n + (negative ? 1 : 0) + (prefix ? 2 : 0);
  const int pad = spec.width > length ? spec.width - length : 0;
  if (!spec.left && !spec.zero) sink->Pad(' ', pad);
  if (negative) sink->Put('-');
  if (prefix) {
    sink->Put('0');
    sink->Put(upper ? 'X' : 'x');
  }
  if (!spec.left && spec.zero) sink->Pad('0', pad);
  while (n > 0) sink->Put(digits[--n]);
  if (spec.left) sink->Pad(' ', pad);
}

}  // namespace

int FormatLog(char* buffer, size_t size, const char* format, va_list args) {
  Sink sink(buffer, size);
  for (const char* p = format; *p != '\0'; ++p) {
    if (*p != '%') {
      sink.Put(*p);
      continue;
    }
    Spec spec;
    for (++p; *p == '-' || *p == '0' || *p == '+' || *p == ' ' || *p == '#'; ++p) {
      if (*p == '-') spec.left = true;
      if (*p == '0') spec.zero = true;
      if (*p == '#') spec.alternate = true;
    }
    if (*p == '*') {
      spec.width = va_arg(args, int);
      if (spec.width < 0) {
        spec.left = true;
        spec.width = -spec.width;
      }
      ++p;
    } else {
      for (; *p >= '0' && *p <= '9'; ++p) spec.width = spec.width * 10 + (*p - '0');
    }
    if (*p == '.') {
      spec.precision = 0;
      if (*++p == '*') {
        spec.precision = va_arg(args, int);
        ++p;
      } else {
        for (; *p >= '0' && *p <= '9'; ++p) spec.precision = spec.precision * 10 + (*p - '0');
      }
    }
    int longs = 0;  // 0: int, 1: long, 2: long long, 3: size_t, 4: intmax_t, 5: ptrdiff_t
    for (; *p == 'h' || *p == 'l' || *p == 'z' || *p == 'j' || *p == 't'; ++p) {
      if (*p == 'l') ++longs;
      if (*p == 'z') longs = 3;
      if (*p == 'j') longs = 4;
      if (*p == 't') longs = 5;
    }
    const char conversion = *p;
    if (conversion == '\0') break;
    switch (conversion) {
      case 'd':
      case 'i': {
        int64_t v;
        if (longs == 0) {
          v = va_arg(args, int);
        } else if (longs == 1) {
          v = va_arg(args, long);
        } else if (longs == 2) {
          v = va_arg(args, long long);
        } else if (longs == 4) {
          v = va_arg(args, intmax_t);
        } else {
          v = va_arg(args, ptrdiff_t);  // z with a signed conversion, and t
        }
        const uint64_t magnitude =
            v < 0 ? static_cast<uint64_t>(0) - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
        PutNumber(&sink, spec, magnitude, v < 0, 10, false);
        break;
      }
      case 'u':
      case 'x':
      case 'X':
      case 'o': {
        uint64_t v;
        if (longs == 0) {
          v = va_arg(args, unsigned);
        } else if (longs == 1) {
          v = va_arg(args, unsigned long);
        } else if (longs == 2) {
          v = va_arg(args, unsigned long long);
        } else if (longs == 3) {
          v = va_arg(args, size_t);
        } else if (longs == 4) {
          v = va_arg(args, uintmax_t);
        } else {
          v = static_cast<uint64_t>(va_arg(args, ptrdiff_t));
        }
        const unsigned base = conversion == 'u' ? 10 : (conversion == 'o' ? 8 : 16);
        PutNumber(&sink, spec, v, false, base, conversion == 'X');
        break;
      }
      case 'p': {
        sink.Put('0');
        sink.Put('x');
        PutNumber(&sink, Spec(), reinterpret_cast<uintptr_t>(va_arg(args, void*)), false, 16,
                  false);
        break;
      }
      case 'c': {
        const char c = static_cast<char>(va_arg(args, int));
        PutText(&sink, spec, &c, 1);
        break;
      }
      case 's': {
        const char* s = va_arg(args, const char*);
        if (s == nullptr) s = "(null)";
        int length = 0;
        while (s[length] != '\0' && (spec.precision < 0 || length < spec.precision)) ++length;
        PutText(&sink, spec, s, length);
        break;
      }
      case 'f':
      case 'F':
      case 'e':
      case 'E':
      case 'g':
      case 'G':
      case 'a':
      case 'A':
        (void)va_arg(args, double);
        PutText(&sink, spec, "?", 1);
        break;
      case '%':
        sink.Put('%');
        break;
      default:  // unknown: print it as written
        sink.Put('%');
        sink.Put(conversion);
        break;
    }
  }
  return sink.Finish();
}

}  // namespace tf_fastgrnn
