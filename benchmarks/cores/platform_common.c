/* SPDX-License-Identifier: Apache-2.0 */
/* Text output shared by every target (platform.h). */
#include "platform.h"

void platform_puts(const char *s) {
  while (*s) platform_putc(*s++);
}

void platform_put_u32(uint32_t v) {
  char buf[11];
  int n = 0;
  do {
    buf[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) platform_putc(buf[--n]);
}

void platform_put_hex8(uint8_t v) {
  static const char kDigits[] = "0123456789abcdef";
  platform_putc(kDigits[v >> 4]);
  platform_putc(kDigits[v & 15]);
}
