// SPDX-License-Identifier: Apache-2.0
/* One int8 FastGRNN / FastRNN step, bit-exact with TFLM's reference int8 kernels.
 * See fastgrnn_int8.h. The fixed-point helpers follow gemmlowp / TFLM
 * (tensorflow/lite/kernels/internal/common.h, built without TFLITE_SINGLE_ROUNDING). */
#include "fastgrnn_int8.h"

#define ROM FASTGRNN_INT8_ROM

/* FASTGRNN_INT8_SMALL: one out-of-line copy of each helper (smallest code, about 1.4x
 * the instructions); default: the elementwise helpers inlined into each pass. */
/* Thumb-2 M-profile cores (Armv7-M, Armv7E-M, Armv8-M Mainline, Armv8.1-M): the sparse
 * rows' inner loop in inline assembly (gcc -Os spills the C version). */
#if (defined(__ARM_ARCH_7M__) || defined(__ARM_ARCH_7EM__) || \
     defined(__ARM_ARCH_8M_MAIN__) || defined(__ARM_ARCH_8_1M_MAIN__)) && \
    defined(__GNUC__) && !defined(FASTGRNN_INT8_NO_ASM)
#define FG_THUMB2 1
#elif (defined(__ARM_ARCH_6M__) || defined(__ARM_ARCH_8M_BASE__)) && defined(__GNUC__) && \
    !defined(FASTGRNN_INT8_NO_ASM)
#define FG_THUMB1 1
#endif
/* 8-bit AVR: the rescales' high words and the sparse rows in inline assembly. */
#if defined(__AVR__) && defined(__GNUC__) && !defined(FASTGRNN_INT8_NO_ASM)
#define FG_AVR_ASM 1
#endif

/* The hot passes at -O2 on Thumb-2 cores (gcc -Os reloads their constants from the stack:
 * -1.7 k instructions per HAR-2 step on the M3/M4F); not on Armv6-M, where -O2 is slower. */
#if defined(FG_THUMB2) && !defined(FASTGRNN_INT8_SMALL) && defined(__GNUC__) && \
    !defined(__clang__)
#define FG_HOT __attribute__((optimize("O2")))
#else
#define FG_HOT
#endif

#if defined(FASTGRNN_INT8_SMALL) || defined(__AVR__) /* AVR: 32 KB of flash */
#define FG_INLINE static
#elif defined(__GNUC__)
#define FG_INLINE static inline __attribute__((always_inline))
#else
#define FG_INLINE static inline
#endif

/* The fast elementwise passes' helpers: on AVR inlined after all (+2 KB of flash, -18 k
 * cycles per HAR-2 step: each call saved and restored a dozen registers); FG_INLINE
 * elsewhere. */
#if defined(__AVR__) && !defined(FASTGRNN_INT8_SMALL) && defined(__GNUC__)
#define FG_EW_INLINE static inline __attribute__((always_inline))
#else
#define FG_EW_INLINE FG_INLINE
#endif

#if defined(__GNUC__)
#define FG_UNLIKELY(c) __builtin_expect(!!(c), 0)
#else
#define FG_UNLIKELY(c) (c)
#endif

/* The fast paths (SIMD FC rows, exact SMMULR forms of the elementwise ops, per-pass
 * constants): every build but the size build (AVR too: with 32-bit-only rescales and
 * out-of-line helpers, 32 KB of flash). */
#if !defined(FASTGRNN_INT8_SMALL)
#define FG_FASTPATH 1
#endif

/* An int8 x int8 product: 16 bits are enough (|p| <= 2^14), which 8-bit AVR computes
 * with one MULS instead of a 32-bit multiply routine; the sum stays int32. */
#if defined(__AVR__)
#define FG_MUL8(a, b) ((int16_t)((int16_t)(int8_t)(a) * (int16_t)(int8_t)(b)))
#else
#define FG_MUL8(a, b) ((int32_t)(a) * (int32_t)(b))
#endif

/* v >> e (arithmetic), 0 <= e <= 31. 8-bit AVR shifts a 32-bit value one bit per loop
 * pass: whole bytes first (v >> 16 >> 8 >> rest is the same floor). */
#if defined(__AVR__)
static int32_t fg_asr(int32_t v, int32_t e) {
  if (e >= 16) {
    v >>= 16;
    e -= 16;
  }
  if (e >= 8) {
    v >>= 8;
    e -= 8;
  }
  return v >> e;
}
#define FG_ASR(v, e) fg_asr((v), (e))
#else
#define FG_ASR(v, e) ((v) >> (e))
#endif

/* gemmlowp SaturatingRoundingDoublingHighMul(a, b) = (a b + nudge) / 2^31 truncated,
 * nudge = 2^30 (a b >= 0) or 1 - 2^30. For a b < 0 the truncating division equals
 * (a b + 1 - 2^30 + 2^31 - 1) >> 31, so both cases are (a b + 2^30) >> 31 (arithmetic
 * shift, as TFLM itself assumes). Its saturating case (a = b = INT32_MIN) cannot occur:
 * every multiplier is QuantizeMultiplier's, in [0, 2^31). */
/* Cores without a 32 x 32 -> 64 multiply instruction (Armv6-M: M0, M0+, M1; Armv8-M
 * Baseline: M23) call a 64-bit multiply routine (__muldi3, ~36 instructions on M0) for
 * every rescale. There the high words come from four 16 x 16 -> 32 products instead
 * (exact; one MULS each). -DFASTGRNN_INT8_MUL32 forces this path anywhere (how the host
 * tests cover it). Not on AVR: measured, avr-gcc's 64-bit multiply routine beats four
 * calls of its 16 x 16 -> 32 one (HAR-2 shape, ATmega328P: 790,808 against 925,266
 * cycles per step). */
#if defined(__ARM_ARCH_6M__) || defined(__ARM_ARCH_8M_BASE__) || defined(FASTGRNN_INT8_MUL32)
#define FG_MUL32 1
#endif

/* 16 x 16 -> 32 products. avr-gcc 5.4 calls its fast widening routines only for true
 * 16-bit operands (a truncated int32 gets the 32-bit multiply routine): hence functions. */
#if defined(__AVR__)
#if defined(FG_MUL32)
static __attribute__((noinline)) uint32_t fg_umul16(uint16_t a, uint16_t b) {
  return (uint32_t)a * b;
}
#endif
static __attribute__((noinline)) int32_t fg_smul16(int16_t a, int16_t b) {
  return (int32_t)a * b;
}
#define FG_UMUL16(a, b) fg_umul16((uint16_t)(a), (uint16_t)(b))
#define FG_SMUL16(a, b) fg_smul16((int16_t)(a), (int16_t)(b))
/* signed a x unsigned b: unsigned, minus 2^16 b when a < 0 (mod 2^32) */
#define FG_SUMUL16(a, b) \
  ((int32_t)(FG_UMUL16(a, b) - ((a) < 0 ? (uint32_t)(uint16_t)(b) << 16 : 0u)))
#else
#define FG_SUMUL16(a, b) ((int32_t)(int16_t)(a) * (int32_t)(uint16_t)(b))
#define FG_UMUL16(a, b) ((uint32_t)(uint16_t)(a) * (uint16_t)(b))
#define FG_SMUL16(a, b) ((int32_t)(int16_t)(a) * (int16_t)(b))
#endif

#if defined(FG_MUL32)
/* a b = 2^32 H + 2^16 (T - c) + L exactly, with a = 2^16 ah + al, b = 2^16 bh + bl
 * (al, bl unsigned 16 bit; b >= 0), c the rounding constant's share of T (c < 2^16):
 * returns H and sets *t = T (< 2^18). Every product fits 32 bits: |ah bl| <= 2^15 (2^16 -
 * 1) < 2^31, al bh < 2^16 2^15, al bl < 2^32 unsigned. */
FG_INLINE int32_t mul_parts(int32_t a, int32_t b, uint32_t c, uint32_t *t) {
  const uint32_t al = (uint32_t)a & 0xffffu, bl = (uint32_t)b & 0xffffu;
  const int32_t ah = a >> 16, bh = b >> 16;
  /* Written as 16 x 16 -> 32 products (AVR: one fast routine call each). */
  const uint32_t ll = FG_UMUL16(al, bl);
  /* |ah bl| < 2^31; bh >= 0 (b >= 0), so al bh is unsigned. */
  const int32_t hl = FG_SUMUL16(ah, bl);
  const int32_t lh = (int32_t)FG_UMUL16(al, bh);
  *t = (ll >> 16) + ((uint32_t)hl & 0xffffu) + ((uint32_t)lh & 0xffffu) + c;
  return FG_SMUL16(ah, bh) + (hl >> 16) + (lh >> 16);
}
/* (a b + 2^30) >> 31 for b >= 0: 2^31 (2 H) + 2^16 T + L, T with c = 2^14. */
FG_INLINE int32_t srdhm(int32_t a, int32_t b) {
  uint32_t t;
  const int32_t hi = mul_parts(a, b, UINT32_C(1) << 14, &t);
  return (int32_t)((uint32_t)hi << 1) + (int32_t)(t >> 15);
}
#elif defined(FG_AVR_ASM)
/* 8-bit AVR: avr-gcc's 64-bit multiply and shift routines cost hundreds of cycles per
 * rescale. FG_AVR_MULHI(h, a, b, round, tail) sets h = bits 32..63 of a b + round 2^24
 * (signed a, b) from sixteen 8 x 8 -> 16 MULs: the unsigned product of the two bit
 * patterns column by column (each partial product added to bytes k, k + 1 with its carry
 * into byte k + 2, which at that point holds only a few carries: none is lost), the
 * rounding constant starting in byte 3, then minus 2^32 b if a < 0 and minus 2^32 a if
 * b < 0 (two's complement: a = a_u - 2^32 [a < 0]; the 2^64 term vanishes). Byte 0 is
 * never needed: nothing carries out of it. `tail` may use byte 3 (p3). */
#define FG_AVR_MULHI(h, a, b, round, tail) \
  do { \
    uint8_t p1_, p2_, p3_, z_; \
    __asm__("clr %[z]\n\t" \
          "clr %[p2]\n\t" \
          "ldi %[p3], " round "\n\t" \
          "clr %A[h]\n\t" \
          "clr %B[h]\n\t" \
          "clr %C[h]\n\t" \
          "clr %D[h]\n\t" \
          "mul %A[a], %A[b]\n\t" \
          "mov %[p1], r1\n\t" \
          "mul %A[a], %B[b]\n\t" \
          "add %[p1], r0\n\t" \
          "adc %[p2], r1\n\t" \
          "adc %[p3], %[z]\n\t" \
          "mul %B[a], %A[b]\n\t" \
          "add %[p1], r0\n\t" \
          "adc %[p2], r1\n\t" \
          "adc %[p3], %[z]\n\t" \
          "mul %A[a], %C[b]\n\t" \
          "add %[p2], r0\n\t" \
          "adc %[p3], r1\n\t" \
          "adc %A[h], %[z]\n\t" \
          "mul %B[a], %B[b]\n\t" \
          "add %[p2], r0\n\t" \
          "adc %[p3], r1\n\t" \
          "adc %A[h], %[z]\n\t" \
          "mul %C[a], %A[b]\n\t" \
          "add %[p2], r0\n\t" \
          "adc %[p3], r1\n\t" \
          "adc %A[h], %[z]\n\t" \
          "mul %A[a], %D[b]\n\t" \
          "add %[p3], r0\n\t" \
          "adc %A[h], r1\n\t" \
          "adc %B[h], %[z]\n\t" \
          "mul %B[a], %C[b]\n\t" \
          "add %[p3], r0\n\t" \
          "adc %A[h], r1\n\t" \
          "adc %B[h], %[z]\n\t" \
          "mul %C[a], %B[b]\n\t" \
          "add %[p3], r0\n\t" \
          "adc %A[h], r1\n\t" \
          "adc %B[h], %[z]\n\t" \
          "mul %D[a], %A[b]\n\t" \
          "add %[p3], r0\n\t" \
          "adc %A[h], r1\n\t" \
          "adc %B[h], %[z]\n\t" \
          "mul %B[a], %D[b]\n\t" \
          "add %A[h], r0\n\t" \
          "adc %B[h], r1\n\t" \
          "adc %C[h], %[z]\n\t" \
          "mul %C[a], %C[b]\n\t" \
          "add %A[h], r0\n\t" \
          "adc %B[h], r1\n\t" \
          "adc %C[h], %[z]\n\t" \
          "mul %D[a], %B[b]\n\t" \
          "add %A[h], r0\n\t" \
          "adc %B[h], r1\n\t" \
          "adc %C[h], %[z]\n\t" \
          "mul %C[a], %D[b]\n\t" \
          "add %B[h], r0\n\t" \
          "adc %C[h], r1\n\t" \
          "adc %D[h], %[z]\n\t" \
          "mul %D[a], %C[b]\n\t" \
          "add %B[h], r0\n\t" \
          "adc %C[h], r1\n\t" \
          "adc %D[h], %[z]\n\t" \
          "mul %D[a], %D[b]\n\t" \
          "add %C[h], r0\n\t" \
          "adc %D[h], r1\n\t" \
          "sbrs %D[a], 7\n\t" \
          "rjmp 1f\n\t" \
          "sub %A[h], %A[b]\n\t" \
          "sbc %B[h], %B[b]\n\t" \
          "sbc %C[h], %C[b]\n\t" \
          "sbc %D[h], %D[b]\n" \
          "1:\n\t" \
          "sbrs %D[b], 7\n\t" \
          "rjmp 2f\n\t" \
          "sub %A[h], %A[a]\n\t" \
          "sbc %B[h], %B[a]\n\t" \
          "sbc %C[h], %C[a]\n\t" \
          "sbc %D[h], %D[a]\n" \
          "2:\n\t" \
          tail \
          "clr r1" \
          : [h] "=&r"(h), [p1] "=&r"(p1_), [p2] "=&r"(p2_), [p3] "=&d"(p3_), \
            [z] "=&r"(z_) \
          : [a] "r"(a), [b] "r"(b) \
          : "r0", "r1", "cc"); \
  } while (0)
/* (a b + 2^30) >> 31: bits 32..63 of a b + 2^30, shifted left by one, bit 31 below. */
static __attribute__((noinline)) int32_t srdhm(int32_t a, int32_t b) {
  int32_t h;
  FG_AVR_MULHI(h, a, b, "0x40",
               "lsl %[p3]\n\t"
               "rol %A[h]\n\t"
               "rol %B[h]\n\t"
               "rol %C[h]\n\t"
               "rol %D[h]\n\t");
  return h;
}
#elif defined(FG_THUMB2)
/* The same as the C form below in 4 instructions and no constant registers (gcc's SMLAL
 * form takes 5 and two registers for 2^30): (a b + 2^30) >> 31 = (2 a b + 2^31) >> 32,
 * the high word H of 2 a b (SMULL, then the 64-bit doubling ADDS/ADC) plus the top bit of
 * its low word L: floor((2^32 H + L + 2^31) / 2^32) = H + (L >> 31). Exact for every a, b
 * but a = b = INT32_MIN (2 a b = 2^63 does not fit int64; the C form has no saturation
 * either), which no QuantizeMultiplier multiplier (in [0, 2^31)) gives. */
FG_INLINE int32_t srdhm(int32_t a, int32_t b) {
  int32_t lo, hi;
  __asm__("smull %0, %1, %2, %3\n\t"
          "adds %0, %0, %0\n\t"
          "adc %1, %1, %1\n\t"
          "add %1, %1, %0, lsr #31"
          : "=&r"(lo), "=&r"(hi)
          : "r"(a), "r"(b)
          : "cc");
  return hi;
}
#else
FG_INLINE int32_t srdhm(int32_t a, int32_t b) {
  return (int32_t)(((int64_t)a * (int64_t)b + (INT64_C(1) << 30)) >> 31);
}
#endif

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
  /* |a + offset| <= 255: a 16 x 16 -> 32 product (one routine call on AVR). */
  const int32_t prod = FG_SMUL16(a + p->in1_offset, b + p->in2_offset);
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
/* acc + ((a b + 2^31) >> 32) (exact: acc 2^32 adds to the high word only). */
static inline int32_t smmlar(int32_t a, int32_t b, int32_t acc) {
  int32_t r;
  __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
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
#if defined(FG_MUL32)
/* (a b + 2^31) >> 32 = H + (T >> 16), T with c = 2^15. */
FG_INLINE int32_t smmulr(int32_t a, int32_t b) {
  uint32_t t;
  const int32_t hi = mul_parts(a, b, UINT32_C(1) << 15, &t);
  return hi + (int32_t)(t >> 16);
}
#elif defined(FG_AVR_ASM)
/* (a b + 2^31) >> 32 */
static __attribute__((noinline)) int32_t smmulr(int32_t a, int32_t b) {
  int32_t h;
  FG_AVR_MULHI(h, a, b, "0x80", "");
  return h;
}
#else
static inline int32_t smmulr(int32_t a, int32_t b) {
  return (int32_t)(((int64_t)a * b + (INT64_C(1) << 31)) >> 32);
}
#endif
static inline int32_t smmlar(int32_t a, int32_t b, int32_t acc) { return acc + smmulr(a, b); }
#if defined(FG_THUMB2)
static inline int32_t ssat8(int32_t v) { /* SSAT is Armv7-M, not only DSP */
  int32_t r;
  __asm__("ssat %0, #8, %1" : "=r"(r) : "r"(v));
  return r;
}
#else
static inline int32_t ssat8(int32_t v) { return v < -128 ? -128 : (v > 127 ? 127 : v); }
#endif
#endif

/* ssat8(v >> 1) (arithmetic shift): SSAT's own shifted operand on Armv7-M and later. */
#if defined(FG_DSP) || defined(FG_THUMB2)
static inline int32_t ssat8_half(int32_t v) {
  int32_t r;
  __asm__("ssat %0, #8, %1, asr #1" : "=r"(r) : "r"(v));
  return r;
}
#else
static inline int32_t ssat8_half(int32_t v) { return ssat8(v >> 1); }
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
      acc += FG_MUL8(xc[k], *w++);
      bits &= bits - 1u;
    }
  }
  *wp = w;
  return acc;
}


#if defined(FG_AVR_ASM)
/* 8-bit AVR: S_ = the sparse row at flash address IP_ (its count n, then n column
 * indices) times the n weights at WP_, over X_ in RAM; IP_ and WP_ advance past the row.
 * ~27 cycles per MAC: the index and the weight by LPM (Z switched between the two flash
 * streams), x[index] by LD X, one MULS, the 16-bit product added into a 24-bit sum (its
 * sign by SBRC/DEC), sign-extended once at the end. 24 bits hold any sparse row: n <= cols
 * <= 255 (the parser's check), |product| <= 2^14, so |sum| < 2^22. */
