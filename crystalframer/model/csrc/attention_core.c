/* The per-slot work of one attention layer (docs/model.md §6.3), fused, for CPUs.

   Forward, for each atom i and head h over the slots m of i's packed rows (nearest first), with the log distance
   factor x_m = a[i, h] · |r_m|² and the cutoff switch s(x) (1 for x >= x_in, smoothstep t³(10 − 15t + 6t²) of
   t = (x − x_out)/(x_in − x_out) between, 0 at x <= x_out; s = 1 everywhere without a taper, x_in = x_out = −inf):
     logit_m = qk[i, h, pair(m)] + x_m + log s(x_m)    (−inf on empty slots and at x_m <= x_out: a suffix of the
                                                       atom's slots, as they are nearest first)
     w_m     = s(x_m) · floored_exp(qk + x_m − max) / Σ   (one softmax per (i, h) across all of i's rows)
     pw[i, h, pair(m)] += w_m                          (value sums per atom pair)
     feat[i, h, k0_m + t] += w_m · bw[m, t]            (distance bases: the window of bases around |r_m|)
   Backward, with g_m = gpw[i, h, pair(m)] + Σ_t gfeat[i, h, k0_m + t] · bw[m, t] + extra[m] (the gradient that
   reaches w_m from the value sums, the distance features and, for framed models, the angle term):
     glogit_m = w_m · (g_m − Σ_m' w_m' g_m'),  gqk[i, h, pair(m)] += glogit_m,
     ga[i, h] += glogit_m · |r_m|² · (1 + s'(x_m)/s(x_m))   (computed as (g_m − mean)·(w_m/s)·s' in the taper).
   The same arithmetic as the PyTorch version in attention.py, whose results it matches to rounding (tests).
   Each call handles the atoms [atom_lo, atom_hi); callers run disjoint ranges in parallel threads, and no two
   atoms write the same output. Layouts (C order): qk, pw, gpw (N, H, J); a, ga (N, H); dist2, pair_slot, pad
   (R, W); weights, logits, extra, glogit (R, H, W); bw (R, W, B) and k0 (R, W): the B consecutive distance bases
   k0 .. k0 + B − 1 of each slot; feat, gfeat (N, H, K); atom_rows (N + 1,) the first row of each atom.
   ends (N, H): the number of the atom's slots within each head's cutoff (written by the forward pass, read by the
   backward pass). Outputs pw, feat, gqk and ga must be zeroed by the caller. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include "ftz.h"
#include "parallel.h"

/* max_frames.c: the axes of one atom's max frames, for some of its heads, from their logits and weights */
#define DECLARE_FRAME_HEADS(T, SUFFIX)                                                                              \
void cf_max_frame_heads_##SUFFIX(const T *scores, int64_t sc_row, int64_t sc_head, const T *weights, int64_t wt_row,  \
                                 int64_t wt_head, const T *rowmax_in, const T *unit_t, const T *vec, const T *dist2,  \
                                 const T *bias, const T *a, int64_t i, int64_t r0, int64_t r1, int64_t heads,       \
                                 int64_t h_lo, int64_t h_hi, int64_t width, int stochastic, T half_width1,           \
                                 T half_width2, uint64_t seed, T *d1, T *d2, uint8_t *found, T *scratch,             \
                                 T *frames_out);
DECLARE_FRAME_HEADS(float, f32)
DECLARE_FRAME_HEADS(double, f64)

/* exp(x) for log_floor <= x <= 0 (the only arguments here: logits minus their maximum, floored), in a form the
   compiler vectorizes: x = n·ln2 + r with |r| <= ln2/2, e^r by a polynomial (float: degree 6, double: the (3, 3)
   Padé form 1 + 2·r·P(r²)/(Q(r²) − r·P(r²))), times 2^n built from its exponent bits. Within ~1 ulp of libm
   (the kernels are tested against PyTorch's exp to rounding). The floor keeps 2^n a normal number. */
