/* Exact integer matrix product of 16-bit operands on AMX (see native.py, exact_product).
 *
 * The operands arrive as doubles holding integers in [-32768, 32767]. Each is split
 * into bytes, v = hi * 256 + lo (hi signed, lo unsigned), and the product is formed from
 * four int8 tile products with int32 sums:
 *     a * b = (ah * bh) * 2**16 + (ah * bl + al * bh) * 2**8 + al * bl.
 * No int32 sum can overflow over KC = 32768 terms (|ah * bh| <= 2**14,
 * |ah * bl + al * bh| <= 65280, al * bl <= 65025: times 32768 all below 2**31), and the
 * three sums combine exactly in double below 2**53, which the caller guarantees for the
 * whole product; so the result is the exact integer product, as the float64 BLAS call
 * it replaces gives it.
 */
#define _GNU_SOURCE /* syscall */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* AMX intrinsics: GCC 11+ or Clang; the tile permission: Linux. */
#if defined(__x86_64__) && defined(__linux__) && \
    (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 11))
#define BN_AMX 1
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#define KC 32768 /* terms per int32 sum (see above) */

/* 1 when this CPU has AMX-INT8 and the kernel lets this process use its tile data. */
int bn_exact_ready(void) {
#ifdef BN_AMX
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    if (!((d >> 24) & 1) || !((d >> 25) & 1)) return 0; /* AMX-TILE, AMX-INT8 */
    /* ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA (Linux 5.16+). */
    return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
#else
    return 0;
#endif
}

/* The high (signed) and low (unsigned) bytes of four integers, as four-byte words. */
#define SPLIT4(v0, v1, v2, v3, hw, lw)                                                  \
    {                                                                                   \
        int32_t i0_ = (int32_t)(v0), i1_ = (int32_t)(v1), i2_ = (int32_t)(v2),          \
                i3_ = (int32_t)(v3);                                                    \
        (hw) = (uint32_t)((i0_ >> 8) & 255) | (uint32_t)((i1_ >> 8) & 255) << 8 |       \
               (uint32_t)((i2_ >> 8) & 255) << 16 | (uint32_t)((i3_ >> 8) & 255) << 24; \
        (lw) = (uint32_t)(i0_ & 255) | (uint32_t)(i1_ & 255) << 8 |                     \
               (uint32_t)(i2_ & 255) << 16 | (uint32_t)(i3_ & 255) << 24;               \
    }

/* The high (signed) and low (unsigned) bytes of len <= 64 contiguous integers. */
static inline void split_run(const double *x, int64_t len, int8_t *hi, uint8_t *lo) {
    for (int64_t j = 0; j < len; j++) {
        int32_t v = (int32_t)x[j];
        hi[j] = (int8_t)(v >> 8);
        lo[j] = (uint8_t)(v & 255);
    }
}

/* A (m, k) with element strides (sm, sk) -> bytes in panels of 16 rows: element (i, k)
 * at panel i / 16, byte (k / 64) * 1024 + (i % 16) * 64 + k % 64 (one tile's rows
 * contiguous); the padding up to (mp, kp) zero. Read along whichever axis is
 * contiguous. */
static void pack_a(const double *x, int64_t sm, int64_t sk, int64_t m, int64_t k, int64_t mp,
                   int64_t kp, int8_t *hi, uint8_t *lo) {
    memset(hi, 0, (size_t)(mp * kp));
    memset(lo, 0, (size_t)(mp * kp));
    for (int64_t i0 = 0; i0 < m; i0 += 16) {
        int64_t mv = m - i0 < 16 ? m - i0 : 16;
        int8_t *h = hi + i0 * kp;
        uint8_t *l = lo + i0 * kp;
        if (sk == 1) { /* rows contiguous: a row at a time, 64 bytes at a time */
            for (int64_t i = 0; i < mv; i++)
                for (int64_t j0 = 0; j0 < k; j0 += 64)
                    split_run(x + (i0 + i) * sm + j0, k - j0 < 64 ? k - j0 : 64,
                              h + j0 * 16 + i * 64, l + j0 * 16 + i * 64);
            continue;
        }
        for (int64_t j = 0; j < k; j++) { /* a column of the panel at a time */
            const double *c = x + i0 * sm + j * sk;
            int64_t at = (j / 64) * 1024 + j % 64;
            for (int64_t i = 0; i < mv; i++) {
                int32_t v = (int32_t)c[i * sm];
                h[at + i * 64] = (int8_t)(v >> 8);
                l[at + i * 64] = (uint8_t)(v & 255);
            }
        }
    }
}

