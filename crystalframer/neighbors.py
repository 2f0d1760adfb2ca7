"""Periodic neighbour list over a sphere (docs/model.md §1).

Every image-edge (i, j, n) with |p_j + n·L − p_i| ≤ R_c, the self image (i, i, 0) included.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np



def smallest_int(values: np.ndarray, floor: type = np.int8) -> np.ndarray:
    """``values`` in the smallest signed integer type (at least ``floor``) that holds them exactly."""
    for dtype in (np.int8, np.int16, np.int32, np.int64):
        if np.dtype(dtype).itemsize < np.dtype(floor).itemsize:
            continue
        info = np.iinfo(dtype)
        if values.size == 0 or (values.min() >= info.min and values.max() <= info.max):
            return values.astype(dtype, copy=False)
    return values.astype(np.int64, copy=False)


@dataclass(frozen=True)
class NeighborList:
    """Image-edges of one crystal, sorted by source atom i (i-major), then by j and n.

    src, dst: (E,) atom indices i (query) and j (key), int32 (int64 past 2^31 atoms).
    image: (E, 3) lattice translation n, relative to the *unwrapped* input positions, in the smallest integer type
    that holds it (int8 for all but needle-thin cells).
    positions (N, 3) Å and lattice (3, 3) (rows are lattice vectors), float64: the crystal the list was built for.
    vec (a property): (E, 3) float64 r = p_j + n·L − p_i in Å, recomputed on use with the same arithmetic as the
    search, so it is bit-identical to storing it — and the list takes 11 bytes per edge instead of 64: the whole MP
    training set at the default 10.9 Å sphere fits in ~3.6 GB instead of ~21 GB.
    """

    src: np.ndarray
    dst: np.ndarray
    image: np.ndarray
    positions: np.ndarray
    lattice: np.ndarray
    cutoff: float

    @classmethod
    def compact(cls, src: np.ndarray, dst: np.ndarray, image: np.ndarray, positions: np.ndarray,
                lattice: np.ndarray, cutoff: float) -> "NeighborList":
        """A list with its indices and images stored in the smallest exact integer types."""
        return cls(src=smallest_int(np.asarray(src), np.int32), dst=smallest_int(np.asarray(dst), np.int32),
                   image=smallest_int(np.asarray(image)), positions=np.asarray(positions, dtype=np.float64),
                   lattice=np.asarray(lattice, dtype=np.float64), cutoff=float(cutoff))

    @property
    def vec(self) -> np.ndarray:
        """(E, 3) float64 edge vectors r = p_j + n·L − p_i (Å)."""
        image = self.image.astype(np.int64)  # the search's own dtype: the product below is the same arithmetic
        return self.positions.take(self.dst, axis=0) + image @ self.lattice - self.positions.take(self.src, axis=0)

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
        return NeighborList.compact(empty, empty, np.zeros((0, 3), np.int64), positions, lattice, cutoff)
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
    return NeighborList.compact(src[order], dst[order], image[order], positions, lattice, cutoff)
