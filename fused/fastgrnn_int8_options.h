/* The fused kernel's parameters as one byte blob: the custom_options of the FASTGRNN_INT8
 * custom op in model_int8_fused.tflite (written by tf_fastgrnn/fused.py, options_blob).
 *
 * C99, no heap, no TFLM headers. The parser fills a fastgrnn_int8_params whose array
 * pointers point INTO the blob (nothing is copied: the weights stay in flash), after
 * checking every count, dimension, range and the exact size, so a malformed blob gives
 * an error code, never an out-of-bounds read in the kernel.
 *
 * Layout, version 1, little-endian. Two sections, int32 first, so every int32 array sits
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
 *       update_add, zh_mul, ch_mul, out_add
 *     per FC layer (w[0] (, w[1]), u[0] (, u[1]), classifier):
 *       rows, cols, out_offset, nnz (-1: dense), bias[rows], mult[rows]
 *     per present binop: in1_offset, in2_offset, in1_mult, in2_mult, out_mult, out_offset
 *     gate_bias_term[H], update_bias_term[H] where present
 *   int8 section
 *     per FC layer: act_min, act_max, shift[rows], then packed: mask[rows * ceil(cols/8)],
 *       w[nnz]; dense: w[rows * cols]
 *     per present binop: in1_shift, in2_shift, out_shift, act_min, act_max
 *     present arrays in flag order: gate_bias[H], update_bias[H], tables of 256
 *   nothing after (the size must match exactly).
 */
#ifndef FASTGRNN_INT8_OPTIONS_H_
#define FASTGRNN_INT8_OPTIONS_H_

#include <stdint.h>

#include "fastgrnn_int8.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FASTGRNN_INT8_OPTIONS_MAGIC 0x4E524746u /* "FGRN" in little-endian bytes */
#define FASTGRNN_INT8_OPTIONS_VERSION 1

/* Beyond fastgrnn_int8.h's codes (-1 .. -3). */
#define FASTGRNN_INT8_ERR_FORMAT (-4)    /* not a FASTGRNN_INT8 blob, or another version */
#define FASTGRNN_INT8_ERR_SIZE (-5)      /* truncated, or bytes left over */
#define FASTGRNN_INT8_ERR_ALIGN (-6)     /* blob not 4-byte aligned, or a big-endian target */
#define FASTGRNN_INT8_ERR_VALUE (-7)     /* a value out of range (shift, mask, flags, ...) */

/* Fills *p from the blob (pointers into data). Returns FASTGRNN_INT8_OK, or a negative
 * FASTGRNN_INT8_ERR_* code (p then holds nothing usable). On success the params also
 * pass the kernel's own check: fastgrnn_int8_scratch_bytes(p) > 0. */
int fastgrnn_int8_parse_options(const uint8_t *data, uint32_t size, fastgrnn_int8_params *p);

/* A short English reason for an error code (for logs). */
const char *fastgrnn_int8_error_string(int code);

#ifdef __cplusplus
}
#endif

#endif /* FASTGRNN_INT8_OPTIONS_H_ */
