/* Fused element passes of the bit-exact model (see native.py): each function is one
 * pass over its arrays, doing what the numpy reference does in several. IEEE double
 * arithmetic throughout (compiled without fast-math or FP contraction), so every
 * result is bit-identical to the numpy reference.
 *
 * bn_quantize reads an array of up to four dimensions given by its shape and its
 * strides in bytes, padded at the front with length-1 axes; the others take contiguous
 * arrays.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* max |x| over n contiguous floats (is64 = 0) or doubles, by the bits of |x|: for values
 * that are not NaN the order of |x|'s bit patterns as integers is the order of the
 * values, and a NaN's pattern lies above infinity's. An integer max reduction
 * vectorises, a float one with NaN semantics does not. */
double bn_peak(const void *x, int64_t n, int is64) {
    if (is64) {
        const int64_t *v = x;
        int64_t best = 0; /* sign bit cleared: a signed compare orders the patterns */
        for (int64_t i = 0; i < n; i++) {
            int64_t a = v[i] & INT64_MAX;
            best = a > best ? a : best;
        }
        double peak;
        memcpy(&peak, &best, sizeof peak);
        return peak;
    }
    const uint32_t *v = x;
    uint32_t best = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t a = v[i] & 0x7fffffffu;
        best = a > best ? a : best;
    }
    float peak;
    memcpy(&peak, &best, sizeof peak);
    return peak;
}