/* Columns 0 .. w of B (k, n), element strides (sk, sn), in panels of 16 columns, each
 * kp * 16 bytes in AMX's B layout: element (k, j) at byte (k / 4) * 64 + (j % 16) * 4 +
 * k % 4 of panel j / 16 (rows of four k side by side), i.e. four-byte word
 * (k / 4) * 16 + j % 16; the padding up to (kp, 16 per panel) zero. */
static void pack_columns(const double *x, int64_t sk, int64_t sn, int64_t k, int64_t kp,
                         int64_t w, uint32_t *hi, uint32_t *lo) {
    int64_t k4 = k / 4 * 4, pw = kp * 4; /* words per panel */
    for (int64_t j0 = 0; j0 < w; j0 += 16) {
        int64_t from = w - j0 < 16 ? 0 : k4 * 4; /* a partial panel: all of it */
        memset(hi + j0 / 16 * pw + from, 0, (size_t)(pw - from) * 4);
        memset(lo + j0 / 16 * pw + from, 0, (size_t)(pw - from) * 4);
    }
#define AT(g, j) ((j) / 16 * pw + (g) * 4 + (j) % 16) /* the word of k = g .. g + 3 */
#define SPLIT_ROWS(len) /* a panel's columns of four rows: word g * 4 + j of the panel */ \
    for (int64_t j = 0; j < (len); j++)                                                    \
        SPLIT4(r[j], r[sk + j], r[2 * sk + j], r[3 * sk + j], h[j], l[j])
    if (sn == 1) { /* rows contiguous: four rows at a time */
        for (int64_t g = 0; g < k4; g += 4)
            for (int64_t j0 = 0; j0 < w; j0 += 16) {
                const double *r = x + g * sk + j0;
                uint32_t *h = hi + AT(g, j0), *l = lo + AT(g, j0);
                if (w - j0 >= 16) {
                    SPLIT_ROWS(16) /* a constant count: vectorised */
                } else {
                    SPLIT_ROWS(w - j0)
                }
            }
    } else if (sk == 1) { /* columns contiguous: 64 of each column's k at a time */
        int8_t run_h[16][64];
        uint8_t run_l[16][64];
        for (int64_t j0 = 0; j0 < w; j0 += 16) {
            int64_t nv = w - j0 < 16 ? w - j0 : 16;
            for (int64_t g0 = 0; g0 < k4; g0 += 64) {
                int64_t len = k4 - g0 < 64 ? k4 - g0 : 64;
                for (int64_t j = 0; j < nv; j++)
                    split_run(x + (j0 + j) * sn + g0, len, run_h[j], run_l[j]);
                /* A group of four k is one four-byte word: transpose the words. */
                for (int64_t g = 0; g < len; g += 4)
                    for (int64_t j = 0; j < nv; j++) {
                        memcpy(hi + AT(g0 + g, j0 + j), run_h[j] + g, 4);
                        memcpy(lo + AT(g0 + g, j0 + j), run_l[j] + g, 4);
                    }
            }
        }
    } else { /* a column at a time */
        for (int64_t j = 0; j < w; j++) {
            const double *c = x + j * sn;
            for (int64_t g = 0; g < k4; g += 4)
                SPLIT4(c[g * sk], c[(g + 1) * sk], c[(g + 2) * sk], c[(g + 3) * sk],
                       hi[AT(g, j)], lo[AT(g, j)])
        }
    }
    for (int64_t j = 0; k4 < k && j < w; j++) { /* the last, partial group of four */
        double v[4] = {0, 0, 0, 0};
        for (int64_t i = k4; i < k; i++) v[i - k4] = x[i * sk + j * sn];
        SPLIT4(v[0], v[1], v[2], v[3], hi[AT(k4, j)], lo[AT(k4, j)])
    }
#undef AT
#undef SPLIT_ROWS
}

/* Memory of the packed operands, kept per thread: a net repeats the same sizes, and
 * fresh memory of this size costs page faults on every call. */
static __thread uint8_t *packed;
static __thread size_t packed_size;

static uint8_t *packed_memory(size_t size) {
    if (size > packed_size) {
        free(packed);
        packed = aligned_alloc(64, (size + 63) / 64 * 64);
        packed_size = packed ? size : 0;
    }
    return packed;
}

/* Where a finished tile of exact sums goes: ``acc`` (rows ld apart) as sum * scale, or,
 * with ``out``, q = clip(round(sum * scale)) with round = rint (mode 0), floor (1) or
 * none (2) saturating to [lo, hi], as q * deq in float32 (rows ldo apart), keeping the
 * extremes of q (as bn_round in native.c does, operation for operation). */
