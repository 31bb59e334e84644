// SPDX-License-Identifier: Apache-2.0
/* Fuzz target of the FASTGRNN_INT8 options parser and the kernel it feeds.
 *
 * One input is one options blob (fused/fastgrnn_int8_options.h). The parser must refuse
 * it or accept it; an accepted blob is stepped a few times through every build of the
 * kernel linked in (KERNELS: the default build, the SIMD code paths on portable C, the
 * size build, and each of the three with -DFASTGRNN_INT8_MUL32, the 32-bit-only rescaling
 * of cores without a 64-bit multiply), on extreme and mixed inputs, in place and not, and
 * the builds must agree byte for byte. Built with -fsanitize=address,undefined -fno-sanitize-recover=all,
 * any out-of-bounds access or undefined arithmetic aborts the run.
 *
 * Two drivers (tests/fuzz/Makefile):
 *   libFuzzer (clang -fsanitize=fuzzer, -DFUZZ_LIBFUZZER): LLVMFuzzerTestOneInput;
 *   a plain mutation loop (any compiler with the sanitizers, e.g. gcc):
 *     fuzz_loop SECONDS SEED FILE...   runs each seed blob, then mutates them (int32
 *     words and int8 bytes set to boundary values, bit flips, truncation, splices) until
 *     SECONDS have passed; accepted mutants join the pool. Prints its counts to stderr.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fastgrnn_int8_options.h"

#define MAX_BLOB (1u << 16)
#define MAX_RAM (1 << 24)

/* The kernel builds linked in: the default one (fastgrnn_int8_step), and others compiled
 * from the same source with their entry points renamed (Makefile). */
#define KERNELS(X)                                                                   \
  X(, "default") X(_emulate, "simd-emulate") X(_small, "small") X(_mul32, "mul32")     \
  X(_mul32_emulate, "mul32-simd-emulate") X(_mul32_small, "mul32-small")
#define DECLARE(sfx, name)                                                              \
  int32_t fastgrnn_int8_scratch_bytes##sfx(const fastgrnn_int8_params *p);            \
  int fastgrnn_int8_step##sfx(const fastgrnn_int8_params *p, const int8_t *x,         \
                              const int8_t *h_in, int8_t *h_out, int8_t *logits,       \
                              fastgrnn_int8_scratch *scratch);
KERNELS(DECLARE)

typedef int (*step_fn)(const fastgrnn_int8_params *, const int8_t *, const int8_t *,
                       int8_t *, int8_t *, fastgrnn_int8_scratch *);
typedef int32_t (*scratch_fn)(const fastgrnn_int8_params *);
#define ENTRY(sfx, name) {fastgrnn_int8_step##sfx, fastgrnn_int8_scratch_bytes##sfx, name},
static const struct {
  step_fn step;
  scratch_fn scratch;
  const char *name;
} kKernels[] = {KERNELS(ENTRY)};
enum { kNumKernels = sizeof kKernels / sizeof kKernels[0], kSteps = 4 };

/* The input being run, written to $FUZZ_ARTIFACT (if set) when a check fails. */
static const uint8_t *current;
static size_t current_size;

static void fail(const char *what, const char *kernel, int step) {
  const char *path = getenv("FUZZ_ARTIFACT");
  fprintf(stderr, "fuzz_options: %s (kernel %s, step %d)\n", what, kernel, step);
  if (path) {
    FILE *f = fopen(path, "wb");
    if (f) {
      fwrite(current, 1, current_size, f);
      fclose(f);
      fprintf(stderr, "fuzz_options: input written to %s\n", path);
    }
  }
  abort();
}

/* Input byte i of step t: all -128, all 127, alternating, then bytes of the blob. */
static int8_t input_at(int t, int32_t i, const uint8_t *data, size_t size) {
  switch (t) {
    case 0: return -128;
    case 1: return 127;
    case 2: return (int8_t)(i & 1 ? 127 : -128);
    default: return (int8_t)(size ? data[((size_t)i * 7u + 3u) % size] ^ (uint8_t)i : 0);
  }
}