static inline double clamp(double v, double lo, double hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

/* One element of bn_quantize: dst = clip(round(src * scale)), and best = the largest
 * |x| seen, kept as the bits of |x| (see bn_peak). */
#define QUANT_ELEM(T, U, MASK, ROUND, CLIP, src, dst)                          \
    {                                                                          \
        T val_ = (src);                                                        \
        U bits_;                                                               \
        memcpy(&bits_, &val_, sizeof bits_);                                   \
        bits_ &= MASK;                                                         \
        best = bits_ > best ? bits_ : best;                                    \
        double q_ = ROUND((double)val_ * scale);                               \
        (dst) = CLIP ? clamp(q_, lo, hi) : q_;                                 \
    }

#define TILE 16

/* The runs of bn_quantize. When axis 1 is laid out inside axis 2 in memory (a
 * transposed view), axis 1 is walked in tiles under axis 2, so that consecutive runs
 * are read from neighbouring memory. */
#define QUANT_LOOP(T, U, MASK, ROUND, CLIP)                                    \
    for (int64_t i0 = 0; i0 < shape[0]; i0++)                                  \
        for (int64_t t1 = 0; t1 < shape[1]; t1 += tile)                        \
            for (int64_t i2 = 0; i2 < shape[2]; i2++)                          \
                for (int64_t i1 = t1; i1 < t1 + tile && i1 < shape[1]; i1++) { \
                    const char *row = x + i0 * strides[0] + i1 * strides[1] +  \
                                      i2 * strides[2];                         \
                    double *o = out + ((i0 * shape[1] + i1) * shape[2] + i2) * len; \
                    if (step == (int64_t)sizeof(T)) {                          \
                        const T *v = (const T *)row;                           \
                        for (int64_t i = 0; i < len; i++)                      \
                            QUANT_ELEM(T, U, MASK, ROUND, CLIP, v[i], o[i])    \
                    } else {                                                   \
                        for (int64_t i = 0; i < len; i++)                      \
                            QUANT_ELEM(T, U, MASK, ROUND, CLIP,                \
                                       *(const T *)(row + i * step), o[i])     \
                    }                                                          \
                }

/* bn_quantize of a transposed matrix (axis 2 contiguous, axis 3 strided): TILE output
 * rows at a time, so that each read of TILE consecutive source elements feeds TILE
 * output rows instead of one read per element across the source's rows. */
#define QUANT_T_LOOP(T, U, MASK, ROUND, CLIP)                                  \
    for (int64_t i0 = 0; i0 < shape[0]; i0++)                                  \
        for (int64_t i1 = 0; i1 < shape[1]; i1++)                              \
            for (int64_t t2 = 0; t2 < shape[2]; t2 += TILE) {                  \
                int64_t end = t2 + TILE < shape[2] ? t2 + TILE : shape[2];     \
                const char *base = x + i0 * strides[0] + i1 * strides[1];      \
                double *plane = out + (i0 * shape[1] + i1) * shape[2] * len;   \
                for (int64_t i3 = 0; i3 < len; i3++)                           \
                    for (int64_t i2 = t2; i2 < end; i2++)                      \
                        QUANT_ELEM(T, U, MASK, ROUND, CLIP,                    \
                                   *(const T *)(base + i2 * strides[2] + i3 * step), \
                                   plane[i2 * len + i3])                       \
            }

/* One case of bn_quantize: the loop for the element type, keeping the peak's bits. */
#define QUANT_F(LOOP, ROUND, CLIP)                                             \
    {                                                                          \
        uint32_t best = 0;                                                     \
        LOOP(float, uint32_t, 0x7fffffffu, ROUND, CLIP)                        \
        float p_;                                                              \
        memcpy(&p_, &best, sizeof p_);                                         \
        peak = p_;                                                             \
    }
#define QUANT_D(LOOP, ROUND, CLIP)                                             \
    {                                                                          \
        int64_t best = 0; /* sign bit cleared: a signed compare orders the patterns */ \
        LOOP(double, int64_t, INT64_MAX, ROUND, CLIP)                          \
        memcpy(&peak, &best, sizeof peak);                                     \
    }
#define QUANT_CASES(LOOP)                                                      \
    switch (which) {                                                           \
    case 0: QUANT_F(LOOP, rint, 0) break;                                      \
    case 1: QUANT_F(LOOP, rint, 1) break;                                      \
    case 2: QUANT_F(LOOP, floor, 0) break;                                     \
    case 3: QUANT_F(LOOP, floor, 1) break;                                     \
    case 4: QUANT_D(LOOP, rint, 0) break;                                      \
    case 5: QUANT_D(LOOP, rint, 1) break;                                      \
    case 6: QUANT_D(LOOP, floor, 0) break;                                     \
    default: QUANT_D(LOOP, floor, 1) break;                                    \
    }

/* out (C order, the shape of x) = clip(round(x * scale)), rounding to nearest even
 * (floormode = 0) or down; clipping to [lo, hi] only when clip is set. Returns max |x|
 * (NaN if x holds a NaN), read in the same pass. */
double bn_quantize(const char *x, int is64, const int64_t *shape, const int64_t *strides,
                   double scale, int floormode, int clip, double lo, double hi, double *out) {
    int64_t len = shape[3], step = strides[3];
    int64_t tile = strides[1] < strides[2] ? TILE : 1;
    int which = (is64 << 2) | (floormode << 1) | (clip != 0);
    int64_t item = is64 ? 8 : 4;
    double peak = 0.0;
    if (step != item && strides[2] == item && shape[2] > 1) {
        QUANT_CASES(QUANT_T_LOOP)
    } else {
        QUANT_CASES(QUANT_LOOP)
    }
    return peak;
}

/* The integer extremes of rounded values, kept as int32 (they are exact integers within
 * an operand format): an integer max/min reduction vectorises. */
#define TRACK(v)                                                               \
    {                                                                          \
        int32_t iv = (int32_t)(v);                                             \
        hi = iv > hi ? iv : hi;                                                \
        lo_q = iv < lo_q ? iv : lo_q;                                          \
    }

#define PEAK_OF(hi, lo_q) ((double)(hi) > -(double)(lo_q) ? (double)(hi) : -(double)(lo_q))

/* Rounds an (m, n) block of contiguous accumulator values times scale (2**-shift, or 1
 * for values already scaled; exact either way): q = clip(round(acc * scale)) with round = rint (mode 0), floor (1) or none (2: shift 0),
 * saturating to [lo, hi]. Writes q back into acc, or, when out is given, q * deq as
 * float32 into out (rows ld apart; q itself is then not stored). Returns max |q|. */
double bn_round(double *acc, int64_t m, int64_t n, int mode, double scale, double lo,
                double hi_, float *out, int64_t ld, double deq) {
    int32_t hi = 0, lo_q = 0;
#define ROUND_LOOP(ROUND)                                                      \
    for (int64_t i = 0; i < m; i++) {                                          \
        double *a = acc + i * n;                                               \
        if (out) {                                                             \
            float *o = out + i * ld;                                           \
            for (int64_t j = 0; j < n; j++) {                                  \
                double v = clamp(ROUND(a[j] * scale), lo, hi_);                \
                TRACK(v)                                                       \
                o[j] = (float)(v * deq);                                       \
            }                                                                  \
        } else {                                                               \
            for (int64_t j = 0; j < n; j++) {                                  \
                double v = clamp(ROUND(a[j] * scale), lo, hi_);                \
                TRACK(v)                                                       \
                a[j] = v;                                                      \
            }                                                                  \
        }                                                                      \
    }
#define NO_ROUND(v) (v)
    if (mode == 0) {
        ROUND_LOOP(rint)
    } else if (mode == 1) {
        ROUND_LOOP(floor)
    } else {
        ROUND_LOOP(NO_ROUND)
    }
    return PEAK_OF(hi, lo_q);
}

/* Four uint32 lanes as one vector (a GCC/Clang extension; plain C loops over the lanes
 * of a table row compile to scalar code when the lane count is not a constant). */
typedef uint32_t v4u __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
typedef double v4d __attribute__((vector_size(32)));

static inline v4u load4(const uint32_t *p) {
    v4u v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Stochastic rounding of an (m, n) block of contiguous accumulator values (not scaled)
 * that starts at column tile tile0 of a result tiles_n column tiles wide:
 * q = clip(floor((acc + (word & mask)) * scale)), where the word of element (i, j) is
 * lane j % cols's word at the beat that carries it (model.output_beats): the lanes'
 * product tables (4, 256, cols) looked up with the bytes of that beat's power (planes:
 * 4 rows of cap bytes). Stores q as bn_round does; returns max |q|. */
double bn_round_stochastic(double *acc, int64_t m, int64_t n, int64_t rows, int64_t cols,
                           int64_t tile0, int64_t tiles_n, const uint32_t *tables,
                           const uint8_t *planes, int64_t cap, uint32_t mask, double scale,
                           double lo, double hi_, float *out, int64_t ld, double deq) {
    int32_t hi = 0, lo_q = 0;
    int64_t tiles = (n + cols - 1) / cols;
    const uint32_t *t0 = tables, *t1 = tables + 256 * cols, *t2 = tables + 512 * cols,
                   *t3 = tables + 768 * cols;
    /* A row's words are looked up first, then rounded in a loop that vectorises; they are
     * kept as doubles (exact: below 2**31), as an int32 load there stops the vectoriser. */
    double *words = malloc((size_t)(tiles * cols) * sizeof *words);
    const v4u vmask = {mask, mask, mask, mask};
    if (!words) return NAN;
    for (int64_t i = 0; i < m; i++) {
        int64_t tm = i / rows, r = i % rows;
        int64_t valid = m - tm * rows < rows ? m - tm * rows : rows;
        int64_t beat = tm * tiles_n * rows + tile0 * valid + r;
        for (int64_t tn = 0; tn < tiles; tn++, beat += valid) {
            const uint32_t *a = t0 + planes[beat] * cols, *b = t1 + planes[cap + beat] * cols,
                           *c = t2 + planes[2 * cap + beat] * cols,
                           *d = t3 + planes[3 * cap + beat] * cols;
            double *w = words + tn * cols;
            int64_t lane = 0;
            for (; lane + 4 <= cols; lane += 4) { /* four lanes in one vector */
                v4u v = (load4(a + lane) ^ load4(b + lane) ^ load4(c + lane) ^ load4(d + lane)) &
                        vmask;
                v4d f = __builtin_convertvector((v4i)v, v4d); /* mask < 2**31: as int32 */
                memcpy(w + lane, &f, sizeof f);
            }
            for (; lane < cols; lane++)
                w[lane] = (double)(int32_t)((a[lane] ^ b[lane] ^ c[lane] ^ d[lane]) & mask);
        }
        double *row = acc + i * n;
        if (out) {
            float *o = out + i * ld;
            for (int64_t j = 0; j < n; j++) {
                double v = clamp(floor((row[j] + words[j]) * scale), lo, hi_);
                TRACK(v)
                o[j] = (float)(v * deq);
            }
        } else {
            for (int64_t j = 0; j < n; j++) {
                double v = clamp(floor((row[j] + words[j]) * scale), lo, hi_);
                TRACK(v)
                row[j] = v;
            }
        }
    }
    free(words);
    return PEAK_OF(hi, lo_q);
}
