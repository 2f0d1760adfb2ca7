/* Per-item work of the grid path of the framed angle term (docs/model.md §6.4), for CPUs.

   forward:  out[i, h] = Σ_a Σ_m w_m Σ_s L_s(c) · table[3h + a, node + s]   (a vector of `dim` values)
   backward: g_w[m]    = Σ_a Σ_s L_s(c) · <table[3h + a, node + s], g_out[i, h]>,
             g_table[3h + a, node + s] += w_m · L_s(c) · g_out[i, h],
   with c = e_iha · r̂ the cosine of a slot with axis a of its atom's frame, node the stencil node −1 of c on the
   uniform grid and L_s (s = 0..3) the cubic Lagrange weights of nodes −1, 0, 1, 2 (the table holds the projected
   angle basis at the grid nodes): what the PyTorch version in features.py computes. Per (atom, head, axis) the
   items add their stencil weights to a histogram over the G nodes that stays in cache, and `dim` dot products of
   length G with the table finish the sum; backward, the table projected on g_out is interpolated at each item, and
   the histogram times g_out is the table gradient. Items of zero weight add nothing and are skipped. `ends` (N, H),
   when given, says that only the first ends[i, h] slots of atom i are inside head h's softmax (the attention
   kernel reports them): the others are not visited, and their weight gradient is reported as 0, since nothing
   upstream depends on it. Slots without a direction (empty, zero image) get weight gradient 0. Each call handles
   the atoms [atom_lo, atom_hi); callers run disjoint ranges in parallel threads, each with its own g_table.
   Layouts (C order): weights, g_w (R, H, W); frames (N, H, 3, 3); unit_t (R, 3, W) (the unit vectors of a row, one
   component per line); atom_rows (N + 1,) the first row of each atom; table_t, g_table_t (3H, dim, G) (transposed:
   contiguous over the nodes); out, g_out (N, H, dim). */
#include <stdint.h>
#include <stdlib.h>
#include "ftz.h"

#define MAX_WIDTH 256

#define DEFINE_KERNELS(T, SUFFIX)                                                                                   \
static inline void stencils_##SUFFIX(const T *e, const T *ux, const T *uy, const T *uz, const T *w, int64_t width,   \
                                     int cos_abs, T start, T inv_step, T top, int64_t *node, T *taps) {              \
    const T e0 = e[0], e1 = e[1], e2 = e[2];                                                                         \
    for (int64_t m = 0; m < width; m++) {                                                                            \
        T c = e0 * ux[m] + e1 * uy[m] + e2 * uz[m];                                                                  \
        if (cos_abs) c = c < 0 ? -c : c;                                                                             \
        T u = (c - start) * inv_step;                                                                                \
        u = u > (T)1 ? u : (T)1; /* the clamp only guards against rounding (AngleGrid) */                            \
        u = u < top ? u : top;                                                                                       \
        int64_t j = (int64_t)u;                                                                                      \
        T t = u - (T)j, p = t * (t - (T)1), q = p - (T)2, wm = w ? w[m] : (T)1;                                      \
        node[m] = j - 1;                                                                                             \
        taps[m] = -wm * p * (t - (T)2) * ((T)1 / (T)6);                                                              \
        taps[MAX_WIDTH + m] = (T)0.5 * wm * q * (t - (T)1);                                                          \
        taps[2 * MAX_WIDTH + m] = (T)-0.5 * wm * q * t;                                                              \
        taps[3 * MAX_WIDTH + m] = wm * p * (t + (T)1) * ((T)1 / (T)6);                                               \
    }                                                                                                                \
}                                                                                                                    \
                                                                                                                     \