static inline float cf_expf(float x) {
    const float n = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline double cf_exp(double x) {
    const double n = floor(x * 1.4426950408889634074 + 0.5);
    double r = x - n * 6.93145751953125e-1;
    r = r - n * 1.42860682030941723212e-6;
    const double rr = r * r;
    const double px = r * ((1.26177193074810590878e-4 * rr + 3.02994407707441961300e-2) * rr
                           + 9.99999999999999999910e-1);
    const double qx = ((3.00198505138664455042e-6 * rr + 2.52448340349684104192e-3) * rr
                       + 2.27265548208155028766e-1) * rr + 2.00000000000000000009e0;
    const double e = 1.0 + 2.0 * (px / (qx - px));
    const int64_t bits = ((int64_t)n + 1023) << 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return e * scale;
}



/* The cutoff switch s(x) and ds/dx for x > x_out (smoothstep of t = (x − x_out)·inv_span, clamped at 1). */
#define TAPER(T, x, x_out, inv_span, s, ds)                                                                         \
    do {                                                                                                             \
        T t_ = ((x) - (x_out)) * (inv_span);                                                                         \
        t_ = t_ < (T)1 ? t_ : (T)1;                                                                                  \
        const T u_ = (T)1 - t_;                                                                                      \
        s = t_ * t_ * t_ * ((T)10 + t_ * ((T)-15 + (T)6 * t_));                                                      \
        ds = (T)30 * t_ * t_ * u_ * u_ * (inv_span);                                                                 \
    } while (0)

/* The rows r of atom i holding its first `end` slots, with mend slots used in row r (end is a prefix). */
#define PREFIX_ROWS(...)                                                                                            \
    for (int64_t r = r0, left = end; r < r1 && left > 0; r++, left -= width) {                                        \
        const int64_t mend = left < width ? left : width;                                                            \
        __VA_ARGS__                                                                                                  \
    }

#define DEFINE_ATTENTION(T, SUFFIX, EXP)                                                                            \
static int attn_fwd_range_##SUFFIX(const T *qk, const T *a, const T *dist2, const int64_t *pair_slot, const uint8_t *pad,      \
                         const T *bw, const int64_t *k0, const int64_t *atom_rows, int64_t atom_lo,                 \
                         int64_t atom_hi, int64_t heads, int64_t width, int64_t pairs, int64_t bases,               \
                         int64_t window, T log_floor, T x_out, T x_in, T *logits, T *weights, T *pw, T *feat,      \
                         int64_t *ends, const T *unit_t, const T *vec, const T *bias, int stochastic,               \
                         T half_width1, T half_width2, uint64_t seed, T *d1, T *d2, uint8_t *found,                 \
                         T *frames_out) {                                                                           \
    const int tapered = x_in > x_out;                                                                                \
    const T inv_span = tapered ? (T)1 / (x_in - x_out) : (T)0;                                                       \
    /* max frames (when d1 is given): per atom, from its logits while they are in cache (max_frames.c) */          \
    T *scratch = NULL;                                                                                               \
    if (d1) {                                                                                                        \
        int64_t most_rows = 1;                                                                                       \
        for (int64_t i = atom_lo; i < atom_hi; i++)                                                                  \
            if (atom_rows[i + 1] - atom_rows[i] > most_rows) most_rows = atom_rows[i + 1] - atom_rows[i];            \
        scratch = (T *)malloc(sizeof(T) * most_rows * (3 + 2 * width + heads * width));                             \
        if (!scratch) return -2;                                                                                     \
    }                                                                                                                \
    FTZ_BEGIN                                                                                                        \
    for (int64_t i = atom_lo; i < atom_hi; i++) {                                                                    \
        const int64_t r0 = atom_rows[i], r1 = atom_rows[i + 1];                                                      \
        /* the atom's logits, (rows, H, W) from row r0: the caller's, or the frames' scratch */                      \
        T *atom_logits = logits ? logits + r0 * heads * width : (d1 && tapered ? scratch : NULL);                    \
        /* without the taper, each head's frames are chosen right after its softmax, from its logits kept in       */ \
        /* head_logits (rows, W) with each row's best valid logit in head_best                                     */ \
        T *head_logits = d1 && !atom_logits ? scratch : NULL;                                                        \
        T *head_best = head_logits ? head_logits + (r1 - r0) * width : NULL;                                         \
        const int64_t slots = (r1 - r0) * width;                                                                     \
        int64_t max_end = 0;                                                                                         \
        for (int64_t h = 0; h < heads; h++) {                                                                        \
            const T *q = qk + (i * heads + h) * pairs;                                                               \
            const T ah = a[i * heads + h];                                                                           \
            /* slots are nearest first, so the head's cutoff ends a prefix; padding only ends the last row */        \
            int64_t end = 0;                                                                                         \
            while (end < slots && pad[r0 * width + end] && ah * dist2[r0 * width + end] > x_out) end++;             \
            ends[i * heads + h] = end;                                                                               \
            max_end = end > max_end ? end : max_end;                                                                 \
            T peak = -INFINITY;                                                                                      \
            if (head_logits) { /* rows beyond the prefix (and the last row's tail) hold no logits */                 \
                for (int64_t r = r0; r < r1; r++) head_best[r - r0] = -INFINITY;                                     \
                for (int64_t k = end; k < (r1 - r0) * width; k++) head_logits[k] = -INFINITY;                        \
            }                                                                                                        \
            PREFIX_ROWS(                                                                                             \
                T *w = weights + (r * heads + h) * width;                                                            \
                const int64_t *ps = pair_slot + r * width;                                                           \
                const T *d2 = dist2 + r * width;                                                                     \
                if (head_logits) {                                                                                   \
                    T *hl = head_logits + (r - r0) * width;                                                          \
                    const T *bs = bias + r * width;                                                                  \
                    T best = -INFINITY;                                                                              \
                    _Pragma("omp simd reduction(max:peak) reduction(max:best)")                                      \
                    for (int64_t m = 0; m < mend; m++) {                                                             \
                        const T l = q[ps[m]] + ah * d2[m];                                                           \
                        w[m] = l;                                                                                    \
                        hl[m] = l;                                                                                   \
                        peak = l > peak ? l : peak;                                                                  \
                        const T v = l + bs[m];                                                                       \
                        best = v > best ? v : best;                                                                  \
                    }                                                                                                \
                    head_best[r - r0] = best;                                                                        \
                } else {                                                                                             \
                    _Pragma("omp simd reduction(max:peak)")                                                          \
                    for (int64_t m = 0; m < mend; m++) {                                                             \
                        const T l = q[ps[m]] + ah * d2[m];                                                           \
                        w[m] = l;                                                                                    \
                        peak = l > peak ? l : peak;                                                                  \
                    }                                                                                                \
                }                                                                                                    \
            )                                                                                                        \
            if (atom_logits) {                                                                                       \
                for (int64_t r = r0; r < r1; r++) {                                                                  \
                    T *lo = atom_logits + ((r - r0) * heads + h) * width;                                            \
                    const T *w = weights + (r * heads + h) * width;                                                  \
                    const T *d2 = dist2 + r * width;                                                                 \
                    const int64_t left = end - (r - r0) * width;                                                     \
                    for (int64_t m = 0; m < width; m++) {                                                            \
                        lo[m] = m < left ? w[m] : -INFINITY;                                                         \
                        if (tapered && m < left && ah * d2[m] < x_in) {                                              \
                            T sw, dsw;                                                                               \
                            TAPER(T, ah * d2[m], x_out, inv_span, sw, dsw);                                          \
                            lo[m] = sw > 0 ? lo[m] + log(sw) : -INFINITY;                                            \
                        }                                                                                            \
                    }                                                                                                \
                }                                                                                                    \
            }                                                                                                        \
            T total = 0;                                                                                             \
            PREFIX_ROWS(                                                                                             \
                T *w = weights + (r * heads + h) * width;                                                            \
                const T *d2 = dist2 + r * width;                                                                     \
                if (tapered) {                                                                                       \
                    _Pragma("omp simd reduction(+:total)")                                                           \
                    for (int64_t m = 0; m < mend; m++) {                                                             \
                        T x = w[m] - peak, sw, dsw;                                                                  \
                        x = x > log_floor ? x : log_floor;                                                           \
                        TAPER(T, ah * d2[m], x_out, inv_span, sw, dsw);                                              \
                        const T e = EXP(x) * sw;                                                                     \
                        w[m] = e;                                                                                    \
                        total += e;                                                                                  \
                    }                                                                                                \
                } else {                                                                                             \
                    _Pragma("omp simd reduction(+:total)")                                                           \
                    for (int64_t m = 0; m < mend; m++) {                                                             \
                        T x = w[m] - peak;                                                                           \
                        x = x > log_floor ? x : log_floor;                                                           \
                        const T e = EXP(x);                                                                          \
                        w[m] = e;                                                                                    \
                        total += e;                                                                                  \
                    }                                                                                                \
                }                                                                                                    \
            )                                                                                                        \
            const T inv = (T)1 / total;                                                                              \
            T *p = pw + (i * heads + h) * pairs;                                                                     \
            for (int64_t r = r0, left = end; r < r1; r++, left -= width) {                                           \
                T *w = weights + (r * heads + h) * width;                                                            \
                const int64_t *ps = pair_slot + r * width;                                                           \
                const int64_t mend = left < 0 ? 0 : left < width ? left : width;                                     \
                for (int64_t m = 0; m < mend; m++) w[m] *= inv;                                                      \
                for (int64_t m = 0; m < mend; m++) p[ps[m]] += w[m];                                                 \
                for (int64_t m = mend; m < width; m++) w[m] = 0;                                                     \
            }                                                                                                        \
            if (head_logits)                                                                                         \
                cf_max_frame_heads_##SUFFIX(head_logits, width, 0, weights + r0 * heads * width, heads * width,      \
                                            width, head_best, unit_t, vec, dist2, bias, a, i, r0, r1, heads, h,      \
                                            h + 1, width, stochastic, half_width1, half_width2, seed, d1, d2, found, \
                                            head_best + (r1 - r0), frames_out);                                      \
        }                                                                                                            \
        T *f = feat + i * heads * bases;                                                                             \
        const int64_t *e = ends + i * heads;                                                                         \
        for (int64_t r = r0, s0 = 0; r < r1 && s0 < max_end; r++, s0 += width) {                                     \
            for (int64_t m = 0; m < width && s0 + m < max_end; m++) {                                                \
                const int64_t at = r * width + m;                                                                    \
                const T *b = bw + at * window;                                                                       \
                const int64_t k = k0[at];                                                                            \
                for (int64_t h = 0; h < heads; h++) {                                                                \
                    if (s0 + m >= e[h]) continue;                                                                    \
                    const T v = weights[(r * heads + h) * width + m];                                                \
                    T *fh = f + h * bases + k;                                                                       \
                    if (window == 32) { /* the default width: a fixed-length loop the compiler unrolls */             \
                        for (int64_t t = 0; t < 32; t++) fh[t] += v * b[t];                                          \
                    } else {                                                                                         \
                        for (int64_t t = 0; t < window; t++) fh[t] += v * b[t];                                      \
                    }                                                                                                \
                }                                                                                                    \
            }                                                                                                        \
        }                                                                                                            \
        if (d1 && atom_logits)                                                                                       \
            cf_max_frame_heads_##SUFFIX(atom_logits, heads * width, width, weights + r0 * heads * width,             \
                                        heads * width, width, NULL, unit_t, vec, dist2, bias, a, i, r0, r1, heads, 0,\
                                        heads, width, stochastic, half_width1, half_width2, seed, d1, d2, found,     \
                                        scratch + (logits ? 0 : (r1 - r0) * heads * width), frames_out);             \
    }                                                                                                                \
    FTZ_END                                                                                                          \
    free(scratch);                                                                                                   \
    return 0;                                                                                                        \
}                                                                                                                    \
                                                                                                                     \
