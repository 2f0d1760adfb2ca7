/* The kernels of angle_grid.c for one floating-point type: included twice by it, with T (the type) and NAME(x)
   (x with the type's suffix) defined. See angle_grid.c for what they compute and the layouts. */

typedef T NAME(vec8) __attribute__((vector_size(8 * sizeof(T))));
/* lane indices for __builtin_shuffle of two vec8 (same element size as T) */
typedef NAME(int_t) NAME(index8) __attribute__((vector_size(8 * sizeof(T))));

/* The six quintic Lagrange weights of nodes −2 … 3 around t ∈ [0, 1) in lanes 0 … 5 (lanes 6, 7 zero), by Horner's
   rule from their monomial coefficients. */
static inline NAME(vec8) NAME(lagrange)(T t) {
    const NAME(vec8) C0 = {0, 0, 1, 0, 0, 0, 0, 0};
    const NAME(vec8) C1 = {(T)1 / 20, (T)-1 / 2, (T)-1 / 3, 1, (T)-1 / 4, (T)1 / 30, 0, 0};
    const NAME(vec8) C2 = {(T)-1 / 24, (T)2 / 3, (T)-5 / 4, (T)2 / 3, (T)-1 / 24, 0, 0, 0};
    const NAME(vec8) C3 = {(T)-1 / 24, (T)-1 / 24, (T)5 / 12, (T)-7 / 12, (T)7 / 24, (T)-1 / 24, 0, 0};
    const NAME(vec8) C4 = {(T)1 / 24, (T)-1 / 6, (T)1 / 4, (T)-1 / 6, (T)1 / 24, 0, 0, 0};
    const NAME(vec8) C5 = {(T)-1 / 120, (T)1 / 24, (T)-1 / 12, (T)1 / 12, (T)-1 / 24, (T)1 / 120, 0, 0};
    NAME(vec8) v = C5 * t + C4;
    v = v * t + C3;
    v = v * t + C2;
    v = v * t + C1;
    return v * t + C0;
}

/* Node −2 and t of each slot's stencil for one frame axis e. */
static inline void NAME(stencils)(const T *e, const T *ux, const T *uy, const T *uz, int64_t width, int cos_abs,
                                  T start, T inv_step, T top, int32_t *node, T *frac) {
    const T e0 = e[0], e1 = e[1], e2 = e[2];
#pragma omp simd
    for (int64_t m = 0; m < width; m++) {
        T c = e0 * ux[m] + e1 * uy[m] + e2 * uz[m];
        if (cos_abs) c = c < 0 ? -c : c;
        T u = (c - start) * inv_step;
        u = u > (T)2 ? u : (T)2; /* the clamp only guards against rounding (AngleGrid) */
        u = u < top ? u : top;
        const int32_t j = (int32_t)u;
        node[m] = j - 2;
        frac[m] = u - (T)j;
    }
}

/* The six Lagrange weights of each slot's stencil, one line of `width` per tap: lam[s * width + m] = L_s(frac[m])
   (vectorised across slots, so the per-item loops only load them). */
static inline void NAME(lagrange_lines)(const T *frac, int64_t width, T *lam) {
#pragma omp simd
    for (int64_t m = 0; m < width; m++) {
        const T t = frac[m];
        lam[m] = ((((((T)-1 / 120) * t + (T)1 / 24) * t + (T)-1 / 24) * t + (T)-1 / 24) * t + (T)1 / 20) * t;
        lam[width + m] = (((((T)1 / 24 * t + (T)-1 / 6) * t + (T)-1 / 24) * t + (T)2 / 3) * t + (T)-1 / 2) * t;
        lam[2 * width + m] = ((((((T)-1 / 12) * t + (T)1 / 4) * t + (T)5 / 12) * t + (T)-5 / 4) * t + (T)-1 / 3) * t + 1;
        lam[3 * width + m] = (((((T)1 / 12 * t + (T)-1 / 6) * t + (T)-7 / 12) * t + (T)2 / 3) * t + 1) * t;
        lam[4 * width + m] = ((((((T)-1 / 24) * t + (T)1 / 24) * t + (T)7 / 24) * t + (T)-1 / 24) * t + (T)-1 / 4) * t;
        lam[5 * width + m] = (((((T)1 / 120 * t) * t + (T)-1 / 24) * t) * t + (T)1 / 30) * t;
    }
}

