// SPDX-License-Identifier: Apache-2.0
/* Parser of the FASTGRNN_INT8 custom options blob; see fastgrnn_int8_options.h. */
#include "fastgrnn_int8_options.h"

#include <string.h>

enum { kNumArrays = 6, kNumBinops = 6, kNumTables = 4 };

typedef struct {
  const uint8_t *data;
  uint32_t size;
  uint32_t pos; /* int32 section cursor, then int8 section cursor */
  int error;
  int decode;      /* 0: only count and check; 1: decode into ram */
  uint8_t *ram;
  uint32_t ram_size, ram_used;
} reader;

static int32_t read_i32(reader *r) {
  int32_t v = 0;
  if (r->error) return 0;
  if (r->size - r->pos < 4 || r->pos > r->size) {
    r->error = FASTGRNN_INT8_ERR_SIZE;
    return 0;
  }
  memcpy(&v, r->data + r->pos, 4); /* little-endian host checked by the caller */
  r->pos += 4;
  return v;
}

/* A pointer to n items of `width` bytes at the cursor (NULL and an error if short). */
static const uint8_t *take(reader *r, int32_t n, uint32_t width) {
  const uint8_t *at;
  if (r->error) return 0;
  if (n < 0 || r->pos > r->size || (uint32_t)n > (r->size - r->pos) / width) {
    r->error = FASTGRNN_INT8_ERR_SIZE;
    return 0;
  }
  at = r->data + r->pos;
  r->pos += (uint32_t)n * width;
  return at;
}

static int8_t read_i8(reader *r) {
  const uint8_t *b = take(r, 1, 1);
  return b ? (int8_t)*b : 0;
}

static uint8_t read_u8(reader *r) {
  const uint8_t *b = take(r, 1, 1);
  return b ? *b : 0;
}

/* n bytes of decode memory, 4-byte aligned (NULL when counting; an error when full). */
static void *alloc(reader *r, uint32_t n) {
  void *at;
  n = (n + 3u) & ~3u;
  if (r->error) return 0;
  if (!r->decode) {
    r->ram_used += n;
    return 0;
  }
  if (!r->ram || n > r->ram_size - r->ram_used) {
    r->error = FASTGRNN_INT8_ERR_SCRATCH;
    return 0;
  }
  at = r->ram + r->ram_used;
  r->ram_used += n;
  return at;
}

/* Bit k of a little-endian bit stream (bit k % 8 of byte k / 8). */
static uint32_t bits_at(const uint8_t *s, uint32_t pos, uint32_t n) {
  uint32_t v = 0, i;
  for (i = 0; i < n; ++i, ++pos) v |= (uint32_t)((s[pos >> 3] >> (pos & 7u)) & 1u) << i;
  return v;
}

static int popcount8(uint32_t v) {
  int n = 0;
  for (; v; v &= v - 1u) ++n;
  return n;
}

/* Expected dims of FC layer k (0 .. w_factors + u_factors), -1 where free (a rank). */
static int fc_dims_ok(const fastgrnn_int8_params *p, int32_t rows, int32_t cols, int k) {
  const int32_t d = p->input_dim, h = p->hidden_dim;
  const int wf = p->w_factors, uf = p->u_factors;
  if (rows <= 0 || cols <= 0 || rows > 4096 || cols > 4096) return 0;
  if (k < wf) { /* x -> (rank ->) H */
    if (k == 0 && cols != d) return 0;
    if (k == wf - 1 && rows != h) return 0;
    return 1;
  }
  if (k < wf + uf) {
    if (k == wf && cols != h) return 0;
    if (k == wf + uf - 1 && rows != h) return 0;
    return 1;
  }
  return rows == p->num_classes && cols == h;
}

