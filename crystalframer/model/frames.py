"""Local frames F_ih = (e1, e2, e3) per atom i and head h (docs/model.md §3).

Every function here runs without gradients: frames are detached by design. A frame tensor has shape (N, H, 3, 3)
with rows e1, e2, e3 (so ``F @ r`` gives the coordinates of r in the frame). Per-edge inputs (scores, weights) are
dense (R, H, W) slot rows of the :class:`~crystalframer.geometry.EdgeGeometry` layout; empty slots carry −inf scores and
zero weights.

Randomness follows a :class:`FrameSampling` policy:

* ``train``: fresh tie-break noise on every call, random signs for PCA-type axes (stochastic frame averaging,
  as the reference code does);
* ``eval``: no noise — exact argmax, canonical signs by the weighted third moment (deterministic, invariant on
  generic structures). An exact tie between a lattice translation t and −t (the same atom seen in opposite
  images) is resolved by the same third-moment rule, so atom order and cell choice cannot decide it;
* ``sample``: eval rules, but ties are broken by noise drawn from a seeded generator (``frame_samples=K``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from crystalframer.model.geometry import EdgeGeometry
from crystalframer.model.kernels import MaxFrameRequest, kernels_enabled, max_frame_axes
from crystalframer.model.ops import segment_sum

PARALLEL_LIMIT = 0.9999  # axis-2 candidates with |cos| at or above this are "parallel" to e1
LOG_FLOOR = 1e-5


@dataclass
class FrameSampling:
    mode: str = "eval"  # "train" | "eval" | "sample"
    generator: torch.Generator | None = None

    @property
    def stochastic(self) -> bool:
        return self.mode in ("train", "sample")


def _uniform_noise(shape: tuple[int, ...], like: torch.Tensor, scale: float, gen: torch.Generator | None) -> torch.Tensor:
    noise = torch.rand(shape, generator=gen, dtype=like.dtype, device="cpu" if gen is not None else like.device)
    return ((noise - 0.5) * scale).to(like.device)


def _jitter(scores: torch.Tensor, half_width: torch.Tensor, geom: EdgeGeometry,
            gen: torch.Generator | None) -> torch.Tensor:
    """scores (R, H, W) + U(−w, w) tie-break noise, w = ``half_width`` (broadcastable to scores).

    Noise is drawn only for slots within 2w of their atom's best score: the others cannot win the argmax whatever
    their noise, so the argmax has the same distribution as with noise on every slot, at the cost of a few random
    numbers instead of one per slot (drawing R·H·W of them took ~15 % of a training step).
    """
    half_width = half_width.expand_as(scores)
    best = geom.atom_max(scores.amax(-1))[geom.row_atom][..., None]  # (R, H, 1)
    candidates = (scores >= best - 2.0 * half_width).nonzero(as_tuple=True)
    k = int(candidates[0].shape[0])
    noise = torch.rand((k,), generator=gen, dtype=scores.dtype, device="cpu" if gen is not None else scores.device)
    out = scores.clone()
    out[candidates] += (noise.to(scores.device) * 2.0 - 1.0) * half_width[candidates]
    return out


def _random_signs(shape: tuple[int, ...], like: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    bits = torch.randint(0, 2, shape, generator=gen, device="cpu" if gen is not None else like.device)
    return (bits.to(device=like.device, dtype=like.dtype) * 2 - 1)


def _tie_tolerance(x: torch.Tensor) -> float:
    return 1000.0 * torch.finfo(x.dtype).eps


def _identity_frames(n: int, h: int, like: torch.Tensor) -> torch.Tensor:
    return torch.eye(3, dtype=like.dtype, device=like.device).expand(n, h, 3, 3).clone()


def third_moment(axes: torch.Tensor, weights: torch.Tensor, vecs: torch.Tensor,
                 geom: EdgeGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted third moments Σ_m w_m (a·x_m)^3 of each axis, and their scale Σ_m w_m |x_m|^3.

    axes: (N, H, K, 3); weights: (R, H, W); vecs: (R, W, 3). Returns ((N, H, K), (N, H)).
    """
    r, w = vecs.shape[:2]
    _, h, k, _ = axes.shape
    proj = torch.bmm(axes[geom.row_atom].reshape(r, h * k, 3), vecs.transpose(1, 2)).view(r, h, k, w)
    moment = geom.atom_sum((weights[:, :, None, :] * proj**3).sum(-1))
    norm3 = (vecs * vecs).sum(-1).sqrt() ** 3  # (R, W)
    scale = geom.atom_sum((weights * norm3[:, None, :]).sum(-1))
    return moment, scale


