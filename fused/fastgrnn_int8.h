// SPDX-License-Identifier: Apache-2.0
/* One int8 time step of FastGRNN / FastRNN, bit-exact with TFLM's builtin int8 graph.
 *
 * C99, fixed-width integers, no heap, no globals, no TFLM headers. The parameters are
 * derived from the builtin int8 step model (x_t, h_{t-1}) -> (h_t, logits) by
 * tf_fastgrnn/fused.py; every op rescales and rounds as TFLM's reference int8 kernels do
 * (FULLY_CONNECTED per channel; ADD/SUB with a 20-bit left shift and double rounding;
 * MUL), and every unary chain of the graph (LOGISTIC, TANH and the scalar ADD/SUB/MUL
 * after them) is one 256-entry int8 -> int8 table.
 *
 * Weight storage per matrix (rows = outputs, cols = inputs):
 *   dense:  w = rows * cols int8, row-major;             mask = NULL, idx = NULL
 *   packed: mask = rows * ceil(cols / 8) bytes, bit (c % 8) of byte c / 8 of row r set
 *           iff w[r][c] != 0; w = the non-zeros, row-major.   1 byte per non-zero plus
 *           cols / 8 bytes per row (the smallest storage at moderate sparsity).
 *   sparse: idx = per row r: n_r (uint8), then the n_r column indices (uint8, ascending)
 *           of its non-zeros; w = the non-zeros, row-major. cols <= 255. 2 bytes per
 *           non-zero plus 1 byte per row; the cost of a row is n_r MACs (the fastest
 *           storage below ~50 % density without SIMD, ~30 % with it).
 * Every storage works in every build; fused.extract chooses per matrix (dense where the
 * SIMD rows or dense loops win, sparse where the non-zeros are few, packed for size).
 */
#ifndef FASTGRNN_INT8_H_
#define FASTGRNN_INT8_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Where the arrays the params point to live: program memory on AVR (avr-gcc's __flash,
 * -std=gnu99), plain const memory elsewhere. The params struct itself is ordinary const
 * data (RAM on AVR: avr-gcc 5.4 cannot test __flash pointers read from __flash). */
#if defined(__AVR__) && defined(__FLASH)
#define FASTGRNN_INT8_ROM __flash
#else
#define FASTGRNN_INT8_ROM
#endif

#define FASTGRNN_INT8_OK 0
#define FASTGRNN_INT8_ERR_NULL (-1)    /* a required pointer is NULL */
#define FASTGRNN_INT8_ERR_DIMS (-2)    /* inconsistent dimensions or cell kind */
#define FASTGRNN_INT8_ERR_SCRATCH (-3) /* scratch buffer missing or too small */

#define FASTGRNN_INT8_FASTRNN 0
#define FASTGRNN_INT8_FASTGRNN 1

/* int8 FULLY_CONNECTED: out[r] = clamp(MBQM(bias[r] + sum_c x[c] w[r][c], mult[r],
 * shift[r]) + out_offset). bias already holds TFLM's bias + input_offset * sum_c w[r][c]. */
typedef struct {
  int32_t rows, cols;
  const FASTGRNN_INT8_ROM int8_t *w;
  const FASTGRNN_INT8_ROM uint8_t *mask; /* bitmap-packed, or NULL */
  const FASTGRNN_INT8_ROM uint8_t *idx;  /* sparse (row counts + column indices), or NULL */
  const FASTGRNN_INT8_ROM int32_t *bias; /* [rows] */
  const FASTGRNN_INT8_ROM int32_t *mult; /* [rows] */
  const FASTGRNN_INT8_ROM int8_t *shift; /* [rows] */
  int32_t out_offset;
  int8_t act_min, act_max;
} fastgrnn_int8_fc;

/* int8 ADD / SUB (all fields) or MUL (in offsets, out_mult/out_shift/out_offset). */
typedef struct {
  int32_t in1_offset, in2_offset;
  int32_t in1_mult, in2_mult, out_mult;
  int32_t out_offset;
  int8_t in1_shift, in2_shift, out_shift;
  int8_t act_min, act_max;
} fastgrnn_int8_binop;

typedef struct {
  int32_t cell;                 /* FASTGRNN_INT8_FASTRNN or FASTGRNN_INT8_FASTGRNN */
  int32_t input_dim, hidden_dim, num_classes;
  int32_t w_factors, u_factors; /* 1 (full) or 2 (low rank) */
  fastgrnn_int8_fc w[2], u[2];  /* x -> w[0] (-> w[1]); h -> u[0] (-> u[1]) */
  fastgrnn_int8_fc classifier;  /* h_t -> logits */
  fastgrnn_int8_binop pre;      /* ADD(xW, hU) */
  const FASTGRNN_INT8_ROM int8_t *gate_bias; /* [H] or NULL (no ADD); FastGRNN only */
  fastgrnn_int8_binop gate_add; /* ADD(pre, gate_bias) */
  const FASTGRNN_INT8_ROM int8_t *update_bias; /* [H] or NULL (no ADD) */
  fastgrnn_int8_binop update_add;
  /* Tables, indexed by value + 128:
   *   FastGRNN: gate_table gate_pre -> z, update_table update_pre -> h~ (NULL:
   *             identity, e.g. ReLU fused into the bias ADD), coef_table z -> zeta (1 - z) + nu.
   *   FastRNN:  update_table update_pre -> alpha h~, state_table h -> beta h. */
  const FASTGRNN_INT8_ROM int8_t *gate_table, *update_table, *coef_table, *state_table;
  fastgrnn_int8_binop zh_mul;   /* FastGRNN: MUL(z, h) */
  fastgrnn_int8_binop ch_mul;   /* FastGRNN: MUL(coef, h~) */
  fastgrnn_int8_binop out_add;  /* FastGRNN: ADD(coef h~, z h); FastRNN: ADD(alpha h~, beta h) */
  /* Optional, for speed (NULL: computed from gate_bias / update_bias each step; the size
   * build never reads them): the bias operand of gate_add / update_add as TFLM's ADD scales
   * it, [H] int32: MultiplyByQuantizedMultiplierSmallerThanOneExp((bias[j] + in2_offset)
   * * 2^20, in2_mult, in2_shift). */
  const FASTGRNN_INT8_ROM int32_t *gate_bias_term, *update_bias_term;
} fastgrnn_int8_params;

typedef struct {
  int8_t *buf;
  int32_t size; /* bytes; at least fastgrnn_int8_scratch_bytes(params) */
} fastgrnn_int8_scratch;

/* Bytes of scratch one step needs (2 H + the largest low rank); < 0 on bad params. */
int32_t fastgrnn_int8_scratch_bytes(const fastgrnn_int8_params *p);

/* One step. h_out may equal h_in (in place). logits may be NULL (not computed).
 * Returns FASTGRNN_INT8_OK or a negative FASTGRNN_INT8_ERR_* code. */
int fastgrnn_int8_step(const fastgrnn_int8_params *p, const int8_t *x, const int8_t *h_in,
                       int8_t *h_out, int8_t *logits, fastgrnn_int8_scratch *scratch);

#ifdef __cplusplus
}
#endif

#endif /* FASTGRNN_INT8_H_ */
