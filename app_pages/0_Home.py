"""Home: choose a model and a structure, see the prediction (the app's default page; see app.py)."""

from __future__ import annotations

import streamlit as st

from crystalframer.app import models as registry
from crystalframer.analysis.structures import lattice_table, sites_table, structure_summary
from crystalframer.app.uploads import UploadError, parse_structure_bytes, parse_structure_text
from crystalframer.examples import DEFAULT_EXAMPLE, EXAMPLES, get_example, list_examples
from crystalframer.structure import StructureError
from crystalframer.app import ui
from crystalframer.viz.scene import default_polyhedron_elements, scene_from_structure, view_spec

st.set_page_config(page_title="CrystalFramer", page_icon="🔷", layout="wide")
ui.apply_deep_link()
st.title("CrystalFramer")
st.caption("Crystal property prediction with dynamic local frames (Ito et al., ICLR 2025), in pure PyTorch. "
           "Pick a model and a crystal; the other pages show the attention, the frames, their stability under "
           "perturbations, and fine-tuning.")
ui.no_checkpoint_notice()

# ---------------------------------------------------------------------------------------------------- model
refs = ui.all_model_refs()
if "home_model" not in st.session_state:  # arriving from another page: the shared choice wins
    st.session_state["_keep_home_model"] = ui.current_model_ref()
ref = ui.widget(st.selectbox, "Model", "home_model", options=refs, default=ui.current_model_ref(),
                format_func=ui.describe,
                help="Shipped checkpoints first; a fresh untrained model is offered for exploration.")
st.session_state["cf_model_ref"] = ref
try:
    model = ui.get_model(ref)
except Exception as exc:  # a corrupt or incompatible checkpoint must not take the app down
    st.error(f"Could not load {ui.describe(ref)}: {exc}")
    st.stop()
ui.untrained_warning(model)
summary = registry.model_summary(model)
facts = summary["training"]
if facts and not summary["untrained"]:
    unit = model.config.target_units[0] if model.config.target_units else ""
    parts = [f"trained on {facts['data']}" if "data" in facts else "",
             f"{facts['n_train']} train / {facts.get('n_val', '?')} val structures" if "n_train" in facts else "",
             f"{facts['epochs']} epochs" if "epochs" in facts else "",
             f"validation MAE {facts['val_mae']:.4g} {unit}" if isinstance(facts.get("val_mae"), float) else ""]
    st.caption(f"{summary['frame_method']} frames; " + ", ".join(p for p in parts if p) + ".")
with st.expander("Model details"):
    st.json({k: v for k, v in summary.items() if v not in (None, "")})

# ---------------------------------------------------------------------------------------------------- structure
st.subheader("Structure")
source = ui.widget(st.radio, "Source", "home_source", options=["Built-in example", "Upload a file", "Paste text"],
                   default="Built-in example", horizontal=True)
if source == "Built-in example":
    col1, col2 = st.columns([3, 1])
    with col1:
        name = ui.widget(st.selectbox, "Example", "home_example", options=list_examples(), default=DEFAULT_EXAMPLE)
    with col2:
        primitive = ui.widget(st.checkbox, "Primitive cell", "home_primitive", default=True)
    ex = EXAMPLES[name]
    st.caption(f"{ex.description} Space group {ex.spacegroup.split(':')[0]}; Wyckoff "
               f"{', '.join(f'{s} {w}' for s, w in zip(ex.species, ex.wyckoff))}; {ex.reference}.")
    ui.set_structure(get_example(name, primitive=primitive), name + ("" if primitive else " (conventional)"))
elif source == "Upload a file":
    upload = st.file_uploader("CIF, POSCAR/CONTCAR, extxyz or pymatgen JSON", key="home_upload",
                              help="One structure; the first frame of a multi-frame extxyz is used.")
    if upload is not None:
        try:
            structure = parse_structure_bytes(upload.getvalue(), upload.name)
            ui.set_structure(structure, upload.name)
            st.success(f"Read {upload.name}: {structure.composition.reduced_formula}, {len(structure)} sites.")
        except UploadError as exc:
            st.error(f"{exc}")
            st.caption(f"Still using: {st.session_state.get('cf_structure_label', DEFAULT_EXAMPLE)}")
