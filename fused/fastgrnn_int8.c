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

/* 32-bit SIMD helpers. On Armv7E-M (__ARM_FEATURE_DSP) single instructions; with
 * -DFASTGRNN_INT8_SIMD_EMULATE the same code paths run anywhere on portable C versions
 * (how the host tests cover the Arm code paths). */
#if defined(__ARM_FEATURE_DSP) && !defined(FASTGRNN_INT8_NO_DSP)
#define FG_DSP 1
#define FG_SIMD 1
#elif defined(FASTGRNN_INT8_SIMD_EMULATE)
#define FG_SIMD 1
#endif

#if defined(FG_SIMD)
static inline uint32_t load32(const void *p) {
  uint32_t v;
  __builtin_memcpy(&v, p, 4);
  return v;
}
#endif

#if defined(FG_DSP)
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
/* (a b + 2^31) >> 32, the rounded high word. */
static inline int32_t smmulr(int32_t a, int32_t b) {
  int32_t r;
  __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
  return r;
}
/* Saturate to int8. */
static inline int32_t ssat8(int32_t v) {
  int32_t r;
  __asm__("ssat %0, #8, %1" : "=r"(r) : "r"(v));
  return r;
}
#else
/* Portable equivalents (bytes 0 and 2, or 1 and 3, sign-extended to two int16 halves). */
static inline uint32_t sxtb16(uint32_t v) {
  return ((uint32_t)(uint16_t)(int16_t)(int8_t)(v & 0xffu)) |
         ((uint32_t)(uint16_t)(int16_t)(int8_t)((v >> 16) & 0xffu) << 16);
}
static inline uint32_t sxtb16_ror8(uint32_t v) { return sxtb16((v >> 8) | (v << 24)); }
static inline int32_t smlad(uint32_t a, uint32_t b, int32_t acc) {
  return acc + (int32_t)(int16_t)(a & 0xffffu) * (int16_t)(b & 0xffffu) +
         (int32_t)(int16_t)(a >> 16) * (int16_t)(b >> 16);
}
static inline int32_t smmulr(int32_t a, int32_t b) {
  return (int32_t)(((int64_t)a * b + (INT64_C(1) << 31)) >> 32);
}
static inline int32_t ssat8(int32_t v) { return v < -128 ? -128 : (v > 127 ? 127 : v); }
#endif

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

/* acc + sum_c x[c] w[c] over n dense weights. */
static int32_t dot(const ROM int8_t *w, const int8_t *x, int32_t n, int32_t acc) {
#if defined(FG_SIMD)
  for (; n >= 4; n -= 4, x += 4, w += 4) {
    const uint32_t xv = load32(x), wv = load32((const void *)w);
    acc = smlad(sxtb16(xv), sxtb16(wv), acc);
    acc = smlad(sxtb16_ror8(xv), sxtb16_ror8(wv), acc);
  }
#endif
  for (; n > 0; --n) acc += (int32_t)*x++ * *w++;
  return acc;
}

#if defined(FG_SIMD) && !defined(FASTGRNN_INT8_SMALL)
/* Two dense rows at once (w0, w1 = w0 + n): each x word is loaded and sign-extended once
 * for both rows. Sums are exact integers, so the order does not matter. */
