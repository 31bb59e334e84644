// SPDX-License-Identifier: Apache-2.0
/* The fused kernel's parameters as one byte blob: the custom_options of the FASTGRNN_INT8
 * custom op in model_int8_fused.tflite (written by tf_fastgrnn/fused.py, options_blob).
 *
 * C99, no heap, no TFLM headers. The parser fills a fastgrnn_int8_params whose array
 * pointers point INTO the blob (the weights stay in flash) or, for what the blob stores
 * compactly (COMPACT) or asks to expand (EXPAND), into caller-provided RAM it decodes
 * into, after checking every count, dimension, range and the exact size, so a malformed
 * blob gives an error code, never an out-of-bounds read in the kernel; and every value
 * the kernel computes with (FC bias with its shift, MUL shift, stored bias terms: see
 * docs/fused_kernel.md) is bounded so that no int32 operation of any build overflows,
 * whatever x and h are (tests/fuzz/ fuzzes the two under ASan + UBSan).
 *
 * Layout, version 3 (2 + sparse rows), little-endian. Two sections, int32 first, so every int32 array sits
 * at a multiple of 4 from the blob start (the blob itself must be 4-byte aligned, which a
 * flatbuffer vector of the model is when the model data is: TFLM's examples use
 * alignas(16)):
 *
 *   int32 section
 *     magic "FGRN" (0x4E524746), version, cell, input_dim, hidden_dim, num_classes,
 *     w_factors, u_factors, flags
 *       flags bit k (k = 0..5): array present, in the order gate_bias, update_bias,
 *       gate_table, update_table, coef_table, state_table;
 *       flags bit 6 / 7: gate_bias_term / update_bias_term present (optional int32 [H]
 *       arrays of the kernel's fast path; only with their bias vector);
 *       flags bit 8 + k (k = 0..5): binop present, in the order pre, gate_add,
 *       update_add, zh_mul, ch_mul, out_add;
 *       flags bit 14 (COMPACT): per-row shifts and biases bit-packed, tables
 *       delta-coded (below), all decoded into RAM by the parser;
 *       flags bit 15 (EXPAND): the parser expands every bitmap-packed matrix into dense
 *       int8 rows and computes the int32 bias terms the blob lacks, in RAM (the kernel's
 *       fast path at the packed file size);
 *       flags bit 16 + k (k = 0 .. number of FC layers - 1, in the order below): layer k
 *       is stored as sparse rows (nnz >= 0 counts its non-zeros; cols <= 255); never
 *       expanded, the kernel reads them in place
 *     per FC layer (w[0] (, w[1]), u[0] (, u[1]), classifier):
 *       rows, cols, out_offset, nnz (-1: dense),
 *       plain: bias[rows] (input offset folded in), mult[rows]
 *       COMPACT: in_offset (the negated input zero point), mult[rows]
 *     per present binop: in1_offset, in2_offset, in1_mult, in2_mult, out_mult, out_offset
 *     gate_bias_term[H], update_bias_term[H] where present
 *   int8 section
 *     per FC layer: act_min, act_max,
 *       plain: shift[rows]
 *       COMPACT: shift_min, shift_bits (0..6), bias_bits (0..32), then shift[r] - shift_min
 *         as rows x shift_bits bits, then the raw int32 bias (TFLM's, before folding) as
 *         rows x bias_bits bits, two's complement (bit streams: value k at bits
 *         k*bits .. k*bits+bits-1, bit i = bit i%8 of byte i/8; each stream padded to a
 *         byte); the parser folds bias + in_offset * sum_c w[r][c] itself;
 *       then packed: mask[rows * ceil(cols/8)], w[nnz]; sparse: idx[rows + nnz] (per
 *       row its count, then its column indices, strictly ascending), w[nnz];
 *       dense: w[rows * cols]
 *     per present binop: in1_shift, in2_shift, out_shift, act_min, act_max
 *     present arrays in flag order: gate_bias[H], update_bias[H], then tables:
 *       plain: 256 int8
 *       COMPACT: first (int8, table[0]), order (1 or 2), start, count (uint8), dmin
 *         (int16), bits (uint8, 0..10), count x bits bits e[k]; the deltas
 *         d[i] = table[i] - table[i-1] are 0 outside start <= i < start + count, inside
 *         d[i] = dmin + e[i - start] (order 1), or d[i] = d[i-1] + dmin + e[i - start]
 *         with d[start-1] = 0 (order 2)
 *   nothing after (the size must match exactly).
 *
 * RAM: plain blobs without EXPAND need none (every pointer points into the blob): with
 * sparse or dense rows and the bias terms stored, the kernel's fast form runs from flash;
 * fastgrnn_int8_options_ram_bytes gives the bytes the others decode into.
 */
#ifndef FASTGRNN_INT8_OPTIONS_H_
#define FASTGRNN_INT8_OPTIONS_H_

#include <stdint.h>

#include "fastgrnn_int8.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FASTGRNN_INT8_OPTIONS_MAGIC 0x4E524746u /* "FGRN" in little-endian bytes */
#define FASTGRNN_INT8_OPTIONS_VERSION 3
#define FASTGRNN_INT8_OPT_COMPACT (1 << 14)
#define FASTGRNN_INT8_OPT_EXPAND (1 << 15)

/* Beyond fastgrnn_int8.h's codes (-1 .. -3). */
#define FASTGRNN_INT8_ERR_FORMAT (-4)    /* not a FASTGRNN_INT8 blob, or another version */
#define FASTGRNN_INT8_ERR_SIZE (-5)      /* truncated, or bytes left over */
#define FASTGRNN_INT8_ERR_ALIGN (-6)     /* blob not 4-byte aligned, or a big-endian target */
#define FASTGRNN_INT8_ERR_VALUE (-7)     /* a value out of range (shift, mask, flags, ...) */

/* Bytes of RAM fastgrnn_int8_parse_options needs for this blob (0 for a plain blob
 * without EXPAND), after checking all of it; or a negative FASTGRNN_INT8_ERR_* code. */
int32_t fastgrnn_int8_options_ram_bytes(const uint8_t *data, uint32_t size);

/* Fills *p from the blob: pointers into data, and into ram (4-byte aligned, ram_size
 * bytes, at least fastgrnn_int8_options_ram_bytes; may be NULL when that is 0) for what
 * the blob stores compactly or asks to expand; ram must outlive p. Returns
 * FASTGRNN_INT8_OK, or a negative FASTGRNN_INT8_ERR_* code (p then holds nothing usable;
 * ram too small: FASTGRNN_INT8_ERR_SCRATCH). On success the params also pass the
 * kernel's own check: fastgrnn_int8_scratch_bytes(p) > 0. */
int fastgrnn_int8_parse_options(const uint8_t *data, uint32_t size, void *ram,
                                uint32_t ram_size, fastgrnn_int8_params *p);

/* A short English reason for an error code (for logs). */
const char *fastgrnn_int8_error_string(int code);

#ifdef __cplusplus
}
#endif

#endif /* FASTGRNN_INT8_OPTIONS_H_ */
