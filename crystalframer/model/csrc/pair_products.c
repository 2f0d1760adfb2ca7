/* Per-pair products of attention (docs/model.md §6.3), for CPUs: each atom i has a row of its distinct key atoms
   dst[i, j] (j < count[i]), and

     dot:  s[i, h, j] = scale · <a[i, h], b[dst[i, j], h]>      (q·k/√d of each pair)
     mix:  o[i, h]    = Σ_j p[i, h, j] · b[dst[i, j], h]        (value sums Σ_j (Σ_n w_ijn) v_j)

   with their backward passes. The gradient of the gathered operand b is scattered to other atoms, so each thread
   accumulates it in its own buffer (gb, zeroed by the caller), which the caller sums. Each call handles the atoms
   [atom_lo, atom_hi). Layouts (C order): a, b, ga, gb, o, go (N, H, D); s, gs, p, gp (N, H, J); dst (N, J);
   count (N,). Entries j >= count[i] are neither read nor written, except that outputs s and gp are set to 0 there. */
#include <stdint.h>
#include <stdlib.h>
#include "parallel.h"

#define DEFINE_PAIRS(T, SUFFIX)                                                                                     \
static int pair_dot_fwd_range_##SUFFIX(const T *a, const T *b, const int64_t *dst, const int64_t *count, int64_t atom_lo,     \
                             int64_t atom_hi, int64_t heads, int64_t pairs, int64_t dim, T scale, T *s) {           \
    for (int64_t i = atom_lo; i < atom_hi; i++) {                                                                    \
        for (int64_t h = 0; h < heads; h++) {                                                                        \
            const T *ai = a + (i * heads + h) * dim;                                                                 \
            T *si = s + (i * heads + h) * pairs;                                                                     \
            for (int64_t j = 0; j < pairs; j++) {                                                                    \
                if (j >= count[i]) { si[j] = 0; continue; }                                                          \
                const T *bj = b + (dst[i * pairs + j] * heads + h) * dim;                                            \
                T acc = 0;                                                                                           \
                _Pragma("omp simd reduction(+:acc)")                                                                 \
                for (int64_t d = 0; d < dim; d++) acc += ai[d] * bj[d];                                              \
                si[j] = scale * acc;                                                                                 \
            }                                                                                                        \
        }                                                                                                            \
    }                                                                                                                \
    return 0;                                                                                                        \
}                                                                                                                    \
                                                                                                                     \
static int pair_dot_bwd_range_##SUFFIX(const T *a, const T *b, const int64_t *dst, const int64_t *count, int64_t atom_lo,     \
                             int64_t atom_hi, int64_t heads, int64_t pairs, int64_t dim, T scale, const T *gs,      \
                             T *ga, T *gb) {                                                                         \
    for (int64_t i = atom_lo; i < atom_hi; i++) {                                                                    \
        for (int64_t h = 0; h < heads; h++) {                                                                        \
            const T *ai = a + (i * heads + h) * dim;                                                                 \
            const T *gsi = gs + (i * heads + h) * pairs;                                                             \
            T *gai = ga + (i * heads + h) * dim;                                                                     \
            for (int64_t d = 0; d < dim; d++) gai[d] = 0;                                                            \
            for (int64_t j = 0; j < count[i]; j++) {                                                                 \
                const T g = scale * gsi[j];                                                                          \
                const int64_t off = (dst[i * pairs + j] * heads + h) * dim;                                          \
                const T *bj = b + off;                                                                               \
                T *gbj = gb + off;                                                                                   \
                for (int64_t d = 0; d < dim; d++) {                                                                  \
                    gai[d] += g * bj[d];                                                                             \
                    gbj[d] += g * ai[d];                                                                             \
                }                                                                                                    \
            }                                                                                                        \
        }                                                                                                            \
    }                                                                                                                \
    return 0;                                                                                                        \
}                                                                                                                    \
                                                                                                                     \
static int pair_mix_fwd_range_##SUFFIX(const T *p, const T *b, const int64_t *dst, const int64_t *count, int64_t atom_lo,     \
                             int64_t atom_hi, int64_t heads, int64_t pairs, int64_t dim, T *o) {                    \
    for (int64_t i = atom_lo; i < atom_hi; i++) {                                                                    \
        for (int64_t h = 0; h < heads; h++) {                                                                        \
            const T *pi = p + (i * heads + h) * pairs;                                                               \
            T *oi = o + (i * heads + h) * dim;                                                                       \
            for (int64_t d = 0; d < dim; d++) oi[d] = 0;                                                             \
            for (int64_t j = 0; j < count[i]; j++) {                                                                 \
                const T w = pi[j];                                                                                   \
                const T *bj = b + (dst[i * pairs + j] * heads + h) * dim;                                            \
                for (int64_t d = 0; d < dim; d++) oi[d] += w * bj[d];                                                \
            }                                                                                                        \
        }                                                                                                            \
    }                                                                                                                \
    return 0;                                                                                                        \
}                                                                                                                    \
                                                                                                                     \
