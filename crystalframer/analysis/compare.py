"""Comparing frame methods on the same weights, and frames against coordination polyhedra.

* :func:`with_frame_method` gives a deep copy of a model whose layers build frames with another method (the angle
  projection weights are reused, so this is a *probe*, not a retrained model); the cached model is untouched.
* :func:`coordination_environment` finds a site's ligands with pymatgen's CrystalNN and names its polyhedron with
  ``LocalStructOrderParams`` evaluated on a cluster built from the neighbour *image* coordinates CrystalNN returns.
* :func:`axis_bond_angles` / :func:`alignment_table`: per layer and head, the angle between each frame axis and the
  nearest centre→ligand bond.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from crystalframer.model.config import FRAME_METHODS
from crystalframer.model.model import CrystalFramer, Inspection

__all__ = ["FRAME_METHOD_LABELS", "comparable_methods", "with_frame_method", "inspect_methods", "ordered_proxy",
           "CoordinationEnv", "coordination_environment", "coordination_overview", "axis_bond_angles",
           "alignment_table", "alignment_summary", "GEOMETRY_NAMES"]

FRAME_METHOD_LABELS = {
    "max": "max frames",
    "weighted_pca": "weighted-PCA frames",
    "static": "static local frames",
    "pca": "global PCA frame (cell-dependent)",
    "lattice": "lattice frame (cell-dependent)",
    "none": "no frames",
}

# Order-parameter types tried for each coordination number, and their names.
_OP_CANDIDATES: dict[int, list[str]] = {
    1: ["sgl_bd"], 2: ["bent"], 3: ["tri_plan", "tri_pyr", "T"], 4: ["tet", "sq_plan", "see_saw_rect", "tri_pyr"],
    5: ["sq_pyr", "tri_bipyr"], 6: ["oct", "pent_pyr"], 7: ["pent_bipyr", "hex_pyr"], 8: ["bcc", "hex_bipyr"],
    12: ["cuboct"],
}
GEOMETRY_NAMES = {
    "sgl_bd": "single bond", "bent": "linear/bent", "tri_plan": "trigonal planar", "tri_pyr": "trigonal pyramidal",
    "T": "T-shaped", "tet": "tetrahedral", "sq_plan": "square planar", "see_saw_rect": "see-saw",
    "sq_pyr": "square pyramidal", "tri_bipyr": "trigonal bipyramidal", "oct": "octahedral",
    "pent_pyr": "pentagonal pyramidal", "pent_bipyr": "pentagonal bipyramidal", "hex_pyr": "hexagonal pyramidal",
    "bcc": "cubic (body-centred)", "hex_bipyr": "hexagonal bipyramidal", "cuboct": "cuboctahedral",
}
RECOGNISED_SCORE = 0.5


def comparable_methods(model: CrystalFramer) -> list[str]:
    """Frame methods that can run on this model's weights (all but ``none``; none at all for a frameless model)."""
    if model.config.frame_method == "none" or not model.config.uses_angles:
        return []
    return [m for m in FRAME_METHODS if m != "none"]


def with_frame_method(model: CrystalFramer, method: str) -> CrystalFramer:
    """A deep copy of ``model`` that builds frames with ``method`` (the original is never modified)."""
    if method not in FRAME_METHODS or method == "none":
        raise ValueError(f"frame method must be one of {[m for m in FRAME_METHODS if m != 'none']}, got {method!r}")
    if model.config.frame_method == "none" or not model.config.uses_angles:
        raise ValueError("this model was trained without frames (frame_method='none'): it has no angle weights, "
                         "so frame methods cannot be swapped in")
    clone = copy.deepcopy(model)
    clone.config.frame_method = method
    clone.eval()
    return clone


def inspect_methods(model: CrystalFramer, structure: Any, methods: list[str]) -> dict[str, Inspection]:
    """``model.inspect`` of ``structure`` with each frame method (the model's own method uses the model itself)."""
    out: dict[str, Inspection] = {}
    for method in methods:
        probe = model if method == model.config.frame_method else with_frame_method(model, method)
        out[method] = probe.inspect(structure)
    return out


# ----------------------------------------------------------------------------------------------------------------
# coordination polyhedra
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class CoordinationEnv:
    site: int
    element: str
    cn: int
    geometry: str  # best-matching name, or "irregular (…)" when no order parameter is convincing
    geometry_key: str  # e.g. "oct"
    score: float  # the best order parameter (1 = ideal)
    scores: dict[str, float] = field(default_factory=dict)
    ligands: pd.DataFrame = field(default_factory=pd.DataFrame)  # element, site_index, image, distance, x, y, z
    bond_vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (cn, 3) centre → ligand, Å

    @property
    def recognised(self) -> bool:
        return self.score >= RECOGNISED_SCORE

    def describe(self) -> str:
        return f"{self.element} (site {self.site}): CN {self.cn}, {self.geometry} (order parameter {self.score:.2f})"


def _symbol(site: Any) -> str:
    sp = max(site.species.items(), key=lambda kv: kv[1])[0]
    return getattr(sp, "symbol", str(sp))


def ordered_proxy(structure: Structure) -> Structure:
    """The structure itself if ordered; else a copy with the majority species on every site (CrystalNN needs
    ordered sites)."""
    if structure.is_ordered:
        return structure
    proxy = structure.copy()
    for k, site in enumerate(structure):
        if not site.is_ordered:
            proxy.replace(k, _symbol(site))
    return proxy


