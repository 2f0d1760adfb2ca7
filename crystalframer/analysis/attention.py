"""Tables and exports built from :meth:`CrystalFramer.inspect` results (attention weights, σ, frames)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from crystalframer.model.model import Inspection, LayerInspection

__all__ = ["symbols_of", "head_weights", "atom_edge_indices", "neighbor_table", "sigma_table", "frame_of",
           "attention_records", "frame_records", "inspection_to_dict", "inspection_to_json", "image_key"]

AXES = ("e1", "e2", "e3")


def symbols_of(numbers: np.ndarray) -> list[str]:
    from ase.data import chemical_symbols

    return [chemical_symbols[int(z)] for z in numbers]


def _layer(insp: Inspection, layer: int) -> LayerInspection:
    if not 0 <= layer < len(insp.layers):
        raise IndexError(f"layer {layer} out of range (the model has {len(insp.layers)} layers)")
    return insp.layers[layer]


def head_weights(layer: LayerInspection, head: int | None) -> np.ndarray:
    """(E,) weights of one head, or the mean over heads when ``head`` is None (still sums to 1 per atom)."""
    if head is None:
        return layer.attention.mean(axis=1)
    if not 0 <= head < layer.attention.shape[1]:
        raise IndexError(f"head {head} out of range (the model has {layer.attention.shape[1]} heads)")
    return layer.attention[:, head]


def atom_edge_indices(layer: LayerInspection, atom: int) -> np.ndarray:
    idx = np.flatnonzero(layer.edges[:, 0] == atom)
    if idx.size == 0:
        raise IndexError(f"atom {atom} has no edges (is it in the structure?)")
    return idx


def image_key(j: int, image: Any) -> tuple[int, int, int, int]:
    n = np.asarray(image, dtype=np.int64).reshape(3)
    return (int(j), int(n[0]), int(n[1]), int(n[2]))


def neighbor_table(insp: Inspection, layer: int, atom: int, head: int | None = None, top_k: int | None = 12,
                   include_self: bool = True) -> pd.DataFrame:
    """The image-edges of ``atom`` in ``layer`` sorted by attention weight (one head or the head mean).

    Columns: rank, j, element, image (n as "a b c"), distance (Å), weight, cumulative weight, x, y, z (Cartesian
    position of the neighbour image = p_i + r).
    """
    lay = _layer(insp, layer)
    idx = atom_edge_indices(lay, atom)
    w = head_weights(lay, head)[idx]
    vec = lay.vectors[idx]
    dist = np.linalg.norm(vec, axis=1)
    if not include_self:
        keep = dist > 1e-6
        idx, w, vec, dist = idx[keep], w[keep], vec[keep], dist[keep]
    order = np.lexsort((dist, -w))
    if top_k is not None:
        order = order[:top_k]
    j = lay.edges[idx[order], 1]
    symbols = symbols_of(insp.atomic_numbers)
    pos = insp.positions[atom] + vec[order]
    images = lay.images[idx[order]]
    return pd.DataFrame({
        "rank": np.arange(1, len(order) + 1),
        "j": j,
        "element": [symbols[k] for k in j],
        "image": [" ".join(str(int(v)) for v in n) for n in images],
        "distance (Å)": dist[order],
        "weight": w[order],
        "cumulative": np.cumsum(w[order]),
        "x": pos[:, 0], "y": pos[:, 1], "z": pos[:, 2],
    })


def sigma_table(insp: Inspection, atom: int) -> pd.DataFrame:
    """σ (Å) of ``atom`` per layer (rows) and head (columns)."""
    data = np.stack([lay.sigma[atom] for lay in insp.layers])
    return pd.DataFrame(data, index=[f"layer {k + 1}" for k in range(len(insp.layers))],
                        columns=[f"head {h}" for h in range(data.shape[1])])


def frame_of(insp: Inspection, layer: int, atom: int, head: int | None = None) -> np.ndarray | None:
    """(3, 3) rows e1, e2, e3 of one head, or None (no frames, or ``head`` None = head mean has no frame)."""
    lay = _layer(insp, layer)
    if lay.frames is None or head is None:
        return None
    return lay.frames[atom, head]


def attention_records(insp: Inspection, atoms: list[int] | None = None,
                      layers: list[int] | None = None) -> pd.DataFrame:
    """Long table of every image-edge: layer, i, j, elements, image n, r (Å), distance, one weight column per head."""
    symbols = symbols_of(insp.atomic_numbers)
    frames = []
    for k, lay in enumerate(insp.layers):
        if layers is not None and k not in layers:
            continue
        mask = np.ones(len(lay.edges), dtype=bool) if atoms is None else np.isin(lay.edges[:, 0], atoms)
        e = lay.edges[mask]
        df = pd.DataFrame({
            "layer": k + 1, "i": e[:, 0], "element_i": [symbols[a] for a in e[:, 0]],
            "j": e[:, 1], "element_j": [symbols[a] for a in e[:, 1]],
            "n_a": lay.images[mask, 0], "n_b": lay.images[mask, 1], "n_c": lay.images[mask, 2],
            "r_x": lay.vectors[mask, 0], "r_y": lay.vectors[mask, 1], "r_z": lay.vectors[mask, 2],
            "distance": np.linalg.norm(lay.vectors[mask], axis=1),
        })
        for h in range(lay.attention.shape[1]):
            df[f"w_head{h}"] = lay.attention[mask, h]
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def frame_records(insp: Inspection, atoms: list[int] | None = None) -> pd.DataFrame:
    """Long table of frames: layer, atom, element, head, σ, e1x … e3z. Empty when the model has no frames."""
    symbols = symbols_of(insp.atomic_numbers)
    rows = []
    for k, lay in enumerate(insp.layers):
        n_atoms, n_heads = lay.sigma.shape
        for i in range(n_atoms):
            if atoms is not None and i not in atoms:
                continue
            for h in range(n_heads):
                row: dict[str, Any] = {"layer": k + 1, "atom": i, "element": symbols[i], "head": h,
                                       "sigma": float(lay.sigma[i, h])}
                if lay.frames is not None:
                    for a, name in enumerate(AXES):
                        for c, comp in enumerate("xyz"):
                            row[f"{name}{comp}"] = float(lay.frames[i, h, a, c])
                rows.append(row)
    return pd.DataFrame(rows)


def inspection_to_dict(insp: Inspection, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """JSON-ready dict of an inspection (arrays as nested lists)."""
    return {
        "meta": meta or {},
        "prediction": insp.prediction.tolist(),
        "atomic_numbers": insp.atomic_numbers.tolist(),
        "elements": symbols_of(insp.atomic_numbers),
        "positions": insp.positions.tolist(),
        "lattice": insp.lattice.tolist(),
        "layers": [{
            "sigma": lay.sigma.tolist(),
            "edges": lay.edges.tolist(),
            "images": lay.images.tolist(),
            "vectors": lay.vectors.tolist(),
            "attention": lay.attention.tolist(),
            "frames": None if lay.frames is None else lay.frames.tolist(),
        } for lay in insp.layers],
    }


def inspection_to_json(insp: Inspection, meta: dict[str, Any] | None = None) -> str:
    return json.dumps(inspection_to_dict(insp, meta), default=float)
