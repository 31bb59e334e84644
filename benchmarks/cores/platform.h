/* SPDX-License-Identifier: Apache-2.0 */
/* What a core harness needs from its target: a character out, the end of the run, a
 * stack pointer and a cycle timer where the target has one. One implementation per
 * target family: platform_arm.c (QEMU semihosting), platform_riscv.c (QEMU virt UART +
 * test finisher), platform_avr.c (simavr UART + Timer1), platform_host.c (stdio). */
#ifndef BENCH_PLATFORM_H_
#define BENCH_PLATFORM_H_

#include <stdint.h>

void platform_init(void);
void platform_putc(char c);
void platform_exit(int code) __attribute__((noreturn));
/* Cycles since platform_init, where the target counts them (AVR Timer1); 0 elsewhere. */
uint32_t platform_cycles(void);

/* PLATFORM_SP(v): v = the stack pointer, read in place (no call). */
#if defined(__AVR__)
#include <avr/io.h>
#define PLATFORM_SP(v) ((v) = (uintptr_t)SP)
#elif defined(__arm__)
#define PLATFORM_SP(v) __asm__ volatile("mov %0, sp" : "=r"(v))
#elif defined(__riscv)
#define PLATFORM_SP(v) __asm__ volatile("mv %0, sp" : "=r"(v))
#else
#define PLATFORM_SP(v) ((v) = (uintptr_t)__builtin_frame_address(0))
#endif

void platform_puts(const char *s);
void platform_put_u32(uint32_t v);
void platform_put_hex8(uint8_t v);

#endif /* BENCH_PLATFORM_H_ */
