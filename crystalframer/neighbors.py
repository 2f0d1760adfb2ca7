"""Periodic neighbour list over a sphere (design.md §1.1).

Every image-edge (i, j, n) with |p_j + n·L − p_i| ≤ R_c, the self image (i, i, 0) included.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .structure import plane_spacings


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


def neighbor_list(positions: np.ndarray, lattice: np.ndarray, cutoff: float,
                  max_block: int = 4_000_000) -> NeighborList:
    """Enumerate all image-edges within ``cutoff`` (Å), vectorized over atoms and images.

    positions: (N, 3) Cartesian Å; lattice: (3, 3) rows are lattice vectors.
    Works for skewed cells (the image range per direction comes from the plane spacings) and for tiny cells
    (many images). Memory is bounded by processing source atoms in blocks of at most ``max_block`` candidates.
    """
    positions = np.asarray(positions, dtype=np.float64)
    lattice = np.asarray(lattice, dtype=np.float64)
    n_atoms = positions.shape[0]
    frac = positions @ np.linalg.inv(lattice)
    shift = np.floor(frac)
    wrapped_frac = frac - shift  # in [0, 1)
    wrapped = wrapped_frac @ lattice
    # With wrapped coordinates the fractional difference lies in (-1, 1), so |n_k| ≤ ceil(R_c / d_k) + 1.
    reach = np.ceil(cutoff / plane_spacings(lattice)).astype(np.int64) + 1
    axes = [np.arange(-r, r + 1) for r in reach]
    images = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    image_vecs = images @ lattice  # (I, 3)
    n_images = images.shape[0]
    cutoff2 = cutoff * cutoff

    block = max(1, max_block // max(1, n_atoms * n_images))
    srcs, dsts, imgs, vecs = [], [], [], []
    for start in range(0, n_atoms, block):  # blocks bound memory; each block is fully vectorized
        stop = min(n_atoms, start + block)
        base = wrapped[None, :, :] - wrapped[start:stop, None, :]  # (b, N, 3)
        r = base[:, :, None, :] + image_vecs[None, None, :, :]  # (b, N, I, 3)
        d2 = np.einsum("bjic,bjic->bji", r, r)
        bi, bj, bk = np.nonzero(d2 <= cutoff2)
        srcs.append(bi + start)
        dsts.append(bj)
        imgs.append(images[bk])
        vecs.append(r[bi, bj, bk])
    src = np.concatenate(srcs).astype(np.int64)
    dst = np.concatenate(dsts).astype(np.int64)
    img_wrapped = np.concatenate(imgs).astype(np.int64)
    # Express n for the original (unwrapped) positions: r = (f_j + n_raw − f_i)·L.
    image = img_wrapped - shift[dst].astype(np.int64) + shift[src].astype(np.int64)
    vec = np.concatenate(vecs)
    # Recompute r from the raw input so the vectors are exactly p_j + n·L − p_i.
    vec = positions[dst] + image @ lattice - positions[src]
    order = np.lexsort((image[:, 2], image[:, 1], image[:, 0], dst, src))
    return NeighborList(src=src[order], dst=dst[order], image=image[order], vec=vec[order], cutoff=float(cutoff))
