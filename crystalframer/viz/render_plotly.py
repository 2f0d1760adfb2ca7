"""Draw scenes with Plotly (Scatter3d, Mesh3d, Cone): needs no external JavaScript, works fully offline.

Plotly's Scatter3d takes one opacity per trace, so atoms are grouped into a few opacity levels (one trace each);
colours, sizes and hover text stay per atom, and every atom marker carries its scene-atom index as ``customdata``
(what :func:`~crystalframer.viz.scene.picked_atom` reads from a click). Polyhedra are translucent Mesh3d
surfaces with their edges; the element legend, the attention colour bar, lattice and axis labels are traces too.
PNG export is Plotly's own modebar camera button, configured by :func:`png_config` (client-side: no kaleido).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from crystalframer.viz.scene import Scene

__all__ = ["scene_figure", "grid_figure", "add_scene", "png_config", "camera_for", "layer_head_grid_figure",
           "project_scene"]

OPACITY_LEVELS = 6


def _level(opacity: float) -> float:
    return float(np.clip(np.ceil(opacity * OPACITY_LEVELS) / OPACITY_LEVELS, 1.0 / OPACITY_LEVELS, 1.0))


def png_config(filename: str = "crystalframer_scene", scale: int = 2) -> dict:
    """Plotly ``config`` whose modebar camera button saves a PNG named ``filename``.png (drawn in the browser)."""
    return {"displaylogo": False, "displayModeBar": True,
            "toImageButtonOptions": {"format": "png", "filename": filename, "scale": scale}}


def _lines(segments) -> tuple[list, list, list]:
    xs, ys, zs = [], [], []
    for p0, p1 in segments:
        xs += [p0[0], p1[0], None]
        ys += [p0[1], p1[1], None]
        zs += [p0[2], p1[2], None]
    return xs, ys, zs


def add_scene(fig: go.Figure, scene: Scene, row: int | None = None, col: int | None = None,
              marker_scale: float = 55.0, showlegend: bool = True, colorbar: bool = True) -> None:
    where = {"row": row, "col": col} if row is not None else {}
    if scene.cell:
        xs, ys, zs = _lines(scene.cell)
        fig.add_trace(go.Scatter3d(x=xs, y=ys, z=zs, mode="lines", line={"color": "#333333", "width": 3},
                                   hoverinfo="skip", showlegend=False, name="cell"), **where)
    for poly in scene.polyhedra:
        if len(poly.faces):
            v, f = np.asarray(poly.vertices), np.asarray(poly.faces)
            fig.add_trace(go.Mesh3d(x=v[:, 0], y=v[:, 1], z=v[:, 2], i=f[:, 0], j=f[:, 1], k=f[:, 2],
                                    color=poly.color, opacity=poly.opacity, flatshading=True, name="polyhedron",
                                    hovertext=poly.label, hoverinfo="text", showlegend=False,
                                    lighting={"ambient": 0.7, "diffuse": 0.5, "specular": 0.1}), **where)
            xs, ys, zs = _lines([(v[a], v[b]) for a, b in poly.edges()])
            fig.add_trace(go.Scatter3d(x=xs, y=ys, z=zs, mode="lines", line={"color": "#555555", "width": 2},
                                       hoverinfo="skip", showlegend=False, name="polyhedron edges"), **where)
    colors = {}
    for bond in scene.bonds:
        colors.setdefault(bond.color, []).append((bond.start, bond.end))
    for color, segments in colors.items():
        xs, ys, zs = _lines(segments)
        fig.add_trace(go.Scatter3d(x=xs, y=ys, z=zs, mode="lines", line={"color": color, "width": 7},
                                   hoverinfo="skip", showlegend=False, name="bonds"), **where)
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
            customdata=idx, text=[scene.atoms[k].label for k in idx], hovertemplate="%{text}<extra></extra>",
            name=f"atoms (opacity {level:.2f})", showlegend=False), **where)
    for arrow in scene.arrows:
        d = np.asarray(arrow.end) - np.asarray(arrow.start)
        shaft_end = np.asarray(arrow.start) + 0.8 * d
        fig.add_trace(go.Scatter3d(x=[arrow.start[0], shaft_end[0]], y=[arrow.start[1], shaft_end[1]],
                                   z=[arrow.start[2], shaft_end[2]], mode="lines",
                                   line={"color": arrow.color, "width": 10}, name=arrow.label,
                                   hoverinfo="name", showlegend=showlegend, legendgroup="axes"), **where)
        fig.add_trace(go.Cone(x=[shaft_end[0]], y=[shaft_end[1]], z=[shaft_end[2]], u=[d[0]], v=[d[1]], w=[d[2]],
                              sizemode="absolute", sizeref=0.25 * float(np.linalg.norm(d)), anchor="tail",
                              colorscale=[[0, arrow.color], [1, arrow.color]], showscale=False,
                              hoverinfo="skip", name=arrow.label), **where)
    if scene.labels:
        pos = np.array([lab.position for lab in scene.labels])
        fig.add_trace(go.Scatter3d(x=pos[:, 0], y=pos[:, 1], z=pos[:, 2], mode="text",
                                   text=[f"<b>{lab.text}</b>" for lab in scene.labels],
                                   textfont={"color": [lab.color for lab in scene.labels],
                                             "size": [lab.size for lab in scene.labels]},
                                   hoverinfo="skip", showlegend=False, name="labels"), **where)
    if showlegend:
        for element, color in scene.legend():
            fig.add_trace(go.Scatter3d(x=[None], y=[None], z=[None], mode="markers", name=element,
                                       marker={"size": 10, "color": color}, legendgroup="elements",
                                       hoverinfo="skip", showlegend=True), **where)
    if colorbar and scene.colorbar is not None:
        cb = scene.colorbar
        fig.add_trace(go.Scatter3d(
            x=[None], y=[None], z=[None], mode="markers", showlegend=False, hoverinfo="skip", name=cb.title,
            marker={"color": [cb.vmin], "cmin": cb.vmin, "cmax": cb.vmax if cb.vmax > cb.vmin else cb.vmin + 1e-9,
                    "colorscale": [[float(x), c] for x, c in cb.colorscale], "showscale": True,
                    "colorbar": {"title": {"text": cb.title, "side": "right"}, "thickness": 14, "len": 0.6,
                                 "x": 1.0, "tickformat": ".3f"}}), **where)


# An oblique view (as in the paper's figures), close enough that the cell fills the panel (|eye| ≈ 1.5).
CAMERA = {"eye": {"x": 1.3, "y": 0.62, "z": 0.46}, "up": {"x": 0, "y": 0, "z": 1}}
EYE_DISTANCE = 1.5


def camera_for(scene: Scene, distance: float = 1.0) -> dict:
    """Plotly camera: the scene's :class:`~crystalframer.viz.scene.ViewSpec` (orthographic, the named axis at the
    viewer) or the default oblique view."""
    if scene.view is None:
        return {"eye": {k: v * distance for k, v in CAMERA["eye"].items()}, "up": CAMERA["up"],
                "projection": {"type": "perspective"}}
    d = EYE_DISTANCE * distance * np.asarray(scene.view.direction, dtype=np.float64)
    u = np.asarray(scene.view.up, dtype=np.float64)
    return {"eye": {"x": float(d[0]), "y": float(d[1]), "z": float(d[2])},
            "up": {"x": float(u[0]), "y": float(u[1]), "z": float(u[2])},
            "center": {"x": 0, "y": 0, "z": 0}, "projection": {"type": "orthographic"}}


def _axis_layout(distance: float = 1.0, bounds: tuple[np.ndarray, np.ndarray] | None = None,
                 scene: Scene | None = None) -> dict:
    """Hidden axes, true proportions, and an oblique view (Plotly's default looks down the body diagonal, which
    folds a cubic cell into a hexagon) or the scene's own view. ``distance`` scales the camera distance;
    ``bounds`` (low, high corners in Å) fixes the axis ranges so that several panels share one scale."""
    blank = {"visible": False, "showbackground": False}
    camera = camera_for(scene, distance) if scene is not None else camera_for(Scene(), distance)
    layout = {"xaxis": dict(blank), "yaxis": dict(blank), "zaxis": dict(blank), "aspectmode": "cube",
              "camera": camera}
    if bounds is None and scene is not None:
        bounds = _common_bounds([scene])
    if bounds is not None:
        low, high = bounds
        # A cube around the scene: equal scales on x, y and z, so any viewing direction keeps true proportions.
        mid, half = 0.5 * (low + high), 0.5 * float(np.max(high - low))
        for axis, m in zip(("xaxis", "yaxis", "zaxis"), mid):
            layout[axis]["range"] = [float(m - half), float(m + half)]
    return layout


def _common_bounds(scenes: Sequence[Scene], pad: float = 0.6) -> tuple[np.ndarray, np.ndarray] | None:
    pts = ([a.position for s in scenes for a in s.atoms] + [p for s in scenes for seg in s.cell for p in seg]
           + [a.end for s in scenes for a in s.arrows] + [lab.position for s in scenes for lab in s.labels])
    if not pts:
        return None
    arr = np.asarray(pts, dtype=np.float64)
    return arr.min(0) - pad, arr.max(0) + pad


def scene_figure(scene: Scene, height: int = 520) -> go.Figure:
    fig = go.Figure()
    add_scene(fig, scene)
    fig.update_layout(scene=_axis_layout(scene=scene), height=height, margin={"l": 0, "r": 0, "t": 30, "b": 0},
                      title={"text": scene.title, "x": 0.02, "font": {"size": 13}},
                      legend={"x": 0.0, "y": 0.0, "itemsizing": "constant", "orientation": "h"},
                      uirevision="keep" if scene.view is None else f"view-{scene.view.name}",
                      clickmode="event+select")
    return fig


def grid_figure(scenes: Sequence[Scene], height: int = 320, cols: int | None = None,
                titles: Sequence[str] | None = None) -> go.Figure:
    """Scenes in a grid (one row by default; ``cols`` per row), on one common scale."""
    n = max(1, len(scenes))
    cols = n if cols is None else max(1, min(cols, n))
    rows = -(-n // cols)
    fig = make_subplots(rows=rows, cols=cols, specs=[[{"type": "scene"}] * cols for _ in range(rows)],
                        subplot_titles=list(titles) if titles is not None else [s.title for s in scenes],
                        horizontal_spacing=0.01, vertical_spacing=0.03)
    for c, scene in enumerate(scenes):
        add_scene(fig, scene, row=c // cols + 1, col=c % cols + 1, marker_scale=32.0, showlegend=(c == 0),
                  colorbar=(c == 0))
    bounds = _common_bounds(scenes)  # one scale for every panel, so layers compare at a glance
    layout = {("scene" if c == 0 else f"scene{c + 1}"): _axis_layout(1.0, bounds, scene)
              for c, scene in enumerate(scenes)}
    fig.update_layout(height=height * rows, margin={"l": 0, "r": 0, "t": 30, "b": 0},
                      legend={"orientation": "h", "x": 0.0, "y": -0.02}, **layout)
    return fig


def _oblique_rotation() -> np.ndarray:
    """Rows: screen right, up, towards the viewer, for the default oblique camera (:data:`CAMERA`)."""
    from crystalframer.viz.scene import ViewSpec, view_rotation

    eye = np.array([CAMERA["eye"][k] for k in "xyz"], dtype=np.float64)
    up = np.array([0.0, 0.0, 1.0])
    eye /= np.linalg.norm(eye)
    return view_rotation(ViewSpec(name="oblique", direction=eye, up=up - up.dot(eye) * eye))


def project_scene(scene: Scene) -> dict[str, np.ndarray]:
    """The scene seen along its view (or the oblique one), orthographic: atom (x, y, depth) in screen Å about the
    scene centre, and the arrows' 2D end points. Used by :func:`layer_head_grid_figure`."""
    from crystalframer.viz.scene import view_rotation

    rot = view_rotation(scene.view) if scene.view is not None else _oblique_rotation()
    centre = scene.center()
    atoms = (np.array([a.position for a in scene.atoms]) - centre) @ rot.T if scene.atoms else np.zeros((0, 3))
    arrows = np.array([[(np.asarray(a.start) - centre) @ rot.T, (np.asarray(a.end) - centre) @ rot.T]
                       for a in scene.arrows]).reshape(-1, 2, 3)
    return {"atoms": atoms, "arrows": arrows, "rotation": rot, "centre": centre}