static void dot2(const int8_t *w0, const int8_t *x, int32_t n, int32_t *acc0,
                 int32_t *acc1) {
  const int8_t *w1 = w0 + n;
  int32_t a0 = *acc0, a1 = *acc1;
#if defined(FG_DSP)
  if (n >= 4) {
    /* The same loop as below, in registers (gcc -Os spills the C version). */
    uint32_t k = (uint32_t)n >> 2, xv, xo, v0, v1, t;
    __asm__ volatile(
        "1:\n\t"
        "ldr %[xv], [%[x]], #4\n\t"
        "ldr %[v0], [%[w0]], #4\n\t"
        "ldr %[v1], [%[w1]], #4\n\t"
        "sxtb16 %[xo], %[xv], ror #8\n\t"
        "sxtb16 %[xv], %[xv]\n\t"
        "sxtb16 %[t], %[v0]\n\t"
        "smlad %[a0], %[xv], %[t], %[a0]\n\t"
        "sxtb16 %[t], %[v0], ror #8\n\t"
        "smlad %[a0], %[xo], %[t], %[a0]\n\t"
        "sxtb16 %[t], %[v1]\n\t"
        "smlad %[a1], %[xv], %[t], %[a1]\n\t"
        "sxtb16 %[t], %[v1], ror #8\n\t"
        "smlad %[a1], %[xo], %[t], %[a1]\n\t"
        "subs %[k], %[k], #1\n\t"
        "bne 1b"
        : [xv] "=&r"(xv), [xo] "=&r"(xo), [v0] "=&r"(v0), [v1] "=&r"(v1), [t] "=&r"(t),
          [a0] "+r"(a0), [a1] "+r"(a1), [x] "+r"(x), [w0] "+r"(w0), [w1] "+r"(w1),
          [k] "+r"(k)
        :
        : "cc", "memory");
    n &= 3;
  }
#else
  for (; n >= 4; n -= 4, x += 4, w0 += 4, w1 += 4) {
    const uint32_t xv = load32(x), xe = sxtb16(xv), xo = sxtb16_ror8(xv);
    const uint32_t v0 = load32(w0), v1 = load32(w1);
    a0 = smlad(xe, sxtb16(v0), a0);
    a0 = smlad(xo, sxtb16_ror8(v0), a0);
    a1 = smlad(xe, sxtb16(v1), a1);
    a1 = smlad(xo, sxtb16_ror8(v1), a1);
  }
#endif
  for (; n > 0; --n) {
    const int32_t xc = *x++;
    a0 += xc * *w0++;
    a1 += xc * *w1++;
  }
  *acc0 = a0;
  *acc1 = a1;
}
#endif

FG_INLINE int8_t fc_out(const fastgrnn_int8_fc *f, int32_t r, int32_t acc) {
  return clamp8(mbqm(acc, f->mult[r], f->shift[r]) + f->out_offset, f->act_min, f->act_max);
}

