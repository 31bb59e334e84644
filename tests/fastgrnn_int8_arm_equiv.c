// SPDX-License-Identifier: Apache-2.0
/* The Cortex-M builds' own arithmetic on QEMU (tests/test_fused_cores.py writes
 * arm_cases.h and compares what this prints): the Thumb-2 assembly (srdhm's SMULL form,
 * the sparse layer with its requantisation, the elementwise loops), on the M0 the Thumb-1
 * assembly (the sparse layer, the elementwise loops), and every other fast form of the
 * build, against the kernel's generic passes and the NumPy reference.
 *
 * Prints one line per item: "srdhm a b r", "fc zo acc m s sparse_out c_out dense_out",
 * "add k bad" (both in-place orders), "bias k bad", "grnn k bad", "ew k bad" (Thumb-2),
 * on the M0 "gates k bad" (-1: the fast pass declined the parameters). */
#include <stdio.h>

#include "fastgrnn_int8_equiv.c"
#include "arm_cases.h"

/* ADD(i, j) for all i, j, computed in place as the step does (out = first or second
 * operand: the assembly loops run only then). */
static int32_t equiv_add_in_place(const fastgrnn_int8_binop *p) {
  int8_t a[256], b[256], want[256], got[256];
  int32_t i, j, bad = 0;
  for (j = 0; j < 256; ++j) b[j] = (int8_t)(j - 128);
  for (i = 0; i < 256; ++i) {
    for (j = 0; j < 256; ++j) a[j] = (int8_t)(i - 128);
    add_vec(p, a, b, want, 256);
    for (j = 0; j < 256; ++j) got[j] = a[j];
    if (!add_vec_fast(p, got, b, got, 256)) return -1;
    bad += count(got, want);
    for (j = 0; j < 256; ++j) got[j] = b[j];
    if (!add_vec_fast(p, a, got, got, 256)) return -1;
    bad += count(got, want);
  }
  return bad;
}

#if defined(FG_THUMB2)
/* FastGRNN's chain fused in one pass (ew_fused_fast, Thumb-2) against the generic passes
 * for every (xw, hu) pair, per-unit biases and h values; out of place, then in place. */
static int32_t equiv_ew(int32_t k) {
  static int8_t xw[256], hu[256], h_in[256], want[256], got[256], rx[256], rh[256];
  fastgrnn_int8_params p;
  int32_t i, j, bad = 0;
  __builtin_memset(&p, 0, sizeof p);
  p.cell = FASTGRNN_INT8_FASTGRNN;
  p.pre = kEw[k][0];
  p.update_add = kEw[k][1];
  p.gate_add = kEw[k][2];
  p.zh_mul = kEw[k][3];
  p.ch_mul = kEw[k][4];
  p.out_add = kEw[k][5];
  p.update_bias = kEwBias[k][0];
  p.gate_bias = kEwBias[k][1];
  p.update_bias_term = kEwTerm[k][0];
  p.gate_bias_term = kEwTerm[k][1];
  p.update_table = kEwTab[0];
  p.gate_table = kEwTab[1];
  p.coef_table = kEwTab[2];
  for (i = 0; i < 256; ++i) {
    for (j = 0; j < 256; ++j) {
      rx[j] = xw[j] = (int8_t)(i - 128);
      rh[j] = hu[j] = (int8_t)(j - 128);
      h_in[j] = kEwTab[3][(i + j) & 255];
    }
    add_vec(&p.pre, rx, rh, rx, 256);
    bias_vec(&p.update_add, p.update_bias, p.update_table, rx, rh, 256);
    bias_vec(&p.gate_add, p.gate_bias, p.gate_table, rx, rx, 256);
    grnn_out(&p, rx, rh, h_in, want, 256);
    if (!ew_fused_fast(&p, xw, hu, h_in, got, 256)) return -1;
    bad += count(got, want);
    if (!ew_fused_fast(&p, xw, hu, h_in, h_in, 256)) return -1;
    bad += count(h_in, want);
  }
  return bad;
}
#endif

#if defined(FG_THUMB1)
/* The M0's update and gate passes in one loop (gates_t1) against the generic passes: every
 * (pre, bias) pair, h~ = table[ADD_u(pre, bias)] and z = other[ADD_g(pre, bias)]. */
