/* Axis selection of max (and static) frames (docs/model.md §3.2, §3.6), for CPUs: the same rules as max_frames()
   in frames.py, in one pass per (atom, head) instead of a dozen PyTorch passes over (rows, heads, slots) tensors.

   For atom i and head h over the slots m of i's rows (valid: a non-empty slot that is not the zero image):
     axis 1: the slot of highest score1_m = score_m;
     axis 2: the slot of highest score2_m = score_m + log(max(1 − |e1·r̂_m|, 1e-5)) among |e1·r̂_m| < 0.9999.
   Deterministic (stochastic = 0): the first best slot in slot order; if a slot scoring within the tie tolerance
   1000·eps·(1 + |best|) of it is the opposite image −r* (a lattice translation of the atom seen both ways), the
   direction is flipped when the weighted third moment Σ_m w_m (d·r_m)³ is below −tolerance·Σ_m w_m |r_m|³.
   Stochastic: uniform noise in (−hw, hw) on every slot within 2·hw of the best (the others cannot win), hw =
   half_width1·|a_ih| for axis 1 and half_width2 for axis 2, drawn from a counter-based generator keyed by `seed`
   and the slot, so a call is reproducible from its seed. Outputs: d1, d2 (N, H, 3) the chosen unit vectors (zero
   when none), found (N, H, 2) 1 where an axis was found. Layouts (C order): scores, weights (R, H, W); unit, vec
   (R, W, 3); dist2 (R, W); valid (R, W) uint8; a (N, H); atom_rows (N + 1,). Each call handles the atoms
   [atom_lo, atom_hi); callers run disjoint ranges in parallel threads. */
#include <float.h>
#include <math.h>
#include <stdint.h>

#define PARALLEL_LIMIT 0.9999
#define LOG_FLOOR 1e-5

static inline uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

/* A uniform number in [0, 1) for (seed, stream, index). */
static inline double uniform01(uint64_t seed, uint64_t stream, uint64_t index) {
    return (double)(mix64(seed ^ mix64(stream * 0x632BE59BD9B4E019ULL + index)) >> 11) * (1.0 / 9007199254740992.0);
}

#define DEFINE_MAX_FRAMES(T, SUFFIX, EPS)                                                                           \
static inline T score2_##SUFFIX(T score, const T *e, const T *u, int *ok) {                                          \
    T c = e[0] * u[0] + e[1] * u[1] + e[2] * u[2];                                                                   \
    c = c < 0 ? -c : c;                                                                                              \
    *ok = c < (T)PARALLEL_LIMIT;                                                                                     \
    T f = (T)1 - c;                                                                                                  \
    f = f > (T)LOG_FLOOR ? f : (T)LOG_FLOOR;                                                                         \
    return score + log(f);                                                                                           \
}                                                                                                                    \
                                                                                                                     \
/* Flip `dir` when the chosen slot (score `best`, vector r*) has an exactly tied opposite image and the weighted   */ \
/* third moment along `dir` is negative.                                                                           */ \
static void orient_##SUFFIX(T *dir, T best, const T *rstar, int axis, const T *scores, const T *weights,           \
                            const T *unit, const T *vec, const T *dist2, const uint8_t *valid, int64_t r0,          \
                            int64_t r1, int64_t heads, int64_t h, int64_t width, const T *e1) {                      \
    const T tol = (T)1000 * EPS * ((T)1 + (best < 0 ? -best : best));                                                \
    int tied = 0;                                                                                                    \
    for (int64_t r = r0; r < r1 && !tied; r++) {                                                                     \
        const T *sc = scores + (r * heads + h) * width;                                                              \
        for (int64_t m = 0; m < width; m++) {                                                                        \
            const int64_t at = r * width + m;                                                                        \
            if (!valid[at] || !(sc[m] >= best - tol)) continue; /* score2 <= score */                                 \
            T s = sc[m];                                                                                             \
            if (axis == 2) {                                                                                         \
                int ok;                                                                                              \
                s = score2_##SUFFIX(s, e1, unit + at * 3, &ok);                                                      \
                if (!ok) continue;                                                                                   \
            }                                                                                                        \
            if (!(s >= best - tol)) continue;                                                                        \
            const T *v = vec + at * 3;                                                                               \
            const T sx = v[0] + rstar[0], sy = v[1] + rstar[1], sz = v[2] + rstar[2];                                \
            if (sx * sx + sy * sy + sz * sz < (T)1e-10 * ((T)1 + dist2[at])) { tied = 1; break; }                    \
        }                                                                                                            \
    }                                                                                                                \
    if (!tied) return;                                                                                               \
    T moment = 0, scale = 0;                                                                                         \
    for (int64_t r = r0; r < r1; r++) {                                                                              \
        const T *w = weights + (r * heads + h) * width;                                                              \
        for (int64_t m = 0; m < width; m++) {                                                                        \
            const T *v = vec + (r * width + m) * 3;                                                                  \
            const T p = dir[0] * v[0] + dir[1] * v[1] + dir[2] * v[2];                                               \
            const T n = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);                                               \
            moment += w[m] * p * p * p;                                                                              \
            scale += w[m] * n * n * n;                                                                               \
        }                                                                                                            \
    }                                                                                                                \
    if (moment < -(T)1000 * EPS * scale) { dir[0] = -dir[0]; dir[1] = -dir[1]; dir[2] = -dir[2]; }                   \
}                                                                                                                    \
                                                                                                                     \
