"""Gaussian basis functions for the value position encodings (math §B4, §E)."""

from __future__ import annotations

import math

import torch



def distance_basis(dist: torch.Tensor, num_bases: int, r_max: float, width_scale: float) -> torch.Tensor:
    """b_k(r) = exp(−(r − μ_k)^2 / (2ς^2)), μ_k = k·r_max/K (k = 1..K), ς = width_scale·r_max/K.

    dist: (E,) Å → (E, K).
    """
    step = r_max / num_bases
    centers = torch.arange(1, num_bases + 1, dtype=dist.dtype, device=dist.device) * step
    width = width_scale * step
    return torch.exp(-((dist[:, None] - centers) ** 2) / (2.0 * width * width))


def angle_centers(num_bases: int, cos_abs: bool, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if cos_abs:
        return torch.linspace(0.0, 1.0, num_bases, dtype=dtype, device=device)
    return torch.linspace(-1.0, 1.0, num_bases, dtype=dtype, device=device)


def angle_width(num_bases: int, width_scale: float, cos_abs: bool) -> float:
    """τ = s_ang·2/(D−1) for cosines in [−1, 1]; s_ang/(D−1) for |cos|."""
    span = 1.0 if cos_abs else 2.0
    return width_scale * span / max(num_bases - 1, 1)


def angle_gaussians(cos: torch.Tensor, valid: torch.Tensor, centers: torch.Tensor, width: float) -> torch.Tensor:
    """g(c) for every axis: cos (e, H, 3), valid (e,) → (e, H, 3, D); zero images give 0."""
    g = torch.exp(-((cos[..., None] - centers) ** 2) / (2.0 * width * width))
    return g * valid.to(g.dtype).view(-1, 1, 1, 1)


def _log_weighted_gaussians(log_w: torch.Tensor, scaled_cos: torch.Tensor, scaled_centers: torch.Tensor) -> torch.Tensor:
    """w·g(c) computed as exp(log w − (c' − ν')^2) in four in-place passes (c', ν' pre-scaled by 1/(√2 τ)).

    log_w: (e, H) (−inf where the weight or the image is zero); scaled_cos: (e, H, 3) → (e, H, 3, D).
    """
    t = scaled_cos[..., None] - scaled_centers
    t.square_()
    torch.sub(log_w[:, :, None, None], t, out=t)
    return t.exp_()


class WeightedAngleSum(torch.autograd.Function):
    """A_ihk = Σ_m w_mh g(c_mhk) per source atom, without storing the (E, H, 3, D) Gaussians.

    The cosines come from detached frames, so only ``weights`` needs a gradient. Gaussians are computed in edge
    chunks small enough to stay in cache, in the forward pass, and recomputed in the backward pass: memory stays
    O(chunk·H·3·D).
    """

    @staticmethod
    def forward(ctx, weights: torch.Tensor, cos: torch.Tensor, valid: torch.Tensor, src: torch.Tensor,
                num_atoms: int, centers: torch.Tensor, width: float, chunk: int) -> torch.Tensor:
        out = _angle_sum(weights, cos, valid, src, num_atoms, centers, width, chunk)
        ctx.save_for_backward(cos, valid, src, centers)
        ctx.width, ctx.chunk = width, chunk
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        cos, valid, src, centers = ctx.saved_tensors
        e, h = cos.shape[:2]
        scale = 1.0 / (math.sqrt(2.0) * ctx.width)
        log_valid = torch.log(valid.to(cos.dtype))[:, None].expand(e, h)
        scaled_cos, scaled_centers = cos * scale, centers * scale
        grad_w = grad_out.new_zeros((e, h))
        for start in range(0, e, ctx.chunk):  # bounded-memory chunks; each chunk is vectorized
            stop = min(e, start + ctx.chunk)
            g = _log_weighted_gaussians(log_valid[start:stop], scaled_cos[start:stop], scaled_centers)
            g.mul_(grad_out[src[start:stop]])
            grad_w[start:stop] = g.sum((-1, -2))
        return grad_w, None, None, None, None, None, None, None


def _angle_sum(weights: torch.Tensor, cos: torch.Tensor, valid: torch.Tensor, src: torch.Tensor, num_atoms: int,
               centers: torch.Tensor, width: float, chunk: int) -> torch.Tensor:
    e, h = weights.shape
    scale = 1.0 / (math.sqrt(2.0) * width)
    log_w = torch.log(weights * valid.to(weights.dtype)[:, None])
    scaled_cos, scaled_centers = cos * scale, centers * scale
    out = weights.new_zeros((num_atoms, h, 3, centers.shape[0]))
    for start in range(0, e, chunk):  # bounded-memory chunks; each chunk is vectorized
        stop = min(e, start + chunk)
        out.index_add_(0, src[start:stop],
                       _log_weighted_gaussians(log_w[start:stop], scaled_cos[start:stop], scaled_centers))
    return out


def weighted_angle_sum(weights: torch.Tensor, cos: torch.Tensor, valid: torch.Tensor, src: torch.Tensor,
                       num_atoms: int, centers: torch.Tensor, width: float, max_elements: int = 1 << 19) -> torch.Tensor:
    """(N, H, 3, D) attention-weighted angle features; see :class:`WeightedAngleSum`."""
    per_edge = weights.shape[1] * 3 * centers.shape[0]
    chunk = max(1, max_elements // per_edge)
    if not weights.requires_grad:
        return _angle_sum(weights.detach(), cos, valid, src, num_atoms, centers, width, chunk)
    return WeightedAngleSum.apply(weights, cos, valid, src, num_atoms, centers, width, chunk)