else:
    fmt = st.selectbox("Format", ["auto", "cif", "poscar", "extxyz", "json"], key="home_paste_fmt")
    text = st.text_area("Structure text", height=200, key="home_paste_text",
                        placeholder="Paste a CIF, a POSCAR, an extxyz frame or pymatgen JSON")
    if st.button("Use this structure", key="home_paste_go"):
        try:
            structure = parse_structure_text(text, fmt=fmt)
            ui.set_structure(structure, "pasted structure")
            st.success(f"Read {structure.composition.reduced_formula}, {len(structure)} sites.")
        except UploadError as exc:
            st.error(f"{exc}")

label, structure = ui.current_structure()
info = structure_summary(structure)
c1, c2, c3, c4 = st.columns(4)
c1.metric("Formula", info["formula"])
c2.metric("Space group", f"{info['spacegroup']} ({info['spacegroup_number']})")
c3.metric("Sites", info["num_sites"])
c4.metric("Volume", f"{info['volume']:.2f} Å³")
st.caption(f"{label}: a = {info['a']:.4f}, b = {info['b']:.4f}, c = {info['c']:.4f} Å; "
           f"α = {info['alpha']:.2f}°, β = {info['beta']:.2f}°, γ = {info['gamma']:.2f}°; "
           f"{info['crystal_system']}; density {info['density']:.3f} g/cm³"
           + ("" if info["is_ordered"] else "; disordered (occupancy-weighted species)"))

# ---------------------------------------------------------------------------------------------------- prediction
st.subheader("Prediction")
FRAME_SAMPLES = 8
try:
    pred, sample_mean, spread = ui.predict_with_spread(ref, model, structure, samples=FRAME_SAMPLES)
except StructureError as exc:
    st.error(f"The model cannot take this structure: {exc}")
    st.stop()
cfg = model.config
cols = st.columns(max(1, len(cfg.target_names)))
for k, (tname, unit) in enumerate(zip(cfg.target_names, cfg.target_units)):
    cols[k].metric(f"{tname}" + (f" ({unit})" if unit else ""), f"{pred[k]:.4f}",
                   help="Deterministic evaluation (exact argmax frames, no tie-break noise).")
    if cfg.uses_angles:
        cols[k].caption(f"frame-sample spread: {sample_mean[k]:.4f} ± {spread[k]:.2g} {unit} (mean ± std over "
                        f"{FRAME_SAMPLES} tie-break noise draws; how much the choice among near-equivalent frames "
                        "matters)")
if registry.is_untrained(model):
    st.caption("Untrained model: the number above carries no physical meaning.")

# ---------------------------------------------------------------------------------------------------- 3D + tables
ui.sidebar()
st.subheader("Unit cell")
h1, h2, h3 = st.columns([2, 1, 1])
sites = list(range(min(len(structure), 48)))
envs = ui.coordination_envs(structure, sites) if len(structure) <= 48 else {}
elements = sorted({env.element for env in envs.values()})
with h1:
    around = ui.widget(st.multiselect, "Coordination polyhedra around (CrystalNN)", "home_poly", options=elements,
                       default=default_polyhedron_elements(envs),
                       help="Preset: cations with 4–8 ligands of other, more electronegative elements.")
with h2:
    view = ui.widget(st.selectbox, "View", "home_view", options=["oblique", "a", "b", "c"], default="oblique",
                     format_func=lambda v: ui.VIEW_LABELS[v])
with h3:
    cells = ui.widget(st.selectbox, "Cells shown", "home_repeat", options=["1×1×1", "2×2×2", "2×2×1", "3×3×3"],
                      default="1×1×1")
scene = scene_from_structure(structure, title=label, scheme=ui.color_scheme(),
                             repeat=tuple(int(v) for v in cells.split("×")))
if around:
    ui.add_scene_polyhedra(scene, structure, "element", tuple(around))
scene.view = view_spec(structure.lattice.matrix, view)
drawn = ui.show_scene(scene, height=480, key="home_scene",
                      file_stem=f"{structure.composition.reduced_formula}_cell")
with st.expander("Lattice and sites"):
    st.dataframe(lattice_table(structure))
    st.dataframe(sites_table(structure), hide_index=True)
ui.write_deep_link()