int cf_max_frames_##SUFFIX(const T *scores, const T *weights, const T *unit, const T *vec, const T *dist2,           \
                           const uint8_t *valid, const T *a, const int64_t *atom_rows, int64_t atom_lo,             \
                           int64_t atom_hi, int64_t heads, int64_t width, int stochastic, T half_width1,            \
                           T half_width2, uint64_t seed, T *d1, T *d2, uint8_t *found) {                            \
    for (int64_t i = atom_lo; i < atom_hi; i++) {                                                                    \
        const int64_t r0 = atom_rows[i], r1 = atom_rows[i + 1];                                                      \
        for (int64_t h = 0; h < heads; h++) {                                                                        \
            const int64_t ih = i * heads + h;                                                                        \
            T *e1 = d1 + ih * 3, *e2 = d2 + ih * 3;                                                                  \
            e1[0] = e1[1] = e1[2] = e2[0] = e2[1] = e2[2] = 0;                                                       \
            found[ih * 2] = found[ih * 2 + 1] = 0;                                                                   \
            /* axis 1 */                                                                                             \
            T best = -INFINITY;                                                                                      \
            int64_t pick = -1;                                                                                       \
            for (int64_t r = r0; r < r1; r++) {                                                                      \
                const T *sc = scores + (r * heads + h) * width;                                                      \
                for (int64_t m = 0; m < width; m++)                                                                  \
                    if (valid[r * width + m] && sc[m] > best) { best = sc[m]; pick = r * width + m; }                \
            }                                                                                                        \
            if (pick < 0 || !(best > -INFINITY)) continue;                                                           \
            if (stochastic) {                                                                                        \
                const T hw = half_width1 * (a[ih] < 0 ? -a[ih] : a[ih]);                                             \
                T noisy_best = -INFINITY;                                                                            \
                for (int64_t r = r0; r < r1; r++) {                                                                  \
                    const T *sc = scores + (r * heads + h) * width;                                                  \
                    for (int64_t m = 0; m < width; m++) {                                                            \
                        const int64_t at = r * width + m;                                                            \
                        if (!valid[at] || !(sc[m] >= best - (T)2 * hw)) continue;                                    \
                        const T s = sc[m] + (T)(2 * uniform01(seed, 2 * ih, at) - 1) * hw;                           \
                        if (s > noisy_best) { noisy_best = s; pick = at; }                                           \
                    }                                                                                                \
                }                                                                                                    \
            }                                                                                                        \
            e1[0] = unit[pick * 3]; e1[1] = unit[pick * 3 + 1]; e1[2] = unit[pick * 3 + 2];                          \
            found[ih * 2] = 1;                                                                                       \
            if (!stochastic)                                                                                         \
                orient_##SUFFIX(e1, best, vec + pick * 3, 1, scores, weights, unit, vec, dist2, valid, r0, r1,       \
                                heads, h, width, e1);                                                                \
            /* axis 2: score2 <= score, so a slot whose score is not above the best so far cannot win */             \
            T best2 = -INFINITY;                                                                                     \
            int64_t pick2 = -1;                                                                                      \
            for (int64_t r = r0; r < r1; r++) {                                                                      \
                const T *sc = scores + (r * heads + h) * width;                                                      \
                for (int64_t m = 0; m < width; m++) {                                                                \
                    const int64_t at = r * width + m;                                                                \
                    if (!valid[at] || !(sc[m] > best2)) continue;                                                    \
                    int ok;                                                                                          \
                    const T s = score2_##SUFFIX(sc[m], e1, unit + at * 3, &ok);                                      \
                    if (ok && s > best2) { best2 = s; pick2 = at; }                                                  \
                }                                                                                                    \
            }                                                                                                        \
            if (pick2 < 0) continue;                                                                                 \
            if (stochastic) {                                                                                        \
                const T hw = half_width2;                                                                            \
                T noisy_best = -INFINITY;                                                                            \
                for (int64_t r = r0; r < r1; r++) {                                                                  \
                    const T *sc = scores + (r * heads + h) * width;                                                  \
                    for (int64_t m = 0; m < width; m++) {                                                            \
                        const int64_t at = r * width + m;                                                            \
                        if (!valid[at] || !(sc[m] >= best2 - (T)2 * hw)) continue;                                   \
                        int ok;                                                                                      \
                        const T s2 = score2_##SUFFIX(sc[m], e1, unit + at * 3, &ok);                                 \
                        if (!ok || !(s2 >= best2 - (T)2 * hw)) continue;                                             \
                        const T s = s2 + (T)(2 * uniform01(seed, 2 * ih + 1, at) - 1) * hw;                          \
                        if (s > noisy_best) { noisy_best = s; pick2 = at; }                                          \
                    }                                                                                                \
                }                                                                                                    \
            }                                                                                                        \
            e2[0] = unit[pick2 * 3]; e2[1] = unit[pick2 * 3 + 1]; e2[2] = unit[pick2 * 3 + 2];                       \
            found[ih * 2 + 1] = 1;                                                                                   \
            if (!stochastic)                                                                                         \
                orient_##SUFFIX(e2, best2, vec + pick2 * 3, 2, scores, weights, unit, vec, dist2, valid, r0, r1,     \
                                heads, h, width, e1);                                                                \
        }                                                                                                            \
    }                                                                                                                \
    return 0;                                                                                                        \
}

DEFINE_MAX_FRAMES(float, f32, FLT_EPSILON)
DEFINE_MAX_FRAMES(double, f64, DBL_EPSILON)