/* The stencils of a row's slots for one axis vector e: node −2 of each slot and its six Lagrange weights, one line of
   `width` per tap (lam). */
static inline void NAME(axis_stencils)(const T *e, const T *ux, const T *uy, const T *uz, int64_t width, int cos_abs,
                                       T start, T inv_step, T top, int32_t *node, T *frac, T *lam) {
    NAME(stencils)(e, ux, uy, uz, width, cos_abs, start, inv_step, top, node, frac);
    NAME(lagrange_lines)(frac, width, lam);
}

/* Per frame axis a, heads of atom i whose axis vectors are bitwise equal share a group: group[a][h] is the group
   of head h, first[a][g] its first head, count[a] the number of groups. Equal axes give equal cosines, so their
   items can share stencils (angle_grid.c); returns the total number of groups over the three axes. */
static int NAME(axis_groups)(const T *frames_i, int64_t heads, int count[3], int64_t first[3][8], int group[3][8]) {
    int total = 0;
    for (int a = 0; a < 3; a++) {
        count[a] = 0;
        for (int64_t h = 0; h < heads; h++) {
            group[a][h] = -1;
            for (int g = 0; g < count[a] && group[a][h] < 0; g++)
                if (memcmp(frames_i + h * 9 + 3 * a, frames_i + first[a][g] * 9 + 3 * a, 3 * sizeof(T)) == 0)
                    group[a][h] = g;
            if (group[a][h] < 0) { first[a][count[a]] = h; group[a][h] = count[a]++; }
        }
        total += count[a];
    }
    return total;
}

/* Eight rows (heads) of eight slots → eight slots of eight heads: the classic three-stage vector transpose. */
static inline void NAME(transpose8)(const NAME(vec8) *in, NAME(vec8) *out) {
    NAME(index8) lo = {0, 8, 1, 9, 4, 12, 5, 13}, hi = {2, 10, 3, 11, 6, 14, 7, 15};
    NAME(index8) lo2 = {0, 1, 8, 9, 4, 5, 12, 13}, hi2 = {2, 3, 10, 11, 6, 7, 14, 15};
    NAME(index8) lo4 = {0, 1, 2, 3, 8, 9, 10, 11}, hi4 = {4, 5, 6, 7, 12, 13, 14, 15};
    NAME(vec8) t[8], u[8];
    for (int k = 0; k < 4; k++) {
        t[2 * k] = __builtin_shuffle(in[2 * k], in[2 * k + 1], lo);
        t[2 * k + 1] = __builtin_shuffle(in[2 * k], in[2 * k + 1], hi);
    }
    for (int k = 0; k < 2; k++) {
        u[4 * k] = __builtin_shuffle(t[4 * k], t[4 * k + 2], lo2);
        u[4 * k + 1] = __builtin_shuffle(t[4 * k], t[4 * k + 2], hi2);
        u[4 * k + 2] = __builtin_shuffle(t[4 * k + 1], t[4 * k + 3], lo2);
        u[4 * k + 3] = __builtin_shuffle(t[4 * k + 1], t[4 * k + 3], hi2);
    }
    for (int k = 0; k < 4; k++) {
        out[k] = __builtin_shuffle(u[k], u[k + 4], lo4);
        out[k + 4] = __builtin_shuffle(u[k], u[k + 4], hi4);
    }
}

/* The row's live weights with the heads as lanes: wt[m][h] = w[r, h, m] for slots with a direction inside head
   h's softmax, 0 otherwise (and in lanes h ≥ heads). */
