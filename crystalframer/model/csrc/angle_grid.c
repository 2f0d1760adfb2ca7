/* Per-item work of the grid path of the framed angle term (docs/model.md §6, "Angle features"), for CPUs.

   spread: hist[3h + a, i, node + s] += w · L_s(c),  gather: g_w = Σ_a Σ_s L_s(c) · g_hist[3h + a, i, node + s],
   with c = e_iha · r̂ the cosine of a slot with axis a of its atom's frame, node the stencil node −1 of c on the
   uniform grid and L_s (s = 0..3) the cubic Lagrange weights of nodes −1, 0, 1, 2. Same arithmetic as the PyTorch
   version in features.py. Each call handles the atoms [atom_lo, atom_hi): callers run disjoint ranges in parallel
   threads, and the writes of different atoms never overlap. Layouts (C order): weights (R, H, W); frames
   (N, H, 3, 3); unit_t (R, 3, W) (the unit vectors of a row, one component per line); atom_rows (N + 1,) the
   first row of each atom; hist and grad_hist (3H, N, G); mask (R, W) 1 where the slot has a direction. */
#include <stdint.h>

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
int cf_spread_##SUFFIX(const T *weights, const T *frames, const T *unit_t, const int64_t *atom_rows,                 \
                       int64_t atom_lo, int64_t atom_hi, int64_t num_atoms, int64_t heads, int64_t width,            \
                       int64_t size, T start, T inv_step, int cos_abs, T *hist) {                                    \
    if (width > MAX_WIDTH) return -1;                                                                                \
    int64_t node[MAX_WIDTH];                                                                                         \
    T taps[4 * MAX_WIDTH];                                                                                           \
    const T top = (T)size - (T)3;                                                                                    \
    for (int64_t i = atom_lo; i < atom_hi; i++) {                                                                    \
        for (int64_t r = atom_rows[i]; r < atom_rows[i + 1]; r++) {                                                  \
            const T *ux = unit_t + r * 3 * width, *uy = ux + width, *uz = uy + width;                                \
            for (int64_t h = 0; h < heads; h++) {                                                                    \
                const T *w = weights + (r * heads + h) * width;                                                      \
                for (int64_t a = 0; a < 3; a++) {                                                                    \
                    stencils_##SUFFIX(frames + ((i * heads + h) * 3 + a) * 3, ux, uy, uz, w, width, cos_abs,         \
                                      start, inv_step, top, node, taps);                                             \
                    T *row = hist + ((h * 3 + a) * num_atoms + i) * size;                                            \
                    for (int64_t m = 0; m < width; m++) {                                                            \
                        T *p = row + node[m];                                                                        \
                        p[0] += taps[m];                                                                             \
                        p[1] += taps[MAX_WIDTH + m];                                                                 \
                        p[2] += taps[2 * MAX_WIDTH + m];                                                             \
                        p[3] += taps[3 * MAX_WIDTH + m];                                                             \
                    }                                                                                                \
                }                                                                                                    \
            }                                                                                                        \
        }                                                                                                            \
    }                                                                                                                \
    return 0;                                                                                                        \
}                                                                                                                    \
                                                                                                                     \
int cf_gather_##SUFFIX(const T *grad_hist, const T *frames, const T *unit_t, const uint8_t *mask,                    \
                       const int64_t *atom_rows, int64_t atom_lo, int64_t atom_hi, int64_t num_atoms,                \
                       int64_t heads, int64_t width, int64_t size, T start, T inv_step, int cos_abs,                 \
                       T *grad_weights) {                                                                            \
    if (width > MAX_WIDTH) return -1;                                                                                \
    int64_t node[MAX_WIDTH];                                                                                         \
    T taps[4 * MAX_WIDTH];                                                                                           \
    const T top = (T)size - (T)3;                                                                                    \
    for (int64_t i = atom_lo; i < atom_hi; i++) {                                                                    \
        for (int64_t r = atom_rows[i]; r < atom_rows[i + 1]; r++) {                                                  \
            const T *ux = unit_t + r * 3 * width, *uy = ux + width, *uz = uy + width;                                \
            for (int64_t h = 0; h < heads; h++) {                                                                    \
                T *out = grad_weights + (r * heads + h) * width;                                                     \
                for (int64_t m = 0; m < width; m++) out[m] = 0;                                                      \
                for (int64_t a = 0; a < 3; a++) {                                                                    \
                    stencils_##SUFFIX(frames + ((i * heads + h) * 3 + a) * 3, ux, uy, uz, 0, width, cos_abs,         \
                                      start, inv_step, top, node, taps);                                             \
                    const T *row = grad_hist + ((h * 3 + a) * num_atoms + i) * size;                                 \
                    for (int64_t m = 0; m < width; m++) {                                                            \
                        const T *p = row + node[m];                                                                  \
                        out[m] += taps[m] * p[0] + taps[MAX_WIDTH + m] * p[1] + taps[2 * MAX_WIDTH + m] * p[2]       \
                                  + taps[3 * MAX_WIDTH + m] * p[3];                                                  \
                    }                                                                                                \
                }                                                                                                    \
                for (int64_t m = 0; m < width; m++)                                                                  \
                    if (!mask[r * width + m]) out[m] = 0;                                                            \
            }                                                                                                        \
        }                                                                                                            \
    }                                                                                                                \
    return 0;                                                                                                        \
}

DEFINE_KERNELS(float, f32)
DEFINE_KERNELS(double, f64)