/* Parses one blob; when accepted, steps every kernel build. Returns 1 if accepted. */
static int run_one(const uint8_t *data, size_t size) {
  fastgrnn_int8_params p;
  uint8_t *blob, *ram = 0;
  int8_t *x = 0, *h[kNumKernels], *logits[kNumKernels], *buf = 0;
  int32_t need, scratch, d, hd, c, i;
  int k, t, rc, accepted = 0;
  if (size > MAX_BLOB) return 0;
  current = data;
  current_size = size;
  blob = (uint8_t *)malloc(size ? size : 1); /* malloc: aligned for the int32 section */
  if (!blob) abort();
  if (size) memcpy(blob, data, size);
  need = fastgrnn_int8_options_ram_bytes(blob, (uint32_t)size);
  if (need < 0 || need > MAX_RAM) goto done;
  if (need) {
    ram = (uint8_t *)malloc((size_t)need); /* exactly: ASan catches a byte beyond */
    if (!ram) abort();
  }
  rc = fastgrnn_int8_parse_options(blob, (uint32_t)size, ram, (uint32_t)need, &p);
  if (rc != FASTGRNN_INT8_OK) {
    /* Counting accepted it; decoding may still refuse: the kernel's own check
     * (e.g. a FastRNN without its tables) runs only there. Nothing else may differ. */
    if (rc != FASTGRNN_INT8_ERR_NULL && rc != FASTGRNN_INT8_ERR_DIMS)
      fail("the parser refused a blob its counting pass accepted", "-", -1);
    goto done;
  }
  accepted = 1;
  d = p.input_dim;
  hd = p.hidden_dim;
  c = p.num_classes;
  scratch = fastgrnn_int8_scratch_bytes(&p);
  if (scratch <= 0) fail("accepted params the kernel refuses", "default", -1);
  for (k = 0; k < kNumKernels; ++k)
    if (kKernels[k].scratch(&p) != scratch) fail("scratch sizes differ", kKernels[k].name, -1);
  x = (int8_t *)malloc((size_t)d);
  buf = (int8_t *)malloc((size_t)scratch);
  if (!x || !buf) abort();
  for (k = 0; k < kNumKernels; ++k) {
    h[k] = (int8_t *)malloc(2 * (size_t)hd);
    logits[k] = (int8_t *)malloc((size_t)c);
    if (!h[k] || !logits[k]) abort();
    for (i = 0; i < hd; ++i) h[k][i] = input_at(0, i, data, size);
  }
  for (t = 0; t < kSteps; ++t) {
    for (i = 0; i < d; ++i) x[i] = input_at(t, i, data, size);
    for (k = 0; k < kNumKernels; ++k) {
      fastgrnn_int8_scratch s;
      int8_t *h_in = h[k], *h_out = t % 2 ? h[k] : h[k] + hd; /* odd steps in place */
      s.buf = buf;
      s.size = scratch;
      if (t == 3)
        for (i = 0; i < hd; ++i) h_in[i] = input_at(t, i + d, data, size);
      rc = kKernels[k].step(&p, x, h_in, h_out, t == 2 ? 0 : logits[k], &s);
      if (rc != FASTGRNN_INT8_OK) fail("a step failed on accepted params", kKernels[k].name, t);
      if (h_out != h_in) memcpy(h_in, h_out, (size_t)hd);
    }
    for (k = 1; k < kNumKernels; ++k)
      if (memcmp(h[k], h[0], (size_t)hd) || (t != 2 && memcmp(logits[k], logits[0], (size_t)c)))
        fail("kernel builds disagree", kKernels[k].name, t);
  }
  for (k = 0; k < kNumKernels; ++k) {
    free(h[k]);
    free(logits[k]);
  }
done:
  free(x);
  free(buf);
  free(ram);
  free(blob);
  return accepted;
}

#if defined(FUZZ_LIBFUZZER)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  run_one(data, size);
  return 0;
}

#else

enum { kMaxPool = 512 };

typedef struct {
  uint8_t *data;
  size_t size;
} blob_t;

static uint64_t rng_state;

static uint32_t rnd(void) { /* xorshift64* */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (uint32_t)((rng_state * UINT64_C(2685821657736338717)) >> 32);
}

static const int32_t kWords[] = {0, 1, -1, 2, -2, 3, 7, 8, 15, 16, 31, 32, 127, 128, -127,
                                 -128, 255, 256, 4095, 4096, 4097, 1 << 14, 1 << 15,
                                 1 << 20, 1 << 24, 1 << 30, (1 << 30) + 1, INT32_MAX,
                                 INT32_MAX - 1, INT32_MIN, INT32_MIN + 1, 0x7fffff00,
                                 -0x7fffff00, 0xFFFF, 0x10000};
static const int8_t kBytes[] = {0, 1, -1, 2, 6, 7, 10, 11, 15, 16, 23, 24, 30, 31, 32, 33,
                                -23, -24, -30, -31, -32, -33, 127, -128, 126, -127};

