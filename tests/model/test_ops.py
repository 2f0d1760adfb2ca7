"""floored_exp equals exp up to its documented floor, in float32 and float64, and never returns a subnormal."""

from __future__ import annotations

import pytest
import torch

from crystalframer.model.ops import exp_floor, floored_exp, log_tiny


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_floored_exp_is_exp_above_the_floor_and_the_floor_below(dtype):
    x = torch.cat([torch.linspace(-2000, 5, 20001, dtype=dtype), torch.tensor([float("-inf")], dtype=dtype)])
    got = floored_exp(x)
    floor = exp_floor(dtype)
    assert (got - torch.exp(x)).abs().max() <= floor * 1.0001
    above = x > log_tiny(dtype) + 1e-3
    torch.testing.assert_close(got[above], torch.exp(x[above]), rtol=4 * torch.finfo(dtype).eps, atol=0)
    assert (got >= torch.finfo(dtype).tiny).all()  # normal numbers only: no slow subnormal path downstream
    # ... and so is the product of any two floored values (weights × bases in the attention sums)
    assert (got.min() * got.min() >= 10 * torch.finfo(dtype).tiny).item()
    inplace = x.clone()
    assert floored_exp(inplace, inplace=True) is inplace and torch.equal(inplace, got)
