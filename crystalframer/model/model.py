"""The CrystalFramer model: species embedding → attention blocks → mean pooling → MLP head."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn

from crystalframer.model.attention import EncoderBlock, LayerTrace
from crystalframer.model.config import ModelConfig
from crystalframer.model.features import distance_basis, distance_basis_window
from crystalframer.model.kernels import SlotLayout, kernels_enabled
from crystalframer.model.frames import FrameSampling
from crystalframer.model.geometry import EdgeGeometry
from crystalframer.data.batching import inference_batches
from crystalframer.graph import CrystalGraph, GraphBatch, build_graph, collate
from crystalframer.model.ops import segment_sum


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available; use --device cpu or auto")
    return torch.device(device)


@dataclass
class LayerInspection:
    """One layer's attention and frames for one crystal (numpy, float64).

    sigma: (N, H) Gaussian width per atom and head (Å).
    edges: (E, 2) [i, j]; images: (E, 3) lattice translation n; vectors: (E, 3) r = p_j + nL − p_i (Å).
    attention: (E, H) weights, summing to 1 over the edges of each i per head.
    frames: (N, H, 3, 3) rows e1, e2, e3, or None for ``frame_method="none"``.
    """

    sigma: np.ndarray
    edges: np.ndarray
    images: np.ndarray
    vectors: np.ndarray
    attention: np.ndarray
    frames: np.ndarray | None


@dataclass
class Inspection:
    prediction: np.ndarray  # (n_targets,)
    layers: list[LayerInspection]
    atomic_numbers: np.ndarray  # (N,)
    positions: np.ndarray  # (N, 3)
    lattice: np.ndarray  # (3, 3)


class CrystalFramer(nn.Module):
    """CrystalFramer (or Crystalformer with ``frame_method="none"``).

    ``forward(batch)`` returns *normalised* predictions (B, n_targets); physical values are
    ``target_std * out + target_mean`` (see :meth:`denormalize`). :meth:`predict` does all of it for structures.
    """

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config or ModelConfig()
        cfg = self.config
        self.embedding = nn.Linear(cfg.num_species, cfg.model_dim, bias=False)
        self.blocks = nn.ModuleList([EncoderBlock(cfg) for _ in range(cfg.num_layers)])
        self.head = nn.Sequential(nn.Linear(cfg.model_dim, cfg.head_hidden_dim), nn.ReLU(),
                                  nn.Linear(cfg.head_hidden_dim, cfg.n_targets))
        self.register_buffer("target_mean", torch.zeros(cfg.n_targets))
        self.register_buffer("target_std", torch.ones(cfg.n_targets))
        # Provenance of the weights (set by load_model and by training): {"path", "code_version", "info": {...}}.
        self.checkpoint_info: dict[str, Any] = {"path": "", "code_version": "", "info": {}}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """T-Fixup-style initialisation (docs/model.md §2.7)."""
        cfg = self.config
        n_layers = cfg.num_layers
        nn.init.normal_(self.embedding.weight, 0.0, cfg.model_dim**-0.5 * (9 * n_layers) ** -0.25)
        tfixup = 0.67 * n_layers**-0.25
        for block in self.blocks:
            att = block.attn
            d = cfg.model_dim
            for part in range(3):
                nn.init.xavier_uniform_(att.in_proj.weight[part * d:(part + 1) * d])
            with torch.no_grad():
                att.in_proj.weight[2 * d:] *= tfixup
            nn.init.zeros_(att.in_proj.bias)
            nn.init.xavier_uniform_(att.out_proj.weight)
            nn.init.zeros_(att.out_proj.bias)
            with torch.no_grad():
                att.out_proj.weight *= tfixup
            nn.init.normal_(att.lattice_pos_weights, 0.0, cfg.head_dim**-0.5)
            self._init_projection(att.pe_dist_proj, cfg.dist_bases)
            if att.pe_angle_proj is not None:
                for axis in range(3):
                    self._init_projection(att.pe_angle_proj[axis], cfg.angle_bases)
            for lin in (block.ff1, block.ff2):
                nn.init.xavier_uniform_(lin.weight)
                nn.init.zeros_(lin.bias)
                with torch.no_grad():
                    lin.weight *= tfixup
            att.gauss_scale.zero_()

    @staticmethod
    def _init_projection(param: torch.Tensor, bases: int) -> None:
        # One (H·dh) × K matrix with xavier_uniform and gain K^{-1/2}, viewed per head.
        h, dh, k = param.shape
        bound = bases**-0.5 * math.sqrt(6.0 / (h * dh + k))
        with torch.no_grad():
            param.uniform_(-bound, bound)

    # ----- normalisation ------------------------------------------------------------------------------
    def set_target_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        mean_t = torch.as_tensor(np.asarray(mean, dtype=np.float64)).reshape(-1)
        std_t = torch.as_tensor(np.asarray(std, dtype=np.float64)).reshape(-1)
        if mean_t.numel() != self.config.n_targets or std_t.numel() != self.config.n_targets:
            raise ValueError("mean/std must have n_targets entries")
        if not torch.all(torch.isfinite(std_t)) or torch.any(std_t <= 0):
            raise ValueError("target std must be finite and positive")
        self.target_mean.copy_(mean_t.to(self.target_mean))
        self.target_std.copy_(std_t.to(self.target_std))

    def normalize(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.target_mean) / self.target_std

    def denormalize(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.target_std + self.target_mean

    @property
    def gauss_stats_frozen(self) -> bool:
        return all(bool(b.attn.gauss_scale[0] != 0) for b in self.blocks)

    def num_trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @property
    def device(self) -> torch.device:
        return self.embedding.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embedding.weight.dtype

    # ----- forward ------------------------------------------------------------------------------------
    def _sampling(self, sampling: FrameSampling | None) -> FrameSampling:
        if sampling is not None:
            return sampling
        return FrameSampling(mode="train" if self.training else "eval")

    def forward(self, batch: GraphBatch, sampling: FrameSampling | None = None,
                trace: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[LayerTrace]]:
        cfg = self.config
        sampling = self._sampling(sampling)
        geom = EdgeGeometry.build(batch.edge_src, batch.edge_dst, batch.edge_vec, batch.batch, batch.positions,
                                  batch.lattice, nearest_first=cfg.head_cutoff)
        dist_basis = self._distance_bases(geom)
        x = self.embedding(batch.species)
        traces: list[LayerTrace] = []
        for block in self.blocks:
            x, info = block(x, geom, dist_basis, sampling, trace)
            if info is not None:
                traces.append(info)
        n_graphs = batch.num_graphs
        pooled = segment_sum(x, batch.batch, n_graphs) / batch.num_atoms.to(x.dtype)[:, None]
        out = self.head(pooled)
        return (out, traces) if trace else out

    def _distance_bases(self, geom: EdgeGeometry) -> torch.Tensor | SlotLayout:
        """The distance bases of every slot: on CPUs with the compiled kernels, the windowed bases packed with the
        rest of what the fused attention kernel reads (:class:`SlotLayout`); elsewhere all K bases (R, W, K).
        Empty slots get b(0); their attention weight is exactly 0, so they add nothing."""
        cfg = self.config
        dist = geom.dist2.sqrt()
        r_max = cfg.dist_max_factor * cfg.scale_real
        if kernels_enabled(geom.dist2):
            values, first = distance_basis_window(dist, cfg.dist_bases, r_max, cfg.dist_width_scale)
            return SlotLayout.build(geom.dist2, geom.pair_slot, geom.pad_mask, geom.row_atom, geom.num_atoms,
                                    values, first, cfg.dist_bases)
        return distance_basis(dist, cfg.dist_bases, r_max, cfg.dist_width_scale)

    # ----- user API -----------------------------------------------------------------------------------
    def make_graph(self, structure: Any, target: Sequence[float] | None = None, ident: str = "") -> CrystalGraph:
        if isinstance(structure, CrystalGraph):
            return structure
        return build_graph(structure, self.config.cutoff, target=target, ident=ident,
                           max_atoms=self.config.max_atoms)

    @torch.no_grad()
    def predict(self, structures: Iterable[Any], batch_size: int = 32, frame_samples: int = 0, seed: int = 0,
                return_std: bool = False, progress: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Predict physical targets for pymatgen/ASE structures (or prebuilt graphs).

        Returns (n_structures, n_targets). With ``frame_samples=K`` > 0, K tie-break noises are drawn from a
        generator seeded by ``seed`` and the K predictions averaged; ``return_std`` also returns their std.
        """
        was_training = self.training
        self.eval()
        graphs = [self.make_graph(s) for s in structures]
        means, stds = [], []
        batches: Iterable[list[int]] = inference_batches([g.num_atoms for g in graphs], batch_size)
        if progress:
            from tqdm.auto import tqdm
            batches = tqdm(batches, desc="predict", unit="batch")
        try:
            for indices in batches:
                batch = collate([graphs[k] for k in indices], dtype=self.dtype).to(self.device)
                if frame_samples and frame_samples > 0 and self.config.uses_angles:
                    gen = torch.Generator().manual_seed(seed + indices[0])
                    samples = torch.stack([
                        self.denormalize(self(batch, FrameSampling(mode="sample", generator=gen)))
                        for _ in range(frame_samples)])
                    means.append(samples.mean(0).cpu().numpy())
                    stds.append(samples.std(0, unbiased=False).cpu().numpy())
                else:
                    out = self.denormalize(self(batch))
                    means.append(out.cpu().numpy())
                    stds.append(np.zeros_like(means[-1]))
        finally:
            self.train(was_training)
        if not graphs:
            empty = np.zeros((0, self.config.n_targets))
            return (empty, empty) if return_std else empty
        mean = np.concatenate(means).astype(np.float64)
        std = np.concatenate(stds).astype(np.float64)
        return (mean, std) if return_std else mean

    @torch.no_grad()
    def inspect(self, structure: Any) -> Inspection:
        """Per layer: σ_ih, image-edge attention weights with (i, j, n, r), and frames (N, H, 3, 3)."""
        was_training = self.training
        self.eval()
        try:
            graph = self.make_graph(structure)
            batch = collate([graph], dtype=self.dtype).to(self.device)
            out, traces = self(batch, trace=True)
        finally:
            self.train(was_training)
        nb = graph.neighbors
        layers = [LayerInspection(
            sigma=t.sigma.cpu().double().numpy(),
            edges=np.stack([nb.src, nb.dst], axis=1),
            images=nb.image.copy(),
            vectors=nb.vec.copy(),
            attention=t.weights.cpu().double().numpy(),
            frames=None if t.frames is None else t.frames.cpu().double().numpy(),
        ) for t in traces]
        return Inspection(prediction=self.denormalize(out)[0].cpu().double().numpy(), layers=layers,
                          atomic_numbers=graph.arrays.atomic_numbers.copy(),
                          positions=graph.arrays.positions.copy(), lattice=graph.arrays.lattice.copy())

    @torch.no_grad()
    def calibrate(self, structures: Sequence[Any]) -> None:
        """Freeze the per-layer a_ih normalisation on these structures (what the first training batch does)."""
        was_training = self.training
        graphs = [self.make_graph(s) for s in structures]
        batch = collate(graphs, dtype=self.dtype).to(self.device)
        for block in self.blocks:
            block.attn.gauss_scale.zero_()
        self.train()
        try:
            self(batch, FrameSampling(mode="eval"))
        finally:
            self.train(was_training)
