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
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 11))
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

/* A (m, k) with element strides (sm, sk) -> bytes in panels of 16 rows: element (i, k)
 * at panel i / 16, byte (k / 64) * 1024 + (i % 16) * 64 + k % 64 (one tile's rows
 * contiguous); the padding up to (mp, kp) zero. */
static void pack_a(const double *x, int64_t sm, int64_t sk, int64_t m, int64_t k, int64_t mp,
                   int64_t kp, int8_t *hi, uint8_t *lo) {
    memset(hi, 0, (size_t)(mp * kp));
    memset(lo, 0, (size_t)(mp * kp));
    for (int64_t i = 0; i < m; i++) {
        int64_t base = (i / 16) * 16 * kp + (i % 16) * 64;
        for (int64_t k0 = 0; k0 < k; k0 += 64) {
            int8_t *h = hi + base + k0 * 16;
            uint8_t *l = lo + base + k0 * 16;
            const double *r = x + i * sm + k0 * sk;
            int64_t len = k - k0 < 64 ? k - k0 : 64;
            for (int64_t j = 0; j < len; j++) {
                int32_t v = (int32_t)r[j * sk];
                h[j] = (int8_t)(v >> 8);
                l[j] = (uint8_t)(v & 255);
            }
        }
    }
}

/* Columns n0 .. n0 + nv (nv <= 16) of B (k, n), element strides (sk, sn), as one panel
 * of bytes in AMX's B layout: element (k, n0 + j) at byte (k / 4) * 64 + j * 4 + k % 4
 * (rows of four k side by side), i.e. four-byte word (k / 4) * 16 + j; the padding up
 * to (kp, 16) zero. */
static void pack_panel(const double *x, int64_t sk, int64_t sn, int64_t k, int64_t kp,
                       int64_t nv, uint32_t *hi, uint32_t *lo) {
    int64_t k4 = k / 4 * 4;
    if (nv < 16 || k4 < kp) {
        int64_t from = nv < 16 ? 0 : k4 / 4 * 16;
        memset(hi + from, 0, (size_t)(kp * 4 - from) * 4);
        memset(lo + from, 0, (size_t)(kp * 4 - from) * 4);
    }
    if (sn == 1) { /* rows contiguous: four rows at a time */
        for (int64_t g = 0; g < k4; g += 4) {
            const double *r = x + g * sk;
            uint32_t *h = hi + g * 4, *l = lo + g * 4;
            for (int64_t j = 0; j < nv; j++)
                SPLIT4(r[j], r[sk + j], r[2 * sk + j], r[3 * sk + j], h[j], l[j])
        }
    } else { /* a column at a time */
        for (int64_t j = 0; j < nv; j++) {
            const double *c = x + j * sn;
            for (int64_t g = 0; g < k4; g += 4)
                SPLIT4(c[g * sk], c[(g + 1) * sk], c[(g + 2) * sk], c[(g + 3) * sk],
                       hi[g * 4 + j], lo[g * 4 + j])
        }
    }
    for (int64_t j = 0; k4 < k && j < nv; j++) { /* the last, partial group of four */
        double v[4] = {0, 0, 0, 0};
        for (int64_t i = k4; i < k; i++) v[i - k4] = x[i * sk + j * sn];
        SPLIT4(v[0], v[1], v[2], v[3], hi[k4 * 4 + j], lo[k4 * 4 + j])
    }
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

#ifdef BN_AMX
struct tile_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

/* Tiles: 0..3 the sums (hh, hl, lh, ll: four independent chains, so that a product
 * need not wait for the previous one's result), 4/5 A's high/low bytes, 6/7 B's. */
__attribute__((target("amx-tile,amx-int8"))) static void amx_tiles(
    const int8_t *ah, const uint8_t *al, const double *b, int64_t sbk, int64_t sbn, int64_t m,
    int64_t k, int64_t n, int64_t kp, uint32_t *bh, uint32_t *bl, double *out, int64_t ld,
    double scale) {
    struct tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    _tile_loadconfig(&cfg);
    int32_t sums[4][16][16];
    for (int64_t n0 = 0; n0 < n; n0 += 16) {
        int64_t nv = n - n0 < 16 ? n - n0 : 16;
        /* B's panel of these columns, packed here so that it stays in cache. */
        pack_panel(b + n0 * sbn, sbk, sbn, k, kp, nv, bh, bl);
        const int8_t *ph = (const int8_t *)bh;
        const uint8_t *pl = (const uint8_t *)bl;
        for (int64_t m0 = 0; m0 < m; m0 += 16) {
            int64_t mv = m - m0 < 16 ? m - m0 : 16;
            const int8_t *qh = ah + m0 * kp;
            const uint8_t *ql = al + m0 * kp;
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
                _tile_stored(0, sums[0], 64);
                _tile_stored(1, sums[1], 64);
                _tile_stored(2, sums[2], 64);
                _tile_stored(3, sums[3], 64);
                for (int64_t r = 0; r < mv; r++) {
                    double *o = out + (m0 + r) * ld + n0;
                    for (int64_t c = 0; c < nv; c++) {
                        double v = ((double)sums[0][r][c] * 65536.0 +
                                    ((double)sums[1][r][c] + (double)sums[2][r][c]) * 256.0 +
                                    (double)sums[3][r][c]) *
                                   scale;
                        o[c] = c0 ? o[c] + v : v;
                    }
                }
            }
        }
    }
    _tile_release();
}
#endif

/* out (m, n, rows ld apart) = (a @ b) * scale, exactly, for a (m, k) and b (k, n) of
 * doubles holding integers in [-32768, 32767], given by element strides; scale a power
 * of two. Returns 0, or -1 when it cannot (no AMX, no memory). */
int bn_exact_gemm(const double *a, int64_t sam, int64_t sak, const double *b, int64_t sbk,
                  int64_t sbn, int64_t m, int64_t k, int64_t n, double *out, int64_t ld,
                  double scale) {
#ifdef BN_AMX
    int64_t mp = (m + 15) / 16 * 16, kp = (k + 63) / 64 * 64;
    size_t asz = (size_t)(mp * kp), bsz = (size_t)(kp * 16);
    uint8_t *buf = packed_memory(2 * (asz + bsz));
    if (!buf) return -1;
    int8_t *ah = (int8_t *)buf;
    uint8_t *al = buf + asz, *bh = buf + 2 * asz, *bl = bh + bsz;
    pack_a(a, sam, sak, m, k, mp, kp, ah, al);
    amx_tiles(ah, al, b, sbk, sbn, m, k, n, kp, (uint32_t *)bh, (uint32_t *)bl, out, ld, scale);
    return 0;
#else
    (void)a, (void)sam, (void)sak, (void)b, (void)sbk, (void)sbn, (void)m, (void)k, (void)n;
    (void)out, (void)ld, (void)scale;
    return -1;
#endif
}
