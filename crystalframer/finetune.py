"""A small, self-contained fine-tuning loop (used by the app's Fine-tune page).

It always trains a deep copy: the model passed in (e.g. a cached, shared one) is never modified.
Recipe: AdamW (betas 0.9/0.98, weight decay 1e-5), L1 loss on normalised targets, gradient clipping at 1.0.
When the target differs from the checkpoint's, the target normalisation is re-estimated from the training labels
(and a single-output head is put in place if the checkpoint predicted several targets).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from .graph import CrystalGraph, collate
from .model import CrystalFramer

__all__ = ["FinetuneResult", "finetune", "prepare_for_target", "predict_graphs", "FinetuneStopped"]


class FinetuneStopped(Exception):
    """Raised by a callback to stop training early; the model trained so far is kept."""


@dataclass
class FinetuneResult:
    model: CrystalFramer
    history: list[dict[str, float]] = field(default_factory=list)  # epoch, train_loss, val_mae, seconds
    train_true: np.ndarray = field(default_factory=lambda: np.zeros(0))
    train_pred: np.ndarray = field(default_factory=lambda: np.zeros(0))
    val_true: np.ndarray = field(default_factory=lambda: np.zeros(0))
    val_pred: np.ndarray = field(default_factory=lambda: np.zeros(0))
    info: dict[str, Any] = field(default_factory=dict)

    def __iter__(self):  # ``model, history = finetune(...)``
        yield self.model
        yield self.history


def prepare_for_target(model: CrystalFramer, target_name: str, target_unit: str, train_targets: np.ndarray,
                       renormalize: bool | None = None) -> bool:
    """Point ``model`` (in place: call it on a copy) at one target. Returns whether the normalisation was reset.

    renormalize=None: reset mean/std from the training labels unless the checkpoint already predicts exactly this
    one target under the same name.
    """
    cfg = model.config
    same = cfg.n_targets == 1 and cfg.target_names[0] == target_name
    if cfg.n_targets != 1:
        old = model.head[-1]
        new = nn.Linear(old.in_features, 1).to(device=old.weight.device, dtype=old.weight.dtype)
        model.head[-1] = new
        model.target_mean = torch.zeros(1, device=old.weight.device, dtype=model.target_mean.dtype)
        model.target_std = torch.ones(1, device=old.weight.device, dtype=model.target_std.dtype)
        cfg.n_targets = 1
        same = False
    cfg.target_names = [target_name]
    cfg.target_units = [target_unit]
    if renormalize is None:
        renormalize = not same
    if renormalize:
        y = np.asarray(train_targets, dtype=np.float64).reshape(-1)
        std = float(y.std()) if y.size > 1 else 1.0
        if not math.isfinite(std) or std < 1e-8:
            std = 1.0
        model.set_target_normalization([float(y.mean())], [std])
    return bool(renormalize)


@torch.no_grad()
def predict_graphs(model: CrystalFramer, graphs: Sequence[CrystalGraph], batch_size: int = 32) -> np.ndarray:
    """(n,) physical predictions of the first target for prebuilt graphs (eval mode)."""
    if not graphs:
        return np.zeros(0)
    was = model.training
    model.eval()
    try:
        out = []
        for start in range(0, len(graphs), batch_size):
            batch = collate(list(graphs[start:start + batch_size]), dtype=model.dtype).to(model.device)
            out.append(model.denormalize(model(batch))[:, 0].double().cpu().numpy())
    finally:
        model.train(was)
    return np.concatenate(out)


def finetune(model: CrystalFramer, train_structs: Sequence[Any], train_targets: Sequence[float],
             val_structs: Sequence[Any], val_targets: Sequence[float], epochs: int = 3, lr: float = 1e-4,
             freeze_encoder: bool = False, batch_size: int = 16,
             callback: Callable[[int, float, float], None] | None = None, target_name: str | None = None,
             target_unit: str = "", renormalize: bool | None = None, seed: int = 0,
             weight_decay: float = 1e-5, clip: float = 1.0) -> FinetuneResult:
    """Fine-tune a copy of ``model`` on (structure, target) pairs; returns the new model and its history.

    ``callback(epoch, train_loss, val_mae)`` is called after every epoch (epoch counts from 1; val_mae is NaN
    without validation data); it may raise :class:`FinetuneStopped` to stop early.
    """
    y_train = np.asarray(train_targets, dtype=np.float64).reshape(-1)
    y_val = np.asarray(val_targets, dtype=np.float64).reshape(-1)
    if len(train_structs) != len(y_train) or len(val_structs) != len(y_val):
        raise ValueError("structures and targets must have the same length")
    if len(y_train) == 0:
        raise ValueError("no training structures")
    if not (np.all(np.isfinite(y_train)) and np.all(np.isfinite(y_val))):
        raise ValueError("targets contain NaN or infinite values; drop those rows first")
    if epochs < 1:
        raise ValueError("epochs must be ≥ 1")

    m = copy.deepcopy(model)
    target_name = target_name or m.config.target_names[0]
    renormalized = prepare_for_target(m, target_name, target_unit, y_train, renormalize)

    train_graphs = [m.make_graph(s, target=[y], ident=str(k)) for k, (s, y) in enumerate(zip(train_structs, y_train))]
    val_graphs = [m.make_graph(s, target=[y], ident=str(k)) for k, (s, y) in enumerate(zip(val_structs, y_val))]
    if not m.gauss_stats_frozen:
        m.calibrate(train_graphs[: max(1, batch_size)])

    if freeze_encoder:
        for p in m.embedding.parameters():
            p.requires_grad_(False)
        for p in m.blocks.parameters():
            p.requires_grad_(False)
    params = [p for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay)
    gen = np.random.default_rng(seed)
    torch_gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)

    history: list[dict[str, float]] = []
    stopped = False
    try:
        for epoch in range(1, epochs + 1):
            t0 = time.time()
            m.train()
            order = gen.permutation(len(train_graphs))
            total, count = 0.0, 0
            for start in range(0, len(order), batch_size):
                chunk = [train_graphs[k] for k in order[start:start + batch_size]]
                batch = collate(chunk, dtype=m.dtype).to(m.device)
                pred = m(batch)
                loss = (pred - m.normalize(batch.target)).abs().mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(params, clip)
                optimizer.step()
                total += float(loss.detach()) * len(chunk)
                count += len(chunk)
            train_loss = total / max(count, 1)
            val_mae = float(np.mean(np.abs(predict_graphs(m, val_graphs) - y_val))) if val_graphs else float("nan")
            history.append({"epoch": epoch, "train_loss": train_loss, "val_mae": val_mae,
                            "seconds": time.time() - t0})
            if callback is not None:
                try:
                    callback(epoch, train_loss, val_mae)
                except FinetuneStopped:
                    stopped = True
                    break
    finally:
        torch.random.set_rng_state(torch_gen_state)
        for p in m.parameters():
            p.requires_grad_(True)
        m.eval()

    result = FinetuneResult(model=m, history=history, train_true=y_train, train_pred=predict_graphs(m, train_graphs),
                            val_true=y_val, val_pred=predict_graphs(m, val_graphs))
    base_info = getattr(model, "checkpoint_info", {}) or {}
    result.info = {
        "finetuned_from": base_info.get("path") or "",
        "target": target_name, "target_unit": target_unit, "renormalized": renormalized,
        "n_train": len(train_graphs), "n_val": len(val_graphs), "epochs_run": len(history),
        "stopped_early": stopped, "lr": lr, "batch_size": batch_size, "freeze_encoder": freeze_encoder,
        "optimizer": "AdamW(betas=(0.9, 0.98), weight_decay=%g), L1 on normalised targets, clip %g" % (
            weight_decay, clip),
        "metrics": {"val_mae": history[-1]["val_mae"] if history else float("nan"),
                    "train_mae": float(np.mean(np.abs(result.train_pred - y_train)))},
    }
    m.checkpoint_info = {"info": result.info, "path": "", "code_version": ""}  # type: ignore[attr-defined]
    return result
