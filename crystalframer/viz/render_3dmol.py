"""Draw :class:`~crystalframer.viz.scene.Scene` objects with py3Dmol (3Dmol.js in the browser).

3Dmol.js is loaded from the app's static folder when ``scripts/fetch_3dmol.sh`` has put it there
(``static/3dmol/3Dmol-min.js``, served by Streamlit at ``/app/static/3dmol/3Dmol-min.js``), otherwise from the
jsDelivr CDN at the version py3Dmol expects. Exported HTML files inline the local copy when there is one, so they
work offline.

Besides atoms, cell and arrows, a view draws translucent coordination polyhedra (``addCustom`` meshes with their
edges), bonds, lattice and axis labels (in front of the atoms), and :func:`view_html` / :func:`standalone_html`
add HTML overlays: the element legend, the attention colour bar and a "PNG" button that saves the canvas
(``pngURI()``, in the browser; several panels are put side by side). With ``pick_id``, clicking an atom calls
``window.parent.cfPick[pick_id](k)`` (k: the scene-atom index), which :mod:`crystalframer.app.ui` turns into a
Streamlit event.
"""

from __future__ import annotations

import html as html_lib
import inspect
import json
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from crystalframer.viz.scene import Scene, rotation_quaternion, view_rotation

__all__ = ["py3dmol_version", "cdn_url", "local_js_path", "static_url", "js_source", "scene_view", "grid_view",
           "view_html", "standalone_html", "polyhedron_mesh", "STATIC_URL"]

STATIC_URL = "/app/static/3dmol/3Dmol-min.js"
_REPO_ROOT = Path(__file__).resolve().parents[2]


def py3dmol_version() -> str:
    import py3Dmol

    match = re.search(r"3dmol@([0-9][0-9A-Za-z.\-]*)/", inspect.getsource(py3Dmol.view.__init__))
    return match.group(1) if match else py3Dmol.__version__


def cdn_url() -> str:
    return f"https://cdn.jsdelivr.net/npm/3dmol@{py3dmol_version()}/build/3Dmol-min.js"


def local_js_path(app_root: str | Path | None = None) -> Path | None:
    """``static/3dmol/3Dmol-min.js`` next to the app (``app_root``, the repository root by default), if fetched."""
    roots = [Path(app_root)] if app_root else [_REPO_ROOT, Path.cwd()]
    for root in roots:
        path = root / "static" / "3dmol" / "3Dmol-min.js"
        if path.is_file() and path.stat().st_size > 1000:
            return path
    return None


def static_url(app_root: str | Path | None = None) -> str | None:
    return STATIC_URL if local_js_path(app_root) is not None else None


def js_source(app_root: str | Path | None = None, prefer_local: bool = True) -> tuple[str, str]:
    """(url, where) with where = "local" (served by Streamlit) or "cdn"."""
    if prefer_local:
        url = static_url(app_root)
        if url:
            return url, "local"
    return cdn_url(), "cdn"


def _xyz(p) -> dict[str, float]:
    return {"x": float(p[0]), "y": float(p[1]), "z": float(p[2])}


def _hover_js(text: str, pos) -> tuple[str, str]:
    label = json.dumps(text)
    where = json.dumps(_xyz(pos))
    on = ("function(s,v){if(!s.cfLabel){s.cfLabel=v.addLabel(%s,{position:%s,fontSize:12,fontColor:'white',"
          "backgroundColor:'black',backgroundOpacity:0.8,inFront:true});v.render();}}" % (label, where))
    off = "function(s,v){if(s.cfLabel){v.removeLabel(s.cfLabel);s.cfLabel=null;v.render();}}"
    return on, off


def polyhedron_mesh(vertices: np.ndarray, faces: np.ndarray, center: np.ndarray) -> dict:
    """A flat-shaded ``addCustom`` mesh: three vertices per face, normals pointing away from ``center``."""
    verts, normals, idx = [], [], []
    for tri in np.asarray(faces, dtype=int).reshape(-1, 3):
        p = np.asarray(vertices, dtype=np.float64)[tri]
        n = np.cross(p[1] - p[0], p[2] - p[0])
        if np.dot(n, p.mean(axis=0) - np.asarray(center)) < 0:
            p, n = p[[0, 2, 1]], -n
        n = n / max(float(np.linalg.norm(n)), 1e-12)
        for q in p:
            idx.append(len(verts))
            verts.append(_xyz(q))
            normals.append(_xyz(n))
    return {"vertexArr": verts, "normalArr": normals, "faceArr": idx}


