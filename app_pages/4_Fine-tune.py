"""Fine-tune: train a copy of the loaded model on uploaded labelled structures, live, and download the checkpoint."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from crystalframer.app.jobs import FinetuneJob, warm_up
from crystalframer.app.text import finetune_summary, number_with_unit
from crystalframer.app.uploads import UploadError, parse_dataset, select_target, split_indices
from crystalframer.model.checkpoint import save_checkpoint
from crystalframer.train.finetune import finetune, normalization_compatible
from crystalframer.viz import charts
from crystalframer.app import ui

ui.page_header("Fine-tune", show_renderer=False)
warm_up()  # PyTorch's one-time optimiser imports (1.8 s) happen while the user reads and uploads
ref, model = ui.current_model()
st.caption(f"Starting point: {ui.describe(ref)}. Training runs on a copy; the loaded model is never changed. "
           "Recipe: AdamW (betas 0.9/0.98, weight decay 1e-5), L1 loss on normalised targets, gradient clipping "
           "at 1.0.")
ui.untrained_warning(model)

st.subheader("1. Data")
upload = st.file_uploader(
    "Labelled structures: CSV with a 'cif' column and numeric target columns (.csv or .csv.gz), a .zip of "
    "structure files with id_prop.csv (CGCNN layout), or a multi-frame .extxyz with numeric info labels",
    key="ft_upload")
if upload is None:
    st.info("Upload a data set to begin. Small sets train in seconds on a CPU: this page is for quick "
            "adaptation and demonstrations; use `crystalframer train` for real training runs.")
    st.stop()

data_bytes = upload.getvalue()
digest = hashlib.sha1(data_bytes).hexdigest()
cache = st.session_state.get("cf_ft_data")
if cache is None or cache.get("digest") != digest:
    try:
        with st.spinner("Reading structures…"):
            dataset = parse_dataset(data_bytes, upload.name)
        st.session_state["cf_ft_data"] = {"digest": digest, "data": dataset, "name": upload.name}
        st.session_state.pop("cf_ft_result", None)
    except UploadError as exc:
        st.session_state.pop("cf_ft_data", None)
        st.error(f"{exc}")
        st.stop()
dataset = st.session_state["cf_ft_data"]["data"]
for note in dataset.warnings:
    st.warning(note)
st.success(f"{len(dataset)} structures with numeric columns: {', '.join(dataset.targets)}")
with st.expander("Preview"):
    preview = dataset.labels.copy()
    preview.insert(0, "formula", [s.composition.reduced_formula for s in dataset.structures])
    preview.insert(0, "id", dataset.ids)
    st.dataframe(preview.head(200), hide_index=True)

st.subheader("2. Settings")
job: FinetuneJob | None = st.session_state.get("cf_ft_job")
busy = job is not None and job.running
with st.form("ft_form", border=True):
    c1, c2, c3 = st.columns(3)
    default_target = model.config.target_names[0] if model.config.target_names[0] in dataset.targets else None
    target = ui.widget(c1.selectbox, "Target column", "ft_target", options=dataset.targets, default=default_target)
    unit = c1.text_input("Unit of the target", value=model.config.target_units[0] if target ==
                         model.config.target_names[0] else "", key="ft_unit")
    val_fraction = c2.slider("Validation fraction", 0.05, 0.5, 0.2, 0.05, key="ft_val")
    seed = c2.number_input("Split / shuffle seed", 0, 10_000, 0, key="ft_seed")
    epochs = c3.number_input("Epochs", 1, 200, 3, key="ft_epochs")
    lr = c3.select_slider("Learning rate", options=[1e-5, 3e-5, 1e-4, 3e-4, 1e-3], value=1e-4, key="ft_lr",
                          format_func=lambda v: f"{v:g}")
    b1, b2 = st.columns(2)
    batch_size = b1.number_input("Batch size", 1, 128, 8, key="ft_bs")
    freeze = b2.checkbox("Freeze the encoder (train only the output MLP)", value=False, key="ft_freeze")
    go = st.form_submit_button("Start fine-tuning", type="primary", key="ft_go", disabled=busy)

try:
    structures, values, ids, notes = select_target(dataset, target)
    train_idx, val_idx = split_indices(len(structures), val_fraction, seed=int(seed))
except UploadError as exc:
    st.error(f"{exc}")
    st.stop()
for note in notes:
    st.warning(note)
st.caption(f"{len(train_idx)} training and {len(val_idx)} validation structures; target '{target}' from "
           f"{values.min():.4g} to {values.max():.4g}.")
if normalization_compatible(model, unit, values[train_idx]):
    st.caption(f"'{target}' has the unit and range of the checkpoint's '{model.config.target_names[0]}': its target "
               "normalisation is kept, so training starts from what the model already predicts.")
else:
    st.caption(f"The checkpoint predicts '{model.config.target_names[0]}' "
               f"({model.config.target_units[0] or 'no unit'}): the target normalisation is re-estimated from the "
               f"training labels of '{target}'.")

if go and not busy:
    st.session_state.pop("cf_ft_result", None)
    st.session_state.pop("cf_ft_error", None)
    job = FinetuneJob(finetune, model, [structures[k] for k in train_idx], values[train_idx],
                      [structures[k] for k in val_idx], values[val_idx], epochs=int(epochs), lr=float(lr),
                      freeze_encoder=bool(freeze), batch_size=int(batch_size), target_name=str(target),
                      target_unit=unit, seed=int(seed))
    job.meta = {"dataset": st.session_state["cf_ft_data"]["name"], "dataset_sha1": digest,
                "val_fraction": float(val_fraction), "seed": int(seed), "base_model": ui.describe(ref),
                "split": {"train": [ids[k] for k in train_idx], "val": [ids[k] for k in val_idx]},
                "unit": unit}
    st.session_state["cf_ft_job"] = job


def _job_panel(in_fragment: bool = False) -> None:
    """Live progress of the running job (re-drawn every second while it runs), its Stop button, its outcome."""
    job = st.session_state.get("cf_ft_job")
    if job is None:
        return
    history = job.snapshot()
    unit_label = job.meta.get("unit", "")
    done_epochs = max([h["epoch"] for h in history], default=0)
    if job.running:
        start = next((h["val_mae"] for h in history if h["epoch"] == 0), None)
        text = (f"{job.status}: epoch {done_epochs}/{job.epochs}" + (
            f", validation MAE before training {number_with_unit(start, unit_label)}" if start is not None
            else ", building graphs and measuring the starting validation MAE…"))
        st.progress(min(1.0, done_epochs / max(1, job.epochs)), text=text)
        st.button("Stop", key="ft_stop", on_click=job.stop, disabled=job.stop_requested,
                  help="Stops after the current step; the best model so far (the starting one included) is kept.")
        if history:
            st.plotly_chart(charts.training_chart(history, unit=f"({unit_label})" if unit_label else ""),
                            width="stretch", key="ft_live")
        return
    if job.error is not None:
        st.session_state["cf_ft_error"] = f"Fine-tuning failed: {job.error}"
    elif job.result is not None and "cf_ft_result" not in st.session_state:
        result = job.result
        result.info.update({k: v for k, v in job.meta.items() if k != "unit"})
        st.session_state["cf_ft_result"] = result
    st.session_state.pop("cf_ft_job", None)
    if in_fragment:
        st.rerun()  # the whole page, to draw the results section


job = st.session_state.get("cf_ft_job")
if job is not None and job.running:
    st.fragment(run_every=1.0)(lambda: _job_panel(in_fragment=True))()
else:
    _job_panel()
if st.session_state.get("cf_ft_error"):
    st.error(st.session_state["cf_ft_error"])

result = st.session_state.get("cf_ft_result")
if result is not None:
    st.subheader("3. Results")
    unit_label = result.info.get("target_unit") or ""
    st.plotly_chart(charts.training_chart(result.history, unit=f"({unit_label})" if unit_label else ""),
                    width="stretch", key="ft_curves")
    st.plotly_chart(charts.parity_chart({"train": (result.train_true, result.train_pred),
                                         "validation": (result.val_true, result.val_pred)},
                                        unit=f"({unit_label})" if unit_label else "",
                                        title=f"{result.info.get('target')}: parity"), width="stretch",
                    key="ft_parity")
    st.dataframe(pd.DataFrame(result.history), hide_index=True)
    if result.info.get("stopped_early"):
        st.info(f"Stopped on request after {result.info['epochs_run']} epoch(s); the model kept is the best on "
                f"validation so far ({result.info.get('selected', 'last')}).")
    st.markdown(finetune_summary(result.info["metrics"]["val_mae"],
                                 result.info["metrics"].get("val_mae_start", float("nan")), unit_label,
                                 result.info["epochs_run"], result.info["n_train"], result.info["n_val"]))

    @st.cache_data(show_spinner=False, max_entries=4)
    def _checkpoint_bytes(token: str, _result) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            info = dict(_result.info)
            info["metrics"] = {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                               for k, v in info["metrics"].items()}
            path = save_checkpoint(_result.model, Path(tmp) / "finetuned", info=info)
            return path.read_bytes()

    blob = _checkpoint_bytes(result.info["run_id"], result)
    d1, d2 = st.columns(2)
    d1.download_button("Download checkpoint (model.safetensors)", blob, file_name="model.safetensors",
                       mime="application/octet-stream", key="ft_download",
                       help="Same format as the shipped checkpoints: put it in <dir>/<name>/model.safetensors "
                            "and load it with crystalframer.load_model.")
    name = d2.text_input("Name for this session", value=f"finetuned-{result.info.get('target')}", key="ft_name")
    if d2.button("Use this model in the app", key="ft_use"):
        ui.session_models()[name] = result.model
        st.session_state["cf_model_ref"] = ui.SESSION_PREFIX + name
        st.success(f"'{name}' is now the current model on every page (for this browser session).")
