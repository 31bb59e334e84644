/* SPDX-License-Identifier: Apache-2.0 */
/* Cortex-M on QEMU (mps2-*, mps3-an547, microbit): reset handler, vector table, output
 * and exit by semihosting (BKPT 0xAB; QEMU -semihosting-config enable=on). No C library:
 * what the harness links is the model, the kernel and this file. */
#include "platform.h"

extern uint32_t __data_start__, __data_end__, __data_load__, __bss_start__, __bss_end__;
extern uint32_t __stack_top;
int main(void);

static int semihost(int op, uintptr_t arg) {
  register int r0 __asm__("r0") = op;
  register uintptr_t r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

void platform_init(void) {}

void platform_putc(char c) { semihost(0x03 /* SYS_WRITEC */, (uintptr_t)&c); }

void platform_exit(int code) {
  /* SYS_EXIT, ADP_Stopped_ApplicationExit: QEMU ends; the code is printed before. */
  (void)code;
  for (;;) semihost(0x18, 0x20026);
}

uint32_t platform_cycles(void) { return 0; }

void Reset_Handler(void) {
#if defined(__ARM_FP)
  *(volatile uint32_t *)0xE000ED88 |= (0xFu << 20); /* CPACR: CP10, CP11 full access */
  __asm__ volatile("dsb\n isb");
#endif
  for (uint32_t *s = &__data_load__, *d = &__data_start__; d < &__data_end__;) *d++ = *s++;
  for (uint32_t *d = &__bss_start__; d < &__bss_end__;) *d++ = 0;
  platform_exit(main());
}

void Default_Handler(void) {
  platform_puts("fault\n");
  platform_exit(3);
}

__attribute__((section(".isr_vector"), used)) void (*const g_vectors[16])(void) = {
    (void (*)(void))(&__stack_top), Reset_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, 0, 0, 0, 0, Default_Handler,
    Default_Handler, 0, Default_Handler, Default_Handler};
