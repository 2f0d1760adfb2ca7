"""Gaussian bases of the value position encodings (docs/model.md §2.4) and their attention-weighted sums.

Two ways to compute the framed angle term Σ_k P_k Σ_m w_m g(c_mk) of one layer (docs/model.md, "Angle features"):

* ``exact``: every Gaussian of every image-edge, head and axis (E·H·3·D exponentials), in row chunks that are
  recomputed in the backward pass so memory stays bounded. The test reference.
* ``grid`` (default): the *projected* basis T_kh(c) = P_kh g(c) (head_dim values instead of D Gaussians) is
  tabulated on a uniform grid of cosines each forward pass; each image-edge spreads its weight onto the six nearest
  grid nodes with quintic Lagrange weights, and one batched matmul with the table gives the term. This is exact
  for quintic polynomials, and for the Gaussians each interpolated value g̃(c) obeys the proven bound
  |g̃(c) − g(c)| ≤ (75/1024)·(h/τ)^6 (h = grid step, τ = Gaussian width), which fixes the grid size from
  ``angle_grid_tol``. The same bound holds for the gradients (they interpolate the same functions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from crystalframer.model.kernels import ANGLE_LANES, CpuAngleTerm, kernels_enabled
from crystalframer.model.ops import floored_exp

# Quintic Lagrange interpolation on nodes −2 … 3 around t ∈ [0, 1): max_t |Π (t − o)| / 6! = (225/64)/720 (at
# t = 1/2), and the sixth derivative of exp(−x²/2τ²) peaks at |He_6(0)|/τ⁶ = 15/τ⁶ (x = 0), so the error is at most
# (75/1024)(h/τ)⁶. Six nodes instead of four: a 2.9× coarser grid for the same bound (159 nodes instead of 462 at
# the default tolerance), so the histograms stay in the L1 cache and their products with the table cost a third.
_LAGRANGE_CONSTANT = 75.0 / 1024.0
STENCIL_TAPS = 6  # nodes −2 … 3: also the order of the error bound
# Grid nodes beyond [low, high]: the stencil's reach plus, above, two for the CPU kernel's 8-lane vector additions
# (csrc/angle_grid.c SPARE_TOP = SPARE_ABOVE + 1; the histogram rows stay separate, so threads never touch each
# other's).
SPARE_BELOW, SPARE_ABOVE = 3, 5
_EXACT_CHUNK_ELEMENTS = 1 << 21


def distance_basis(dist: torch.Tensor, num_bases: int, r_max: float, width_scale: float) -> torch.Tensor:
    """b_k(r) = exp(−(r − μ_k)^2 / (2ς^2)), μ_k = k·r_max/K (k = 1..K), ς = width_scale·r_max/K.

    dist: (...) Å → (..., K).
    """
    step = r_max / num_bases
    centers = torch.arange(1, num_bases + 1, dtype=dist.dtype, device=dist.device) * step
    width = width_scale * step
    out = dist[..., None] - centers
    out.square_().mul_(-0.5 / (width * width))
    return floored_exp(out, inplace=True)


# Distance bases outside a slot's window are below this (absolute; each basis is ≤ 1): far below float32 rounding.
DIST_WINDOW_TOL = 1e-12


def distance_window_size(num_bases: int, width_scale: float, tol: float = DIST_WINDOW_TOL) -> tuple[int, int]:
    """(B, h): windows of B consecutive bases starting at a multiple of B/2 that contain the bases c − h … c + h
    around a distance (all K if fewer), outside which every basis is ≤ ``tol``. The nearest centre c is within
    step/2 of the distance, so a basis k ∉ [c − h, c + h] is at least (h + ½)·step away: exp(−((h + ½)·step)²/2ς²)
    ≤ tol for h = ⌈(ς/step)·√(2 ln(1/tol)) − ½⌉. B/2 ≥ 2h + 1 rounded up to 8 (B = 32 for the default width):
    windows either coincide or do not overlap within a half, so the kernels' accumulations never straddle two
    half-windows (which costs a store-forwarding stall each on x86)."""
    half = max(0, math.ceil(width_scale * math.sqrt(2.0 * math.log(1.0 / tol)) - 0.5))
    size = 2 * (8 * math.ceil((2 * half + 1) / 8))
    return min(num_bases, size), half


def distance_basis_window(dist: torch.Tensor, num_bases: int, r_max: float, width_scale: float,
                          tol: float = DIST_WINDOW_TOL) -> tuple[torch.Tensor, torch.Tensor]:
    """The bases of :func:`distance_basis` that can exceed ``tol``: dist (...) Å → (values (..., B), first (...)),
    values[..., t] = b_{first + t}(dist), first a multiple of B/2 (:func:`distance_window_size`). Every basis outside
    the window is ≤ ``tol``, so a weighted sum Σ_m w_m b(|r_m|) with Σ w ≤ 1 changes by at most ``tol`` per entry."""
    size, half = distance_window_size(num_bases, width_scale, tol)
    step = r_max / num_bases
    width = width_scale * step
    nearest = torch.round(dist / step).long() - 1  # centre k sits at (k + 1)·step
    if size < num_bases:
        stride = size // 2
        first = torch.div((nearest - half).clamp_(min=0), stride, rounding_mode="floor") * stride
        first = first.clamp_(max=num_bases - size)
    else:
        first = torch.zeros_like(nearest)
    offsets = torch.arange(size, device=dist.device, dtype=dist.dtype) * step
    out = (dist - (first + 1).to(dist.dtype) * step)[..., None] - offsets  # distance to each centre of the window
    out.square_().mul_(-0.5 / (width * width))
    return floored_exp(out, inplace=True), first


def angle_centers(num_bases: int, cos_abs: bool, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if cos_abs:
        return torch.linspace(0.0, 1.0, num_bases, dtype=dtype, device=device)
    return torch.linspace(-1.0, 1.0, num_bases, dtype=dtype, device=device)


def angle_width(num_bases: int, width_scale: float, cos_abs: bool) -> float:
    """τ = s_ang·2/(D−1) for cosines in [−1, 1]; s_ang/(D−1) for |cos|."""
    span = 1.0 if cos_abs else 2.0
    return width_scale * span / max(num_bases - 1, 1)


def angle_gaussians(cos: torch.Tensor, centers: torch.Tensor, width: float) -> torch.Tensor:
    """g(c) = exp(−(c − ν)^2 / (2τ^2)) for every centre ν: cos (...) → (..., D)."""
    out = cos[..., None] - centers
    out.square_().mul_(-0.5 / (width * width))
    return floored_exp(out, inplace=True)


# ----- exact path -----------------------------------------------------------------------------------------------
class _ExactAngleSum(torch.autograd.Function):
    """A[r, h, k] = Σ_m w_rhm g(c_rhkm) ∈ R^D for every row of slots, every Gaussian evaluated.

    Row chunks of bounded size; the backward pass recomputes each chunk's Gaussians instead of storing them, so
    memory stays O(chunk + R·H·3·D). Gradient only for ``weights`` (the cosines come from detached frames).
    """

    @staticmethod
    def forward(ctx, weights: torch.Tensor, cos: torch.Tensor, centers: torch.Tensor, width: float) -> torch.Tensor:
        r, h, _, m = cos.shape
        step = max(1, _EXACT_CHUNK_ELEMENTS // max(1, h * 3 * m * centers.shape[0]))
        out = weights.new_empty((r, h, 3, centers.shape[0]))
        for start in range(0, r, step):  # bounded-memory row chunks; each chunk is vectorized
            sl = slice(start, min(r, start + step))
            out[sl] = torch.einsum("nhm,nhkmd->nhkd", weights[sl], angle_gaussians(cos[sl], centers, width))
        ctx.save_for_backward(cos, centers)
        ctx.width, ctx.step = width, step
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        cos, centers = ctx.saved_tensors
        grad = grad_out.new_empty(cos.shape[:2] + cos.shape[3:])
        for start in range(0, cos.shape[0], ctx.step):
            sl = slice(start, min(cos.shape[0], start + ctx.step))
            grad[sl] = torch.einsum("nhkd,nhkmd->nhm", grad_out[sl], angle_gaussians(cos[sl], centers, ctx.width))
        return grad, None, None, None


def angle_term_exact(weights: torch.Tensor, cos: torch.Tensor, proj: torch.Tensor, centers: torch.Tensor,
                     width: float) -> torch.Tensor:
    """Σ_k P_kh Σ_m w_m g(c_mk) with every Gaussian evaluated.

    weights: (R, H, W) attention weights of each row of slots, zero on empty slots and on the zero image;
    cos: (R, H, 3, W) detached cosines; proj: (3, H, head_dim, D). Returns (R, H, head_dim) per row.
    """
    summed = _ExactAngleSum.apply(weights, cos, centers, width)  # (R, H, 3, D)
    return torch.einsum("nhkd,khed->nhe", summed, proj)


# ----- grid path ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AngleGrid:
    """Uniform grid of cosines x_p = start + p·step, p = 0..size−1, covering [low, high] with a margin for the
    six-node stencil (and for cosines that round slightly outside [low, high])."""

    low: float
    high: float
    step: float
    size: int

    @classmethod
    def for_basis(cls, width: float, cos_abs: bool, tol: float) -> "AngleGrid":
        """The coarsest grid whose interpolation error bound (75/1024)(h/τ)^6 is ≤ ``tol``."""
        if not tol > 0:
            raise ValueError(f"angle_grid_tol must be positive, got {tol}")
        low, high = (0.0, 1.0) if cos_abs else (-1.0, 1.0)
        step_max = width * (tol / _LAGRANGE_CONSTANT) ** (1.0 / STENCIL_TAPS)
        intervals = max(1, math.ceil((high - low) / step_max))
        step = (high - low) / intervals
        return cls(low=low, high=high, step=step, size=intervals + 1 + SPARE_BELOW + SPARE_ABOVE)

    @property
    def start(self) -> float:
        return self.low - SPARE_BELOW * self.step

    def error_bound(self, width: float) -> float:
        """Proven bound on |g̃(c) − g(c)| for every Gaussian of width ``width`` and every c in [low, high]."""
        return _LAGRANGE_CONSTANT * (self.step / width) ** STENCIL_TAPS

    def nodes(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        return self.start + self.step * torch.arange(self.size, dtype=dtype, device=device)


def _quintic_lagrange(t: torch.Tensor) -> list[torch.Tensor]:
    """Weights of nodes −2 … 3 for points at t ∈ [0, 1) between nodes 0 and 1 (each tensor shaped like t)."""
    a, b, d, e, f = t + 2.0, t + 1.0, t - 1.0, t - 2.0, t - 3.0
    ab, ef = a * b, e * f
    abt, tdef = ab * t, t * d * ef
    abtd = abt * d
    return [b * tdef * (-1.0 / 120.0), a * tdef * (1.0 / 24.0), ab * d * ef * (-1.0 / 12.0),
            abt * ef * (1.0 / 12.0), abtd * f * (-1.0 / 24.0), abtd * e * (1.0 / 120.0)]


_GRID_CHUNK_ITEMS = 1 << 18  # (slot, head, axis) items per chunk: the chunk's temporaries stay in cache


def slot_cosines(frames: torch.Tensor, unit: torch.Tensor, row_atom: torch.Tensor, rows: slice,
                 cos_abs: bool) -> torch.Tensor:
    """c = e_k·r̂ of every slot of ``rows`` with every axis of its atom's frame: (r, H, 3, W) via one batched
    (H·3 × 3)·(3 × W) product per row; zero on empty slots and the zero image (their unit vector is zero).

    frames: (N, H, 3, 3) detached; unit: (R, W, 3); row_atom: (R,).
    """
    atoms = row_atom[rows]
    r, h, w = int(atoms.shape[0]), frames.shape[1], unit.shape[1]
    cos = torch.bmm(frames[atoms].reshape(r, h * 3, 3), unit[rows].transpose(1, 2)).view(r, h, 3, w)
    return cos.abs_() if cos_abs else cos


def _grid_stencil(frames: torch.Tensor, unit: torch.Tensor, row_atom: torch.Tensor, rows: slice, first_atom: int,
                  num_atoms: int, grid: AngleGrid, cos_abs: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """For the slots of ``rows``: flat index of stencil node −2 of each (slot, head, axis) item in the chunk's
    histogram, and its six quintic Lagrange weights. Histogram layout (head·axis, atom − first_atom, node) =
    (Q, num_atoms, G), Q = H·3.

    frames: (N, H, 3, 3); unit: (R, W, 3). Returns index (r, H, 3, W) int64 and six (r, H, 3, W) weights.
    """
    atoms = row_atom[rows]
    r = int(atoms.shape[0])
    h = frames.shape[1]
    g = grid.size
    cos = slot_cosines(frames, unit, row_atom, rows, cos_abs)
    # Grid coordinate u ∈ [3, G − 6] for c ∈ [low, high]; the clamp (as the kernel's) only guards against rounding.
    u = cos.mul_(1.0 / grid.step).add_(-grid.start / grid.step).clamp_(SPARE_BELOW - 1.0, g - SPARE_ABOVE - 1.0)
    index = u.long()  # floor, as u > 0
    frac = u.sub_(index)
    q = torch.arange(h * 3, device=unit.device).view(1, h, 3, 1)
    index.add_((q * num_atoms + (atoms - first_atom).view(r, 1, 1, 1)) * g - 2)
    return index, _quintic_lagrange(frac)


def _row_chunks(row_atom: torch.Tensor, step: int) -> list[tuple[slice, int, int]]:
    """Chunks of ``step`` rows with the range of atoms they touch: (rows, first atom, number of atoms)."""
    r = int(row_atom.shape[0])
    if r == 0:
        return []
    starts = list(range(0, r, step))
    bounds = row_atom[torch.tensor([[s, min(r, s + step) - 1] for s in starts], device=row_atom.device)].tolist()
    return [(slice(s, min(r, s + step)), lo, hi - lo + 1) for s, (lo, hi) in zip(starts, bounds)]


def _spread(weights: torch.Tensor, index: torch.Tensor, lagrange: list[torch.Tensor], numel: int,
            inplace: bool) -> torch.Tensor:
    """hist[index + s] += w · L_s for the six stencil taps s (weights (r, H, 1, W) broadcast over the axis)."""
    hist = weights.new_zeros(numel)
    flat = index.reshape(-1)
    for s, lag in enumerate(lagrange):  # the six stencil taps (a constant, not the data)
        hist[s:].scatter_add_(0, flat, (lag.mul_(weights) if inplace else lag * weights).reshape(-1))
    return hist


class _GridAngleTerm(torch.autograd.Function):
    """(Q, N, head_dim) = per (head, axis) block: hist @ table, hist[q, i, node] = Σ_m w_m L_s(c_m).

    Forward and backward walk the rows in chunks of ``_GRID_CHUNK_ITEMS`` items. Each chunk recomputes its cosines
    and stencil weights, spreads them into a histogram of only the atoms it touches (small enough to stay in cache,
    and never a Q·N·G array), and multiplies it by the table at once; the backward pass re-spreads the chunk for
    the table's gradient and gathers the histogram's gradient at the same nodes for the weights' gradient.
    Memory: O(chunk), whatever the number of atoms.
    """

    @staticmethod
    def forward(ctx, weights: torch.Tensor, table: torch.Tensor, frames: torch.Tensor, unit: torch.Tensor,
                row_atom: torch.Tensor, num_atoms: int, grid: AngleGrid, cos_abs: bool) -> torch.Tensor:
        r, h, w = weights.shape
        q, g = h * 3, grid.size
        out = weights.new_zeros((q, num_atoms, table.shape[-1]))
        chunks = _row_chunks(row_atom, max(1, _GRID_CHUNK_ITEMS // max(1, q * w)))
        for rows, first, count in chunks:  # fixed-size chunks of rows; each chunk is vectorized
            index, lagrange = _grid_stencil(frames, unit, row_atom, rows, first, count, grid, cos_abs)
            hist = _spread(weights[rows, :, None, :], index, lagrange, q * count * g, inplace=True)
            out[:, first:first + count] += torch.bmm(hist.view(q, count, g), table)
        ctx.save_for_backward(weights, table, frames, unit, row_atom)
        ctx.meta = (grid, cos_abs, chunks)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        weights, table, frames, unit, row_atom = ctx.saved_tensors
        grid, cos_abs, chunks = ctx.meta
        q, g = table.shape[0], grid.size
        need_weights, need_table = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_weights = torch.zeros_like(weights) if need_weights else None
        grad_table = torch.zeros_like(table) if need_table else None
        for rows, first, count in chunks:
            index, lagrange = _grid_stencil(frames, unit, row_atom, rows, first, count, grid, cos_abs)
            grad_chunk = grad_out[:, first:first + count]  # (Q, count, head_dim)
            if need_table:
                hist = _spread(weights[rows, :, None, :], index, lagrange, q * count * g, inplace=False)
                grad_table += torch.bmm(hist.view(q, count, g).transpose(1, 2), grad_chunk)
            if need_weights:
                grad_hist = torch.bmm(grad_chunk, table.transpose(1, 2)).reshape(-1)  # (Q·count·G,)
                flat = index.reshape(-1)
                acc = grad_hist.index_select(0, flat).view_as(index).mul_(lagrange[0])
                for s in range(1, STENCIL_TAPS):
                    acc.addcmul_(grad_hist[s:].index_select(0, flat).view_as(index), lagrange[s])
                grad_weights[rows] = acc.sum(2)
        return grad_weights, grad_table, None, None, None, None, None, None


def uses_cpu_angle_kernel(weights: torch.Tensor, heads: int) -> bool:
    """Whether :func:`angle_term_grid` runs in the compiled CPU kernel (and so wants :func:`angle_table_lanes`)."""
    return heads <= ANGLE_LANES and kernels_enabled(weights)


def angle_table_lanes(proj: torch.Tensor, centers: torch.Tensor, width: float, grid: AngleGrid,
                      basis: torch.Tensor | None = None) -> torch.Tensor:
    """The projected basis P_kh g(x_p) at the grid nodes in the CPU kernel's head lanes: (3, G, head_dim, 8),
    heads beyond H zero; one matrix product, differentiable in ``proj`` (3, H, head_dim, D). ``basis``: the
    (G, D) Gaussians at the nodes, if the caller has them."""
    k, h, dim, bases = proj.shape
    if basis is None:
        basis = angle_gaussians(grid.nodes(proj.dtype, proj.device), centers.to(proj.dtype), width)  # (G, D)
    table = (proj.reshape(-1, bases) @ basis.T).view(k, h, dim, grid.size).permute(0, 3, 2, 1)  # (3, G, e, H)
    if h < ANGLE_LANES:
        table = torch.nn.functional.pad(table, (0, ANGLE_LANES - h))
    return table.contiguous()


def angle_term_grid(weights: torch.Tensor, frames: torch.Tensor, unit: torch.Tensor, row_atom: torch.Tensor,
                    proj: torch.Tensor, centers: torch.Tensor, width: float, grid: AngleGrid,
                    cos_abs: bool, ends: torch.Tensor | None = None,
                    unit_rows: torch.Tensor | None = None, table_lanes: torch.Tensor | None = None) -> torch.Tensor:
    """The same term as :func:`angle_term_exact`, through the tabulated projected basis (see the module doc).

    weights: (R, H, W) slot weights (those of slots without a direction, i.e. empty slots and the zero image, are
    ignored); frames: (N, H, 3, 3) detached; unit: (R, W, 3) unit vectors of the slots (zero where empty or the zero
    image); row_atom: (R,) the atom of each row; proj: (3, H, head_dim, D); ends (N, H), optional: the compiled
    kernel's hint that only the first ends[i, h] slots of atom i are inside head h's softmax (see
    :class:`~crystalframer.model.kernels.CpuAngleTerm`); unit_rows (R, 3, W), optional: ``unit`` one component per
    line (the geometry caches it); table_lanes, optional: :func:`angle_table_lanes` of ``proj`` (callers may cache
    it while ``proj`` does not change). Returns (N, H, head_dim). Cost per image-edge, head and axis: one cosine, six
    scatter-adds (and six gathers backward); per atom, head and axis: one (G × head_dim) product. On CPU (H ≤ 8)
    all of it runs per atom in the compiled kernel of :mod:`crystalframer.model.kernels` (the same arithmetic).
    """
    n, h = frames.shape[:2]
    if uses_cpu_angle_kernel(weights, h):
        unit_rows = unit.transpose(1, 2).contiguous() if unit_rows is None else unit_rows
        if table_lanes is None:
            table_lanes = angle_table_lanes(proj, centers, width, grid)
        return CpuAngleTerm.apply(weights, table_lanes, frames.detach(), unit_rows, row_atom, n, grid, cos_abs, ends)
    basis = angle_gaussians(grid.nodes(weights.dtype, weights.device), centers, width)  # (G, D)
    table = torch.einsum("pd,khed->hkpe", basis, proj)  # (H, 3, G, head_dim)
    weights = weights * (unit != 0).any(-1)[:, None, :].to(weights.dtype)  # no direction, no angle features
    out = _GridAngleTerm.apply(weights, table.reshape(h * 3, grid.size, -1), frames.detach(), unit, row_atom, n,
                               grid, cos_abs)
    return out.view(h, 3, n, -1).sum(1).transpose(0, 1)