struct sink {
    double *acc;
    int64_t ld;
    double scale;
    int mode;
    double lo, hi;
    float *out;
    int64_t ldo;
    double deq;
    int32_t qmax[16], qmin[16]; /* by column of the tile: vertical extremes vectorise */
};

static inline double clip(double v, double lo, double hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

#define KEEP(v) (v)
/* q of a whole 16x16 tile (the padding's sums are 0, so q = 0 there: the extremes, which
 * start at 0, are unchanged by it), in fixed-size loops that vectorise. */
#define ROUND_TILE(ROUND)                                                      \
    for (int r = 0; r < 16; r++)                                               \
        for (int c = 0; c < 16; c++) {                                         \
            double v = clip(ROUND(sums[r][c] * s->scale), s->lo, s->hi);       \
            int32_t q = (int32_t)v;                                            \
            qmax[c] = q > qmax[c] ? q : qmax[c];                               \
            qmin[c] = q < qmin[c] ? q : qmin[c];                               \
            tile[r][c] = (float)(v * s->deq);                                  \
        }

static void emit(struct sink *s, double sums[16][16], int64_t m0, int64_t n0, int64_t mv,
                 int64_t nv) {
    if (!s->out) {
        for (int64_t r = 0; r < mv; r++) {
            double *o = s->acc + (m0 + r) * s->ld + n0;
            for (int64_t c = 0; c < nv; c++) o[c] = sums[r][c] * s->scale;
        }
        return;
    }
    float tile[16][16];
    int32_t *qmax = s->qmax, *qmin = s->qmin;
    if (s->mode == 0) {
        ROUND_TILE(rint)
    } else if (s->mode == 1) {
        ROUND_TILE(floor)
    } else {
        ROUND_TILE(KEEP)
    }
    float *o = s->out + m0 * s->ldo + n0;
    size_t row = (size_t)nv * sizeof(float);
    if (nv == 16) /* whole rows of the tile: a constant size, one vector each */
        for (int64_t r = 0; r < mv; r++) memcpy(o + r * s->ldo, tile[r], sizeof tile[r]);
    else
        for (int64_t r = 0; r < mv; r++) memcpy(o + r * s->ldo, tile[r], row);
}

#ifdef BN_AMX
struct tile_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

/* One 16x16 tile of the product into sink: A's panel (qh, ql), B's (ph, pl), kp bytes
 * of k each. Tiles: 0..3 the sums (hh, hl, lh, ll: four independent chains, so that a
 * product need not wait for the previous one's result), 4/5 A's high/low bytes, 6/7 B's;
 * configured by the caller. */
__attribute__((target("amx-tile,amx-int8"))) static void amx_tile(
    const int8_t *qh, const uint8_t *ql, const int8_t *ph, const uint8_t *pl, int64_t kp,
    struct sink *sink, int64_t m0, int64_t n0, int64_t mv, int64_t nv) {
    int32_t parts[4][16][16];
    double sums[16][16];
    for (int64_t c0 = 0; c0 < kp; c0 += KC) {
        int64_t c1 = c0 + KC < kp ? c0 + KC : kp;
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int64_t k0 = c0; k0 < c1; k0 += 64) {
            _tile_loadd(4, qh + k0 * 16, 64);
            _tile_loadd(5, ql + k0 * 16, 64);
            _tile_loadd(6, ph + k0 * 16, 64);
            _tile_loadd(7, pl + k0 * 16, 64);
            _tile_dpbssd(0, 4, 6);
            _tile_dpbsud(1, 4, 7);
            _tile_dpbusd(2, 5, 6);
            _tile_dpbuud(3, 5, 7);
        }
        _tile_stored(0, parts[0], 64);
        _tile_stored(1, parts[1], 64);
        _tile_stored(2, parts[2], 64);
        _tile_stored(3, parts[3], 64);
        for (int r = 0; r < 16; r++)
            for (int c = 0; c < 16; c++) {
                /* Exact: hl + lh is below 2**31 (see the top), every term and sum in
                 * double an integer below 2**53. */
                double v = (double)parts[0][r][c] * 65536.0 +
                           (double)(parts[1][r][c] + parts[2][r][c]) * 256.0 +
                           (double)parts[3][r][c];
                sums[r][c] = c0 ? sums[r][c] + v : v;
            }
    }
    emit(sink, sums, m0, n0, mv, nv);
}