def layer_head_grid_figure(scenes: Sequence[Sequence[Scene]], row_titles: Sequence[str] = (),
                           col_titles: Sequence[str] = (), panel_px: int = 150,
                           marker_scale: float | None = None) -> go.Figure:
    """Small multiples, ``scenes[row][col]`` (rows = layers, columns = heads), as 2D orthographic projections on
    one shared scale: cell edges, polyhedron edges, atoms (attention as opacity and size, drawn back to front) and
    the frame axes. 2D SVG panels, not one WebGL scene each, so a 4 × 8 grid draws at once; each atom carries
    (panel, scene-atom index) as ``customdata``."""
    n_rows = len(scenes)
    n_cols = max((len(r) for r in scenes), default=1)
    marker_scale = 14.0 * panel_px / 150 if marker_scale is None else marker_scale  # atoms grow with the panels
    fig = make_subplots(rows=max(1, n_rows), cols=max(1, n_cols), horizontal_spacing=0.004, vertical_spacing=0.01,
                        column_titles=list(col_titles) or None, row_titles=list(row_titles) or None)
    extent = 1.0
    projected = [[project_scene(s) for s in row] for row in scenes]
    for r, row in enumerate(scenes):
        for c, scene in enumerate(row):
            p = projected[r][c]
            rot, centre = p["rotation"], p["centre"]
            where = {"row": r + 1, "col": c + 1}
            groups = [("cell", list(scene.cell), "#888888", None)]
            groups += [("polyhedron", [(np.asarray(poly.vertices)[a], np.asarray(poly.vertices)[b])
                                       for a, b in poly.edges()], "#555555", poly) for poly in scene.polyhedra]
            for name, segs, color, poly in groups:
                if not segs:
                    continue
                xs, ys = [], []
                for p0, p1 in segs:
                    q0, q1 = (np.asarray(p0) - centre) @ rot.T, (np.asarray(p1) - centre) @ rot.T
                    xs += [q0[0], q1[0], None]
                    ys += [q0[1], q1[1], None]
                    extent = max(extent, abs(q0[0]), abs(q0[1]), abs(q1[0]), abs(q1[1]))
                fig.add_trace(go.Scatter(
                    x=xs, y=ys, mode="lines", line={"color": color, "width": 1 if poly is None else 1.5},
                    fill=None, hoverinfo="skip" if poly is None else "text", text=None if poly is None else poly.label,
                    meta=None if poly is None else {"vertices": poly.n_vertices, "centre": poly.index},
                    showlegend=False, name=name), **where)
            if len(p["atoms"]):
                order = np.argsort(p["atoms"][:, 2])  # back to front
                pos = p["atoms"][order]
                extent = max(extent, float(np.abs(pos[:, :2]).max()))
                fig.add_trace(go.Scatter(
                    x=pos[:, 0], y=pos[:, 1], mode="markers",
                    marker={"size": [marker_scale * scene.atoms[k].radius for k in order],
                            "color": [scene.atoms[k].color for k in order],
                            "opacity": [float(np.clip(scene.atoms[k].opacity, 0.05, 1.0)) for k in order],
                            "line": {"width": [1.5 if scene.atoms[k].role == "target" else 0 for k in order],
                                     "color": "#000000"}},
                    customdata=[[r * n_cols + c, int(k)] for k in order],
                    text=[scene.atoms[k].label for k in order], hovertemplate="%{text}<extra></extra>",
                    showlegend=False, name="atoms"), **where)
            for arrow, (a0, a1) in zip(scene.arrows, p["arrows"]):
                fig.add_trace(go.Scatter(x=[a0[0], a1[0]], y=[a0[1], a1[1]], mode="lines+markers",
                                         line={"color": arrow.color, "width": 3},
                                         marker={"symbol": "arrow", "angleref": "previous", "size": [0, 9],
                                                 "color": arrow.color},
                                         name=arrow.label, hoverinfo="name", showlegend=False), **where)
    extent *= 1.08
    for k in range(1, max(1, n_rows) * max(1, n_cols) + 1):
        suffix = "" if k == 1 else str(k)
        fig.layout[f"xaxis{suffix}"].update(visible=False, range=[-extent, extent])
        fig.layout[f"yaxis{suffix}"].update(visible=False, range=[-extent, extent], scaleanchor=f"x{suffix}",
                                            scaleratio=1)
    fig.update_layout(height=max(1, n_rows) * panel_px + 40, margin={"l": 0, "r": 20, "t": 30, "b": 0},
                      plot_bgcolor="white", showlegend=False)
    fig.update_annotations(font_size=11)
    return fig
