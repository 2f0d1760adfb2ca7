"""Renderer-independent 3D scenes: atoms, bonds, coordination polyhedra, the cell, frame arrows, labels.

A :class:`Scene` is plain data; :mod:`.render_3dmol` and :mod:`.render_plotly` draw it, so both renderers show the
same things. The attention scene follows the paper's figures: the unit cell (or a supercell) with every atom and
the periodic images on its faces, edges and corners; the target atom with its frame axes e1, e2, e3 as red, green
and blue labelled arrows; every other atom — images outside the cell included — shaded *and* sized by the
attention weight it receives from the target atom (a colour bar gives the scale). Coordination polyhedra come from
the CrystalNN analysis in :mod:`crystalframer.analysis.compare` (:func:`add_polyhedra`); :func:`view_spec` gives
views along a, b, c or e1, and :func:`picked_atom` maps a click (a scene-atom index or a Plotly selection point)
back to an atom of the structure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from crystalframer.model.model import Inspection
from crystalframer.viz.colors import ATTENTION_SCALE, attention_color, element_color, element_radius

__all__ = ["SceneAtom", "SceneArrow", "SceneBond", "ScenePolyhedron", "SceneLabel", "ColorBar", "ViewSpec", "Scene",
           "cell_edges", "cell_images", "structure_scene", "attention_scene", "scene_from_structure",
           "add_polyhedra", "polyhedron_faces", "polyhedron_centres", "default_polyhedron_elements", "view_spec", "view_rotation", "rotation_quaternion",
           "picked_atom", "VIEWS", "POLYHEDRA_MODES", "AXIS_COLORS"]

AXIS_COLORS = ("#e41a1c", "#1a9e3a", "#1f5fd1")  # e1 red, e2 green, e3 blue
VIEWS = ("oblique", "a", "b", "c", "e1")
POLYHEDRA_MODES = ("none", "target", "element", "all")
Repeat = tuple[int, int, int]


@dataclass
class SceneAtom:
    element: str
    position: np.ndarray  # (3,) Å
    color: str
    radius: float
    opacity: float = 1.0
    label: str = ""
    role: str = "cell"  # "target" | "neighbor" | "cell" | "ligand"
    index: int = -1  # atom index j in the structure
    image: tuple[int, int, int] = (0, 0, 0)  # lattice translation n relative to the input positions
    weight: float = 0.0  # attention weight received from the target atom (0 when none)
    in_cell: bool = False  # an image inside the drawn cell (or supercell), not a neighbour beyond it
    base_color: str = ""  # the element colour when ``color`` shows something else (attention); "" = ``color``

    @property
    def element_color(self) -> str:
        return self.base_color or self.color


@dataclass
class SceneArrow:
    start: np.ndarray
    end: np.ndarray
    color: str
    label: str = ""
    radius: float = 0.11


@dataclass
class SceneBond:
    start: np.ndarray
    end: np.ndarray
    color: str
    radius: float = 0.08


@dataclass
class ScenePolyhedron:
    center: np.ndarray  # (3,) Å
    vertices: np.ndarray  # (k, 3) Å, the ligand images
    faces: np.ndarray  # (m, 3) vertex indices (triangles); empty for CN ≤ 2
    color: str
    opacity: float = 0.35
    label: str = ""
    index: int = -1  # the centre atom j
    image: tuple[int, int, int] = (0, 0, 0)

    @property
    def n_vertices(self) -> int:
        return int(len(self.vertices))

    def edges(self) -> list[tuple[int, int]]:
        """The unique vertex pairs of the triangle faces (polyhedron edges plus flat-face diagonals)."""
        out = set()
        for tri in np.asarray(self.faces, dtype=int).reshape(-1, 3):
            for a, b in ((tri[0], tri[1]), (tri[1], tri[2]), (tri[2], tri[0])):
                out.add((int(min(a, b)), int(max(a, b))))
        return sorted(out)


@dataclass
class SceneLabel:
    text: str
    position: np.ndarray
    color: str = "#000000"
    size: int = 14
    kind: str = "lattice"  # "lattice" | "axis" | "atom"


@dataclass
class ColorBar:
    """The attention scale: ``colorscale`` [(fraction, colour), ...] from ``vmin`` to ``vmax`` (weights)."""

    title: str
    vmin: float
    vmax: float
    colorscale: list[tuple[float, str]]
    note: str = ""


@dataclass
class ViewSpec:
    """A camera direction: ``direction`` points from the scene centre to the eye (the named axis points at the
    viewer); ``up`` is the screen's up direction. ``name``: "a", "b", "c", "e1"."""

    name: str
    direction: np.ndarray
    up: np.ndarray