static inline void NAME(head_lanes)(const T *weights_r, const T *ux, const T *uy, const T *uz, const int64_t *ends,
                                    int64_t i, int64_t heads, int64_t offset, int64_t width, NAME(vec8) *wt) {
    int full = heads == 8 && width % 8 == 0;
    for (int64_t h = 0; h < heads && full; h++) full = row_count(ends, i, h, heads, offset, width) == width;
    if (full) { /* the common case (every head takes the whole row): 8 × 8 vector transposes */
        for (int64_t m0 = 0; m0 < width; m0 += 8) {
            NAME(vec8) rows[8];
            for (int h = 0; h < 8; h++) memcpy(&rows[h], weights_r + h * width + m0, sizeof rows[h]);
            NAME(transpose8)(rows, wt + m0);
            for (int k = 0; k < 8; k++) {
                const int64_t m = m0 + k;
                if (ux[m] == 0 && uy[m] == 0 && uz[m] == 0) wt[m] = (NAME(vec8)){0};
            }
        }
        return;
    }
    memset(wt, 0, sizeof(NAME(vec8)) * width);
    for (int64_t h = 0; h < heads; h++) {
        const T *w = weights_r + h * width;
        const int64_t count = row_count(ends, i, h, heads, offset, width);
        for (int64_t m = 0; m < count; m++)
            wt[m][h] = (ux[m] != 0 || uy[m] != 0 || uz[m] != 0) ? w[m] : (T)0;
    }
}

/* The inverse of head_lanes: out[h][m] = acc[m][h] for slots with a direction inside head h's softmax, 0 for the
   others (out: the row's (H, W) block). */
static inline void NAME(store_head_rows)(const NAME(vec8) *acc, const T *ux, const T *uy, const T *uz,
                                         const int64_t *ends, int64_t i, int64_t heads, int64_t offset, int64_t width,
                                         T *out) {
    int full = heads == 8 && width % 8 == 0;
    for (int64_t h = 0; h < heads && full; h++) full = row_count(ends, i, h, heads, offset, width) == width;
    if (full) {
        for (int64_t m0 = 0; m0 < width; m0 += 8) {
            NAME(vec8) cols[8], rows[8];
            for (int k = 0; k < 8; k++) {
                const int64_t m = m0 + k;
                cols[k] = (ux[m] != 0 || uy[m] != 0 || uz[m] != 0) ? acc[m] : (NAME(vec8)){0};
            }
            NAME(transpose8)(cols, rows);
            for (int h = 0; h < 8; h++) memcpy(out + h * width + m0, &rows[h], sizeof rows[h]);
        }
        return;
    }
    for (int64_t h = 0; h < heads; h++) {
        const int64_t count = row_count(ends, i, h, heads, offset, width);
        T *gw = out + h * width;
        for (int64_t m = 0; m < width; m++)
            gw[m] = (m < count && (ux[m] != 0 || uy[m] != 0 || uz[m] != 0)) ? acc[m][h] : (T)0;
    }
}

/* One atom, heads one by one: each item's six weights are one 8-lane vector added at its node of the head's
   histogram in `planar` (H, 3, G) (cycling over the atom's 3H histograms, which stay in cache, so consecutive
   additions do not wait for each other); then transposed into the (3G, 8) head lanes. */
static void NAME(spread_per_head)(const T *weights, const T *frames, const T *unit_t, const int64_t *atom_rows,
                                  const int64_t *ends, int64_t i, int64_t heads, int64_t width, int64_t size,
                                  T start, T inv_step, int cos_abs, T top, int32_t *node, T *frac, T *planar,
                                  T *lanes) {
    const int64_t axes = 3 * heads;
    T *live_w = frac + MAX_AXES * MAX_WIDTH;
    memset(planar, 0, sizeof(T) * axes * size);
    for (int64_t r = atom_rows[i]; r < atom_rows[i + 1]; r++) {
        const T *ux = unit_t + r * 3 * width, *uy = ux + width, *uz = uy + width;
        const int64_t offset = (r - atom_rows[i]) * width;
        for (int64_t q = 0; q < axes; q++) {
            const int64_t h = q / 3;
            const T *w = weights + (r * heads + h) * width;
            const int64_t count = row_count(ends, i, h, heads, offset, width);
            T *wq = live_w + q * width;
            NAME(stencils)(frames + (i * axes + q) * 3, ux, uy, uz, width, cos_abs, start, inv_step, top,
                           node + q * width, frac + q * width);
#pragma omp simd
            for (int64_t m = 0; m < width; m++)
                wq[m] = (m < count && (ux[m] != 0 || uy[m] != 0 || uz[m] != 0)) ? w[m] : (T)0;
        }
        for (int64_t m = 0; m < width; m++) {
            for (int64_t q = 0; q < axes; q++) {
                const NAME(vec8) add = NAME(lagrange)(frac[q * width + m]) * live_w[q * width + m];
                T *hp = planar + q * size + node[q * width + m];
                NAME(vec8) cur;
                memcpy(&cur, hp, sizeof cur); /* unaligned vector load and store */
                cur += add;
                memcpy(hp, &cur, sizeof cur);
            }
        }
    }
    memset(lanes, 0, sizeof(NAME(vec8)) * 3 * size);
    for (int64_t h = 0; h < heads; h++)
        for (int64_t q = 0; q < 3 * size; q++) lanes[q * 8 + h] = planar[h * 3 * size + q];
}