int cf_angle_fwd_##SUFFIX(const T *weights, const T *frames, const T *unit_t, const int64_t *atom_rows,              \
                          const int64_t *ends, int64_t atom_lo, int64_t atom_hi, int64_t heads, int64_t width,      \
                          int64_t size, int64_t dim, T start, T inv_step, int cos_abs, const T *table_t, T *out) {  \
    if (width > MAX_WIDTH) return -1;                                                                                \
    int64_t node[MAX_WIDTH];                                                                                         \
    T taps[4 * MAX_WIDTH];                                                                                           \
    T *hist = (T *)malloc((size_t)size * sizeof(T));                                                                 \
    if (!hist) return -2;                                                                                            \
    FTZ_BEGIN                                                                                                        \
    const T top = (T)size - (T)3;                                                                                    \
    for (int64_t i = atom_lo; i < atom_hi; i++) {                                                                    \
        const int64_t r0 = atom_rows[i], r1 = atom_rows[i + 1];                                                      \
        for (int64_t h = 0; h < heads; h++) {                                                                        \
            T *o = out + (i * heads + h) * dim;                                                                      \
            for (int64_t e = 0; e < dim; e++) o[e] = 0;                                                              \
            const int64_t end = ends ? ends[i * heads + h] : (r1 - r0) * width;                                      \
            for (int64_t a = 0; a < 3; a++) {                                                                        \
                /* this (atom, head, axis)'s histogram of stencil weights over the grid nodes, then its      */      \
                /* product with the (transposed) table: `dim` dot products of length G, all in cache         */      \
                for (int64_t p = 0; p < size; p++) hist[p] = 0;                                                      \
                for (int64_t r = r0, left = end; r < r1 && left > 0; r++, left -= width) {                           \
                    const int64_t count = left < width ? left : width;                                               \
                    const T *ux = unit_t + r * 3 * width, *uy = ux + width, *uz = uy + width;                        \
                    const T *w = weights + (r * heads + h) * width;                                                  \
                    stencils_##SUFFIX(frames + ((i * heads + h) * 3 + a) * 3, ux, uy, uz, w, count, cos_abs,         \
                                      start, inv_step, top, node, taps);                                             \
                    for (int64_t m = 0; m < count; m++) {                                                            \
                        if (w[m] == 0) continue;                                                                     \
                        T *hp = hist + node[m];                                                                      \
                        hp[0] += taps[m];                                                                            \
                        hp[1] += taps[MAX_WIDTH + m];                                                                \
                        hp[2] += taps[2 * MAX_WIDTH + m];                                                            \
                        hp[3] += taps[3 * MAX_WIDTH + m];                                                            \
                    }                                                                                                \
                }                                                                                                    \
                const T *tab = table_t + (h * 3 + a) * dim * size;                                                   \
                for (int64_t e = 0; e < dim; e++) {                                                                  \
                    const T *te = tab + e * size;                                                                    \
                    T acc = 0;                                                                                       \
                    _Pragma("omp simd reduction(+:acc)")                                                             \
                    for (int64_t p = 0; p < size; p++) acc += te[p] * hist[p];                                       \
                    o[e] += acc;                                                                                     \
                }                                                                                                    \
            }                                                                                                        \
        }                                                                                                            \
    }                                                                                                                \
    FTZ_END                                                                                                          \
    free(hist);                                                                                                      \
    return 0;                                                                                                        \
}                                                                                                                    \
                                                                                                                     \