def _orient_translation_ties(direction: torch.Tensor, row: torch.Tensor, col: torch.Tensor, scores: torch.Tensor,
                             weights: torch.Tensor, geom: EdgeGeometry) -> torch.Tensor:
    """Flip ``direction`` (N, H, 3), the unit vector of the chosen slot (row, col), when the chosen image r* has an
    exactly tied partner −r* (a lattice translation of atom i seen both ways) and the weighted third moment along it
    is negative. Without ties the argmax decides alone."""
    n, h = direction.shape[:2]
    heads = torch.arange(h, device=scores.device)[None, :]
    best = scores[row, heads, col]  # (N, H)
    r_star = geom.vec[row, col]  # (N, H, 3)
    tol = _tie_tolerance(scores) * (1.0 + best.abs())
    # Only slots scoring within the tie tolerance of the best can tie; they are few, so test geometry on them alone.
    near = (scores >= (best - tol)[geom.row_atom][..., None]).nonzero()  # (K, 3): row, head, column
    r_near, h_near, c_near = near.unbind(1)
    atom = geom.row_atom[r_near]
    sep = ((geom.vec[r_near, c_near] + r_star[atom, h_near]) ** 2).sum(-1)  # |r_m + r*|^2
    opposite = sep < 1e-10 * (1.0 + geom.dist2[r_near, c_near])
    tied = torch.zeros((n, h), dtype=torch.bool, device=scores.device)
    tied[atom[opposite], h_near[opposite]] = True
    if not bool(tied.any()):
        return direction
    moment, scale = third_moment(direction[:, :, None, :], weights, geom.vec, geom)
    flip = tied & (moment[..., 0] < -_tie_tolerance(scores) * scale)
    return torch.where(flip[..., None], -direction, direction)


def max_frames(score_base: torch.Tensor, a: torch.Tensor, weights: torch.Tensor, geom: EdgeGeometry,
               sampling: FrameSampling, noise: float) -> torch.Tensor:
    """Max frames (and, with distance-only scores, static frames).

    score_base: (R, H, W) log-weights of each image-edge slot (attention logits for ``max``, a·|r|^2 for
    ``static``); a: (N, H) Gaussian coefficients; weights: (R, H, W) the matching normalised weights (used for tie
    orientation). e1 = direction of the highest-weight non-zero image; ẽ2 maximises w·(1 − |e1·r̂|) over
    non-parallel images; Gram–Schmidt; e3 = e1 × e2.
    """
    if kernels_enabled(score_base):  # CPU: the same rules in one compiled pass per atom and head
        e1, t2, ok1, ok2 = max_frame_axes(score_base, weights, geom.unit_rows(score_base.dtype), geom.vec,
                                          geom.dist2, geom.valid_bias(score_base.dtype), a,
                                          geom.row_atom, sampling.stochastic and noise > 0, 0.5 * noise,
                                          0.5 * noise, sampling.generator)
        return _assemble_max_frames(e1, t2, ok1, ok2, score_base)
    neg_inf = torch.tensor(float("-inf"), dtype=score_base.dtype, device=score_base.device)
    eligible = geom.valid[:, None, :]
    score1 = torch.where(eligible, score_base, neg_inf)
    if sampling.stochastic and noise > 0:
        # As the reference: noise on the squared distance, i.e. a·ε on the log-weight.
        score1 = _jitter(score1, (0.5 * noise) * a[geom.row_atom][..., None].abs(), geom, sampling.generator)
    row1, col1, ok1 = geom.atom_argmax(score1)
    e1 = geom.unit[row1, col1]  # (N, H, 3)
    if not sampling.stochastic:
        e1 = _orient_translation_ties(e1, row1, col1, score1, weights, geom)

    abs1 = torch.bmm(e1[geom.row_atom], geom.unit.transpose(1, 2)).abs_()  # |e1·r̂|, (R, H, W)
    eligible2 = eligible & (abs1 < PARALLEL_LIMIT)
    score2 = score_base + torch.log((1.0 - abs1).clamp_min_(LOG_FLOOR))
    score2 = torch.where(eligible2, score2, neg_inf)
    if sampling.stochastic and noise > 0:
        score2 = _jitter(score2, score2.new_full((1, 1, 1), 0.5 * noise), geom, sampling.generator)
    row2, col2, ok2 = geom.atom_argmax(score2)
    t2 = geom.unit[row2, col2]
    if not sampling.stochastic:
        t2 = _orient_translation_ties(t2, row2, col2, score2, weights, geom)

    return _assemble_max_frames(e1, t2, ok1, ok2, score_base)