/* One atom whose heads share few axes: per (slot, axis, group of heads with that axis vector) one stencil, and
   each of its six nodes gets the group's weights of all heads at once, as one 8-lane (head) vector, in the atom's
   (3G, 8) head lanes. */
static void NAME(spread_shared)(const T *weights, const T *frames, const T *unit_t, const int64_t *atom_rows,
                                const int64_t *ends, int64_t i, int64_t heads, int64_t width, int64_t size, T start,
                                T inv_step, int cos_abs, T top, const int count[3], const int64_t first[3][8],
                                const int group[3][8], int32_t *node, T *frac, T *lam, NAME(vec8) *wt,
                                NAME(vec8) *lanes) {
    NAME(vec8) mask[3][8];
    for (int a = 0; a < 3; a++)
        for (int g = 0; g < count[a]; g++)
            for (int64_t h = 0; h < 8; h++) mask[a][g][h] = (h < heads && group[a][h] == g) ? (T)1 : (T)0;
    memset(lanes, 0, sizeof(NAME(vec8)) * 3 * size);
    for (int64_t r = atom_rows[i]; r < atom_rows[i + 1]; r++) {
        const T *ux = unit_t + r * 3 * width, *uy = ux + width, *uz = uy + width;
        NAME(head_lanes)(weights + r * heads * width, ux, uy, uz, ends, i, heads, (r - atom_rows[i]) * width, width,
                         wt);
        for (int a = 0; a < 3; a++) {
            NAME(vec8) *lanes_a = lanes + a * size;
            for (int g = 0; g < count[a]; g++) {
                NAME(axis_stencils)(frames + (i * heads + first[a][g]) * 9 + 3 * a, ux, uy, uz, width, cos_abs,
                                    start, inv_step, top, node, frac, lam);
                const NAME(vec8) mg = mask[a][g];
                const int alone = count[a] == 1;
                for (int64_t m = 0; m < width; m++) {
                    const NAME(vec8) wv = alone ? wt[m] : wt[m] * mg;
                    NAME(vec8) *at = lanes_a + node[m];
                    for (int s = 0; s < 6; s++) at[s] += lam[s * width + m] * wv;
                }
            }
        }
    }
}

/* The products with the table (3G, D, 8) for a block of `count` atoms whose histograms (or histogram gradients)
   are consecutive (3G, 8) arrays: the table is read in chunks of NODE_CHUNK nodes that stay in the L1 cache while
   every atom of the block uses them (one pass per atom was bound by reading the whole 244 KB table from L2).
   forward:  acc[k][e][h] = Σ_q hist[k][q][h] · table[q][e][h]                      (acc: count × D, zeroed here)
   gradient: lanes[k][q][h] = Σ_e table[q][e][h] · g[k][e][h]                       (the histograms' gradient)
   table:    gtable[q][e][h] += Σ_k hist[k][q][h] · g[k][e][h]                       (the table's gradient) */