/* A compact table (see the header) into out[256]; FASTGRNN_INT8_OK or an error code. */
static int decode_table(reader *r, int8_t *out) {
  const int32_t first = read_i8(r);
  const uint32_t order = read_u8(r), start = read_u8(r), count = read_u8(r);
  const uint8_t *lo = take(r, 2, 1);
  const uint32_t bits = read_u8(r);
  const uint8_t *stream;
  int32_t dmin, v = first, d = 0;
  uint32_t i;
  if (r->error) return r->error;
  dmin = (int16_t)(uint16_t)(lo[0] | (lo[1] << 8));
  if ((order != 1 && order != 2) || bits > 10 || (count == 0 && (start || bits)) ||
      (count && (start < 1 || start + count > 256)))
    return FASTGRNN_INT8_ERR_VALUE;
  stream = take(r, (int32_t)((count * bits + 7) / 8), 1);
  if (r->error) return r->error;
  out[0] = (int8_t)first;
  for (i = 1; i < 256; ++i) {
    if (i >= start && i < start + count) {
      const int32_t e = dmin + (int32_t)bits_at(stream, (i - start) * bits, bits);
      d = order == 2 ? d + e : e;
      if (d < -255 || d > 255) return FASTGRNN_INT8_ERR_VALUE;
      v += d;
      if (v < -128 || v > 127) return FASTGRNN_INT8_ERR_VALUE;
    }
    out[i] = (int8_t)v;
  }
  return FASTGRNN_INT8_OK;
}

/* TFLM's MultiplyByQuantizedMultiplier for shift <= 0 (the bias operand of an ADD). */
static int32_t mbqm_le0(int32_t x, int32_t mult, int32_t shift) {
  const int64_t ab = (int64_t)x * mult;
  const int64_t nudge = ab >= 0 ? (INT64_C(1) << 30) : (1 - (INT64_C(1) << 30));
  const int32_t y = (x == INT32_MIN && mult == INT32_MIN) ? INT32_MAX
                                                          : (int32_t)((ab + nudge) / (INT64_C(1) << 31));
  const int32_t e = -shift, mask = (int32_t)((UINT32_C(1) << e) - 1u);
  const int32_t threshold = (mask >> 1) + (y < 0 ? 1 : 0);
  return (y >> e) + ((y & mask) > threshold ? 1 : 0);
}

/* The int32 bias operand of ADD(pre, bias) for j < n (see fastgrnn_int8.h). */
static void bias_term(const fastgrnn_int8_binop *b, const int8_t *bias, int32_t *out,
                      int32_t n) {
  int32_t j;
  for (j = 0; j < n; ++j)
    out[j] = mbqm_le0((bias[j] + b->in2_offset) * (INT32_C(1) << 20), b->in2_mult,
                      b->in2_shift);
}

/* A stored bias term must be the one bias_term computes: the fast path adds it where
 * the other paths rescale the bias, and 2 * term enters its int32 sums (any other value
 * breaks bit-exactness between builds, or overflows). */
static int bias_terms_ok(const fastgrnn_int8_binop *b, const int8_t *bias,
                         const int32_t *term, int32_t n) {
  int32_t j, want;
  for (j = 0; j < n; ++j) {
    bias_term(b, bias + j, &want, 1);
    if (term[j] != want) return 0;
  }
  return 1;
}

/* An FC row's int32 arithmetic cannot overflow in any form of the kernel: the
 * accumulator's bound |bias| + cols 2^14 (int8 x int8 products), times 2^shift for a
 * left shift, stays below 2^31 - 2^10 (room for the rounding and the output offset). */
static int fc_row_ok(int64_t bias, int32_t cols, int32_t shift) {
  int64_t bound = (bias < 0 ? -bias : bias) + (int64_t)cols * 16384;
  if (shift > 0) bound *= INT64_C(1) << shift; /* < 2^33 * 2^31: no int64 overflow */
  return bound < (INT64_C(1) << 31) - 1024;
}

