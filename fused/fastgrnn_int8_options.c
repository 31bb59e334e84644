/* Parser of the FASTGRNN_INT8 custom options blob; see fastgrnn_int8_options.h. */
#include "fastgrnn_int8_options.h"

#include <string.h>

enum { kNumArrays = 6, kNumBinops = 6 };

typedef struct {
  const uint8_t *data;
  uint32_t size;
  uint32_t pos; /* int32 section cursor, then int8 section cursor */
  int error;
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

int fastgrnn_int8_parse_options(const uint8_t *data, uint32_t size, fastgrnn_int8_params *p) {
  const uint32_t one = 1;
  reader r;
  fastgrnn_int8_fc *fcs[5];
  int32_t nnz[5];
  fastgrnn_int8_binop *binops[kNumBinops];
  const int8_t **arrays[kNumArrays];
  int32_t flags, version, n_fc, k, j;
  if (!data || !p) return FASTGRNN_INT8_ERR_NULL;
  if (((uintptr_t)data & 3u) != 0 || *(const uint8_t *)&one != 1)
    return FASTGRNN_INT8_ERR_ALIGN;
  memset(p, 0, sizeof *p);
  r.data = data;
  r.size = size;
  r.pos = 0;
  r.error = 0;
  if ((uint32_t)read_i32(&r) != FASTGRNN_INT8_OPTIONS_MAGIC) {
    return r.error ? r.error : FASTGRNN_INT8_ERR_FORMAT;
  }
  version = read_i32(&r);
  if (!r.error && version != FASTGRNN_INT8_OPTIONS_VERSION) return FASTGRNN_INT8_ERR_FORMAT;
  p->cell = read_i32(&r);
  p->input_dim = read_i32(&r);
  p->hidden_dim = read_i32(&r);
  p->num_classes = read_i32(&r);
  p->w_factors = read_i32(&r);
  p->u_factors = read_i32(&r);
  flags = read_i32(&r);
  if (r.error) return r.error;
  if (p->input_dim <= 0 || p->hidden_dim <= 0 || p->num_classes <= 0 ||
      p->input_dim > 4096 || p->hidden_dim > 4096 || p->num_classes > 4096 ||
      p->w_factors < 1 || p->w_factors > 2 || p->u_factors < 1 || p->u_factors > 2)
    return FASTGRNN_INT8_ERR_DIMS;
  if (flags & ~0x3FFF) return FASTGRNN_INT8_ERR_VALUE;
  /* A bias term (bits 6, 7) only with its bias vector (bits 0, 1). */
  if (((flags >> 6) & 3) & ~(flags & 3)) return FASTGRNN_INT8_ERR_VALUE;

  n_fc = 0;
  for (k = 0; k < p->w_factors; ++k) fcs[n_fc++] = &p->w[k];
  for (k = 0; k < p->u_factors; ++k) fcs[n_fc++] = &p->u[k];
  fcs[n_fc++] = &p->classifier;
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
    f->rows = read_i32(&r);
    f->cols = read_i32(&r);
    f->out_offset = read_i32(&r);
    nnz[k] = read_i32(&r);
    if (r.error) return r.error;
    if (!fc_dims_ok(p, f->rows, f->cols, k)) return FASTGRNN_INT8_ERR_DIMS;
    if (nnz[k] < -1 || nnz[k] > f->rows * f->cols || f->out_offset < -128 ||
        f->out_offset > 127)
      return FASTGRNN_INT8_ERR_VALUE;
    f->bias = (const int32_t *)take(&r, f->rows, 4);
    f->mult = (const int32_t *)take(&r, f->rows, 4);
    if (r.error) return r.error;
    for (j = 0; j < f->rows; ++j)
      if (f->mult[j] < 0) return FASTGRNN_INT8_ERR_VALUE;
  }
  for (k = 0; k < kNumBinops; ++k) {
    fastgrnn_int8_binop *b = binops[k];
    if (!(flags & (1 << (8 + k)))) continue;
    b->in1_offset = read_i32(&r);
    b->in2_offset = read_i32(&r);
    b->in1_mult = read_i32(&r);
    b->in2_mult = read_i32(&r);
    b->out_mult = read_i32(&r);
    b->out_offset = read_i32(&r);
    if (r.error) return r.error;
    /* Offsets are negated int8 zero points (in) or a zero point (out); multipliers from
     * QuantizeMultiplier lie in [0, 2^31). */
    if (b->in1_offset < -127 || b->in1_offset > 128 || b->in2_offset < -127 ||
        b->in2_offset > 128 || b->out_offset < -128 || b->out_offset > 127 ||
        b->in1_mult < 0 || b->in2_mult < 0 || b->out_mult < 0)
      return FASTGRNN_INT8_ERR_VALUE;
  }

  /* Optional int32 bias terms [H] (the kernel's fast path; NULL: computed per step). */
  if (flags & (1 << 6)) p->gate_bias_term = (const int32_t *)take(&r, p->hidden_dim, 4);
  if (flags & (1 << 7)) p->update_bias_term = (const int32_t *)take(&r, p->hidden_dim, 4);
  if (r.error) return r.error;

  /* int8 section. */
  for (k = 0; k < n_fc; ++k) {
    fastgrnn_int8_fc *f = fcs[k];
    const int32_t row_bytes = (f->cols + 7) / 8;
    f->act_min = read_i8(&r);
    f->act_max = read_i8(&r);
    f->shift = (const int8_t *)take(&r, f->rows, 1);
    if (r.error) return r.error;
    if (f->act_min > f->act_max) return FASTGRNN_INT8_ERR_VALUE;
    for (j = 0; j < f->rows; ++j)
      if (f->shift[j] < -31 || f->shift[j] > 31) return FASTGRNN_INT8_ERR_VALUE;
    if (nnz[k] < 0) {
      f->mask = 0;
      f->w = (const int8_t *)take(&r, f->rows * f->cols, 1);
    } else {
      /* The kernel trusts the mask: its bits must count exactly nnz values and none may
       * point past the last column. */
      const uint8_t *mask = take(&r, f->rows * row_bytes, 1);
      const uint8_t last = (uint8_t)(f->cols % 8 ? 0xFFu << (f->cols % 8) : 0);
      int32_t count = 0;
      if (r.error) return r.error;
      for (j = 0; j < f->rows * row_bytes; ++j) {
        if (j % row_bytes == row_bytes - 1 && (mask[j] & last)) return FASTGRNN_INT8_ERR_VALUE;
        count += popcount8(mask[j]);
      }
      if (count != nnz[k]) return FASTGRNN_INT8_ERR_VALUE;
      f->mask = mask;
      f->w = (const int8_t *)take(&r, nnz[k], 1);
    }
    if (r.error) return r.error;
  }
  for (k = 0; k < kNumBinops; ++k) {
    fastgrnn_int8_binop *b = binops[k];
    if (!(flags & (1 << (8 + k)))) continue;
    b->in1_shift = read_i8(&r);
    b->in2_shift = read_i8(&r);
    b->out_shift = read_i8(&r);
    b->act_min = read_i8(&r);
    b->act_max = read_i8(&r);
    if (r.error) return r.error;
    /* ADD's shifts are <= 0 (the kernel's mbqm_add relies on it), MUL's within [-31, 31]. */
    if (b->in1_shift < -31 || b->in1_shift > 0 || b->in2_shift < -31 || b->in2_shift > 0 ||
        b->out_shift < -31 || b->out_shift > 31 || b->act_min > b->act_max ||
        ((k != 3 && k != 4) && b->out_shift > 0))
      return FASTGRNN_INT8_ERR_VALUE;
  }
  for (k = 0; k < kNumArrays; ++k) {
    if (!(flags & (1 << k))) continue;
    *arrays[k] = (const int8_t *)take(&r, k < 2 ? p->hidden_dim : 256, 1);
  }
  if (r.error) return r.error;
  if (r.pos != size) return FASTGRNN_INT8_ERR_SIZE;

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
  k = fastgrnn_int8_scratch_bytes(p);
  return k < 0 ? k : FASTGRNN_INT8_OK;
}

const char *fastgrnn_int8_error_string(int code) {
  switch (code) {
    case FASTGRNN_INT8_OK: return "ok";
    case FASTGRNN_INT8_ERR_NULL: return "a required pointer or table is missing";
    case FASTGRNN_INT8_ERR_DIMS: return "inconsistent dimensions or cell kind";
    case FASTGRNN_INT8_ERR_SCRATCH: return "scratch buffer missing or too small";
    case FASTGRNN_INT8_ERR_FORMAT: return "not FASTGRNN_INT8 options of this version";
    case FASTGRNN_INT8_ERR_SIZE: return "options truncated or with bytes left over";
    case FASTGRNN_INT8_ERR_ALIGN: return "options not 4-byte aligned (or big-endian target)";
    case FASTGRNN_INT8_ERR_VALUE: return "a value in the options is out of range";
    default: return "unknown error";
  }
}
