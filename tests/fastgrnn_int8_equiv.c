// SPDX-License-Identifier: Apache-2.0
/* Exhaustive equivalence of fused/fastgrnn_int8.c's fast elementwise passes with its
 * generic (TFLM-shaped, tested against TFLM) passes, for any parameters the test draws:
 * every int8 operand pair, both operand orders of each ADD. Built and driven by
 * tests/test_fused.py (ctypes). Each function returns the number of differing outputs, or
 * -1 when the fast pass declines the parameters (then the kernel runs the generic one). */
#include "fastgrnn_int8.c"

#if !defined(FG_FASTPATH)
#error "the fast passes are not in this build (FASTGRNN_INT8_SMALL or AVR)"
#endif

static int32_t count(const int8_t *a, const int8_t *b) {
  int32_t j, bad = 0;
  for (j = 0; j < 256; ++j) bad += a[j] != b[j];
  return bad;
}

/* ADD(i, j) for all i, j. */
int32_t equiv_add(const fastgrnn_int8_binop *p) {
  int8_t a[256], b[256], want[256], got[256];
  int32_t i, j, bad = 0;
  for (j = 0; j < 256; ++j) b[j] = (int8_t)(j - 128);
  for (i = 0; i < 256; ++i) {
    for (j = 0; j < 256; ++j) a[j] = (int8_t)(i - 128);
    add_vec(p, a, b, want, 256);
    if (!add_vec_fast(p, a, b, got, 256)) return -1;
    bad += count(got, want);
  }
  return bad;
}

/* table[ADD(pre, bias)] for all pre and bias values; term[j]: the scaled bias j - 128, or
 * NULL (the kernel scales the int8 bias itself). */
int32_t equiv_bias(const fastgrnn_int8_binop *p, const int32_t *term, const int8_t *table) {
  int8_t pre[256], bias[256], want[256], got[256];
  int32_t i, j, bad = 0;
  for (j = 0; j < 256; ++j) bias[j] = (int8_t)(j - 128);
  for (i = 0; i < 256; ++i) {
    for (j = 0; j < 256; ++j) pre[j] = (int8_t)(i - 128);
    bias_vec(p, bias, table, pre, want, 256);
    if (!bias_vec_fast(p, bias, term, table, pre, got, 256)) return -1;
    bad += count(got, want);
  }
  return bad;
}

/* FastGRNN output for every (z, h) with h~ = other[], and every (z, h~) with h = other[]. */
int32_t equiv_grnn(const fastgrnn_int8_params *p, const int8_t *other) {
  int8_t z[256], all[256], want[256], got[256];
  int32_t i, j, bad = 0;
  for (j = 0; j < 256; ++j) all[j] = (int8_t)(j - 128);
  for (i = 0; i < 256; ++i) {
    for (j = 0; j < 256; ++j) z[j] = (int8_t)(i - 128);
    grnn_out(p, z, other, all, want, 256);
    if (!grnn_out_fast(p, z, other, all, got, 256)) return -1;
    bad += count(got, want);
    grnn_out(p, z, all, other, want, 256);
    grnn_out_fast(p, z, all, other, got, 256);
    bad += count(got, want);
  }
  return bad;
}

/* FastRNN output ADD(alpha h~, state_table[h]) for every (alpha h~, h). */
int32_t equiv_rnn(const fastgrnn_int8_binop *p, const int8_t *state_table) {
  int8_t a[256], h[256], want[256], got[256];
  int32_t i, j, bad = 0;
  for (j = 0; j < 256; ++j) h[j] = (int8_t)(j - 128);
  for (i = 0; i < 256; ++i) {
    for (j = 0; j < 256; ++j) a[j] = (int8_t)(i - 128);
    rnn_out(p, state_table, a, h, want, 256);
    if (!rnn_out_fast(p, state_table, a, h, got, 256)) return -1;
    bad += count(got, want);
  }
  return bad;
}

/* The fast forms' intermediate values, which the int8 outputs above only see through one
 * more rounding: each ADD operand's term for all 256 values, and the output rescale for
 * every sum in [-2^21, 2^21] (all residues of every shift up to 21, ties included) and
 * a spread of larger sums up to the 2^28 bound. */
int32_t equiv_terms(const fastgrnn_int8_binop *p) {
  fg_in g;
  fg_out o;
  int32_t hoff2, v, x, bad = 0;
  int swap;
  if (!fast_add(&hoff2, &g, &o, p, &swap)) return -1;
  for (v = -128; v < 128; ++v) {
    const int32_t h_off = swap ? p->in2_offset : p->in1_offset;
    const int32_t g_off = swap ? p->in1_offset : p->in2_offset;
    const int32_t g_mult = swap ? p->in1_mult : p->in2_mult;
    const int32_t g_shift = swap ? p->in1_shift : p->in2_shift;
    bad += (int32_t)((uint32_t)v << 20) + hoff2 !=
           2 * mbqm_add((v + h_off) * (INT32_C(1) << 20), INT32_C(1) << 30, 0);
    bad += in_scaled(&g, v) != mbqm_add((v + g_off) * (INT32_C(1) << 20), g_mult, g_shift);
  }
  for (x = -(INT32_C(1) << 21); x <= (INT32_C(1) << 21); ++x)
    bad += out8(&o, 2 * x) !=
           clamp8(mbqm_add(x, p->out_mult, p->out_shift) + p->out_offset, -128, 127);
  for (x = -(INT32_C(1) << 28) + 1; x < (INT32_C(1) << 28); x += 4099)
    bad += out8(&o, 2 * x) !=
           clamp8(mbqm_add(x, p->out_mult, p->out_shift) + p->out_offset, -128, 127);
  return bad;
}

/* A MUL's output for every product of two int8 values with their offsets. */
int32_t equiv_mul(const fastgrnn_int8_binop *p) {
  fg_out o;
  int32_t a, b, bad = 0;
  if (!fast_out(&o, p)) return -1;
  for (a = -128; a < 128; ++a)
    for (b = -128; b < 128; ++b) bad += mul_fast(&o, a, b) != mul8(p, a, b);
  return bad;
}

/* A FULLY_CONNECTED row's requantisation without fused activation, for n accumulators. */
int32_t equiv_fc(const int32_t *acc, int32_t n, int32_t mult, int8_t shift, int32_t zo) {
  int32_t i, bad = 0;
  for (i = 0; i < n; ++i)
    bad += fc_out_full(&mult, &shift, 1 + 2 * zo, 0, acc[i]) !=
           clamp8(mbqm(acc[i], mult, shift) + zo, -128, 127);
  return bad;
}