static void mutate(uint8_t *b, size_t *size, const blob_t *pool, int n_pool) {
  const int n = 1 + (int)(rnd() % 4);
  int m;
  for (m = 0; m < n; ++m) {
    const size_t words = *size / 4;
    switch (rnd() % 10) {
      case 0: case 1: case 2: /* an int32 word: a boundary value, or the old one nudged */
        if (words) {
          const size_t at = 4 * (rnd() % words);
          int32_t v;
          memcpy(&v, b + at, 4);
          switch (rnd() % 4) {
            case 0: v = (int32_t)((uint32_t)v + 1u); break;
            case 1: v = (int32_t)((uint32_t)v - 1u); break;
            case 2: v = (int32_t)((uint32_t)v ^ (1u << (rnd() % 32))); break;
            default: v = kWords[rnd() % (sizeof kWords / sizeof kWords[0])];
          }
          memcpy(b + at, &v, 4);
        }
        break;
      case 3: case 4: /* a byte: a boundary value */
        if (*size) b[rnd() % *size] = (uint8_t)kBytes[rnd() % sizeof kBytes];
        break;
      case 5: /* a bit */
        if (*size) b[rnd() % *size] ^= (uint8_t)(1u << (rnd() % 8));
        break;
      case 6: /* a flags bit (word 8) */
        if (*size >= 36) b[32 + rnd() % 2] ^= (uint8_t)(1u << (rnd() % 8));
        break;
      case 7: /* a byte: any value */
        if (*size) b[rnd() % *size] = (uint8_t)rnd();
        break;
      case 8: /* shorter, or longer by random bytes */
        if (rnd() % 2) {
          *size -= *size ? 1 + rnd() % (*size < 8 ? *size : 8) : 0;
        } else {
          size_t add = 1 + rnd() % 8;
          while (add-- && *size < MAX_BLOB) b[(*size)++] = (uint8_t)rnd();
        }
        break;
      default: { /* a run of bytes from another pool blob, at the same offset */
        const blob_t *o = &pool[rnd() % n_pool];
        const size_t lim = o->size < *size ? o->size : *size;
        if (lim) {
          const size_t at = rnd() % lim, len = 1 + rnd() % (lim - at);
          memcpy(b + at, o->data + at, len);
        }
      }
    }
  }
}

static int load(const char *path, blob_t *out) {
  FILE *f = fopen(path, "rb");
  long n;
  if (!f) return 0;
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  fseek(f, 0, SEEK_SET);
  if (n < 0 || (unsigned long)n > MAX_BLOB) {
    fclose(f);
    return 0;
  }
  out->data = (uint8_t *)malloc((size_t)n + 1);
  out->size = (size_t)n;
  if (!out->data || fread(out->data, 1, (size_t)n, f) != (size_t)n) {
    fclose(f);
    return 0;
  }
  fclose(f);
  return 1;
}

int main(int argc, char **argv) {
  static blob_t pool[kMaxPool];
  static uint8_t work[MAX_BLOB];
  int n_pool = 0, i, seeds;
  long execs = 0, accepted = 0;
  double seconds;
  time_t start;
  if (argc < 4) {
    fprintf(stderr, "usage: %s SECONDS SEED BLOB...\n", argv[0]);
    return 2;
  }
  seconds = atof(argv[1]);
  rng_state = (uint64_t)strtoull(argv[2], 0, 10) * UINT64_C(0x9E3779B97F4A7C15) + 1u;
  for (i = 3; i < argc && n_pool < kMaxPool; ++i) {
    if (!load(argv[i], &pool[n_pool])) {
      fprintf(stderr, "fuzz_options: cannot read %s\n", argv[i]);
      return 2;
    }
    if (!run_one(pool[n_pool].data, pool[n_pool].size)) {
      fprintf(stderr, "fuzz_options: seed %s is refused by the parser\n", argv[i]);
      return 2;
    }
    ++n_pool;
  }
  seeds = n_pool;
  start = time(0);
  while (difftime(time(0), start) < seconds) {
    int j;
    for (j = 0; j < 256; ++j) {
      const blob_t *src = &pool[rnd() % n_pool];
      size_t size = src->size;
      memcpy(work, src->data, size);
      mutate(work, &size, pool, n_pool);
      ++execs;
      if (run_one(work, size)) {
        ++accepted;
        if (n_pool < kMaxPool && rnd() % 4 == 0) { /* keep some accepted mutants */
          pool[n_pool].data = (uint8_t *)malloc(size + 1);
          if (!pool[n_pool].data) abort();
          memcpy(pool[n_pool].data, work, size);
          pool[n_pool].size = size;
          ++n_pool;
        }
      }
    }
  }
  fprintf(stderr, "fuzz_options: %d seeds, %ld mutants run, %ld accepted, pool %d\n", seeds,
          execs, accepted, n_pool);
  for (i = 0; i < n_pool; ++i) free(pool[i].data);
  return 0;
}

#endif
