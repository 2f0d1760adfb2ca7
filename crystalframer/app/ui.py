"""Streamlit helpers shared by the app's pages: model and structure state, cached inspections, 3D output.

State (``st.session_state``), shared across pages:

* ``cf_model_ref``: the chosen model reference (see :mod:`crystalframer.app.models`), or ``session:<name>`` for
  a fine-tuned model kept in ``cf_session_models``;
* ``cf_structure`` / ``cf_structure_label``: the chosen pymatgen structure and its name;
* ``cf_renderer``: "3Dmol.js" or "Plotly (offline)";
* ``cf_scheme``: the element colour scheme ("VESTA" or "Jmol").

Deep links (:mod:`crystalframer.app.links`): :func:`apply_deep_link` reads the URL's query parameters when they
are new to the session (a fresh page load, an edited URL) and seeds the widgets; :func:`write_deep_link` puts the
current choices back into the URL. Clicking an atom in a 3D view (:func:`show_scene` with ``pick_key``) sets that
widget through :func:`request_value` and reruns.

Models are loaded once per process with ``st.cache_resource`` and treated as read-only; anything that changes
weights (fine-tuning, frame-method probes) works on a deep copy.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import streamlit as st
from pymatgen.core import Structure

from crystalframer.app import models as model_registry
from crystalframer.examples import DEFAULT_EXAMPLE, get_example
from crystalframer.model.model import CrystalFramer, Inspection
from crystalframer.app import links
from crystalframer.viz import render_3dmol, render_plotly
from crystalframer.viz.colors import COLOR_SCHEMES
from crystalframer.viz.scene import Scene, picked_atom

APP_ROOT = Path(__file__).resolve().parents[2]
THREADS_ENV = "CRYSTALFRAMER_APP_THREADS"


def configure_threads() -> None:
    """One intra-op thread by default ($CRYSTALFRAMER_APP_THREADS to change): the app's crystals are small, and
    OpenMP spinning over several threads on a shared CPU costs far more than it gains."""
    import torch

    try:
        n = int(os.environ.get(THREADS_ENV, "1"))
    except ValueError:
        n = 1
    if n > 0 and torch.get_num_threads() != n:
        torch.set_num_threads(n)


configure_threads()
RENDERERS = ("3Dmol.js", "Plotly (offline)")
SESSION_PREFIX = "session:"


# ----------------------------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------------------------
def _ckpt_stamp(ref: str) -> str:
    kind, _, value = ref.partition(":")
    path = None
    if kind == "ckpt":
        path = model_registry.available_checkpoints().get(value)
    elif kind == "path":
        path = Path(value)
    try:
        return f"{path}:{path.stat().st_mtime_ns}" if path is not None else ""
    except OSError:
        return ""


@st.cache_resource(show_spinner="Loading model…", max_entries=8)
def _load_cached(ref: str, device: str, stamp: str) -> CrystalFramer:
    del stamp  # part of the cache key only: a replaced checkpoint file is loaded again
    return model_registry.build_model(ref, device=device)


def session_models() -> dict[str, CrystalFramer]:
    return st.session_state.setdefault("cf_session_models", {})


def all_model_refs() -> list[str]:
    return model_registry.model_refs() + [SESSION_PREFIX + name for name in session_models()]


def describe(ref: str) -> str:
    if ref.startswith(SESSION_PREFIX):
        return f"{ref[len(SESSION_PREFIX):]} (fine-tuned in this session)"
    return model_registry.describe_ref(ref)


def short_label(ref: str) -> str:
    """A compact name for charts: the checkpoint name, or e.g. "untrained max"."""
    kind, _, value = ref.partition(":")
    if kind == "fresh":
        return f"untrained {value}"
    if kind == "path":
        return Path(value).parent.name if Path(value).suffix else Path(value).name
    return value


def get_model(ref: str) -> CrystalFramer:
    """The shared, read-only model for ``ref`` (never modify it: copy first)."""
    if ref.startswith(SESSION_PREFIX):
        models = session_models()
        name = ref[len(SESSION_PREFIX):]
        if name not in models:
            raise KeyError(f"the session model {name!r} is gone (the session was reset)")
        return models[name]
    return _load_cached(ref, "auto", _ckpt_stamp(ref))


def current_model_ref() -> str:
    refs = all_model_refs()
    ref = st.session_state.get("cf_model_ref")
    if ref not in refs:
        ref = refs[0]
        st.session_state["cf_model_ref"] = ref
    return ref


def current_model() -> tuple[str, CrystalFramer]:
    ref = current_model_ref()
    return ref, get_model(ref)


# ----------------------------------------------------------------------------------------------------------------
# structures and inspections
# ----------------------------------------------------------------------------------------------------------------
def current_structure() -> tuple[str, Structure]:
    if "cf_structure" not in st.session_state:
        st.session_state["cf_structure"] = get_example(DEFAULT_EXAMPLE)
        st.session_state["cf_structure_label"] = DEFAULT_EXAMPLE
    return st.session_state.get("cf_structure_label", "structure"), st.session_state["cf_structure"]


def set_structure(structure: Structure, label: str) -> None:
    st.session_state["cf_structure"] = structure
    st.session_state["cf_structure_label"] = label


def structure_key(structure: Structure) -> str:
    text = json.dumps(structure.as_dict(), sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()


@st.cache_resource(show_spinner=False, max_entries=64)
def _inspect_cached(model_key: str, skey: str, method: str, _model: CrystalFramer, _structure: Structure) -> Inspection:
    from crystalframer.analysis.compare import with_frame_method

    probe = _model if method in ("", _model.config.frame_method) else with_frame_method(_model, method)
    return probe.inspect(_structure)


def inspect(ref: str, model: CrystalFramer, structure: Structure, method: str = "") -> Inspection:
    """Cached ``model.inspect`` (optionally with another frame method on the same weights). Read-only result."""
    model_key = ref + "|" + model_registry.weights_fingerprint(model)
    return _inspect_cached(model_key, structure_key(structure), method, model, structure)


@st.cache_resource(show_spinner=False, max_entries=32)
def _predict_cached(model_key: str, skey: str, samples: int, _model: CrystalFramer, _structure: Structure):
    exact = _model.predict([_structure])[0]
    mean, std = _model.predict([_structure], frame_samples=samples, seed=0, return_std=True)
    return exact, mean[0], std[0]


def predict_with_spread(ref: str, model: CrystalFramer, structure: Structure, samples: int = 8):
    """(deterministic prediction, mean and std over ``samples`` tie-break draws), each (n_targets,).

    The std is 0 for frameless models (nothing to break)."""
    model_key = ref + "|" + model_registry.weights_fingerprint(model)
    return _predict_cached(model_key, structure_key(structure), samples, model, structure)


# ----------------------------------------------------------------------------------------------------------------
# page furniture
# ----------------------------------------------------------------------------------------------------------------
RENDERER_ENV = "CRYSTALFRAMER_RENDERER"


def default_renderer() -> str:
    """$CRYSTALFRAMER_RENDERER ("3dmol" or "plotly") if set; else 3Dmol.js when fetched locally, else Plotly
    (which needs no network, so a fresh offline machine still shows 3D)."""
    forced = os.environ.get(RENDERER_ENV, "").strip().lower()
    if forced in ("3dmol", "3dmol.js", "py3dmol"):
        return RENDERERS[0]
    if forced == "plotly":
        return RENDERERS[1]
    return RENDERERS[0] if render_3dmol.local_js_path(APP_ROOT) is not None else RENDERERS[1]


def page_header(title: str, show_renderer: bool = True, link_widgets: dict[str, str] | None = None) -> None:
    """Page config, deep link, title and sidebar: the common start of every analysis page (``link_widgets``: see
    :func:`apply_deep_link`)."""
    st.set_page_config(page_title=f"{title} · CrystalFramer", page_icon="🔷", layout="wide")
    apply_deep_link(link_widgets)
    st.title(title)
    sidebar(show_renderer=show_renderer)


def model_and_structure() -> tuple[str, CrystalFramer, str, Structure]:
    """The selected model (with the untrained warning when it applies) and the selected structure."""
    ref, model = current_model()
    label, structure = current_structure()
    untrained_warning(model)
    return ref, model, label, structure


def sidebar(show_renderer: bool = True) -> None:
    """The current model and structure, plus the 3D renderer choice, in the sidebar."""
    label, structure = current_structure()
    ref = current_model_ref()
    with st.sidebar:
        st.markdown(f"**Model:** {describe(ref)}")
        st.markdown(f"**Structure:** {label} ({structure.composition.reduced_formula}, {len(structure)} sites)")
        st.caption("Change them on the Home page.")
        if show_renderer:
            current = st.session_state.get("cf_renderer") or default_renderer()
            # Not a keyed widget: keyed widget state is dropped when the user switches pages.
            st.session_state["cf_renderer"] = st.radio(
                "3D renderer", RENDERERS, index=RENDERERS.index(current),
                help="3Dmol.js comes from static/3dmol (scripts/fetch_3dmol.sh) or else the CDN; "
                     "Plotly needs no external JavaScript and works offline.")
            scheme = st.session_state.get("cf_scheme") or COLOR_SCHEMES[0]
            st.session_state["cf_scheme"] = st.radio(
                "Element colours", COLOR_SCHEMES, index=COLOR_SCHEMES.index(scheme), horizontal=True,
                help="VESTA's or Jmol's element colour table (the legend in each 3D view names them).")
            if st.session_state["cf_renderer"] == RENDERERS[0]:
                _, where = render_3dmol.js_source(APP_ROOT)
                if where == "cdn":
                    st.caption("3Dmol.js is not in static/3dmol: loading it from the CDN (needs internet). "
                               "Run scripts/fetch_3dmol.sh, or use the Plotly renderer offline.")


def renderer() -> str:
    return st.session_state.get("cf_renderer") or default_renderer()


def color_scheme() -> str:
    scheme = st.session_state.get("cf_scheme")
    return scheme if scheme in COLOR_SCHEMES else COLOR_SCHEMES[0]


def embed_html(html: str, height: int) -> None:
    """Our own generated HTML (never user content) in a script-enabled iframe."""
    if hasattr(st, "iframe"):
        st.iframe(html, height=height)
    else:  # older Streamlit
        import streamlit.components.v1 as components

        components.html(html, height=height)


_PICK_BRIDGE_JS = """
export default function(component) {
  const { data, setTriggerValue } = component;
  window.cfPick = window.cfPick || {};
  window.cfPick[data.id] = (k) => setTriggerValue("pick", k);
  if (!data.plotly) return;
  // Plotly 3D scenes have no selection events, and their plotly_click needs the mouse within 5 px of a marker's
  // centre; so: remember the atom under the mouse (plotly_hover, customdata = scene-atom index) and take a
  // mouse-up that did not drag as a click on it.
  const bind = () => {
    const gd = document.querySelector(".st-key-" + data.id + " .js-plotly-plot");
    if (!gd || !gd.on || gd.__cfPickBound) return;
    gd.__cfPickBound = true;
    let hovered = null, down = null;
    gd.on("plotly_hover", (ev) => {
      const p = ev && ev.points && ev.points[0];
      const c = p ? p.customdata : undefined;
      hovered = (c === undefined || c === null) ? null : (Array.isArray(c) ? c[0] : c);
    });
    gd.on("plotly_unhover", () => { hovered = null; });
    gd.addEventListener("mousedown", (e) => { down = [e.clientX, e.clientY]; }, true);
    gd.addEventListener("mouseup", (e) => {
      const still = down && Math.hypot(e.clientX - down[0], e.clientY - down[1]) < 5;
      down = null;
      if (still && hovered !== null && window.cfPick[data.id]) window.cfPick[data.id](hovered);
    }, true);
  };
  bind();
  const timer = setInterval(bind, 400);
  return () => clearInterval(timer);
}
"""


@st.cache_resource(show_spinner=False)
def _pick_bridge():
    """A component with no visuals that turns a click into a Streamlit trigger value (a rerun): the 3Dmol.js iframe
    calls ``window.parent.cfPick[id](k)``; for Plotly it listens to the chart's ``plotly_click`` (3D scenes have no
    selection events, so ``on_select`` alone never fires there)."""
    import streamlit.components.v2 as components_v2

    return components_v2.component("crystalframer.pick_bridge", js=_PICK_BRIDGE_JS)


def request_value(key: str, value: Any) -> None:
    """Set the keyed widget ``key`` to ``value`` on the next run (it may already exist in this one) and rerun."""
    st.session_state["_pending_" + key] = value
    st.rerun()


def handle_pick(key: str, scene: Scene, pick: Any, pick_key: str) -> int | None:
    """A click on ``scene`` (a scene-atom index or a Plotly selection): when it is new and names another atom than
    the widget ``pick_key`` holds, that widget is set to the atom and the script reruns. Returns the atom j."""
    sig = json.dumps(pick, sort_keys=True, default=str)
    seen = st.session_state.get("_pick_sig_" + key)
    st.session_state["_pick_sig_" + key] = sig
    if pick is None or sig == seen:
        return None
    j = picked_atom(scene, pick)
    if j is not None and j != st.session_state.get(pick_key):
        request_value(pick_key, j)
    return j


def show_scene(scene: Scene, height: int = 480, key: str | None = None, labels: tuple[int, ...] = (),
               pick_key: str | None = None, file_stem: str = "crystalframer_scene") -> Any:
    """Draw a scene with the chosen renderer. Returns the py3Dmol view (or the Plotly figure).

    ``pick_key``: a keyed widget holding an atom index; clicking an atom sets it (3Dmol.js: a click callback; Plotly:
    a point selection). Each view has a PNG button (3Dmol.js) or Plotly's camera button."""
    key = key or "scene"
    if renderer() == RENDERERS[0]:
        url, _ = render_3dmol.js_source(APP_ROOT)
        view = render_3dmol.scene_view(scene, width="100%", height=height, js_url=url, labels=labels,
                                       pick_id=key if pick_key else None, file_stem=file_stem)
        embed_html(render_3dmol.view_html(view), height=height + 12)
        if pick_key:
            result = _pick_bridge()(data={"id": key}, key=f"{key}_bridge", on_pick_change=lambda: None,
                                    height=0)
            handle_pick(key, scene, getattr(result, "pick", None), pick_key)
        return view
    fig = render_plotly.scene_figure(scene, height=height)
    config = render_plotly.png_config(file_stem)
    if pick_key:
        event = st.plotly_chart(fig, width="stretch", key=key, on_select="rerun", selection_mode="points",
                                config=config)
        selection = event.get("selection") if hasattr(event, "get") else None
        points = list(selection.get("points", [])) if selection else []
        handle_pick(key, scene, {"selection": {"points": points}} if points else None, pick_key)
        result = _pick_bridge()(data={"id": key, "plotly": True}, key=f"{key}_bridge",
                                on_pick_change=lambda: None, height=0)
        handle_pick(f"{key}_click", scene, getattr(result, "pick", None), pick_key)
    else:
        st.plotly_chart(fig, width="stretch", key=key, config=config)
    return fig


