/* SPDX-License-Identifier: Apache-2.0 */
/* The host build of a harness (gcc): stdio. */
#include <stdio.h>
#include <stdlib.h>

#include "platform.h"

void platform_init(void) {}
void platform_putc(char c) { putchar(c); }
void platform_exit(int code) {
  fflush(stdout);
  exit(code);
}
uint32_t platform_cycles(void) { return 0; }
