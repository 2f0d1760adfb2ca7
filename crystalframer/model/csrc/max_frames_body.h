/* The kernel of max_frames.c for one floating-point type: included twice by it, with T (the type), EPS (its
   machine epsilon) and NAME(x) (x with the type's suffix) defined. See max_frames.c. */

/* Slot m of a row: component k of its unit vector is u[k * width + m]. */
static inline T NAME(cosine)(const T *e, const T *u, int64_t width, int64_t m) {
    return e[0] * u[m] + e[1] * u[width + m] + e[2] * u[2 * width + m];
}

static inline T NAME(score2)(T score, const T *e, const T *u, int64_t width, int64_t m, int *ok) {
    T c = NAME(cosine)(e, u, width, m);
    c = c < 0 ? -c : c;
    *ok = c < (T)PARALLEL_LIMIT;
    T f = (T)1 - c;
    f = f > (T)LOG_FLOOR ? f : (T)LOG_FLOOR;
    return score + log(f);
}

/* The best score + bias of a row's slots (valid slots keep their score, the others are −inf). */
static inline T NAME(row_best)(const T *sc, const T *bias, int64_t width) {
    T top = -INFINITY;
#pragma omp simd reduction(max : top)
    for (int64_t m = 0; m < width; m++) {
        const T s = sc[m] + bias[m];
        top = s > top ? s : top;
    }
    return top;
}

/* upper[m] ≥ score2 of a row's slots (log f ≤ f − 1), −inf where a slot cannot be axis 2 (not valid, or parallel
   to e); returns their maximum. */
static inline T NAME(upper_scores)(const T *sc, const T *bias, const T *e, const T *u, int64_t width, T *upper) {
    const T e0 = e[0], e1 = e[1], e2 = e[2];
    T top = -INFINITY;
#pragma omp simd reduction(max : top)
    for (int64_t m = 0; m < width; m++) {
        T c = e0 * u[m] + e1 * u[width + m] + e2 * u[2 * width + m];
        c = c < 0 ? -c : c;
        T f = (T)1 - c;
        f = f > (T)LOG_FLOOR ? f : (T)LOG_FLOOR;
        const T b = c < (T)PARALLEL_LIMIT ? sc[m] + bias[m] + (f - (T)1) : -INFINITY;
        upper[m] = b;
        top = b > top ? b : top;
    }
    return top;
}

/* Bit k set where x[k] + y[k] >= threshold (n <= 64 values; y may be NULL): branch-free, so the scans below visit
   only the candidates, in slot order. */
static inline uint64_t NAME(at_least)(const T *x, const T *y, int64_t n, T threshold) {
    uint64_t bits = 0;
    if (y) {
        for (int64_t k = 0; k < n; k++) bits |= (uint64_t)(x[k] + y[k] >= threshold) << k;
    } else {
        for (int64_t k = 0; k < n; k++) bits |= (uint64_t)(x[k] >= threshold) << k;
    }
    return bits;
}

/* Flip `dir` when the chosen slot (score `best`, vector r*) has an exactly tied opposite image and the weighted
   third moment along `dir` is negative. `rowtop` bounds each row's scores (axis 2: its upper bounds). */
static void NAME(orient)(T *dir, T best, const T *rstar, int axis, const T *scores, int64_t sc_row,
                         const T *weights, int64_t wt_row, const T *unit_t, const T *vec, const T *dist2,
                         const T *bias, int64_t r0, int64_t r1, int64_t width, const T *e1, const T *rowtop) {
    const T tol = (T)1000 * EPS * ((T)1 + (best < 0 ? -best : best));
    int tied = 0;
    for (int64_t r = r0; r < r1 && !tied; r++) {
        if (!(rowtop[r - r0] >= best - tol)) continue;
        const T *sc = scores + (r - r0) * sc_row;
        for (int64_t m = 0; m < width; m++) {
            const int64_t at = r * width + m;
            if (bias[at] != 0 || !(sc[m] >= best - tol)) continue; /* score2 <= score */
            const T *v = vec + at * 3; /* the geometry first: it is cheaper than score2's logarithm */
            const T sx = v[0] + rstar[0], sy = v[1] + rstar[1], sz = v[2] + rstar[2];
            if (!(sx * sx + sy * sy + sz * sz < (T)1e-10 * ((T)1 + dist2[at]))) continue;
            T s = sc[m];
            if (axis == 2) {
                int ok;
                s = NAME(score2)(s, e1, unit_t + r * 3 * width, width, m, &ok);
                if (!ok) continue;
            }
            if (s >= best - tol) { tied = 1; break; }
        }
    }
    if (!tied) return;
    T moment = 0, scale = 0;
    for (int64_t r = r0; r < r1; r++) {
        const T *w = weights + (r - r0) * wt_row;
        for (int64_t m = 0; m < width; m++) {
            const T *v = vec + (r * width + m) * 3;
            const T p = dir[0] * v[0] + dir[1] * v[1] + dir[2] * v[2];
            const T n = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
            moment += w[m] * p * p * p;
            scale += w[m] * n * n * n;
        }
    }
    if (moment < -(T)1000 * EPS * scale) { dir[0] = -dir[0]; dir[1] = -dir[1]; dir[2] = -dir[2]; }
}

