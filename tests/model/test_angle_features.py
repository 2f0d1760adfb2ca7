"""Angle features: the grid path's interpolation bound holds (and is tight), grid and exact paths agree on values and
gradients, and chunking does not change either path."""

from __future__ import annotations

import pytest
import torch

from crystalframer.model import features
from crystalframer.model.features import (AngleGrid, _quintic_lagrange, angle_centers, angle_gaussians, angle_term_exact,
                                    angle_term_grid, angle_width)

PRESETS = [(64, 4.0), (16, 1.0)]  # (angle bases, width scale): default and lightweight presets


def test_quintic_lagrange_reproduces_quintics():
    t = torch.linspace(0, 1, 101, dtype=torch.float64)[:-1]
    weights = _quintic_lagrange(t)
    for poly in (lambda x: x**0, lambda x: x, lambda x: 3 * x**2 - x, lambda x: x**3 - 2 * x,
                 lambda x: x**4 - x**2 + 0.5, lambda x: 0.3 * x**5 - x**4 + 2 * x):
        interp = sum(w * poly(torch.tensor(float(s - 2), dtype=torch.float64)) for s, w in enumerate(weights))
        torch.testing.assert_close(interp, poly(t), rtol=0, atol=1e-13)


@pytest.mark.parametrize("bases, width_scale", PRESETS)
@pytest.mark.parametrize("cos_abs", [False, True])
@pytest.mark.parametrize("tol", [1e-6, 1e-8])
def test_interpolation_error_is_within_the_proven_bound(bases, width_scale, cos_abs, tol):
    """Interpolating every Gaussian from the grid nodes, on a dense sweep of cosines, errs by at most the bound —
    and by more than a third of it, so the bound is not loose enough to hide a wrong grid."""
    centers = angle_centers(bases, cos_abs, torch.float64, torch.device("cpu"))
    tau = angle_width(bases, width_scale, cos_abs)
    grid = AngleGrid.for_basis(tau, cos_abs, tol)
    assert grid.error_bound(tau) <= tol
    c = torch.linspace(grid.low, grid.high, 20001, dtype=torch.float64)
    u = (c - grid.start) / grid.step
    base = u.floor().clamp(2, grid.size - 6)
    lag = _quintic_lagrange(u - base)
    node_values = angle_gaussians(grid.nodes(torch.float64, torch.device("cpu")), centers, tau)
    idx = base.long()
    approx = sum(w[:, None] * node_values[idx - 2 + s] for s, w in enumerate(lag))
    err = (approx - angle_gaussians(c, centers, tau)).abs().max().item()
    assert err <= grid.error_bound(tau) * (1 + 1e-9)
    assert err > grid.error_bound(tau) / 3


def _inputs(bases, seed=0, rows=40, heads=2, width=8, atoms=7, head_dim=4):
    gen = torch.Generator().manual_seed(seed)
    weights = torch.rand(rows, heads, width, dtype=torch.float64, generator=gen)
    weights[torch.rand(rows, 1, width, generator=gen).expand(-1, heads, -1) < 0.2] = 0.0  # empty slots
    unit = torch.nn.functional.normalize(torch.randn(rows, width, 3, dtype=torch.float64, generator=gen), dim=-1)
    frames = torch.linalg.qr(torch.randn(atoms, heads, 3, 3, dtype=torch.float64, generator=gen))[0]
    row_atom = torch.sort(torch.randint(0, atoms, (rows,), generator=gen))[0]
    proj = torch.randn(3, heads, head_dim, bases, dtype=torch.float64, generator=gen) * 0.05
    return weights, frames, unit, row_atom, proj


def _exact(weights, frames, unit, row_atom, proj, centers, tau, cos_abs):
    # Cosines written out here (not features.slot_cosines), so the comparison does not share that code.
    cos = torch.einsum("rhkc,rwc->rhkw", frames[row_atom], unit)
    if cos_abs:
        cos = cos.abs()
    per_row = angle_term_exact(weights, cos, proj, centers, tau)
    return torch.zeros((frames.shape[0],) + per_row.shape[1:], dtype=per_row.dtype).index_add(0, row_atom, per_row)