static int attn_bwd_range_##SUFFIX(const T *weights, const T *dist2, const int64_t *pair_slot, const int64_t *ends,            \
                         const T *bw, const int64_t *k0, const int64_t *atom_rows, int64_t atom_lo,                 \
                         int64_t atom_hi, int64_t heads, int64_t width, int64_t pairs, int64_t bases,               \
                         int64_t window, T x_out, T x_in, const T *a, const T *gpw, const T *gfeat, const T *extra, \
                         T *glogit, T *gqk, T *ga) {                                                                \
    const int tapered = x_in > x_out;                                                                                \
    const T inv_span = tapered ? (T)1 / (x_in - x_out) : (T)0;                                                       \
    FTZ_BEGIN                                                                                                        \
    for (int64_t i = atom_lo; i < atom_hi; i++) {                                                                    \
        const int64_t r0 = atom_rows[i], r1 = atom_rows[i + 1];                                                      \
        const T *gf = gfeat + i * heads * bases;                                                                     \
        const T *gp = gpw + i * heads * pairs;                                                                       \
        const int64_t *e = ends + i * heads;                                                                         \
        for (int64_t r = r0, s0 = 0; r < r1; r++, s0 += width) {                                                     \
            for (int64_t m = 0; m < width; m++) {                                                                    \
                const int64_t at = r * width + m;                                                                    \
                const T *b = bw + at * window;                                                                       \
                const int64_t k = k0[at], pair = pair_slot[at];                                                      \
                for (int64_t h = 0; h < heads; h++) {                                                                \
                    const int64_t out = (r * heads + h) * width + m;                                                 \
                    if (s0 + m >= e[h]) { glogit[out] = 0; continue; }                                               \
                    const T *gfh = gf + h * bases + k;                                                               \
                    T g = gp[h * pairs + pair];                                                                      \
                    if (window == 32) {                                                                              \
                        _Pragma("omp simd reduction(+:g)")                                                           \
                        for (int64_t t = 0; t < 32; t++) g += gfh[t] * b[t];                                         \
                    } else {                                                                                         \
                        for (int64_t t = 0; t < window; t++) g += gfh[t] * b[t];                                     \
                    }                                                                                                \
                    if (extra) g += extra[out];                                                                      \
                    glogit[out] = g;                                                                                 \
                }                                                                                                    \
            }                                                                                                        \
        }                                                                                                            \
        for (int64_t h = 0; h < heads; h++) {                                                                        \
            const int64_t end = e[h];                                                                                \
            T mean = 0;                                                                                              \
            PREFIX_ROWS(                                                                                             \
                const T *w = weights + (r * heads + h) * width;                                                      \
                const T *g = glogit + (r * heads + h) * width;                                                       \
                _Pragma("omp simd reduction(+:mean)")                                                                \
                for (int64_t m = 0; m < mend; m++) mean += w[m] * g[m];                                              \
            )                                                                                                        \
            T *gq = gqk + (i * heads + h) * pairs;                                                                   \
            const T ah = a[i * heads + h];                                                                           \
            T gah = 0;                                                                                               \
            PREFIX_ROWS(                                                                                             \
                const T *w = weights + (r * heads + h) * width;                                                      \
                T *g = glogit + (r * heads + h) * width;                                                             \
                const int64_t *ps = pair_slot + r * width;                                                           \
                const T *d2 = dist2 + r * width;                                                                     \
                for (int64_t m = 0; m < mend; m++) {                                                                 \
                    if (!tapered || ah * d2[m] >= x_in) continue;                                                    \
                    T sw, dsw;                                                                                       \
                    TAPER(T, ah * d2[m], x_out, inv_span, sw, dsw);                                                  \
                    if (sw > 0) gah += (g[m] - mean) * (w[m] / sw) * dsw * d2[m];                                    \
                }                                                                                                    \
                _Pragma("omp simd reduction(+:gah)")                                                                 \
                for (int64_t m = 0; m < mend; m++) {                                                                 \
                    const T v = w[m] * (g[m] - mean);                                                                \
                    g[m] = v;                                                                                        \
                    gah += v * d2[m];                                                                                \
                }                                                                                                    \
                for (int64_t m = 0; m < mend; m++) gq[ps[m]] += g[m];                                                \
            )                                                                                                        \
            ga[i * heads + h] = gah;                                                                                 \
        }                                                                                                            \
    }                                                                                                                \
    FTZ_END                                                                                                          \
    return 0;                                                                                                        \
}

