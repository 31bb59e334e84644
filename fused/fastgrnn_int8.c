/* One int8 FastGRNN / FastRNN step, bit-exact with TFLM's reference int8 kernels.
 * See fastgrnn_int8.h. The fixed-point helpers follow gemmlowp / TFLM
 * (tensorflow/lite/kernels/internal/common.h, built without TFLITE_SINGLE_ROUNDING). */
#include "fastgrnn_int8.h"

#define ROM FASTGRNN_INT8_ROM

/* FASTGRNN_INT8_SMALL: one out-of-line copy of each helper (smallest code, about 1.4x
 * the instructions); default: the elementwise helpers inlined into each pass. */
#if defined(FASTGRNN_INT8_SMALL)
#define FG_INLINE static
#elif defined(__GNUC__)
#define FG_INLINE static inline __attribute__((always_inline))
#else
#define FG_INLINE static inline
#endif

/* gemmlowp SaturatingRoundingDoublingHighMul(a, b) = (a b + nudge) / 2^31 truncated,
 * nudge = 2^30 (a b >= 0) or 1 - 2^30. For a b < 0 the truncating division equals
 * (a b + 1 - 2^30 + 2^31 - 1) >> 31, so both cases are (a b + 2^30) >> 31 (arithmetic
 * shift, as TFLM itself assumes). Its saturating case (a = b = INT32_MIN) cannot occur:
 * every multiplier is QuantizeMultiplier's, in [0, 2^31). */
FG_INLINE int32_t srdhm(int32_t a, int32_t b) {
  return (int32_t)(((int64_t)a * (int64_t)b + (INT64_C(1) << 30)) >> 31);
}

/* gemmlowp RoundingDivideByPOT(y, e), e >= 1: y / 2^e rounded half away from zero,
 * i.e. (y + 2^(e-1)) >> e for y >= 0 (computed unsigned: no overflow) and
 * (y + 2^(e-1) - 1) >> e for y < 0 (arithmetic shift, as TFLM assumes). */
FG_INLINE int32_t rdbp(int32_t y, int32_t e) {
  const uint32_t half = (uint32_t)1 << (e - 1);
  if (y >= 0) return (int32_t)(((uint32_t)y + half) >> e);
  return (y + (int32_t)(half - 1u)) >> e;
}

/* TFLM MultiplyByQuantizedMultiplier (double rounding: SaturatingRoundingDoublingHighMul
 * then RoundingDivideByPOT), shift in [-31, 31]. */
FG_INLINE int32_t mbqm(int32_t x, int32_t mult, int32_t shift) {
  int32_t y;
  if (shift > 0) return srdhm((int32_t)((uint32_t)x << shift), mult);
  y = srdhm(x, mult);
  return shift == 0 ? y : rdbp(y, -shift);
}

/* MultiplyByQuantizedMultiplier for the elementwise ops, shift <= 0 (every ADD
 * multiplier is below one; fused.py checks it) and |x| < 2^30 (int8 differences shifted
 * left by 20, or the sum of two such): then |y| < 2^30 and RoundingDivideByPOT is
 * (y + 2^(e-1) - [y < 0 and e > 0]) >> e without overflow or branches. */
#if defined(FASTGRNN_INT8_SMALL)
#define mbqm_add mbqm /* one copy of the general form: smaller code, same results */
#else
FG_INLINE int32_t mbqm_add(int32_t x, int32_t mult, int32_t shift) {
  const int32_t y = srdhm(x, mult), e = -shift;
  const int32_t half = (int32_t)(((uint32_t)1 << e) >> 1);
  return (y + half - (y < 0 && e > 0 ? 1 : 0)) >> e;
}
#endif

