/* SPDX-License-Identifier: Apache-2.0 */
/* RV32 on QEMU -M virt -bios none: entry (stack, .data, .bss), NS16550 UART at
 * 0x10000000 for output, the SiFive test finisher at 0x100000 to end the run. No C
 * library. */
#include "platform.h"

extern uint32_t __data_start__, __data_end__, __data_load__, __bss_start__, __bss_end__;
int main(void);

#define UART_THR ((volatile uint8_t *)0x10000000)
#define FINISHER ((volatile uint32_t *)0x100000)

void platform_init(void) {}

void platform_putc(char c) { *UART_THR = (uint8_t)c; }

void platform_exit(int code) {
  *FINISHER = code ? (((uint32_t)code << 16) | 0x3333) : 0x5555;
  for (;;) {
  }
}

uint32_t platform_cycles(void) { return 0; }

void platform_start(void) {
  for (uint32_t *s = &__data_load__, *d = &__data_start__; d < &__data_end__;) *d++ = *s++;
  for (uint32_t *d = &__bss_start__; d < &__bss_end__;) *d++ = 0;
  platform_exit(main());
}

__asm__(
    ".section .text.entry, \"ax\"\n"
    ".globl _start\n"
    "_start:\n"
    "  .option push\n"
    "  .option norelax\n"
    "  la gp, __global_pointer$\n"
    "  .option pop\n"
    "  la sp, __stack_top\n"
    "  call platform_start\n"
    "1: j 1b\n");