static void NAME(block_forward)(const NAME(vec8) *hist, int64_t count, const NAME(vec8) *table, int64_t nodes,
                                int64_t dim, NAME(vec8) *acc) {
    memset(acc, 0, sizeof(NAME(vec8)) * count * dim);
    for (int64_t q0 = 0; q0 < nodes; q0 += NODE_CHUNK) {
        const int64_t q1 = q0 + NODE_CHUNK < nodes ? q0 + NODE_CHUNK : nodes;
        for (int64_t k = 0; k < count; k++) {
            const NAME(vec8) *hk = hist + k * nodes;
            NAME(vec8) *ak = acc + k * dim;
            if (dim == PRODUCT_DIM) { /* the presets' head_dim: the accumulators stay in registers */
                NAME(vec8) r[PRODUCT_DIM];
                memcpy(r, ak, sizeof r);
                for (int64_t q = q0; q < q1; q++) {
                    const NAME(vec8) lv = hk[q];
                    const NAME(vec8) *tq = table + q * PRODUCT_DIM;
#pragma GCC unroll 16
                    for (int e = 0; e < PRODUCT_DIM; e++) r[e] += lv * tq[e];
                }
                memcpy(ak, r, sizeof r);
            } else {
                for (int64_t q = q0; q < q1; q++) {
                    const NAME(vec8) lv = hk[q];
                    const NAME(vec8) *tq = table + q * dim;
                    for (int64_t e = 0; e < dim; e++) ak[e] += lv * tq[e];
                }
            }
        }
    }
}

static void NAME(block_backward)(const NAME(vec8) *hist, const NAME(vec8) *g, int64_t count,
                                 const NAME(vec8) *table, int64_t nodes, int64_t dim, NAME(vec8) *lanes,
                                 NAME(vec8) *gtable) {
    for (int64_t q0 = 0; q0 < nodes; q0 += NODE_CHUNK) {
        const int64_t q1 = q0 + NODE_CHUNK < nodes ? q0 + NODE_CHUNK : nodes;
        for (int64_t k = 0; k < count; k++) {
            const NAME(vec8) *gk = g + k * dim;
            NAME(vec8) *lk = lanes + k * nodes;
            for (int64_t q = q0; q < q1; q++) {
                const NAME(vec8) *tq = table + q * dim;
                NAME(vec8) s0 = {0}, s1 = {0};
                int64_t e = 0;
                for (; e + 1 < dim; e += 2) {
                    s0 += tq[e] * gk[e];
                    s1 += tq[e + 1] * gk[e + 1];
                }
                if (e < dim) s0 += tq[e] * gk[e];
                lk[q] = s0 + s1;
            }
        }
    }
    for (int64_t q = 0; q < nodes; q++) {
        NAME(vec8) *gq = gtable + q * dim;
        if (dim == PRODUCT_DIM) { /* the accumulators stay in registers over the block's atoms */
            NAME(vec8) r[PRODUCT_DIM];
            memcpy(r, gq, sizeof r);
            for (int64_t k = 0; k < count; k++) {
                const NAME(vec8) hq = hist[k * nodes + q], *gk = g + k * PRODUCT_DIM;
#pragma GCC unroll 16
                for (int e = 0; e < PRODUCT_DIM; e++) r[e] += hq * gk[e];
            }
            memcpy(gq, r, sizeof r);
        } else {
            for (int64_t k = 0; k < count; k++) {
                const NAME(vec8) hq = hist[k * nodes + q], *gk = g + k * dim;
                for (int64_t e = 0; e < dim; e++) gq[e] += hq * gk[e];
            }
        }
    }
}

/* The framed angle term Σ_k P_kh Σ_m w_m g(c_mk) of atoms [atom_lo, atom_hi) (heads ≤ 8): out (N, H, D); the
   per-atom head-lane histograms (N, 3G, 8) are kept in hist_save when it is not NULL (for the backward pass). */