FG_INLINE int8_t clamp8(int32_t v, int8_t lo, int8_t hi) {
  return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

/* reference_integer_ops::AddFunc (int8); SUB only occurs inside tables. */
FG_INLINE int8_t add8(const fastgrnn_int8_binop *p, int32_t a, int32_t b) {
  const int32_t sa = mbqm_add((a + p->in1_offset) * (INT32_C(1) << 20), p->in1_mult,
                              p->in1_shift);
  const int32_t sb = mbqm_add((b + p->in2_offset) * (INT32_C(1) << 20), p->in2_mult,
                              p->in2_shift);
  return clamp8(mbqm_add(sa + sb, p->out_mult, p->out_shift) + p->out_offset, p->act_min,
                p->act_max);
}

/* reference_integer_ops::MulElementwise (int8). */
FG_INLINE int8_t mul8(const fastgrnn_int8_binop *p, int32_t a, int32_t b) {
  const int32_t prod = (a + p->in1_offset) * (b + p->in2_offset);
  return clamp8(mbqm(prod, p->out_mult, p->out_shift) + p->out_offset, p->act_min,
                p->act_max);
}

#define LUT(table, v) ((table)[(int32_t)(v) + 128])

#if defined(__ARM_FEATURE_DSP) && !defined(FASTGRNN_INT8_NO_DSP)
/* Cortex-M4/M7/M33 DSP: two 16-bit MACs per SMLAD on sign-extended byte pairs. */
static inline uint32_t load32(const void *p) {
  uint32_t v;
  __builtin_memcpy(&v, p, 4);
  return v;
}
static inline uint32_t sxtb16(uint32_t v) {
  uint32_t r;
  __asm__("sxtb16 %0, %1" : "=r"(r) : "r"(v));
  return r;
}
static inline uint32_t sxtb16_ror8(uint32_t v) {
  uint32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
  return r;
}
static inline int32_t smlad(uint32_t a, uint32_t b, int32_t acc) {
  int32_t r;
  __asm__("smlad %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
  return r;
}
#endif

/* acc + sum_c x[c] w[c] over n dense weights. */
static int32_t dot(const ROM int8_t *w, const int8_t *x, int32_t n, int32_t acc) {
#if defined(__ARM_FEATURE_DSP) && !defined(FASTGRNN_INT8_NO_DSP)
  for (; n >= 4; n -= 4, x += 4, w += 4) {
    const uint32_t xv = load32(x), wv = load32(w);
    acc = smlad(sxtb16(xv), sxtb16(wv), acc);
    acc = smlad(sxtb16_ror8(xv), sxtb16_ror8(wv), acc);
  }
#else
  for (; n >= 4; n -= 4, x += 4, w += 4) {
    acc += (int32_t)x[0] * w[0] + (int32_t)x[1] * w[1] + (int32_t)x[2] * w[2] +
           (int32_t)x[3] * w[3];
  }
#endif
  for (; n > 0; --n) acc += (int32_t)*x++ * *w++;
  return acc;
}

/* acc + sum over one bitmap-packed row: mask bytes, then its non-zeros in order. */
static int32_t dot_packed(const ROM uint8_t *mask, const ROM int8_t **wp, const int8_t *x,
                          int32_t cols, int32_t acc) {
  const ROM int8_t *w = *wp;
  int32_t c;
  for (c = 0; c < cols; c += 8) {
    uint32_t bits = *mask++;
    const int8_t *xc = x + c;
    while (bits) {
#if defined(__GNUC__)
      const int32_t k = __builtin_ctz(bits);
#else
      int32_t k = 0;
      while (!((bits >> k) & 1u)) ++k;
#endif
      acc += (int32_t)xc[k] * (int32_t)*w++;
      bits &= bits - 1u;
    }
  }
  *wp = w;
  return acc;
}

/* FullyConnectedPerChannel (int8), dense or bitmap-packed weights. */
static void fc8(const fastgrnn_int8_fc *f, const int8_t *x, int8_t *out) {
  const int32_t rows = f->rows, cols = f->cols, row_bytes = (cols + 7) / 8;
  const ROM int8_t *w = f->w;
  const ROM uint8_t *mask = f->mask;
  int32_t r, acc;
  for (r = 0; r < rows; ++r) {
    if (mask == 0) {
      acc = dot(w, x, cols, f->bias[r]);
      w += cols;
    } else {
      acc = dot_packed(mask, &w, x, cols, f->bias[r]);
      mask += row_bytes;
    }
    out[r] = clamp8(mbqm(acc, f->mult[r], f->shift[r]) + f->out_offset, f->act_min, f->act_max);
  }
}

/* out[j] = ADD(a[j], b[j]). */
static void add_vec(const fastgrnn_int8_binop *p, const int8_t *a, const int8_t *b,
                    int8_t *out, int32_t n) {
  const fastgrnn_int8_binop q = *p;
  int32_t j;
  for (j = 0; j < n; ++j) out[j] = add8(&q, a[j], b[j]);
}

/* out[j] = table[ADD(a[j], bias[j])]; no bias: table[a[j]]; no table: identity. */
static void bias_vec(const fastgrnn_int8_binop *p, const ROM int8_t *bias,
                     const ROM int8_t *table, const int8_t *a, int8_t *out, int32_t n) {
  const fastgrnn_int8_binop q = *p;
  int32_t j;
  for (j = 0; j < n; ++j) {
    const int8_t v = bias ? add8(&q, a[j], bias[j]) : a[j];
    out[j] = table ? LUT(table, v) : v;
  }
}

/* FastGRNN: h_out[j] = ADD(MUL(coef(z), h~), MUL(z, h)). */
static void grnn_out(const fastgrnn_int8_params *p, const int8_t *z, const int8_t *ht,
                     const int8_t *h_in, int8_t *h_out, int32_t n) {
  const fastgrnn_int8_binop zm = p->zh_mul, cm = p->ch_mul, oa = p->out_add;
  const ROM int8_t *coef = p->coef_table;
  int32_t j;
  for (j = 0; j < n; ++j) {
    const int8_t zj = z[j];
    const int8_t zh = mul8(&zm, zj, h_in[j]);
    h_out[j] = add8(&oa, mul8(&cm, LUT(coef, zj), ht[j]), zh);
  }
}

/* FastRNN: h_out[j] = ADD(alpha h~ [j], beta(h[j])). */
static void rnn_out(const fastgrnn_int8_binop *p, const ROM int8_t *state_table,
                    const int8_t *alpha_term, const int8_t *h_in, int8_t *h_out, int32_t n) {
  const fastgrnn_int8_binop q = *p;
  int32_t j;
  for (j = 0; j < n; ++j) h_out[j] = add8(&q, alpha_term[j], LUT(state_table, h_in[j]));
}

static int fc_ok(const fastgrnn_int8_fc *f, int32_t rows, int32_t cols) {
  return f->rows == rows && f->cols == cols && f->w && f->bias && f->mult && f->shift;
}

static int32_t check(const fastgrnn_int8_params *p) {
  int32_t d, h, rw = 0, ru = 0;
  if (!p) return FASTGRNN_INT8_ERR_NULL;
  d = p->input_dim;
  h = p->hidden_dim;
  if (d <= 0 || h <= 0 || p->num_classes <= 0) return FASTGRNN_INT8_ERR_DIMS;
  if (p->cell != FASTGRNN_INT8_FASTRNN && p->cell != FASTGRNN_INT8_FASTGRNN)
    return FASTGRNN_INT8_ERR_DIMS;
  if (p->w_factors == 1) {
    if (!fc_ok(&p->w[0], h, d)) return FASTGRNN_INT8_ERR_DIMS;
  } else if (p->w_factors == 2) {
    rw = p->w[0].rows;
    if (rw <= 0 || !fc_ok(&p->w[0], rw, d) || !fc_ok(&p->w[1], h, rw)) return FASTGRNN_INT8_ERR_DIMS;
  } else {
    return FASTGRNN_INT8_ERR_DIMS;
  }
  if (p->u_factors == 1) {
    if (!fc_ok(&p->u[0], h, h)) return FASTGRNN_INT8_ERR_DIMS;
  } else if (p->u_factors == 2) {
    ru = p->u[0].rows;
    if (ru <= 0 || !fc_ok(&p->u[0], ru, h) || !fc_ok(&p->u[1], h, ru)) return FASTGRNN_INT8_ERR_DIMS;
  } else {
    return FASTGRNN_INT8_ERR_DIMS;
  }
  if (!fc_ok(&p->classifier, p->num_classes, h)) return FASTGRNN_INT8_ERR_DIMS;
  if (p->cell == FASTGRNN_INT8_FASTGRNN ? !p->coef_table : (!p->update_table || !p->state_table))
    return FASTGRNN_INT8_ERR_NULL;
  return 2 * h + (rw > ru ? rw : ru);
}

int32_t fastgrnn_int8_scratch_bytes(const fastgrnn_int8_params *p) { return check(p); }

int fastgrnn_int8_step(const fastgrnn_int8_params *p, const int8_t *x, const int8_t *h_in,
                       int8_t *h_out, int8_t *logits, fastgrnn_int8_scratch *scratch) {
  const int32_t need = check(p);
  int8_t *xw, *hu, *low;
  int32_t h;
  if (need < 0) return (int)need;
  if (!x || !h_in || !h_out) return FASTGRNN_INT8_ERR_NULL;
  if (!scratch || !scratch->buf || scratch->size < need) return FASTGRNN_INT8_ERR_SCRATCH;
  h = p->hidden_dim;
  xw = scratch->buf;
  hu = xw + h;
  low = hu + h;
  if (p->w_factors == 2) {
    fc8(&p->w[0], x, low);
    fc8(&p->w[1], low, xw);
  } else {
    fc8(&p->w[0], x, xw);
  }
  if (p->u_factors == 2) {
    fc8(&p->u[0], h_in, low);
    fc8(&p->u[1], low, hu);
  } else {
    fc8(&p->u[0], h_in, hu);
  }
  /* Elementwise passes, each with its few parameters in registers (a local copy: the
   * int8 stores could alias the params otherwise). pre -> xw; h~ (or alpha h~) -> hu;
   * z -> xw; then h_out. */
  add_vec(&p->pre, xw, hu, xw, h);
  bias_vec(&p->update_add, p->update_bias, p->update_table, xw, hu, h);
  if (p->cell == FASTGRNN_INT8_FASTGRNN) {
    bias_vec(&p->gate_add, p->gate_bias, p->gate_table, xw, xw, h);
    grnn_out(p, xw, hu, h_in, h_out, h);
  } else {
    rnn_out(&p->out_add, p->state_table, hu, h_in, h_out, h);
  }
  if (logits) fc8(&p->classifier, h_out, logits);
  return FASTGRNN_INT8_OK;
}