def coordination_environment(structure: Structure, site: int, cnn: Any = None) -> CoordinationEnv:
    """Ligands of ``site`` by CrystalNN and its polyhedron by LocalStructOrderParams.

    Disordered structures are analysed through :func:`ordered_proxy` (majority species per site)."""
    from pymatgen.analysis.local_env import CrystalNN, LocalStructOrderParams
    from pymatgen.core import Molecule

    cnn = cnn or CrystalNN()
    structure = ordered_proxy(structure)
    centre = structure[site]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = cnn.get_nn_info(structure, site)
    coords = np.array([entry["site"].coords for entry in info]).reshape(-1, 3)
    bonds = coords - np.asarray(centre.coords)[None, :]
    cn = len(info)
    ligands = pd.DataFrame({
        "element": [_symbol(entry["site"]) for entry in info],
        "site_index": [int(entry["site_index"]) for entry in info],
        "image": [" ".join(str(int(v)) for v in entry["image"]) for entry in info],
        "distance (Å)": np.linalg.norm(bonds, axis=1) if cn else np.zeros(0),
        "weight": [float(entry.get("weight", np.nan)) for entry in info],
        "x": coords[:, 0], "y": coords[:, 1], "z": coords[:, 2],
    })
    scores: dict[str, float] = {}
    candidates = _OP_CANDIDATES.get(cn, [])
    if candidates:
        # A cluster of the centre and its ligand images (Cartesian image coordinates, no periodicity involved).
        cluster = Molecule([_symbol(centre)] + list(ligands["element"]),
                           np.vstack([np.asarray(centre.coords)[None, :], coords]))
        ops = LocalStructOrderParams(candidates)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = ops.get_order_parameters(cluster, 0, indices_neighs=list(range(1, cn + 1)))
        scores = {k: float(v) if v is not None else float("nan") for k, v in zip(candidates, values)}
    finite = {k: v for k, v in scores.items() if np.isfinite(v)}
    if finite:
        key = max(finite, key=finite.get)
        score = finite[key]
    else:
        key, score = "", 0.0
    name = GEOMETRY_NAMES.get(key, key)
    if not finite:
        geometry = f"{cn}-coordinated (no order parameter for this CN)"
    elif score < RECOGNISED_SCORE:
        geometry = f"irregular (closest: {name}, {score:.2f})"
    else:
        geometry = name
    return CoordinationEnv(site=site, element=_symbol(centre), cn=cn, geometry=geometry, geometry_key=key,
                           score=score, scores=scores, ligands=ligands, bond_vectors=bonds)


def coordination_overview(structure: Structure, sites: list[int] | None = None, max_sites: int = 48) -> pd.DataFrame:
    """One row per site (symmetry-distinct sites by default, at most ``max_sites``): element, CN, geometry, score."""
    structure = ordered_proxy(structure)
    if sites is None:
        try:
            from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

            sym = SpacegroupAnalyzer(structure, symprec=0.01).get_symmetrized_structure()
            sites = sorted(group[0] for group in sym.equivalent_indices)
        except Exception:
            sites = list(range(len(structure)))
    from pymatgen.analysis.local_env import CrystalNN

    cnn = CrystalNN()
    rows = []
    for s in sites[:max_sites]:
        env = coordination_environment(structure, s, cnn)
        rows.append({"site": s, "element": env.element, "CN": env.cn, "geometry": env.geometry,
                     "order parameter": env.score})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------------------
# frames vs bonds
# ----------------------------------------------------------------------------------------------------------------
def axis_bond_angles(frames: np.ndarray, bonds: np.ndarray, directed: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Angle (degrees) between each frame axis and the nearest bond, and that bond's index.

    frames: (..., 3, 3) rows e1, e2, e3; bonds: (k, 3) centre → ligand vectors. ``directed``: the axis direction
    counts (angle to the bond vector); otherwise the angle to the bond *line* (≤ 90°).
    Returns (angles (..., 3), nearest (..., 3)).
    """
    bonds = np.asarray(bonds, dtype=np.float64).reshape(-1, 3)
    if bonds.shape[0] == 0:
        shape = np.asarray(frames).shape[:-1]
        return np.full(shape, np.nan), np.full(shape, -1, dtype=np.int64)
    unit = bonds / np.linalg.norm(bonds, axis=1, keepdims=True)
    cos = np.einsum("...ac,kc->...ak", np.asarray(frames, dtype=np.float64), unit)
    if not directed:
        cos = np.abs(cos)
    nearest = np.argmax(cos, axis=-1)
    best = np.take_along_axis(cos, nearest[..., None], axis=-1)[..., 0]
    return np.degrees(np.arccos(np.clip(best, -1.0, 1.0))), nearest


def alignment_table(inspections: dict[str, Inspection], atom: int, env: CoordinationEnv,
                    directed: bool = True) -> pd.DataFrame:
    """Long table: method, layer, head, axis, angle to the nearest centre→ligand bond (degrees), that ligand."""
    rows = []
    for method, insp in inspections.items():
        for k, lay in enumerate(insp.layers):
            if lay.frames is None:
                continue
            angles, nearest = axis_bond_angles(lay.frames[atom], env.bond_vectors, directed=directed)
            for h in range(angles.shape[0]):
                for a, axis in enumerate(("e1", "e2", "e3")):
                    lig = int(nearest[h, a])
                    rows.append({"method": method, "layer": k + 1, "head": h, "axis": axis,
                                 "angle (deg)": float(angles[h, a]),
                                 "nearest ligand": (f"{env.ligands['element'].iloc[lig]} "
                                                    f"[{env.ligands['image'].iloc[lig]}]") if lig >= 0 else ""})
    return pd.DataFrame(rows)


def alignment_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per method, layer and axis: the mean, median and max angle over heads, and the fraction within 10°."""
    if table.empty:
        return table
    grouped = table.groupby(["method", "layer", "axis"])["angle (deg)"]
    out = grouped.agg(mean="mean", median="median", max="max").reset_index()
    out["within 10°"] = grouped.apply(lambda s: float((s <= 10.0).mean())).to_numpy()
    return out