#define FG_AVR_SPARSE_SUM(S_, IP_, WP_, X_)                                               \
  do {                                                                                  \
    uint8_t t_, xv_, wv_, z_, n_;                                                       \
    __asm__ volatile("movw r30, %[ip]\n\t"                                              \
                     "lpm %[n], Z+\n\t"                                                 \
                     "movw %[ip], r30\n\t"                                              \
                     "clr %[z]\n\t"                                                     \
                     "clr %A[s]\n\t"                                                    \
                     "clr %B[s]\n\t"                                                    \
                     "clr %C[s]\n\t"                                                    \
                     "tst %[n]\n\t"                                                     \
                     "breq 2f\n"                                                        \
                     "1:\n\t"                                                           \
                     "movw r30, %[ip]\n\t"                                              \
                     "lpm %[t], Z+\n\t"                                                 \
                     "movw %[ip], r30\n\t"                                              \
                     "movw r26, %[x]\n\t"                                               \
                     "add r26, %[t]\n\t"                                                \
                     "adc r27, %[z]\n\t"                                                \
                     "ld %[xv], X\n\t"                                                  \
                     "movw r30, %[wp]\n\t"                                              \
                     "lpm %[wv], Z+\n\t"                                                \
                     "movw %[wp], r30\n\t"                                              \
                     "muls %[xv], %[wv]\n\t"                                            \
                     "add %A[s], r0\n\t"                                                \
                     "adc %B[s], r1\n\t"                                                \
                     "adc %C[s], %[z]\n\t"                                              \
                     "sbrc r1, 7\n\t"                                                   \
                     "dec %C[s]\n\t"                                                    \
                     "dec %[n]\n\t"                                                     \
                     "brne 1b\n"                                                        \
                     "2:\n\t"                                                           \
                     "clr %D[s]\n\t"                                                    \
                     "sbrc %C[s], 7\n\t"                                                \
                     "com %D[s]\n\t"                                                    \
                     "clr r1"                                                           \
                     : [s] "=&r"(S_), [t] "=&r"(t_), [xv] "=&d"(xv_), [wv] "=&d"(wv_), \
                       [z] "=&r"(z_), [n] "=&r"(n_), [ip] "+r"(IP_), [wp] "+r"(WP_)       \
                     : [x] "r"(X_)                                                       \
                     : "r0", "r1", "r26", "r27", "r30", "r31", "cc", "memory");         \
  } while (0)
#endif

/* acc + sum over one sparse row: *ip at its count n, then n column indices; *wp at its
 * n non-zeros. Both advance past the row. Exact int32 sums: any order. */
FG_INLINE int32_t sparse_row(const ROM uint8_t **ip, const ROM int8_t **wp,
                             const int8_t *x, int32_t acc) {
  const ROM uint8_t *idx = *ip;
  const ROM int8_t *w = *wp;
  uint32_t n = *idx++;
#if defined(FG_THUMB2)
  /* 4 instructions per MAC (index, x[index], weight, MLA) + 2 per eight; the n % 8 first
   * MACs by entering the unrolled body part-way (TBB, Duff's device). */
  uint32_t t0, t1;
  __asm__ volatile(
      "and %[t0], %[n], #7\n\t"
      "lsr %[n], %[n], #3\n\t"
      "tbb [pc, %[t0]]\n"
      "19:\n\t"
      ".byte (30f-19b)/2, (21f-19b)/2, (22f-19b)/2, (23f-19b)/2\n\t"
      ".byte (24f-19b)/2, (25f-19b)/2, (26f-19b)/2, (27f-19b)/2\n"
      "30:\n\t"
      "subs.w %[n], %[n], #1\n\t"
      "blt.w 31f\n"
      "28:\n\t"
      "ldrb.w %[t0], [%[i]], #1\n\t"
      "ldrsb.w %[t0], [%[x], %[t0]]\n\t"
      "ldrsb.w %[t1], [%[w]], #1\n\t"
      "mla %[a], %[t0], %[t1], %[a]\n\t"
      "27:\n\t"
      "ldrb.w %[t0], [%[i]], #1\n\t"
      "ldrsb.w %[t0], [%[x], %[t0]]\n\t"
      "ldrsb.w %[t1], [%[w]], #1\n\t"
      "mla %[a], %[t0], %[t1], %[a]\n\t"
      "26:\n\t"
      "ldrb.w %[t0], [%[i]], #1\n\t"
      "ldrsb.w %[t0], [%[x], %[t0]]\n\t"
      "ldrsb.w %[t1], [%[w]], #1\n\t"
      "mla %[a], %[t0], %[t1], %[a]\n\t"
      "25:\n\t"
      "ldrb.w %[t0], [%[i]], #1\n\t"
      "ldrsb.w %[t0], [%[x], %[t0]]\n\t"
      "ldrsb.w %[t1], [%[w]], #1\n\t"
      "mla %[a], %[t0], %[t1], %[a]\n\t"
      "24:\n\t"
      "ldrb.w %[t0], [%[i]], #1\n\t"
      "ldrsb.w %[t0], [%[x], %[t0]]\n\t"
      "ldrsb.w %[t1], [%[w]], #1\n\t"
      "mla %[a], %[t0], %[t1], %[a]\n\t"
      "23:\n\t"
      "ldrb.w %[t0], [%[i]], #1\n\t"
      "ldrsb.w %[t0], [%[x], %[t0]]\n\t"
      "ldrsb.w %[t1], [%[w]], #1\n\t"
      "mla %[a], %[t0], %[t1], %[a]\n\t"
      "22:\n\t"
      "ldrb.w %[t0], [%[i]], #1\n\t"
      "ldrsb.w %[t0], [%[x], %[t0]]\n\t"
      "ldrsb.w %[t1], [%[w]], #1\n\t"
      "mla %[a], %[t0], %[t1], %[a]\n\t"
      "21:\n\t"
      "ldrb.w %[t0], [%[i]], #1\n\t"
      "ldrsb.w %[t0], [%[x], %[t0]]\n\t"
      "ldrsb.w %[t1], [%[w]], #1\n\t"
      "mla %[a], %[t0], %[t1], %[a]\n\t"
      "subs.w %[n], %[n], #1\n\t"
      "bge.w 28b\n"
      "31:"
      : [t0] "=&r"(t0), [t1] "=&r"(t1), [a] "+r"(acc), [n] "+r"(n), [i] "+r"(idx),
        [w] "+r"(w)
      : [x] "r"(x)
      : "cc", "memory");
#elif defined(FG_THUMB1)
  /* Armv6-M: 6 instructions per MAC (LDRSB has no immediate form: LDRB + SXTB for the
   * weight) + 4 per four; low registers only. */
  uint32_t t0, t1;
  __asm__ volatile(
      ".syntax unified\n\t" /* gcc wraps Thumb-1 inline asm in divided syntax */
      "subs %[n], %[n], #4\n\t"
      "blt 2f\n"
      "1:\n\t"
      "ldrb %[t0], [%[i], #0]\n\t"
      "ldrsb %[t0], [%[x], %[t0]]\n\t"
      "ldrb %[t1], [%[w], #0]\n\t"
      "sxtb %[t1], %[t1]\n\t"
      "muls %[t0], %[t1]\n\t"
      "adds %[a], %[a], %[t0]\n\t"
      "ldrb %[t0], [%[i], #1]\n\t"
      "ldrsb %[t0], [%[x], %[t0]]\n\t"
      "ldrb %[t1], [%[w], #1]\n\t"
      "sxtb %[t1], %[t1]\n\t"
      "muls %[t0], %[t1]\n\t"
      "adds %[a], %[a], %[t0]\n\t"
      "ldrb %[t0], [%[i], #2]\n\t"
      "ldrsb %[t0], [%[x], %[t0]]\n\t"
      "ldrb %[t1], [%[w], #2]\n\t"
      "sxtb %[t1], %[t1]\n\t"
      "muls %[t0], %[t1]\n\t"
      "adds %[a], %[a], %[t0]\n\t"
      "ldrb %[t0], [%[i], #3]\n\t"
      "ldrsb %[t0], [%[x], %[t0]]\n\t"
      "ldrb %[t1], [%[w], #3]\n\t"
      "sxtb %[t1], %[t1]\n\t"
      "muls %[t0], %[t1]\n\t"
      "adds %[a], %[a], %[t0]\n\t"
      "adds %[i], %[i], #4\n\t"
      "adds %[w], %[w], #4\n\t"
      "subs %[n], %[n], #4\n\t"
      "bge 1b\n"
      "2:\n\t"
      "adds %[n], %[n], #4\n\t"
      "beq 4f\n"
      "3:\n\t"
      "ldrb %[t0], [%[i], #0]\n\t"
      "ldrsb %[t0], [%[x], %[t0]]\n\t"
      "ldrb %[t1], [%[w], #0]\n\t"
      "sxtb %[t1], %[t1]\n\t"
      "muls %[t0], %[t1]\n\t"
      "adds %[a], %[a], %[t0]\n\t"
      "adds %[i], %[i], #1\n\t"
      "adds %[w], %[w], #1\n\t"
      "subs %[n], %[n], #1\n\t"
      "bne 3b\n"
      "4:\n\t"
      ".syntax divided"
      : [t0] "=&l"(t0), [t1] "=&l"(t1), [a] "+l"(acc), [n] "+l"(n), [i] "+l"(idx),
        [w] "+l"(w)
      : [x] "l"(x)
      : "cc", "memory");
#elif defined(FG_AVR_ASM)
  uint16_t ia = (uint16_t)(idx - 1), wa = (uint16_t)w; /* from the count on */
  int32_t sum;
  (void)n;
  FG_AVR_SPARSE_SUM(sum, ia, wa, x);
  idx = (const ROM uint8_t *)ia;
  w = (const ROM int8_t *)wa;
  acc += sum;
#else
  for (; n >= 4; n -= 4, idx += 4, w += 4) { /* one int32 sum per product (int is 16 bits on AVR) */
    acc += FG_MUL8(x[idx[0]], w[0]);
    acc += FG_MUL8(x[idx[1]], w[1]);
    acc += FG_MUL8(x[idx[2]], w[2]);
    acc += FG_MUL8(x[idx[3]], w[3]);
  }
  for (; n > 0; --n) acc += FG_MUL8(x[*idx++], *w++);
#endif
  *ip = idx;
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
  for (; n > 0; --n) acc += FG_MUL8(*x++, *w++);
  return acc;
}

#if defined(FG_SIMD) && defined(FG_FASTPATH)
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

