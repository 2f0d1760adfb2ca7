"""2D Plotly charts used by the app pages (plain functions returning figures)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["sigma_chart", "attention_bar_chart", "alignment_chart", "perturbation_chart", "training_chart",
           "parity_chart"]

_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def sigma_chart(sigma: pd.DataFrame, title: str = "σ per head (Å)") -> go.Figure:
    """Grouped bars: rows of ``sigma`` (layers) × columns (heads)."""
    fig = go.Figure()
    for k, (name, row) in enumerate(sigma.iterrows()):
        fig.add_trace(go.Bar(name=str(name), x=list(sigma.columns), y=row.to_numpy(),
                             marker_color=_PALETTE[k % len(_PALETTE)]))
    fig.update_layout(barmode="group", title=title, yaxis_title="σ (Å)", height=300,
                      margin={"l": 40, "r": 10, "t": 40, "b": 30})
    return fig


def attention_bar_chart(table: pd.DataFrame, title: str = "attention weights") -> go.Figure:
    labels = [f"{e} {j} [{n}] {d:.2f} Å" for e, j, n, d in
              zip(table["element"], table["j"], table["image"], table["distance (Å)"])]
    fig = go.Figure(go.Bar(x=table["weight"], y=labels, orientation="h", marker_color="#1f77b4"))
    fig.update_layout(title=title, xaxis_title="weight", height=max(220, 22 * len(labels) + 60),
                      yaxis={"autorange": "reversed"}, margin={"l": 10, "r": 10, "t": 40, "b": 30})
    return fig


def alignment_chart(table: pd.DataFrame) -> go.Figure:
    """Angle to the nearest bond per layer: one panel per axis, one line per method (mean over heads, range)."""
    axes = ["e1", "e2", "e3"]
    fig = make_subplots(rows=1, cols=3, subplot_titles=[f"{a}: angle to nearest bond" for a in axes],
                        shared_yaxes=True)
    if table.empty:
        return fig
    methods = list(dict.fromkeys(table["method"]))
    for c, axis in enumerate(axes, start=1):
        sub = table[table["axis"] == axis]
        for k, method in enumerate(methods):
            g = sub[sub["method"] == method].groupby("layer")["angle (deg)"]
            stats = g.agg(["mean", "min", "max"]).reset_index()
            color = _PALETTE[k % len(_PALETTE)]
            fig.add_trace(go.Scatter(
                x=stats["layer"], y=stats["mean"], mode="lines+markers", name=method, legendgroup=method,
                showlegend=(c == 1), line={"color": color},
                error_y={"type": "data", "symmetric": False, "array": stats["max"] - stats["mean"],
                         "arrayminus": stats["mean"] - stats["min"], "thickness": 1}), row=1, col=c)
        fig.update_xaxes(title_text="layer", dtick=1, row=1, col=c)
    fig.update_yaxes(title_text="degrees (mean over heads; bars: min–max)", row=1, col=1)
    fig.update_layout(height=360, margin={"l": 50, "r": 10, "t": 40, "b": 40})
    return fig


ANGLE_METRICS = {"e1 line angle mean": "e1 axis-line change (°)", "e1 angle mean": "e1 change, signed (°)",
                 "frame angle mean": "frame rotation (°)"}


def perturbation_chart(df: pd.DataFrame, target: str | None = None, magnitude_label: str = "magnitude",
                       log_x: bool = True, angle_metric: str = "e1 line angle mean") -> go.Figure:
    """Three panels against the magnitude: |Δprediction|, a frame-angle change, fraction of frames switched
    (solid; dotted: fraction with only a sign flip). One line per model (mean over samples), samples as points."""
    titles = ["|Δ prediction|", ANGLE_METRICS.get(angle_metric, angle_metric), "frames switched (dotted: sign flips)"]
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles)
    if df.empty:
        return fig
    if target is not None:
        df = df[df["target"] == target]
    models = list(dict.fromkeys(df["model"]))
    for k, model in enumerate(models):
        sub = df[df["model"] == model]
        color = _PALETTE[k % len(_PALETTE)]
        cols = ["|delta|", angle_metric, "switched"]
        extra = ["sign flipped"] if "sign flipped" in sub else []
        mean = sub.groupby("magnitude", as_index=False)[cols + extra].mean()
        if extra:
            fig.add_trace(go.Scatter(x=mean["magnitude"], y=mean["sign flipped"], mode="lines+markers",
                                     name=f"{model} (sign flips)", legendgroup=model, showlegend=False,
                                     line={"color": color, "dash": "dot"}), row=1, col=3)
        for c, col in enumerate(cols, start=1):
            fig.add_trace(go.Scatter(x=sub["magnitude"], y=sub[col], mode="markers", marker={"color": color,
                                     "opacity": 0.35, "size": 6}, showlegend=False, legendgroup=model,
                                     hovertemplate=(f"{model}<br>{magnitude_label}=%{{x}}<br>{col}=%{{y:.3g}}"
                                                    "<extra></extra>")),
                          row=1, col=c)
            fig.add_trace(go.Scatter(x=mean["magnitude"], y=mean[col], mode="lines+markers", name=model,
                                     legendgroup=model, showlegend=(c == 1), line={"color": color}), row=1, col=c)
            fig.update_xaxes(title_text=magnitude_label, type="log" if log_x else "linear", row=1, col=c)
    fig.update_yaxes(range=[-0.02, 1.02], row=1, col=3)
    fig.update_layout(height=420, margin={"l": 50, "r": 10, "t": 40, "b": 40},
                      legend={"orientation": "h", "y": -0.25, "x": 0.0})
    return fig


def training_chart(history: Sequence[dict], unit: str = "") -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=["train loss (L1, normalised)", f"validation MAE {unit}"])
    if history:
        h = pd.DataFrame(history)
        fig.add_trace(go.Scatter(x=h["epoch"], y=h["train_loss"], mode="lines+markers", name="train loss"),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=h["epoch"], y=h["val_mae"], mode="lines+markers", name="val MAE"), row=1, col=2)
    fig.update_xaxes(title_text="epoch", dtick=1)
    fig.update_layout(height=300, showlegend=False, margin={"l": 50, "r": 10, "t": 40, "b": 40})
    return fig


def parity_chart(series: dict[str, tuple[np.ndarray, np.ndarray]], unit: str = "", title: str = "parity") -> go.Figure:
    """``series``: name → (true, predicted)."""
    fig = go.Figure()
    lo, hi = np.inf, -np.inf
    for k, (name, (true, pred)) in enumerate(series.items()):
        true, pred = np.asarray(true), np.asarray(pred)
        if true.size == 0:
            continue
        lo, hi = min(lo, true.min(), pred.min()), max(hi, true.max(), pred.max())
        mae = float(np.mean(np.abs(true - pred)))
        fig.add_trace(go.Scatter(x=true, y=pred, mode="markers", name=f"{name} (MAE {mae:.3g})",
                                 marker={"color": _PALETTE[k % len(_PALETTE)], "size": 7, "opacity": 0.8}))
    if np.isfinite(lo):
        pad = 0.05 * (hi - lo + 1e-9)
        fig.add_trace(go.Scatter(x=[lo - pad, hi + pad], y=[lo - pad, hi + pad], mode="lines", name="y = x",
                                 line={"color": "#888", "dash": "dash"}))
    fig.update_layout(title=title, xaxis_title=f"true {unit}", yaxis_title=f"predicted {unit}", height=420,
                      margin={"l": 50, "r": 10, "t": 40, "b": 40})
    return fig
