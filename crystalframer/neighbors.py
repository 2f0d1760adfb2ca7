"""Periodic neighbour list over a sphere (docs/model.md §1).

Every image-edge (i, j, n) with |p_j + n·L − p_i| ≤ R_c, the self image (i, i, 0) included.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np



@dataclass(frozen=True)
class NeighborList:
    """Image-edges of one crystal, sorted by source atom i (i-major), then by j and n.

    src, dst: (E,) int64 atom indices i (query) and j (key).
    image: (E, 3) int64 lattice translation n, relative to the *unwrapped* input positions.
    vec: (E, 3) float64 r = p_j + n·L − p_i in Å.
    """

    src: np.ndarray
    dst: np.ndarray
    image: np.ndarray
    vec: np.ndarray
    cutoff: float

    @property
    def num_edges(self) -> int:
        return int(self.src.shape[0])


def neighbor_list(positions: np.ndarray, lattice: np.ndarray, cutoff: float) -> NeighborList:
    """Enumerate all image-edges within ``cutoff`` (Å), the self image (i, i, 0) included.

    positions: (N, 3) Cartesian Å (wrapped or not); lattice: (3, 3) rows are lattice vectors. The candidate search
    is pymatgen's cell-list ``find_points_in_spheres`` (compiled, O(N) cells; 5 ms for a 112-atom cell where a dense
    atoms × atoms × images search takes ~120 ms); every vector is then recomputed from the raw input as
    p_j + n·L − p_i and the sphere |r| ≤ R_c is applied exactly here, so rounding in the search cannot change the
    edge set. tests/test_neighbors.py checks it against a brute-force loop over an integer box.
    """
    from pymatgen.optimization.neighbors import find_points_in_spheres

    positions = np.ascontiguousarray(positions, dtype=np.float64)
    lattice = np.ascontiguousarray(lattice, dtype=np.float64)
    if positions.shape[0] == 0:
        empty = np.zeros(0, dtype=np.int64)
        return NeighborList(src=empty, dst=empty, image=np.zeros((0, 3), np.int64), vec=np.zeros((0, 3)),
                            cutoff=float(cutoff))
    # A margin so edges on the sphere are candidates whatever the search's own rounding; the exact test follows.
    margin = 1e-6 * max(1.0, cutoff)
    src, dst, offsets, _ = find_points_in_spheres(positions, positions, float(cutoff) + margin,
                                                  np.array([1, 1, 1], dtype=np.int64), lattice, tol=1e-8)
    src = src.astype(np.int64)
    dst = dst.astype(np.int64)
    image = np.rint(offsets).astype(np.int64)
    vec = positions[dst] + image @ lattice - positions[src]
    keep = np.einsum("ec,ec->e", vec, vec) <= cutoff * cutoff
    src, dst, image, vec = src[keep], dst[keep], image[keep], vec[keep]
    order = np.lexsort((image[:, 2], image[:, 1], image[:, 0], dst, src))
    return NeighborList(src=src[order], dst=dst[order], image=image[order], vec=vec[order], cutoff=float(cutoff))
