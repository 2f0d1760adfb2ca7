"""Renderer-independent 3D scenes: atoms (with opacity), the unit cell, and frame arrows.

A :class:`Scene` is plain data; :mod:`.render_3dmol` and :mod:`.render_plotly` draw it. The attention scene
follows the paper's figures: the unit cell with every atom and the periodic images on its faces, edges and
corners; the target atom opaque with its frame axes e1, e2, e3 as red, green and blue arrows; every other atom —
images outside the cell included — shaded by the attention weight it receives from the target atom.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from crystalframer.model.model import Inspection
from crystalframer.viz.colors import element_color, element_radius

__all__ = ["SceneAtom", "SceneArrow", "Scene", "cell_edges", "cell_images", "structure_scene", "attention_scene",
           "scene_from_structure", "AXIS_COLORS"]

AXIS_COLORS = ("#e41a1c", "#1a9e3a", "#1f5fd1")  # e1 red, e2 green, e3 blue


@dataclass
class SceneAtom:
    element: str
    position: np.ndarray  # (3,) Å
    color: str
    radius: float
    opacity: float = 1.0
    label: str = ""
    role: str = "cell"  # "target" | "neighbor" | "cell"
    index: int = -1  # atom index j in the structure
    image: tuple[int, int, int] = (0, 0, 0)  # lattice translation n relative to the input positions
    weight: float = 0.0  # attention weight received from the target atom (0 when none)


@dataclass
class SceneArrow:
    start: np.ndarray
    end: np.ndarray
    color: str
    label: str = ""


@dataclass
class Scene:
    atoms: list[SceneAtom] = field(default_factory=list)
    cell: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    arrows: list[SceneArrow] = field(default_factory=list)
    title: str = ""

    def center(self) -> np.ndarray:
        pts = [a.position for a in self.atoms] + [p for seg in self.cell for p in seg]
        return np.mean(pts, axis=0) if pts else np.zeros(3)

    def extent(self) -> float:
        pts = np.array([a.position for a in self.atoms] + [p for seg in self.cell for p in seg])
        return float(np.ptp(pts, axis=0).max()) if len(pts) else 1.0


def cell_edges(lattice: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The 12 edges of the parallelepiped spanned by the lattice rows, from the origin."""
    lat = np.asarray(lattice, dtype=np.float64)
    corners = {c: np.array(c, dtype=np.float64) @ lat for c in np.ndindex(2, 2, 2)}
    edges = []
    for c in corners:
        for axis in range(3):
            if c[axis] == 0:
                d = list(c)
                d[axis] = 1
                edges.append((corners[c], corners[tuple(d)]))
    return edges


def cell_images(positions: np.ndarray, lattice: np.ndarray,
                tol: float = 0.02) -> list[tuple[int, tuple[int, int, int]]]:
    """(j, n) for every atom j and translation n whose image p_j + nL lies in the cell [−tol, 1+tol]³ (fractional).

    Includes the images on faces, edges and corners (as crystal drawings do); n is relative to the input
    positions, which may lie outside the cell.
    """
    frac = np.asarray(positions, dtype=np.float64) @ np.linalg.inv(lattice)
    out = []
    shifts = [np.array(s) for s in np.ndindex(3, 3, 3)]
    for j, f in enumerate(frac):
        base = -np.floor(f + tol)  # brings f into [−tol, 1 − tol)
        for s in shifts:
            n = base + (s - 1)
            g = f + n
            if np.all(g >= -tol) and np.all(g <= 1 + tol):
                out.append((j, tuple(int(v) for v in n)))
    return out


def _symbols(numbers: np.ndarray) -> list[str]:
    from ase.data import chemical_symbols

    return [chemical_symbols[int(z)] for z in numbers]


def structure_scene(positions: np.ndarray, numbers: np.ndarray, lattice: np.ndarray, title: str = "",
                    radius_scale: float = 0.45) -> Scene:
    """Unit cell with every atom and its face/edge/corner images."""
    symbols = _symbols(numbers)
    scene = Scene(cell=cell_edges(lattice), title=title)
    for j, n in cell_images(positions, lattice):
        pos = positions[j] + np.asarray(n, dtype=np.float64) @ lattice
        scene.atoms.append(SceneAtom(element=symbols[j], position=pos, color=element_color(numbers[j]),
                                     radius=radius_scale * element_radius(numbers[j]), opacity=1.0,
                                     label=f"{symbols[j]} {j}", role="cell", index=j, image=n))
    return scene


