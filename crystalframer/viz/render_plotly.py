"""Draw scenes with Plotly (Scatter3d + Cone): needs no external JavaScript, works fully offline.

Plotly's Scatter3d takes one opacity per trace, so atoms are grouped into a few opacity levels (one trace each);
colours, sizes and hover text stay per atom.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from crystalframer.viz.scene import Scene

__all__ = ["scene_figure", "grid_figure", "add_scene"]

OPACITY_LEVELS = 6


def _level(opacity: float) -> float:
    return float(np.clip(np.ceil(opacity * OPACITY_LEVELS) / OPACITY_LEVELS, 1.0 / OPACITY_LEVELS, 1.0))


def add_scene(fig: go.Figure, scene: Scene, row: int | None = None, col: int | None = None,
              marker_scale: float = 55.0, showlegend: bool = True) -> None:
    where = {"row": row, "col": col} if row is not None else {}
    xs, ys, zs = [], [], []
    for p0, p1 in scene.cell:
        xs += [p0[0], p1[0], None]
        ys += [p0[1], p1[1], None]
        zs += [p0[2], p1[2], None]
    if xs:
        fig.add_trace(go.Scatter3d(x=xs, y=ys, z=zs, mode="lines", line={"color": "#333333", "width": 3},
                                   hoverinfo="skip", showlegend=False, name="cell"), **where)
    groups: dict[float, list[int]] = {}
    for k, atom in enumerate(scene.atoms):
        groups.setdefault(_level(atom.opacity), []).append(k)
    for level in sorted(groups):
        idx = groups[level]
        pos = np.array([scene.atoms[k].position for k in idx])
        fig.add_trace(go.Scatter3d(
            x=pos[:, 0], y=pos[:, 1], z=pos[:, 2], mode="markers",
            marker={"size": [marker_scale * scene.atoms[k].radius for k in idx],
                    "color": [scene.atoms[k].color for k in idx], "opacity": level,
                    "line": {"width": 0}},
            text=[scene.atoms[k].label for k in idx], hovertemplate="%{text}<extra></extra>",
            name=f"atoms (opacity {level:.2f})", showlegend=False), **where)
    for arrow in scene.arrows:
        d = np.asarray(arrow.end) - np.asarray(arrow.start)
        shaft_end = np.asarray(arrow.start) + 0.8 * d
        fig.add_trace(go.Scatter3d(x=[arrow.start[0], shaft_end[0]], y=[arrow.start[1], shaft_end[1]],
                                   z=[arrow.start[2], shaft_end[2]], mode="lines",
                                   line={"color": arrow.color, "width": 9}, name=arrow.label,
                                   hoverinfo="name", showlegend=showlegend), **where)
        fig.add_trace(go.Cone(x=[shaft_end[0]], y=[shaft_end[1]], z=[shaft_end[2]], u=[d[0]], v=[d[1]], w=[d[2]],
                              sizemode="absolute", sizeref=0.25 * float(np.linalg.norm(d)), anchor="tail",
                              colorscale=[[0, arrow.color], [1, arrow.color]], showscale=False,
                              hoverinfo="skip", name=arrow.label), **where)


CAMERA = {"eye": {"x": 2.1, "y": 1.0, "z": 0.75}, "up": {"x": 0, "y": 0, "z": 1}}


def _axis_layout(distance: float = 1.0, bounds: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Hidden axes, true proportions, and an oblique view (Plotly's default looks down the body diagonal, which
    folds a cubic cell into a hexagon). ``distance`` scales the camera distance; ``bounds`` (low, high corners in Å)
    fixes the axis ranges so that several panels share one scale."""
    blank = {"visible": False, "showbackground": False}
    eye = {k: v * distance for k, v in CAMERA["eye"].items()}
    layout = {"xaxis": dict(blank), "yaxis": dict(blank), "zaxis": dict(blank), "aspectmode": "data",
              "camera": {"eye": eye, "up": CAMERA["up"]}}
    if bounds is not None:
        low, high = bounds
        span = np.maximum(high - low, 1e-6)
        for axis, lo, hi in zip(("xaxis", "yaxis", "zaxis"), low, high):
            layout[axis]["range"] = [float(lo), float(hi)]
        layout["aspectmode"] = "manual"
        layout["aspectratio"] = {k: float(v) for k, v in zip("xyz", span / span.max())}
    return layout


def _common_bounds(scenes: Sequence[Scene], pad: float = 0.6) -> tuple[np.ndarray, np.ndarray] | None:
    pts = [a.position for s in scenes for a in s.atoms] + [p for s in scenes for seg in s.cell for p in seg]
    if not pts:
        return None
    arr = np.asarray(pts, dtype=np.float64)
    return arr.min(0) - pad, arr.max(0) + pad


def scene_figure(scene: Scene, height: int = 520) -> go.Figure:
    fig = go.Figure()
    add_scene(fig, scene)
    fig.update_layout(scene=_axis_layout(), height=height, margin={"l": 0, "r": 0, "t": 30, "b": 0},
                      title={"text": scene.title, "x": 0.02, "font": {"size": 13}}, legend={"x": 0.0, "y": 0.0},
                      uirevision="keep")
    return fig


def grid_figure(scenes: Sequence[Scene], height: int = 320) -> go.Figure:
    n = max(1, len(scenes))
    fig = make_subplots(rows=1, cols=n, specs=[[{"type": "scene"}] * n],
                        subplot_titles=[s.title for s in scenes], horizontal_spacing=0.01)
    for c, scene in enumerate(scenes, start=1):
        add_scene(fig, scene, row=1, col=c, marker_scale=32.0, showlegend=(c == 1))
    bounds = _common_bounds(scenes)  # one scale for every panel, so layers compare at a glance
    layout = {("scene" if c == 1 else f"scene{c}"): _axis_layout(0.6, bounds) for c in range(1, n + 1)}
    fig.update_layout(height=height, margin={"l": 0, "r": 0, "t": 30, "b": 0}, **layout)
    return fig