@pytest.mark.parametrize("bases, width_scale", PRESETS)
@pytest.mark.parametrize("cos_abs", [False, True])
def test_grid_path_matches_exact_path_values_and_gradients(bases, width_scale, cos_abs):
    weights, frames, unit, row_atom, proj = _inputs(bases)
    centers = angle_centers(bases, cos_abs, torch.float64, torch.device("cpu"))
    tau = angle_width(bases, width_scale, cos_abs)
    grid = AngleGrid.for_basis(tau, cos_abs, 1e-10)
    w_e, p_e = weights.clone().requires_grad_(True), proj.clone().requires_grad_(True)
    w_g, p_g = weights.clone().requires_grad_(True), proj.clone().requires_grad_(True)
    exact = _exact(w_e, frames, unit, row_atom, p_e, centers, tau, cos_abs)
    fast = angle_term_grid(w_g, frames, unit, row_atom, p_g, centers, tau, grid, cos_abs)
    # |error| ≤ bound · Σ_m w_m · Σ_k Σ_b |P_khdb| per output entry.
    per_atom_weight = torch.zeros(frames.shape[0], weights.shape[1], dtype=torch.float64).index_add(
        0, row_atom, weights.sum(-1))
    limit = grid.error_bound(tau) * per_atom_weight[..., None] * proj.abs().sum((0, -1)).max()
    assert ((fast - exact).abs() <= limit * (1 + 1e-6) + 1e-15).all()
    grad_out = torch.randn_like(exact)
    g_exact = torch.autograd.grad(exact, (w_e, p_e), grad_out)
    g_fast = torch.autograd.grad(fast, (w_g, p_g), grad_out)
    for a, b in zip(g_exact, g_fast):
        assert (a - b).abs().max() <= 1e-7 * a.abs().max()


def test_grid_path_gradcheck():
    weights, frames, unit, row_atom, proj = _inputs(16, rows=6, width=4, atoms=3)
    centers = angle_centers(16, False, torch.float64, torch.device("cpu"))
    tau = angle_width(16, 1.0, False)
    grid = AngleGrid.for_basis(tau, False, 1e-6)

    def f(w, p):
        return angle_term_grid(w, frames, unit, row_atom, p, centers, tau, grid, False)

    assert torch.autograd.gradcheck(f, (weights.requires_grad_(True), proj.requires_grad_(True)))


def test_chunking_does_not_change_either_path(monkeypatch):
    monkeypatch.setenv("CRYSTALFRAMER_KERNELS", "0")  # the chunks are the PyTorch version's (the C kernels have none)
    weights, frames, unit, row_atom, proj = _inputs(64, rows=50)
    centers = angle_centers(64, False, torch.float64, torch.device("cpu"))
    tau = angle_width(64, 4.0, False)
    grid = AngleGrid.for_basis(tau, False, 1e-8)

    def both(w, p):
        return (angle_term_grid(w, frames, unit, row_atom, p, centers, tau, grid, False),
                _exact(w, frames, unit, row_atom, p, centers, tau, False))

    def run():
        w, p = weights.clone().requires_grad_(True), proj.clone().requires_grad_(True)
        outs = both(w, p)
        grads = [torch.autograd.grad(o.sum(), (w, p)) for o in outs]
        return outs, grads

    one_chunk = run()
    monkeypatch.setattr(features, "_GRID_CHUNK_ITEMS", 2 * 3 * 8 * 3)  # 3 rows per chunk
    monkeypatch.setattr(features, "_EXACT_CHUNK_ELEMENTS", 2 * 3 * 8 * 64 * 2)  # 2 rows per chunk
    many_chunks = run()
    for a, b in zip(one_chunk[0], many_chunks[0]):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)
    for ga, gb in zip(one_chunk[1], many_chunks[1]):
        for a, b in zip(ga, gb):
            torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)


def test_grid_rejects_a_non_positive_tolerance():
    with pytest.raises(ValueError, match="angle_grid_tol"):
        AngleGrid.for_basis(0.1, False, 0.0)
