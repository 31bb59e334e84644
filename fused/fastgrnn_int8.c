/* One int8 FastGRNN / FastRNN step, bit-exact with TFLM's reference int8 kernels.
 * See fastgrnn_int8.h. The fixed-point helpers follow gemmlowp / TFLM
 * (tensorflow/lite/kernels/internal/common.h, built without TFLITE_SINGLE_ROUNDING). */
#include "fastgrnn_int8.h"

#define ROM FASTGRNN_INT8_ROM

/* gemmlowp SaturatingRoundingDoublingHighMul: (a b + nudge) / 2^31, truncating. */
static int32_t srdhm(int32_t a, int32_t b) {
  int64_t ab, nudge;
  if (a == b && a == INT32_MIN) return INT32_MAX;
  ab = (int64_t)a * (int64_t)b;
  nudge = ab >= 0 ? (INT64_C(1) << 30) : (INT64_C(1) - (INT64_C(1) << 30));
  return (int32_t)((ab + nudge) / (INT64_C(1) << 31));
}

/* gemmlowp RoundingDivideByPOT: x / 2^e rounded half away from zero, 0 <= e <= 31. */
static int32_t rdbp(int32_t x, int32_t e) {
  const int32_t mask = (int32_t)(((uint32_t)1 << e) - 1u);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> e) + (remainder > threshold ? 1 : 0);
}

/* TFLM MultiplyByQuantizedMultiplier (double rounding). */
static int32_t mbqm(int32_t x, int32_t mult, int32_t shift) {
  if (shift > 0) {
    x = (int32_t)((uint32_t)x << shift);
    shift = 0;
  }
  return rdbp(srdhm(x, mult), -shift);
}

static int8_t clamp8(int32_t v, int8_t lo, int8_t hi) {
  return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

/* reference_integer_ops::AddFunc / SubElementwise (int8). */
static int8_t add8(const fastgrnn_int8_binop *p, int32_t a, int32_t b, int subtract) {
  const int32_t sa = mbqm((a + p->in1_offset) * (INT32_C(1) << 20), p->in1_mult, p->in1_shift);
  const int32_t sb = mbqm((b + p->in2_offset) * (INT32_C(1) << 20), p->in2_mult, p->in2_shift);
  const int32_t raw = subtract ? sa - sb : sa + sb;
  return clamp8(mbqm(raw, p->out_mult, p->out_shift) + p->out_offset, p->act_min, p->act_max);
}

/* reference_integer_ops::MulElementwise (int8). */
static int8_t mul8(const fastgrnn_int8_binop *p, int32_t a, int32_t b) {
  const int32_t prod = (a + p->in1_offset) * (b + p->in2_offset);
  return clamp8(mbqm(prod, p->out_mult, p->out_shift) + p->out_offset, p->act_min, p->act_max);
}

#define LUT(table, v) ((table)[(int32_t)(v) + 128])

/* FullyConnectedPerChannel (int8), dense or bitmap-packed weights. */
static void fc8(const fastgrnn_int8_fc *f, const int8_t *x, int8_t *out) {
  int32_t r, c;
  const ROM int8_t *w = f->w;
  const ROM uint8_t *mask = f->mask;
  for (r = 0; r < f->rows; ++r) {
    int32_t acc = f->bias[r];
    if (mask == 0) {
      for (c = 0; c < f->cols; ++c) acc += (int32_t)x[c] * (int32_t)w[c];
      w += f->cols;
    } else {
      for (c = 0; c < f->cols; c += 8) {
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
    }
    out[r] = clamp8(mbqm(acc, f->mult[r], f->shift[r]) + f->out_offset, f->act_min, f->act_max);
  }
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
  int32_t j, h;
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
  for (j = 0; j < h; ++j) {
    const int8_t pre = add8(&p->pre, xw[j], hu[j], 0);
    const int8_t up = p->update_bias ? add8(&p->update_add, pre, p->update_bias[j], 0) : pre;
    const int8_t hj = h_in[j];
    if (p->cell == FASTGRNN_INT8_FASTGRNN) {
      const int8_t gp = p->gate_bias ? add8(&p->gate_add, pre, p->gate_bias[j], 0) : pre;
      const int8_t z = p->gate_table ? LUT(p->gate_table, gp) : gp;
      const int8_t ht = p->update_table ? LUT(p->update_table, up) : up;
      const int8_t zh = mul8(&p->zh_mul, z, hj);
      const int8_t ch = mul8(&p->ch_mul, LUT(p->coef_table, z), ht);
      h_out[j] = add8(&p->out_add, ch, zh, 0);
    } else {
      h_out[j] = add8(&p->out_add, LUT(p->update_table, up), LUT(p->state_table, hj), 0);
    }
  }
  if (logits) fc8(&p->classifier, h_out, logits);
  return FASTGRNN_INT8_OK;
}
