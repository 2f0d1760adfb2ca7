"""Perturbation probes: how predictions and frames respond to rattling, strain, rotation, supercells, substitution.

Every perturbation returns the perturbed structure, the map from its atoms to the original atoms, and the rotation
R applied to Cartesian space (identity except for ``rotate``), so frames can be compared atom by atom:
an equivariant frame satisfies F' = F Rᵀ, i.e. e_k' = R e_k, and the comparison rotates back first.

Frame change metrics, per (layer, atom, head):
* e1 angle: angle between e1 of the original and the (back-rotated) e1 of the perturbed structure, degrees;
* e1 line angle: the same ignoring the sign of e1 (≤ 90°), i.e. how much the axis *line* turned;
* frame angle: the angle of the relative rotation F' Fᵀ between the two frames, degrees;
* switched: the e1 *line* turned by more than a threshold (default 20°) — a jump to another neighbour direction,
  not a smooth tilt (the max-frame discontinuity);
* sign flipped: e1 reversed (directed angle > 90°) without its line switching — the sign ambiguity of PCA-type
  axes at (near-)symmetric sites.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from pymatgen.core import Lattice, Structure

from crystalframer.model.model import CrystalFramer, Inspection

__all__ = ["PERTURBATIONS", "DEFAULT_MAGNITUDES", "Perturbed", "rattle", "strain", "rotate", "supercell",
           "substitute", "make_perturbed", "frame_change", "sweep", "sweep_summary", "rotation_matrix"]

PERTURBATIONS = {
    "rattle": "Gaussian displacement σ (Å)",
    "strain": "strain ε",
    "rotate": "rotation angle (degrees)",
    "supercell": "supercell n (n×n×n)",
    "substitute": "fraction of sites substituted",
}
DEFAULT_MAGNITUDES = {
    "rattle": [0.001, 0.003, 0.01, 0.03, 0.1],
    "strain": [0.001, 0.005, 0.01, 0.02, 0.05],
    "rotate": [1.0, 10.0, 45.0, 90.0],
    "supercell": [1, 2],
    "substitute": [0.25, 0.5, 1.0],
}
STRAIN_MODES = ("isotropic", "uniaxial a", "shear ab")
SWITCH_DEGREES = 20.0


@dataclass
class Perturbed:
    structure: Structure
    mapping: np.ndarray  # (N',) original atom of each perturbed atom
    rotation: np.ndarray  # (3, 3) Cartesian rotation applied (x' = R x)
    note: str = ""


def rattle(structure: Structure, sigma: float, rng: np.random.Generator) -> Perturbed:
    """Independent Gaussian displacements of standard deviation ``sigma`` Å per Cartesian component."""
    disp = rng.normal(0.0, float(sigma), size=(len(structure), 3))
    new = Structure(structure.lattice, structure.species_and_occu, np.asarray(structure.cart_coords) + disp,
                    coords_are_cartesian=True)
    return Perturbed(new, np.arange(len(structure)), np.eye(3))


def strain(structure: Structure, eps: float, mode: str = "isotropic") -> Perturbed:
    """Homogeneous strain of magnitude ``eps`` (fractional coordinates kept)."""
    if mode == "isotropic":
        deform = np.eye(3) * (1.0 + eps)
    elif mode == "uniaxial a":
        a_dir = structure.lattice.matrix[0] / np.linalg.norm(structure.lattice.matrix[0])
        deform = np.eye(3) + eps * np.outer(a_dir, a_dir)
    elif mode == "shear ab":
        m = structure.lattice.matrix
        u = m[0] / np.linalg.norm(m[0])
        v = m[1] - np.dot(m[1], u) * u
        v = v / np.linalg.norm(v)
        deform = np.eye(3) + eps * (np.outer(u, v) + np.outer(v, u)) / 2.0
    else:
        raise ValueError(f"strain mode must be one of {STRAIN_MODES}, got {mode!r}")
    lattice = Lattice(np.asarray(structure.lattice.matrix) @ deform.T)
    new = Structure(lattice, structure.species_and_occu, structure.frac_coords)
    return Perturbed(new, np.arange(len(structure)), np.eye(3))


def rotation_matrix(axis: Sequence[float], angle_deg: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    theta = np.radians(angle_deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(theta) * k + (1 - np.cos(theta)) * (k @ k)


def rotate(structure: Structure, angle_deg: float, axis: Sequence[float] = (1.0, 2.0, 3.0)) -> Perturbed:
    """Rigid rotation of lattice and atoms (the crystal is the same; its Cartesian orientation changes)."""
    rot = rotation_matrix(axis, angle_deg)
    lattice = Lattice(np.asarray(structure.lattice.matrix) @ rot.T)
    new = Structure(lattice, structure.species_and_occu, structure.frac_coords)
    return Perturbed(new, np.arange(len(structure)), rot)


def supercell(structure: Structure, n: int) -> Perturbed:
    """n×n×n supercell; atom k of the supercell is a copy of original atom ``mapping[k]``."""
    n = int(n)
    if n < 1:
        raise ValueError("supercell size must be ≥ 1")
    tagged = structure.copy()
    tagged.add_site_property("_origin", list(range(len(structure))))
    big = tagged * (n, n, n)
    mapping = np.asarray(big.site_properties["_origin"], dtype=np.int64)
    big.remove_site_property("_origin")
    return Perturbed(big, mapping, np.eye(3), note=f"{len(big)} atoms")


def substitute(structure: Structure, fraction: float, old: str, new: str, rng: np.random.Generator) -> Perturbed:
    """Replace a random ``fraction`` (at least one) of the ``old`` sites by element ``new``."""
    from pymatgen.core import Element

    Element(new)  # raises for an unknown symbol
    sites = [k for k, site in enumerate(structure) if old in {getattr(sp, "symbol", str(sp)) for sp in site.species}]
    if not sites:
        raise ValueError(f"no {old} sites to substitute")
    count = max(1, int(round(float(fraction) * len(sites))))
    chosen = rng.choice(sites, size=min(count, len(sites)), replace=False)
    out = structure.copy()
    for k in chosen:
        out.replace(int(k), new)
    return Perturbed(out, np.arange(len(structure)), np.eye(3), note=f"{len(chosen)} of {len(sites)} {old} → {new}")


def make_perturbed(structure: Structure, kind: str, magnitude: float, rng: np.random.Generator,
                   strain_mode: str = "isotropic", old: str | None = None, new: str | None = None) -> Perturbed:
    if kind == "rattle":
        return rattle(structure, magnitude, rng)
    if kind == "strain":
        return strain(structure, magnitude, strain_mode)
    if kind == "rotate":
        return rotate(structure, magnitude, axis=rng.normal(size=3))
    if kind == "supercell":
        return supercell(structure, int(magnitude))
    if kind == "substitute":
        if not old or not new:
            raise ValueError("substitution needs the element to replace and its replacement")
        return substitute(structure, magnitude, old, new, rng)
    raise ValueError(f"unknown perturbation {kind!r}; choose from {list(PERTURBATIONS)}")


def frame_change(base: Inspection, pert: Inspection, mapping: np.ndarray, rotation: np.ndarray,
                 switch_degrees: float = SWITCH_DEGREES) -> dict[str, float]:
    """e1 angle (mean, max), frame rotation angle (mean) and switched fraction over layers × atoms × heads."""
    if not base.layers or base.layers[0].frames is None or pert.layers[0].frames is None:
        return {"e1 angle mean": np.nan, "e1 angle max": np.nan, "e1 line angle mean": np.nan,
                "frame angle mean": np.nan, "switched": np.nan, "sign flipped": np.nan}
    e1_angles, frame_angles = [], []
    for lb, lp in zip(base.layers, pert.layers):
        fb = lb.frames[mapping]  # (N', H, 3, 3)
        fp = lp.frames @ rotation  # rows e_k' R  = (Rᵀ e_k')ᵀ: rotated back
        cos1 = np.clip(np.einsum("nhc,nhc->nh", fb[:, :, 0], fp[:, :, 0]), -1.0, 1.0)
        e1_angles.append(np.degrees(np.arccos(cos1)).ravel())
        rel = np.einsum("nhac,nhbc->nhab", fp, fb)  # F' Fᵀ
        trace = np.clip((np.trace(rel, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
        frame_angles.append(np.degrees(np.arccos(trace)).ravel())
    e1 = np.concatenate(e1_angles)
    fa = np.concatenate(frame_angles)
    line = np.minimum(e1, 180.0 - e1)  # ignoring the axis sign (what a PCA-type axis cannot decide)
    switched = line > switch_degrees
    flipped = ~switched & (e1 > 90.0)
    return {"e1 angle mean": float(e1.mean()), "e1 angle max": float(e1.max()),
            "e1 line angle mean": float(line.mean()), "frame angle mean": float(fa.mean()),
            "switched": float(switched.mean()), "sign flipped": float(flipped.mean())}


def sweep(models: dict[str, CrystalFramer], structure: Structure, kind: str, magnitudes: Sequence[float],
          samples: int = 2, seed: int = 0, strain_mode: str = "isotropic", old: str | None = None,
          new: str | None = None, switch_degrees: float = SWITCH_DEGREES,
          callback: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """For each model, magnitude and sample: prediction change and frame change against the unperturbed structure.

    The same perturbed structures are used for every model (one seeded generator per magnitude and sample), so
    the models are compared on identical inputs. Deterministic perturbations (strain, supercell) use one sample.
    Rows: model, magnitude, sample, target, prediction, delta, |delta|, frame metrics, note.
    """
    if kind not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {kind!r}")
    if not models:
        raise ValueError("no models to sweep")
    n_samples = 1 if kind in ("strain", "supercell") else max(1, int(samples))
    cases = []
    for mi, mag in enumerate(magnitudes):
        for s in range(n_samples):
            rng = np.random.default_rng([seed, mi, s])
            cases.append((mag, s, make_perturbed(structure, kind, mag, rng, strain_mode, old, new)))
    total = len(models) * (len(cases) + 1)
    done = 0
    rows = []
    for name, model in models.items():
        base = model.inspect(structure)
        done += 1
        if callback:
            callback(done, total)
        names = model.config.target_names
        for mag, s, pert in cases:
            insp = model.inspect(pert.structure)
            change = frame_change(base, insp, pert.mapping, pert.rotation, switch_degrees)
            for t, tname in enumerate(names):
                delta = float(insp.prediction[t] - base.prediction[t])
                rows.append({"model": name, "perturbation": kind, "magnitude": float(mag), "sample": s,
                             "target": tname, "prediction": float(insp.prediction[t]),
                             "baseline": float(base.prediction[t]), "delta": delta, "|delta|": abs(delta),
                             **change, "note": pert.note})
            done += 1
            if callback:
                callback(done, total)
    return pd.DataFrame(rows)


def sweep_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Mean over samples per model, target and magnitude."""
    if df.empty:
        return df
    cols = ["|delta|", "e1 angle mean", "e1 angle max", "e1 line angle mean", "frame angle mean", "switched",
            "sign flipped"]
    return df.groupby(["model", "target", "magnitude"], as_index=False)[cols].mean()