static int32_t equiv_gates(const fastgrnn_int8_binop *u, const fastgrnn_int8_binop *g,
                           const int32_t *term_u, const int32_t *term_g) {
  fastgrnn_int8_params p;
  int8_t bias[256], xw[256], hu[256], want_u[256], want_g[256];
  int32_t i, j, bad = 0;
  __builtin_memset(&p, 0, sizeof p);
  p.cell = FASTGRNN_INT8_FASTGRNN;
  p.update_add = *u;
  p.gate_add = *g;
  p.update_bias = bias;
  p.gate_bias = bias;
  p.update_bias_term = term_u;
  p.gate_bias_term = term_g;
  p.update_table = kTable;
  p.gate_table = kOther;
  for (j = 0; j < 256; ++j) bias[j] = (int8_t)(j - 128);
  for (i = 0; i < 256; ++i) {
    for (j = 0; j < 256; ++j) xw[j] = (int8_t)(i - 128);
    bias_vec(u, bias, kTable, xw, want_u, 256);
    bias_vec(g, bias, kOther, xw, want_g, 256);
    if (!gates_t1(&p, xw, hu, 256)) return -1;
    bad += count(hu, want_u) + count(xw, want_g);
  }
  return bad;
}
#endif

int main(void) {
  static int8_t out[N_FC], dense[N_FC];
  static uint8_t idx[N_FC]; /* every row without non-zeros: acc = bias */
  int32_t k, r;
  for (k = 0; k < N_SRDHM; ++k)
    printf("srdhm %ld %ld %ld\n", (long)kSrdhm[k][0], (long)kSrdhm[k][1],
           (long)srdhm(kSrdhm[k][0], kSrdhm[k][1]));
  for (k = 0; k < N_ZO; ++k) {
    fastgrnn_int8_fc f;
    const int8_t x = 0;
    f.rows = N_FC;
    f.cols = 1;
    f.w = (const int8_t *)idx;
    f.mask = 0;
    f.idx = idx;
    f.bias = kFcAcc;
    f.mult = kFcMult;
    f.shift = kFcShift;
    f.out_offset = kZo[k];
    f.act_min = -128;
    f.act_max = 127;
    fc8(&f, &x, out);
    /* the same rows dense (one zero weight each: acc = bias): rows in fours in assembly
     * with DSP, the last N_FC % 4 in C */
    f.idx = 0;
    fc8(&f, &x, dense);
    for (r = 0; r < N_FC; ++r)
      printf("fc %ld %ld %ld %ld %ld %ld %ld\n", (long)kZo[k], (long)kFcAcc[r], (long)kFcMult[r],
             (long)kFcShift[r], (long)out[r],
             (long)fc_out_full(kFcMult, kFcShift, 1 + 2 * kZo[k], r, kFcAcc[r]), (long)dense[r]);
  }
  for (k = 0; k < N_ADD; ++k) {
    fastgrnn_int8_params p;
    int32_t b1, b2;
    printf("add %ld %ld\n", (long)k, (long)equiv_add_in_place(&kAdd[k]));
    b1 = equiv_bias(&kAdd[k], kTerm[k], kTable);
    b2 = equiv_bias(&kAdd[k], 0, kTable);
    printf("bias %ld %ld\n", (long)k, (long)(b1 < 0 || b2 < 0 ? -1 : b1 + b2));
    __builtin_memset(&p, 0, sizeof p);
    p.zh_mul = kMul[2 * k];
    p.ch_mul = kMul[2 * k + 1];
    p.out_add = kAdd[k];
    p.coef_table = kTable;
    printf("grnn %ld %ld\n", (long)k, (long)equiv_grnn(&p, kOther));
#if defined(FG_THUMB1)
    { /* the next ADD's output and bias operand as the gate's, pre's offset shared */
      fastgrnn_int8_binop g = kAdd[(k + 1) % N_ADD];
      g.in1_offset = kAdd[k].in1_offset;
      printf("gates %ld %ld\n", (long)k,
             (long)equiv_gates(&kAdd[k], &g, kTerm[k], kTerm[(k + 1) % N_ADD]));
    }
#endif
  }
#if defined(FG_THUMB2)
  for (k = 0; k < N_EW; ++k) printf("ew %ld %ld\n", (long)k, (long)equiv_ew(k));
#endif
  return 0;
}
