"""One CrystalFramer attention block: distance-decay attention over image-edges with framed value encodings."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from crystalframer.model.config import ModelConfig
from crystalframer.model.features import (AngleGrid, angle_centers, angle_gaussians, angle_table_lanes, angle_term_exact,
                                         angle_term_grid, angle_width, slot_cosines, uses_cpu_angle_kernel)
from crystalframer.model.frames import (FrameSampling, global_pca_frames, lattice_frames, max_frame_request, max_frames,
                                         weighted_pca_frames)
from crystalframer.model.geometry import EdgeGeometry
from crystalframer.model.kernels import CpuAttentionCore, CpuPairDot, CpuPairMix, SlotLayout


@dataclass
class LayerTrace:
    """What one layer did, for inspection: sigma (N, H) Å, weights (E, H) per flat edge, frames (N, H, 3, 3) or
    None."""

    sigma: torch.Tensor
    weights: torch.Tensor
    frames: torch.Tensor | None


def log_cutoff_switch(x: torch.Tensor, x_out: float, x_in: float) -> torch.Tensor:
    """log s(x) of the per-head cutoff switch (docs/model.md §1.2): 0 for x ≥ x_in, log of the smoothstep
    t³(10 − 15t + 6t²) of t = (x − x_out)/(x_in − x_out) between, −inf at x ≤ x_out. Differentiable everywhere it
    is finite (the logarithm only sees t in (0, 1])."""
    t = ((x - x_out) / (x_in - x_out)).clamp(max=1.0)
    positive = t > 0
    safe = torch.where(positive, t, torch.ones_like(t))
    log_s = 3.0 * torch.log(safe) + torch.log(10.0 + safe * (-15.0 + 6.0 * safe))
    return torch.where(positive, log_s, torch.full_like(t, float("-inf")))


class PeriodicAttention(nn.Module):
    """Multi-head attention with a_ih·|r|^2 bias over all image-edges (docs/model.md §2)."""

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
        # [scale, shift] of s_ih, frozen on the first training batch (docs/model.md §2.2); 0 scale = not yet set.
        self.register_buffer("gauss_scale", torch.zeros(2))

    # The positive map f and a_ih = −f/(2 r0^2) (docs/model.md §2.2).
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
        """Frames (N, H, 3, 3) from this layer's (R, H, W) slot logits and weights; no gradient."""
        cfg = self.cfg
        method = cfg.frame_method
        with torch.no_grad():
            logits, a, weights = logits.detach(), a.detach(), weights.detach()
            if method == "max":
                return max_frames(logits, a, weights, geom, sampling, cfg.symm_break_noise)
            if method == "static":
                static = (a[geom.row_atom][..., None] * geom.dist2[:, None, :]).masked_fill(
                    ~geom.pad_mask[:, None, :], float("-inf"))
                return max_frames(static, a, geom.softmax(static), geom, sampling, cfg.symm_break_noise)
            if method == "weighted_pca":
                return weighted_pca_frames(weights, logits, geom, sampling, cfg.symm_break_noise,
                                           cfg.pca_unit_vectors, cfg.pca_det_threshold)
            if method == "pca":
                return global_pca_frames(geom, cfg.num_heads, sampling)
            if method == "lattice":
                return lattice_frames(geom, cfg.num_heads, sampling, cfg.symm_break_noise)
        raise ValueError(f"no frames for method {method!r}")

    def angle_term(self, weights: torch.Tensor, frames: torch.Tensor, geom: EdgeGeometry,
                   ends: torch.Tensor | None = None) -> torch.Tensor:
        """Σ_k P_kh Σ_m w_m g(e_k·r̂_m): (N, H, head_dim), by the configured ``angle_features`` path. ``ends``: the
        attention kernel's count of each (atom, head)'s slots inside the cutoff, or None."""
        cfg = self.cfg
        centers = self._angle_constant("centers", weights, lambda: angle_centers(
            cfg.angle_bases, cfg.cos_abs, weights.dtype, weights.device))
        width = angle_width(cfg.angle_bases, cfg.angle_width_scale, cfg.cos_abs)
        if cfg.angle_features == "grid":  # slots without a direction (the zero image) are skipped there
            grid = AngleGrid.for_basis(width, cfg.cos_abs, cfg.angle_grid_tol)
            table = self._table_lanes(centers, width, grid) if uses_cpu_angle_kernel(weights, cfg.num_heads) else None
            return angle_term_grid(weights, frames, geom.unit, geom.row_atom, self.pe_angle_proj, centers, width,
                                   grid, cfg.cos_abs, ends, geom.unit_rows(weights.dtype), table)
        weights = weights * geom.valid[:, None, :].to(weights.dtype)  # the zero image has no direction
        with torch.no_grad():
            cos = slot_cosines(frames, geom.unit, geom.row_atom, slice(None), cfg.cos_abs)
        return geom.atom_sum(angle_term_exact(weights, cos, self.pe_angle_proj, centers, width))

    def _table_lanes(self, centers: torch.Tensor, width: float, grid: AngleGrid) -> torch.Tensor:
        """The angle table of the CPU kernel (:func:`angle_table_lanes`); without gradients it only changes with
        the projection's values, so inference reuses it across batches."""
        proj = self.pe_angle_proj
        basis = self._angle_constant("basis", proj, lambda: angle_gaussians(
            grid.nodes(proj.dtype, proj.device), centers.to(proj.dtype), width))
        if torch.is_grad_enabled() and proj.requires_grad:
            return angle_table_lanes(proj, centers, width, grid, basis)
        return self._angle_constant("table", proj, lambda: angle_table_lanes(proj, centers, width, grid, basis),
                                    version=(proj.data_ptr(), proj._version))

    def _angle_constant(self, name: str, like: torch.Tensor, make, version: tuple = ()) -> torch.Tensor:
        """A tensor made without gradients once per dtype and device (and ``version``, for one that follows a
        parameter's values): the angle centres and the Gaussians at the grid nodes depend only on the
        configuration; the inference table on the projection."""
        cache = self.__dict__.setdefault("_angle_constants", {})
        key = (name, like.dtype, like.device)
        if key not in cache or cache[key][0] != version:
            with torch.no_grad():
                cache[key] = (version, make())
        return cache[key][1]

    @staticmethod
    def _slot_attention(qk: torch.Tensor, a: torch.Tensor, geom: EdgeGeometry, dist_basis: torch.Tensor,
                        cut: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits, softmax weights (R, H, W), pair weights Σ_n w_ijn (N, H, J) and distance features
        Σ_m w_m b(|r_m|) (N, H, K) in PyTorch operations (GPUs, or CPUs without the compiled kernels). ``cut`` =
        (x_out, x_in): the per-head cutoff switch on x = a_ih·|r|² (docs/model.md §1.2)."""
        h, j = qk.shape[1], qk.shape[2]
        row_atom = geom.row_atom
        slot_pair = geom.pair_slot[:, None, :].expand(-1, h, -1)  # (R, H, W)
        logits = torch.gather(qk.index_select(0, row_atom), 2, slot_pair)
        decay = a[row_atom][..., None] * geom.dist2[:, None, :]
        logits = logits + decay
        inside = geom.pad_mask[:, None, :]
        if cut[0] > float("-inf"):
            logits = logits + log_cutoff_switch(decay, *cut)
            inside = inside & (decay > cut[0])
        logits = logits.masked_fill(~inside, float("-inf"))
        weights = geom.softmax(logits)
        pair_weights = geom.atom_sum(weights.new_zeros((geom.num_rows, h, j)).scatter_add_(2, slot_pair, weights))
        dist_feat = geom.atom_sum(torch.bmm(weights, dist_basis))
        return weights, logits, pair_weights, dist_feat

    def forward(self, x: torch.Tensor, geom: EdgeGeometry, dist_basis: torch.Tensor | SlotLayout,
                sampling: FrameSampling, trace: bool = False) -> tuple[torch.Tensor, LayerTrace | None]:
        """x (N, D) → (N, D). dist_basis: the (R, W, K) distance bases of each slot, or on CPUs the
        :class:`SlotLayout` of the compiled attention kernel."""
        cfg = self.cfg
        n, h, dh = x.shape[0], cfg.num_heads, cfg.head_dim
        q, k, v = self.in_proj(x).view(n, 3, h, dh).unbind(1)
        a, sigma = self.gaussian_coefficients(q)
        # q·k once per atom pair (i, j) (each atom has a row of its distinct key atoms); each image-edge adds
        # a_ih·|r|^2 to its pair's logit. One softmax per atom over all of its image-edge slots. Value sums per pair:
        # Σ_m w_m v_j = Σ_j (Σ_n w_ijn) v_j.
        frames = None
        if isinstance(dist_basis, SlotLayout):  # CPU: compiled kernels, per pair and per slot
            qk = CpuPairDot.apply(q, k, geom.pair_dst, geom.pair_count, 1.0 / math.sqrt(dh))
            # Max frames come from the attention kernel itself, per atom while its logits are in cache.
            request = (max_frame_request(geom, sampling, cfg.symm_break_noise, qk.dtype)
                       if cfg.uses_angles and cfg.frame_method == "max" else None)
            weights, logits, pair_weights, dist_feat, ends, kernel_frames = CpuAttentionCore.apply(
                qk, a, dist_basis, cfg.uses_angles and request is None, cfg.head_cut, request)
            if request is not None:
                frames = kernel_frames
            out = CpuPairMix.apply(pair_weights, v, geom.pair_dst, geom.pair_count)  # (N, H, dh)
        else:
            j = geom.pair_dst.shape[1]
            pair_dst = geom.pair_dst.reshape(-1)
            k_pair = k.index_select(0, pair_dst).view(n, j, h, dh)
            v_pair = v.index_select(0, pair_dst).view(n, j, h, dh)
            # Broadcast products, not einsum: as a bmm these are N·H tiny (1 × dh)·(dh × J) products, 5x slower.
            qk = (q[:, None] * k_pair).sum(-1).transpose(1, 2) / math.sqrt(dh)  # (N, H, J)
            weights, logits, pair_weights, dist_feat = self._slot_attention(qk, a, geom, dist_basis, cfg.head_cut)
            ends = None
            out = (pair_weights.transpose(1, 2)[..., None] * v_pair).sum(1)  # (N, H, dh)
        out = out + cfg.dist_coef * torch.einsum("nhk,hdk->nhd", dist_feat, self.pe_dist_proj)
        if cfg.uses_angles:
            if frames is None:
                frames = self.compute_frames(logits, a, weights, geom, sampling)
            out = out + cfg.angle_coef * self.angle_term(weights, frames, geom, ends)

        y = self.out_proj(out.reshape(n, h * dh))
        info = None
        if trace:
            info = LayerTrace(sigma=sigma.detach(), weights=geom.to_flat(weights.detach()), frames=frames)
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
