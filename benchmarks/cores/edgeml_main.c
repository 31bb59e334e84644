/* SPDX-License-Identifier: Apache-2.0 */
/* Core harness for the authors' EdgeML c_reference q15_fastgrnn_lr (low-rank W and U,
 * Q15), one call per step (steps = 1), on a random-parameter model of a given shape
 * (edgeml_model.h, written by benchmarks/cores/edgeml.py; the user's EdgeML checkout
 * gives quantized_fastgrnn.{c,h} and quantized_utils.{c,h}). Prints as step_main.c:
 * rc, the stack the calls used, cycles on AVR. -DNO_STEP: the baseline without it. */
#include "edgeml_model.h"
#include "platform.h"

#ifndef STEPS
#define STEPS 16
#endif
#ifndef STACK_PAINT_BYTES
#define STACK_PAINT_BYTES 4096
#endif
#define PAINT 0xA5

volatile Q15_T sink;
static Q15_T x[EDGEML_INPUT_DIM];

static void put_line(const char *key, uint32_t v) {
  platform_puts(key);
  platform_putc(' ');
  platform_put_u32(v);
  platform_putc('\n');
}

int main(void) {
  Q15_T h[EDGEML_HIDDEN_DIM];
  uintptr_t sp;
  volatile uint8_t *p, *lo;
  int32_t t, i;
  int rc = 0;
#ifdef __AVR__
  uint32_t cycles = 0, t0, overhead;
#endif
  platform_init();
  PLATFORM_SP(sp);
  lo = (volatile uint8_t *)(sp - STACK_PAINT_BYTES);
  for (p = lo; p < (volatile uint8_t *)sp; ++p) *p = PAINT;
  for (i = 0; i < EDGEML_HIDDEN_DIM; ++i) h[i] = 0;
  for (t = 0; t < STEPS; ++t) {
    for (i = 0; i < EDGEML_INPUT_DIM; ++i) x[i] = (Q15_T)((int8_t)(t * 7 + i * 13) * 64);
#ifdef __AVR__
    t0 = platform_cycles();
#endif
#ifndef NO_STEP
    rc = q15_fastgrnn_lr(h, EDGEML_HIDDEN_DIM, x, EDGEML_INPUT_DIM, 1, &edgeml_params,
                         &edgeml_buffers, &edgeml_scales, 0, 0);
    if (rc != 0) break;
#else
    h[t % EDGEML_HIDDEN_DIM] ^= x[0];
#endif
#ifdef __AVR__
    cycles += platform_cycles() - t0;
#endif
  }
  for (p = lo; p < (volatile uint8_t *)sp && *p == PAINT; ++p) {
  }
  sink = h[0];
  put_line("rc", (uint32_t)(rc < 0 ? -rc : rc));
  put_line(p == lo ? "stack_over" : "stack", (uint32_t)((uintptr_t)sp - (uintptr_t)p));
#ifdef __AVR__
  t0 = platform_cycles();
  overhead = platform_cycles() - t0;
  put_line("cycles", cycles - (uint32_t)STEPS * overhead);
  put_line("steps", STEPS);
#endif
  platform_puts("end\n");
  platform_exit(rc);
}