int cf_angle_bwd_##SUFFIX(const T *weights, const T *frames, const T *unit_t, const int64_t *atom_rows,              \
                          const int64_t *ends, int64_t atom_lo, int64_t atom_hi, int64_t heads, int64_t width,      \
                          int64_t size, int64_t dim, T start, T inv_step, int cos_abs, const T *table_t,            \
                          const T *grad_out, T *grad_weights, T *grad_table_t) {                                    \
    if (width > MAX_WIDTH) return -1;                                                                                \
    int64_t node[MAX_WIDTH];                                                                                         \
    T taps[4 * MAX_WIDTH];                                                                                           \
    T *proj = (T *)malloc((size_t)size * 2 * sizeof(T));                                                             \
    if (!proj) return -2;                                                                                            \
    T *hist = proj + size;                                                                                           \
    FTZ_BEGIN                                                                                                        \
    const T top = (T)size - (T)3;                                                                                    \
    for (int64_t i = atom_lo; i < atom_hi; i++) {                                                                    \
        const int64_t r0 = atom_rows[i], r1 = atom_rows[i + 1];                                                      \
        for (int64_t h = 0; h < heads; h++) {                                                                        \
            const T *go = grad_out + (i * heads + h) * dim;                                                          \
            const int64_t end = ends ? ends[i * heads + h] : (r1 - r0) * width;                                      \
            for (int64_t r = r0; r < r1; r++) {                                                                      \
                T *gw = grad_weights + (r * heads + h) * width;                                                      \
                for (int64_t m = 0; m < width; m++) gw[m] = 0;                                                       \
            }                                                                                                        \
            for (int64_t a = 0; a < 3; a++) {                                                                        \
                /* proj[p] = <table[3h + a, p], g_out[i, h]>: the weight gradient of an item is the stencil  */      \
                /* interpolation of proj; the table gradient is the histogram of w·L_s times g_out          */      \
                const int64_t q = (h * 3 + a) * dim * size;                                                          \
                const T *tab = table_t + q;                                                                          \
                for (int64_t p = 0; p < size; p++) proj[p] = 0;                                                      \
                for (int64_t e = 0; e < dim; e++) {                                                                  \
                    const T ge = go[e], *te = tab + e * size;                                                        \
                    for (int64_t p = 0; p < size; p++) proj[p] += ge * te[p];                                        \
                }                                                                                                    \
                if (grad_table_t) for (int64_t p = 0; p < size; p++) hist[p] = 0;                                    \
                for (int64_t r = r0, left = end; r < r1 && left > 0; r++, left -= width) {                           \
                    const int64_t count = left < width ? left : width;                                               \
                    const T *ux = unit_t + r * 3 * width, *uy = ux + width, *uz = uy + width;                        \
                    const T *w = weights + (r * heads + h) * width;                                                  \
                    T *gw = grad_weights + (r * heads + h) * width;                                                  \
                    stencils_##SUFFIX(frames + ((i * heads + h) * 3 + a) * 3, ux, uy, uz, 0, count, cos_abs,         \
                                      start, inv_step, top, node, taps);                                             \
                    for (int64_t m = 0; m < count; m++) {                                                            \
                        if (ux[m] == 0 && uy[m] == 0 && uz[m] == 0) continue; /* no direction */                     \
                        const T *pp = proj + node[m];                                                                \
                        const T l0 = taps[m], l1 = taps[MAX_WIDTH + m], l2 = taps[2 * MAX_WIDTH + m],                \
                                l3 = taps[3 * MAX_WIDTH + m];                                                        \
                        gw[m] += l0 * pp[0] + l1 * pp[1] + l2 * pp[2] + l3 * pp[3];                                  \
                        if (grad_table_t && w[m] != 0) {                                                             \
                            T *hp = hist + node[m];                                                                  \
                            hp[0] += w[m] * l0;                                                                      \
                            hp[1] += w[m] * l1;                                                                      \
                            hp[2] += w[m] * l2;                                                                      \
                            hp[3] += w[m] * l3;                                                                      \
                        }                                                                                            \
                    }                                                                                                \
                }                                                                                                    \
                if (grad_table_t) {                                                                                  \
                    T *gt = grad_table_t + q;                                                                        \
                    for (int64_t e = 0; e < dim; e++) {                                                              \
                        const T ge = go[e];                                                                          \
                        T *ge_row = gt + e * size;                                                                   \
                        for (int64_t p = 0; p < size; p++) ge_row[p] += ge * hist[p];                                \
                    }                                                                                                \
                }                                                                                                    \
            }                                                                                                        \
        }                                                                                                            \
    }                                                                                                                \
    FTZ_END                                                                                                          \
    free(proj);                                                                                                      \
    return 0;                                                                                                        \
}

DEFINE_KERNELS(float, f32)
DEFINE_KERNELS(double, f64)
