/* Per-item work of the grid path of the framed angle term (docs/model.md §6.4), for CPUs.

   spread: hist[h, i, a, node + s] = Σ_m w_m · L_s(t_m)                          (s = 0..5)
   gather: g_w[m] = Σ_a Σ_s L_s(t_m) · g_hist[h, i, a, node + s]
   with c = e_iha · r̂ the cosine of a slot with axis a of its atom's frame, u = (c − start)/step its grid coordinate,
   node = ⌊u⌋ − 2, t = u − ⌊u⌋ and L_s the quintic Lagrange weights of nodes −2 … 3 around t: what the PyTorch
   version in features.py computes. The caller multiplies the histograms by the tabulated projected basis (one
   batched matmul, which also gives the table's gradient), so the kernels only do the per-item work.

   Each item's six weights are one 8-lane vector (two lanes zero), evaluated by Horner's rule from the monomial
   coefficients of the L_s, and added to the histogram with one unaligned vector load, add and store (the grid has
   two spare nodes at the top for the extra lanes). Per row the items are visited slot by slot, cycling over the 3H
   (head, axis) histograms of the atom (which stay in cache), so consecutive additions go to different histograms
   and do not wait for each other. Backward, each (slot, head) sums the products of its three axes' weight vectors
   with the gradient at the same nodes.

   Items: a slot with a direction (the zero image and empty slots have none) inside the head's softmax (`ends`,
   when given: only the first ends[i, h] slots of atom i). Other slots add nothing and get weight gradient 0 (nothing
   upstream depends on it). Each call handles the atoms [atom_lo, atom_hi); callers run disjoint ranges in parallel
   threads. Layouts (C order): weights, g_w (R, H, W); frames (N, H, 3, 3); unit_t (R, 3, W) (the unit vectors of a
   row, one component per line); atom_rows (N + 1,) the first row of each atom; ends (N, H) or NULL; hist, g_hist
   (H, N, 3, G) (so that the caller's product with the table is one batched matmul over the heads, without copies). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "ftz.h"

#define MAX_WIDTH 256
#define MAX_AXES 96 /* 3 × heads */
#define SPARE_TOP 6 /* u ≤ G − 6: nodes u − 2 … u + 5 (six taps and two zero lanes) stay inside the grid */

/* Monomial coefficients of the quintic Lagrange weights of nodes −2 … 3: L_s(t) = Σ_k C_k[s] t^k. */
#define LAGRANGE_COEFFICIENTS(T, V)                                                                                 \
    const V C0 = {0, 0, 1, 0, 0, 0, 0, 0};                                                                           \
    const V C1 = {(T)1 / 20, (T)-1 / 2, (T)-1 / 3, 1, (T)-1 / 4, (T)1 / 30, 0, 0};                                  \
    const V C2 = {(T)-1 / 24, (T)2 / 3, (T)-5 / 4, (T)2 / 3, (T)-1 / 24, 0, 0, 0};                                  \
    const V C3 = {(T)-1 / 24, (T)-1 / 24, (T)5 / 12, (T)-7 / 12, (T)7 / 24, (T)-1 / 24, 0, 0};                      \
    const V C4 = {(T)1 / 24, (T)-1 / 6, (T)1 / 4, (T)-1 / 6, (T)1 / 24, 0, 0, 0};                                   \
    const V C5 = {(T)-1 / 120, (T)1 / 24, (T)-1 / 12, (T)1 / 12, (T)-1 / 24, (T)1 / 120, 0, 0};

#define DEFINE_KERNELS(T, SUFFIX)                                                                                   \
typedef T vec8_##SUFFIX __attribute__((vector_size(8 * sizeof(T))));                                                \
                                                                                                                     \
static inline vec8_##SUFFIX lagrange_##SUFFIX(T t) {                                                                \
    LAGRANGE_COEFFICIENTS(T, vec8_##SUFFIX)                                                                          \
    vec8_##SUFFIX v = C5 * t + C4;                                                                                   \
    v = v * t + C3;                                                                                                  \
    v = v * t + C2;                                                                                                  \
    v = v * t + C1;                                                                                                  \
    return v * t + C0;                                                                                               \
}                                                                                                                    \
                                                                                                                     \
