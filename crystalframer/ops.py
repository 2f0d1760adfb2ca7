"""Segment operations over image-edges grouped by their source atom (vectorized, no Python loops)."""

from __future__ import annotations

import math

import torch


def segment_sum(values: torch.Tensor, index: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Sum rows of ``values`` (E, ...) into (num_segments, ...) by ``index`` (E,)."""
    out = values.new_zeros((num_segments,) + tuple(values.shape[1:]))
    return out.index_add_(0, index, values)


def segment_max(values: torch.Tensor, index: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Per-segment maximum of ``values`` (E, H) → (num_segments, H); empty segments give -inf."""
    out = values.new_full((num_segments,) + tuple(values.shape[1:]), float("-inf"))
    idx = index.view(-1, *([1] * (values.dim() - 1))).expand_as(values)
    return out.scatter_reduce_(0, idx, values, reduce="amax", include_self=True)


def segment_softmax(logits: torch.Tensor, index: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Softmax of ``logits`` (E, H) over the edges of each segment (source atom)."""
    peak = segment_max(logits.detach(), index, num_segments)
    ex = torch.exp(logits - peak[index])
    return ex / segment_sum(ex, index, num_segments)[index]


def segment_argmax(scores: torch.Tensor, index: torch.Tensor, num_segments: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the highest-scoring edge per (segment, column).

    scores: (E, H) with -inf for ineligible edges. Returns (argmax (S, H) int64 edge indices, valid (S, H) bool).
    Exact ties are resolved by the lowest edge index; callers that need order-independence resolve ties themselves.
    """
    num_edges = scores.shape[0]
    peak = segment_max(scores, index, num_segments)
    is_peak = (scores == peak[index]) & torch.isfinite(scores)
    edge_ids = torch.arange(num_edges, device=scores.device).view(-1, 1).expand_as(scores)
    candidate = torch.where(is_peak, edge_ids, torch.full_like(edge_ids, num_edges))
    best = torch.full((num_segments,) + tuple(scores.shape[1:]), num_edges, dtype=torch.long, device=scores.device)
    idx = index.view(-1, 1).expand_as(scores)
    best.scatter_reduce_(0, idx, candidate, reduce="amin", include_self=True)
    valid = best < num_edges
    return best.clamp(max=max(num_edges - 1, 0)), valid


def log_tiny(dtype: torch.dtype) -> float:
    """log of 10× the smallest normal number of ``dtype``: exp of it is safely normal after rounding."""
    return math.log(10.0 * torch.finfo(dtype).tiny)


def floored_exp(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """exp(max(x, log tiny)): exp with arguments below the underflow threshold raised to it.

    Each result changes by at most 10× the smallest normal number (1.2e-37 in float32, 2.2e-307 in float64), and
    CPU exp avoids its slow path for arguments whose result would be subnormal or zero (measured 6x faster on the
    distance bases). −inf gives that floor, not 0: callers that need exact zeros mask them.
    """
    if inplace:
        return x.clamp_(min=log_tiny(x.dtype)).exp_()
    return torch.exp(torch.clamp(x, min=log_tiny(x.dtype)))