/* The entry points: atoms [atom_lo, atom_hi) in ranges of about equal numbers of rows, run in parallel
   (parallel.h). */
#define DEFINE_ATTENTION_ENTRIES(T, SUFFIX)                                                                         \
int cf_attn_fwd_##SUFFIX(const T *qk, const T *a, const T *dist2, const int64_t *pair_slot, const uint8_t *pad,      \
                         const T *bw, const int64_t *k0, const int64_t *atom_rows, int64_t atom_lo,                 \
                         int64_t atom_hi, int64_t heads, int64_t width, int64_t pairs, int64_t bases,               \
                         int64_t window, T log_floor, T x_out, T x_in, T *logits, T *weights, T *pw, T *feat,      \
                         int64_t *ends, const T *unit_t, const T *vec, const T *bias, int stochastic,               \
                         T half_width1, T half_width2, uint64_t seed, T *d1, T *d2, uint8_t *found,                 \
                         T *frames_out) {                                                                           \
    int result;                                                                                                      \
    CF_PARALLEL(result, atom_lo, atom_hi, atom_rows, CF_MAX_PARTS,                                                   \
                attn_fwd_range_##SUFFIX(qk, a, dist2, pair_slot, pad, bw, k0, atom_rows, c_lo, c_hi, heads, width,   \
                                        pairs, bases, window, log_floor, x_out, x_in, logits, weights, pw, feat,     \
                                        ends, unit_t, vec, bias, stochastic, half_width1, half_width2, seed, d1, d2, \
                                        found, frames_out));                                                         \
    return result;                                                                                                   \
}                                                                                                                    \
                                                                                                                     \