/* B is packed in strips of columns of at most this many bytes (at least one panel), which
 * stay in L2 while every row tile of A meets them. */
#define STRIP (1 << 20)

/* The product of A packed (ah, al) and B (k, n, element strides sbk, sbn) into sink;
 * bh, bl: memory for a strip of B's panels (strip columns, kp bytes each). */
__attribute__((target("amx-tile,amx-int8"))) static void amx_product(
    const int8_t *ah, const uint8_t *al, const double *b, int64_t sbk, int64_t sbn, int64_t m,
    int64_t k, int64_t n, int64_t kp, int64_t strip, uint8_t *bh, uint8_t *bl,
    struct sink *sink) {
    struct tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    _tile_loadconfig(&cfg);
    for (int64_t s0 = 0; s0 < n; s0 += strip) {
        int64_t w = n - s0 < strip ? n - s0 : strip;
        pack_columns(b + s0 * sbn, sbk, sbn, k, kp, w, (uint32_t *)bh, (uint32_t *)bl);
        for (int64_t m0 = 0; m0 < m; m0 += 16)
            for (int64_t j0 = 0; j0 < w; j0 += 16)
                amx_tile(ah + m0 * kp, al + m0 * kp, (const int8_t *)bh + j0 * kp, bl + j0 * kp,
                         kp, sink, m0, s0 + j0, m - m0 < 16 ? m - m0 : 16,
                         w - j0 < 16 ? w - j0 : 16);
    }
    _tile_release();
}
#endif

/* The exact product a @ b into sink, for a (m, k) and b (k, n) of doubles holding
 * integers in [-32768, 32767], given by element strides. Returns 0, or -1 when it
 * cannot (no AMX, no memory). */
static int exact_gemm(const double *a, int64_t sam, int64_t sak, const double *b, int64_t sbk,
                      int64_t sbn, int64_t m, int64_t k, int64_t n, struct sink *sink) {
#ifdef BN_AMX
    int64_t mp = (m + 15) / 16 * 16, kp = (k + 63) / 64 * 64, np = (n + 15) / 16 * 16;
    int64_t strip = STRIP / (2 * kp * 16) * 16;
    strip = strip < 16 ? 16 : (strip > np ? np : strip);
    size_t asz = (size_t)(mp * kp), bsz = (size_t)(kp * strip);
    uint8_t *buf = packed_memory(2 * (asz + bsz));
    if (!buf) return -1;
    int8_t *ah = (int8_t *)buf;
    uint8_t *al = buf + asz, *bh = buf + 2 * asz, *bl = bh + bsz;
    pack_a(a, sam, sak, m, k, mp, kp, ah, al);
    amx_product(ah, al, b, sbk, sbn, m, k, n, kp, strip, bh, bl, sink);
    return 0;
#else
    (void)a, (void)sam, (void)sak, (void)b, (void)sbk, (void)sbn, (void)m, (void)k, (void)n;
    (void)sink;
    return -1;
#endif
}

/* out (m, n, rows ld apart) = (a @ b) * scale exactly (scale a power of two). */
int bn_exact_gemm(const double *a, int64_t sam, int64_t sak, const double *b, int64_t sbk,
                  int64_t sbn, int64_t m, int64_t k, int64_t n, double *out, int64_t ld,
                  double scale) {
    struct sink sink = {out, ld, scale, 0, 0, 0, NULL, 0, 0, {0}, {0}};
    return exact_gemm(a, sam, sak, b, sbk, sbn, m, k, n, &sink);
}

/* out (float32, rows ld apart) = clip(round((a @ b) * scale)) * deq, the exact product
 * rounded as bn_round does it (mode 0 rint, 1 floor, 2 none); *peak = max |q|. */
int bn_exact_gemm_round(const double *a, int64_t sam, int64_t sak, const double *b,
                        int64_t sbk, int64_t sbn, int64_t m, int64_t k, int64_t n, int mode,
                        double scale, double lo, double hi, float *out, int64_t ld,
                        double deq, double *peak) {
    struct sink sink = {NULL, 0, scale, mode, lo, hi, out, ld, deq, {0}, {0}};
    int done = exact_gemm(a, sam, sak, b, sbk, sbn, m, k, n, &sink);
    double top = 0;
    for (int c = 0; c < 16; c++) {
        top = (double)sink.qmax[c] > top ? (double)sink.qmax[c] : top;
        top = -(double)sink.qmin[c] > top ? -(double)sink.qmin[c] : top;
    }
    *peak = top;
    return done;
}
