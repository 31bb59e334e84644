/* SPDX-License-Identifier: Apache-2.0 */
/* Core harness for the standalone C model (tf_fastgrnn.fused.write_standalone).
 *
 * Bench (default): STEPS calls of model_step on synthetic int8 frames; prints the bytes
 * of stack the steps used (the stack below main's frame is painted first and scanned
 * after) and, where the platform counts cycles (AVR), the cycles inside the calls.
 * -DNO_LOGITS: model_step(x, h, NULL), the cell without the classifier.
 * -DNO_STEP: the same program without the model (the baseline for flash and RAM).
 * -DVERIFY: steps the frames of frames.h (N_WINDOWS windows of N_STEPS frames, the state
 * reset per window) and prints each step's h then logits as hex, one line per step. */
#include "model.h"
#include "platform.h"

#ifndef STEPS
#define STEPS 16
#endif
#ifndef STACK_PAINT_BYTES
#define STACK_PAINT_BYTES 4096
#endif
#define PAINT 0xA5

#ifdef VERIFY
#include "frames.h"
#endif

volatile int8_t sink;
static int8_t x[MODEL_INPUT_DIM];

static void put_line(const char *key, uint32_t v) {
  platform_puts(key);
  platform_putc(' ');
  platform_put_u32(v);
  platform_putc('\n');
}

int main(void) {
  int8_t h[MODEL_HIDDEN_DIM], logits[MODEL_NUM_CLASSES];
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
#ifdef VERIFY
  {
    int32_t w;
    for (w = 0; w < N_WINDOWS; ++w) {
      model_reset(h);
      for (t = 0; t < N_STEPS; ++t) {
        for (i = 0; i < MODEL_INPUT_DIM; ++i) x[i] = FRAME(w, t, i);
        rc = model_step(x, h, logits);
        if (rc != 0) break;
        for (i = 0; i < MODEL_HIDDEN_DIM; ++i) platform_put_hex8((uint8_t)h[i]);
        platform_putc(' ');
        for (i = 0; i < MODEL_NUM_CLASSES; ++i) platform_put_hex8((uint8_t)logits[i]);
        platform_putc('\n');
      }
    }
  }
#else
#ifndef NO_STEP
  model_reset(h);
#else
  for (i = 0; i < MODEL_HIDDEN_DIM; ++i) h[i] = 0;
  logits[0] = 0;
#endif
  for (t = 0; t < STEPS; ++t) {
    for (i = 0; i < MODEL_INPUT_DIM; ++i) x[i] = (int8_t)(t * 7 + i * 13);
#ifdef __AVR__
    t0 = platform_cycles();
#endif
#ifndef NO_STEP
#ifdef NO_LOGITS
    rc = model_step(x, h, 0);
#else
    rc = model_step(x, h, logits);
#endif
    if (rc != 0) break;
#else
    h[t % MODEL_HIDDEN_DIM] ^= x[0];
#endif
#ifdef __AVR__
    cycles += platform_cycles() - t0;
#endif
  }
#endif
  /* The lowest byte the calls wrote: everything above it was their stack. */
  for (p = lo; p < (volatile uint8_t *)sp && *p == PAINT; ++p) {
  }
  sink = (int8_t)(logits[0] + h[0]);
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