int cf_attn_bwd_##SUFFIX(const T *weights, const T *dist2, const int64_t *pair_slot, const int64_t *ends,            \
                         const T *bw, const int64_t *k0, const int64_t *atom_rows, int64_t atom_lo,                 \
                         int64_t atom_hi, int64_t heads, int64_t width, int64_t pairs, int64_t bases,               \
                         int64_t window, T x_out, T x_in, const T *a, const T *gpw, const T *gfeat, const T *extra, \
                         T *glogit, T *gqk, T *ga) {                                                                \
    int result;                                                                                                      \
    CF_PARALLEL(result, atom_lo, atom_hi, atom_rows, CF_MAX_PARTS,                                                   \
                attn_bwd_range_##SUFFIX(weights, dist2, pair_slot, ends, bw, k0, atom_rows, c_lo, c_hi, heads,       \
                                        width, pairs, bases, window, x_out, x_in, a, gpw, gfeat, extra, glogit, gqk, \
                                        ga));                                                                        \
    return result;                                                                                                   \
}

DEFINE_ATTENTION(float, f32, cf_expf)
DEFINE_ATTENTION(double, f64, cf_exp)
DEFINE_ATTENTION_ENTRIES(float, f32)
DEFINE_ATTENTION_ENTRIES(double, f64)