@dataclass
class Scene:
    atoms: list[SceneAtom] = field(default_factory=list)
    cell: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    arrows: list[SceneArrow] = field(default_factory=list)
    title: str = ""
    bonds: list[SceneBond] = field(default_factory=list)
    polyhedra: list[ScenePolyhedron] = field(default_factory=list)
    labels: list[SceneLabel] = field(default_factory=list)
    colorbar: ColorBar | None = None
    view: ViewSpec | None = None  # None: the default oblique view
    target: int = -1  # the target atom j (attention scenes), -1 when none

    def center(self) -> np.ndarray:
        pts = [a.position for a in self.atoms] + [p for seg in self.cell for p in seg]
        return np.mean(pts, axis=0) if pts else np.zeros(3)

    def extent(self) -> float:
        pts = np.array([a.position for a in self.atoms] + [p for seg in self.cell for p in seg])
        return float(np.ptp(pts, axis=0).max()) if len(pts) else 1.0

    def legend(self) -> list[tuple[str, str]]:
        """(element, colour) of every element drawn, in order of atomic number."""
        from ase.data import atomic_numbers

        seen: dict[str, str] = {}
        for atom in self.atoms:
            seen.setdefault(atom.element, atom.element_color)
        return sorted(seen.items(), key=lambda kv: atomic_numbers.get(kv[0], 0))


def _repeat(repeat: Sequence[int] | None) -> Repeat:
    r = tuple(int(v) for v in (repeat or (1, 1, 1)))
    if len(r) != 3 or min(r) < 1:
        raise ValueError(f"repeat must be three whole numbers ≥ 1, got {repeat!r}")
    return r  # type: ignore[return-value]


