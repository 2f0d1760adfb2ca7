"""Attention & frames: where one atom looks in each layer, and the local frame it builds from that."""

from __future__ import annotations

import numpy as np
import streamlit as st

from crystalframer.analysis.attention import (attention_records, frame_of, frame_records, inspection_to_json,
                                              neighbor_table, sigma_table, symbols_of)
from crystalframer.analysis.compare import FRAME_METHOD_LABELS
from crystalframer.structure import StructureError
from crystalframer.viz import charts, render_plotly
from crystalframer.app import ui
from crystalframer.viz.scene import AXIS_COLORS, attention_scene, view_spec

ui.page_header("Attention & frames", link_widgets={"layer": "att_layer", "head": "att_head", "atom": "att_atom",
                                                   "view": "att_view"})
ref, model, label, structure = ui.model_and_structure()
cfg = model.config
st.caption(f"{label} with {ui.describe(ref)} — frame method: {FRAME_METHOD_LABELS.get(cfg.frame_method)}. "
           "Neighbour atoms, periodic images included, are shaded by the attention weight they receive from the "
           "target atom (opacity and size; the colour bar gives the scale); e1, e2, e3 are drawn as red, green and "
           "blue arrows. Click an atom to make it the target.")

try:
    insp = ui.inspect(ref, model, structure)
except StructureError as exc:
    st.error(f"The model cannot take this structure: {exc}")
    st.stop()
symbols = symbols_of(insp.atomic_numbers)
n_atoms, n_layers, n_heads = len(symbols), len(insp.layers), cfg.num_heads

c1, c2, c3 = st.columns([1, 1, 2])
with c1:
    layer = ui.widget(st.selectbox, "Layer", "att_layer", options=list(range(n_layers)), default=0,
                      format_func=lambda k: f"layer {k + 1}")
with c2:
    head_opt = ui.widget(st.selectbox, "Head", "att_head", options=["mean"] + list(range(n_heads)), default=0,
                         format_func=lambda h: "mean over heads" if h == "mean" else f"head {h}")
with c3:
    atom = ui.widget(st.selectbox, "Target atom", "att_atom", options=list(range(n_atoms)), default=0,
                     format_func=lambda i: f"{i}: {symbols[i]}")
head = None if head_opt == "mean" else int(head_opt)

opts = ui.scene_controls("att")
with st.expander("More display options"):
    o1, o2, o3 = st.columns(3)
    cutoff = o1.slider("Show neighbour images with weight ≥ this × max", 0.0, 0.5, 0.02, 0.01, key="att_cutoff")
    min_opacity = o2.slider("Opacity of unattended atoms", 0.0, 0.6, 0.12, 0.02, key="att_minop")
    n_labels = o3.number_input("Label the top-k neighbours", 0, 12, 0, key="att_labels")
    top_k = o1.number_input("Rows in the neighbour table", 3, 60, 12, key="att_topk")

frame = frame_of(insp, layer, atom, head)


def _scene(k: int, title: str, h: int | None | str = "chosen"):
    """Layer k's scene (head ``h``, default the chosen one) with the chosen options: polyhedra, colours,
    supercell and view direction."""
    h = head if h == "chosen" else h
    scene = attention_scene(insp, k, atom, h, min_opacity=min_opacity, neighbor_cutoff=cutoff, title=title,
                            scheme=ui.color_scheme(), color_by=opts["color_by"], repeat=opts["repeat"])
    ui.add_scene_polyhedra(scene, structure, opts["polyhedra"])
    scene.view = view_spec(insp.lattice, opts["view"], frame_of(insp, k, atom, h))
    return scene


scene = _scene(layer, f"{symbols[atom]} {atom}, layer {layer + 1}, " +
               ("head mean" if head is None else f"head {head}"))
stem = f"{structure.composition.reduced_formula}_atom{atom}_layer{layer + 1}"
table = neighbor_table(insp, layer, atom, head, top_k=int(top_k))
label_idx: tuple[int, ...] = ()
if n_labels:
    wanted = {(int(j), tuple(int(v) for v in img.split())) for j, img in
              zip(table["j"].iloc[:int(n_labels)], table["image"].iloc[:int(n_labels)])}
    label_idx = tuple(k for k, a in enumerate(scene.atoms) if (a.index, a.image) in wanted and a.role != "target")

left, right = st.columns([3, 2])
with left:
    drawn = ui.show_scene(scene, height=520, key="att_scene", labels=label_idx, pick_key="att_atom",
                          file_stem=stem)
    if head is None:
        st.caption("The head mean has no frame (each head builds its own): pick a head to see e1, e2, e3.")
    if opts["view"] == "e1" and frame is None:
        st.caption("'Along e1' needs a frame: the oblique view is shown.")
    elif not cfg.uses_angles:
        st.caption("This model uses no frames (Crystalformer baseline): only attention is shown.")