def _click_js(pick_id: str, k: int) -> str:
    return ("function(s,v){var w=window.parent||window;if(w.cfPick&&w.cfPick[%s]){w.cfPick[%s](%d);}}"
            % (json.dumps(pick_id), json.dumps(pick_id), k))


def _draw(view, scene: Scene, viewer: tuple[int, int] | None = None, labels: Sequence[int] = (),
          hover: bool = True, cell_radius: float = 0.035, pick_id: str | None = None) -> None:
    kw = {"viewer": viewer} if viewer is not None else {}
    for p0, p1 in scene.cell:
        view.addCylinder({"start": _xyz(p0), "end": _xyz(p1), "radius": cell_radius, "color": "#333333",
                          "fromCap": 1, "toCap": 1}, **kw)
    for bond in scene.bonds:
        view.addCylinder({"start": _xyz(bond.start), "end": _xyz(bond.end), "radius": float(bond.radius),
                          "color": bond.color, "fromCap": 1, "toCap": 1}, **kw)
    # Opaque atoms first, then the faded ones (helps WebGL transparency ordering).
    order = sorted(range(len(scene.atoms)), key=lambda k: -scene.atoms[k].opacity)
    for k in order:
        atom = scene.atoms[k]
        spec = {"center": _xyz(atom.position), "radius": float(atom.radius), "color": atom.color,
                "opacity": float(round(atom.opacity, 3))}
        if hover and atom.label:
            on, off = _hover_js(atom.label, atom.position)
            spec.update({"hoverable": True, "hover_callback": on, "unhover_callback": off})
        if pick_id and atom.index >= 0:
            spec.update({"clickable": True, "callback": _click_js(pick_id, k)})
        view.addSphere(spec, **kw)
    for arrow in scene.arrows:
        view.addArrow({"start": _xyz(arrow.start), "end": _xyz(arrow.end), "radius": float(arrow.radius),
                       "radiusRatio": 2.2, "mid": 0.8, "color": arrow.color}, **kw)
    for poly in scene.polyhedra:  # translucent, after the opaque objects
        if len(poly.faces):
            mesh = polyhedron_mesh(poly.vertices, poly.faces, poly.center)
            mesh.update({"color": poly.color, "opacity": float(poly.opacity)})
            view.addCustom(mesh, **kw)
            for a, b in poly.edges():
                view.addCylinder({"start": _xyz(poly.vertices[a]), "end": _xyz(poly.vertices[b]), "radius": 0.02,
                                  "color": "#555555"}, **kw)
    for lab in scene.labels:
        view.addLabel(lab.text, {"position": _xyz(lab.position), "fontSize": int(lab.size), "fontColor": lab.color,
                                 "backgroundOpacity": 0.0, "inFront": True, "alignment": "center",
                                 "bold": lab.kind in ("axis", "lattice")}, **kw)
    for k in labels:
        atom = scene.atoms[k]
        view.addLabel(atom.label, {"position": _xyz(atom.position), "fontSize": 11, "fontColor": "black",
                                   "backgroundColor": "white", "backgroundOpacity": 0.7, "inFront": True}, **kw)
    if scene.title and viewer is not None:
        view.addLabel(scene.title, {"useScreen": True, "position": {"x": 8, "y": 8, "z": 0}, "fontSize": 13,
                                    "fontColor": "black", "backgroundOpacity": 0.0}, **kw)


def _orient(view, viewer: tuple[int, int] | None = None) -> None:
    """A slightly oblique starting view (as in the paper's figures) instead of looking straight down z."""
    kw = {"viewer": viewer} if viewer is not None else {}
    view.rotate(-28, {"x": 0, "y": 1, "z": 0}, **kw)
    view.rotate(18, {"x": 1, "y": 0, "z": 0}, **kw)