static int NAME(angle_fwd_range)(const T *weights, const T *frames, const T *unit_t, const int64_t *atom_rows,
                       const int64_t *ends, int64_t atom_lo, int64_t atom_hi, int64_t heads, int64_t width,
                       int64_t size, T start, T inv_step, int cos_abs, const T *table, int64_t dim, T *out,
                       T *hist_save) {
    if (width > MAX_WIDTH || heads > 8 || size < SPARE_TOP + 3) return -1;
    const int64_t nodes = 3 * size;
    int32_t *node = (int32_t *)malloc(sizeof(int32_t) * MAX_AXES * MAX_WIDTH);
    T *frac = (T *)malloc(sizeof(T) * (2 * MAX_AXES * MAX_WIDTH + 24 * size));
    NAME(vec8) *wt = (NAME(vec8) *)aligned_alloc(
        sizeof(NAME(vec8)), sizeof(NAME(vec8)) * (MAX_WIDTH + ATOM_BLOCK * (dim + (hist_save ? 0 : nodes))));
    if (!node || !frac || !wt) { free(node); free(frac); free(wt); return -2; }
    NAME(vec8) *acc = wt + MAX_WIDTH, *block_hist = acc + ATOM_BLOCK * dim;
    T *planar = frac + 2 * MAX_AXES * MAX_WIDTH;
    int count[3], group[3][8];
    int64_t first[3][8];
    FTZ_BEGIN
    const T top = (T)(size - SPARE_TOP);
    for (int64_t b0 = atom_lo; b0 < atom_hi; b0 += ATOM_BLOCK) {
        const int64_t b1 = b0 + ATOM_BLOCK < atom_hi ? b0 + ATOM_BLOCK : atom_hi;
        /* the histograms go straight where the backward pass will read them, if it will */
        NAME(vec8) *hist = hist_save ? (NAME(vec8) *)hist_save + b0 * nodes : block_hist;
        for (int64_t i = b0; i < b1; i++) {
            NAME(vec8) *hist_i = hist + (i - b0) * nodes;
            if (NAME(axis_groups)(frames + i * heads * 9, heads, count, first, group) <= 3 * MAX_SHARED)
                NAME(spread_shared)(weights, frames, unit_t, atom_rows, ends, i, heads, width, size, start,
                                    inv_step, cos_abs, top, count, (const int64_t(*)[8])first,
                                    (const int(*)[8])group, node, frac, frac + MAX_WIDTH, wt, hist_i);
            else
                NAME(spread_per_head)(weights, frames, unit_t, atom_rows, ends, i, heads, width, size, start,
                                      inv_step, cos_abs, top, node, frac, planar, (T *)hist_i);
        }
        NAME(block_forward)(hist, b1 - b0, (const NAME(vec8) *)table, nodes, dim, acc);
        for (int64_t i = b0; i < b1; i++)
            for (int64_t h = 0; h < heads; h++)
                for (int64_t e = 0; e < dim; e++) out[(i * heads + h) * dim + e] = acc[(i - b0) * dim + e][h];
    }
    FTZ_END
    free(node);
    free(frac);
    free(wt);
    return 0;
}

/* Backward of one atom, heads one by one, from the histogram gradient in `planar` (H, 3, G): each (slot, head)
   sums its three axes' weight vectors times the gradient at the same nodes. */
static void NAME(gather_per_head)(const T *frames, const T *unit_t, const int64_t *atom_rows, const int64_t *ends,
                                  int64_t i, int64_t heads, int64_t width, int64_t size, T start, T inv_step,
                                  int cos_abs, T top, int32_t *node, T *frac, const T *planar, T *grad_weights) {
    for (int64_t r = atom_rows[i]; r < atom_rows[i + 1]; r++) {
        const T *ux = unit_t + r * 3 * width, *uy = ux + width, *uz = uy + width;
        const int64_t offset = (r - atom_rows[i]) * width;
        for (int64_t h = 0; h < heads; h++) {
            const T *g_ih = planar + h * 3 * size;
            for (int64_t a = 0; a < 3; a++)
                NAME(stencils)(frames + ((i * heads + h) * 3 + a) * 3, ux, uy, uz, width, cos_abs, start, inv_step,
                               top, node + a * width, frac + a * width);
            const int64_t count = row_count(ends, i, h, heads, offset, width);
            T *gw = grad_weights + (r * heads + h) * width;
            for (int64_t m = 0; m < width; m++) {
                NAME(vec8) acc = {0}, g;
                for (int64_t a = 0; a < 3; a++) {
                    memcpy(&g, g_ih + a * size + node[a * width + m], sizeof g);
                    acc += NAME(lagrange)(frac[a * width + m]) * g;
                }
                T sum = 0;
                for (int s = 0; s < 6; s++) sum += acc[s];
                const int live = m < count && (ux[m] != 0 || uy[m] != 0 || uz[m] != 0);
                gw[m] = live ? sum : (T)0;
            }
        }
    }
}