def cell_edges(lattice: np.ndarray, repeat: Sequence[int] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """The edges of the parallelepiped spanned by the lattice rows, from the origin (12 for one cell); with
    ``repeat`` = (na, nb, nc), the edges of every cell of the supercell, each drawn once."""
    lat = np.asarray(lattice, dtype=np.float64)
    rep = _repeat(repeat)
    seen: set[tuple] = set()
    edges = []
    for origin in np.ndindex(*rep):
        for c in np.ndindex(2, 2, 2):
            for axis in range(3):
                if c[axis] == 0:
                    p = tuple(int(o + v) for o, v in zip(origin, c))
                    d = list(p)
                    d[axis] += 1
                    key = (p, tuple(d))
                    if key in seen:
                        continue
                    seen.add(key)
                    edges.append((np.array(p, dtype=np.float64) @ lat, np.array(d, dtype=np.float64) @ lat))
    return edges


def cell_images(positions: np.ndarray, lattice: np.ndarray, tol: float = 0.02,
                repeat: Sequence[int] | None = None) -> list[tuple[int, tuple[int, int, int]]]:
    """(j, n) for every atom j and translation n whose image p_j + nL lies in the cell [−tol, 1+tol]³ (fractional;
    [−tol, n_i + tol] with ``repeat``).

    Includes the images on faces, edges and corners (as crystal drawings do); n is relative to the input
    positions, which may lie outside the cell.
    """
    rep = np.array(_repeat(repeat), dtype=np.float64)
    frac = np.asarray(positions, dtype=np.float64) @ np.linalg.inv(lattice)
    out = []
    shifts = [np.array(s) for s in np.ndindex(*(int(r) + 2 for r in rep))]
    for j, f in enumerate(frac):
        base = -np.floor(f + tol)  # brings f into [−tol, 1 − tol)
        for s in shifts:
            n = base + (s - 1)
            g = f + n
            if np.all(g >= -tol) and np.all(g <= rep + tol):
                out.append((j, tuple(int(v) for v in n)))
    return out


def _symbols(numbers: np.ndarray) -> list[str]:
    from ase.data import chemical_symbols

    return [chemical_symbols[int(z)] for z in numbers]


def _lattice_labels(lattice: np.ndarray, repeat: Repeat) -> list[SceneLabel]:
    lat = np.asarray(lattice, dtype=np.float64)
    out = []
    for k, name in enumerate("abc"):
        # Just past the middle of the axis, nudged outwards, so that the label names the edge, not a corner.
        tip = 0.55 * repeat[k] * lat[k]
        others = lat.sum(axis=0) - lat[k]
        nudge = -0.08 * others / max(np.linalg.norm(others), 1e-9) * min(2.0, float(np.linalg.norm(lat[k])))
        out.append(SceneLabel(text=name, position=tip + nudge, color="#222222", size=16, kind="lattice"))
    return out


def structure_scene(positions: np.ndarray, numbers: np.ndarray, lattice: np.ndarray, title: str = "",
                    radius_scale: float = 0.45, scheme: str = "Jmol", repeat: Sequence[int] | None = None,
                    lattice_labels: bool = True) -> Scene:
    """Unit cell (or ``repeat`` supercell) with every atom and its face/edge/corner images."""
    symbols = _symbols(numbers)
    rep = _repeat(repeat)
    scene = Scene(cell=cell_edges(lattice, rep), title=title)
    for j, n in cell_images(positions, lattice, repeat=rep):
        pos = positions[j] + np.asarray(n, dtype=np.float64) @ lattice
        scene.atoms.append(SceneAtom(element=symbols[j], position=pos, color=element_color(numbers[j], scheme),
                                     radius=radius_scale * element_radius(numbers[j]), opacity=1.0,
                                     label=f"{symbols[j]} {j}", role="cell", index=j, image=n,
                                     in_cell=True))
    if lattice_labels:
        scene.labels += _lattice_labels(lattice, rep)
    return scene


def attention_scene(insp: Inspection, layer: int, atom: int, head: int | None = None, show_frame: bool = True,
                    min_opacity: float = 0.12, neighbor_cutoff: float = 0.01, gamma: float = 0.5,
                    arrow_length: float | None = None, radius_scale: float = 0.32,
                    frames: np.ndarray | None = None, title: str = "", scheme: str = "Jmol",
                    color_by: str = "element", min_size: float = 0.45, repeat: Sequence[int] | None = None,
                    lattice_labels: bool = True) -> Scene:
    """Scene of one layer's attention from ``atom`` (one head, or the head mean when ``head`` is None).

    Atoms shown: the cell (``repeat`` supercell) atoms with their face/edge/corner images, plus every neighbour
    image whose weight is at least ``neighbor_cutoff`` × the largest weight. With r = (w / w_max)^gamma:
    opacity = min_opacity + (1 − min_opacity) r and radius = base × (min_size + (1 − min_size) r), so attention
    reads as both; ``color_by="attention"`` also colours atoms by r on :data:`~crystalframer.viz.colors.
    ATTENTION_SCALE` (else by element in ``scheme``). ``frames``: override (H, 3, 3) frames for the atom (default:
    the layer's frames). The head mean has no frame, so no arrows are drawn for it. The arrows start at the target
    atom, are at least 2.4 Å long (and reach past the nearest neighbour) and are labelled e1, e2, e3 at their tips.
    """
    if color_by not in ("element", "attention"):
        raise ValueError(f"color_by must be 'element' or 'attention', got {color_by!r}")
    rep = _repeat(repeat)
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
    keys = list(dict.fromkeys(cell_images(positions, lattice, repeat=rep)))
    inside = set(keys)
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
    scene = Scene(cell=cell_edges(lattice, rep), title=title or f"layer {layer + 1}, {head_name}", target=int(atom))
    for j, n in keys:
        pos = positions[j] + np.asarray(n, dtype=np.float64) @ lattice
        wk, dk = weights.get((j, n), (0.0, float(np.linalg.norm(pos - positions[atom]))))
        is_target = (j, n) == target_key
        base = radius_scale * element_radius(numbers[j])
        color = element_color(numbers[j], scheme)
        if is_target:
            opacity, role, radius = 1.0, "target", base
        else:
            rel = (min(1.0, wk / wmax) if wmax > 0 else 0.0) ** gamma
            opacity = min_opacity + (1.0 - min_opacity) * rel
            radius = base * (min_size + (1.0 - min_size) * rel)
            role = "neighbor" if wk > 0 else "cell"
            if color_by == "attention":
                color = attention_color(rel)
        label = (f"{symbols[j]} j={j} n=[{n[0]} {n[1]} {n[2]}] d={dk:.3f} Å w={wk:.4f}" if not is_target else
                 f"target {symbols[j]} {j} (self weight {wk:.4f})")
        scene.atoms.append(SceneAtom(element=symbols[j], position=pos, color=color, radius=float(radius),
                                     opacity=float(opacity), label=label, role=role, index=j, image=n, weight=wk,
                                     in_cell=(j, n) in inside, base_color=element_color(numbers[j], scheme)))
    scale = list(ATTENTION_SCALE) if color_by == "attention" else [(0.0, "rgba(90,90,90,%.2f)" % min_opacity),
                                                                   (1.0, "rgba(90,90,90,1.0)")]
    scene.colorbar = ColorBar(title="attention weight", vmin=0.0, vmax=wmax, colorscale=scale,
                              note=f"opacity and size ∝ (w / w_max)^{gamma:g}")
    if lattice_labels:
        scene.labels += _lattice_labels(lattice, rep)
    if show_frame and head is not None:
        frame = frames if frames is not None else lay.frames[atom, head] if lay.frames is not None else None
        if frame is not None:
            frame = np.asarray(frame)
            if frame.ndim == 3:
                frame = frame[head]
            nearest = float(dist[dist > 1e-6].min()) if np.any(dist > 1e-6) else 2.0
            length = arrow_length or max(2.4, 1.3 * nearest)
            start = positions[atom]
            for k in range(3):
                end = start + length * frame[k]
                scene.arrows.append(SceneArrow(start=start, end=end, color=AXIS_COLORS[k], label=f"e{k + 1}",
                                               radius=0.12))
                scene.labels.append(SceneLabel(text=f"e{k + 1}", position=start + (length + 0.35) * frame[k],
                                               color=AXIS_COLORS[k], size=18, kind="axis"))
    return scene


def scene_from_structure(structure, title: str = "", scheme: str = "Jmol", repeat: Sequence[int] | None = None,
                         lattice_labels: bool = True) -> Scene:
    """:func:`structure_scene` of a pymatgen/ASE structure (majority species shown on disordered sites)."""
    from crystalframer.structure import to_arrays

    arrays = to_arrays(structure, max_atoms=10**6)
    return structure_scene(arrays.positions, arrays.atomic_numbers, arrays.lattice, title=title, scheme=scheme,
                           repeat=repeat, lattice_labels=lattice_labels)


# ----------------------------------------------------------------------------------------------------------------
# coordination polyhedra
# ----------------------------------------------------------------------------------------------------------------
def polyhedron_faces(vertices: np.ndarray) -> np.ndarray:
    """Triangles (m, 3) of the convex hull of ``vertices`` (k, 3); a fan for coplanar ones (square planar, CN 3);
    none for k ≤ 2."""
    pts = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    k = len(pts)
    if k <= 2:
        return np.zeros((0, 3), dtype=int)
    centred = pts - pts.mean(axis=0)
    _, s, vt = np.linalg.svd(centred)
    if k == 3 or s[2] < 1e-3 * max(s[0], 1e-9):  # flat: order the points by angle in their plane, fan them
        ang = np.arctan2(centred @ vt[1], centred @ vt[0])
        order = np.argsort(ang)
        return np.array([[order[0], order[i], order[i + 1]] for i in range(1, k - 1)], dtype=int)
    from scipy.spatial import ConvexHull

    return np.asarray(ConvexHull(pts).simplices, dtype=int)


def _env_ok(env: Any) -> bool:
    return env is not None and getattr(env, "cn", 0) > 0 and len(np.asarray(env.bond_vectors)) == env.cn


def add_polyhedra(scene: Scene, envs: Mapping[int, Any], centres: Iterable[tuple[int, tuple[int, int, int]]] |
                  None = None, opacity: float = 0.35, bonds: bool = True, ligand_atoms: bool = True,
                  max_cn: int = 12, scheme: str = "Jmol", ligand_radius: float | None = None,
                  numbers: Mapping[str, int] | None = None) -> Scene:
    """Add translucent coordination polyhedra (and centre→ligand bonds) to ``scene``, in place; returns it.

    ``envs``: atom index j → :class:`~crystalframer.analysis.compare.CoordinationEnv` (CrystalNN ligands with
    their bond vectors); the polyhedron of an atom drawn at p is p + the bond vectors, so every image of j gets
    its own. ``centres``: the (j, image) scene atoms to decorate (default: every scene atom whose j is in
    ``envs``). Ligand images that are not in the scene yet are added (role "ligand", opaque, so the vertices show).
    Atoms with more than ``max_cn`` ligands get bonds only.
    """
    wanted = None if centres is None else {(int(j), tuple(int(v) for v in n)) for j, n in centres}
    present = np.array([a.position for a in scene.atoms]) if scene.atoms else np.zeros((0, 3))
    by_key = {(a.index, a.image): a for a in scene.atoms}
    added = []
    for key, atom in list(by_key.items()):
        if atom.role == "ligand" or atom.index not in envs or (wanted is not None and key not in wanted):
            continue
        env = envs[atom.index]
        if not _env_ok(env):
            continue
        center = np.asarray(atom.position, dtype=np.float64)
        verts = center[None, :] + np.asarray(env.bond_vectors, dtype=np.float64)
        color = atom.element_color
        if env.cn <= max_cn and env.cn >= 3:
            scene.polyhedra.append(ScenePolyhedron(center=center, vertices=verts, faces=polyhedron_faces(verts),
                                                   color=color, opacity=opacity, index=atom.index, image=atom.image,
                                                   label=f"{atom.element} {atom.index}: CN {env.cn}, "
                                                         f"{getattr(env, 'geometry', '')}".rstrip(", ")))
        elements = list(getattr(env, "ligands", {}).get("element", [])) if hasattr(env, "ligands") else []
        for k, v in enumerate(verts):
            lig_el = elements[k] if k < len(elements) else atom.element
            lig_color = _ligand_color(scene, lig_el, scheme)
            if bonds:
                mid = 0.5 * (center + v)
                scene.bonds.append(SceneBond(start=center, end=mid, color=color))
                scene.bonds.append(SceneBond(start=mid, end=v, color=lig_color))
            if ligand_atoms:
                pool = np.vstack([present] + [a.position[None, :] for a in added]) if (len(present) or added) \
                    else np.zeros((0, 3))
                if not len(pool) or np.min(np.linalg.norm(pool - v[None, :], axis=1)) > 0.05:
                    radius = ligand_radius if ligand_radius is not None else _ligand_radius(scene, lig_el)
                    lig = SceneAtom(element=lig_el, position=v, color=lig_color, radius=radius, opacity=1.0,
                                    label=f"{lig_el} (ligand of {atom.element} {atom.index})", role="ligand")
                    added.append(lig)
    scene.atoms += added
    return scene


def polyhedron_centres(scene: Scene, mode: str, elements: Iterable[str] = ()) -> list[tuple[int, tuple]]:
    """The (j, image) scene atoms that get a polyhedron: ``mode`` "none"; "target" (the target atom); "element"
    (every atom in the cell of the target's element, or of ``elements`` when given); "all" (every atom in the
    cell)."""
    if mode not in POLYHEDRA_MODES:
        raise ValueError(f"polyhedra mode must be one of {POLYHEDRA_MODES}, got {mode!r}")
    if mode == "none":
        return []
    targets = [a for a in scene.atoms if a.role == "target"]
    if mode == "target":
        return [(a.index, a.image) for a in targets]
    wanted = set(elements) or {a.element for a in targets}
    return [(a.index, a.image) for a in scene.atoms
            if (a.in_cell or a.role == "target") and (mode == "all" or a.element in wanted)]


def default_polyhedron_elements(envs: Mapping[int, Any]) -> list[str]:
    """Elements whose polyhedra a crystal drawing shows by default (as VESTA users do): centres with 4 to 8
    ligands, all of other elements, and less electronegative than them (cations in anion polyhedra)."""
    from pymatgen.core import Element

    def chi(symbol: str) -> float:
        try:
            return float(Element(symbol).X)
        except Exception:
            return float("nan")

    out = []
    for env in envs.values():
        if not _env_ok(env) or not 4 <= env.cn <= 8:
            continue
        ligands = set(env.ligands["element"]) if hasattr(env, "ligands") and len(env.ligands) else set()
        if not ligands or env.element in ligands:
            continue
        if all(chi(env.element) < chi(x) for x in ligands) and env.element not in out:
            out.append(env.element)
    return out


def _ligand_color(scene: Scene, element: str, scheme: str) -> str:
    for a in scene.atoms:
        if a.element == element:
            return a.element_color
    from ase.data import atomic_numbers

    return element_color(atomic_numbers.get(element, 0), scheme)


def _ligand_radius(scene: Scene, element: str) -> float:
    radii = [a.radius for a in scene.atoms if a.element == element and a.role in ("cell", "target")]
    if radii:
        return float(max(radii))
    from ase.data import atomic_numbers

    return 0.32 * element_radius(atomic_numbers.get(element, 0))


# ----------------------------------------------------------------------------------------------------------------
# views and picking
# ----------------------------------------------------------------------------------------------------------------
def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / max(float(np.linalg.norm(v)), 1e-12)


def view_spec(lattice: np.ndarray, along: str, frame: np.ndarray | None = None) -> ViewSpec | None:
    """The camera for looking along a lattice vector ("a", "b", "c") or the frame's e1 ("e1", needs ``frame``,
    rows e1, e2, e3); None for "oblique" (the renderers' default). The named axis points at the viewer (as in
    VESTA); up is c for a and b, b for c, and e3 for e1 (made perpendicular to the viewing direction)."""
    if along in (None, "", "oblique"):
        return None
    lat = np.asarray(lattice, dtype=np.float64)
    if along in ("a", "b", "c"):
        k = "abc".index(along)
        direction = _unit(lat[k])
        up = lat[1] if along == "c" else lat[2]
    elif along == "e1":
        if frame is None:
            return None
        frame = np.asarray(frame, dtype=np.float64)
        direction, up = _unit(frame[0]), frame[2]
    else:
        raise ValueError(f"view must be one of {VIEWS}, got {along!r}")
    up = np.asarray(up, dtype=np.float64) - np.dot(up, direction) * direction
    if np.linalg.norm(up) < 1e-6:  # up parallel to the direction: any perpendicular will do
        trial = np.eye(3)[int(np.argmin(np.abs(direction)))]
        up = trial - np.dot(trial, direction) * direction
    return ViewSpec(name=along, direction=direction, up=_unit(up))


def view_rotation(view: ViewSpec) -> np.ndarray:
    """The rotation R (rows: screen right, up, towards the viewer) taking model coordinates to screen ones."""
    z = _unit(view.direction)
    y = _unit(view.up)
    x = np.cross(y, z)
    return np.vstack([x, y, z])


def rotation_quaternion(rot: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) unit quaternion of a proper rotation matrix."""
    m = np.asarray(rot, dtype=np.float64)
    tr = float(np.trace(m))
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        w, x, y, z = 0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        w, x, y, z = (m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        w, x, y, z = (m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        w, x, y, z = (m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s
    q = np.array([x, y, z, w])
    q /= np.linalg.norm(q)
    return tuple(float(v) for v in q)  # type: ignore[return-value]


def picked_atom(scene: Scene, pick: Any, tol: float = 0.05) -> int | None:
    """The structure atom j of a click on ``scene``: ``pick`` is a scene-atom index (3Dmol.js), a Plotly selection
    point (a dict with ``customdata`` = scene-atom index, or x, y, z), or a Streamlit selection state holding such
    points (the first one counts). None when nothing (or a ligand added for a polyhedron) was picked."""
    if pick is None:
        return None
    if isinstance(pick, Mapping):
        sel = pick.get("selection", pick)
        points = sel.get("points") if isinstance(sel, Mapping) else None
        if points is not None:
            return picked_atom(scene, points[0], tol) if len(points) else None
        custom = pick.get("customdata")
        if isinstance(custom, (list, tuple)):
            custom = custom[0] if custom else None
        if custom is not None:
            return picked_atom(scene, int(custom), tol)
        if all(k in pick for k in ("x", "y", "z")):
            if not scene.atoms:
                return None
            p = np.array([float(pick["x"]), float(pick["y"]), float(pick["z"])])
            d = np.linalg.norm(np.array([a.position for a in scene.atoms]) - p[None, :], axis=1)
            k = int(np.argmin(d))
            return picked_atom(scene, k, tol) if d[k] <= tol else None
        return None
    try:
        k = int(pick)
    except (TypeError, ValueError):
        return None
    if not 0 <= k < len(scene.atoms):
        return None
    j = scene.atoms[k].index
    return int(j) if j >= 0 else None
