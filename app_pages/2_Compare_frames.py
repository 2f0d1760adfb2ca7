"""Compare frames: max vs weighted-PCA (and static / PCA / lattice) on the same weights, against the coordination
polyhedron found by CrystalNN."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from crystalframer.analysis.attention import symbols_of
from crystalframer.analysis.compare import (FRAME_METHOD_LABELS, alignment_summary, alignment_table,
                                            comparable_methods, coordination_overview)
from crystalframer.examples import get_example
from crystalframer.structure import StructureError
from crystalframer.viz import charts, render_plotly
from crystalframer.app import ui
from crystalframer.viz.scene import attention_scene

ui.page_header("Compare frames", link_widgets={"atom": "cmp_atom", "head": "cmp_head"})

# The paper's two figures (max vs weighted-PCA frames on the same weights), one click each.
PAPER_FIGURES = {"cmp_fig_c3n4": ("C3N4 (pseudocubic, defect zincblende)", "C", "C3N4 (the paper's figure)"),
                 "cmp_fig_mgf2": ("MgF2 (rutile, sellaite)", "Mg", "MgF2 octahedra (in place of MgSnF4)")}
with st.container(border=True):
    st.markdown("**The paper's figures**: max vs weighted-PCA frames of one atom, layer by layer, on the same "
                "model weights. MgSnF4, the paper's second example, has no structure we could verify; the "
                "rutile-type fluoride MgF2 (MgF6 octahedra) stands in for it.")
    for col, (key, (example, element, caption)) in zip(st.columns(len(PAPER_FIGURES)), PAPER_FIGURES.items()):
        if col.button(caption, key=key, width="stretch"):
            figure_structure = get_example(example)
            ui.set_structure(figure_structure, example)
            st.session_state["_pending_cmp_atom"] = next(
                k for k, site in enumerate(figure_structure) if site.specie.symbol == element)
            st.session_state["_pending_cmp_methods"] = ["max", "weighted_pca"]
            st.session_state["_pending_cmp_side_by_side"] = True
            st.rerun()

ref, model, label, structure = ui.model_and_structure()
skey = ui.structure_key(structure)


@st.cache_data(show_spinner="Finding coordination polyhedra (CrystalNN)…", max_entries=32)
def _overview(key: str, _structure):
    return coordination_overview(_structure)


symbols = [str(s) for s in symbols_of([site.specie.Z if site.is_ordered else
                                       max(site.species.items(), key=lambda kv: kv[1])[0].Z for site in structure])]

st.subheader("Coordination polyhedra")
st.caption("Ligands from pymatgen's CrystalNN; the polyhedron named by LocalStructOrderParams on the cluster of the "
           "ligand images (1 = ideal).")
try:
    overview = _overview(skey, structure)
except Exception as exc:  # CrystalNN can fail on unusual inputs; the rest of the page still works
    st.warning(f"CrystalNN could not analyse this structure: {exc}")
    overview = pd.DataFrame({"site": list(range(len(structure))), "geometry": ""})
else:
    st.dataframe(overview.style.format({"order parameter": "{:.2f}"}), hide_index=True)
    if not structure.is_ordered:
        st.caption("Disordered sites are analysed with their majority species.")

polyhedra = overview[overview["geometry"].isin(["octahedral", "tetrahedral"])]
default_atom = int((polyhedra if len(polyhedra) else overview)["site"].iloc[0])
atom = ui.widget(st.selectbox, "Centre atom", "cmp_atom", options=list(range(len(structure))), default=default_atom,
                 format_func=lambda i: f"{i}: {symbols[i]}")
try:
    env = ui.coordination_envs(structure, [int(atom)])[int(atom)]
except Exception as exc:
    st.warning(f"CrystalNN could not analyse atom {atom}: {exc}")
    env = None
if env is not None:
    st.markdown(f"**{env.describe()}**")
    with st.expander("Ligands and order parameters"):
        st.dataframe(env.ligands, hide_index=True)
        st.json({k: round(v, 4) for k, v in env.scores.items()})

methods_available = comparable_methods(model)
if not methods_available:
    st.info(f"{ui.describe(ref)} was trained without frames (frame_method='none'): there are no angle weights to "
            "run other frame methods on. Choose a model with frames on the Home page.")
    st.stop()

c1, c2 = st.columns([3, 1])
with c1:
    methods = ui.widget(st.multiselect, "Frame methods (same weights; the model's own is exact, the others are "
                        "probes)", "cmp_methods", options=methods_available,
                        default=[m for m in ("max", "weighted_pca", "static") if m in methods_available],
                        format_func=lambda m: FRAME_METHOD_LABELS.get(m, m))
with c2:
    head = ui.widget(st.selectbox, "Head (3D views)", "cmp_head", options=list(range(model.config.num_heads)),
                     default=0, format_func=lambda h: f"head {h}")
directed = st.checkbox("Axis direction matters (angle to the bond vector, not the bond line)", value=True,
                       key="cmp_directed")
if not methods:
    st.info("Pick at least one frame method.")
    st.stop()

try:
    inspections = {m: ui.inspect(ref, model, structure, method=m) for m in methods}
except StructureError as exc:
    st.error(f"The model cannot take this structure: {exc}")
    st.stop()

ui.write_deep_link(atom=int(atom), head=int(head))
if "max" in methods and "weighted_pca" in methods:
    st.subheader("Max vs weighted PCA, side by side")
    if ui.widget(st.toggle, "Side by side (rows: max, weighted PCA; columns: layers), as in the paper's figure",
                 "cmp_side_by_side", default=True):
        pair = []
        for method in ("max", "weighted_pca"):
            row = []
            for k in range(len(inspections[method].layers)):
                scene = attention_scene(inspections[method], k, int(atom), int(head), scheme=ui.color_scheme(),
                                        title=f"{FRAME_METHOD_LABELS.get(method, method)} · layer {k + 1}")
                ui.add_scene_polyhedra(scene, structure, "target")
                row.append(scene)
            pair.append(row)
        stem = f"{structure.composition.reduced_formula}_atom{atom}_max_vs_wpca"
        if ui.renderer() == ui.RENDERERS[0]:  # one 3Dmol.js viewer, rotations linked
            ui.show_grid(pair[0] + pair[1], height=260, key="cmp_side_by_side_grid", rows=2, file_stem=stem)
        else:  # 2D projections: eight more WebGL scenes would push the page past Chromium's 16 live contexts
            st.plotly_chart(render_plotly.layer_head_grid_figure(
                pair, row_titles=[FRAME_METHOD_LABELS.get(m, m) for m in ("max", "weighted_pca")],
                col_titles=[f"layer {k + 1}" for k in range(len(pair[0]))], panel_px=230),
                width="stretch", key="cmp_side_by_side_grid", config=render_plotly.png_config(stem))
        st.caption(f"{symbols[int(atom)]} {atom}, head {head}: e1/e2/e3 in red/green/blue with the atom's "
                   "CrystalNN polyhedron. Max frames point e1 at the most-attended neighbour (a bond); weighted "
                   "PCA takes the principal axes of the attention-weighted neighbour cloud.")
st.subheader("Frames per layer")
for method in methods:
    insp = inspections[method]
    st.markdown(f"**{FRAME_METHOD_LABELS.get(method, method)}**" +
                (" (the model's own method)" if method == model.config.frame_method else ""))
    scenes = [attention_scene(insp, k, int(atom), int(head), title=f"layer {k + 1}", scheme=ui.color_scheme())
              for k in range(len(insp.layers))]
    for scene in scenes:  # the centre's polyhedron, so the axes can be read against its ligands
        ui.add_scene_polyhedra(scene, structure, "target")
    ui.show_grid(scenes, height=260, key=f"cmp_strip_{method}",
                 file_stem=f"{structure.composition.reduced_formula}_atom{atom}_{method}")

st.subheader("Frame axes vs centre→ligand bonds")
if env is None or env.cn == 0:
    st.info("No ligands found for this atom: nothing to compare the frame axes with.")
    st.stop()
table = alignment_table(inspections, int(atom), env, directed=directed)
st.plotly_chart(charts.alignment_chart(table), width="stretch", key="cmp_chart")
summary = alignment_summary(table)
lines = []
for method in methods:
    sub = summary[summary["method"] == method]
    if not sub.empty:
        lines.append(f"{FRAME_METHOD_LABELS.get(method, method)}: median angle {sub['median'].median():.1f}°, "
                     f"{100 * sub['within 10°'].mean():.0f}% of (layer, head, axis) within 10° of a bond")
st.markdown("\n".join(f"- {line}" for line in lines))
st.dataframe(summary.style.format({"mean": "{:.2f}", "median": "{:.2f}", "max": "{:.2f}", "within 10°": "{:.0%}"}),
             hide_index=True)
with st.expander("Every layer, head and axis"):
    st.dataframe(table, hide_index=True)
st.download_button("Alignment table (CSV)", table.to_csv(index=False), file_name="frame_bond_alignment.csv",
                   mime="text/csv", key="cmp_dl")