/* Backward of one atom whose heads share few frames, from the histogram gradient in head lanes (3G, 8): per
   (slot, group) the six nodes of each axis give all heads' sums at once. */
static void NAME(gather_shared)(const T *frames, const T *unit_t, const int64_t *atom_rows, const int64_t *ends,
                                int64_t i, int64_t heads, int64_t width, int64_t size, T start, T inv_step,
                                int cos_abs, T top, const int count[3], const int64_t first[3][8],
                                const int group[3][8], int32_t *node, T *frac, T *lam, NAME(vec8) *acc,
                                const NAME(vec8) *lanes, T *grad_weights) {
    NAME(index8) lane_of[3][8]; /* all ones in the lanes of the heads of group g of axis a */
    for (int a = 0; a < 3; a++)
        for (int g = 0; g < count[a]; g++)
            for (int64_t h = 0; h < 8; h++) lane_of[a][g][h] = (h < heads && group[a][h] == g) ? -1 : 0;
    for (int64_t r = atom_rows[i]; r < atom_rows[i + 1]; r++) {
        const T *ux = unit_t + r * 3 * width, *uy = ux + width, *uz = uy + width;
        const int64_t offset = (r - atom_rows[i]) * width;
        memset(acc, 0, sizeof(NAME(vec8)) * width);
        for (int a = 0; a < 3; a++) {
            const NAME(vec8) *lanes_a = lanes + a * size;
            for (int g = 0; g < count[a]; g++) {
                NAME(axis_stencils)(frames + (i * heads + first[a][g]) * 9 + 3 * a, ux, uy, uz, width, cos_abs,
                                    start, inv_step, top, node, frac, lam);
                const NAME(index8) in = lane_of[a][g];
                const int alone = count[a] == 1;
                for (int64_t m = 0; m < width; m++) {
                    const NAME(vec8) *at = lanes_a + node[m];
                    NAME(vec8) sum = lam[m] * at[0];
                    for (int s = 1; s < 6; s++) sum += lam[s * width + m] * at[s];
                    acc[m] += alone ? sum : (NAME(vec8))((NAME(index8))sum & in);
                }
            }
        }
        NAME(store_head_rows)(acc, ux, uy, uz, ends, i, heads, offset, width, grad_weights + r * heads * width);
    }
}

/* Backward of cf_angle_fwd for atoms [atom_lo, atom_hi): grad_out (N, H, D) → grad_weights (R, H, W) (slots that
   do not count get 0) and, added into grad_table (3G, D, 8) (the caller gives each thread its own), Σ_i
   hist_i[q][h] · grad_out[i, h, e]. hist_save: the forward's (N, 3G, 8) histograms. */
/* The gradient of atom i in head lanes: g[e][h] = grad_out[i, h, e]. */
static inline void NAME(grad_lanes)(const T *grad_out, int64_t i, int64_t heads, int64_t dim, NAME(vec8) *g) {
    memset(g, 0, sizeof(NAME(vec8)) * dim);
    for (int64_t h = 0; h < heads; h++)
        for (int64_t e = 0; e < dim; e++) g[e][h] = grad_out[(i * heads + h) * dim + e];
}