def max_frame_request(geom: EdgeGeometry, sampling: FrameSampling, noise: float,
                      dtype: torch.dtype) -> MaxFrameRequest:
    """What the CPU attention kernel needs to compute max frames itself (the rules of :func:`max_frames` with
    attention logits as scores, assembled as :func:`_assemble_max_frames`): the geometry and the tie-break noise of
    this call."""
    stochastic = sampling.stochastic and noise > 0
    seed = int(torch.randint(0, 2**62, (1,), generator=sampling.generator)) if stochastic else 0
    return MaxFrameRequest(unit_rows=geom.unit_rows(dtype), vec=geom.vec, valid_bias=geom.valid_bias(dtype),
                           stochastic=stochastic, half_width1=0.5 * noise, half_width2=0.5 * noise, seed=seed)


def _assemble_max_frames(e1: torch.Tensor, t2: torch.Tensor, ok1: torch.Tensor, ok2: torch.Tensor,
                         like: torch.Tensor) -> torch.Tensor:
    """Frames (N, H, 3, 3) from the chosen directions e1, t2 (N, H, 3): Gram–Schmidt, e3 = e1 × e2; the identity
    where no axis 1 was found."""
    n, h = e1.shape[:2]
    # Without an axis-2 candidate every neighbour is parallel to e1 (a chain): all of them have cosine 0 with any
    # perpendicular axis, so any perpendicular e2 gives the same features; take one built from e1 alone.
    t2 = torch.where(ok2[..., None], t2, _any_perpendicular(e1))
    e2 = F.normalize(t2 - (e1 * t2).sum(-1, keepdim=True) * e1, dim=-1)
    e3 = torch.cross(e1, e2, dim=-1)
    frames = torch.stack([e1, e2, e3], dim=-2)
    return torch.where(ok1[..., None, None], frames, _identity_frames(n, h, like))


def _any_perpendicular(axis: torch.Tensor) -> torch.Tensor:
    """A unit vector perpendicular to each ``axis`` (..., 3), from the coordinate axis least aligned with it."""
    least = F.one_hot(axis.abs().argmin(-1), 3).to(axis.dtype)
    return F.normalize(least - (least * axis).sum(-1, keepdim=True) * axis, dim=-1)


