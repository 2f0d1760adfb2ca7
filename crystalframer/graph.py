"""Crystal graphs (arrays + cached neighbour list) and their collation into batches of tensors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from crystalframer.neighbors import NeighborList, neighbor_list
from crystalframer.structure import DEFAULT_MAX_ATOMS, CrystalArrays, to_arrays


@dataclass
class CrystalGraph:
    """One crystal ready for the model: validated arrays plus its image-edge list (computed once)."""

    arrays: CrystalArrays
    neighbors: NeighborList
    target: np.ndarray | None = None  # (n_targets,) physical units, NaN where unknown
    ident: str = ""

    @property
    def num_atoms(self) -> int:
        return self.arrays.num_atoms

    @property
    def num_edges(self) -> int:
        return self.neighbors.num_edges


def build_graph(structure: Any, cutoff: float, target: Sequence[float] | None = None, ident: str = "",
                max_atoms: int = DEFAULT_MAX_ATOMS) -> CrystalGraph:
    """Validate ``structure`` (pymatgen/ASE) and enumerate its image-edges within ``cutoff`` Å."""
    arrays = to_arrays(structure, max_atoms=max_atoms)
    nbrs = neighbor_list(arrays.positions, arrays.lattice, cutoff)
    tgt = None if target is None else np.asarray(target, dtype=np.float64).reshape(-1)
    return CrystalGraph(arrays=arrays, neighbors=nbrs, target=tgt, ident=ident)


@dataclass
class GraphBatch:
    """A batch of B crystals with N atoms and E image-edges in total.

    species (N, 98); positions (N, 3) Å; lattice (B, 3, 3) Å; batch (N,) crystal index of each atom;
    edge_src, edge_dst (E,) global atom indices (sorted by edge_src); edge_vec (E, 3) Å; edge_image (E, 3);
    target (B, n_targets) or None.
    """

    species: torch.Tensor
    positions: torch.Tensor
    lattice: torch.Tensor
    batch: torch.Tensor
    num_atoms: torch.Tensor
    edge_src: torch.Tensor
    edge_dst: torch.Tensor
    edge_vec: torch.Tensor
    edge_image: torch.Tensor
    target: torch.Tensor | None = None
    idents: list[str] = field(default_factory=list)

    @property
    def num_graphs(self) -> int:
        return int(self.num_atoms.shape[0])

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "GraphBatch":
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            if dtype is not None and t.is_floating_point():
                return t.to(device=device, dtype=dtype)
            return t.to(device=device)

        return GraphBatch(
            species=move(self.species), positions=move(self.positions), lattice=move(self.lattice),
            batch=move(self.batch), num_atoms=move(self.num_atoms), edge_src=move(self.edge_src),
            edge_dst=move(self.edge_dst), edge_vec=move(self.edge_vec), edge_image=move(self.edge_image),
            target=move(self.target), idents=list(self.idents))


def collate(graphs: Sequence[CrystalGraph], dtype: torch.dtype = torch.float32) -> GraphBatch:
    """Concatenate crystals into one batch with global atom indices (no Python loop over atoms or edges)."""
    if len(graphs) == 0:
        raise ValueError("cannot collate an empty list of crystals")
    counts = np.array([g.num_atoms for g in graphs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    edge_counts = np.array([g.num_edges for g in graphs], dtype=np.int64)
    edge_offsets = np.repeat(offsets, edge_counts)
    src = np.concatenate([g.neighbors.src for g in graphs]) + edge_offsets
    dst = np.concatenate([g.neighbors.dst for g in graphs]) + edge_offsets
    targets = None
    if all(g.target is not None for g in graphs):
        targets = torch.tensor(np.stack([g.target for g in graphs]), dtype=dtype)
    return GraphBatch(
        species=torch.tensor(np.concatenate([g.arrays.species for g in graphs]), dtype=dtype),
        positions=torch.tensor(np.concatenate([g.arrays.positions for g in graphs]), dtype=dtype),
        lattice=torch.tensor(np.stack([g.arrays.lattice for g in graphs]), dtype=dtype),
        batch=torch.from_numpy(np.repeat(np.arange(len(graphs)), counts)),
        num_atoms=torch.from_numpy(counts),
        edge_src=torch.from_numpy(src),
        edge_dst=torch.from_numpy(dst),
        edge_vec=torch.tensor(np.concatenate([g.neighbors.vec for g in graphs]), dtype=dtype),
        edge_image=torch.from_numpy(np.concatenate([g.neighbors.image for g in graphs]).astype(np.int64)),
        target=targets,
        idents=[g.ident for g in graphs],
    )