static inline void NAME(take)(T *dst, const T *unit_t, int64_t width, int64_t at) {
    const int64_t r = at / width, m = at % width;
    for (int k = 0; k < 3; k++) dst[k] = unit_t[(r * 3 + k) * width + m];
}

/* The frame (rows e1, e2, e3) from the chosen directions, as _assemble_max_frames in frames.py: Gram–Schmidt of
   t2 against e1, e3 = e1 × e2; without axis 2, t2 is the coordinate axis least aligned with e1 made perpendicular;
   without axis 1, the identity. */
static void NAME(assemble)(const T *e1, const T *t2_in, int ok1, int ok2, T *f) {
    for (int k = 0; k < 9; k++) f[k] = (T)(k % 4 == 0);
    if (!ok1) return;
    T t2[3];
    if (ok2) {
        t2[0] = t2_in[0]; t2[1] = t2_in[1]; t2[2] = t2_in[2];
    } else {
        int least = 0;
        for (int k = 1; k < 3; k++)
            if (fabs(e1[k]) < fabs(e1[least])) least = k;
        for (int k = 0; k < 3; k++) t2[k] = (T)(k == least) - e1[least] * e1[k];
        T n = sqrt(t2[0] * t2[0] + t2[1] * t2[1] + t2[2] * t2[2]);
        n = n > (T)1e-12 ? n : (T)1e-12;
        for (int k = 0; k < 3; k++) t2[k] /= n;
    }
    const T dot = e1[0] * t2[0] + e1[1] * t2[1] + e1[2] * t2[2];
    T e2[3] = {t2[0] - dot * e1[0], t2[1] - dot * e1[1], t2[2] - dot * e1[2]};
    T n = sqrt(e2[0] * e2[0] + e2[1] * e2[1] + e2[2] * e2[2]);
    n = n > (T)1e-12 ? n : (T)1e-12;
    for (int k = 0; k < 3; k++) e2[k] /= n;
    f[0] = e1[0]; f[1] = e1[1]; f[2] = e1[2];
    f[3] = e2[0]; f[4] = e2[1]; f[5] = e2[2];
    f[6] = e1[1] * e2[2] - e1[2] * e2[1];
    f[7] = e1[2] * e2[0] - e1[0] * e2[2];
    f[8] = e1[0] * e2[1] - e1[1] * e2[0];
}

/* Axes 1 and 2 of atom i for heads [h_lo, h_hi). Head h's scores (logits) of row r are at scores + (r − r0)·sc_row
   + h·sc_head, its weights at weights + (r − r0)·wt_row + h·wt_head (the atom's (rows, H, W) block: sc_row = H·W,
   sc_head = W; one head's rows: sc_row = W, sc_head = 0). rowmax_in, optional: each row's best valid score
   (score + bias) of the one head given, computed by the caller. unit_t, vec, dist2, bias: the whole batch's;
   scratch: 2·rows + 2·rows·W values; frames_out (N, H, 3, 3), optional: the assembled frames. */
