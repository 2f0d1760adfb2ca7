"""One CrystalFramer attention block: distance-decay attention over image-edges with framed value encodings."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .features import angle_centers, angle_width, weighted_angle_sum
from .frames import (EdgeGeometry, FrameSampling, global_pca_frames, lattice_frames, max_frames,
                     weighted_pca_frames)
from .ops import segment_softmax, segment_sum


@dataclass
class LayerTrace:
    """What one layer did, for inspection: sigma (N, H) Å, weights (E, H), frames (N, H, 3, 3) or None."""

    sigma: torch.Tensor
    weights: torch.Tensor
    frames: torch.Tensor | None


class PeriodicAttention(nn.Module):
    """Multi-head attention with a_ih·|r|^2 bias over all image-edges (design.md §1.2)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d, h, dh = cfg.model_dim, cfg.num_heads, cfg.head_dim
        self.in_proj = nn.Linear(d, 3 * d)
        self.out_proj = nn.Linear(d, d)
        self.lattice_pos_weights = nn.Parameter(torch.empty(h, dh))
        self.pe_dist_proj = nn.Parameter(torch.empty(h, dh, cfg.dist_bases))
        if cfg.uses_angles:
            self.pe_angle_proj = nn.Parameter(torch.empty(3, h, dh, cfg.angle_bases))
        else:
            self.register_parameter("pe_angle_proj", None)
        # [scale, shift] of s_ih, frozen on the first training batch (math §B2); 0 scale = not yet set.
        self.register_buffer("gauss_scale", torch.zeros(2))

    # The positive map f and a_ih = −f/(2 r0^2) (math §B2).
    def gaussian_coefficients(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        s = (q * self.lattice_pos_weights).sum(-1)  # (N, H)
        if self.gauss_scale[0] == 0:
            stats = s.detach()
            shift, scale = -stats.mean(), 1.0 / stats.std().clamp_min(1e-12)
            if self.training:
                self.gauss_scale.copy_(torch.stack([scale, shift]).to(self.gauss_scale))
        else:
            scale, shift = self.gauss_scale[0], self.gauss_scale[1]
        x = (s + shift) * scale
        b = cfg.gauss_lb_real
        f = (1.0 - b) * F.elu(cfg.positive_func_beta * x / (1.0 - b)) + 1.0
        a = -f / (2.0 * cfg.scale_real**2)
        sigma = cfg.scale_real / f.sqrt()
        return a, sigma

    def compute_frames(self, logits: torch.Tensor, a: torch.Tensor, weights: torch.Tensor, geom: EdgeGeometry,
                       sampling: FrameSampling) -> torch.Tensor:
        cfg = self.cfg
        method = cfg.frame_method
        with torch.no_grad():
            logits, a, weights = logits.detach(), a.detach(), weights.detach()
            if method == "max":
                return max_frames(logits, a, weights, geom, sampling, cfg.symm_break_noise)
            if method == "static":
                static = a[geom.src] * geom.dist2[:, None]
                static_w = segment_softmax(static, geom.src, geom.num_atoms)
                return max_frames(static, a, static_w, geom, sampling, cfg.symm_break_noise)
            if method == "weighted_pca":
                return weighted_pca_frames(weights, logits, geom, sampling, cfg.symm_break_noise,
                                           cfg.pca_unit_vectors, cfg.pca_det_threshold)
            if method == "pca":
                return global_pca_frames(geom, cfg.num_heads, sampling)
            if method == "lattice":
                return lattice_frames(geom, cfg.num_heads, sampling, cfg.symm_break_noise)
        raise ValueError(f"no frames for method {method!r}")

    def forward(self, x: torch.Tensor, geom: EdgeGeometry, dist_basis: torch.Tensor, sampling: FrameSampling,
                trace: bool = False) -> tuple[torch.Tensor, LayerTrace | None]:
        cfg = self.cfg
        n, h, dh = x.shape[0], cfg.num_heads, cfg.head_dim
        q, k, v = self.in_proj(x).view(n, 3, h, dh).unbind(1)
        a, sigma = self.gaussian_coefficients(q)
        # q·k once per atom pair (i, j); each image-edge adds a_ih·|r|^2. Softmax over a dense per-atom row of
        # M slots holding that atom's image-edges.
        qk = (q[geom.pair_src] * k[geom.pair_dst]).sum(-1) / math.sqrt(dh)  # (P, H)
        logits_pad = qk[geom.pair_pad].transpose(1, 2) + a[:, :, None] * geom.dist2_pad[:, None, :]
        logits_pad = logits_pad.masked_fill(~geom.pad_mask[:, None, :], float("-inf"))
        weights_pad = torch.softmax(logits_pad, dim=-1)  # (N, H, M)
        src = geom.src
        logits = logits_pad[src, :, geom.slot]  # (E, H) flat views for frames and angle features
        weights = weights_pad[src, :, geom.slot]
        # Σ_m w_m v_j = Σ_j (Σ_n w_ijn) v_j: value sums per pair.
        pair_weights = segment_sum(weights, geom.edge_pair, geom.pair_src.shape[0])  # (P, H)
        out = segment_sum(pair_weights[..., None] * v[geom.pair_dst], geom.pair_src, n)  # (N, H, dh)
        dist_feat = torch.bmm(weights_pad, dist_basis)  # (N, H, K) = Σ_m w_m b(|r_m|)
        out = out + cfg.dist_coef * torch.einsum("nhk,hdk->nhd", dist_feat, self.pe_dist_proj)
        frames = None
        if cfg.uses_angles:
            frames = self.compute_frames(logits, a, weights, geom, sampling)
            with torch.no_grad():
                cos = torch.einsum("ehkc,ec->ehk", frames[src], geom.unit)  # (E, H, 3)
                if cfg.cos_abs:
                    cos = cos.abs()
                centers = angle_centers(cfg.angle_bases, cfg.cos_abs, cos.dtype, cos.device)
            ang = weighted_angle_sum(weights, cos, geom.nonzero, src, n, centers,
                                     angle_width(cfg.angle_bases, cfg.angle_width_scale, cfg.cos_abs))
            out = out + cfg.angle_coef * torch.einsum("nhkb,khdb->nhd", ang, self.pe_angle_proj)

        y = self.out_proj(out.reshape(n, h * dh))
        info = LayerTrace(sigma=sigma.detach(), weights=weights.detach(), frames=frames) if trace else None
        return y, info


class EncoderBlock(nn.Module):
    """x ← x + MHA(x); x ← x + FFN(x). No LayerNorm (T-Fixup)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn = PeriodicAttention(cfg)
        self.ff1 = nn.Linear(cfg.model_dim, cfg.ff_dim)
        self.ff2 = nn.Linear(cfg.ff_dim, cfg.model_dim)

    def forward(self, x: torch.Tensor, geom: EdgeGeometry, dist_basis: torch.Tensor, sampling: FrameSampling,
                trace: bool = False) -> tuple[torch.Tensor, LayerTrace | None]:
        y, info = self.attn(x, geom, dist_basis, sampling, trace)
        x = x + y
        x = x + self.ff2(F.relu(self.ff1(x)))
        return x, info
