"""A slow, independent float64 reference of the CrystalFramer forward pass (evaluation mode).

Written from the specification in ``docs/model.md`` (§1–§3) only, independent of the library: plain numpy,
explicit Python loops over atoms, lattice images, heads and frame axes. It reads the model's weights from a
``state_dict`` (converted to float64 numpy) and the hyperparameters from the model's ``ModelConfig``.

What it computes (docs/model.md §1–§3):

* neighbours: every image-edge (i, j, n) with |p_j + n·L − p_i| ≤ R_c, self image (i, i, 0) included, found by
  looping over a box of integer translations that contains the cutoff sphere;
* attention per (atom i, head h): one softmax over all image-edges m of i of
  q_ih·k_jh/√d + a_ih |r_m|² + log s(a_ih |r_m|²), s the per-head cutoff switch;
* values v_jh + c_dist P0_h b(|r_m|) + c_ang Σ_k Pk_h g(e_k·r̂_m) (zero image: angle features 0);
* frames ``max``, ``static``, ``weighted_pca`` with the evaluation-mode (noise-free) rules.

Sign conventions that the specification leaves open (an exact ±t tie with a vanishing third moment, or a PCA axis
whose third moment vanishes) are reported in a mask ``ambiguous`` (N, H, 3): such an axis is only defined up to
sign. On generic structures no axis is ambiguous; in a one-atom cell every environment is centrosymmetric, so the
sign cannot change the prediction there.

This module also holds the small structures that the acceptance tests share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

NUM_SPECIES = 98
ZERO_IMAGE_D2 = 1e-5  # Å²: an image with |r|² at or below this is the zero (self) image
PARALLEL_LIMIT = 0.9999
LOG_FLOOR = 1e-5
TIE_REL = 1e-10  # two selection scores closer than this (relative) are an exact tie
AMBIGUOUS_MOMENT = 1e-9  # |third moment| / scale below this: the sign is not determined by the moment
EPS = float(np.finfo(np.float64).eps)


# ---------------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------------
def species_onehot(structure) -> np.ndarray:
    """(N, 98) occupancy-weighted one-hot (index Z − 1) of a pymatgen Structure."""
    out = np.zeros((len(structure), NUM_SPECIES))
    for idx, site in enumerate(structure):
        for sp, occu in site.species.items():
            out[idx, sp.Z - 1] += occu
    return out


def structure_inputs(structure) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """positions (N, 3) Cartesian Å (not wrapped), lattice (3, 3) rows, species (N, 98)."""
    positions = np.array([site.coords for site in structure], dtype=np.float64)
    lattice = np.array(structure.lattice.matrix, dtype=np.float64)
    return positions, lattice, species_onehot(structure)


def numpy_weights(model) -> dict[str, np.ndarray]:
    import torch

    return {k: v.detach().cpu().to(dtype=torch.float64).numpy().copy() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------------------------
# Neighbours
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class ImageEdge:
    j: int
    n: tuple[int, int, int]
    r: np.ndarray  # (3,) p_j + n·L − p_i
    d2: float
    dist: float
    unit: np.ndarray | None  # r̂, None for the zero image

    @property
    def nonzero(self) -> bool:
        return self.unit is not None


def image_edges(positions: np.ndarray, lattice: np.ndarray, cutoff: float) -> list[list[ImageEdge]]:
    """For each atom i, all image-edges within ``cutoff`` (a sphere), by brute-force loops.

    The fractional coordinate k of r is f_jk − f_ik + n_k and its magnitude is at most |r|/d_k, with d_k the
    lattice-plane spacing; so every n inside the sphere lies in the box scanned below (plus one layer of margin).
    """
    n_atoms = positions.shape[0]
    inv = np.linalg.inv(lattice)
    inv_spacing = [float(np.sqrt(inv[0, k] ** 2 + inv[1, k] ** 2 + inv[2, k] ** 2)) for k in range(3)]  # 1/d_k
    frac = positions @ inv
    result: list[list[ImageEdge]] = []
    for i in range(n_atoms):
        mine: list[ImageEdge] = []
        for j in range(n_atoms):
            ranges = []
            for k in range(3):
                df = frac[j, k] - frac[i, k]
                reach = cutoff * inv_spacing[k]
                ranges.append(range(math.floor(-reach - df) - 1, math.ceil(reach - df) + 2))
            for n1 in ranges[0]:
                for n2 in ranges[1]:
                    for n3 in ranges[2]:
                        r = positions[j] + (n1 * lattice[0] + n2 * lattice[1] + n3 * lattice[2]) - positions[i]
                        d2 = float(r[0] * r[0] + r[1] * r[1] + r[2] * r[2])
                        if d2 <= cutoff * cutoff:
                            dist = math.sqrt(d2)
                            unit = r / dist if d2 > ZERO_IMAGE_D2 else None
                            mine.append(ImageEdge(j=j, n=(n1, n2, n3), r=r, d2=d2, dist=dist, unit=unit))
        result.append(mine)
    return result


# ---------------------------------------------------------------------------------------------------------------
# Frames (evaluation mode)
# ---------------------------------------------------------------------------------------------------------------
def _normalize(x: np.ndarray) -> np.ndarray:
    return x / math.sqrt(float(x @ x))


def _select_direction(edges: list[ImageEdge], scores: list[float], eligible: list[bool],
                      tie_weights: list[float]) -> tuple[np.ndarray | None, bool, bool]:
    """Unit vector of the eligible edge with the highest score, oriented by the ±t tie rule.

    Returns (direction or None if nothing is eligible, ambiguous-sign flag, whether a ±t tie was decided by the
    third moment).
    """
    best = -1
    for m in range(len(edges)):
        if eligible[m] and (best < 0 or scores[m] > scores[best]):
            best = m
    if best < 0:
        return None, False, False
    r_star = edges[best].r
    u = edges[best].unit
    tol = TIE_REL * (1.0 + abs(scores[best]))
    tied = False
    for m in range(len(edges)):
        if m == best or not eligible[m]:
            continue
        s = edges[m].r + r_star
        if float(s @ s) < 1e-12 * (1.0 + edges[best].d2) and scores[m] >= scores[best] - tol:
            tied = True
    if not tied:
        return u.copy(), False, False
    moment = 0.0
    scale = 0.0
    for m in range(len(edges)):
        moment += tie_weights[m] * float(u @ edges[m].r) ** 3
        scale += tie_weights[m] * edges[m].dist ** 3
    if abs(moment) <= AMBIGUOUS_MOMENT * scale:
        return u.copy(), True, False
    return (u.copy() if moment > 0 else -u), False, True


def reference_max_frame(edges: list[ImageEdge], scores: list[float],
                        tie_weights: list[float]) -> tuple[np.ndarray, np.ndarray, int]:
    """Max frame from per-edge log-weights ``scores`` (logits for ``max``, a|r|² for ``static``).

    Returns (3, 3) rows e1, e2, e3, a (3,) ambiguous-sign mask and the number of ±t ties (0-2) that the third
    moment decided.
    """
    eligible1 = [e.nonzero for e in edges]
    e1, amb1, tie1 = _select_direction(edges, scores, eligible1, tie_weights)
    if e1 is None:
        return np.eye(3), np.zeros(3, dtype=bool), 0
    scores2: list[float] = []
    eligible2: list[bool] = []
    for m, e in enumerate(edges):
        if not e.nonzero:
            scores2.append(-math.inf)
            eligible2.append(False)
            continue
        c = float(e1 @ e.unit)
        eligible2.append(abs(c) < PARALLEL_LIMIT)
        scores2.append(scores[m] + math.log(max(1.0 - abs(c), LOG_FLOOR)))
    t2, amb2, tie2 = _select_direction(edges, scores2, eligible2, tie_weights)
    if t2 is None:
        # design: all neighbours parallel to e1 (a chain) → any perpendicular e2; the library builds it from the
        # coordinate axis least aligned with e1 (features are the same for every perpendicular choice).
        k = int(np.argmin(np.abs(e1)))
        t2 = np.eye(3)[k]
        amb2 = True
    e2 = _normalize(t2 - float(e1 @ t2) * e1)
    e3 = np.array([e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]])
    return np.stack([e1, e2, e3]), np.array([amb1, amb2, amb1 or amb2]), int(tie1) + int(tie2)


def reference_weighted_pca_frame(edges: list[ImageEdge], logits: list[float], weights: list[float], noise: float,
                                 det_threshold: float, unit_vectors: bool) -> tuple[np.ndarray, np.ndarray]:
    """Weighted-PCA frame: eigenvectors (columns) of Σ w x xᵀ, ascending eigenvalues → e1, e2, e3."""
    xs = []
    for e in edges:
        if unit_vectors:
            xs.append(e.unit if e.nonzero else np.zeros(3))
        else:
            xs.append(e.r)
    sigma = np.zeros((3, 3))
    for m in range(len(edges)):
        for a in range(3):
            for b in range(3):
                sigma[a, b] += weights[m] * xs[m][a] * xs[m][b]
    det = float(np.linalg.det(sigma))
    mean_eig = (sigma[0, 0] + sigma[1, 1] + sigma[2, 2]) / 3.0
    if mean_eig <= 1e-12:  # no non-zero neighbour at all
        return np.eye(3), np.zeros(3, dtype=bool)
    best = -1
    for m, e in enumerate(edges):
        if e.nonzero and (best < 0 or logits[m] > logits[best]):
            best = m
    u = edges[best].unit
    # design: det^(1/3) for a full-rank Σ; mean eigenvalue for flat layers / chains (relative rank test)
    size = det ** (1.0 / 3.0) if det > det_threshold * mean_eig**3 else mean_eig
    bumped = sigma + noise * size * np.outer(u, u)
    _, vecs = np.linalg.eigh(bumped)
    axes = [vecs[:, k].copy() for k in range(3)]  # columns, ascending eigenvalues
    rel = []
    for k in range(3):
        moment = 0.0
        scale = 0.0
        for m in range(len(edges)):
            moment += weights[m] * float(axes[k] @ xs[m]) ** 3
            scale += weights[m] * math.sqrt(float(xs[m] @ xs[m])) ** 3
        rel.append(moment / scale if scale > 0 else 0.0)
    ambiguous = np.array([abs(v) <= AMBIGUOUS_MOMENT for v in rel])
    for k in range(3):
        if abs(rel[k]) > 1000.0 * EPS and rel[k] < 0:
            axes[k] = -axes[k]
    frame = np.stack(axes)
    if np.linalg.det(frame) < 0:
        weakest = int(np.argmin([abs(v) for v in rel]))
        frame[weakest] = -frame[weakest]
    return frame, ambiguous


# ---------------------------------------------------------------------------------------------------------------
# Forward pass
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class ReferenceResult:
    prediction: np.ndarray  # (n_targets,)
    frames: list[np.ndarray] = field(default_factory=list)  # per layer (N, H, 3, 3) rows
    ambiguous: list[np.ndarray] = field(default_factory=list)  # per layer (N, H, 3) bool
    attention: list[list[list[np.ndarray]]] = field(default_factory=list)  # [layer][i][h] -> (E_i,)
    edges: list[list[ImageEdge]] = field(default_factory=list)
    decisive_ties: int = 0  # max/static axes whose ±t tie was oriented by the third moment


def _softmax(values: list[float]) -> list[float]:
    peak = max(values)
    ex = [math.exp(v - peak) for v in values]
    total = sum(ex)
    return [e / total for e in ex]


def _log_switch(cfg, x: float) -> float:
    """log s(x) of the per-head cutoff (docs/model.md §1.2) at x = a_ih·|r|²: 0 inside (cutoff_sigmas −
    cutoff_taper)·σ_ih, the log of the smoothstep t³(10 − 15t + 6t²) in the taper, −inf from cutoff_sigmas·σ_ih."""
    if not getattr(cfg, "head_cutoff", False):
        return 0.0
    x_out = -0.5 * cfg.cutoff_sigmas ** 2
    x_in = -0.5 * (cfg.cutoff_sigmas - cfg.cutoff_taper) ** 2
    if x >= x_in:
        return 0.0
    if x <= x_out:
        return -math.inf
    t = (x - x_out) / (x_in - x_out)
    return math.log(t ** 3 * (10.0 - 15.0 * t + 6.0 * t * t))


def _elu(x: float) -> float:
    return x if x > 0 else math.expm1(x)


def reference_forward(weights: dict[str, np.ndarray], config, positions: np.ndarray, lattice: np.ndarray,
                      species: np.ndarray, frame_hook=None) -> ReferenceResult:
    """Prediction (physical units) of the model with ``weights`` and ``config`` for one crystal.

    ``frame_hook(layer, frames)`` may return modified frames (N, H, 3, 3); used to check that a test is sensitive.
    """
    cfg = config
    method = cfg.frame_method
    if method not in ("none", "max", "static", "weighted_pca"):
        raise NotImplementedError(method)
    use_angles = method != "none" and cfg.angle_bases > 0
    n_atoms = positions.shape[0]
    heads = cfg.num_heads
    dh = cfg.model_dim // heads
    cutoff = cfg.cutoff_sigmas * cfg.scale_real / math.sqrt(cfg.gauss_lb_real)
    edges = image_edges(positions, lattice, cutoff)

    # Distance basis (head independent), once per edge.
    n_dist = cfg.dist_bases
    r_max = cfg.dist_max_factor * cfg.scale_real
    mu = np.array([(k + 1) * r_max / n_dist for k in range(n_dist)])
    s_dist = cfg.dist_width_scale * r_max / n_dist
    dist_basis = [[np.exp(-((e.dist - mu) ** 2) / (2.0 * s_dist * s_dist)) for e in row] for row in edges]

    n_ang = cfg.angle_bases
    if cfg.cos_abs:
        nu = np.linspace(0.0, 1.0, n_ang)
        tau = cfg.angle_width_scale / (n_ang - 1)
    else:
        nu = np.linspace(-1.0, 1.0, n_ang)
        tau = cfg.angle_width_scale * 2.0 / (n_ang - 1)

    emb = weights["embedding.weight"]
    x = np.zeros((n_atoms, cfg.model_dim))
    for i in range(n_atoms):
        x[i] = emb @ species[i]

    result = ReferenceResult(prediction=np.zeros(cfg.n_targets), edges=edges)
    b = cfg.gauss_lb_real
    for layer in range(cfg.num_layers):
        p = f"blocks.{layer}."
        w_in, b_in = weights[p + "attn.in_proj.weight"], weights[p + "attn.in_proj.bias"]
        d = cfg.model_dim
        q = np.zeros((n_atoms, heads, dh))
        k = np.zeros((n_atoms, heads, dh))
        v = np.zeros((n_atoms, heads, dh))
        for i in range(n_atoms):
            q[i] = (w_in[:d] @ x[i] + b_in[:d]).reshape(heads, dh)
            k[i] = (w_in[d:2 * d] @ x[i] + b_in[d:2 * d]).reshape(heads, dh)
            v[i] = (w_in[2 * d:] @ x[i] + b_in[2 * d:]).reshape(heads, dh)
        pos_w = weights[p + "attn.lattice_pos_weights"]
        g_scale, g_shift = weights[p + "attn.gauss_scale"]
        if g_scale == 0:
            raise ValueError("calibrate the model first: gauss_scale is not frozen")
        a = np.zeros((n_atoms, heads))
        for i in range(n_atoms):
            for h in range(heads):
                s = float(q[i, h] @ pos_w[h])
                xn = (s + g_shift) * g_scale
                f = (1.0 - b) * _elu(cfg.positive_func_beta * xn / (1.0 - b)) + 1.0
                a[i, h] = -f / (2.0 * cfg.scale_real ** 2)

        # Attention weights and frames.
        logits_all = [[None] * heads for _ in range(n_atoms)]
        attn_all = [[None] * heads for _ in range(n_atoms)]
        frames = np.zeros((n_atoms, heads, 3, 3))
        ambiguous = np.zeros((n_atoms, heads, 3), dtype=bool)
        for i in range(n_atoms):
            for h in range(heads):
                logits = []
                for e in edges[i]:
                    decay = a[i, h] * e.d2
                    logits.append(float(q[i, h] @ k[e.j, h]) / math.sqrt(dh) + decay + _log_switch(cfg, decay))
                attn = _softmax(logits)
                logits_all[i][h], attn_all[i][h] = logits, attn
                if not use_angles:
                    continue
                if method == "max":
                    fr, amb, ties = reference_max_frame(edges[i], logits, attn)
                    result.decisive_ties += ties
                elif method == "static":
                    static = [a[i, h] * e.d2 for e in edges[i]]
                    fr, amb, ties = reference_max_frame(edges[i], static, _softmax(static))
                    result.decisive_ties += ties
                else:
                    fr, amb = reference_weighted_pca_frame(edges[i], logits, attn, cfg.symm_break_noise,
                                                           cfg.pca_det_threshold, cfg.pca_unit_vectors)
                frames[i, h], ambiguous[i, h] = fr, amb
        if use_angles and frame_hook is not None:
            frames = frame_hook(layer, frames.copy())
        if use_angles:
            result.frames.append(frames)
            result.ambiguous.append(ambiguous)
        result.attention.append([[np.array(attn_all[i][h]) for h in range(heads)] for i in range(n_atoms)])

        # Values with position encodings, aggregated per (i, h).
        p_dist = weights[p + "attn.pe_dist_proj"]  # (H, dh, K)
        p_ang = weights[p + "attn.pe_angle_proj"] if use_angles else None  # (3, H, dh, D)
        out = np.zeros((n_atoms, heads, dh))
        for i in range(n_atoms):
            for h in range(heads):
                acc = np.zeros(dh)
                for m, e in enumerate(edges[i]):
                    wm = attn_all[i][h][m]
                    value = v[e.j, h] + cfg.dist_coef * (p_dist[h] @ dist_basis[i][m])
                    if use_angles and e.nonzero:
                        for axis in range(3):
                            c = float(frames[i, h, axis] @ e.unit)
                            if cfg.cos_abs:
                                c = abs(c)
                            g = np.exp(-((c - nu) ** 2) / (2.0 * tau * tau))
                            value = value + cfg.angle_coef * (p_ang[axis, h] @ g)
                    acc += wm * value
                out[i, h] = acc
        w_o, b_o = weights[p + "attn.out_proj.weight"], weights[p + "attn.out_proj.bias"]
        w1, b1 = weights[p + "ff1.weight"], weights[p + "ff1.bias"]
        w2, b2 = weights[p + "ff2.weight"], weights[p + "ff2.bias"]
        new_x = np.zeros_like(x)
        for i in range(n_atoms):
            xi = x[i] + (w_o @ out[i].reshape(-1) + b_o)
            hidden = np.maximum(w1 @ xi + b1, 0.0)
            new_x[i] = xi + (w2 @ hidden + b2)
        x = new_x

    pooled = np.zeros(cfg.model_dim)
    for i in range(n_atoms):
        pooled += x[i]
    pooled /= n_atoms
    hidden = np.maximum(weights["head.0.weight"] @ pooled + weights["head.0.bias"], 0.0)
    raw = weights["head.2.weight"] @ hidden + weights["head.2.bias"]
    result.prediction = weights["target_std"] * raw + weights["target_mean"]
    return result


def reference_predict(model, structure, frame_hook=None) -> ReferenceResult:
    positions, lattice, species = structure_inputs(structure)
    return reference_forward(numpy_weights(model), model.config, positions, lattice, species, frame_hook)


# ---------------------------------------------------------------------------------------------------------------
# Shared test structures (pymatgen)
# ---------------------------------------------------------------------------------------------------------------
def rattle(structure, amplitude: float, seed: int):
    from pymatgen.core import Structure

    rng = np.random.default_rng(seed)
    cart = np.array(structure.cart_coords) + rng.uniform(-amplitude, amplitude, size=(len(structure), 3))
    return Structure(structure.lattice, structure.species_and_occu, cart, coords_are_cartesian=True)


def low_symmetry_cell(seed: int = 0):
    """A rattled 4-species, 6-atom triclinic cell (no symmetry)."""
    from pymatgen.core import Lattice, Structure

    lat = Lattice.from_parameters(4.3, 4.9, 5.4, 83.0, 96.0, 104.0)
    species = ["Ba", "Ti", "O", "O", "F", "Li"]
    frac = [[0.02, 0.01, 0.03], [0.48, 0.52, 0.47], [0.51, 0.03, 0.49], [0.04, 0.47, 0.55], [0.46, 0.49, 0.02],
            [0.74, 0.26, 0.77]]
    return rattle(Structure(lat, species, frac), 0.08, seed)


def rutile_cell(seed: int = 1):
    """Rattled rutile-like TiO2 (6 atoms)."""
    from pymatgen.core import Lattice, Structure

    u = 0.305
    lat = Lattice.tetragonal(4.594, 2.959)
    frac = [[0, 0, 0], [0.5, 0.5, 0.5], [u, u, 0], [1 - u, 1 - u, 0], [0.5 + u, 0.5 - u, 0.5],
            [0.5 - u, 0.5 + u, 0.5]]
    return rattle(Structure(lat, ["Ti", "Ti", "O", "O", "O", "O"], frac), 0.06, seed)


def one_atom_cell():
    """One Cu atom in a skewed triclinic cell with short lattice vectors (all environments centrosymmetric)."""
    from pymatgen.core import Lattice, Structure

    lat = Lattice.from_parameters(2.7, 3.0, 3.4, 76.0, 84.0, 101.0)
    return Structure(lat, ["Cu"], [[0.3, -0.2, 1.4]])


def skewed_triclinic_cell(seed: int = 2):
    """A strongly skewed triclinic 3-atom cell with coordinates outside [0, 1)."""
    from pymatgen.core import Lattice, Structure

    lat = Lattice([[3.6, 0.0, 0.0], [3.1, 2.6, 0.0], [-2.4, 1.7, 3.3]])
    frac = [[0.1, 0.2, 0.3], [1.55, -0.45, 0.62], [-0.3, 0.8, 2.05]]
    return rattle(Structure(lat, ["Mg", "Si", "N"], frac), 0.05, seed)


def short_axis_cell(seed: int = 9):
    """A rattled 3-atom cell with one short (2.45 Å) lattice vector: an atom's own images ±a are its nearest and
    highest-weight neighbours, so ±t ties (oriented by the third moment) occur in almost every frame."""
    from pymatgen.core import Lattice, Structure

    lat = Lattice.from_parameters(2.45, 4.6, 5.3, 88.0, 95.0, 101.0)
    return rattle(Structure(lat, ["Li", "H", "C"], [[0, 0, 0], [0.5, 0.45, 0.55], [0.1, 0.0, 0.5]]), 0.05, seed)


def srtio3():
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


# ---------------------------------------------------------------------------------------------------------------
# Shared test helper: a float64 model whose angle features matter
# ---------------------------------------------------------------------------------------------------------------
def make_model(method: str, calibration_structures, seed: int = 0, angle_gain: float = 20.0, config=None,
               target_mean=1.0, target_std=2.0, exact: bool = True):
    """A calibrated float64 model in eval mode, with randomised biases and amplified position encodings so that
    every part of the forward pass (angle features in particular) moves the prediction. ``exact`` selects the
    exact angle-feature path (the one this reference mirrors term by term)."""
    import dataclasses

    import torch

    from crystalframer import CrystalFramer, ModelConfig

    cfg = config if config is not None else ModelConfig(frame_method=method)
    if exact:
        cfg = dataclasses.replace(cfg, angle_features="exact")
    torch.manual_seed(seed)
    model = CrystalFramer(cfg).double()
    gen = torch.Generator().manual_seed(seed + 12345)

    def noise(t: torch.Tensor, scale: float) -> torch.Tensor:
        return scale * torch.randn(t.shape, generator=gen, dtype=torch.float64)

    with torch.no_grad():
        for block in model.blocks:
            att = block.attn
            att.in_proj.bias.copy_(noise(att.in_proj.bias, 0.1))
            att.out_proj.bias.copy_(noise(att.out_proj.bias, 0.05))
            block.ff1.bias.copy_(noise(block.ff1.bias, 0.05))
            block.ff2.bias.copy_(noise(block.ff2.bias, 0.05))
            att.pe_dist_proj.mul_(3.0)
            if att.pe_angle_proj is not None:
                att.pe_angle_proj.mul_(angle_gain)
        for lin in (model.head[0], model.head[2]):
            lin.bias.copy_(noise(lin.bias, 0.1))
    n = cfg.n_targets
    mean = np.array(np.broadcast_to(np.asarray(target_mean, dtype=np.float64), (n,)))
    std = np.array(np.broadcast_to(np.asarray(target_std, dtype=np.float64), (n,)))
    model.set_target_normalization(mean, std)
    model.calibrate(list(calibration_structures))
    model.eval()
    return model


def random_rotation(seed: int) -> np.ndarray:
    """A uniformly random proper rotation matrix (det +1), seeded."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q
