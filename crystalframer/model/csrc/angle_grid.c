/* Per-item work of the grid path of the framed angle term (docs/model.md §6.4), for CPUs.

   spread: hist[h, i, a, node + s] = Σ_m w_m · L_s(t_m)                          (s = 0..5)
   gather: g_w[m] = Σ_a Σ_s L_s(t_m) · g_hist[h, i, a, node + s]
   with c = e_iha · r̂ the cosine of a slot with axis a of its atom's frame, u = (c − start)/step its grid coordinate,
   node = ⌊u⌋ − 2, t = u − ⌊u⌋ and L_s the quintic Lagrange weights of nodes −2 … 3 around t: what the PyTorch
   version in features.py computes. The caller multiplies the histograms by the tabulated projected basis (one
   batched matmul, which also gives the table's gradient), so the kernels only do the per-item work.

   Two ways to do it, chosen per atom:
   * shared: the heads of an atom often pick the same neighbours and so have bitwise equal frames (max frames of
     trained and untrained models average 1.2–3.6 distinct frames over 8 heads; docs/model.md §6.4). Equal frames
     give equal cosines and stencils, so per (slot, group of heads with one frame, axis) one stencil is computed and
     each of its six nodes receives the weights of all the group's heads as one 8-lane vector, in a (3, G, 8)
     head-lane buffer of the atom that stays in cache and is written out head by head at the end. Backward, the
     gradient is read into the same layout and each (slot, group) gathers all heads' sums at once. Used when
     heads ≤ 8 and the atom has at most MAX_SHARED groups.
   * per head: each item's six weights are one 8-lane vector (two lanes zero), added with one unaligned vector
     load, add and store, cycling over the atom's 3H histograms so that consecutive additions do not wait for each
     other (the grid has two spare nodes at the top for the extra lanes). Backward, each (slot, head) sums the
     products of its three axes' weight vectors with the gradient at the same nodes.
   Both sum the same terms (in a different order), so they agree to rounding.

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
#include "parallel.h"

#define MAX_WIDTH 256
#define MAX_AXES 24 /* 3 × heads: the kernels take at most 8 heads (ANGLE_LANES in kernels.py) */
#define SPARE_TOP 6 /* u ≤ G − 6: nodes u − 2 … u + 5 (six taps and two zero lanes) stay inside the grid */
#define MAX_SHARED 5 /* above 3 × this many distinct axis vectors per atom, the per-head way is used */
#define PRODUCT_DIM 16 /* head_dim of the presets: its table products keep their accumulators in registers */
#define ATOM_BLOCK 32 /* atoms whose table products share each pass over the table */
#define NODE_CHUNK 32 /* table nodes per chunk: 32 × 16 × 8 floats = 16 KB, in the L1 cache */

/* How many of a row's slots are inside head h's softmax. */
static inline int64_t row_count(const int64_t *ends, int64_t i, int64_t h, int64_t heads, int64_t offset,
                                int64_t width) {
    if (!ends) return width;
    const int64_t left = ends[i * heads + h] - offset;
    return left < 0 ? 0 : (left < width ? left : width);
}

typedef int32_t int_t_f32; /* integers of the size of each type, for vector lane indices */
typedef int64_t int_t_f64;

#define T float
#define NAME(x) x##_f32
#include "angle_grid_body.h"
#undef T
#undef NAME

#define T double
#define NAME(x) x##_f64
#include "angle_grid_body.h"
#undef T
#undef NAME