def _remember(view, scenes: Sequence[Scene], grid: bool, file_stem: str) -> None:
    # What view_html needs to add overlays and the camera (py3Dmol views accept any attribute).
    view.__dict__["_cf_scenes"] = list(scenes)
    view.__dict__["_cf_grid"] = grid
    view.__dict__["_cf_stem"] = file_stem


def scene_view(scene: Scene, width: int | str = 640, height: int = 480, js_url: str | None = None,
               labels: Sequence[int] = (), hover: bool = True, pick_id: str | None = None,
               file_stem: str = "crystalframer_scene"):
    """A py3Dmol view of one scene (``pick_id``: report clicks, see the module docstring)."""
    import py3Dmol

    view = py3Dmol.view(width=width, height=height, js=js_url or cdn_url())
    _draw(view, scene, labels=labels, hover=hover, pick_id=pick_id)
    if scene.view is None:
        _orient(view)
    view.zoomTo()
    _remember(view, [scene], False, file_stem)
    return view


def grid_view(scenes: Sequence[Scene], width: int | None = 240, height: int = 260, js_url: str | None = None,
              linked: bool = True, hover: bool = False, rows: int = 1, file_stem: str = "crystalframer_panels"):
    """Scenes in a grid of ``rows`` rows in one canvas (rotations linked), like the paper's per-layer figure.

    ``width`` is per panel in pixels; None fills the container (100%). ``height`` is per row."""
    import py3Dmol

    n = max(1, len(scenes))
    rows = max(1, min(rows, n))
    cols = -(-n // rows)
    total = "100%" if width is None else width * cols
    view = py3Dmol.view(width=total, height=height * rows, viewergrid=(rows, cols), linked=linked,
                        js=js_url or cdn_url())
    low, high = _common_bounds(scenes)
    for c, scene in enumerate(scenes):
        where = (c // cols, c % cols)
        _draw(view, scene, viewer=where, hover=hover)
        # Invisible corners of the panels' common box: zoomTo then gives every panel the same scale, so layers
        # with more neighbours shown do not look smaller.
        for corner in (low, high):
            view.addSphere({"center": _xyz(corner), "radius": 0.01, "opacity": 0.0, "color": "white"},
                           viewer=where)
        if scene.view is None:
            _orient(view, viewer=where)
        view.zoomTo(viewer=where)
    _remember(view, scenes, True, file_stem)
    return view


def _common_bounds(scenes: Sequence[Scene]) -> tuple[np.ndarray, np.ndarray]:
    pts = ([a.position for s in scenes for a in s.atoms] + [p for s in scenes for seg in s.cell for p in seg]
           + [a.end for s in scenes for a in s.arrows] + [lab.position for s in scenes for lab in s.labels])
    if not pts:
        return np.zeros(3), np.zeros(3)
    arr = np.asarray(pts, dtype=np.float64)
    return arr.min(axis=0), arr.max(axis=0)


def _luminance(color: str) -> float:
    c = color.lstrip("#")
    if len(c) != 6:
        return 1.0
    r, g, b = (int(c[i:i + 2], 16) for i in (0, 2, 4))
    return (0.299 * r + 0.587 * g + 0.114 * b) / 255.0


def _overlays(scenes: Sequence[Scene], uid: str, stem: str, viewers_js: str) -> str:
    """Legend, colour bar and PNG button, absolutely placed over the viewer."""
    legend = {}
    for scene in scenes:
        for element, color in scene.legend():
            legend.setdefault(element, color)
    parts = []
    if legend:
        chips = "".join(
            f'<span style="display:inline-block;margin:1px 2px;padding:0 6px;border-radius:9px;background:{c};'
            f'color:{"#000" if _luminance(c) > 0.55 else "#fff"};border:1px solid #888">{html_lib.escape(el)}</span>'
            for el, c in legend.items())
        parts.append(f'<div class="cf-legend" style="position:absolute;top:4px;right:6px;font:12px sans-serif;'
                     f'max-width:45%;text-align:right;pointer-events:none">{chips}</div>')
    cb = scenes[0].colorbar if scenes else None
    if cb is not None:
        stops = ", ".join(f"{c} {100 * x:.0f}%" for x, c in cb.colorscale)
        parts.append(
            f'<div class="cf-colorbar" title="{html_lib.escape(cb.note)}" style="position:absolute;right:8px;'
            f'bottom:8px;font:11px sans-serif;text-align:center;pointer-events:none">'
            f'<div>{html_lib.escape(cb.title)}</div>'
            f'<div style="width:140px;height:10px;border:1px solid #888;background:linear-gradient(to right, {stops})">'
            f'</div><div style="display:flex;justify-content:space-between;width:142px"><span>{cb.vmin:.3g}</span>'
            f'<span>{cb.vmax:.3g}</span></div></div>')
    parts.append(
        f'<button class="cf-png" title="Save this view as a PNG image" onclick="cfSavePng_{uid}()" '
        f'style="position:absolute;left:6px;bottom:6px;font:12px sans-serif;padding:2px 8px;cursor:pointer;'
        f'border:1px solid #999;border-radius:4px;background:#fafafa">PNG</button>')
    # A grid's viewers share one canvas, so the first viewer's pngURI() holds every panel.
    js = ("<script>function cfSavePng_%s(){var v=%s[0];if(!v){return;}var a=document.createElement('a');"
          "a.href=v.pngURI();a.download=%s;document.body.appendChild(a);a.click();a.remove();}</script>"
          % (uid, viewers_js, json.dumps(stem + ".png")))
    return "".join(parts) + js


def _camera_js(view_var: str, scene: Scene) -> str:
    if scene.view is None:
        return ""
    q = rotation_quaternion(view_rotation(scene.view))
    return ("(function(v){var s=v.getView();s[4]=%.8f;s[5]=%.8f;s[6]=%.8f;s[7]=%.8f;v.setView(s);v.zoomTo();"
            "v.render();})(%s);\n" % (q[0], q[1], q[2], q[3], view_var))


def view_html(view) -> str:
    """The HTML fragment (div + script) of a py3Dmol view, for ``st.components.v1.html``, with the overlays
    (legend, colour bar, PNG button) and the scenes' cameras."""
    fragment = view._make_html()
    scenes = view.__dict__.get("_cf_scenes")
    if scenes is None:
        return fragment
    uid = view.uniqueid
    if view.__dict__.get("_cf_grid", False):
        cols = _grid_cols(view)
        collect = f"window.cfViewers_{uid} = [].concat.apply([], viewergrid_{uid});\n"
        cams = "".join(_camera_js(f"viewergrid_{uid}[{k // cols}][{k % cols}]", s) for k, s in enumerate(scenes))
    else:
        collect = f"window.cfViewers_{uid} = [viewer_{uid}];\n"
        cams = _camera_js(f"viewer_{uid}", scenes[0])
    end = "\n});\n</script>"
    if end in fragment:  # py3Dmol's viewers live inside its loader promise: add ours at its end
        cut = fragment.rindex(end)
        fragment = fragment[:cut] + "\n" + collect + cams + fragment[cut:]
    overlays = _overlays(scenes, uid, view.__dict__.get("_cf_stem", "crystalframer_scene"),
                         f"(window.cfViewers_{uid} || [])")
    return f'<div class="cf-scene" style="position:relative">{fragment}{overlays}</div>'


def _grid_cols(view) -> int:
    match = re.search(r"cols: (\d+)", view.startjs)
    return int(match.group(1)) if match else 1


def standalone_html(view, title: str = "CrystalFramer scene", app_root: str | Path | None = None) -> str:
    """A complete HTML page of the view (with its legend, colour bar and PNG button). 3Dmol.js is inlined when a
    local copy exists (works offline)."""
    fragment = view_html(view)
    local = local_js_path(app_root)
    head = ""
    if local is not None:
        # Define $3Dmol up front, and make py3Dmol's loader resolve immediately instead of fetching a URL.
        code = local.read_text(encoding="utf-8", errors="replace").replace("</script", "<\\/script")
        head = f"<script>{code}</script>\n<script>var $3Dmolpromise = Promise.resolve();</script>\n"
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>%s</title>\n%s</head>\n"
            "<body style=\"margin:0\">\n%s\n</body></html>\n" % (html_lib.escape(title), head, fragment))