/* FullyConnectedPerChannel (int8), dense or bitmap-packed weights. */
static void fc8(const fastgrnn_int8_fc *f, const int8_t *x, int8_t *out) {
  const int32_t rows = f->rows, cols = f->cols, row_bytes = (cols + 7) / 8;
  const ROM int8_t *w = f->w;
  const ROM uint8_t *mask = f->mask;
  int32_t r = 0;
  if (mask) {
    for (; r < rows; ++r, mask += row_bytes)
      out[r] = fc_out(f, r, dot_packed(mask, &w, x, cols, f->bias[r]));
    return;
  }
#if defined(FG_SIMD) && !defined(FASTGRNN_INT8_SMALL)
  for (; r + 1 < rows; r += 2, w += 2 * cols) {
    int32_t acc = f->bias[r], acc1 = f->bias[r + 1];
    dot2(w, x, cols, &acc, &acc1);
    out[r] = fc_out(f, r, acc);
    out[r + 1] = fc_out(f, r + 1, acc1);
  }
#endif
  for (; r < rows; ++r, w += cols) out[r] = fc_out(f, r, dot(w, x, cols, f->bias[r]));
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

#if !defined(FASTGRNN_INT8_SMALL)
/* Fast elementwise passes: the same results as add8 / mul8 under conditions checked once
 * per step (otherwise the passes above run).
 *  - SaturatingRoundingDoublingHighMul(x, m) = (x m + 2^30) >> 31 = (2x m + 2^31) >> 32,
 *    the rounded high word of 2x m (SMMULR), whenever 2x fits in 32 bits.
 *  - RoundingDivideByPOT(y, e), e >= 1: (y + 2^(e-1) - [y < 0]) >> e.
 *  - ADD operand v: x = (v + offset) 2^20 with |v + offset| <= 255, so |2x| < 2^29 and,
 *    as the multiplier m > 2^10, y = srdhm(x, m) < 0 exactly when v + offset < 0. Shift
 *    0 occurs only for the multiplier 1/2 (m = 2^30, the operand with the larger scale):
 *    then y = (v + offset) 2^19 = (smmulr((v + offset) 2^22, 2^30) + 1 - [v + offset < 0])
 *    >> 1, the same form with l = 22, e = 1.
 *  - ADD output: |x| = |sum of two operands| < 2^28; MUL: |x| = |product| < 2^16; both
 *    need shift <= -1 (e >= 1) and the full clamp [-128, 127] (= SSAT #8). */
typedef struct {
  int32_t l, off, m, half, e; /* x = v 2^l + off (= (v + offset) 2^l) */
} fg_in;
typedef struct {
  int32_t m, half, e, off, in1x2, in2; /* in1x2, in2: the MUL input offsets (2 o1, o2) */
} fg_out;

static int fast_in(fg_in *r, int32_t offset, int32_t mult, int32_t shift) {
  if (mult <= (INT32_C(1) << 10) || shift > 0 || shift < -31 || offset < -255 || offset > 255)
    return 0;
  if (shift == 0) {
    if (mult != (INT32_C(1) << 30)) return 0;
    r->l = 22;
    r->e = 1;
  } else {
    r->l = 21;
    r->e = -shift;
  }
  r->off = offset * (INT32_C(1) << r->l);
  r->m = mult;
  r->half = INT32_C(1) << (r->e - 1);
  return 1;
}

static int fast_out(fg_out *r, const fastgrnn_int8_binop *p) {
  if (p->out_shift >= 0 || p->out_shift < -31 || p->act_min != -128 || p->act_max != 127 ||
      p->in1_offset < -255 || p->in1_offset > 255 || p->in2_offset < -255 || p->in2_offset > 255)
    return 0;
  r->m = p->out_mult;
  r->e = -p->out_shift;
  r->half = INT32_C(1) << (r->e - 1);
  r->off = p->out_offset;
  r->in1x2 = 2 * p->in1_offset;
  r->in2 = p->in2_offset;
  return 1;
}

/* Both operands and the output of an ADD. */
static int fast_add(fg_in *a, fg_in *b, fg_out *o, const fastgrnn_int8_binop *p) {
  return fast_in(a, p->in1_offset, p->in1_mult, p->in1_shift) &&
         fast_in(b, p->in2_offset, p->in2_mult, p->in2_shift) && fast_out(o, p);
}

/* An ADD operand scaled: mbqm_add((v + offset) 2^20, m, shift). */
FG_INLINE int32_t in_scaled(const fg_in *r, int32_t v) {
  const int32_t x = (int32_t)((uint32_t)v << r->l) + r->off;
  return (smmulr(x, r->m) + r->half - (int32_t)((uint32_t)x >> 31)) >> r->e;
}

/* clamp8(mbqm(x, m, shift) + offset) from x2 = 2x. */
FG_INLINE int32_t out8(const fg_out *r, int32_t x2) {
  const int32_t y = smmulr(x2, r->m);
  return ssat8(((y + r->half - (int32_t)((uint32_t)y >> 31)) >> r->e) + r->off);
}

/* ADD(a, b) from two int8 values. */
FG_INLINE int32_t add_fast(const fg_in *ia, const fg_in *ib, const fg_out *o, int32_t a,
                           int32_t b) {
  return out8(o, (in_scaled(ia, a) + in_scaled(ib, b)) * 2);
}

/* MUL(a, b). */
FG_INLINE int32_t mul_fast(const fg_out *o, int32_t a, int32_t b) {
  return out8(o, (2 * a + o->in1x2) * (b + o->in2));
}

static int add_vec_fast(const fastgrnn_int8_binop *p, const int8_t *a, const int8_t *b,
                        int8_t *out, int32_t n) {
  fg_in ia, ib;
  fg_out o;
  int32_t j;
  if (!fast_add(&ia, &ib, &o, p)) return 0;
  for (j = 0; j < n; ++j) out[j] = (int8_t)add_fast(&ia, &ib, &o, a[j], b[j]);
  return 1;
}

static int bias_vec_fast(const fastgrnn_int8_binop *p, const ROM int8_t *bias,
                         const ROM int8_t *table, const int8_t *a, int8_t *out, int32_t n) {
  fg_in ia, ib;
  fg_out o;
  int32_t j;
  if (!bias || !fast_add(&ia, &ib, &o, p)) return 0;
  if (table) {
    for (j = 0; j < n; ++j) out[j] = LUT(table, add_fast(&ia, &ib, &o, a[j], bias[j]));
  } else {
    for (j = 0; j < n; ++j) out[j] = (int8_t)add_fast(&ia, &ib, &o, a[j], bias[j]);
  }
  return 1;
}

static int grnn_out_fast(const fastgrnn_int8_params *p, const int8_t *z, const int8_t *ht,
                         const int8_t *h_in, int8_t *h_out, int32_t n) {
  fg_in ia, ib;
  fg_out zm, cm, o;
  const ROM int8_t *coef = p->coef_table;
  int32_t j;
  if (!fast_out(&zm, &p->zh_mul) || !fast_out(&cm, &p->ch_mul) ||
      !fast_add(&ia, &ib, &o, &p->out_add))
    return 0;
  for (j = 0; j < n; ++j) {
    const int32_t zj = z[j];
    const int32_t zh = mul_fast(&zm, zj, h_in[j]);
    h_out[j] = (int8_t)add_fast(&ia, &ib, &o, mul_fast(&cm, LUT(coef, zj), ht[j]), zh);
  }
  return 1;
}

static int rnn_out_fast(const fastgrnn_int8_binop *p, const ROM int8_t *state_table,
                        const int8_t *alpha_term, const int8_t *h_in, int8_t *h_out,
                        int32_t n) {
  fg_in ia, ib;
  fg_out o;
  int32_t j;
  if (!fast_add(&ia, &ib, &o, p)) return 0;
  for (j = 0; j < n; ++j)
    h_out[j] = (int8_t)add_fast(&ia, &ib, &o, alpha_term[j], LUT(state_table, h_in[j]));
  return 1;
}
#define FG_FAST(call) (call)
#else
#define FG_FAST(call) 0
#endif

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
  if (!FG_FAST(add_vec_fast(&p->pre, xw, hu, xw, h))) add_vec(&p->pre, xw, hu, xw, h);
  if (!FG_FAST(bias_vec_fast(&p->update_add, p->update_bias, p->update_table, xw, hu, h)))
    bias_vec(&p->update_add, p->update_bias, p->update_table, xw, hu, h);
  if (p->cell == FASTGRNN_INT8_FASTGRNN) {
    if (!FG_FAST(bias_vec_fast(&p->gate_add, p->gate_bias, p->gate_table, xw, xw, h)))
      bias_vec(&p->gate_add, p->gate_bias, p->gate_table, xw, xw, h);
    if (!FG_FAST(grnn_out_fast(p, xw, hu, h_in, h_out, h))) grnn_out(p, xw, hu, h_in, h_out, h);
  } else if (!FG_FAST(rnn_out_fast(&p->out_add, p->state_table, hu, h_in, h_out, h))) {
    rnn_out(&p->out_add, p->state_table, hu, h_in, h_out, h);
  }
  if (logits) fc8(&p->classifier, h_out, logits);
  return FASTGRNN_INT8_OK;
}
