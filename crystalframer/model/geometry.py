"""Per-batch geometry of the image-edges in the packed-row layout that attention, frames and features share.

Each atom's image-edges (in the given order, or nearest first for per-head cutoffs) are cut into rows of
``ROW_WIDTH`` slots; an atom with c edges owns ⌈c/W⌉ consecutive rows. Everything per edge is then a dense (R, H, W) tensor, and per-atom reductions
(softmax normaliser, argmax, weighted sums) first reduce along a row, then add the few rows of an atom together.
Padding is at most W − 1 slots per atom, however uneven the neighbour counts of a batch are (a dense per-atom row
padded to the largest count wastes 2–3× at a faithful cutoff). Each atom also has one row of J slots holding its
distinct key atoms j (pairs), so q·k and value sums are computed once per pair.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from crystalframer.model.ops import floored_exp, segment_sum

ZERO_VECTOR_EPS = 1e-5  # Å^2: images with |r|^2 below this are the zero (self) image
ROW_WIDTH = 32


@dataclass
class EdgeGeometry:
    """Geometry of a batch's image-edges, computed once per forward pass.

    Flat edges (sorted by source atom, then key atom, then image): edge_row, edge_col (E,) the slot of each edge.
    Rows (R, W) (each atom's slots nearest first with ``nearest_first``): row_atom (R,) the atom owning each row; pad_mask (True where the
    slot holds an edge); valid (an edge that is not the zero image); vec (R, W, 3) Å; dist2 (R, W) Å^2; unit
    (R, W, 3) (zero on empty slots and the zero image); pair_slot (R, W) the slot's key atom in its atom's pair row.
    Pair rows (N, J): pair_dst key atom of each pair slot (0 where empty); pair_count (N,) the number of pairs.
    Crystal level: atom_batch (N,), positions (N, 3) Å, lattice (B, 3, 3) Å.
    """

    edge_row: torch.Tensor
    edge_col: torch.Tensor
    row_atom: torch.Tensor
    pad_mask: torch.Tensor
    valid: torch.Tensor
    vec: torch.Tensor
    dist2: torch.Tensor
    unit: torch.Tensor
    pair_slot: torch.Tensor
    pair_dst: torch.Tensor
    pair_count: torch.Tensor
    atom_batch: torch.Tensor
    positions: torch.Tensor
    lattice: torch.Tensor
    _cache: dict[str, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_atoms(self) -> int:
        return self.atom_batch.numel()

    @property
    def num_rows(self) -> int:
        return int(self.row_atom.shape[0])

    def to_flat(self, values: torch.Tensor) -> torch.Tensor:
        """(R, H, W) per-slot values → (E, H) per flat edge (for inspection)."""
        return values[self.edge_row, :, self.edge_col]

    def outer_products(self, unit_vectors: bool) -> torch.Tensor:
        """(R, W, 9) flattened x xᵀ of each slot (x = r̂, or r in Å if not ``unit_vectors``; zero on empty slots).
        Computed once per batch: every layer's weighted-PCA frames reuse it."""
        key = "outer_unit" if unit_vectors else "outer_vec"
        if key not in self._cache:
            x = self.unit if unit_vectors else self.vec
            self._cache[key] = (x[..., :, None] * x[..., None, :]).reshape(x.shape[0], x.shape[1], 9)
        return self._cache[key]

    def unit_rows(self, dtype: torch.dtype) -> torch.Tensor:
        """(R, 3, W) the unit vectors of each row, one component per line (the compiled kernels' layout); once per
        batch and dtype."""
        key = f"unit_rows_{dtype}"
        if key not in self._cache:
            self._cache[key] = self.unit.to(dtype).transpose(1, 2).contiguous()
        return self._cache[key]

    def valid_bias(self, dtype: torch.dtype) -> torch.Tensor:
        """(R, W) 0 on valid slots (an image-edge that is not the zero image), −inf elsewhere; once per batch and
        dtype."""
        key = f"valid_bias_{dtype}"
        if key not in self._cache:
            bias = torch.zeros(self.valid.shape, dtype=dtype, device=self.valid.device)
            self._cache[key] = bias.masked_fill_(~self.valid, float("-inf"))
        return self._cache[key]

    def valid_slot_index(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The valid slots in row-major order, flat indices (V,), which groups them by atom (an atom's rows are
        consecutive and atoms come in order); each atom's count (N,) and the position of its first one (N,).
        Computed once per batch."""
        if "valid_flat" not in self._cache:
            counts = self.atom_sum(self.valid.sum(-1))
            self._cache["valid_flat"] = self.valid.reshape(-1).nonzero().squeeze(1)
            self._cache["valid_counts"] = counts
            self._cache["valid_starts"] = torch.cumsum(counts, 0) - counts
        return self._cache["valid_flat"], self._cache["valid_counts"], self._cache["valid_starts"]

    def atom_sum(self, values: torch.Tensor) -> torch.Tensor:
        """(R, ...) per-row values → (N, ...) summed over each atom's rows."""
        return segment_sum(values, self.row_atom, self.num_atoms)

    def atom_max(self, values: torch.Tensor) -> torch.Tensor:
        """(R, H) per-row values → (N, H) maximum over each atom's rows (−inf where none)."""
        out = values.new_full((self.num_atoms,) + tuple(values.shape[1:]), float("-inf"))
        idx = self.row_atom.view(-1, *([1] * (values.dim() - 1))).expand_as(values)
        return out.scatter_reduce_(0, idx, values, reduce="amax", include_self=True)

    def atom_argmax(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Best slot per (atom, head) of (R, H, W) scores (−inf = ineligible).

        Returns (row (N, H), column (N, H), found (N, H) bool). Exact ties go to the lowest edge index (first row,
        then first column); callers that need order independence resolve them.
        """
        r, h, w = scores.shape
        n = self.num_atoms
        if w == 0 or r == 0:
            zeros = torch.zeros((n, h), dtype=torch.long, device=scores.device)
            return zeros, zeros, torch.zeros((n, h), dtype=torch.bool, device=scores.device)
        row_best, row_col = scores.max(-1)  # first maximum within a row
        best = self.atom_max(row_best)
        rows = torch.arange(r, device=scores.device)[:, None].expand(r, h)
        candidate = torch.where(row_best == best[self.row_atom], rows, torch.full_like(rows, r))
        first = torch.full((n, h), r, dtype=torch.long, device=scores.device)
        first.scatter_reduce_(0, self.row_atom[:, None].expand(r, h), candidate, reduce="amin", include_self=True)
        found = torch.isfinite(best) & (first < r)
        first = first.clamp(max=r - 1)
        col = torch.gather(row_col, 0, first)
        return first, col, found

    def softmax(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax of (R, H, W) logits over all slots of each atom, across its rows; −inf (empty slots, and slots
        outside a head's cutoff) gives weight exactly 0."""
        peak = self.atom_max(logits.detach().amax(-1))  # (N, H); a constant shift, so no gradient is lost
        ex = floored_exp(logits - peak[self.row_atom][..., None]).masked_fill(logits == float("-inf"), 0.0)
        norm = self.atom_sum(ex.sum(-1))  # (N, H)
        return ex / norm[self.row_atom][..., None]

    @classmethod
    def build(cls, src: torch.Tensor, dst: torch.Tensor, vec: torch.Tensor, atom_batch: torch.Tensor,
              positions: torch.Tensor, lattice: torch.Tensor, row_width: int = ROW_WIDTH,
              nearest_first: bool = False) -> "EdgeGeometry":
        """Lay out a batch's image-edges (sorted by source atom, then key atom, then image). ``nearest_first``
        orders each atom's slots by distance (ties in the given order), so that a per-head cutoff is a prefix of
        them (docs/model.md §1.2); otherwise they keep the given order."""
        n = int(positions.shape[0])
        num_edges = int(src.shape[0])
        device = src.device
        # ``order`` lists the flat edges in slot order (within each atom: nearest first, or as given).
        if nearest_first and num_edges:
            by_dist = torch.argsort((vec * vec).sum(-1), stable=True)
            order = by_dist[torch.argsort(src[by_dist], stable=True)]
        else:
            order = torch.arange(num_edges, device=device)
        counts = torch.bincount(src, minlength=n)
        starts = torch.cumsum(counts, 0) - counts
        rows_per_atom = (counts + row_width - 1) // row_width
        row_atom = torch.repeat_interleave(torch.arange(n, device=device), rows_per_atom)
        atom_first_row = torch.cumsum(rows_per_atom, 0) - rows_per_atom
        local = torch.arange(num_edges, device=device) - starts[src]  # position (by slot order) within the atom
        edge_row = torch.empty_like(src)
        edge_col = torch.empty_like(src)
        edge_row[order] = atom_first_row[src] + local // row_width  # src[order] == src: both sorted by atom
        edge_col[order] = local % row_width
        num_rows = int(row_atom.shape[0])
        width = row_width if num_edges else 0
        # Row r holds edges starts[a] + (r − first_row[a])·W + c, c < W, that belong to atom a.
        row_offset = starts[row_atom] + (torch.arange(num_rows, device=device) - atom_first_row[row_atom]) * row_width
        cols = torch.arange(width, device=device)
        edge_of_slot = row_offset[:, None] + cols[None, :]
        pad_mask = edge_of_slot < (starts + counts)[row_atom][:, None]
        edge_of_slot = order[edge_of_slot.clamp(max=max(num_edges - 1, 0))] if num_edges else edge_of_slot
        zero = torch.zeros((), dtype=vec.dtype, device=device)
        vec_rows = torch.where(pad_mask[..., None], vec[edge_of_slot], zero)
        dist2 = (vec_rows * vec_rows).sum(-1)
        valid = pad_mask & (dist2 > ZERO_VECTOR_EPS)
        unit = torch.where(valid[..., None], vec_rows / dist2.clamp_min(ZERO_VECTOR_EPS).sqrt()[..., None], zero)
        # Edges are sorted by (src, dst, image), so each pair's edges are contiguous.
        new_pair = torch.ones_like(src, dtype=torch.bool)
        if num_edges > 1:
            new_pair[1:] = (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])
        edge_pair = torch.cumsum(new_pair.long(), 0) - 1
        firsts = torch.nonzero(new_pair).squeeze(1)
        pair_counts = torch.bincount(src[firsts], minlength=n)
        pair_starts = torch.cumsum(pair_counts, 0) - pair_counts
        pair_local = edge_pair - pair_starts[src]  # (E,) position of each edge's pair in its atom's pair row
        pair_width = int(pair_counts.max()) if n and num_edges else 0
        pair_cols = torch.arange(pair_width, device=device)
        pair_mask = pair_cols[None, :] < pair_counts[:, None]
        pair_index = (pair_starts[:, None] + pair_cols[None, :]).clamp(max=max(int(firsts.shape[0]) - 1, 0))
        zero_i = torch.zeros((), dtype=torch.long, device=device)
        if num_edges:
            pair_dst = torch.where(pair_mask, dst[firsts][pair_index], zero_i)
            pair_slot = torch.where(pad_mask, pair_local[edge_of_slot], zero_i)
        else:
            pair_dst = torch.zeros((n, 0), dtype=torch.long, device=device)
            pair_counts = torch.zeros(n, dtype=torch.long, device=device)
            pair_slot = torch.zeros((num_rows, 0), dtype=torch.long, device=device)
        return cls(edge_row=edge_row, edge_col=edge_col, row_atom=row_atom, pad_mask=pad_mask,
                   valid=valid, vec=vec_rows, dist2=dist2, unit=unit, pair_slot=pair_slot, pair_dst=pair_dst,
                   pair_count=pair_counts,
                   atom_batch=atom_batch, positions=positions, lattice=lattice)