#if defined(FG_SIMD) && defined(FG_FASTPATH)
/* Four dense rows at once (row k at w + k n): acc[k] += sum_c x[c] w[k n + c]. */
FG_INLINE void dot4(const int8_t *w, const int8_t *x, int32_t n, int32_t *acc0,
                    int32_t *acc1, int32_t *acc2, int32_t *acc3) {
  const int8_t *w2 = w + 2 * n;
  int32_t a0 = *acc0, a1 = *acc1, a2 = *acc2, a3 = *acc3, c;
#if defined(FG_DSP)
  if (n >= 4) {
    /* In registers: 25 instructions per 16 MACs. */
    uint32_t k = (uint32_t)n >> 2, xe, xo, v, t;
    __asm__ volatile(
        "1:\n\t"
        "ldr %[xo], [%[x]], #4\n\t"
        "sxtb16 %[xe], %[xo]\n\t"
        "sxtb16 %[xo], %[xo], ror #8\n\t"
        "ldr %[v], [%[w], %[n]]\n\t"
        "sxtb16 %[t], %[v]\n\t"
        "smlad %[a1], %[xe], %[t], %[a1]\n\t"
        "sxtb16 %[t], %[v], ror #8\n\t"
        "smlad %[a1], %[xo], %[t], %[a1]\n\t"
        "ldr %[v], [%[w]], #4\n\t"
        "sxtb16 %[t], %[v]\n\t"
        "smlad %[a0], %[xe], %[t], %[a0]\n\t"
        "sxtb16 %[t], %[v], ror #8\n\t"
        "smlad %[a0], %[xo], %[t], %[a0]\n\t"
        "ldr %[v], [%[w2], %[n]]\n\t"
        "sxtb16 %[t], %[v]\n\t"
        "smlad %[a3], %[xe], %[t], %[a3]\n\t"
        "sxtb16 %[t], %[v], ror #8\n\t"
        "smlad %[a3], %[xo], %[t], %[a3]\n\t"
        "ldr %[v], [%[w2]], #4\n\t"
        "sxtb16 %[t], %[v]\n\t"
        "smlad %[a2], %[xe], %[t], %[a2]\n\t"
        "sxtb16 %[t], %[v], ror #8\n\t"
        "smlad %[a2], %[xo], %[t], %[a2]\n\t"
        "subs %[k], %[k], #1\n\t"
        "bne 1b"
        : [xe] "=&r"(xe), [xo] "=&r"(xo), [v] "=&r"(v), [t] "=&r"(t), [a0] "+r"(a0),
          [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(x), [w] "+r"(w),
          [w2] "+r"(w2), [k] "+r"(k)
        : [n] "r"(n)
        : "cc", "memory");
  }
  c = n & ~3;
  x -= c;
  w -= c;
  w2 -= c;
#else
  for (c = 0; c + 4 <= n; c += 4) {
    const uint32_t xv = load32(x + c), xe = sxtb16(xv), xo = sxtb16_ror8(xv);
    const uint32_t v0 = load32(w + c), v1 = load32(w + n + c), v2 = load32(w2 + c),
                   v3 = load32(w2 + n + c);
    a0 = smlad(xo, sxtb16_ror8(v0), smlad(xe, sxtb16(v0), a0));
    a1 = smlad(xo, sxtb16_ror8(v1), smlad(xe, sxtb16(v1), a1));
    a2 = smlad(xo, sxtb16_ror8(v2), smlad(xe, sxtb16(v2), a2));
    a3 = smlad(xo, sxtb16_ror8(v3), smlad(xe, sxtb16(v3), a3));
  }
#endif
  for (; c < n; ++c) {
    const int32_t xc = x[c];
    a0 += xc * w[c];
    a1 += xc * w[n + c];
    a2 += xc * w2[c];
    a3 += xc * w2[n + c];
  }
  *acc0 = a0;
  *acc1 = a1;
  *acc2 = a2;
  *acc3 = a3;
}
#endif

#if defined(FG_FASTPATH)
/* fc_out for a layer without fused activation (clamp [-128, 127] = SSAT #8). For shift
 * s <= -1, e = -s: RoundingDivideByPOT(y, e) = floor((y + 2^(e-1) - [y < 0]) / 2^e)
 * = floor((floor((y - [y < 0]) / 2^(e-1)) + 1) / 2) (nested floors), e - 1 = ~s; the
 * output offset joins the last halving as 2 offset. */
FG_INLINE int32_t fc_out_full(const ROM int32_t *mult, const ROM int8_t *shift, int32_t zo2,
                              int32_t r, int32_t acc) {
  const int32_t s = shift[r], m = mult[r];
  int32_t t;
  if (FG_UNLIKELY(s >= 0)) return ssat8(mbqm(acc, m, s) + ((zo2 - 1) >> 1));
  t = srdhm(acc, m);
  t = FG_ASR(t - (int32_t)((uint32_t)t >> 31), ~s);
  return ssat8_half(t + zo2);
}

#if defined(FG_FASTPATH) && defined(FG_THUMB2) && defined(FG_DSP)
/* Dense rows without fused activation, four at a time, in one assembly function (gcc kept
 * ~32 instructions per row around dot4's loop): the same SXTB16/SMLAD loop as dot4 (25
 * instructions per 16 MACs), the cols % 4 last columns by MLA, then the four rows'
 * requantisation as in fastgrnn_int8_sparse_rows_t2. The struct is updated in place
 * (row, bias, multiplier, shift and output pointers) so that its fields are reloaded per
 * group of four rows; rows = a multiple of 4, >= 4. */
typedef struct {
  const ROM int8_t *w;          /* 0: the group's first row */
  const int8_t *x;              /* 4 */
  int32_t cols;                 /* 8 */
  const ROM int32_t *bias;      /* 12 */
  const ROM int32_t *mult;      /* 16 */
  const ROM int8_t *shift;      /* 20 */
  int8_t *out;                  /* 24 */
  int32_t zo2;                  /* 28: 1 + 2 output offset */
  int8_t *out_end;              /* 32 */
} fg_dense_args;
void fastgrnn_int8_dense4_t2(fg_dense_args *a)
#if defined(__ELF__)
    __attribute__((visibility("hidden")))
#endif
    ;
__asm__(
    ".section .text.fastgrnn_int8_dense4_t2,\"ax\",%progbits\n\t"
    ".syntax unified\n\t"
    ".thumb\n\t"
    ".p2align 2\n\t"
    ".global fastgrnn_int8_dense4_t2\n\t"
    ".type fastgrnn_int8_dense4_t2, %function\n\t"
    ".thumb_func\n"
    "fastgrnn_int8_dense4_t2:\n\t"
    "push {r4-r11, lr}\n\t"
    "mov r12, r0\n"
    "1:\n\t"
    "ldr r1, [r12, #12]\n\t"
    "ldm r1!, {r4-r7}\n\t"
    "str r1, [r12, #12]\n\t"
    "ldm r12, {r0, r2, r3}\n\t"
    "add r1, r0, r3, lsl #1\n\t"
    "lsrs r8, r3, #2\n\t"
    "beq 5f\n"
    "4:\n\t"
    "ldr r9, [r2], #4\n\t"
    "sxtb16 r10, r9\n\t"
    "sxtb16 r9, r9, ror #8\n\t"
    "ldr r11, [r0, r3]\n\t"
    "sxtb16 lr, r11\n\t"
    "smlad r5, r10, lr, r5\n\t"
    "sxtb16 lr, r11, ror #8\n\t"
    "smlad r5, r9, lr, r5\n\t"
    "ldr r11, [r0], #4\n\t"
    "sxtb16 lr, r11\n\t"
    "smlad r4, r10, lr, r4\n\t"
    "sxtb16 lr, r11, ror #8\n\t"
    "smlad r4, r9, lr, r4\n\t"
    "ldr r11, [r1, r3]\n\t"
    "sxtb16 lr, r11\n\t"
    "smlad r7, r10, lr, r7\n\t"
    "sxtb16 lr, r11, ror #8\n\t"
    "smlad r7, r9, lr, r7\n\t"
    "ldr r11, [r1], #4\n\t"
    "sxtb16 lr, r11\n\t"
    "smlad r6, r10, lr, r6\n\t"
    "sxtb16 lr, r11, ror #8\n\t"
    "smlad r6, r9, lr, r6\n\t"
    "subs r8, r8, #1\n\t"
    "bne 4b\n"
    "5:\n\t"
    "ands r8, r3, #3\n\t"
    "beq 7f\n"
    "6:\n\t"
    "ldrsb r9, [r2], #1\n\t"
    "ldrsb r10, [r0, r3]\n\t"
    "mla r5, r9, r10, r5\n\t"
    "ldrsb r10, [r0], #1\n\t"
    "mla r4, r9, r10, r4\n\t"
    "ldrsb r10, [r1, r3]\n\t"
    "mla r7, r9, r10, r7\n\t"
    "ldrsb r10, [r1], #1\n\t"
    "mla r6, r9, r10, r6\n\t"
    "subs r8, r8, #1\n\t"
    "bne 6b\n"
    "7:\n\t"
    "add r0, r0, r3, lsl #1\n\t"     /* row 0's end + 3 cols: the next group */
    "add r0, r0, r3\n\t"
    "str r0, [r12]\n\t"
    "add r8, r12, #16\n\t"
    "ldm r8, {r0-r3}\n\t"            /* mult, shift, out, zo2 */
    "ldr r9, [r0], #4\n\t"
    "ldrsb r10, [r1], #1\n\t"
    "mvns r10, r10\n\t"
    "bmi 81f\n\t"
    "smull r11, lr, r4, r9\n\t"
    "adds r11, r11, r11\n\t"
    "adc lr, lr, lr\n\t"
    "add lr, lr, r11, lsr #31\n\t"
    "sub lr, lr, lr, lsr #31\n\t"
    "asr lr, lr, r10\n\t"
    "add lr, lr, r3\n\t"
    "ssat lr, #8, lr, asr #1\n\t"
    "strb lr, [r2], #1\n"
    "91:\n\t"
    "ldr r9, [r0], #4\n\t"
    "ldrsb r10, [r1], #1\n\t"
    "mvns r10, r10\n\t"
    "bmi 82f\n\t"
    "smull r11, lr, r5, r9\n\t"
    "adds r11, r11, r11\n\t"
    "adc lr, lr, lr\n\t"
    "add lr, lr, r11, lsr #31\n\t"
    "sub lr, lr, lr, lsr #31\n\t"
    "asr lr, lr, r10\n\t"
    "add lr, lr, r3\n\t"
    "ssat lr, #8, lr, asr #1\n\t"
    "strb lr, [r2], #1\n"
    "92:\n\t"
    "ldr r9, [r0], #4\n\t"
    "ldrsb r10, [r1], #1\n\t"
    "mvns r10, r10\n\t"
    "bmi 83f\n\t"
    "smull r11, lr, r6, r9\n\t"
    "adds r11, r11, r11\n\t"
    "adc lr, lr, lr\n\t"
    "add lr, lr, r11, lsr #31\n\t"
    "sub lr, lr, lr, lsr #31\n\t"
    "asr lr, lr, r10\n\t"
    "add lr, lr, r3\n\t"
    "ssat lr, #8, lr, asr #1\n\t"
    "strb lr, [r2], #1\n"
    "93:\n\t"
    "ldr r9, [r0], #4\n\t"
    "ldrsb r10, [r1], #1\n\t"
    "mvns r10, r10\n\t"
    "bmi 84f\n\t"
    "smull r11, lr, r7, r9\n\t"
    "adds r11, r11, r11\n\t"
    "adc lr, lr, lr\n\t"
    "add lr, lr, r11, lsr #31\n\t"
    "sub lr, lr, lr, lsr #31\n\t"
    "asr lr, lr, r10\n\t"
    "add lr, lr, r3\n\t"
    "ssat lr, #8, lr, asr #1\n\t"
    "strb lr, [r2], #1\n"
    "94:\n\t"
    "stm r8, {r0-r2}\n\t"
    "ldr r9, [r12, #32]\n\t"
    "cmp r2, r9\n\t"
    "bne 1b\n\t"
    "pop {r4-r11, pc}\n\t"
    "81:\n\t"
    "mvn r10, r10\n\t"
    "lsl lr, r4, r10\n\t"
    "smull r11, r10, lr, r9\n\t"
    "adds r11, r11, r11\n\t"
    "adc r10, r10, r10\n\t"
    "add r10, r10, r11, lsr #31\n\t"
    "sub r11, r3, #1\n\t"
    "add r10, r10, r11, asr #1\n\t"
    "ssat r10, #8, r10\n\t"
    "strb r10, [r2], #1\n\t"
    "b 91b\n\t"
    "82:\n\t"
    "mvn r10, r10\n\t"
    "lsl lr, r5, r10\n\t"
    "smull r11, r10, lr, r9\n\t"
    "adds r11, r11, r11\n\t"
    "adc r10, r10, r10\n\t"
    "add r10, r10, r11, lsr #31\n\t"
    "sub r11, r3, #1\n\t"
    "add r10, r10, r11, asr #1\n\t"
    "ssat r10, #8, r10\n\t"
    "strb r10, [r2], #1\n\t"
    "b 92b\n\t"
    "83:\n\t"
    "mvn r10, r10\n\t"
    "lsl lr, r6, r10\n\t"
    "smull r11, r10, lr, r9\n\t"
    "adds r11, r11, r11\n\t"
    "adc r10, r10, r10\n\t"
    "add r10, r10, r11, lsr #31\n\t"
    "sub r11, r3, #1\n\t"
    "add r10, r10, r11, asr #1\n\t"
    "ssat r10, #8, r10\n\t"
    "strb r10, [r2], #1\n\t"
    "b 93b\n\t"
    "84:\n\t"
    "mvn r10, r10\n\t"
    "lsl lr, r7, r10\n\t"
    "smull r11, r10, lr, r9\n\t"
    "adds r11, r11, r11\n\t"
    "adc r10, r10, r10\n\t"
    "add r10, r10, r11, lsr #31\n\t"
    "sub r11, r3, #1\n\t"
    "add r10, r10, r11, asr #1\n\t"
    "ssat r10, #8, r10\n\t"
    "strb r10, [r2], #1\n\t"
    "b 94b\n\t"
    ".size fastgrnn_int8_dense4_t2, .-fastgrnn_int8_dense4_t2\n\t"
    ".text");
#endif

#if defined(FG_THUMB1)
/* Armv6-M: sparse rows, or dense ones (f->idx NULL), in fastgrnn_int8_t1_layer (below). */
static void fc8_sparse_full(const fastgrnn_int8_fc *f, const int8_t *x, int8_t *out);
#endif

/* Dense rows, no fused activation: rows in pairs on SIMD targets. */
FG_HOT static void fc8_dense_full(const fastgrnn_int8_fc *f, const int8_t *x, int8_t *out) {
  const int32_t rows = f->rows, cols = f->cols, zo = 1 + 2 * f->out_offset;
  const ROM int8_t *w = f->w;
  const ROM int32_t *bias = f->bias, *mult = f->mult;
  const ROM int8_t *shift = f->shift;
  int32_t r = 0;
#if defined(FG_THUMB1)
  if (rows > 0) { /* Armv6-M: rows in pairs in assembly, the sparse layers' rescale */
    fc8_sparse_full(f, x, out);
    return;
  }
#endif
#if defined(FG_THUMB2) && defined(FG_DSP)
  if (rows >= 4) {
    fg_dense_args a;
    r = rows & ~3;
    a.w = w;
    a.x = x;
    a.cols = cols;
    a.bias = bias;
    a.mult = mult;
    a.shift = shift;
    a.out = out;
    a.zo2 = zo;
    a.out_end = out + r;
    fastgrnn_int8_dense4_t2(&a);
    w += r * cols;
  }
#endif
#if defined(FG_SIMD)
  for (; r + 3 < rows; r += 4, w += 4 * cols) {
    int32_t a0 = bias[r], a1 = bias[r + 1], a2 = bias[r + 2], a3 = bias[r + 3];
    dot4(w, x, cols, &a0, &a1, &a2, &a3);
    out[r] = (int8_t)fc_out_full(mult, shift, zo, r, a0);
    out[r + 1] = (int8_t)fc_out_full(mult, shift, zo, r + 1, a1);
    out[r + 2] = (int8_t)fc_out_full(mult, shift, zo, r + 2, a2);
    out[r + 3] = (int8_t)fc_out_full(mult, shift, zo, r + 3, a3);
  }
  for (; r + 1 < rows; r += 2, w += 2 * cols) {
    int32_t acc = bias[r], acc1 = bias[r + 1];
    dot2(w, x, cols, &acc, &acc1);
    out[r] = (int8_t)fc_out_full(mult, shift, zo, r, acc);
    out[r + 1] = (int8_t)fc_out_full(mult, shift, zo, r + 1, acc1);
  }
#endif
  for (; r < rows; ++r, w += cols)
    out[r] = (int8_t)fc_out_full(mult, shift, zo, r, dot(w, x, cols, bias[r]));
}
#endif

#if defined(FG_FASTPATH) && defined(FG_THUMB2)
/* The MACs of one sparse row (TBB into a body by n % 8, or n % 16). With DSP (M4, M7,
 * M33, M55) the n % 8 first ones singly, then the n / 8 groups of 8 (none if the row
 * header's LSRS set Z: no flag changes between): 4 weights per LDR (unaligned:
 * Armv7-M and later allow it for LDR), sign-extended in pairs by SXTB16, each product by
 * SMLABB / SMLABT (the weight's half): 30 + 2 instructions per 8 instead of 34. Without
 * DSP (M3) a body of 16 MACs of 4 instructions, + 2 per pass. */
#if defined(FG_DSP)
#define FG_A_SPARSE_LOW "7"
#define FG_A_SPARSE_LOG2 "3"
#define FG_A_SPARSE_MACS                                                     \
  "tbb [pc, r5]\n"                                                           \
  "2:\n\t"                                                                   \
  ".byte (10f-2b)/2, (11f-2b)/2, (12f-2b)/2, (13f-2b)/2\n\t"                 \
  ".byte (14f-2b)/2, (15f-2b)/2, (16f-2b)/2, (17f-2b)/2\n"                   \
  "17:\n\t"                                                                  \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "ldrsb r6, [r1], #1\n\t"                                                   \
  "mla r3, r5, r6, r3\n"                                                     \
  "16:\n\t"                                                                  \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "ldrsb r6, [r1], #1\n\t"                                                   \
  "mla r3, r5, r6, r3\n"                                                     \
  "15:\n\t"                                                                  \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "ldrsb r6, [r1], #1\n\t"                                                   \
  "mla r3, r5, r6, r3\n"                                                     \
  "14:\n\t"                                                                  \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "ldrsb r6, [r1], #1\n\t"                                                   \
  "mla r3, r5, r6, r3\n"                                                     \
  "13:\n\t"                                                                  \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "ldrsb r6, [r1], #1\n\t"                                                   \
  "mla r3, r5, r6, r3\n"                                                     \
  "12:\n\t"                                                                  \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "ldrsb r6, [r1], #1\n\t"                                                   \
  "mla r3, r5, r6, r3\n"                                                     \
  "11:\n\t"                                                                  \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "ldrsb r6, [r1], #1\n\t"                                                   \
  "mla r3, r5, r6, r3\n"                                                     \
  "10:\n\t"                                                                  \
  "beq 20f\n"                                                                \
  "3:\n\t"                                                                   \
  "ldr lr, [r1], #4\n\t"                                                     \
  "sxtb16 r6, lr\n\t"                                                        \
  "sxtb16 lr, lr, ror #8\n\t"                                                \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "smlabb r3, r5, r6, r3\n\t"                                                \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "smlabb r3, r5, lr, r3\n\t"                                                \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "smlabt r3, r5, r6, r3\n\t"                                                \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "smlabt r3, r5, lr, r3\n\t"                                                \
  "ldr lr, [r1], #4\n\t"                                                     \
  "sxtb16 r6, lr\n\t"                                                        \
  "sxtb16 lr, lr, ror #8\n\t"                                                \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "smlabb r3, r5, r6, r3\n\t"                                                \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "smlabb r3, r5, lr, r3\n\t"                                                \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "smlabt r3, r5, r6, r3\n\t"                                                \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "smlabt r3, r5, lr, r3\n\t"                                                \
  "subs r4, r4, #1\n\t"                                                      \
  "bne 3b\n"
#else
#define FG_A_SPARSE_LOW "15"
#define FG_A_SPARSE_LOG2 "4"
#define FG_A_SPARSE_MACS                                                     \
  "tbb [pc, r5]\n"                                                           \
  "2:\n\t"                                                                   \
  ".byte (10f-2b)/2, (55f-2b)/2, (54f-2b)/2, (53f-2b)/2\n\t"                 \
  ".byte (52f-2b)/2, (51f-2b)/2, (50f-2b)/2, (49f-2b)/2\n\t"                 \
  ".byte (48f-2b)/2, (47f-2b)/2, (46f-2b)/2, (45f-2b)/2\n\t"                 \
  ".byte (44f-2b)/2, (43f-2b)/2, (42f-2b)/2, (41f-2b)/2\n"                   \
  "10:\n\t"                                                                  \
  "subs r4, r4, #1\n\t"                                                      \
  "blt 20f\n"                                                                \
  "3:\n\t"                                                                   \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "ldrsb r6, [r1], #1\n\t"                                                   \
  "mla r3, r5, r6, r3\n"                                                     \
  "41:\n\t"                                                                  \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "ldrsb r6, [r1], #1\n\t"                                                   \
  "mla r3, r5, r6, r3\n"                                                     \
  "42:\n\t"                                                                  \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "ldrsb r6, [r1], #1\n\t"                                                   \
  "mla r3, r5, r6, r3\n"                                                     \
  "43:\n\t"                                                                  \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "ldrsb r6, [r1], #1\n\t"                                                   \
  "mla r3, r5, r6, r3\n"                                                     \
  "44:\n\t"                                                                  \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "ldrsb r6, [r1], #1\n\t"                                                   \
  "mla r3, r5, r6, r3\n"                                                     \
  "45:\n\t"                                                                  \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "ldrsb r6, [r1], #1\n\t"                                                   \
  "mla r3, r5, r6, r3\n"                                                     \
  "46:\n\t"                                                                  \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "ldrsb r6, [r1], #1\n\t"                                                   \
  "mla r3, r5, r6, r3\n"                                                     \
  "47:\n\t"                                                                  \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "ldrsb r6, [r1], #1\n\t"                                                   \
  "mla r3, r5, r6, r3\n"                                                     \
  "48:\n\t"                                                                  \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "ldrsb r6, [r1], #1\n\t"                                                   \
  "mla r3, r5, r6, r3\n"                                                     \
  "49:\n\t"                                                                  \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "ldrsb r6, [r1], #1\n\t"                                                   \
  "mla r3, r5, r6, r3\n"                                                     \
  "50:\n\t"                                                                  \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "ldrsb r6, [r1], #1\n\t"                                                   \
  "mla r3, r5, r6, r3\n"                                                     \
  "51:\n\t"                                                                  \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "ldrsb r6, [r1], #1\n\t"                                                   \
  "mla r3, r5, r6, r3\n"                                                     \
  "52:\n\t"                                                                  \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "ldrsb r6, [r1], #1\n\t"                                                   \
  "mla r3, r5, r6, r3\n"                                                     \
  "53:\n\t"                                                                  \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "ldrsb r6, [r1], #1\n\t"                                                   \
  "mla r3, r5, r6, r3\n"                                                     \
  "54:\n\t"                                                                  \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "ldrsb r6, [r1], #1\n\t"                                                   \
  "mla r3, r5, r6, r3\n"                                                     \
  "55:\n\t"                                                                  \
  "ldrb r5, [r0], #1\n\t"                                                    \
  "ldrsb r5, [r2, r5]\n\t"                                                   \
  "ldrsb r6, [r1], #1\n\t"                                                   \
  "mla r3, r5, r6, r3\n\t"                                                   \
  "subs r4, r4, #1\n\t"                                                      \
  "bge 3b\n"
#endif

/* lr = srdhm(r3, r5) (r4 scratch). With DSP, when 2 acc fits int32 (ADDS sets V if not),
 * SMMULR's rounded high word of 2 acc m: 3 instructions; else (label 39, and always
 * without DSP) the high word of 2 acc m by SMULL and the 64-bit doubling, plus the top bit
 * of its low word. */
#if defined(FG_DSP)
#define FG_A_ROW_SRDHM                                                       \
  "adds r4, r3, r3\n\t"                                                     \
  "bvs 39f\n\t"                                                             \
  "smmulr lr, r4, r5\n"                                                     \
  "38:\n\t"
#define FG_A_ROW_SRDHM_WIDE                                                  \
  "39:\n\t"                                                                 \
  "smull r4, lr, r3, r5\n\t"                                                \
  "adds r4, r4, r4\n\t"                                                     \
  "adc lr, lr, lr\n\t"                                                      \
  "add lr, lr, r4, lsr #31\n\t"                                             \
  "b 38b\n\t"
#else
#define FG_A_ROW_SRDHM                                                       \
  "smull r4, lr, r3, r5\n\t"                                                \
  "adds r4, r4, r4\n\t"                                                     \
  "adc lr, lr, lr\n\t"                                                      \
  "add lr, lr, r4, lsr #31\n\t"
#define FG_A_ROW_SRDHM_WIDE
#endif

/* A whole sparse layer without fused activation in Thumb-2 assembly (Armv7-M: M3 has no
 * DSP), so that every pointer and constant stays in a register (gcc spills them around
 * the row loop's inline assembly): per row its count, the bias, the MACs as in
 * sparse_row (4 instructions each, TBB into the unrolled body), then fc_out_full's
 * arithmetic: srdhm's SMULL form, for s <= -1 the nested-floor RoundingDivideByPOT with
 * the output offset in the last halving (SSAT's ASR #1), for s >= 0 srdhm(acc << s) +
 * offset. The fields are in the order LDM loads them. */
typedef struct {
  const ROM uint8_t *idx;     /* r0 */
  const ROM int8_t *w;        /* r1 */
  const int8_t *x;            /* r2 */
  const ROM int32_t *bias;    /* r7 */
  const ROM int32_t *mult;    /* r8 */
  const ROM int8_t *shift;    /* r9 */
  int8_t *out, *out_end;      /* r10, r11 */
  int32_t zo2;                /* r12: 1 + 2 output offset */
} fg_sparse_args;

void fastgrnn_int8_sparse_rows_t2(const fg_sparse_args *a)
#if defined(__ELF__)
    __attribute__((visibility("hidden")))
#endif
    ;
__asm__(
    ".section .text.fastgrnn_int8_sparse_rows_t2,\"ax\",%progbits\n\t"
    ".syntax unified\n\t"
    ".thumb\n\t"
    ".p2align 2\n\t"
    ".global fastgrnn_int8_sparse_rows_t2\n\t"
    ".type fastgrnn_int8_sparse_rows_t2, %function\n\t"
    ".thumb_func\n"
    "fastgrnn_int8_sparse_rows_t2:\n\t"
    "push {r4-r11, lr}\n\t"
    "ldm r0, {r0-r2, r7-r12}\n"
    "1:\n\t"
    "ldrb r4, [r0], #1\n\t"
    "ldr r3, [r7], #4\n\t"
    "and r5, r4, #" FG_A_SPARSE_LOW "\n\t"
    "lsrs r4, r4, #" FG_A_SPARSE_LOG2 "\n\t" /* Z: no full group (DSP's test at 10) */
    FG_A_SPARSE_MACS
    "20:\n\t"
    "ldr r5, [r8], #4\n\t"           /* m */
    "ldrsb r6, [r9], #1\n\t"         /* s */
    "mvns r6, r6\n\t"                /* ~s = e - 1; N: s >= 0 */
    "bmi 30f\n\t"
    FG_A_ROW_SRDHM                   /* lr = t = srdhm(acc, m) */
    "sub lr, lr, lr, lsr #31\n\t"    /* (t - [t < 0]) >> (e - 1) */
    "asr lr, lr, r6\n\t"
    "add lr, lr, r12\n\t"            /* (. + 1 + 2 offset) >> 1, clamped */
    "ssat lr, #8, lr, asr #1\n\t"
    "strb lr, [r10], #1\n\t"
    "cmp r10, r11\n\t"
    "bne 1b\n\t"
    "pop {r4-r11, pc}\n"
    "30:\n\t"
    "mvn r6, r6\n\t"                 /* s >= 0: t = srdhm(acc << s, m) */
    "lsl r3, r3, r6\n\t"
    "smull r4, lr, r3, r5\n\t"
    "adds r4, r4, r4\n\t"
    "adc lr, lr, lr\n\t"
    "add lr, lr, r4, lsr #31\n\t"
    "sub r4, r12, #1\n\t"            /* offset = (zo2 - 1) / 2 (2 t may overflow) */
    "add lr, lr, r4, asr #1\n\t"
    "ssat lr, #8, lr\n\t"
    "strb lr, [r10], #1\n\t"
    "cmp r10, r11\n\t"
    "bne 1b\n\t"
    "pop {r4-r11, pc}\n\t"
    FG_A_ROW_SRDHM_WIDE
    ".size fastgrnn_int8_sparse_rows_t2, .-fastgrnn_int8_sparse_rows_t2\n\t"
    ".text");

/* Sparse rows, no fused activation. */
static void fc8_sparse_full(const fastgrnn_int8_fc *f, const int8_t *x, int8_t *out) {
  fg_sparse_args a;
  a.idx = f->idx;
  a.w = f->w;
  a.x = x;
  a.bias = f->bias;
  a.mult = f->mult;
  a.shift = f->shift;
  a.out = out;
  a.out_end = out + f->rows;
  a.zo2 = 1 + 2 * f->out_offset;
  fastgrnn_int8_sparse_rows_t2(&a);
}
#elif defined(FG_FASTPATH)
/* Sparse rows, no fused activation. */
#if defined(FG_AVR_ASM)
/* AVR: the rows' sums in place (no call per row, the flash pointers in registers) and
 * fc_out_full's arithmetic inline. */
static void fc8_sparse_full(const fastgrnn_int8_fc *f, const int8_t *x, int8_t *out) {
  const int32_t zo = f->out_offset;
  const int8_t *const end = out + f->rows;
  uint16_t ip = (uint16_t)f->idx, wp = (uint16_t)f->w;
  const ROM int32_t *bias = f->bias, *mult = f->mult;
  const ROM int8_t *shift = f->shift;
  while (out != end) {
    int32_t acc, t;
    int8_t s = *shift++;
    FG_AVR_SPARSE_SUM(acc, ip, wp, x);
    acc += *bias++;
    if (FG_UNLIKELY(s >= 0)) {
      *out++ = (int8_t)ssat8(mbqm(acc, *mult++, s) + zo);
      continue;
    }
    t = srdhm(acc, *mult++);
    t = FG_ASR(t - (int32_t)((uint32_t)t >> 31), ~s);
    *out++ = (int8_t)ssat8((t + 1 + 2 * zo) >> 1);
  }
}
#elif defined(FG_THUMB1)
/* Armv6-M: the layer in one assembly function (fastgrnn_int8_t1_layer) that works in
 * blocks of FG_T1_BLOCK rows, each in two passes so that neither runs short of the eight
 * low registers (gcc's one loop doing both kept its pointers on the stack: ~70
 * instructions per row besides the MACs): the block's rows summed, each from its bias,
 * into an int32 array on the stack (128 B), then the rows rescaled. Sparse rows (ip set)
 * or dense ones (ip NULL: rows in pairs, each x[c] loaded once for both, 4.25
 * instructions per weight). Blocks of 16 rows: +440 instructions per HAR-2 step; a C
 * loop over the blocks calling one function per pass: +290. */
#define FG_T1_BLOCK 32
typedef struct {
  const ROM uint8_t *ip;       /* 0: the next row's count */
  const ROM int8_t *wp;        /* 4: its first non-zero */
  const int8_t *x;             /* 8 */
  const ROM int32_t *bias;     /* 12: the next row's */
  const ROM int32_t *mult;     /* 16 */
  const ROM int8_t *shift;     /* 20 */
  int8_t *out;                 /* 24 */
  int32_t left, zo21;          /* 28: rows left (>= 1); 32: 1 + 2 out_offset */
  int32_t cols;                /* 36: dense rows (ip = NULL) */
} fg_t1_layer;
void fastgrnn_int8_t1_layer(fg_t1_layer *l);
/* The rows pass, per row: the sum starts at the row's bias; p walks its column indices;
 * its weights sit at p + d (d = wp - first index address: one less per row, as each row's
 * count byte lies between), read by LDRSB with a register offset (signed, no SXTB:
 * Armv6-M's LDRSB has no immediate form). Four MACs per pass, two indices per pointer
 * step ([p, #0] with d, [p, #1] with d + 1): 6 instructions per MAC; the n % 4 first MACs
 * by entering the body part-way (p one back for odd n). r0 x, r1 p, r2 d, r3 d + 1, r4
 * sum, r5 r6 temporaries, r7 the row's end, r12 the sums pointer, r9 its end, r11 the
 * bias pointer, r8 the layer struct, r10 the block's rows.
 * The rescale pass (fc_out_full), per row: out[k] = ssat8(RoundingDivideByPOT(srdhm(
 * sums[k], mult[k]), -shift[k]) + zo), or for shift >= 0 ssat8(srdhm(sum << shift, mult)
 * + zo); srdhm from four 16 x 16 products as mul_parts (exact for any int32 a and 0 <= m <
 * 2^31). r7 the row minus n (counts up to 0), r8 sums, r10 mult, r11 shift (each + n
 * rows), r12 2^14, lr 1 + 2 zo; on the stack out + n. The rare shift >= 0 rows take a
 * second copy of srdhm (one test of the sign per row). Frame: [sp] out + n, [sp, #4] the
 * struct, [sp, #8] the sums. */
__asm__(
    "  .pushsection .text.fastgrnn_int8_t1_layer,\"ax\",%progbits\n"
    "  .balign 2\n"
    "  .syntax unified\n"
    "  .thumb\n"
    "  .thumb_func\n"
    "  .type fastgrnn_int8_t1_layer, %function\n"
    "  .macro fg_t1_srdhm\n" /* r0 = srdhm(r0, r1); r1 r3 r4 r5 r6 clobbered */
    "  uxth r3, r0\n"
    "  asrs r0, r0, #16\n"
    "  uxth r4, r1\n"
    "  lsrs r1, r1, #16\n"
    "  movs r5, r3\n"
    "  muls r5, r4\n"
    "  muls r3, r1\n"
    "  muls r4, r0\n"
    "  muls r0, r1\n"
    "  lsrs r5, r5, #16\n"
    "  uxth r6, r3\n"
    "  adds r5, r5, r6\n"
    "  uxth r6, r4\n"
    "  adds r5, r5, r6\n"
    "  add r5, r12\n"
    "  lsrs r3, r3, #16\n"
    "  adds r0, r0, r3\n"
    "  asrs r4, r4, #16\n"
    "  adds r0, r0, r4\n"
    "  lsls r0, r0, #1\n"
    "  lsrs r5, r5, #15\n"
    "  adds r0, r0, r5\n"
    "  .endm\n"
    "fastgrnn_int8_t1_layer:\n"
    "  push {r4, r5, r6, r7, lr}\n"
    "  mov r4, r8\n"
    "  mov r5, r9\n"
    "  mov r6, r10\n"
    "  mov r7, r11\n"
    "  push {r4, r5, r6, r7}\n"
    "  sub sp, #136\n"
    "  str r0, [sp, #4]\n"
    "30:\n" /* a block of n = min(left, 32) rows */
    "  ldr r0, [sp, #4]\n"
    "  ldr r6, [r0, #28]\n"
    "  movs r7, #32\n"
    "  cmp r6, r7\n"
    "  bge 31f\n"
    "  movs r7, r6\n"
    "31:\n"
    "  subs r6, r6, r7\n"
    "  str r6, [r0, #28]\n"
    "  mov r8, r0\n"
    "  mov r10, r7\n"
    "  ldr r5, [r0, #12]\n"
    "  mov r11, r5\n"
    "  add r5, sp, #8\n"
    "  mov r12, r5\n"
    "  lsls r6, r7, #2\n"
    "  adds r5, r5, r6\n"
    "  mov r9, r5\n"
    "  ldr r1, [r0, #0]\n"
    "  cmp r1, #0\n"
    "  bne 67f\n"
    "  b 60f\n" /* dense rows */
    "67:\n"
    "  ldr r2, [r0, #4]\n"
    "  ldr r0, [r0, #8]\n"
    "  subs r2, r2, r1\n"
    "  subs r2, #1\n"
    "10:\n"
    "  ldrb r7, [r1]\n"
    "  adds r1, #1\n"
    "  adds r7, r7, r1\n"
    "  adds r3, r2, #1\n"
    "  mov r5, r11\n"
    "  ldm r5!, {r4}\n"
    "  mov r11, r5\n"
    "  subs r5, r7, r1\n"
    "  lsrs r5, r5, #1\n"
    "  bcc 16f\n"
    "  subs r1, #1\n"
    "  lsrs r5, r5, #1\n"
    "  bcs 11f\n"
    "  b 13f\n"
    "16:\n"
    "  lsrs r5, r5, #1\n"
    "  bcs 12f\n"
    "  beq 19f\n"
    "20:\n"
    "  ldrb r5, [r1, #0]\n"
    "  ldrsb r5, [r0, r5]\n"
    "  ldrsb r6, [r1, r2]\n"
    "  muls r5, r6\n"
    "  adds r4, r4, r5\n"
    "11:\n"
    "  ldrb r5, [r1, #1]\n"
    "  ldrsb r5, [r0, r5]\n"
    "  ldrsb r6, [r1, r3]\n"
    "  muls r5, r6\n"
    "  adds r4, r4, r5\n"
    "  adds r1, #2\n"
    "12:\n"
    "  ldrb r5, [r1, #0]\n"
    "  ldrsb r5, [r0, r5]\n"
    "  ldrsb r6, [r1, r2]\n"
    "  muls r5, r6\n"
    "  adds r4, r4, r5\n"
    "13:\n"
    "  ldrb r5, [r1, #1]\n"
    "  ldrsb r5, [r0, r5]\n"
    "  ldrsb r6, [r1, r3]\n"
    "  muls r5, r6\n"
    "  adds r4, r4, r5\n"
    "  adds r1, #2\n"
    "  cmp r1, r7\n"
    "  blo 20b\n"
    "19:\n"
    "  mov r5, r12\n"
    "  stmia r5!, {r4}\n"
    "  mov r12, r5\n"
    "  subs r2, #1\n"
    "  cmp r5, r9\n"
    "  blo 10b\n"
    "  mov r0, r8\n"
    "  str r1, [r0, #0]\n"
    "  adds r2, r1, r2\n"
    "  adds r2, #1\n"
    "  str r2, [r0, #4]\n"
    "  mov r1, r11\n"
    "  str r1, [r0, #12]\n"
    "65:\n"
    "  mov r7, r10\n" /* the rescale pass: bases + n, stored back as the next block's */
    "  lsls r6, r7, #2\n"
    "  add r1, sp, #8\n"
    "  adds r1, r1, r6\n"
    "  mov r8, r1\n"
    "  ldr r1, [r0, #16]\n"
    "  adds r1, r1, r6\n"
    "  str r1, [r0, #16]\n"
    "  mov r10, r1\n"
    "  ldr r1, [r0, #20]\n"
    "  adds r1, r1, r7\n"
    "  str r1, [r0, #20]\n"
    "  mov r11, r1\n"
    "  ldr r1, [r0, #24]\n"
    "  adds r1, r1, r7\n"
    "  str r1, [r0, #24]\n"
    "  str r1, [sp, #0]\n"
    "  ldr r1, [r0, #32]\n"
    "  mov lr, r1\n"
    "  movs r1, #1\n"
    "  lsls r1, r1, #14\n"
    "  mov r12, r1\n"
    "  negs r7, r7\n"
    "40:\n"
    "  lsls r6, r7, #2\n"
    "  mov r0, r8\n"
    "  ldr r0, [r0, r6]\n"
    "  mov r1, r10\n"
    "  ldr r1, [r1, r6]\n"
    "  mov r2, r11\n"
    "  ldrsb r2, [r2, r7]\n"
    "  cmp r2, #0\n"
    "  bge 50f\n"
    "  fg_t1_srdhm\n"
    "  lsrs r3, r0, #31\n"
    "  subs r0, r0, r3\n"
    "  mvns r2, r2\n"
    "  asrs r0, r2\n"
    "  add r0, lr\n"
    "  asrs r0, r0, #1\n"
    "43:\n"
    "  sxtb r3, r0\n"
    "  cmp r3, r0\n"
    "  beq 44f\n"
    "  asrs r3, r0, #31\n"
    "  movs r0, #127\n"
    "  eors r3, r0\n"
    "44:\n"
    "  ldr r0, [sp, #0]\n"
    "  strb r3, [r0, r7]\n"
    "  adds r7, #1\n"
    "  bne 40b\n"
    "  ldr r0, [sp, #4]\n"
    "  ldr r1, [r0, #28]\n"
    "  cmp r1, #0\n"
    "  ble 39f\n"
    "  b 30b\n" /* beyond a conditional branch's reach */
    "39:\n"
    "  add sp, #136\n"
    "  pop {r4, r5, r6, r7}\n"
    "  mov r8, r4\n"
    "  mov r9, r5\n"
    "  mov r10, r6\n"
    "  mov r11, r7\n"
    "  pop {r4, r5, r6, r7, pc}\n"
    "50:\n" /* shift >= 0 (rare): srdhm(acc << shift, m) + zo; 2 t could overflow */
    "  lsls r0, r2\n"
    "  fg_t1_srdhm\n"
    "  mov r3, lr\n"
    "  asrs r3, r3, #1\n"
    "  adds r0, r0, r3\n"
    "  b 43b\n"
    "60:\n" /* dense rows in pairs: r0 x + cols, r1 -cols up to 0, r2 r3 the rows' ends, r4 r7
              * their sums, lr cols; 17 instructions per two columns */
    "  ldr r1, [r0, #36]\n"
    "  mov lr, r1\n"
    "  ldr r2, [r0, #4]\n"
    "  ldr r0, [r0, #8]\n"
    "  adds r0, r0, r1\n"
    "  adds r2, r2, r1\n"
    "  adds r3, r2, r1\n"
    "61:\n"
    "  mov r5, r12\n"
    "  adds r5, #4\n"
    "  cmp r5, r9\n"
    "  bhs 63f\n"
    "  mov r1, lr\n"
    "  negs r1, r1\n"
    "  mov r5, r11\n"
    "  ldm r5!, {r4, r7}\n"
    "  mov r11, r5\n"
    "  lsrs r5, r1, #1\n" /* two columns per pass; odd cols: enter at the second */
    "  bcs 69f\n"
    "62:\n"
    "  ldrsb r5, [r0, r1]\n"
    "  ldrsb r6, [r2, r1]\n"
    "  muls r6, r5, r6\n"
    "  adds r4, r4, r6\n"
    "  ldrsb r6, [r3, r1]\n"
    "  muls r6, r5, r6\n"
    "  adds r7, r7, r6\n"
    "  adds r1, r1, #1\n"
    "69:\n"
    "  ldrsb r5, [r0, r1]\n"
    "  ldrsb r6, [r2, r1]\n"
    "  muls r6, r5, r6\n"
    "  adds r4, r4, r6\n"
    "  ldrsb r6, [r3, r1]\n"
    "  muls r6, r5, r6\n"
    "  adds r7, r7, r6\n"
    "  adds r1, r1, #1\n"
    "  bne 62b\n"
    "  mov r5, r12\n"
    "  stmia r5!, {r4, r7}\n"
    "  mov r12, r5\n"
    "  mov r1, lr\n"
    "  lsls r1, r1, #1\n"
    "  adds r2, r2, r1\n"
    "  adds r3, r3, r1\n"
    "  cmp r5, r9\n"
    "  blo 61b\n"
    "  b 64f\n"
    "63:\n" /* the block's last row, alone */
    "  mov r1, lr\n"
    "  negs r1, r1\n"
    "  mov r5, r11\n"
    "  ldm r5!, {r4}\n"
    "  mov r11, r5\n"
    "66:\n"
    "  ldrsb r5, [r0, r1]\n"
    "  ldrsb r6, [r2, r1]\n"
    "  muls r6, r5, r6\n"
    "  adds r4, r4, r6\n"
    "  adds r1, r1, #1\n"
    "  bne 66b\n"
    "  mov r5, r12\n"
    "  stmia r5!, {r4}\n"
    "  mov r12, r5\n"
    "  mov r1, lr\n"
    "  adds r2, r2, r1\n"
    "64:\n"
    "  mov r0, r8\n"
    "  mov r1, lr\n"
    "  subs r2, r2, r1\n"
    "  str r2, [r0, #4]\n"
    "  mov r1, r11\n"
    "  str r1, [r0, #12]\n"
    "  b 65b\n"
    "  .purgem fg_t1_srdhm\n"
    "  .size fastgrnn_int8_t1_layer, .-fastgrnn_int8_t1_layer\n"
    "  .popsection\n");

static void fc8_sparse_full(const fastgrnn_int8_fc *f, const int8_t *x, int8_t *out) {
  fg_t1_layer l;
  l.ip = f->idx;
  l.wp = f->w;
  l.x = x;
  l.bias = f->bias;
  l.mult = f->mult;
  l.shift = f->shift;
  l.out = out;
  l.left = f->rows;
  l.zo21 = 1 + 2 * f->out_offset;
  l.cols = f->cols;
  if (l.left > 0) fastgrnn_int8_t1_layer(&l);
}
#else
FG_HOT static void fc8_sparse_full(const fastgrnn_int8_fc *f, const int8_t *x, int8_t *out) {
  const int32_t rows = f->rows, zo = 1 + 2 * f->out_offset;
  const ROM uint8_t *idx = f->idx;
  const ROM int8_t *w = f->w;
  const ROM int32_t *bias = f->bias, *mult = f->mult;
  const ROM int8_t *shift = f->shift;
  int32_t r;
  for (r = 0; r < rows; ++r)
    out[r] = (int8_t)fc_out_full(mult, shift, zo, r, sparse_row(&idx, &w, x, bias[r]));
}
#endif
#endif

/* FullyConnectedPerChannel (int8), dense, bitmap-packed or sparse weights. */
FG_HOT static void fc8(const fastgrnn_int8_fc *f, const int8_t *x, int8_t *out) {
  const int32_t rows = f->rows, cols = f->cols, row_bytes = (cols + 7) / 8;
  const ROM int8_t *w = f->w;
  const ROM uint8_t *mask = f->mask, *idx = f->idx;
  int32_t r, acc;
#if defined(FG_FASTPATH)
  if (!mask && f->act_min == -128 && f->act_max == 127) {
    if (idx)
      fc8_sparse_full(f, x, out);
    else
      fc8_dense_full(f, x, out);
    return;
  }
#endif
  for (r = 0; r < rows; ++r) {
    if (idx) {
      acc = sparse_row(&idx, &w, x, f->bias[r]);
    } else if (mask == 0) {
      acc = dot(w, x, cols, f->bias[r]);
      w += cols;
    } else {
      acc = dot_packed(mask, &w, x, cols, f->bias[r]);
      mask += row_bytes;
    }
    out[r] = clamp8(mbqm(acc, f->mult[r], f->shift[r]) + f->out_offset, f->act_min, f->act_max);
  }
}

/* The generic passes read their few parameters from a local copy in the default build
 * (kept in registers: the int8 stores could alias the params otherwise), in place in the
 * size build (less code). */
#if defined(FASTGRNN_INT8_SMALL)
#define FG_PARAMS(name, src) const fastgrnn_int8_binop *const name = (src)
#else
#define FG_PARAMS(name, src) \
  const fastgrnn_int8_binop name##_copy = *(src), *const name = &name##_copy
#endif

/* out[j] = ADD(a[j], b[j]). */
static void add_vec(const fastgrnn_int8_binop *p, const int8_t *a, const int8_t *b,
                    int8_t *out, int32_t n) {
  FG_PARAMS(q, p);
  int32_t j;
  for (j = 0; j < n; ++j) out[j] = add8(q, a[j], b[j]);
}

/* out[j] = table[ADD(a[j], bias[j])]; no bias: table[a[j]]; no table: identity. */
static void bias_vec(const fastgrnn_int8_binop *p, const ROM int8_t *bias,
                     const ROM int8_t *table, const int8_t *a, int8_t *out, int32_t n) {
  FG_PARAMS(q, p);
  int32_t j;
  for (j = 0; j < n; ++j) {
    const int8_t v = bias ? add8(q, a[j], bias[j]) : a[j];
    out[j] = table ? LUT(table, v) : v;
  }
}

/* FastGRNN: h_out[j] = ADD(MUL(coef(z), h~), MUL(z, h)). */
static void grnn_out(const fastgrnn_int8_params *p, const int8_t *z, const int8_t *ht,
                     const int8_t *h_in, int8_t *h_out, int32_t n) {
  FG_PARAMS(zm, &p->zh_mul);
  FG_PARAMS(cm, &p->ch_mul);
  FG_PARAMS(oa, &p->out_add);
  const ROM int8_t *coef = p->coef_table;
  int32_t j;
  for (j = 0; j < n; ++j) {
    const int8_t zj = z[j];
    const int8_t zh = mul8(zm, zj, h_in[j]);
    h_out[j] = add8(oa, mul8(cm, LUT(coef, zj), ht[j]), zh);
  }
}

/* FastRNN: h_out[j] = ADD(alpha h~ [j], beta(h[j])). */
static void rnn_out(const fastgrnn_int8_binop *p, const ROM int8_t *state_table,
                    const int8_t *alpha_term, const int8_t *h_in, int8_t *h_out, int32_t n) {
  FG_PARAMS(q, p);
  int32_t j;
  for (j = 0; j < n; ++j) h_out[j] = add8(q, alpha_term[j], LUT(state_table, h_in[j]));
}

#if defined(FG_FASTPATH)
/* Fast elementwise passes: the same results as add8 / mul8 under conditions checked once
 * per step (otherwise the passes above run).
 *  - SaturatingRoundingDoublingHighMul(x, m) = (x m + 2^30) >> 31 = (2x m + 2^31) >> 32,
 *    the rounded high word of 2x m (SMMULR), whenever 2x fits in 32 bits.
 *  - RoundingDivideByPOT(y, e), e >= 1: (y + 2^(e-1) - [y < 0]) >> e.
 *  - ADD: the operand with the larger scale has the multiplier 1/2 exactly
 *    (QuantizeMultiplier(0.5) = (2^30, shift 0)), so its term is srdhm((v + offset) 2^20,
 *    2^30) = (v + offset) 2^19: one shifted add ("h" side; ADD is symmetric, so a pass
 *    swaps the operands when the h side is the second). The other ("g") operand: x =
 *    (v + offset) 2^20 with |v + offset| <= 255, |2x| < 2^29, and as its multiplier
 *    m > 2^10, y = srdhm(x, m) < 0 exactly when v + offset < 0; its shift is <= -1 unless
 *    both scales are equal, when it is an h side too: then y = (smmulr((v + offset) 2^22,
 *    2^30) + 1 - [v + offset < 0]) >> 1, the general form with l = 22, e = 1.
 *  - ADD output: |x| = |sum of the two terms| < 2^28; MUL: |x| = |product| < 2^16; both
 *    need shift in [-23, -1] (e >= 1) and the full clamp [-128, 127] (= SSAT #8). */
typedef struct {
  int32_t l, off, m, half, e; /* x = v 2^l + off (= (v + offset) 2^l) */
#if defined(FG_MUL32)
  int32_t offset, mh, ml, k; /* m = mh 2^k + ml, k = 32 - l */
#endif
} fg_in;
typedef struct {
  int32_t m, e, round; /* round = 2^(e-1) + output offset 2^e */
  int32_t in1x2, in2;  /* MUL input offsets (2 o1, o2) */
#if defined(FG_MUL32)
  int32_t mh, ml;   /* m = mh 2^16 + ml, 0 <= ml < 2^16 (out8) */
  int32_t mh1, ml1; /* m = mh1 2^16 + ml1, 1 <= ml1 <= 2^16 (mul_fast) */
  int32_t in1;      /* MUL input offset o1 */
#endif
} fg_out;

static int fast_in(fg_in *r, int32_t offset, int32_t mult, int32_t shift) {
  if (mult <= (INT32_C(1) << 10) || shift > 0 || shift < -31) return 0;
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
#if defined(FG_MUL32)
  r->offset = offset;
  r->k = 32 - r->l;
  r->mh = mult >> r->k;
  r->ml = mult & ((INT32_C(1) << r->k) - 1);
#endif
  r->half = INT32_C(1) << (r->e - 1);
  return 1;
}

static int fast_out(fg_out *r, const fastgrnn_int8_binop *p) {
  if (p->out_mult < 0 || p->out_shift >= 0 || p->out_shift < -23 || p->act_min != -128 ||
      p->act_max != 127 ||
      p->in1_offset < -255 || p->in1_offset > 255 || p->in2_offset < -255 ||
      p->in2_offset > 255 || p->out_offset < -128 || p->out_offset > 128)
    return 0;
  r->m = p->out_mult;
  r->e = -p->out_shift;
  r->round = (INT32_C(1) << (r->e - 1)) + p->out_offset * (INT32_C(1) << r->e);
  r->in1x2 = 2 * p->in1_offset;
  r->in2 = p->in2_offset;
#if defined(FG_MUL32)
  /* mul_fast's two-product form needs |v + offset| <= 255, the parser's bound on every
   * input offset (-127 .. 128), which out8's MUL32 form assumes too */
  if (p->in1_offset < -127 || p->in1_offset > 128 || p->in2_offset < -127 ||
      p->in2_offset > 128)
    return 0;
  r->mh = r->m >> 16;
  r->ml = r->m & 0xffff;
  r->ml1 = ((r->m - 1) & 0xffff) + 1;
  r->mh1 = (r->m - r->ml1) >> 16; /* -1 for m = 0 */
  r->in1 = p->in1_offset;
#endif
  return 1;
}

/* An ADD: the h side's offset times 2^20, the g side, the output; *swap: the h side is
 * the second operand. */
static int fast_add(int32_t *hoff2, fg_in *g, fg_out *o, const fastgrnn_int8_binop *p,
                    int *swap) {
  const int32_t half = INT32_C(1) << 30;
  if (!fast_out(o, p)) return 0;
  *swap = !(p->in1_mult == half && p->in1_shift == 0);
  if (*swap && !(p->in2_mult == half && p->in2_shift == 0)) return 0;
  *hoff2 = (*swap ? p->in2_offset : p->in1_offset) * (INT32_C(1) << 20);
  return *swap ? fast_in(g, p->in1_offset, p->in1_mult, p->in1_shift)
               : fast_in(g, p->in2_offset, p->in2_mult, p->in2_shift);
}

/* A g operand scaled: mbqm_add((v + offset) 2^20, m, shift). */
FG_EW_INLINE int32_t in_scaled(const fg_in *r, int32_t v) {
#if defined(FG_MUL32)
  /* smmlar(a 2^l, m, half) = half + floor((a m + 2^(k-1)) / 2^k) with a = v + offset,
   * = half + a mh + ((a ml + 2^(k-1)) >> k): |a| <= 255, mh < 2^21, ml < 2^11. */
  const int32_t a = v + r->offset;
  return FG_ASR(r->half + a * r->mh + ((a * r->ml + (INT32_C(1) << (r->k - 1))) >> r->k) -
                    (int32_t)((uint32_t)a >> 31), r->e);
#else
#if defined(__AVR__)
  /* l is 21 or 22: two whole bytes first (a variable shift is a loop of 1-bit shifts) */
  const int32_t x = (int32_t)(((uint32_t)v << 16) << (r->l - 16)) + r->off;
#else
  const int32_t x = (int32_t)((uint32_t)v << r->l) + r->off;
#endif
  return FG_ASR(smmlar(x, r->m, r->half) - (int32_t)((uint32_t)x >> 31), r->e);
#endif
}

/* clamp8(mbqm(x, m, shift) + offset) from x2 = 2x: the offset goes in before the shift
 * as offset 2^e (|y| < 2^28, e <= 23, |offset| <= 128: no overflow), y = smmulr(x2, m)
 * and round = 2^(e-1) + offset 2^e added by one SMMLAR. RoundingDivideByPOT's [y < 0] is
 * taken as [x2 < 0]: m > 0, so y < 0 implies x2 < 0 and y > 0 implies x2 > 0, and where
 * y = 0 both give offset ((round - 1) >> e = round >> e = offset for e >= 1). */
FG_EW_INLINE int32_t out8(const fg_out *r, int32_t x2) {
#if defined(__AVR__) || defined(FG_MUL32)
  /* The SMMLAR form measured slower there (HAR-2 step: M0 61,321 against 60,470
   * instructions, ATmega328P 808,273 against 770,490 cycles): x2 stays live across the
   * multiply routine. */
#if defined(FG_MUL32)
  /* y = (x2 m + 2^31) >> 32 from four 16 x 16 products (x2 = 2^16 ah + al, al unsigned):
   * x2 m + 2^31 = 2^32 ah mh + 2^16 (ah ml + al mh + (al ml >> 16) + 2^15) + (al ml mod 2^16),
   * so y = ah mh + floor(u / 2^16) with u the middle sum. Under the parser's bounds
   * (input offsets -127..128, multipliers in [0, 2^31)) each ADD term is at most 2^28 in
   * magnitude (|v + offset| <= 256 times 2^20 times a multiplier below one; a stored bias
   * term equals that), so -2^30 <= x2 < 2^30 (MUL: |x2| <= 2^17): -2^14 <= ah < 2^14, and
   * u + 2^30 lies in [2^14, 2^32 - 2^16): one unsigned sum, one shift, minus 2^14 after. */
  const uint32_t al = (uint32_t)x2 & 0xffffu;
  const int32_t ah = x2 >> 16;
  const uint32_t u = (uint32_t)(ah * r->ml) + al * (uint32_t)r->mh +
                     ((al * (uint32_t)r->ml) >> 16) + UINT32_C(0x40008000);
  const int32_t y = ah * r->mh + (int32_t)(u >> 16) - 0x4000;
  /* [y < 0] taken as [x2 < 0] (as in the SMMLAR form below; the Thumb-1 loops keep no
   * register for y's sign) */
  return ssat8(FG_ASR(y + r->round - (int32_t)((uint32_t)x2 >> 31), r->e));
#else
  const int32_t y = smmulr(x2, r->m);
  return ssat8(FG_ASR(y + r->round - (int32_t)((uint32_t)y >> 31), r->e));
#endif
#else
  return ssat8(FG_ASR(smmlar(x2, r->m, r->round) - (int32_t)((uint32_t)x2 >> 31), r->e));
#endif
}

/* ADD(hv, gv): 2 (h term + g term) = hv 2^20 + hoff2 + 2 g term. */
FG_EW_INLINE int32_t add_hg(int32_t hoff2, const fg_in *g, const fg_out *o, int32_t hv,
                         int32_t gv) {
  return out8(o, (int32_t)((uint32_t)hv << 20) + hoff2 + 2 * in_scaled(g, gv));
}

/* MUL(a, b). */
FG_EW_INLINE int32_t mul_fast(const fg_out *o, int32_t a, int32_t b) {
#if defined(__AVR__)
  /* |2 (a + o1)| <= 766, |b + o2| <= 383 (fast_out): one 16 x 16 -> 32 product */
  return out8(o, FG_SMUL16(2 * a + o->in1x2, b + o->in2));
#elif defined(FG_MUL32)
  /* y = (2 P m + 2^31) >> 32 = floor((P m + 2^30) / 2^31), P = (a + o1)(b + o2), from two
   * products instead of out8's four: with m = 2^16 mh1 + ml1 (1 <= ml1 <= 2^16),
   * y = floor((P mh1 + floor(P ml1 / 2^16) + 2^14) / 2^15) (nested floors of exact
   * integers). |a + o| <= 255 (fast_out), so |P| <= 65025 and |P ml1| < 2^32: the
   * product mod 2^32 read unsigned is P ml1 for P >= 0 and P ml1 + 2^32 for P < 0 (never
   * 0 there, as ml1 >= 1), so floor(P ml1 / 2^16) is its top half minus 2^16 [P < 0];
   * |P mh1| <= 65025 (2^15 - 1) < 2^31 - 2^17, and no sum overflows. RoundingDivideByPOT's
   * [y < 0] is [P < 0]: m >= 0, so y < 0 implies P < 0 and y > 0 implies P > 0, and where
   * y = 0 both give the offset ((round - 1) >> e = round >> e for e >= 1). */
  const int32_t prod = (a + o->in1) * (b + o->in2);
  const int32_t s = (int32_t)((uint32_t)prod >> 31);
  const int32_t lo = (int32_t)(((uint32_t)prod * (uint32_t)o->ml1) >> 16) - s * 65536;
  const int32_t y = (prod * o->mh1 + lo + (INT32_C(1) << 14)) >> 15;
  return ssat8(FG_ASR(y + o->round - s, o->e));
#else
  return out8(o, (2 * a + o->in1x2) * (b + o->in2));
#endif
}

#if defined(FG_THUMB2)
/* Thumb-2 assembly of the elementwise loops (gcc -O2 spills their constants: 8 stack
 * reloads per unit in grnn_loop on the M4F), instruction for instruction the C helpers
 * in_scaled, out8, mul_fast and add_hg (l = 21). The constants come from an int32 array
 * by LDM/LDRD. FG_A_SMMLAR_SUB(d, lo, a, b, c): SMMLAR (c + ((a b + 2^31) >> 32)) then
 * RoundingDivideByPOT's sign term, d = c - [a < 0] + ((a b + 2^31) >> 32): with DSP
 * SMMLAR + SUB; without, one SMLAL onto {d : lo} = {c + (a >> 31) : 2^31}, 3 instructions
 * instead of SMULL + 3 (lo a scratch register; d, lo, a, b all different, lo not c). */
#if defined(FG_DSP)
#define FG_A_SMMLAR_SUB(d, lo, a, b, c)                  \
  "smmlar " d ", " a ", " b ", " c "\n\t"                \
  "sub " d ", " d ", " a ", lsr #31\n\t"
#else
#define FG_A_SMMLAR_SUB(d, lo, a, b, c)                  \
  "mov " lo ", #0x80000000\n\t"                         \
  "add " d ", " c ", " a ", asr #31\n\t"                \
  "smlal " lo ", " d ", " a ", " b "\n\t"
#endif
#define FG_A_FUNC(name)                                                    \
  ".section .text." name ",\"ax\",%progbits\n\t"                           \
  ".syntax unified\n\t"                                                    \
  ".thumb\n\t"                                                             \
  ".p2align 2\n\t"                                                         \
  ".global " name "\n\t"                                                   \
  ".type " name ", %function\n\t"                                          \
  ".thumb_func\n" name ":\n\t"
#define FG_A_END(name) ".size " name ", .-" name "\n\t.text"

/* FastGRNN's output after zh_loop: h_out[j] = ADD(MUL(coef[z[j]], ht[j]), h_out[j]).
 * a = {z, ht, h_out, z + n, k}; k = {coef + 128, 2 o1, o2, m, round, e of MUL(coef, h~);
 * off, m, half, e of the ADD's g side; hoff2, m, round, e of the ADD}; n >= 1. HV / GV:
 * the registers of the ADD's h and g operands (r11 = MUL(coef, h~), r10 = MUL(z, h)). */
#define FG_A_GRNN(name, HV, GV)                                            \
  FG_A_FUNC(name)                                                          \
  "push {r4-r11, lr}\n\t"                                                  \
  "ldm r0, {r0-r3, r12}\n\t"                                               \
  "add lr, r12, #24\n"                                                     \
  "1:\n\t"                                                                 \
  "ldm r12, {r4-r9}\n\t"                                                   \
  "ldrsb r10, [r0], #1\n\t"                                                \
  "ldrsb r10, [r4, r10]\n\t"                                               \
  "ldrsb r11, [r1], #1\n\t"                                                \
  "add r10, r5, r10, lsl #1\n\t"                                           \
  "add r11, r11, r6\n\t"                                                   \
  "mul r10, r10, r11\n\t"                                                  \
  FG_A_SMMLAR_SUB("r11", "r6", "r10", "r7", "r8")                          \
  "asr r11, r11, r9\n\t"                                                   \
  "ssat r11, #8, r11\n\t"                                                  \
  "ldrsb r10, [r2]\n\t"                                                    \
  "ldm lr, {r4-r7}\n\t"                                                    \
  "add " GV ", r4, " GV ", lsl #21\n\t"                                    \
  FG_A_SMMLAR_SUB("r8", "r4", GV, "r5", "r6")                              \
  "asr r8, r8, r7\n\t"                                                     \
  "ldrd r4, r5, [lr, #16]\n\t"                                             \
  "add " HV ", r4, " HV ", lsl #20\n\t"                                    \
  "add " HV ", " HV ", r8, lsl #1\n\t"                                     \
  "ldrd r6, r7, [lr, #24]\n\t"                                             \
  FG_A_SMMLAR_SUB("r8", "r4", HV, "r5", "r6")                              \
  "asr r8, r8, r7\n\t"                                                     \
  "ssat r8, #8, r8\n\t"                                                    \
  "strb r8, [r2], #1\n\t"                                                  \
  "cmp r0, r3\n\t"                                                         \
  "bne 1b\n\t"                                                             \
  "pop {r4-r11, pc}\n\t"                                                   \
  FG_A_END(name)

typedef struct {
  const int8_t *z, *ht;
  int8_t *h_out;
  const int8_t *z_end;
  const int32_t *k;
} fg_grnn_args;
#if defined(__ELF__)
#define FG_HIDDEN __attribute__((visibility("hidden")))
#else
#define FG_HIDDEN
#endif
void fastgrnn_int8_grnn_t2(const fg_grnn_args *a) FG_HIDDEN;
void fastgrnn_int8_grnn_swap_t2(const fg_grnn_args *a) FG_HIDDEN;
__asm__(FG_A_GRNN("fastgrnn_int8_grnn_t2", "r11", "r10"));
__asm__(FG_A_GRNN("fastgrnn_int8_grnn_swap_t2", "r10", "r11"));
/* ADD in place: out[j] = ADD(ph[j], pg[j]) with out = ph (OUT r0) or pg (OUT r1).
 * a = {ph + n, pg + n, -n, k}, k = {off, m, half, e of the g side; hoff2, m, round, e};
 * n >= 1. */
#define FG_A_ADD(name, OUT)                                                \
  FG_A_FUNC(name)                                                          \
  "push {r4-r11, lr}\n\t"                                                  \
  "ldm r0, {r0-r3}\n\t"                                                    \
  "ldm r3, {r3-r10}\n"                                                     \
  "1:\n\t"                                                                 \
  "ldrsb r11, [r1, r2]\n\t"                                                \
  "add r11, r3, r11, lsl #21\n\t"                                          \
  FG_A_SMMLAR_SUB("r12", "lr", "r11", "r4", "r5")                          \
  "asr r12, r12, r6\n\t"                                                   \
  "ldrsb r11, [r0, r2]\n\t"                                                \
  "add r11, r7, r11, lsl #20\n\t"                                          \
  "add r11, r11, r12, lsl #1\n\t"                                          \
  FG_A_SMMLAR_SUB("r12", "lr", "r11", "r8", "r9")                          \
  "asr r12, r12, r10\n\t"                                                  \
  "ssat r12, #8, r12\n\t"                                                  \
  "strb r12, [" OUT ", r2]\n\t"                                            \
  "adds r2, r2, #1\n\t"                                                    \
  "bne 1b\n\t"                                                             \
  "pop {r4-r11, pc}\n\t"                                                   \
  FG_A_END(name)

/* The same when both operands have the multiplier 1/2 (equal scales; fast_in's l = 22,
 * whose g term is then exactly (v + offset) 2^19, an h side too): x2 = (ph[j] + pg[j])
 * 2^20 + both offsets 2^20. k = {that constant, m, round, e}. */
#define FG_A_ADD2(name, OUT)                                               \
  FG_A_FUNC(name)                                                          \
  "push {r4-r11, lr}\n\t"                                                  \
  "ldm r0, {r0-r3}\n\t"                                                    \
  "ldm r3, {r3-r6}\n"                                                      \
  "1:\n\t"                                                                 \
  "ldrsb r11, [r1, r2]\n\t"                                                \
  "ldrsb r12, [r0, r2]\n\t"                                                \
  "add r11, r11, r12\n\t"                                                  \
  "add r11, r3, r11, lsl #20\n\t"                                          \
  FG_A_SMMLAR_SUB("r12", "lr", "r11", "r4", "r5")                          \
  "asr r12, r12, r6\n\t"                                                   \
  "ssat r12, #8, r12\n\t"                                                  \
  "strb r12, [" OUT ", r2]\n\t"                                            \
  "adds r2, r2, #1\n\t"                                                    \
  "bne 1b\n\t"                                                             \
  "pop {r4-r11, pc}\n\t"                                                   \
  FG_A_END(name)

/* table[ADD(pre[j], bias operand j)] with pre the h side: out[j] = table[out8(pre[j]
 * 2^20 + hoff2 + 2 term[j])]. a = {pre + n, term + n, out + n, -n, k}, k = {hoff2, m,
 * round, e, table + 128}; n >= 1. */
#define FG_A_TERM(name)                                                    \
  FG_A_FUNC(name)                                                          \
  "push {r4-r11, lr}\n\t"                                                  \
  "ldm r0, {r0-r4}\n\t"                                                    \
  "ldm r4, {r4-r8}\n"                                                      \
  "1:\n\t"                                                                 \
  "ldrsb r9, [r0, r3]\n\t"                                                 \
  "ldr r10, [r1, r3, lsl #2]\n\t"                                          \
  "add r9, r4, r9, lsl #20\n\t"                                            \
  "add r9, r9, r10, lsl #1\n\t"                                            \
  FG_A_SMMLAR_SUB("r10", "r11", "r9", "r5", "r6")                          \
  "asr r10, r10, r7\n\t"                                                   \
  "ssat r10, #8, r10\n\t"                                                  \
  "ldrsb r10, [r8, r10]\n\t"                                               \
  "strb r10, [r2, r3]\n\t"                                                 \
  "adds r3, r3, #1\n\t"                                                    \
  "bne 1b\n\t"                                                             \
  "pop {r4-r11, pc}\n\t"                                                   \
  FG_A_END(name)

typedef struct {
  const int8_t *pre_end;
  const int32_t *term_end;
  int8_t *out_end;
  int32_t neg_n;
  const int32_t *k;
} fg_term_args;
void fastgrnn_int8_term_t2(const fg_term_args *a) FG_HIDDEN;
__asm__(FG_A_TERM("fastgrnn_int8_term_t2"));

typedef struct {
  const int8_t *ph_end, *pg_end;
  int32_t neg_n;
  const int32_t *k;
} fg_add_args;
void fastgrnn_int8_add_h_t2(const fg_add_args *a) FG_HIDDEN;
void fastgrnn_int8_add_g_t2(const fg_add_args *a) FG_HIDDEN;
__asm__(FG_A_ADD("fastgrnn_int8_add_h_t2", "r0"));
__asm__(FG_A_ADD("fastgrnn_int8_add_g_t2", "r1"));
void fastgrnn_int8_add2_h_t2(const fg_add_args *a) FG_HIDDEN;
void fastgrnn_int8_add2_g_t2(const fg_add_args *a) FG_HIDDEN;
__asm__(FG_A_ADD2("fastgrnn_int8_add2_h_t2", "r0"));
__asm__(FG_A_ADD2("fastgrnn_int8_add2_g_t2", "r1"));

/* FastGRNN's whole elementwise chain in one loop (pre, h~ and z read back from no buffer):
 * per unit j, pre = ADD(xw[j], hu[j]) for equal input scales (as fastgrnn_int8_add2_*_t2),
 * P = pre 2^20 + hoff2 (both bias ADDs take pre as their h side, with one offset), h~ =
 * update_table[out8(P + 2 uterm[j])], z = gate_table[out8(P + 2 gterm[j])] (as
 * fastgrnn_int8_term_t2), zh = MUL(z, h_in[j]), ch = MUL(coef[z], h~), h_out[j] =
 * ADD(ch, zh) (as fastgrnn_int8_grnn_t2; HV / GV: the registers of its h and g sides, r8
 * = ch, r9 = zh). Only lr (j, -n .. -1) and r12 (k) stay across stages: each stage loads
 * its constants and array ends (at ..._end[j]) with one LDM, so r0-r11 are free for it.
 * k = {xw_end, hu_end, K0, m, round, e, hoff2 | uterm_end, m, round, e, utable + 128 |
 * gterm_end, m, round, e, gtable + 128 | h_in_end, 2 o1, o2, m, round, e (MUL(z, h)) |
 * coef + 128, 2 o1, o2, m, round, e (MUL(coef, h~)) | off, m, half, e of the ADD's g
 * side, hoff2, m, round, e, h_out_end (the ADD)}; a = {k, -n}, n >= 1. */
#define FG_A_EW(name, HV, GV)                                              \
  FG_A_FUNC(name)                                                          \
  "push {r4-r11, lr}\n\t"                                                  \
  "ldm r0, {r12, lr}\n"                                                    \
  "1:\n\t"                                                                 \
  "ldm r12!, {r0-r6}\n\t"                                                  \
  "ldrsb r7, [r0, lr]\n\t"                                                 \
  "ldrsb r8, [r1, lr]\n\t"                                                 \
  "add r7, r7, r8\n\t"                                                     \
  "add r7, r2, r7, lsl #20\n\t"                                            \
  FG_A_SMMLAR_SUB("r8", "r9", "r7", "r3", "r4")                            \
  "asr r8, r8, r5\n\t"                                                     \
  "ssat r8, #8, r8\n\t"                                                    \
  "add r11, r6, r8, lsl #20\n\t"                                           \
  "ldm r12!, {r0-r4}\n\t"                                                  \
  "ldr r5, [r0, lr, lsl #2]\n\t"                                           \
  "add r5, r11, r5, lsl #1\n\t"                                            \
  FG_A_SMMLAR_SUB("r6", "r7", "r5", "r1", "r2")                            \
  "asr r6, r6, r3\n\t"                                                     \
  "ssat r6, #8, r6\n\t"                                                    \
  "ldrsb r10, [r4, r6]\n\t"                                                \
  "ldm r12!, {r0-r4}\n\t"                                                  \
  "ldr r5, [r0, lr, lsl #2]\n\t"                                           \
  "add r5, r11, r5, lsl #1\n\t"                                            \
  FG_A_SMMLAR_SUB("r6", "r7", "r5", "r1", "r2")                            \
  "asr r6, r6, r3\n\t"                                                     \
  "ssat r6, #8, r6\n\t"                                                    \
  "ldrsb r11, [r4, r6]\n\t"                                                \
  "ldm r12!, {r0-r5}\n\t"                                                  \
  "ldrsb r6, [r0, lr]\n\t"                                                 \
  "add r6, r6, r2\n\t"                                                     \
  "add r7, r1, r11, lsl #1\n\t"                                            \
  "mul r7, r7, r6\n\t"                                                     \
  FG_A_SMMLAR_SUB("r9", "r8", "r7", "r3", "r4")                            \
  "asr r9, r9, r5\n\t"                                                     \
  "ssat r9, #8, r9\n\t"                                                    \
  "ldm r12!, {r0-r5}\n\t"                                                  \
  "ldrsb r6, [r0, r11]\n\t"                                                \
  "add r6, r1, r6, lsl #1\n\t"                                             \
  "add r10, r10, r2\n\t"                                                   \
  "mul r6, r6, r10\n\t"                                                    \
  FG_A_SMMLAR_SUB("r8", "r7", "r6", "r3", "r4")                            \
  "asr r8, r8, r5\n\t"                                                     \
  "ssat r8, #8, r8\n\t"                                                    \
  "ldm r12, {r0-r7, r11}\n\t"                                              \
  "add " GV ", r0, " GV ", lsl #21\n\t"                                    \
  FG_A_SMMLAR_SUB("r10", "r0", GV, "r1", "r2")                             \
  "asr r10, r10, r3\n\t"                                                   \
  "add " HV ", r4, " HV ", lsl #20\n\t"                                    \
  "add " HV ", " HV ", r10, lsl #1\n\t"                                    \
  FG_A_SMMLAR_SUB(GV, "r0", HV, "r5", "r6")                                \
  "asr " GV ", " GV ", r7\n\t"                                             \
  "ssat " GV ", #8, " GV "\n\t"                                            \
  "strb " GV ", [r11, lr]\n\t"                                             \
  "sub r12, r12, #116\n\t"                                                 \
  "adds lr, lr, #1\n\t"                                                    \
  "bne 1b\n\t"                                                             \
  "pop {r4-r11, pc}\n\t"                                                   \
  FG_A_END(name)

typedef struct {
  const int32_t *k;
  int32_t neg_n;
} fg_ew_args;
void fastgrnn_int8_ew_t2(const fg_ew_args *a) FG_HIDDEN;
void fastgrnn_int8_ew_swap_t2(const fg_ew_args *a) FG_HIDDEN;
__asm__(FG_A_EW("fastgrnn_int8_ew_t2", "r8", "r9"));
__asm__(FG_A_EW("fastgrnn_int8_ew_swap_t2", "r9", "r8"));
#endif

#if defined(FG_THUMB1)
/* Armv6-M assembly of the elementwise loops (gcc -Os kept ~70 % more instructions per
 * unit: constants reloaded and spilled around the 16 x 16 products), instruction for
 * instruction the FG_MUL32 helpers in_scaled (l = 21: k = 11), out8, mul_fast and
 * add_hg, low registers only for the arithmetic. Constants that are added live in the
 * high registers r8-r12 and lr (ADD Rd, Rm takes any register); multipliers, shifts and
 * pointers are read from the caller's int32 array (its address in a low register), or,
 * where the loop needs all eight low registers (the table pass), from a copy on the stack:
 * one LDR each, no more than a MOV from a high register. The array: pointers, the loop
 * count -n (an index counting up to 0), then the constants. Macros (GNU as): fg_t1_in, in_scaled on a = v + offset in \x (its
 * term into \t); fg_t1_out8, out8 on x2 in \x (before the clamp); fg_t1_mulp, mul_fast on
 * P in \p (before the clamp); fg_t1_sat8, \t = ssat8(\x). */
__asm__(
    "  .pushsection .text.fastgrnn_int8_ew_t1,\"ax\",%progbits\n"
    "  .balign 2\n"
    "  .syntax unified\n"
    "  .thumb\n"
    /* half + a mh + ((a ml + 2^10) >> 11) - [a < 0], >> e; \x clobbered */
    "  .macro fg_t1_in x, t, u, ml, rk, mh, half, e, b=sp\n"
    "  ldr \\t, [\\b, #\\ml]\n"
    "  muls \\t, \\x, \\t\n"
    "  add \\t, \\rk\n"
    "  asrs \\t, \\t, #11\n"
    "  ldr \\u, [\\b, #\\mh]\n"
    "  muls \\u, \\x, \\u\n"
    "  adds \\t, \\t, \\u\n"
    "  lsrs \\x, \\x, #31\n"
    "  subs \\t, \\t, \\x\n"
    "  add \\t, \\half\n"
    "  ldr \\u, [\\b, #\\e]\n"
    "  asrs \\t, \\t, \\u\n"
    "  .endm\n"
    /* x2 = 2^16 ah + al: u = ah ml + al mh + (al ml >> 16) + 0x40008000 (unsigned),
     * y = ah mh + (u >> 16) - 2^14; (y + round - [x2 < 0]) >> e, rnd = round - 2^14 */
    "  .macro fg_t1_out8 x, t, u, v, ml, mh, cc, rnd, e, b=sp\n"
    "  uxth \\t, \\x\n"
    "  asrs \\x, \\x, #16\n"
    "  ldr \\u, [\\b, #\\ml]\n"
    "  muls \\u, \\t, \\u\n"
    "  lsrs \\u, \\u, #16\n"
    "  ldr \\v, [\\b, #\\mh]\n"
    "  muls \\t, \\v, \\t\n"
    "  adds \\u, \\u, \\t\n"
    "  ldr \\t, [\\b, #\\ml]\n"
    "  muls \\t, \\x, \\t\n"
    "  adds \\u, \\u, \\t\n"
    "  add \\u, \\cc\n"
    "  lsrs \\u, \\u, #16\n"
    "  lsrs \\t, \\x, #31\n"
    "  muls \\x, \\v, \\x\n"
    "  adds \\x, \\x, \\u\n"
    "  add \\x, \\rnd\n"
    "  subs \\x, \\x, \\t\n"
    "  ldr \\t, [\\b, #\\e]\n"
    "  asrs \\x, \\x, \\t\n"
    "  .endm\n"
    /* y = (P mh1 + (P ml1 mod 2^32 >> 16) - 2^16 [P < 0] + 2^14) >> 15;
     * (y + round - [P < 0]) >> e */
    "  .macro fg_t1_mulp p, s, t, u, ml, mh, k14, rnd, e, b=sp\n"
    "  lsrs \\s, \\p, #31\n"
    "  ldr \\t, [\\b, #\\ml]\n"
    "  muls \\t, \\p, \\t\n"
    "  lsrs \\t, \\t, #16\n"
    "  lsls \\u, \\s, #16\n"
    "  subs \\t, \\t, \\u\n"
    "  ldr \\u, [\\b, #\\mh]\n"
    "  muls \\p, \\u, \\p\n"
    "  adds \\p, \\p, \\t\n"
    "  add \\p, \\k14\n"
    "  asrs \\p, \\p, #15\n"
    "  ldr \\t, [\\b, #\\rnd]\n"
    "  adds \\p, \\p, \\t\n"
    "  subs \\p, \\p, \\s\n"
    "  ldr \\t, [\\b, #\\e]\n"
    "  asrs \\p, \\p, \\t\n"
    "  .endm\n"
    "  .macro fg_t1_sat8 x, t\n"
    "  sxtb \\t, \\x\n"
    "  cmp \\t, \\x\n"
    "  beq 9\\@f\n"
    "  asrs \\t, \\x, #31\n"
    "  movs \\x, #127\n"
    "  eors \\t, \\t, \\x\n"
    "9\\@:\n"
    "  .endm\n"
    "  .macro fg_t1_enter\n" /* saves r4-r11, lr */
    "  push {r4, r5, r6, r7, lr}\n"
    "  mov r4, r8\n"
    "  mov r5, r9\n"
    "  mov r6, r10\n"
    "  mov r7, r11\n"
    "  push {r4, r5, r6, r7}\n"
    "  .endm\n"
    "  .macro fg_t1_leave\n"
    "  pop {r4, r5, r6, r7}\n"
    "  mov r8, r4\n"
    "  mov r9, r5\n"
    "  mov r10, r6\n"
    "  mov r11, r7\n"
    "  pop {r4, r5, r6, r7, pc}\n"
    "  .endm\n"
    "  .macro fg_t1_cc reg, tmp\n" /* \reg = 0x40008000 */
    "  movs \\tmp, #1\n"
    "  lsls \\tmp, \\tmp, #15\n"
    "  mov \\reg, \\tmp\n"
    "  lsls \\tmp, \\tmp, #15\n"
    "  add \\reg, \\tmp\n"
    "  .endm\n"
    /* ADD in place, l = 21: out[j] = ADD(ph[j], pg[j]), out = ph or pg.
     * a = {ph + n, pg + n, -n, g: offset, ml, mh, half, e; hoff2; out: ml, mh, round - 2^14,
     * e}, read in place (r7). r0 ph, r1 pg, r2 j; r8 offset, r9 2^10, r10 half, r11 hoff2,
     * r12 0x40008000, lr round - 2^14. */
    "  .macro fg_t1_add name, out\n"
    "  .global \\name\n"
    "  .type \\name, %function\n"
    "  .thumb_func\n"
    "\\name:\n"
    "  fg_t1_enter\n"
    "  mov r7, r0\n"
    "  ldr r4, [r7, #12]\n"
    "  mov r8, r4\n"
    "  ldr r4, [r7, #24]\n"
    "  mov r10, r4\n"
    "  ldr r4, [r7, #32]\n"
    "  mov r11, r4\n"
    "  ldr r4, [r7, #44]\n"
    "  mov lr, r4\n"
    "  movs r4, #1\n"
    "  lsls r4, r4, #10\n"
    "  mov r9, r4\n"
    "  fg_t1_cc r12, r4\n"
    "  ldm r0, {r0, r1, r2}\n"
    "1:\n"
    "  ldrsb r3, [r1, r2]\n"
    "  add r3, r8\n"
    "  fg_t1_in r3, r4, r5, 16, r9, 20, r10, 28, r7\n"
    "  ldrsb r3, [r0, r2]\n"
    "  lsls r3, r3, #20\n"
    "  add r3, r11\n"
    "  lsls r4, r4, #1\n"
    "  adds r3, r3, r4\n"
    "  fg_t1_out8 r3, r4, r5, r6, 36, 40, r12, lr, 48, r7\n"
    "  fg_t1_sat8 r3, r4\n"
    "  strb r4, [\\out, r2]\n"
    "  adds r2, r2, #1\n"
    "  bne 1b\n"
    "  fg_t1_leave\n"
    "  .size \\name, .-\\name\n"
    "  .endm\n"
    /* The same when both operands have the multiplier 1/2 (fast_in's l = 22: the g term is
     * (v + offset) 2^19 exactly): x2 = (ph[j] + pg[j]) 2^20 + c. a = {ph + n, pg + n, -n,
     * c, out: ml, mh, round - 2^14, e}, read in place (r7). */
    "  .macro fg_t1_add2 name, out\n"
    "  .global \\name\n"
    "  .type \\name, %function\n"
    "  .thumb_func\n"
    "\\name:\n"
    "  fg_t1_enter\n"
    "  mov r7, r0\n"
    "  ldr r4, [r7, #12]\n"
    "  mov r8, r4\n"
    "  ldr r4, [r7, #24]\n"
    "  mov lr, r4\n"
    "  fg_t1_cc r12, r4\n"
    "  ldm r0, {r0, r1, r2}\n"
    "1:\n"
    "  ldrsb r3, [r1, r2]\n"
    "  ldrsb r4, [r0, r2]\n"
    "  adds r3, r3, r4\n"
    "  lsls r3, r3, #20\n"
    "  add r3, r8\n"
    "  fg_t1_out8 r3, r4, r5, r6, 16, 20, r12, lr, 28, r7\n"
    "  fg_t1_sat8 r3, r4\n"
    "  strb r4, [\\out, r2]\n"
    "  adds r2, r2, #1\n"
    "  bne 1b\n"
    "  fg_t1_leave\n"
    "  .size \\name, .-\\name\n"
    "  .endm\n"
    "  fg_t1_add fastgrnn_int8_add_h_t1, r0\n"
    "  fg_t1_add fastgrnn_int8_add_g_t1, r1\n"
    "  fg_t1_add2 fastgrnn_int8_add2_h_t1, r0\n"
    "  fg_t1_add2 fastgrnn_int8_add2_g_t1, r1\n"
    /* table[ADD(pre[j], bias operand j)], pre the h side: out[j] = table[out8(pre[j] 2^20 +
     * hoff2 + 2 term[j])]. a = {pre + n, term, out + n, -n, hoff2, ml, mh, round - 2^14, e,
     * table + 128}. r0 pre, r1 term (LDM), r2 out, r3 j; r8 hoff2, r12 0x40008000, lr
     * round - 2^14; stack: ml, mh, e, table. */
    "  .global fastgrnn_int8_term_t1\n"
    "  .type fastgrnn_int8_term_t1, %function\n"
    "  .thumb_func\n"
    "fastgrnn_int8_term_t1:\n"
    "  fg_t1_enter\n"
    "  sub sp, #16\n"
    "  adds r0, r0, #16\n"
    "  ldm r0!, {r3, r4, r5, r6, r7}\n"
    "  mov r8, r3\n"
    "  str r4, [sp, #0]\n"
    "  str r5, [sp, #4]\n"
    "  mov lr, r6\n"
    "  str r7, [sp, #8]\n"
    "  ldr r4, [r0, #0]\n"
    "  str r4, [sp, #12]\n"
    "  fg_t1_cc r12, r4\n"
    "  subs r0, r0, #36\n"
    "  ldm r0, {r0, r1, r2, r3}\n"
    "1:\n"
    "  ldrsb r4, [r0, r3]\n"
    "  ldm r1!, {r5}\n"
    "  lsls r4, r4, #20\n"
    "  add r4, r8\n"
    "  lsls r5, r5, #1\n"
    "  adds r4, r4, r5\n"
    "  fg_t1_out8 r4, r5, r6, r7, 0, 4, r12, lr, 8\n"
    "  fg_t1_sat8 r4, r5\n"
    "  ldr r4, [sp, #12]\n"
    "  ldrsb r5, [r4, r5]\n"
    "  strb r5, [r2, r3]\n"
    "  adds r3, r3, #1\n"
    "  bne 1b\n"
    "  add sp, #16\n"
    "  fg_t1_leave\n"
    "  .size fastgrnn_int8_term_t1, .-fastgrnn_int8_term_t1\n"
    /* Both gate passes in one loop (FastGRNN, both ADDs with pre as the h side and bias
     * terms): hu[j] = update_table[out8_u(x)], pre[j] = gate_table[out8_g(x')] with x = pre[j]
     * 2^20 + hoff2 + 2 update_term[j], x' the same with gate_term[j]. a = {pre + n, -n,
     * update_term, gate_term, hu + n, hoff2; update: ml, mh, round - 2^14, e, table + 128;
     * gate: the same five}. r0 pre, r1 j, r2 r3 the terms (LDM); r8 hoff2, r9 0x40008000,
     * r10 r11 round - 2^14 (update, gate), r12 pre[j] 2^20 + hoff2; stack: update ml, mh,
     * e, table, hu; gate ml, mh, e, table. */
    "  .global fastgrnn_int8_gates_t1\n"
    "  .type fastgrnn_int8_gates_t1, %function\n"
    "  .thumb_func\n"
    "fastgrnn_int8_gates_t1:\n"
    "  fg_t1_enter\n"
    "  sub sp, #36\n"
    "  ldr r4, [r0, #24]\n"
    "  str r4, [sp, #0]\n"
    "  ldr r4, [r0, #28]\n"
    "  str r4, [sp, #4]\n"
    "  ldr r4, [r0, #32]\n"
    "  mov r10, r4\n"
    "  ldr r4, [r0, #36]\n"
    "  str r4, [sp, #8]\n"
    "  ldr r4, [r0, #40]\n"
    "  str r4, [sp, #12]\n"
    "  ldr r4, [r0, #16]\n"
    "  str r4, [sp, #16]\n"
    "  ldr r4, [r0, #44]\n"
    "  str r4, [sp, #20]\n"
    "  ldr r4, [r0, #48]\n"
    "  str r4, [sp, #24]\n"
    "  ldr r4, [r0, #52]\n"
    "  mov r11, r4\n"
    "  ldr r4, [r0, #56]\n"
    "  str r4, [sp, #28]\n"
    "  ldr r4, [r0, #60]\n"
    "  str r4, [sp, #32]\n"
    "  ldr r4, [r0, #20]\n"
    "  mov r8, r4\n"
    "  fg_t1_cc r9, r4\n"
    "  ldm r0, {r0, r1, r2, r3}\n"
    "1:\n"
    "  ldrsb r4, [r0, r1]\n"
    "  lsls r4, r4, #20\n"
    "  add r4, r8\n"
    "  mov r12, r4\n"
    "  ldm r2!, {r5}\n"
    "  lsls r5, r5, #1\n"
    "  adds r4, r4, r5\n"
    "  fg_t1_out8 r4, r5, r6, r7, 0, 4, r9, r10, 8\n"
    "  fg_t1_sat8 r4, r5\n"
    "  ldr r4, [sp, #12]\n"
    "  ldrsb r5, [r4, r5]\n"
    "  ldr r4, [sp, #16]\n"
    "  strb r5, [r4, r1]\n"
    "  mov r4, r12\n"
    "  ldm r3!, {r5}\n"
    "  lsls r5, r5, #1\n"
    "  adds r4, r4, r5\n"
    "  fg_t1_out8 r4, r5, r6, r7, 20, 24, r9, r11, 28\n"
    "  fg_t1_sat8 r4, r5\n"
    "  ldr r4, [sp, #32]\n"
    "  ldrsb r5, [r4, r5]\n"
    "  strb r5, [r0, r1]\n"
    "  adds r1, r1, #1\n"
    "  bne 1b\n"
    "  add sp, #36\n"
    "  fg_t1_leave\n"
    "  .size fastgrnn_int8_gates_t1, .-fastgrnn_int8_gates_t1\n"
    /* FastGRNN's output: h_out[j] = ADD(MUL(coef[z[j]], ht[j]), MUL(z[j], h_in[j])) (swap:
     * MUL(z, h) is the ADD's h side; eq: both ADD operands of multiplier 1/2, the g term
     * exactly (v + offset) 2^19, so x2 = (hv + gv) 2^20 + hoff2 with hoff2 = both offsets
     * 2^20). a = {z + n, -n, ht + n, h_in + n, h_out + n, coef + 128, MUL(z, h): o1, o2,
     * ml1, mh1, round, e; MUL(coef, h~): the same six; the ADD's g side: offset, ml, mh,
     * half, e; hoff2; out: ml, mh, round - 2^14, e}, read in place (r1). r0 j; r8 2^14, r9
     * 2^10, r10 half, r11 hoff2, r12 0x40008000, lr round - 2^14. MUL(z, h) into r7,
     * MUL(coef, h~) into r6. */
    "  .macro fg_t1_grnn name, gv, hv, eq\n"
    "  .global \\name\n"
    "  .type \\name, %function\n"
    "  .thumb_func\n"
    "\\name:\n"
    "  fg_t1_enter\n"
    "  mov r1, r0\n"
    "  ldr r4, [r1, #84]\n"
    "  mov r10, r4\n"
    "  ldr r4, [r1, #92]\n"
    "  mov r11, r4\n"
    "  ldr r4, [r1, #104]\n"
    "  mov lr, r4\n"
    "  fg_t1_cc r12, r4\n"
    "  movs r4, #1\n"
    "  lsls r4, r4, #10\n"
    "  mov r9, r4\n"
    "  lsls r4, r4, #4\n"
    "  mov r8, r4\n"
    "  ldr r0, [r1, #4]\n"
    "1:\n"
    "  ldr r2, [r1, #0]\n"
    "  ldrsb r2, [r2, r0]\n"
    "  ldr r3, [r1, #12]\n"
    "  ldrsb r3, [r3, r0]\n"
    "  ldr r4, [r1, #24]\n"
    "  adds r4, r2, r4\n"
    "  ldr r5, [r1, #28]\n"
    "  adds r3, r3, r5\n"
    "  muls r4, r3, r4\n"
    "  fg_t1_mulp r4, r3, r5, r6, 32, 36, r8, 40, 44, r1\n"
    "  fg_t1_sat8 r4, r7\n"
    "  ldr r3, [r1, #20]\n"
    "  ldrsb r2, [r3, r2]\n"
    "  ldr r3, [r1, #8]\n"
    "  ldrsb r3, [r3, r0]\n"
    "  ldr r4, [r1, #48]\n"
    "  adds r2, r2, r4\n"
    "  ldr r4, [r1, #52]\n"
    "  adds r3, r3, r4\n"
    "  muls r2, r3, r2\n"
    "  fg_t1_mulp r2, r3, r4, r5, 56, 60, r8, 64, 68, r1\n"
    "  fg_t1_sat8 r2, r6\n"
    "  .if \\eq\n"
    "  adds \\hv, \\hv, \\gv\n"
    "  lsls \\hv, \\hv, #20\n"
    "  add \\hv, r11\n"
    "  .else\n"
    "  ldr r2, [r1, #72]\n"
    "  adds \\gv, \\gv, r2\n"
    "  fg_t1_in \\gv, r2, r3, 76, r9, 80, r10, 88, r1\n"
    "  lsls \\hv, \\hv, #20\n"
    "  add \\hv, r11\n"
    "  lsls r2, r2, #1\n"
    "  adds \\hv, \\hv, r2\n"
    "  .endif\n"
    "  fg_t1_out8 \\hv, r2, r3, r4, 96, 100, r12, lr, 108, r1\n"
    "  fg_t1_sat8 \\hv, r2\n"
    "  ldr r3, [r1, #16]\n"
    "  strb r2, [r3, r0]\n"
    "  adds r0, r0, #1\n"
    "  bne 1b\n"
    "  fg_t1_leave\n"
    "  .size \\name, .-\\name\n"
    "  .endm\n"
    "  fg_t1_grnn fastgrnn_int8_grnn_t1, r7, r6, 0\n"
    "  fg_t1_grnn fastgrnn_int8_grnn_swap_t1, r6, r7, 0\n"
    "  fg_t1_grnn fastgrnn_int8_grnn2_t1, r7, r6, 1\n"
    "  .purgem fg_t1_in\n"
    "  .purgem fg_t1_out8\n"
    "  .purgem fg_t1_mulp\n"
    "  .purgem fg_t1_sat8\n"
    "  .purgem fg_t1_enter\n"
    "  .purgem fg_t1_leave\n"
    "  .purgem fg_t1_cc\n"
    "  .purgem fg_t1_add\n"
    "  .purgem fg_t1_add2\n"
    "  .purgem fg_t1_grnn\n"
    "  .popsection\n");
#if defined(__ELF__)
#define FG_T1_HIDDEN __attribute__((visibility("hidden")))
#else
#define FG_T1_HIDDEN
#endif
void fastgrnn_int8_add_h_t1(const int32_t *a) FG_T1_HIDDEN;
void fastgrnn_int8_add_g_t1(const int32_t *a) FG_T1_HIDDEN;
void fastgrnn_int8_add2_h_t1(const int32_t *a) FG_T1_HIDDEN;
void fastgrnn_int8_add2_g_t1(const int32_t *a) FG_T1_HIDDEN;
void fastgrnn_int8_term_t1(const int32_t *a) FG_T1_HIDDEN;
void fastgrnn_int8_gates_t1(const int32_t *a) FG_T1_HIDDEN;
void fastgrnn_int8_grnn_t1(const int32_t *a) FG_T1_HIDDEN;
void fastgrnn_int8_grnn_swap_t1(const int32_t *a) FG_T1_HIDDEN;
void fastgrnn_int8_grnn2_t1(const int32_t *a) FG_T1_HIDDEN;
#define FG_T1_PTR(p) ((int32_t)(intptr_t)(p))
#endif

FG_HOT static int add_vec_fast(const fastgrnn_int8_binop *p, const int8_t *a, const int8_t *b,
                        int8_t *out, int32_t n) {
  fg_in g;
  fg_out o;
  int32_t hoff2;
  int8_t *end;
  int swap;
  if (!fast_add(&hoff2, &g, &o, p, &swap)) return 0;
  if (swap) {
    const int8_t *t = a;
    a = b;
    b = t;
  }
#if defined(FG_THUMB2)
  if (out == a || out == b) { /* in place, as the step calls it */
    int32_t k[8] = {g.off, g.m, g.half, g.e, hoff2, o.m, o.round, o.e};
    fg_add_args args;
    args.ph_end = a + n;
    args.pg_end = b + n;
    args.neg_n = -n;
    args.k = k;
    if (g.l == 22) { /* g.off = offset 2^22: 2^20 offset = g.off / 4 */
      k[0] = hoff2 + g.off / 4;
      k[1] = o.m;
      k[2] = o.round;
      k[3] = o.e;
      if (out == a)
        fastgrnn_int8_add2_h_t2(&args);
      else
        fastgrnn_int8_add2_g_t2(&args);
    } else if (out == a) {
      fastgrnn_int8_add_h_t2(&args);
    } else {
      fastgrnn_int8_add_g_t2(&args);
    }
    return 1;
  }
#endif
#if defined(FG_THUMB1)
  if ((out == a || out == b) && n > 0) { /* in place, as the step calls it */
    if (g.l == 22) { /* g.off = offset 2^22: 2^20 offset = g.off / 4 */
      const int32_t k[8] = {FG_T1_PTR(a + n), FG_T1_PTR(b + n), -n, hoff2 + g.off / 4,
                            o.ml, o.mh, o.round - 0x4000, o.e};
      if (out == a)
        fastgrnn_int8_add2_h_t1(k);
      else
        fastgrnn_int8_add2_g_t1(k);
    } else {
      const int32_t k[13] = {FG_T1_PTR(a + n), FG_T1_PTR(b + n), -n, g.offset, g.ml, g.mh,
                             g.half, g.e, hoff2, o.ml, o.mh, o.round - 0x4000, o.e};
      if (out == a)
        fastgrnn_int8_add_h_t1(k);
      else
        fastgrnn_int8_add_g_t1(k);
    }
    return 1;
  }
#endif
  for (end = out + n; out != end;) *out++ = (int8_t)add_hg(hoff2, &g, &o, *a++, *b++);
  return 1;
}

#if defined(__GNUC__)
__attribute__((noinline)) /* keeps term_loop's registers in bias_vec_fast free */
#endif
static void bias_loop(int32_t hoff2, const fg_in *g, const fg_out *o,
                      const ROM int8_t *table, const int8_t *a, const ROM int8_t *bias,
                      int8_t *out, int32_t n, int swap) {
  const int8_t *const end = a + n;
  if (swap) {
    while (a != end) *out++ = LUT(table, add_hg(hoff2, g, o, *bias++, *a++));
  } else {
    while (a != end) *out++ = LUT(table, add_hg(hoff2, g, o, *a++, *bias++));
  }
}

/* table[ADD(pre[j], bias operand j)] with the bias operand's term given (2 term = its
 * share of 2x); pre_h: pre is the h side. */
FG_INLINE void term_loop(int32_t hoff2, const fg_in *g, const fg_out *o,
                         const ROM int8_t *table, const int8_t *pre, const ROM int32_t *term,
                         int8_t *out, int32_t n,
                         const int pre_h) {
  const fg_out oc = *o;
  const int8_t *const end = pre + n;
  while (pre != end) {
    const int32_t v = *pre++;
    const int32_t x2 = (pre_h ? (int32_t)((uint32_t)v << 20) + hoff2 : 2 * in_scaled(g, v)) +
                       2 * *term++;
    *out++ = LUT(table, out8(&oc, x2));
  }
}

/* table[ADD(a[j], bias[j])]; other cases (no bias, no table) take the generic pass. */
FG_HOT static int bias_vec_fast(const fastgrnn_int8_binop *p, const ROM int8_t *bias,
                         const ROM int32_t *term, const ROM int8_t *table, const int8_t *a,
                         int8_t *out, int32_t n) {
  fg_in g;
  fg_out o;
  int32_t hoff2;
  int swap;
  if (!bias || !table) return 0;
  if (term) {
    if (!fast_out(&o, p)) return 0;
    if (p->in1_mult == (INT32_C(1) << 30) && p->in1_shift == 0) {
#if defined(FG_THUMB2)
      const int32_t k[5] = {p->in1_offset * (INT32_C(1) << 20), o.m, o.round, o.e,
                            (int32_t)(intptr_t)(table + 128)};
      fg_term_args args;
      args.pre_end = a + n;
      args.term_end = term + n;
      args.out_end = out + n;
      args.neg_n = -n;
      args.k = k;
      fastgrnn_int8_term_t2(&args);
      return 1;
#endif
#if defined(FG_THUMB1)
      if (n > 0) {
        const int32_t k[10] = {FG_T1_PTR(a + n), FG_T1_PTR(term), FG_T1_PTR(out + n), -n,
                               p->in1_offset * (INT32_C(1) << 20), o.ml, o.mh,
                               o.round - 0x4000, o.e, FG_T1_PTR(table + 128)};
        fastgrnn_int8_term_t1(k);
        return 1;
      }
#endif
      term_loop(p->in1_offset * (INT32_C(1) << 20), &g, &o, table, a, term, out, n, 1);
    } else {
      if (!fast_in(&g, p->in1_offset, p->in1_mult, p->in1_shift)) return 0;
      term_loop(0, &g, &o, table, a, term, out, n, 0);
    }
    return 1;
  }
  if (!fast_add(&hoff2, &g, &o, p, &swap)) return 0;
  bias_loop(hoff2, &g, &o, table, a, bias, out, n, swap);
  return 1;
}

/* h_out[j] = ADD(MUL(coef(z), h~), MUL(z, h)); swap: MUL(z, h) is the h side. */
FG_INLINE void grnn_loop(const fg_out *zm, const fg_out *cm, int32_t hoff2, const fg_in *g,
                         const fg_out *o, const ROM int8_t *coef, const int8_t *z,
                         const int8_t *ht, const int8_t *h_in, int8_t *h_out, int32_t n,
                         const int swap) {
  const int8_t *const end = z + n;
  while (z != end) {
    const int32_t zj = *z++;
    const int32_t zh = mul_fast(zm, zj, *h_in++);
    const int32_t ch = mul_fast(cm, LUT(coef, zj), *ht++);
    *h_out++ = (int8_t)(swap ? add_hg(hoff2, g, o, zh, ch) : add_hg(hoff2, g, o, ch, zh));
  }
}

#if defined(FG_THUMB2)
/* Thumb-2: zh = MUL(z, h) into h_out first (h_out may be h_in: element j is read before
 * it is written), then the rest in assembly from h_out (fastgrnn_int8_grnn_t2). */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void zh_loop(const fg_out *zm, const int8_t *z, const int8_t *h_in, int8_t *h_out,
                    int32_t n) {
  const fg_out o = *zm;
  const int8_t *const end = z + n;
  while (z != end) {
    const int32_t zj = *z++;
    *h_out++ = (int8_t)mul_fast(&o, zj, *h_in++);
  }
}
#endif

#if defined(FG_THUMB1)
/* Armv6-M: the whole output loop in assembly (both ADD forms: l = 21, and l = 22 where
 * the g term is exact); its constants go into one array, filled from one fg_out at a time
 * (the C loop's three fg_out, fg_in and the array took 396 B of stack). */
FG_HOT static int grnn_out_fast(const fastgrnn_int8_params *p, const int8_t *z, const int8_t *ht,
                                const int8_t *h_in, int8_t *h_out, int32_t n) {
  int32_t k[28];
  fg_out t;
  fg_in g;
  int swap;
  if (n <= 0 || !fast_out(&t, &p->zh_mul)) return 0;
  k[6] = t.in1;
  k[7] = t.in2;
  k[8] = t.ml1;
  k[9] = t.mh1;
  k[10] = t.round;
  k[11] = t.e;
  if (!fast_out(&t, &p->ch_mul)) return 0;
  k[12] = t.in1;
  k[13] = t.in2;
  k[14] = t.ml1;
  k[15] = t.mh1;
  k[16] = t.round;
  k[17] = t.e;
  if (!fast_add(&k[23], &g, &t, &p->out_add, &swap)) return 0;
  k[0] = FG_T1_PTR(z + n);
  k[1] = -n;
  k[2] = FG_T1_PTR(ht + n);
  k[3] = FG_T1_PTR(h_in + n);
  k[4] = FG_T1_PTR(h_out + n);
  k[5] = FG_T1_PTR(p->coef_table + 128);
  k[18] = g.offset;
  k[19] = g.ml;
  k[20] = g.mh;
  k[21] = g.half;
  k[22] = g.e;
  k[24] = t.ml;
  k[25] = t.mh;
  k[26] = t.round - 0x4000;
  k[27] = t.e;
  if (g.l == 22) { /* g.off = offset 2^22: x2 = (hv + gv) 2^20 + hoff2 + 2^20 offset */
    k[23] += g.off / 4;
    fastgrnn_int8_grnn2_t1(k);
  } else if (swap) {
    fastgrnn_int8_grnn_swap_t1(k);
  } else {
    fastgrnn_int8_grnn_t1(k);
  }
  return 1;
}
#else
FG_HOT static int grnn_out_fast(const fastgrnn_int8_params *p, const int8_t *z, const int8_t *ht,
                         const int8_t *h_in, int8_t *h_out, int32_t n) {
  fg_in g;
  fg_out zm, cm, o;
  int32_t hoff2;
  int swap;
  if (!fast_out(&zm, &p->zh_mul) || !fast_out(&cm, &p->ch_mul) ||
      !fast_add(&hoff2, &g, &o, &p->out_add, &swap))
    return 0;
#if defined(FG_THUMB2)
  if (g.l == 21) {
    zh_loop(&zm, z, h_in, h_out, n);
    const int32_t k[14] = {(int32_t)(intptr_t)(p->coef_table + 128), cm.in1x2, cm.in2, cm.m,
                           cm.round, cm.e, g.off, g.m, g.half, g.e, hoff2, o.m, o.round, o.e};
    fg_grnn_args a;
    a.z = z;
    a.ht = ht;
    a.h_out = h_out;
    a.z_end = z + n;
    a.k = k;
    if (swap)
      fastgrnn_int8_grnn_swap_t2(&a);
    else
      fastgrnn_int8_grnn_t2(&a);
    return 1;
  }
#endif
  if (swap)
    grnn_loop(&zm, &cm, hoff2, &g, &o, p->coef_table, z, ht, h_in, h_out, n, 1);
  else
    grnn_loop(&zm, &cm, hoff2, &g, &o, p->coef_table, z, ht, h_in, h_out, n, 0);
  return 1;
}
#endif

#if defined(FG_THUMB2)
/* FastGRNN's elementwise chain in one pass (fastgrnn_int8_ew_t2) when pre's ADD has equal
 * input scales, both bias ADDs take pre as their h side with one offset and have their
 * bias terms and tables, and every ADD/MUL has its fast form; else 0 (the passes run). */
FG_HOT static int ew_fused_fast(const fastgrnn_int8_params *p, const int8_t *xw,
                                const int8_t *hu, const int8_t *h_in, int8_t *h_out,
                                int32_t n) {
  /* one fg_in / fg_out at a time, copied into k stage by stage (a smaller stack frame) */
  const int32_t half = INT32_C(1) << 30;
  const fastgrnn_int8_binop *ua = &p->update_add, *ga = &p->gate_add;
  fg_in g;
  fg_out o;
  int32_t hoff2, k[38];
  int swap;
  fg_ew_args a;
  if (!p->update_bias || !p->gate_bias || !p->update_bias_term || !p->gate_bias_term ||
      !p->update_table || !p->gate_table || ua->in1_mult != half || ua->in1_shift != 0 ||
      ga->in1_mult != half || ga->in1_shift != 0 || ua->in1_offset != ga->in1_offset ||
      !fast_add(&hoff2, &g, &o, &p->pre, &swap) || g.l != 22)
    return 0;
  k[0] = (int32_t)(intptr_t)(xw + n);
  k[1] = (int32_t)(intptr_t)(hu + n);
  k[2] = hoff2 + g.off / 4; /* g.off = offset 2^22 */
  k[3] = o.m;
  k[4] = o.round;
  k[5] = o.e;
  k[6] = ua->in1_offset * (INT32_C(1) << 20);
  if (!fast_out(&o, ua)) return 0;
  k[7] = (int32_t)(intptr_t)(p->update_bias_term + n);
  k[8] = o.m;
  k[9] = o.round;
  k[10] = o.e;
  k[11] = (int32_t)(intptr_t)(p->update_table + 128);
  if (!fast_out(&o, ga)) return 0;
  k[12] = (int32_t)(intptr_t)(p->gate_bias_term + n);
  k[13] = o.m;
  k[14] = o.round;
  k[15] = o.e;
  k[16] = (int32_t)(intptr_t)(p->gate_table + 128);
  if (!fast_out(&o, &p->zh_mul)) return 0;
  k[17] = (int32_t)(intptr_t)(h_in + n);
  k[18] = o.in1x2;
  k[19] = o.in2;
  k[20] = o.m;
  k[21] = o.round;
  k[22] = o.e;
  if (!fast_out(&o, &p->ch_mul)) return 0;
  k[23] = (int32_t)(intptr_t)(p->coef_table + 128);
  k[24] = o.in1x2;
  k[25] = o.in2;
  k[26] = o.m;
  k[27] = o.round;
  k[28] = o.e;
  if (!fast_add(&hoff2, &g, &o, &p->out_add, &swap) || g.l != 21) return 0;
  k[29] = g.off;
  k[30] = g.m;
  k[31] = g.half;
  k[32] = g.e;
  k[33] = hoff2;
  k[34] = o.m;
  k[35] = o.round;
  k[36] = o.e;
  k[37] = (int32_t)(intptr_t)(h_out + n);
  a.k = k;
  a.neg_n = -n;
  if (swap)
    fastgrnn_int8_ew_swap_t2(&a);
  else
    fastgrnn_int8_ew_t2(&a);
  return 1;
}
#define FG_EW_FUSED(p, xw, hu, h_in, h_out, n) \
  ((p)->cell == FASTGRNN_INT8_FASTGRNN && ew_fused_fast(p, xw, hu, h_in, h_out, n))
#endif

/* h_out[j] = ADD(alpha h~ [j], beta(h[j])). */
FG_INLINE void rnn_loop(int32_t hoff2, const fg_in *g, const fg_out *o,
                        const ROM int8_t *state,
                        const int8_t *alpha_term, const int8_t *h_in, int8_t *h_out,
                        int32_t n, const int swap) {
  const int8_t *const end = h_in + n;
  while (h_in != end) {
    const int32_t a = *alpha_term++, b = LUT(state, *h_in++);
    *h_out++ = (int8_t)(swap ? add_hg(hoff2, g, o, b, a) : add_hg(hoff2, g, o, a, b));
  }
}

FG_HOT static int rnn_out_fast(const fastgrnn_int8_binop *p, const ROM int8_t *state_table,
                        const int8_t *alpha_term, const int8_t *h_in, int8_t *h_out,
                        int32_t n) {
  fg_in g;
  fg_out o;
  int32_t hoff2;
  int swap;
  if (!fast_add(&hoff2, &g, &o, p, &swap)) return 0;
  if (swap)
    rnn_loop(hoff2, &g, &o, state_table, alpha_term, h_in, h_out, n, 1);
  else
    rnn_loop(hoff2, &g, &o, state_table, alpha_term, h_in, h_out, n, 0);
  return 1;
}
#define FG_FAST(call) (call)
#else
#define FG_FAST(call) 0
#endif
#if !defined(FG_EW_FUSED)
#define FG_EW_FUSED(p, xw, hu, h_in, h_out, n) 0
#endif

#if defined(FG_THUMB1) && defined(FG_FASTPATH)
/* FastGRNN's update and gate passes in one loop (fastgrnn_int8_gates_t1) when both are
 * table[ADD(pre, bias)] with pre the h side and bias terms given; 0: the passes run one
 * by one. pre (xw) is overwritten by z, h~ goes to hu, as the two passes do. */
static int gates_t1(const fastgrnn_int8_params *p, int8_t *xw, int8_t *hu, int32_t n) {
  const fastgrnn_int8_binop *u = &p->update_add, *g = &p->gate_add;
  const int32_t half = INT32_C(1) << 30;
  int32_t k[16];
  fg_out t;
  if (n <= 0 || !p->update_bias || !p->update_table || !p->update_bias_term ||
      !p->gate_bias || !p->gate_table || !p->gate_bias_term || u->in1_mult != half ||
      u->in1_shift != 0 || g->in1_mult != half || g->in1_shift != 0 ||
      u->in1_offset != g->in1_offset || !fast_out(&t, u))
    return 0;
  k[6] = t.ml;
  k[7] = t.mh;
  k[8] = t.round - 0x4000;
  k[9] = t.e;
  if (!fast_out(&t, g)) return 0;
  k[11] = t.ml;
  k[12] = t.mh;
  k[13] = t.round - 0x4000;
  k[14] = t.e;
  k[0] = FG_T1_PTR(xw + n);
  k[1] = -n;
  k[2] = FG_T1_PTR(p->update_bias_term);
  k[3] = FG_T1_PTR(p->gate_bias_term);
  k[4] = FG_T1_PTR(hu + n);
  k[5] = u->in1_offset * (INT32_C(1) << 20);
  k[10] = FG_T1_PTR(p->update_table + 128);
  k[15] = FG_T1_PTR(p->gate_table + 128);
  fastgrnn_int8_gates_t1(k);
  return 1;
}
#endif

static int fc_ok(const fastgrnn_int8_fc *f, int32_t rows, int32_t cols) {
  return f->rows == rows && f->cols == cols && f->w && f->bias && f->mult && f->shift &&
         !(f->mask && f->idx) && (!f->idx || cols <= 255);
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
  int gates = 0; /* both gate passes done in one loop */
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
   * z -> xw; then h_out. Thumb-2: FastGRNN's whole chain in one pass where it applies;
   * Armv6-M: both gate passes in one loop. */
  if (!FG_EW_FUSED(p, xw, hu, h_in, h_out, h)) {
    if (!FG_FAST(add_vec_fast(&p->pre, xw, hu, xw, h))) add_vec(&p->pre, xw, hu, xw, h);
#if defined(FG_THUMB1) && defined(FG_FASTPATH)
    gates = p->cell == FASTGRNN_INT8_FASTGRNN && gates_t1(p, xw, hu, h);
#endif
    if (!gates && !FG_FAST(bias_vec_fast(&p->update_add, p->update_bias, p->update_bias_term,
                                         p->update_table, xw, hu, h)))
      bias_vec(&p->update_add, p->update_bias, p->update_table, xw, hu, h);
    if (p->cell == FASTGRNN_INT8_FASTGRNN) {
      if (!gates && !FG_FAST(bias_vec_fast(&p->gate_add, p->gate_bias, p->gate_bias_term,
                                           p->gate_table, xw, xw, h)))
        bias_vec(&p->gate_add, p->gate_bias, p->gate_table, xw, xw, h);
      if (!FG_FAST(grnn_out_fast(p, xw, hu, h_in, h_out, h))) grnn_out(p, xw, hu, h_in, h_out, h);
    } else if (!FG_FAST(rnn_out_fast(&p->out_add, p->state_table, hu, h_in, h_out, h))) {
      rnn_out(&p->out_add, p->state_table, hu, h_in, h_out, h);
    }
  }
  if (logits) fc8(&p->classifier, h_out, logits);
  return FASTGRNN_INT8_OK;
}
