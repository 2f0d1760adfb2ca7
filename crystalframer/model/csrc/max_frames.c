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
   when none), found (N, H, 2) 1 where an axis was found. Layouts (C order): scores, weights (R, H, W); unit_t
   (R, 3, W) (each row's unit vectors, one component per line); vec (R, W, 3); dist2 (R, W); bias (R, W): 0 on valid
   slots, −inf elsewhere; a (N, H); atom_rows (N + 1,). Each call handles the atoms [atom_lo, atom_hi); callers run
   disjoint ranges in parallel threads.

   Speed: whole rows are ruled out by bounds before any per-slot work. Axis 1 takes the vectorised maximum of each
   row (score + bias). For axis 2, upper_m = score_m + (f_m − 1) ≥ score2_m (log f ≤ f − 1) is vectorised per row;
   the exact score2 of the slot with the highest bound is a lower bound of the best, and only slots whose bound
   reaches it are then visited, in slot order, with a logarithm each. Tie and noise passes only visit rows whose
   bound reaches their threshold. The picks are those of the plain scan. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "parallel.h"

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

#define T float
#define NAME(x) x##_f32
#define EPS FLT_EPSILON
#include "max_frames_body.h"
#undef T
#undef NAME
#undef EPS

#define T double
#define NAME(x) x##_f64
#define EPS DBL_EPSILON
#include "max_frames_body.h"
#undef T
#undef NAME
#undef EPS