void NAME(cf_max_frame_heads)(const T *scores, int64_t sc_row, int64_t sc_head, const T *weights, int64_t wt_row,
                              int64_t wt_head, const T *rowmax_in, const T *unit_t, const T *vec, const T *dist2,
                              const T *bias, const T *a, int64_t i, int64_t r0, int64_t r1, int64_t heads,
                              int64_t h_lo, int64_t h_hi, int64_t width, int stochastic, T half_width1,
                              T half_width2, uint64_t seed, T *d1, T *d2, uint8_t *found, T *scratch,
                              T *frames_out) {
    const int64_t rows = r1 - r0;
    T *rowmax = scratch, *rowup = rowmax + rows, *upper = rowup + rows;
    for (int64_t h = h_lo; h < h_hi; h++) {
        const T *sc_h = scores + h * sc_head, *wt_h = weights + h * wt_head;
        const int64_t ih = i * heads + h;
        T *e1 = d1 + ih * 3, *e2 = d2 + ih * 3;
        e1[0] = e1[1] = e1[2] = e2[0] = e2[1] = e2[2] = 0;
        found[ih * 2] = found[ih * 2 + 1] = 0;
        /* axis 1: the first slot (in slot order) of the best valid score */
        T best = -INFINITY;
        for (int64_t r = r0; r < r1; r++) {
            const T top = rowmax_in ? rowmax_in[r - r0] : NAME(row_best)(sc_h + (r - r0) * sc_row, bias + r * width, width);
            rowmax[r - r0] = top;
            best = top > best ? top : best;
        }
        if (!(best > -INFINITY)) continue;
        int64_t pick = -1;
        for (int64_t r = r0; r < r1 && pick < 0; r++) {
            if (rowmax[r - r0] != best) continue;
            const T *sc = sc_h + (r - r0) * sc_row, *bs = bias + r * width;
            for (int64_t m = 0; m < width; m++)
                if (sc[m] + bs[m] == best) { pick = r * width + m; break; }
        }
        if (stochastic) {
            const T hw = half_width1 * (a[ih] < 0 ? -a[ih] : a[ih]);
            T noisy_best = -INFINITY;
            for (int64_t r = r0; r < r1; r++) {
                if (!(rowmax[r - r0] >= best - (T)2 * hw)) continue;
                const T *sc = sc_h + (r - r0) * sc_row, *bs = bias + r * width;
                for (int64_t m0 = 0; m0 < width; m0 += 64) {
                    for (uint64_t bits = NAME(at_least)(sc + m0, bs + m0, width - m0 < 64 ? width - m0 : 64,
                                                        best - (T)2 * hw);
                         bits; bits &= bits - 1) {
                        const int64_t m = m0 + __builtin_ctzll(bits), at = r * width + m;
                        const T s = sc[m] + bs[m] + (T)(2 * uniform01(seed, 2 * ih, at) - 1) * hw;
                        if (s > noisy_best) { noisy_best = s; pick = at; }
                    }
                }
            }
        }
        NAME(take)(e1, unit_t, width, pick);
        found[ih * 2] = 1;
        if (!stochastic)
            NAME(orient)(e1, best, vec + pick * 3, 1, sc_h, sc_row, wt_h, wt_row, unit_t, vec, dist2, bias, r0, r1,
                         width, e1, rowmax);
        /* axis 2 */
        T top_up = -INFINITY;
        int64_t top_row = -1;
        for (int64_t r = r0; r < r1; r++) {
            const T row_up = NAME(upper_scores)(sc_h + (r - r0) * sc_row, bias + r * width, e1,
                                                unit_t + r * 3 * width, width, upper + (r - r0) * width);
            rowup[r - r0] = row_up;
            if (row_up > top_up) { top_up = row_up; top_row = r; }
        }
        if (!(top_up > -INFINITY)) continue;
        T lower = -INFINITY;
        for (int64_t m = 0; m < width; m++)
            if (upper[(top_row - r0) * width + m] == top_up) {
                int ok;
                lower = NAME(score2)(sc_h[(top_row - r0) * sc_row + m], e1, unit_t + top_row * 3 * width,
                                     width, m, &ok);
                break;
            }
        T best2 = -INFINITY;
        int64_t pick2 = -1;
        for (int64_t r = r0; r < r1; r++) {
            if (!(rowup[r - r0] >= lower)) continue;
            const T *sc = sc_h + (r - r0) * sc_row, *up = upper + (r - r0) * width;
            for (int64_t m0 = 0; m0 < width; m0 += 64) {
                for (uint64_t bits = NAME(at_least)(up + m0, NULL, width - m0 < 64 ? width - m0 : 64, lower); bits;
                     bits &= bits - 1) {
                    const int64_t m = m0 + __builtin_ctzll(bits);
                    if (!(up[m] > best2)) continue;
                    int ok;
                    const T s = NAME(score2)(sc[m], e1, unit_t + r * 3 * width, width, m, &ok);
                    if (ok && s > best2) { best2 = s; pick2 = r * width + m; }
                }
            }
        }
        if (pick2 < 0) continue;
        if (stochastic) {
            const T hw = half_width2;
            T noisy_best = -INFINITY;
            for (int64_t r = r0; r < r1; r++) {
                if (!(rowup[r - r0] >= best2 - (T)2 * hw)) continue;
                const T *sc = sc_h + (r - r0) * sc_row, *up = upper + (r - r0) * width;
                for (int64_t m0 = 0; m0 < width; m0 += 64) {
                    for (uint64_t bits = NAME(at_least)(up + m0, NULL, width - m0 < 64 ? width - m0 : 64,
                                                        best2 - (T)2 * hw);
                         bits; bits &= bits - 1) {
                        const int64_t m = m0 + __builtin_ctzll(bits);
                        int ok;
                        const T s2 = NAME(score2)(sc[m], e1, unit_t + r * 3 * width, width, m, &ok);
                        if (!ok || !(s2 >= best2 - (T)2 * hw)) continue;
                        const int64_t at = r * width + m;
                        const T s = s2 + (T)(2 * uniform01(seed, 2 * ih + 1, at) - 1) * hw;
                        if (s > noisy_best) { noisy_best = s; pick2 = at; }
                    }
                }
            }
        }
        NAME(take)(e2, unit_t, width, pick2);
        found[ih * 2 + 1] = 1;
        if (!stochastic)
            NAME(orient)(e2, best2, vec + pick2 * 3, 2, sc_h, sc_row, wt_h, wt_row, unit_t, vec, dist2, bias, r0, r1,
                         width, e1, rowup);
    }
    if (frames_out)
        for (int64_t h = h_lo; h < h_hi; h++) {
            const int64_t ih = i * heads + h;
            NAME(assemble)(d1 + ih * 3, d2 + ih * 3, found[ih * 2], found[ih * 2 + 1], frames_out + ih * 9);
        }
}