def show_grid(scenes: list[Scene], height: int = 280, key: str | None = None, rows: int = 1,
              file_stem: str = "crystalframer_panels") -> Any:
    """Scenes side by side (``rows`` rows), rotations linked in 3Dmol.js; a PNG button saves the whole grid."""
    if renderer() == RENDERERS[0]:
        url, _ = render_3dmol.js_source(APP_ROOT)
        view = render_3dmol.grid_view(scenes, width=None, height=height, js_url=url, rows=rows, file_stem=file_stem)
        embed_html(render_3dmol.view_html(view), height=height * max(1, rows) + 12)
        return view
    cols = -(-len(scenes) // max(1, rows))
    fig = render_plotly.grid_figure(scenes, height=height, cols=cols)
    st.plotly_chart(fig, width="stretch", key=key, config=render_plotly.png_config(file_stem))
    return fig


def scene_download(view_or_fig: Any, file_stem: str, key: str) -> None:
    """A download button for the drawn scene as a standalone HTML page (works offline: 3Dmol.js or plotly.js is
    inlined), with its own PNG button."""
    import plotly.graph_objects as go

    if isinstance(view_or_fig, go.Figure):  # (hasattr() is useless here: py3Dmol views answer every attribute)
        html = view_or_fig.to_html(include_plotlyjs=True, full_html=True, config=render_plotly.png_config(file_stem))
    else:
        html = render_3dmol.standalone_html(view_or_fig, title=file_stem, app_root=APP_ROOT)
    st.download_button("Download scene (HTML)", data=html, file_name=f"{file_stem}.html", mime="text/html",
                       key=key)


# ----------------------------------------------------------------------------------------------------------------
# deep links
# ----------------------------------------------------------------------------------------------------------------
def _seed(key: str, value: Any) -> None:
    st.session_state[key] = value
    st.session_state["_keep_" + key] = value


def apply_deep_link(widgets: dict[str, str] | None = None) -> links.DeepLink:
    """Apply the URL's query parameters when they are new to this session (not the ones we wrote ourselves).

    ``widgets`` maps link fields ("layer", "head", "atom", "view") to this page's widget keys. The model and the
    example structure are shared by every page."""
    params = {k: st.query_params.get_all(k) for k in st.query_params.keys()}
    link = links.from_params(params)
    sig = json.dumps(params, sort_keys=True)
    if st.session_state.get("_cf_link_sig") == sig or link.is_empty():
        return link
    st.session_state["_cf_link_sig"] = sig
    if link.model:
        wanted = [r for r in all_model_refs() if r == link.model or r.partition(":")[2] == link.model]
        if wanted:
            st.session_state["cf_model_ref"] = wanted[0]
            _seed("home_model", wanted[0])
    if link.example:
        set_structure(get_example(link.example, primitive=not link.conventional),
                      link.example + (" (conventional)" if link.conventional else ""))
        _seed("home_source", "Built-in example")
        _seed("home_example", link.example)
        _seed("home_primitive", not link.conventional)
    for field, key in (widgets or {}).items():
        value = getattr(link, field, None)
        if value is not None:
            _seed(key, value)
    return link


def write_deep_link(**fields: Any) -> None:
    """Put the current model, structure (when it is a built-in example) and ``fields`` into the URL."""
    label, _ = current_structure()
    ref = current_model_ref()
    name = label.removesuffix(" (conventional)")
    link = links.DeepLink(model=ref.partition(":")[2] if ref.startswith("ckpt:") else None,
                          example=name if name in links.EXAMPLES else None,
                          conventional=label.endswith(" (conventional)"), **fields)
    params = links.to_params(link)
    current = {k: st.query_params.get_all(k) for k in st.query_params.keys()}
    if current != {k: [v] for k, v in params.items()}:
        st.query_params.from_dict(params)
    st.session_state["_cf_link_sig"] = json.dumps({k: [v] for k, v in params.items()}, sort_keys=True)


def untrained_warning(model: CrystalFramer) -> None:
    if model_registry.is_untrained(model):
        st.warning("This is a freshly initialised, **untrained** model: its predictions are meaningless numbers. "
                   "Its attention and frames are real computations of an untrained network.")


def no_checkpoint_notice() -> None:
    if not model_registry.available_checkpoints():
        dirs = ", ".join(str(p) for p in model_registry.checkpoint_dirs())
        st.info(f"No trained checkpoints are shipped yet (looked in: {dirs}; set ${model_registry.ENV_VAR} to "
                "another folder). You can explore with a fresh untrained model, labelled as such.")


def persist(key: str) -> None:
    """Call before creating a keyed widget (and :func:`remember` after): keeps its value across page switches.

    Streamlit drops a widget's state when the user visits another page; a mirror key that is not a widget
    survives and restores it.
    """
    mirror = "_keep_" + key
    if key not in st.session_state and mirror in st.session_state:
        st.session_state[key] = st.session_state[mirror]


def remember(key: str) -> None:
    if key in st.session_state:
        st.session_state["_keep_" + key] = st.session_state[key]


def widget(fn: Any, label: str, key: str, options: Any = None, default: Any = None, **kwargs: Any) -> Any:
    """Create a keyed widget whose value survives page switches; ``default`` seeds it the first time.

    With ``options``, a remembered value that is no longer an option is dropped (multiselect: filtered).
    """
    persist(key)
    if "_pending_" + key in st.session_state:  # set by a click in a 3D view (request_value)
        st.session_state[key] = st.session_state.pop("_pending_" + key)
    if options is not None:
        options = list(options)
        if key in st.session_state:
            value = st.session_state[key]
            if isinstance(value, list):
                kept = [v for v in value if v in options]
                if kept != value:
                    st.session_state[key] = kept
            elif value not in options:
                del st.session_state[key]
        if key not in st.session_state and default is not None:
            if isinstance(default, list) or default in options:
                st.session_state[key] = default
        value = fn(label, options, key=key, **kwargs)
    else:
        if key not in st.session_state and default is not None:
            st.session_state[key] = default
        value = fn(label, key=key, **kwargs)
    remember(key)
    return value


# ----------------------------------------------------------------------------------------------------------------
# 3D scene options shared by the pages
# ----------------------------------------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False, max_entries=512)
def _environment_cached(skey: str, site: int, _structure: Structure):
    from crystalframer.analysis.compare import coordination_environment

    return coordination_environment(_structure, site)


def coordination_envs(structure: Structure, sites: list[int]) -> dict[int, Any]:
    """CrystalNN environments of ``sites`` (cached per structure and site); sites CrystalNN fails on are left out."""
    skey = structure_key(structure)
    out = {}
    for site in sites:
        try:
            out[int(site)] = _environment_cached(skey, int(site), structure)
        except Exception:  # CrystalNN can fail on unusual inputs; the scene is drawn without that polyhedron
            continue
    return out


VIEW_LABELS = {"oblique": "oblique", "a": "along a", "b": "along b", "c": "along c", "e1": "along e1"}
POLYHEDRA_LABELS = {"none": "none", "target": "around the target atom",
                    "element": "around every atom of the target's element", "all": "around every atom"}


def scene_controls(prefix: str, target: bool = True, views: tuple[str, ...] = ("oblique", "a", "b", "c", "e1"),
                   default_polyhedra: str = "target") -> dict[str, Any]:
    """The 3D display widgets (polyhedra, colouring, view direction, supercell), remembered per page."""
    from crystalframer.viz.scene import POLYHEDRA_MODES

    modes = [m for m in POLYHEDRA_MODES if target or m not in ("target", "element")]
    c1, c2, c3, c4 = st.columns(4)
    with c1:
        polyhedra = widget(st.selectbox, "Coordination polyhedra (CrystalNN)", f"{prefix}_poly", options=modes,
                           default=default_polyhedra if default_polyhedra in modes else modes[-1],
                           format_func=lambda m: POLYHEDRA_LABELS[m])
    with c2:
        color_by = widget(st.selectbox, "Colour atoms by", f"{prefix}_colorby", options=["element", "attention"],
                          default="element") if target else "element"
    with c3:
        view = widget(st.selectbox, "View", f"{prefix}_view", options=list(views), default="oblique",
                      format_func=lambda v: VIEW_LABELS[v])
    with c4:
        repeat = widget(st.selectbox, "Cells shown", f"{prefix}_repeat", options=["1×1×1", "2×2×2", "2×2×1", "3×3×3"],
                        default="1×1×1", help="Repeat the cell (a supercell view); attention is still that of the "
                                              "target atom in the original cell.")
    return {"polyhedra": polyhedra, "color_by": color_by, "view": view,
            "repeat": tuple(int(v) for v in repeat.split("×"))}


def add_scene_polyhedra(scene: Scene, structure: Structure, mode: str, elements: tuple[str, ...] = ()) -> None:
    """Polyhedra (CrystalNN) on ``scene`` for ``mode`` (see :func:`~crystalframer.viz.scene.polyhedron_centres`)."""
    from crystalframer.viz.scene import add_polyhedra, polyhedron_centres

    centres = polyhedron_centres(scene, mode, elements)
    if not centres:
        return
    envs = coordination_envs(structure, sorted({j for j, _ in centres}))
    add_polyhedra(scene, envs, centres=centres, scheme=color_scheme())