with right:
    st.markdown(f"**Top {len(table)} attended image-edges** (weights sum to 1 over all of the atom's image-edges, "
                "self image included)")
    st.dataframe(table[["rank", "element", "j", "image", "distance (Å)", "weight", "cumulative"]],
                 hide_index=True, height=320,
                 column_config={"weight": st.column_config.ProgressColumn("weight", min_value=0.0, max_value=float(
                     max(1e-9, table["weight"].max())), format="%.4f")})
    if frame is not None:
        st.markdown("**Frame** (rows e1, e2, e3; Cartesian components)")
        st.dataframe({"axis": ["e1 (red)", "e2 (green)", "e3 (blue)"], "x": frame[:, 0], "y": frame[:, 1],
                      "z": frame[:, 2]}, hide_index=True)

st.subheader("σ per head")
sig = sigma_table(insp, atom)
s1, s2 = st.columns([3, 2])
s1.plotly_chart(charts.sigma_chart(sig, title=f"Gaussian width σ of {symbols[atom]} {atom} (Å)"), width="stretch",
                key="att_sigma_chart")
s2.dataframe(sig.style.format("{:.3f}"))

st.subheader("All layers side by side")
st.caption("As in the paper's per-layer figures: the same atom and head in every layer (rotations are linked in "
           "the 3Dmol.js view).")
strip = [_scene(k, f"layer {k + 1}") for k in range(n_layers)]
ui.show_grid(strip, height=300, key="att_strip", file_stem=f"{stem}_layers")

st.subheader("Every layer × head")
st.caption("Small multiples: rows are layers, columns are heads, each panel the same atom seen along the chosen "
           "view (2D projections on one scale; attention as opacity and size, e1/e2/e3 as arrows). Click an atom "
           "in a panel to open that layer and head above.")
if ui.widget(st.toggle, "Show the layer × head grid", "att_grid_on", default=True):
    grid = [[_scene(k, "", h) for h in range(n_heads)] for k in range(n_layers)]
    grid_fig = render_plotly.layer_head_grid_figure(
        grid, row_titles=[f"layer {k + 1}" for k in range(n_layers)],
        col_titles=[f"head {h}" for h in range(n_heads)], panel_px=max(110, min(170, 1100 // n_heads)))
    event = st.plotly_chart(grid_fig, width="stretch", key="att_grid", on_select="rerun", selection_mode="points",
                            config=render_plotly.png_config(f"{stem}_layers_x_heads"))
    selection = event.get("selection") if hasattr(event, "get") else None
    points = list(selection.get("points", [])) if selection else []
    picked = next((p.get("customdata") for p in points if p.get("customdata") is not None), None)
    sig = str(picked)
    if picked is not None and sig != st.session_state.get("_att_grid_sig"):
        st.session_state["_att_grid_sig"] = sig
        k_new, h_new = divmod(int(picked[0]), n_heads)
        if (k_new, h_new) != (layer, head):
            st.session_state["_pending_att_head"] = h_new
            ui.request_value("att_layer", k_new)

st.subheader("Export")
e1, e2, e3, e4 = st.columns(4)
with e1:
    ui.scene_download(drawn, stem, key="att_dl_html")
atoms_for_export = None if n_atoms <= 64 else [atom]
e2.download_button("Attention (CSV)", attention_records(insp, atoms=atoms_for_export).to_csv(index=False),
                   file_name=f"{stem}_attention.csv", mime="text/csv", key="att_dl_att",
                   help="Every image-edge of every layer" + ("" if atoms_for_export is None else
                                                            " (this atom only: the structure is large)"))
e3.download_button("Frames and σ (CSV)", frame_records(insp, atoms=atoms_for_export).to_csv(index=False),
                   file_name=f"{stem}_frames.csv", mime="text/csv", key="att_dl_frames")
e4.download_button("Everything (JSON)", inspection_to_json(insp, {"model": ui.describe(ref), "structure": label,
                                                                   "frame_method": cfg.frame_method}),
                   file_name=f"{stem}_inspection.json", mime="application/json", key="att_dl_json")
st.caption(f"Axis colours: e1 {AXIS_COLORS[0]}, e2 {AXIS_COLORS[1]}, e3 {AXIS_COLORS[2]}. "
           f"{int(np.sum(insp.layers[layer].edges[:, 0] == atom))} image-edges within the "
           f"{cfg.cutoff:.2f} Å neighbour sphere of atom {atom}.")
ui.write_deep_link(layer=layer, head=head_opt, atom=atom, view=opts["view"])