/* Node −2 and t of each slot's stencil for one frame axis e. */                                                     \
static inline void stencils_##SUFFIX(const T *e, const T *ux, const T *uy, const T *uz, int64_t width, int cos_abs, \
                                     T start, T inv_step, T top, int32_t *node, T *frac) {                           \
    const T e0 = e[0], e1 = e[1], e2 = e[2];                                                                         \
    _Pragma("omp simd")                                                                                              \
    for (int64_t m = 0; m < width; m++) {                                                                            \
        T c = e0 * ux[m] + e1 * uy[m] + e2 * uz[m];                                                                  \
        if (cos_abs) c = c < 0 ? -c : c;                                                                             \
        T u = (c - start) * inv_step;                                                                                \
        u = u > (T)2 ? u : (T)2; /* the clamp only guards against rounding (AngleGrid) */                            \
        u = u < top ? u : top;                                                                                       \
        const int32_t j = (int32_t)u;                                                                                \
        node[m] = j - 2;                                                                                             \
        frac[m] = u - (T)j;                                                                                          \
    }                                                                                                                \
}                                                                                                                    \
                                                                                                                     \
/* How many of a row's slots are inside head h's softmax. */                                                         \
static inline int64_t row_count_##SUFFIX(const int64_t *ends, int64_t i, int64_t h, int64_t heads, int64_t offset,  \
                                         int64_t width) {                                                            \
    if (!ends) return width;                                                                                         \
    const int64_t left = ends[i * heads + h] - offset;                                                               \
    return left < 0 ? 0 : (left < width ? left : width);                                                             \
}                                                                                                                    \
                                                                                                                     \
int cf_angle_spread_##SUFFIX(const T *weights, const T *frames, const T *unit_t, const int64_t *atom_rows,           \
                             const int64_t *ends, int64_t num_atoms, int64_t atom_lo, int64_t atom_hi, int64_t heads, \
                             int64_t width, int64_t size, T start, T inv_step, int cos_abs, T *hist) {              \
    const int64_t axes = 3 * heads;                                                                                  \
    if (width > MAX_WIDTH || axes > MAX_AXES || size < SPARE_TOP + 3) return -1;                                     \
    int32_t *node = (int32_t *)malloc(sizeof(int32_t) * MAX_AXES * MAX_WIDTH);                                       \
    T *frac = (T *)malloc(sizeof(T) * 2 * MAX_AXES * MAX_WIDTH);                                                     \
    if (!node || !frac) { free(node); free(frac); return -2; }                                                       \
    T *live_w = frac + MAX_AXES * MAX_WIDTH;                                                                         \
    T *base[MAX_AXES];                                                                                               \
    FTZ_BEGIN                                                                                                        \
    const T top = (T)(size - SPARE_TOP);                                                                             \
    for (int64_t i = atom_lo; i < atom_hi; i++) {                                                                    \
        for (int64_t h = 0; h < heads; h++) {                                                                        \
            T *hist_ih = hist + (h * num_atoms + i) * 3 * size;                                                      \
            memset(hist_ih, 0, sizeof(T) * 3 * size);                                                                \
            for (int64_t a = 0; a < 3; a++) base[3 * h + a] = hist_ih + a * size;                                    \
        }                                                                                                            \
        for (int64_t r = atom_rows[i]; r < atom_rows[i + 1]; r++) {                                                  \
            const T *ux = unit_t + r * 3 * width, *uy = ux + width, *uz = uy + width;                                \
            const int64_t offset = (r - atom_rows[i]) * width;                                                       \
            for (int64_t q = 0; q < axes; q++) {                                                                     \
                const int64_t h = q / 3;                                                                             \
                const T *w = weights + (r * heads + h) * width;                                                      \
                const int64_t count = row_count_##SUFFIX(ends, i, h, heads, offset, width);                          \
                T *wq = live_w + q * width;                                                                          \
                stencils_##SUFFIX(frames + (i * axes + q) * 3, ux, uy, uz, width, cos_abs, start, inv_step, top,     \
                                  node + q * width, frac + q * width);                                               \
                _Pragma("omp simd")                                                                                  \
                for (int64_t m = 0; m < width; m++)                                                                  \
                    wq[m] = (m < count && (ux[m] != 0 || uy[m] != 0 || uz[m] != 0)) ? w[m] : (T)0;                   \
            }                                                                                                        \
            for (int64_t m = 0; m < width; m++) {                                                                    \
                for (int64_t q = 0; q < axes; q++) {                                                                 \
                    const vec8_##SUFFIX add = lagrange_##SUFFIX(frac[q * width + m]) * live_w[q * width + m];        \
                    T *hp = base[q] + node[q * width + m];                                                           \
                    vec8_##SUFFIX cur;                                                                               \
                    memcpy(&cur, hp, sizeof cur); /* unaligned vector load and store */                              \
                    cur += add;                                                                                      \
                    memcpy(hp, &cur, sizeof cur);                                                                    \
                }                                                                                                    \
            }                                                                                                        \
        }                                                                                                            \
    }                                                                                                                \
    FTZ_END                                                                                                          \
    free(node);                                                                                                      \
    free(frac);                                                                                                      \
    return 0;                                                                                                        \
}                                                                                                                    \
                                                                                                                     \
