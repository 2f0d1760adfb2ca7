"""Small vectorized tensor helpers: segment sums over a grouping index, and an exp without its slow path."""

from __future__ import annotations

import math

import torch


def segment_sum(values: torch.Tensor, index: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Sum rows of ``values`` (E, ...) into (num_segments, ...) by ``index`` (E,)."""
    out = values.new_zeros((num_segments,) + tuple(values.shape[1:]))
    return out.index_add_(0, index, values)


def exp_floor(dtype: torch.dtype) -> float:
    """The floor of :func:`floored_exp`: 10·√tiny (1.1e-18 in float32, 1.5e-153 in float64), so that the product
    of two floored values is still 100× the smallest normal number."""
    return 10.0 * math.sqrt(torch.finfo(dtype).tiny)


def log_tiny(dtype: torch.dtype) -> float:
    """log of :func:`exp_floor`: exp of it is safely normal after rounding."""
    return math.log(exp_floor(dtype))


def floored_exp(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """exp(max(x, log floor)): exp with arguments below log(:func:`exp_floor`) raised to it.

    Why a floor: CPUs take a slow path (microcode assists, ~100× a normal operation on Intel cores) whenever a
    result or an operand is subnormal, unless flush-to-zero is on in *every* thread, which a library cannot ensure.
    The attention weights and the Gaussian bases are multiplied together (bmm, scatter, their gradients), so the
    floor is √tiny-sized: such a product of two floored values stays normal. Measured on a Xeon: 4× on a whole
    training step of the no-frame model. Each result changes by at most the floor (1.1e-18 in float32, far below
    its 6e-8 rounding of the values that matter; 1.5e-153 in float64). −inf gives that floor, not 0: callers that
    need exact zeros mask them.
    """
    if inplace:
        return x.clamp_(min=log_tiny(x.dtype)).exp_()
    return torch.exp(torch.clamp(x, min=log_tiny(x.dtype)))