static int NAME(max_frames_range)(const T *scores, const T *weights, const T *unit_t, const T *vec, const T *dist2,
                        const T *bias, const T *a, const int64_t *atom_rows, int64_t atom_lo, int64_t atom_hi,
                        int64_t heads, int64_t width, int stochastic, T half_width1, T half_width2, uint64_t seed,
                        T *d1, T *d2, uint8_t *found) {
    int64_t most_rows = 1;
    for (int64_t i = atom_lo; i < atom_hi; i++)
        if (atom_rows[i + 1] - atom_rows[i] > most_rows) most_rows = atom_rows[i + 1] - atom_rows[i];
    T *scratch = (T *)malloc(sizeof(T) * most_rows * (2 + 2 * width));
    if (!scratch) return -2;
    for (int64_t i = atom_lo; i < atom_hi; i++) {
        const int64_t r0 = atom_rows[i];
        NAME(cf_max_frame_heads)(scores + r0 * heads * width, heads * width, width, weights + r0 * heads * width,
                                 heads * width, width, NULL, unit_t, vec, dist2, bias, a, i, r0, atom_rows[i + 1],
                                 heads, 0, heads, width, stochastic, half_width1, half_width2, seed, d1, d2, found,
                                 scratch, NULL);
    }
    free(scratch);
    return 0;
}

/* Entry point: atoms [atom_lo, atom_hi) in ranges of about equal numbers of rows, run in parallel (parallel.h). */
int NAME(cf_max_frames)(const T *scores, const T *weights, const T *unit_t, const T *vec, const T *dist2,
                        const T *bias, const T *a, const int64_t *atom_rows, int64_t atom_lo, int64_t atom_hi,
                        int64_t heads, int64_t width, int stochastic, T half_width1, T half_width2, uint64_t seed,
                        T *d1, T *d2, uint8_t *found) {
    int result;
    CF_PARALLEL(result, atom_lo, atom_hi, atom_rows, CF_MAX_PARTS,
                NAME(max_frames_range)(scores, weights, unit_t, vec, dist2, bias, a, atom_rows, c_lo, c_hi, heads,
                                       width, stochastic, half_width1, half_width2, seed, d1, d2, found));
    return result;
}