def random_right_handed_signs(frames: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """frames (..., 3, 3) with each row's sign drawn at random, then all three flipped if left-handed (the
    reference's training rule for PCA-type axes)."""
    signs = _random_signs(frames.shape[:-2] + (3,), frames, gen)
    out = frames * signs[..., None]
    det = torch.linalg.det(out)
    return torch.where((det < 0)[..., None, None], -out, out)


def canonical_signs(frames: torch.Tensor, moment: torch.Tensor, scale: torch.Tensor,
                    sampling: FrameSampling) -> torch.Tensor:
    """Fix the arbitrary signs of PCA-type axes.

    frames: (..., 3, 3) rows; moment: (..., 3) third moments along each axis; scale: (...) their natural scale.
    train: random signs, then all three flipped if left-handed (as the reference).
    eval/sample: each axis takes the sign making its third moment positive; where a moment is ~0 the sign is
    random (seeded in ``sample``, +1 in ``eval``); finally the axis with the least decisive moment is flipped if
    needed so the frame is right-handed.
    """
    lead = frames.shape[:-2]
    if sampling.mode == "train":
        return random_right_handed_signs(frames, sampling.generator)
    rel = moment / scale.clamp_min(torch.finfo(frames.dtype).tiny)[..., None]
    decisive = rel.abs() > _tie_tolerance(frames)
    if sampling.mode == "sample":
        fallback = _random_signs(lead + (3,), frames, sampling.generator)
    else:
        fallback = torch.ones(lead + (3,), dtype=frames.dtype, device=frames.device)
    signs = torch.where(decisive, torch.sign(rel), fallback)
    out = frames * signs[..., None]
    det = torch.linalg.det(out)
    weakest = F.one_hot(rel.abs().argmin(-1), 3).to(frames.dtype)  # (..., 3)
    fix = torch.where((det < 0)[..., None], 1.0 - 2.0 * weakest, torch.ones_like(weakest))
    return out * fix[..., None]


def _random_valid_slots(geom: EdgeGeometry, heads: int, gen: torch.Generator | None,
                        dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """One valid slot per (atom, head), uniformly at random and independently per head: (row, column), each (N, H).

    Draws N·H random numbers rather than one per (R, H, W) slot (that took ~8 % of a weighted-PCA training step).
    An atom without a valid slot gets the batch's first valid slot; callers must not rely on its direction
    (weighted_pca_frames gives such atoms the identity frame).
    """
    n, w = geom.num_atoms, geom.valid.shape[1]
    device = geom.valid.device
    flat, counts, starts = geom.valid_slot_index()
    if flat.numel() == 0:
        zeros = torch.zeros((n, heads), dtype=torch.long, device=device)
        return zeros, zeros
    u = torch.rand((n, heads), generator=gen, dtype=dtype, device="cpu" if gen is not None else device).to(device)
    pick = (u * counts[:, None].to(dtype)).long().clamp_max(counts[:, None] - 1).clamp_min(0)
    slot = flat[(starts[:, None] + pick).clamp_max(flat.numel() - 1)]
    return slot // w, slot % w


def weighted_pca_frames(weights: torch.Tensor, logits: torch.Tensor, geom: EdgeGeometry, sampling: FrameSampling,
                        noise: float, unit_vectors: bool, det_threshold: float) -> torch.Tensor:
    """Eigenvectors of Σ_ih = Σ_m w_m x_m x_mᵀ (x = r, or r̂ if ``unit_vectors``), ascending eigenvalues → e1, e2, e3.

    weights, logits: (R, H, W). A symmetry-breaking term noise·s·r̂ r̂ᵀ is added along one neighbour direction: the
    highest-weight non-zero image in eval (deterministic), a random non-zero image in train/sample.
    s = det(Σ)^{1/3} as in the reference when Σ has full rank (det > ``det_threshold``·(tr Σ/3)^3, a scale-free
    test), else tr Σ/3, so flat layers (rank 2) and chains (rank 1) still get eigenvector frames: their undetermined
    axes have zero cosine with every neighbour, so the features do not depend on them. Only an atom with no non-zero
    neighbour (tr Σ = 0) gets the identity frame (its angle features are all zero anyway).
    """
    h = weights.shape[1]
    n = geom.num_atoms
    sigma = geom.atom_sum(torch.bmm(weights, geom.outer_products(unit_vectors))).view(n, h, 3, 3)
    det = torch.linalg.det(sigma)
    if sampling.stochastic:
        row, col = _random_valid_slots(geom, h, sampling.generator, logits.dtype)
    else:
        neg_inf = torch.tensor(float("-inf"), dtype=logits.dtype, device=logits.device)
        row, col, _ = geom.atom_argmax(torch.where(geom.valid[:, None, :], logits, neg_inf))
    u = geom.unit[row, col]  # (N, H, 3)
    mean_eig = sigma.diagonal(dim1=-2, dim2=-1).sum(-1) / 3.0
    full_rank = det > det_threshold * mean_eig**3
    bump = noise * torch.where(full_rank, det.clamp_min(0).pow(1.0 / 3.0), mean_eig)
    sigma = sigma + bump[..., None, None] * (u[..., :, None] * u[..., None, :])
    _, vecs = torch.linalg.eigh(sigma)
    frames = vecs.transpose(-1, -2)  # rows = eigenvectors (columns of V), ascending eigenvalues
    if sampling.mode == "train":  # random signs: the third moments (a third of this function's cost) are not needed
        frames = random_right_handed_signs(frames, sampling.generator)
    else:
        x = geom.unit if unit_vectors else geom.vec  # (R, W, 3)
        moment, scale = third_moment(frames, weights, x, geom)
        frames = canonical_signs(frames, moment, scale, sampling)
    good = mean_eig > 1e-12
    return torch.where(good[..., None, None], frames, _identity_frames(n, h, weights))


def global_pca_frames(geom: EdgeGeometry, num_heads: int, sampling: FrameSampling) -> torch.Tensor:
    """Duval et al.'s PCA frames of the unit-cell positions: one frame per crystal (cell-dependent baseline)."""
    b = geom.lattice.shape[0]
    pos = geom.positions
    counts = segment_sum(torch.ones_like(pos[:, 0]), geom.atom_batch, b)
    mean = segment_sum(pos, geom.atom_batch, b) / counts[:, None]
    centred = pos - mean[geom.atom_batch]
    cov = segment_sum(centred[:, :, None] * centred[:, None, :], geom.atom_batch, b)
    _, vecs = torch.linalg.eigh(cov)
    frames = vecs.transpose(-1, -2)  # (B, 3, 3)
    proj = torch.einsum("nkc,nc->nk", frames[geom.atom_batch], centred)
    moment = segment_sum(proj**3, geom.atom_batch, b)
    scale = segment_sum((centred * centred).sum(-1).sqrt() ** 3, geom.atom_batch, b)
    per_atom = frames[geom.atom_batch][:, None].expand(-1, num_heads, 3, 3)
    return canonical_signs(per_atom.contiguous(), moment[geom.atom_batch][:, None].expand(-1, num_heads, 3),
                           scale[geom.atom_batch][:, None].expand(-1, num_heads), sampling)


def lattice_frames(geom: EdgeGeometry, num_heads: int, sampling: FrameSampling, noise: float) -> torch.Tensor:
    """Yan et al.'s lattice frames (unit, not orthogonal): shortest lattice vectors, one frame per crystal."""
    lat = geom.lattice
    dtype, device = lat.dtype, lat.device
    rng = torch.arange(-2, 3, device=device, dtype=dtype)
    grid = torch.stack(torch.meshgrid(rng, rng, rng, indexing="ij"), -1).reshape(-1, 3)
    grid = grid[(grid != 0).any(-1)]  # (124, 3)
    t = torch.einsum("kc,bcd->bkd", grid, lat)  # (B, 124, 3)
    key = (t * t).sum(-1)
    if sampling.stochastic and noise > 0:
        key = key + _uniform_noise(tuple(key.shape), key, noise, sampling.generator)
    th = F.normalize(t, dim=-1)
    inf = torch.tensor(float("inf"), dtype=dtype, device=device)
    idx1 = key.argmin(-1)
    bidx = torch.arange(lat.shape[0], device=device)
    e1 = th[bidx, idx1]
    c1 = (th * e1[:, None]).sum(-1)
    idx2 = torch.where(c1.abs() < 1 - 1e-5, key, inf).argmin(-1)
    e2 = th[bidx, idx2]
    e2 = torch.where(((e1 * e2).sum(-1) < 0)[:, None], -e2, e2)
    u = F.normalize(torch.cross(e1, e2, dim=-1), dim=-1)
    c3 = (th * u[:, None]).sum(-1)
    idx3 = torch.where(c3.abs() > 1e-5, key, inf).argmin(-1)
    e3 = th[bidx, idx3]
    e3 = torch.where(((e1 * e3).sum(-1) < 0)[:, None], -e3, e3)
    frames = torch.stack([e1, e2, e3], dim=-2)
    flip = (e3 * u).sum(-1) < 0
    frames = torch.where(flip[:, None, None], -frames, frames)
    return frames[geom.atom_batch][:, None].expand(-1, num_heads, 3, 3).contiguous()