static int parse(const uint8_t *data, uint32_t size, reader *r, fastgrnn_int8_params *p) {
  fastgrnn_int8_fc *fcs[5];
  int32_t nnz[5], in_offset[5];
  fastgrnn_int8_binop *binops[kNumBinops];
  const int8_t **arrays[kNumArrays];
  int32_t flags, version, n_fc, k, j, compact, expand;
  memset(p, 0, sizeof *p);
  r->data = data;
  r->size = size;
  r->pos = 0;
  r->error = 0;
  if ((uint32_t)read_i32(r) != FASTGRNN_INT8_OPTIONS_MAGIC) {
    return r->error ? r->error : FASTGRNN_INT8_ERR_FORMAT;
  }
  version = read_i32(r);
  if (!r->error && version != FASTGRNN_INT8_OPTIONS_VERSION) return FASTGRNN_INT8_ERR_FORMAT;
  p->cell = read_i32(r);
  p->input_dim = read_i32(r);
  p->hidden_dim = read_i32(r);
  p->num_classes = read_i32(r);
  p->w_factors = read_i32(r);
  p->u_factors = read_i32(r);
  flags = read_i32(r);
  if (r->error) return r->error;
  if (p->input_dim <= 0 || p->hidden_dim <= 0 || p->num_classes <= 0 ||
      p->input_dim > 4096 || p->hidden_dim > 4096 || p->num_classes > 4096 ||
      p->w_factors < 1 || p->w_factors > 2 || p->u_factors < 1 || p->u_factors > 2)
    return FASTGRNN_INT8_ERR_DIMS;
  if (flags & ~0x1FFFFF) return FASTGRNN_INT8_ERR_VALUE;
  /* A bias term (bits 6, 7) only with its bias vector (bits 0, 1). */
  if (((flags >> 6) & 3) & ~(flags & 3)) return FASTGRNN_INT8_ERR_VALUE;
  compact = (flags & FASTGRNN_INT8_OPT_COMPACT) != 0;
  expand = (flags & FASTGRNN_INT8_OPT_EXPAND) != 0;

  n_fc = 0;
  for (k = 0; k < p->w_factors; ++k) fcs[n_fc++] = &p->w[k];
  for (k = 0; k < p->u_factors; ++k) fcs[n_fc++] = &p->u[k];
  fcs[n_fc++] = &p->classifier;
  /* Sparse flags (bits 16 + k) only for layers that exist. */
  if ((flags >> 16) & ~((1 << n_fc) - 1)) return FASTGRNN_INT8_ERR_VALUE;
  binops[0] = &p->pre;
  binops[1] = &p->gate_add;
  binops[2] = &p->update_add;
  binops[3] = &p->zh_mul;
  binops[4] = &p->ch_mul;
  binops[5] = &p->out_add;
  arrays[0] = (const int8_t **)&p->gate_bias;
  arrays[1] = (const int8_t **)&p->update_bias;
  arrays[2] = (const int8_t **)&p->gate_table;
  arrays[3] = (const int8_t **)&p->update_table;
  arrays[4] = (const int8_t **)&p->coef_table;
  arrays[5] = (const int8_t **)&p->state_table;

  /* int32 section. */
  for (k = 0; k < n_fc; ++k) {
    fastgrnn_int8_fc *f = fcs[k];
    f->rows = read_i32(r);
    f->cols = read_i32(r);
    f->out_offset = read_i32(r);
    nnz[k] = read_i32(r);
    if (r->error) return r->error;
    if (!fc_dims_ok(p, f->rows, f->cols, k)) return FASTGRNN_INT8_ERR_DIMS;
    if (nnz[k] < -1 || nnz[k] > f->rows * f->cols || f->out_offset < -128 ||
        f->out_offset > 127)
      return FASTGRNN_INT8_ERR_VALUE;
    /* Sparse rows: a count, column indices that fit one byte. */
    if ((flags >> (16 + k)) & 1 && (nnz[k] < 0 || f->cols > 255)) return FASTGRNN_INT8_ERR_VALUE;
    if (compact) {
      in_offset[k] = read_i32(r);
      if (!r->error && (in_offset[k] < -127 || in_offset[k] > 128)) return FASTGRNN_INT8_ERR_VALUE;
    } else {
      f->bias = (const int32_t *)take(r, f->rows, 4);
    }
    f->mult = (const int32_t *)take(r, f->rows, 4);
    if (r->error) return r->error;
    for (j = 0; j < f->rows; ++j)
      if (f->mult[j] < 0) return FASTGRNN_INT8_ERR_VALUE;
  }
  for (k = 0; k < kNumBinops; ++k) {
    fastgrnn_int8_binop *b = binops[k];
    if (!(flags & (1 << (8 + k)))) continue;
    b->in1_offset = read_i32(r);
    b->in2_offset = read_i32(r);
    b->in1_mult = read_i32(r);
    b->in2_mult = read_i32(r);
    b->out_mult = read_i32(r);
    b->out_offset = read_i32(r);
    if (r->error) return r->error;
    /* Offsets are negated int8 zero points (in) or a zero point (out); multipliers from
     * QuantizeMultiplier lie in [0, 2^31). */
    if (b->in1_offset < -127 || b->in1_offset > 128 || b->in2_offset < -127 ||
        b->in2_offset > 128 || b->out_offset < -128 || b->out_offset > 127 ||
        b->in1_mult < 0 || b->in2_mult < 0 || b->out_mult < 0)
      return FASTGRNN_INT8_ERR_VALUE;
  }

  /* Optional int32 bias terms [H] (the kernel's fast path; NULL: computed per step). */
  if (flags & (1 << 6)) p->gate_bias_term = (const int32_t *)take(r, p->hidden_dim, 4);
  if (flags & (1 << 7)) p->update_bias_term = (const int32_t *)take(r, p->hidden_dim, 4);
  if (r->error) return r->error;

  /* int8 section. */
  for (k = 0; k < n_fc; ++k) {
    fastgrnn_int8_fc *f = fcs[k];
    const int32_t row_bytes = (f->cols + 7) / 8;
    const uint8_t *shift_bits = 0, *bias_bits = 0, *mask = 0;
    int32_t shift_min = 0, n_shift_bits = 0, n_bias_bits = 0;
    f->act_min = read_i8(r);
    f->act_max = read_i8(r);
    if (compact) {
      shift_min = read_i8(r);
      n_shift_bits = read_u8(r);
      n_bias_bits = read_u8(r);
      if (!r->error && (n_shift_bits > 6 || n_bias_bits > 32)) return FASTGRNN_INT8_ERR_VALUE;
      shift_bits = take(r, (f->rows * n_shift_bits + 7) / 8, 1);
      bias_bits = take(r, (int32_t)(((uint32_t)f->rows * (uint32_t)n_bias_bits + 7u) / 8u), 1);
    } else {
      f->shift = (const int8_t *)take(r, f->rows, 1);
    }
    if (r->error) return r->error;
    if (f->act_min > f->act_max) return FASTGRNN_INT8_ERR_VALUE;
    if (compact) {
      int8_t *shift = (int8_t *)alloc(r, (uint32_t)f->rows);
      for (j = 0; j < f->rows; ++j) {
        const int32_t s = shift_min + (int32_t)bits_at(shift_bits, (uint32_t)(j * n_shift_bits),
                                                       (uint32_t)n_shift_bits);
        if (s < -31 || s > 31) return FASTGRNN_INT8_ERR_VALUE;
        if (shift) shift[j] = (int8_t)s;
      }
      f->shift = shift;
    } else {
      for (j = 0; j < f->rows; ++j)
        if (f->shift[j] < -31 || f->shift[j] > 31 ||
            !fc_row_ok(f->bias[j], f->cols, f->shift[j]))
          return FASTGRNN_INT8_ERR_VALUE;
    }
    if (nnz[k] < 0) {
      f->mask = 0;
      f->w = (const int8_t *)take(r, f->rows * f->cols, 1);
    } else if ((flags >> (16 + k)) & 1) {
      /* The kernel trusts the rows: their counts must add up to nnz exactly and every
       * row's column indices must ascend strictly below cols. */
      const uint8_t *idx = take(r, f->rows + nnz[k], 1);
      int32_t count = 0, at = 0;
      if (r->error) return r->error;
      for (j = 0; j < f->rows; ++j) {
        const int32_t n = idx[at++];
        int32_t c, last = -1;
        count += n;
        if (count > nnz[k]) return FASTGRNN_INT8_ERR_VALUE;
        for (c = 0; c < n; ++c, ++at) {
          if (idx[at] <= last || idx[at] >= f->cols) return FASTGRNN_INT8_ERR_VALUE;
          last = idx[at];
        }
      }
      if (count != nnz[k]) return FASTGRNN_INT8_ERR_VALUE;
      f->idx = idx;
      f->w = (const int8_t *)take(r, nnz[k], 1);
    } else {
      /* The kernel trusts the mask: its bits must count exactly nnz values and none may
       * point past the last column. */
      const uint8_t last = (uint8_t)(f->cols % 8 ? 0xFFu << (f->cols % 8) : 0);
      int32_t count = 0;
      mask = take(r, f->rows * row_bytes, 1);
      if (r->error) return r->error;
      for (j = 0; j < f->rows * row_bytes; ++j) {
        if (j % row_bytes == row_bytes - 1 && (mask[j] & last)) return FASTGRNN_INT8_ERR_VALUE;
        count += popcount8(mask[j]);
      }
      if (count != nnz[k]) return FASTGRNN_INT8_ERR_VALUE;
      f->mask = mask;
      f->w = (const int8_t *)take(r, nnz[k], 1);
    }
    if (r->error) return r->error;
    if (compact) { /* bias = raw bias + input offset * row sum (TFLM's, folded) */
      int32_t *bias = (int32_t *)alloc(r, 4u * (uint32_t)f->rows);
      const int8_t *w = f->w;
      const uint32_t nb = (uint32_t)n_bias_bits;
      const uint8_t *sp = f->idx;
      if (r->error) return r->error;
      for (j = 0; j < f->rows; ++j) {
        int64_t sum = 0, v;
        int32_t c;
        uint32_t raw = nb ? bits_at(bias_bits, (uint32_t)j * nb, nb) : 0;
        if (nb && nb < 32 && (raw >> (nb - 1))) raw |= ~((UINT32_C(1) << nb) - 1u);
        int32_t n = f->cols;
        if (sp) { /* sparse: the row's count, then its column indices */
          n = *sp;
          sp += 1 + n;
        }
        for (c = 0; c < n; ++c) {
          if (mask && !((mask[j * row_bytes + c / 8] >> (c % 8)) & 1)) continue;
          sum += *w++;
        }
        v = (int64_t)(int32_t)raw + (int64_t)in_offset[k] * sum;
        if (!fc_row_ok(v, f->cols,
                       shift_min + (int32_t)bits_at(shift_bits, (uint32_t)(j * n_shift_bits),
                                                    (uint32_t)n_shift_bits)))
          return FASTGRNN_INT8_ERR_VALUE;
        if (bias) bias[j] = (int32_t)v;
      }
      f->bias = bias;
    }
    if (expand && mask) { /* bitmap-packed -> dense rows (the kernel's fast dot products) */
      int8_t *dense = (int8_t *)alloc(r, (uint32_t)(f->rows * f->cols));
      if (r->error) return r->error;
      if (dense) {
        const int8_t *w = f->w;
        for (j = 0; j < f->rows * f->cols; ++j) {
          const int32_t row = j / f->cols, c = j % f->cols;
          dense[j] = ((mask[row * row_bytes + c / 8] >> (c % 8)) & 1) ? *w++ : 0;
        }
      }
      f->mask = 0;
      f->w = dense;
    }
  }
  for (k = 0; k < kNumBinops; ++k) {
    fastgrnn_int8_binop *b = binops[k];
    if (!(flags & (1 << (8 + k)))) continue;
    b->in1_shift = read_i8(r);
    b->in2_shift = read_i8(r);
    b->out_shift = read_i8(r);
    b->act_min = read_i8(r);
    b->act_max = read_i8(r);
    if (r->error) return r->error;
    /* ADD's shifts are <= 0 (the kernel's mbqm_add relies on it); MUL's within [-31, 15]:
     * its product of two int8 differences (|p| <= 255^2) shifted left stays below
     * 2^31 - 2^10, so the output offset adds without overflow. */
    if (b->in1_shift < -31 || b->in1_shift > 0 || b->in2_shift < -31 || b->in2_shift > 0 ||
        b->out_shift < -31 || b->out_shift > 15 || b->act_min > b->act_max ||
        ((k != 3 && k != 4) && b->out_shift > 0))
      return FASTGRNN_INT8_ERR_VALUE;
  }
  for (k = 0; k < kNumArrays; ++k) {
    if (!(flags & (1 << k))) continue;
    if (k < 2 || !compact) {
      *arrays[k] = (const int8_t *)take(r, k < 2 ? p->hidden_dim : 256, 1);
    } else {
      int8_t table[256];
      int8_t *out = (int8_t *)alloc(r, 256);
      const int rc = r->error ? r->error : decode_table(r, table);
      if (rc) return rc;
      if (out) memcpy(out, table, 256);
      *arrays[k] = out;
    }
  }
  if (r->error) return r->error;
  if (r->pos != size) return FASTGRNN_INT8_ERR_SIZE;

  /* Which parts each cell needs: pre and out_add always; a bias with its ADD; FastGRNN
   * its two MULs and the coef table; FastRNN no gate. */
  if ((flags & (1 << 8)) == 0 || (flags & (1 << 13)) == 0) return FASTGRNN_INT8_ERR_VALUE;
  if (!(flags & (1 << 0)) != !(flags & (1 << 9)) || !(flags & (1 << 1)) != !(flags & (1 << 10)))
    return FASTGRNN_INT8_ERR_VALUE;
  if (p->cell == FASTGRNN_INT8_FASTGRNN) {
    if ((flags & (3 << 11)) != (3 << 11)) return FASTGRNN_INT8_ERR_VALUE;
  } else if (p->cell == FASTGRNN_INT8_FASTRNN) {
    if (flags & ((1 << 0) | (1 << 2) | (1 << 4) | (3 << 11))) return FASTGRNN_INT8_ERR_VALUE;
  } else {
    return FASTGRNN_INT8_ERR_DIMS;
  }
  if ((p->gate_bias_term &&
       !bias_terms_ok(&p->gate_add, p->gate_bias, p->gate_bias_term, p->hidden_dim)) ||
      (p->update_bias_term &&
       !bias_terms_ok(&p->update_add, p->update_bias, p->update_bias_term, p->hidden_dim)))
    return FASTGRNN_INT8_ERR_VALUE;
  if (expand) { /* the int32 bias operands the blob does not carry */
    if (p->gate_bias && !p->gate_bias_term) {
      int32_t *t = (int32_t *)alloc(r, 4u * (uint32_t)p->hidden_dim);
      if (t) bias_term(&p->gate_add, p->gate_bias, t, p->hidden_dim);
      p->gate_bias_term = t;
    }
    if (p->update_bias && !p->update_bias_term) {
      int32_t *t = (int32_t *)alloc(r, 4u * (uint32_t)p->hidden_dim);
      if (t) bias_term(&p->update_add, p->update_bias, t, p->hidden_dim);
      p->update_bias_term = t;
    }
    if (r->error) return r->error;
  }
  return FASTGRNN_INT8_OK;
}

