/* Per-item work of the grid path of the framed angle term (docs/model.md §6.4), for CPUs.

   forward:  out[i, h] = Σ_a Σ_m w_m Σ_s L_s(c) · table[3h + a, node + s]   (a vector of `dim` values)
   backward: g_w[m]    = Σ_a Σ_s L_s(c) · <table[3h + a, node + s], g_out[i, h]>,
             g_table[3h + a, node + s] += w_m · L_s(c) · g_out[i, h],
   with c = e_iha · r̂ the cosine of a slot with axis a of its atom's frame, node the stencil node −1 of c on the
   uniform grid and L_s (s = 0..3) the cubic Lagrange weights of nodes −1, 0, 1, 2: the table (the projected angle
   basis at the grid nodes, 3H × G × dim) is interpolated at each item's cosine, which is what the PyTorch version in
   features.py computes as a histogram of the items times the table. Items of zero weight add nothing and are
   skipped. `ends` (N, H), when given, says that only the first ends[i, h] slots of atom i are inside head h's
   softmax (slots are nearest first; the attention kernel reports where each head's cutoff ends): the others are
   not visited at all, and their weight gradient is reported as 0, since nothing upstream depends on it. Slots
   without a direction (empty, zero image) get weight gradient 0. Each call handles the atoms [atom_lo, atom_hi);
   callers run disjoint ranges in parallel threads, each with its own g_table. Layouts (C order): weights, g_w (R, H, W); frames (N, H, 3, 3); unit_t
   (R, 3, W) (the unit vectors of a row, one component per line); atom_rows (N + 1,) the first row of each atom;
   table, g_table (3H, G, dim); out, g_out (N, H, dim). */
#include <stdint.h>

#define MAX_WIDTH 256
#define MAX_DIM 256

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
static inline void accumulate_##SUFFIX(const T *tab, const int64_t *node, const T *taps, int64_t count,            \
                                       int64_t dim, T *acc) {                                                        \
    for (int64_t m = 0; m < count; m++) {                                                                            \
        const T l0 = taps[m], l1 = taps[MAX_WIDTH + m], l2 = taps[2 * MAX_WIDTH + m], l3 = taps[3 * MAX_WIDTH + m]; \
        if (l0 == 0 && l1 == 0 && l2 == 0 && l3 == 0) continue;                                                      \
        const T *t = tab + node[m] * dim;                                                                            \
        for (int64_t e = 0; e < dim; e++)                                                                            \
            acc[e] += l0 * t[e] + l1 * t[dim + e] + l2 * t[2 * dim + e] + l3 * t[3 * dim + e];                        \
    }                                                                                                                \
}                                                                                                                    \
                                                                                                                     \
int cf_angle_fwd_##SUFFIX(const T *weights, const T *frames, const T *unit_t, const int64_t *atom_rows,              \
                          const int64_t *ends, int64_t atom_lo, int64_t atom_hi, int64_t heads, int64_t width,      \
                          int64_t size, int64_t dim, T start, T inv_step, int cos_abs, const T *table, T *out) {    \
    if (width > MAX_WIDTH || dim > MAX_DIM) return -1;                                                               \
    int64_t node[MAX_WIDTH];                                                                                         \
    T taps[4 * MAX_WIDTH], acc[MAX_DIM];                                                                             \
    const T top = (T)size - (T)3;                                                                                    \
    for (int64_t i = atom_lo; i < atom_hi; i++) {                                                                    \
        const int64_t r0 = atom_rows[i], r1 = atom_rows[i + 1];                                                      \
        for (int64_t h = 0; h < heads; h++) {                                                                        \
            for (int64_t e = 0; e < dim; e++) acc[e] = 0;                                                            \
            const int64_t end = ends ? ends[i * heads + h] : (r1 - r0) * width;                                      \
            for (int64_t r = r0, left = end; r < r1 && left > 0; r++, left -= width) {                               \
                const int64_t count = left < width ? left : width;                                                   \
                const T *ux = unit_t + r * 3 * width, *uy = ux + width, *uz = uy + width;                            \
                const T *w = weights + (r * heads + h) * width;                                                      \
                for (int64_t a = 0; a < 3; a++) {                                                                    \
                    stencils_##SUFFIX(frames + ((i * heads + h) * 3 + a) * 3, ux, uy, uz, w, count, cos_abs,         \
                                      start, inv_step, top, node, taps);                                             \
                    const T *tab = table + (h * 3 + a) * size * dim;                                                 \
                    if (dim == 16) accumulate_##SUFFIX(tab, node, taps, count, 16, acc);                             \
                    else accumulate_##SUFFIX(tab, node, taps, count, dim, acc);                                      \
                }                                                                                                    \
            }                                                                                                        \
            T *o = out + (i * heads + h) * dim;                                                                      \
            for (int64_t e = 0; e < dim; e++) o[e] = acc[e];                                                         \
        }                                                                                                            \
    }                                                                                                                \
    return 0;                                                                                                        \
}                                                                                                                    \
                                                                                                                     \