static int pair_mix_bwd_range_##SUFFIX(const T *p, const T *b, const int64_t *dst, const int64_t *count, int64_t atom_lo,     \
                             int64_t atom_hi, int64_t heads, int64_t pairs, int64_t dim, const T *go, T *gp,        \
                             T *gb) {                                                                                \
    for (int64_t i = atom_lo; i < atom_hi; i++) {                                                                    \
        for (int64_t h = 0; h < heads; h++) {                                                                        \
            const T *pi = p + (i * heads + h) * pairs;                                                               \
            const T *goi = go + (i * heads + h) * dim;                                                               \
            T *gpi = gp + (i * heads + h) * pairs;                                                                   \
            for (int64_t j = 0; j < pairs; j++) {                                                                    \
                if (j >= count[i]) { gpi[j] = 0; continue; }                                                         \
                const int64_t off = (dst[i * pairs + j] * heads + h) * dim;                                          \
                const T *bj = b + off;                                                                               \
                T *gbj = gb + off;                                                                                   \
                const T w = pi[j];                                                                                   \
                T acc = 0;                                                                                           \
                for (int64_t d = 0; d < dim; d++) {                                                                  \
                    acc += goi[d] * bj[d];                                                                           \
                    gbj[d] += w * goi[d];                                                                            \
                }                                                                                                    \
                gpi[j] = acc;                                                                                        \
            }                                                                                                        \
        }                                                                                                            \
    }                                                                                                                \
    return 0;                                                                                                        \
}

/* The kernels' entry points: the atoms [atom_lo, atom_hi) in ranges of about equal numbers of pairs, run in
   parallel (parallel.h). The backward passes' gb is partial_count buffers of partial_stride values, one per range,
   which the caller sums. */
#define DEFINE_PAIR_ENTRIES(T, SUFFIX)                                                                              \
int cf_pair_dot_fwd_##SUFFIX(const T *a, const T *b, const int64_t *dst, const int64_t *count, int64_t atom_lo,     \
                             int64_t atom_hi, int64_t heads, int64_t pairs, int64_t dim, T scale, T *s) {           \
    int64_t *prefix = pair_prefix(count, atom_lo, atom_hi);                                                          \
    if (!prefix) return -2;                                                                                          \
    int result;                                                                                                      \
    CF_PARALLEL(result, atom_lo, atom_hi, prefix, CF_MAX_PARTS,                                                      \
                pair_dot_fwd_range_##SUFFIX(a, b, dst, count, c_lo, c_hi, heads, pairs, dim, scale, s));             \
    free(prefix);                                                                                                    \
    return result;                                                                                                   \
}                                                                                                                    \
                                                                                                                     \
int cf_pair_dot_bwd_##SUFFIX(const T *a, const T *b, const int64_t *dst, const int64_t *count, int64_t atom_lo,     \
                             int64_t atom_hi, int64_t heads, int64_t pairs, int64_t dim, T scale, const T *gs,      \
                             T *ga, T *gb, int64_t partial_stride, int64_t partial_count) {                         \
    int64_t *prefix = pair_prefix(count, atom_lo, atom_hi);                                                          \
    if (!prefix) return -2;                                                                                          \
    int result;                                                                                                      \
    CF_PARALLEL(result, atom_lo, atom_hi, prefix, partial_count,                                                     \
                pair_dot_bwd_range_##SUFFIX(a, b, dst, count, c_lo, c_hi, heads, pairs, dim, scale, gs, ga,          \
                                            gb + part * partial_stride));                                            \
    free(prefix);                                                                                                    \
    return result;                                                                                                   \
}                                                                                                                    \
                                                                                                                     \
int cf_pair_mix_fwd_##SUFFIX(const T *p, const T *b, const int64_t *dst, const int64_t *count, int64_t atom_lo,     \
                             int64_t atom_hi, int64_t heads, int64_t pairs, int64_t dim, T *o) {                    \
    int64_t *prefix = pair_prefix(count, atom_lo, atom_hi);                                                          \
    if (!prefix) return -2;                                                                                          \
    int result;                                                                                                      \
    CF_PARALLEL(result, atom_lo, atom_hi, prefix, CF_MAX_PARTS,                                                      \
                pair_mix_fwd_range_##SUFFIX(p, b, dst, count, c_lo, c_hi, heads, pairs, dim, o));                    \
    free(prefix);                                                                                                    \
    return result;                                                                                                   \
}                                                                                                                    \
                                                                                                                     \
int cf_pair_mix_bwd_##SUFFIX(const T *p, const T *b, const int64_t *dst, const int64_t *count, int64_t atom_lo,     \
                             int64_t atom_hi, int64_t heads, int64_t pairs, int64_t dim, const T *go, T *gp,        \
                             T *gb, int64_t partial_stride, int64_t partial_count) {                                \
    int64_t *prefix = pair_prefix(count, atom_lo, atom_hi);                                                          \
    if (!prefix) return -2;                                                                                          \
    int result;                                                                                                      \
    CF_PARALLEL(result, atom_lo, atom_hi, prefix, partial_count,                                                     \
                pair_mix_bwd_range_##SUFFIX(p, b, dst, count, c_lo, c_hi, heads, pairs, dim, go, gp,                 \
                                            gb + part * partial_stride));                                            \
    free(prefix);                                                                                                    \
    return result;                                                                                                   \
}

/* Prefix sums of the pair counts of atoms [lo, hi), indexed by atom (entries below lo unused); NULL if out of
   memory. */
static int64_t *pair_prefix(const int64_t *count, int64_t lo, int64_t hi) {
    int64_t *prefix = (int64_t *)malloc(sizeof(int64_t) * (hi + 1));
    if (!prefix) return NULL;
    prefix[lo] = 0;
    for (int64_t i = lo; i < hi; i++) prefix[i + 1] = prefix[i] + count[i] + 1;  /* + 1: every atom costs a little */
    return prefix;
}

/* The number of threads a kernel call would use (0: built without OpenMP; the caller splits the work). */
int cf_openmp(void) { return cf_openmp_threads(); }

DEFINE_PAIRS(float, f32)
DEFINE_PAIRS(double, f64)
DEFINE_PAIR_ENTRIES(float, f32)
DEFINE_PAIR_ENTRIES(double, f64)
