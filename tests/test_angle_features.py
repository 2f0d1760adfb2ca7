"""The chunked angle-feature sums equal the direct formula, and their custom (recomputing) gradient is exact."""

from __future__ import annotations

import pytest
import torch

from crystalframer.features import angle_centers, angle_gaussians, angle_width, weighted_angle_sum


def _inputs(dtype=torch.float64, edges=120, heads=2, atoms=7, seed=0):
    gen = torch.Generator().manual_seed(seed)
    weights = torch.rand(edges, heads, dtype=dtype, generator=gen)
    cos = torch.rand(edges, heads, 3, dtype=dtype, generator=gen) * 2 - 1
    valid = torch.rand(edges, generator=gen) > 0.2
    src = torch.sort(torch.randint(0, atoms, (edges,), generator=gen))[0]
    return weights, cos, valid, src, atoms


@pytest.mark.parametrize("bases, width_scale", [(64, 4.0), (16, 1.0)])
def test_matches_direct_sum_and_gradcheck(bases, width_scale):
    weights, cos, valid, src, atoms = _inputs()
    centers = angle_centers(bases, False, torch.float64, torch.device("cpu"))
    tau = angle_width(bases, width_scale, False)
    direct = torch.zeros(atoms, 2, 3, bases, dtype=torch.float64).index_add_(
        0, src, weights[..., None, None] * angle_gaussians(cos, valid, centers, tau))

    def f(w):
        return weighted_angle_sum(w, cos, valid, src, atoms, centers, tau, max_elements=1000)

    w = weights.clone().requires_grad_(True)
    torch.testing.assert_close(f(w), direct, rtol=1e-12, atol=1e-14)
    assert torch.autograd.gradcheck(f, (w,))