int cf_angle_gather_##SUFFIX(const T *frames, const T *unit_t, const int64_t *atom_rows, const int64_t *ends,        \
                             int64_t num_atoms, int64_t atom_lo, int64_t atom_hi, int64_t heads, int64_t width,      \
                             int64_t size, T start, T inv_step, int cos_abs, const T *grad_hist, T *grad_weights) {  \
    if (width > MAX_WIDTH || size < SPARE_TOP + 3) return -1;                                                        \
    int32_t node[3 * MAX_WIDTH];                                                                                     \
    T frac[3 * MAX_WIDTH];                                                                                           \
    FTZ_BEGIN                                                                                                        \
    const T top = (T)(size - SPARE_TOP);                                                                             \
    for (int64_t i = atom_lo; i < atom_hi; i++) {                                                                    \
        for (int64_t r = atom_rows[i]; r < atom_rows[i + 1]; r++) {                                                  \
            const T *ux = unit_t + r * 3 * width, *uy = ux + width, *uz = uy + width;                                \
            const int64_t offset = (r - atom_rows[i]) * width;                                                       \
            for (int64_t h = 0; h < heads; h++) {                                                                    \
                const T *g_ih = grad_hist + (h * num_atoms + i) * 3 * size;                                          \
                for (int64_t a = 0; a < 3; a++)                                                                      \
                    stencils_##SUFFIX(frames + ((i * heads + h) * 3 + a) * 3, ux, uy, uz, width, cos_abs, start,     \
                                      inv_step, top, node + a * width, frac + a * width);                            \
                const int64_t count = row_count_##SUFFIX(ends, i, h, heads, offset, width);                          \
                T *gw = grad_weights + (r * heads + h) * width;                                                      \
                for (int64_t m = 0; m < width; m++) {                                                                \
                    vec8_##SUFFIX acc = {0}, g;                                                                      \
                    for (int64_t a = 0; a < 3; a++) {                                                                \
                        memcpy(&g, g_ih + a * size + node[a * width + m], sizeof g);                                 \
                        acc += lagrange_##SUFFIX(frac[a * width + m]) * g;                                           \
                    }                                                                                                \
                    T sum = 0;                                                                                       \
                    for (int s = 0; s < 6; s++) sum += acc[s];                                                       \
                    const int live = m < count && (ux[m] != 0 || uy[m] != 0 || uz[m] != 0);                          \
                    gw[m] = live ? sum : (T)0;                                                                       \
                }                                                                                                    \
            }                                                                                                        \
        }                                                                                                            \
    }                                                                                                                \
    FTZ_END                                                                                                          \
    return 0;                                                                                                        \
}

DEFINE_KERNELS(float, f32)
DEFINE_KERNELS(double, f64)
