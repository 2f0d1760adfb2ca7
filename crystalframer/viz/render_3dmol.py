"""Draw :class:`~crystalframer.viz.scene.Scene` objects with py3Dmol (3Dmol.js in the browser).

3Dmol.js is loaded from the app's static folder when ``scripts/fetch_3dmol.sh`` has put it there
(``static/3dmol/3Dmol-min.js``, served by Streamlit at ``/app/static/3dmol/3Dmol-min.js``), otherwise from the
jsDelivr CDN at the version py3Dmol expects. Exported HTML files inline the local copy when there is one, so they
work offline.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Sequence

from crystalframer.viz.scene import Scene

__all__ = ["py3dmol_version", "cdn_url", "local_js_path", "static_url", "js_source", "scene_view", "grid_view",
           "view_html", "standalone_html", "STATIC_URL"]

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


def _draw(view, scene: Scene, viewer: tuple[int, int] | None = None, labels: Sequence[int] = (),
          hover: bool = True, cell_radius: float = 0.035) -> None:
    kw = {"viewer": viewer} if viewer is not None else {}
    for p0, p1 in scene.cell:
        view.addCylinder({"start": _xyz(p0), "end": _xyz(p1), "radius": cell_radius, "color": "#333333",
                          "fromCap": 1, "toCap": 1}, **kw)
    # Opaque atoms first, then the faded ones (helps WebGL transparency ordering).
    order = sorted(range(len(scene.atoms)), key=lambda k: -scene.atoms[k].opacity)
    for k in order:
        atom = scene.atoms[k]
        spec = {"center": _xyz(atom.position), "radius": float(atom.radius), "color": atom.color,
                "opacity": float(round(atom.opacity, 3))}
        if hover and atom.label:
            on, off = _hover_js(atom.label, atom.position)
            spec.update({"hoverable": True, "hover_callback": on, "unhover_callback": off})
        view.addSphere(spec, **kw)
    for arrow in scene.arrows:
        view.addArrow({"start": _xyz(arrow.start), "end": _xyz(arrow.end), "radius": 0.11, "radiusRatio": 2.2,
                       "mid": 0.75, "color": arrow.color}, **kw)
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


def scene_view(scene: Scene, width: int | str = 640, height: int = 480, js_url: str | None = None,
               labels: Sequence[int] = (), hover: bool = True):
    """A py3Dmol view of one scene."""
    import py3Dmol

    view = py3Dmol.view(width=width, height=height, js=js_url or cdn_url())
    _draw(view, scene, labels=labels, hover=hover)
    _orient(view)
    view.zoomTo()
    return view


def grid_view(scenes: Sequence[Scene], width: int | None = 240, height: int = 260, js_url: str | None = None,
              linked: bool = True, hover: bool = False):
    """Scenes side by side in one canvas (rotations linked), like the paper's per-layer figure.

    ``width`` is per panel in pixels; None fills the container (100%)."""
    import py3Dmol

    n = max(1, len(scenes))
    total = "100%" if width is None else width * n
    view = py3Dmol.view(width=total, height=height, viewergrid=(1, n), linked=linked, js=js_url or cdn_url())
    for c, scene in enumerate(scenes):
        _draw(view, scene, viewer=(0, c), hover=hover)
        _orient(view, viewer=(0, c))
        view.zoomTo(viewer=(0, c))
    return view


def view_html(view) -> str:
    """The HTML fragment (div + script) of a py3Dmol view, for ``st.components.v1.html``."""
    return view._make_html()


def standalone_html(view, title: str = "CrystalFramer scene", app_root: str | Path | None = None) -> str:
    """A complete HTML page of the view. 3Dmol.js is inlined when a local copy exists (works offline)."""
    fragment = view._make_html()
    local = local_js_path(app_root)
    head = ""
    if local is not None:
        # Define $3Dmol up front, and make py3Dmol's loader resolve immediately instead of fetching a URL.
        code = local.read_text(encoding="utf-8", errors="replace").replace("</script", "<\\/script")
        head = f"<script>{code}</script>\n<script>var $3Dmolpromise = Promise.resolve();</script>\n"
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>%s</title>\n%s</head>\n"
            "<body style=\"margin:0\">\n%s\n</body></html>\n" % (title, head, fragment))
