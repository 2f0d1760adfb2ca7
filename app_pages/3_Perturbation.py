"""Perturbation: prediction and frame changes against the size of a perturbation, for several models side by side.

Max frames pick the single most-attended neighbour: a tiny displacement can swap which neighbour wins, so the frame
jumps (a discontinuity); weighted-PCA frames move smoothly except where eigenvalues are (near-)degenerate. This page
measures that on the chosen structure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from crystalframer.app import models as registry
from crystalframer.analysis.perturb import DEFAULT_MAGNITUDES, PERTURBATIONS, STRAIN_MODES, SWITCH_DEGREES, sweep
from crystalframer.analysis.perturb import sweep_summary
from crystalframer.analysis.structures import element_symbols
from crystalframer.structure import StructureError
from crystalframer.viz import charts
from crystalframer.app import ui

ui.page_header("Perturbation", show_renderer=False)
label, structure = ui.current_structure()
current = ui.current_model_ref()
refs = ui.all_model_refs()


def _default_models() -> list[str]:
    other = registry.companion_ref(current, refs)
    return [current] + ([other] if other else [])


st.caption(f"Structure: {label}. Each perturbed structure is evaluated by every chosen model (the same perturbed "
           "structures for all models); frames are compared atom by atom with the unperturbed ones (rotated back "
           "for rotations; supercell atoms compared with the atom they copy).")
model_refs = ui.widget(st.multiselect, "Models", "pert_models", options=refs, default=_default_models(),
                       format_func=ui.describe)
c1, c2, c3 = st.columns(3)
with c1:
    kind = ui.widget(st.selectbox, "Perturbation", "pert_kind", options=list(PERTURBATIONS), default="rattle",
                     format_func=lambda k: f"{k} — {PERTURBATIONS[k]}")
with c2:
    magnitudes_text = st.text_input("Magnitudes (comma-separated)",
                                    value=", ".join(f"{m:g}" for m in DEFAULT_MAGNITUDES[kind]),
                                    key=f"pert_mags_{kind}")
with c3:
    samples = st.number_input("Random samples per magnitude", 1, 20, 2, key="pert_samples",
                              help="Rattle, rotation (random axis) and substitution are random; strain and "
                                   "supercells are deterministic (one sample).")
extra: dict = {}
d1, d2, d3 = st.columns(3)
if kind == "strain":
    extra["strain_mode"] = d1.selectbox("Strain", STRAIN_MODES, key="pert_strain_mode")
if kind == "substitute":
    elements = sorted(set(element_symbols(structure)))
    extra["old"] = d1.selectbox("Replace", elements, key="pert_old")
    extra["new"] = d2.text_input("by element", value="Zr" if extra["old"] != "Zr" else "Hf", key="pert_new")
switch = d3.number_input("Count a frame as switched when the e1 line turns by more than (°)", 1.0, 89.0,
                         SWITCH_DEGREES, key="pert_switch")
seed = st.number_input("Seed", 0, 10_000, 0, key="pert_seed")


def _parse_magnitudes(text: str) -> list[float]:
    values = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if part:
            values.append(float(part))
    if not values:
        raise ValueError("enter at least one magnitude")
    if kind == "supercell" and any(v < 1 or v != int(v) or v > 4 for v in values):
        raise ValueError("supercell sizes must be whole numbers from 1 to 4")
    if kind == "substitute" and any(not 0 < v <= 1 for v in values):
        raise ValueError("substitution fractions must be in (0, 1]")
    return values


try:
    magnitudes = _parse_magnitudes(magnitudes_text)
except ValueError as exc:
    st.error(f"Magnitudes: {exc}")
    st.stop()

n_cases = len(magnitudes) * (1 if kind in ("strain", "supercell") else int(samples))
atoms_max = len(structure) * (int(max(magnitudes)) ** 3 if kind == "supercell" else 1)
st.caption(f"{len(model_refs)} model(s) × {n_cases + 1} structures (largest: {atoms_max} atoms).")
if kind == "supercell" and atoms_max > 2000:
    st.error(f"A {int(max(magnitudes))}³ supercell has {atoms_max} atoms, more than the model's limit of 2000.")
    st.stop()
if kind == "supercell" and atoms_max > 600:
    st.warning("That supercell is large: this may take a while on a small machine.")

if st.button("Run sweep", type="primary", key="pert_run", disabled=not model_refs):
    models = {ui.short_label(r): ui.get_model(r) for r in model_refs}
    bar = st.progress(0.0, text="sweeping…")
    try:
        df = sweep(models, structure, kind, magnitudes, samples=int(samples), seed=int(seed),
                   switch_degrees=float(switch), callback=lambda d, t: bar.progress(d / t, text=f"{d}/{t}"), **extra)
        st.session_state["cf_sweep"] = {"df": df, "kind": kind, "structure": label}
        bar.progress(1.0, text="done")
    except (ValueError, StructureError) as exc:
        bar.empty()
        st.error(f"Sweep failed: {exc}")

result = st.session_state.get("cf_sweep")
if result is not None:
    df: pd.DataFrame = result["df"]
    st.subheader(f"{result['kind']} on {result['structure']}")
    targets = list(dict.fromkeys(df["target"]))
    target = targets[0]
    if len(set(df["target"])) > 1:
        target = st.selectbox("Target", targets, key="pert_target")
    positive = (df["magnitude"] > 0).all()
    o1, o2 = st.columns(2)
    log_x = o1.checkbox("Log magnitude axis", value=bool(positive and result["kind"] in ("rattle", "strain")),
                        key="pert_logx", disabled=not positive)
    angle_metric = o2.selectbox("Frame change shown", list(charts.ANGLE_METRICS), key="pert_metric",
                                format_func=lambda k: charts.ANGLE_METRICS[k])
    st.plotly_chart(charts.perturbation_chart(df, target=target, magnitude_label=PERTURBATIONS[result["kind"]],
                                              log_x=log_x, angle_metric=angle_metric), width="stretch",
                    key="pert_chart")
    st.caption("Left: |prediction − unperturbed prediction|. Middle: mean change of the frames over layers × atoms "
               "× heads (the axis line ignores the sign of e1). Right: fraction of (layer, atom, head) frames whose "
               "e1 line turned by more than the threshold — a jump to another neighbour, the max-frame "
               "discontinuity; dotted: frames whose e1 only reversed its sign (PCA-type axes at near-symmetric "
               "sites). Symmetric crystals have exactly tied neighbours, so even a 0.001 Å rattle can swap the "
               "chosen neighbour. Frameless models have no frame metrics.")
    summary = sweep_summary(df[df["target"] == target])
    st.dataframe(summary, hide_index=True)
    if np.isnan(df["e1 angle mean"]).all():
        st.info("None of the chosen models uses frames.")
    st.download_button("Results (CSV)", df.to_csv(index=False), file_name=f"perturbation_{result['kind']}.csv",
                       mime="text/csv", key="pert_dl")

ui.write_deep_link()
