// SPDX-License-Identifier: Apache-2.0
/* From the project kit ../shared/tools/cortex_m4 (as used for the README's Cortex-M4F
 * figures); here so CI builds and runs the app on QEMU (make TARGET=cortex-m4). */
/* Minimal Cortex-M startup (the FPU is enabled only where the build has one: M4F; not M3/M0) for the size build and the QEMU mps2-an386 run: vector
 * table, FPU enable, .data copy, .bss zero, C++ constructors, main, exit. */
#include <stdlib.h>

extern unsigned __data_start__, __data_end__, __data_load__, __bss_start__, __bss_end__;
extern unsigned __stack_top;
extern int main(int argc, char **argv);
extern void __libc_init_array(void);
#ifdef SEMIHOSTING
extern void initialise_monitor_handles(void);
#endif

void Reset_Handler(void) {
#if defined(__ARM_FP)
  *(volatile unsigned *)0xE000ED88 |= (0xFu << 20); /* CPACR: CP10, CP11 full access */
#endif
  __asm volatile("dsb\n isb");
  for (unsigned *s = &__data_load__, *d = &__data_start__; d < &__data_end__;) *d++ = *s++;
  for (unsigned *d = &__bss_start__; d < &__bss_end__;) *d++ = 0;
#ifdef SEMIHOSTING
  initialise_monitor_handles();
#endif
  __libc_init_array();
  exit(main(0, 0));
}

void Default_Handler(void) {
  for (;;) {
  }
}

__attribute__((section(".isr_vector"), used)) void (*const g_vectors[16])(void) = {
    (void (*)(void))(&__stack_top), Reset_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, 0, 0, 0, 0, Default_Handler,
    Default_Handler, 0, Default_Handler, Default_Handler};

/* -nostartfiles drops crti.o: newlib's __libc_init_array still calls _init. */
void _init(void) {}
void _fini(void) {}