def attention_scene(insp: Inspection, layer: int, atom: int, head: int | None = None, show_frame: bool = True,
                    min_opacity: float = 0.12, neighbor_cutoff: float = 0.01, gamma: float = 0.5,
                    arrow_length: float | None = None, radius_scale: float = 0.32,
                    frames: np.ndarray | None = None, title: str = "") -> Scene:
    """Scene of one layer's attention from ``atom`` (one head, or the head mean when ``head`` is None).

    Atoms shown: the cell atoms with their face/edge/corner images, plus every neighbour image whose weight is at
    least ``neighbor_cutoff`` × the largest weight. Opacity = min_opacity + (1 − min_opacity)(w / w_max)^gamma.
    ``frames``: override (H, 3, 3) frames for the atom (default: the layer's frames). The head mean has no frame,
    so no arrows are drawn for it.
    """
    lay = insp.layers[layer]
    lattice, positions, numbers = insp.lattice, insp.positions, insp.atomic_numbers
    symbols = _symbols(numbers)
    idx = np.flatnonzero(lay.edges[:, 0] == atom)
    w = lay.attention[idx].mean(axis=1) if head is None else lay.attention[idx, head]
    vec = lay.vectors[idx]
    dist = np.linalg.norm(vec, axis=1)
    wmax = float(w[dist > 1e-6].max()) if np.any(dist > 1e-6) else float(w.max())
    weights: dict[tuple[int, tuple[int, int, int]], tuple[float, float]] = {}
    for m, e in enumerate(idx):
        key = (int(lay.edges[e, 1]), tuple(int(v) for v in lay.images[e]))
        weights[key] = (float(w[m]), float(dist[m]))
    keys = list(dict.fromkeys(cell_images(positions, lattice)))
    shown = set(keys)
    for key, (wk, _) in sorted(weights.items(), key=lambda kv: -kv[1][0]):
        if key not in shown and wk >= neighbor_cutoff * wmax:
            keys.append(key)
            shown.add(key)
    # The target atom itself (its zero image) must be present even if it lies outside the cell.
    target_key = (atom, (0, 0, 0))
    if target_key not in shown:
        keys.append(target_key)
    head_name = "head mean" if head is None else f"head {head}"
    scene = Scene(cell=cell_edges(lattice), title=title or f"layer {layer + 1}, {head_name}")
    for j, n in keys:
        pos = positions[j] + np.asarray(n, dtype=np.float64) @ lattice
        wk, dk = weights.get((j, n), (0.0, float(np.linalg.norm(pos - positions[atom]))))
        is_target = (j, n) == target_key
        if is_target:
            opacity, role = 1.0, "target"
        else:
            rel = min(1.0, wk / wmax) if wmax > 0 else 0.0
            opacity = min_opacity + (1.0 - min_opacity) * rel**gamma
            role = "neighbor" if wk > 0 else "cell"
        label = (f"{symbols[j]} j={j} n=[{n[0]} {n[1]} {n[2]}] d={dk:.3f} Å w={wk:.4f}" if not is_target else
                 f"target {symbols[j]} {j} (self weight {wk:.4f})")
        scene.atoms.append(SceneAtom(element=symbols[j], position=pos, color=element_color(numbers[j]),
                                     radius=radius_scale * element_radius(numbers[j]),
                                     opacity=float(opacity), label=label, role=role, index=j, image=n, weight=wk))
    if show_frame and head is not None:
        frame = frames if frames is not None else lay.frames[atom, head] if lay.frames is not None else None
        if frame is not None:
            frame = np.asarray(frame)
            if frame.ndim == 3:
                frame = frame[head]
            length = arrow_length or max(1.8, 0.5 * float(np.min(np.linalg.norm(lattice, axis=1))))
            start = positions[atom]
            for k in range(3):
                scene.arrows.append(SceneArrow(start=start, end=start + length * frame[k], color=AXIS_COLORS[k],
                                               label=f"e{k + 1}"))
    return scene


def scene_from_structure(structure, title: str = "") -> Scene:
    """:func:`structure_scene` of a pymatgen/ASE structure (majority species shown on disordered sites)."""
    from crystalframer.structure import to_arrays

    arrays = to_arrays(structure, max_atoms=10**6)
    return structure_scene(arrays.positions, arrays.atomic_numbers, arrays.lattice, title=title)