static inline void back_items_##SUFFIX(const T *tab, T *gtab, const int64_t *node, const T *taps, const T *w,       \
                                       const T *ux, const T *uy, const T *uz, int64_t count, int64_t dim,           \
                                       const T *go, T *gw) {                                                         \
    for (int64_t m = 0; m < count; m++) {                                                                            \
        if (ux[m] == 0 && uy[m] == 0 && uz[m] == 0) continue; /* no direction */                                     \
        const T l0 = taps[m], l1 = taps[MAX_WIDTH + m], l2 = taps[2 * MAX_WIDTH + m], l3 = taps[3 * MAX_WIDTH + m]; \
        const T *t = tab + node[m] * dim;                                                                            \
        T g = 0;                                                                                                     \
        _Pragma("omp simd reduction(+:g)")                                                                           \
        for (int64_t e = 0; e < dim; e++)                                                                            \
            g += go[e] * (l0 * t[e] + l1 * t[dim + e] + l2 * t[2 * dim + e] + l3 * t[3 * dim + e]);                   \
        gw[m] += g;                                                                                                  \
        if (gtab && w[m] != 0) {                                                                                     \
            T *gt = gtab + node[m] * dim;                                                                            \
            const T k0 = w[m] * l0, k1 = w[m] * l1, k2 = w[m] * l2, k3 = w[m] * l3;                                  \
            for (int64_t e = 0; e < dim; e++) {                                                                      \
                gt[e] += k0 * go[e];                                                                                 \
                gt[dim + e] += k1 * go[e];                                                                           \
                gt[2 * dim + e] += k2 * go[e];                                                                       \
                gt[3 * dim + e] += k3 * go[e];                                                                       \
            }                                                                                                        \
        }                                                                                                            \
    }                                                                                                                \
}                                                                                                                    \
                                                                                                                     \
int cf_angle_bwd_##SUFFIX(const T *weights, const T *frames, const T *unit_t, const int64_t *atom_rows,              \
                          const int64_t *ends, int64_t atom_lo, int64_t atom_hi, int64_t heads, int64_t width,      \
                          int64_t size, int64_t dim, T start, T inv_step, int cos_abs, const T *table,              \
                          const T *grad_out,                                                                        \
                          T *grad_weights, T *grad_table) {                                                         \
    if (width > MAX_WIDTH || dim > MAX_DIM) return -1;                                                               \
    int64_t node[MAX_WIDTH];                                                                                         \
    T taps[4 * MAX_WIDTH];                                                                                           \
    const T top = (T)size - (T)3;                                                                                    \
    for (int64_t i = atom_lo; i < atom_hi; i++) {                                                                    \
        const int64_t r0 = atom_rows[i], r1 = atom_rows[i + 1];                                                      \
        for (int64_t h = 0; h < heads; h++) {                                                                        \
            const T *go = grad_out + (i * heads + h) * dim;                                                          \
            const int64_t end = ends ? ends[i * heads + h] : (r1 - r0) * width;                                      \
            for (int64_t r = r0, left = end; r < r1; r++, left -= width) {                                           \
                T *gw = grad_weights + (r * heads + h) * width;                                                      \
                for (int64_t m = 0; m < width; m++) gw[m] = 0;                                                       \
                if (left <= 0) continue;                                                                             \
                const int64_t count = left < width ? left : width;                                                   \
                const T *ux = unit_t + r * 3 * width, *uy = ux + width, *uz = uy + width;                            \
                const T *w = weights + (r * heads + h) * width;                                                      \
                for (int64_t a = 0; a < 3; a++) {                                                                    \
                    stencils_##SUFFIX(frames + ((i * heads + h) * 3 + a) * 3, ux, uy, uz, 0, count, cos_abs,         \
                                      start, inv_step, top, node, taps);                                             \
                    const int64_t q = (h * 3 + a) * size * dim;                                                      \
                    T *gtab = grad_table ? grad_table + q : 0;                                                       \
                    if (dim == 16) back_items_##SUFFIX(table + q, gtab, node, taps, w, ux, uy, uz, count, 16, go, gw);\
                    else back_items_##SUFFIX(table + q, gtab, node, taps, w, ux, uy, uz, count, dim, go, gw);        \
                }                                                                                                    \
            }                                                                                                        \
        }                                                                                                            \
    }                                                                                                                \
    return 0;                                                                                                        \
}

DEFINE_KERNELS(float, f32)
DEFINE_KERNELS(double, f64)