static int check_pointers(const uint8_t *data, fastgrnn_int8_params *p) {
  const uint32_t one = 1;
  if (!data || !p) return FASTGRNN_INT8_ERR_NULL;
  if (((uintptr_t)data & 3u) != 0 || *(const uint8_t *)&one != 1)
    return FASTGRNN_INT8_ERR_ALIGN;
  return FASTGRNN_INT8_OK;
}

int32_t fastgrnn_int8_options_ram_bytes(const uint8_t *data, uint32_t size) {
  fastgrnn_int8_params p;
  reader r;
  int rc = check_pointers(data, &p);
  if (rc) return rc;
  r.decode = 0;
  r.ram = 0;
  r.ram_size = 0;
  r.ram_used = 0;
  rc = parse(data, size, &r, &p);
  return rc ? rc : (int32_t)r.ram_used;
}

int fastgrnn_int8_parse_options(const uint8_t *data, uint32_t size, void *ram,
                                uint32_t ram_size, fastgrnn_int8_params *p) {
  reader r;
  int32_t k;
  int rc = check_pointers(data, p);
  if (rc) return rc;
  if (((uintptr_t)ram & 3u) != 0) return FASTGRNN_INT8_ERR_ALIGN;
  r.decode = 1; /* running out of ram is an error */
  r.ram = (uint8_t *)ram;
  r.ram_size = ram ? ram_size : 0;
  r.ram_used = 0;
  rc = parse(data, size, &r, p);
  if (rc) {
    memset(p, 0, sizeof *p);
    return rc;
  }
  k = fastgrnn_int8_scratch_bytes(p);
  return k < 0 ? k : FASTGRNN_INT8_OK;
}

const char *fastgrnn_int8_error_string(int code) {
  switch (code) {
    case FASTGRNN_INT8_OK: return "ok";
    case FASTGRNN_INT8_ERR_NULL: return "a required pointer or table is missing";
    case FASTGRNN_INT8_ERR_DIMS: return "inconsistent dimensions or cell kind";
    case FASTGRNN_INT8_ERR_SCRATCH: return "scratch (or options decode memory) missing or too small";
    case FASTGRNN_INT8_ERR_FORMAT: return "not FASTGRNN_INT8 options of this version";
    case FASTGRNN_INT8_ERR_SIZE: return "options truncated or with bytes left over";
    case FASTGRNN_INT8_ERR_ALIGN: return "options (or decode memory) not 4-byte aligned, or a big-endian target";
    case FASTGRNN_INT8_ERR_VALUE: return "a value in the options is out of range";
    default: return "unknown error";
  }
}