static int NAME(angle_bwd_range)(const T *frames, const T *unit_t, const int64_t *atom_rows, const int64_t *ends,
                       int64_t atom_lo, int64_t atom_hi, int64_t heads, int64_t width, int64_t size, T start,
                       T inv_step, int cos_abs, const T *table, int64_t dim, const T *grad_out, const T *hist_save,
                       T *grad_weights, T *grad_table) {
    if (width > MAX_WIDTH || heads > 8 || size < SPARE_TOP + 3) return -1;
    const int64_t nodes = 3 * size;
    int32_t node[3 * MAX_WIDTH];
    T *frac = (T *)malloc(sizeof(T) * (21 * MAX_WIDTH + 24 * size));
    NAME(vec8) *acc = (NAME(vec8) *)aligned_alloc(
        sizeof(NAME(vec8)), sizeof(NAME(vec8)) * (MAX_WIDTH + ATOM_BLOCK * (nodes + dim)));
    if (!frac || !acc) { free(frac); free(acc); return -2; }
    NAME(vec8) *block_lanes = acc + MAX_WIDTH, *block_g = block_lanes + ATOM_BLOCK * nodes;
    T *planar = frac + 21 * MAX_WIDTH;
    int count[3], group[3][8];
    int64_t first[3][8];
    FTZ_BEGIN
    const T top = (T)(size - SPARE_TOP);
    for (int64_t b0 = atom_lo; b0 < atom_hi; b0 += ATOM_BLOCK) {
        const int64_t b1 = b0 + ATOM_BLOCK < atom_hi ? b0 + ATOM_BLOCK : atom_hi;
        for (int64_t i = b0; i < b1; i++) NAME(grad_lanes)(grad_out, i, heads, dim, block_g + (i - b0) * dim);
        NAME(block_backward)((const NAME(vec8) *)hist_save + b0 * nodes, block_g, b1 - b0,
                             (const NAME(vec8) *)table, nodes, dim, block_lanes, (NAME(vec8) *)grad_table);
        if (!grad_weights) continue;
        for (int64_t i = b0; i < b1; i++) {
            const NAME(vec8) *lanes = block_lanes + (i - b0) * nodes;
            if (NAME(axis_groups)(frames + i * heads * 9, heads, count, first, group) <= 3 * MAX_SHARED) {
                NAME(gather_shared)(frames, unit_t, atom_rows, ends, i, heads, width, size, start, inv_step, cos_abs,
                                    top, count, (const int64_t(*)[8])first, (const int(*)[8])group, node, frac,
                                    frac + 3 * MAX_WIDTH, acc, lanes, grad_weights);
            } else {
                for (int64_t h = 0; h < heads; h++)
                    for (int64_t q = 0; q < nodes; q++) planar[h * nodes + q] = lanes[q][h];
                NAME(gather_per_head)(frames, unit_t, atom_rows, ends, i, heads, width, size, start, inv_step,
                                      cos_abs, top, node, frac, planar, grad_weights);
            }
        }
    }
    FTZ_END
    free(frac);
    free(acc);
    return 0;
}

/* Entry points: atoms [atom_lo, atom_hi) in ranges of about equal numbers of rows, run in parallel (parallel.h);
   the backward pass's grad_table is partial_count buffers of partial_stride values, one per range. */
int NAME(cf_angle_fwd)(const T *weights, const T *frames, const T *unit_t, const int64_t *atom_rows,
                       const int64_t *ends, int64_t atom_lo, int64_t atom_hi, int64_t heads, int64_t width,
                       int64_t size, T start, T inv_step, int cos_abs, const T *table, int64_t dim, T *out,
                       T *hist_save) {
    int result;
    CF_PARALLEL(result, atom_lo, atom_hi, atom_rows, CF_MAX_PARTS,
                NAME(angle_fwd_range)(weights, frames, unit_t, atom_rows, ends, c_lo, c_hi, heads, width, size,
                                      start, inv_step, cos_abs, table, dim, out, hist_save));
    return result;
}

int NAME(cf_angle_bwd)(const T *frames, const T *unit_t, const int64_t *atom_rows, const int64_t *ends,
                       int64_t atom_lo, int64_t atom_hi, int64_t heads, int64_t width, int64_t size, T start,
                       T inv_step, int cos_abs, const T *table, int64_t dim, const T *grad_out, const T *hist_save,
                       T *grad_weights, T *grad_table, int64_t partial_stride, int64_t partial_count) {
    int result;
    CF_PARALLEL(result, atom_lo, atom_hi, atom_rows, partial_count,
                NAME(angle_bwd_range)(frames, unit_t, atom_rows, ends, c_lo, c_hi, heads, width, size, start,
                                      inv_step, cos_abs, table, dim, grad_out, hist_save, grad_weights,
                                      grad_table + part * partial_stride));
    return result;
}
