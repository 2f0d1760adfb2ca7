"""Training loop with the paper's recipe (docs/model.md §5.1): AdamW, inverse-sqrt schedule, clipping, L1 on normalised
targets, SWA over the last epochs, best-val selection, resume, and DDP through ``torchrun``."""

from __future__ import annotations

import csv
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel

from crystalframer.model.checkpoint import code_version, save_checkpoint
from crystalframer.data.batching import AtomBudgetBatchSampler, inference_batches
from crystalframer.model.config import check_keys
from crystalframer.graph import CrystalGraph, GraphBatch, collate
from crystalframer.model.model import CrystalFramer, resolve_device

RESUME_FILE = "resume_state.pt"


class TrainingError(RuntimeError):
    """Training cannot continue (NaN loss, out of memory, bad data), with the reason."""


LR_SCHEDULES = ("inverse_sqrt", "cosine")


@dataclass
class TrainConfig:
    """Optimisation settings; defaults are the paper's recipe (docs/model.md §5.1) except epochs/batch size."""

    epochs: int = 100
    batch_size: int = 32
    max_atoms_per_batch: int | None = None  # atom budget per batch; None = structure count only
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 1e-5
    schedule_t: float = 4000.0
    # "inverse_sqrt" (the paper: lr·sqrt(T/(T+step)), frozen during SWA) or "cosine" (lr·(1+cos(π·step/S))/2 over
    # the S = epochs × batches-per-epoch planned steps, SWA included). Short CPU budgets end far from converged at a
    # constant-ish lr, where the weights still jump by ±10 % in val MAE from epoch to epoch; decaying to zero
    # within the budget removes that noise instead of only averaging it.
    lr_schedule: str = "inverse_sqrt"
    # Linear learning-rate warm-up over the first steps (0 = none, the paper's recipe). Fine-tuning uses it: Adam's
    # first steps move every weight by about the learning rate whatever its gradient, which knocks a trained model
    # off what it knows before the moment estimates settle.
    warmup_steps: int = 0
    clip_norm: float = 1.0
    swa_epochs: int = 50
    seed: int = 123
    device: str = "auto"
    threads: int = 0  # torch CPU threads (0 = torch's default)
    time_budget_minutes: float | None = None  # stop cleanly after this wall time (then SWA/best are saved)
    log_every: int = 50
    tensorboard: bool = False
    progress: bool = True
    freeze_encoder: bool = False  # train only the output head (fine-tuning on a few labels)
    eval_before_training: bool = False  # log the val MAE at epoch 0 (before any step); it competes as best-val

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        check_keys(cls, data)
        data = dict(data)
        if "betas" in data:
            data["betas"] = tuple(data["betas"])
        return cls(**data)

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when launched by ``torchrun`` (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(),
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def target_statistics(graphs: Sequence[CrystalGraph], n_targets: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std (ddof=0) of the training targets, ignoring NaNs (docs/model.md §2.6)."""
    y = np.stack([g.target for g in graphs]).reshape(len(graphs), n_targets)
    mean = np.nanmean(y, axis=0)
    std = np.nanstd(y, axis=0)
    std = np.where(std > 0, std, 1.0)
    return mean, std


def inverse_sqrt_factor(step: int, t: float) -> float:
    return math.sqrt(t / (t + step))


def cosine_factor(step: int, total_steps: int) -> float:
    """(1 + cos(π·step/total_steps))/2, clamped to 0 after ``total_steps``."""
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / max(1, total_steps))))


def warmup_factor(step: int, warmup_steps: int) -> float:
    """(step + 1)/warmup_steps for the first ``warmup_steps`` steps (0-based), then 1."""
    return 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)


def evaluate_graphs(model: CrystalFramer, graphs: Sequence[CrystalGraph], batch_size: int,
                    device: torch.device) -> dict[str, Any]:
    """MAE/RMSE/R² in physical units (per target) plus predictions, in eval mode."""
    model.eval()
    preds, targets = [], []
    with torch.no_grad():
        for indices in inference_batches([g.num_atoms for g in graphs], batch_size):
            batch = collate([graphs[k] for k in indices], dtype=model.dtype).to(device)
            preds.append(model.denormalize(model(batch)).cpu().double().numpy())
            targets.append(batch.target.cpu().double().numpy())
    pred = np.concatenate(preds)
    true = np.concatenate(targets)
    sizes = np.array([g.num_atoms for g in graphs])
    return regression_metrics(true, pred) | {"pred": pred, "true": true,
                                             "by_size": metrics_by_cell_size(sizes, true, pred)}


# Cell-size groups of the shipped checkpoints' cards (sites per cell, inclusive): MP's median is 20 sites.
CELL_SIZE_BINS: tuple[tuple[int, int | None], ...] = ((1, 8), (9, 20), (21, 40), (41, None))


def cell_size_label(low: int, high: int | None) -> str:
    return f"≤ {high}" if low <= 1 else (f"> {low - 1}" if high is None else f"{low}–{high}")


def metrics_by_cell_size(sizes: np.ndarray, true: np.ndarray, pred: np.ndarray,
                         bins: Sequence[tuple[int, int | None]] = CELL_SIZE_BINS) -> list[dict[str, Any]]:
    """Per group of cell sizes (sites per cell, :data:`CELL_SIZE_BINS`): its label and :func:`regression_metrics`
    over the structures in it (groups without structures are left out). sizes (S,); true, pred (S, targets)."""
    out = []
    for low, high in bins:
        inside = (sizes >= low) & (sizes <= (high if high is not None else np.iinfo(np.int64).max))
        if inside.any():
            out.append({"sites": cell_size_label(low, high)} | regression_metrics(true[inside], pred[inside]))
    return out


def regression_metrics(true: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    mask = np.isfinite(true)
    err = np.where(mask, pred - np.nan_to_num(true), 0.0)
    count = mask.sum(0).clip(min=1)
    mae = np.abs(err).sum(0) / count
    rmse = np.sqrt((err**2).sum(0) / count)
    mean_true = np.where(mask, np.nan_to_num(true), 0.0).sum(0) / count
    ss_tot = (np.where(mask, np.nan_to_num(true) - mean_true, 0.0) ** 2).sum(0)
    r2 = 1.0 - (err**2).sum(0) / np.where(ss_tot > 0, ss_tot, np.nan)
    return {"mae": mae.tolist(), "rmse": rmse.tolist(), "r2": r2.tolist(), "count": mask.sum(0).tolist()}


class Trainer:
    """Trains a :class:`CrystalFramer` on lists of graphs and writes a run directory:

    ``log.csv`` (per-epoch metrics), ``best.safetensors`` (best val, raw model), ``swa.safetensors`` (SWA),
    ``model.safetensors`` (the better of the two on val), ``resume_state.pt`` (weights-only resume state),
    ``train_config.json`` and ``model_config.json``.

    The model is trained in place. keep_normalization: keep the model's target mean/std (fine-tuning) instead of
    estimating them from the training labels. epoch_callback(epoch, row) sees every log row (epoch 0 too with
    ``eval_before_training``). stop_requested() is polled after every step; when it returns True the run stops
    cleanly and the model selected so far is saved, as when the time budget runs out.
    """

    def __init__(self, model: CrystalFramer, train_graphs: Sequence[CrystalGraph], val_graphs: Sequence[CrystalGraph],
                 config: TrainConfig, out_dir: str | Path, info: dict[str, Any] | None = None,
                 epoch_callback: Callable[[int, dict[str, Any]], None] | None = None,
                 keep_normalization: bool = False, stop_requested: Callable[[], bool] | None = None):
        if not train_graphs:
            raise TrainingError("the training set is empty")
        for g in list(train_graphs) + list(val_graphs):
            if g.target is None:
                raise TrainingError(f"structure {g.ident or '?'} has no target")
        self.cfg = config
        self.out_dir = Path(out_dir)
        self.log_path = self.out_dir / "log.csv"  # one row per epoch
        self.info = dict(info or {})
        self.epoch_callback = epoch_callback
        self.keep_normalization = keep_normalization
        self.stop_requested = stop_requested
        self.device = resolve_device(config.device)
        self.dist = init_distributed(self.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        seed_everything(config.seed)
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        self.train_graphs = list(train_graphs)
        self.val_graphs = list(val_graphs)
        self.model = model.to(self.device)
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.epoch = 0
        self.step = 0
        self.best_val = float("inf")
        self.elapsed = 0.0
        self._set_normalisation_if_needed()
        self.info["keep_normalization"] = keep_normalization
        # The commit that trained: the file's own code_version is the one that *saved* it, which differs when the
        # checkout moves on during a long run.
        self.info.setdefault("training_code_version", code_version())
        if config.freeze_encoder:
            for p in list(self.model.embedding.parameters()) + list(self.model.blocks.parameters()):
                p.requires_grad_(False)
        decay = [p for n, p in self.model.named_parameters() if p.requires_grad and "bias" not in n]
        no_decay = [p for n, p in self.model.named_parameters() if p.requires_grad and "bias" in n]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr, betas=config.betas)
        self.swa_model: AveragedModel | None = None
        self.swa_start = max(0, config.epochs - config.swa_epochs)
        self._planned_steps: int | None = None
        self.ddp_model: torch.nn.Module = self.model
        if self.dist.enabled:
            self.ddp_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    # ----- setup ---------------------------------------------------------------------------------------
    def _set_normalisation_if_needed(self) -> None:
        if self.keep_normalization:
            return
        mean, std = target_statistics(self.train_graphs, self.model.config.n_targets)
        self.model.set_target_normalization(mean, std)
        self.info["target_mean"] = mean.tolist()
        self.info["target_std"] = std.tolist()

    def _log(self, message: str) -> None:
        if self.dist.is_main:
            print(message, flush=True)

    # ----- resume ---------------------------------------------------------------------------------------
    def save_resume_state(self) -> None:
        if not self.dist.is_main:
            return
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "swa": None if self.swa_model is None else self.swa_model.state_dict(),
            "epoch": self.epoch, "step": self.step, "best_val": self.best_val, "elapsed": self.elapsed,
            "torch_rng": torch.get_rng_state(),
        }
        tmp = self.out_dir / (RESUME_FILE + ".tmp")
        try:  # atomic: a crash or a full disk leaves the previous state usable
            torch.save(state, tmp)
            os.replace(tmp, self.out_dir / RESUME_FILE)
        finally:
            tmp.unlink(missing_ok=True)

    def try_resume(self) -> bool:
        """Continue an interrupted run from ``resume_state.pt`` (loaded with ``weights_only=True``)."""
        path = self.out_dir / RESUME_FILE
        if not path.is_file():
            return False
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
            self.model.load_state_dict(state["model"])
        except Exception as exc:  # a truncated, foreign or pickled-code file: refuse it, never execute it
            raise TrainingError(f"{path} is not a resume state this run can use ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); delete it or start "
                                "fresh with --no-resume") from None
        self.optimizer.load_state_dict(state["optimizer"])
        if state["swa"] is not None:
            self.swa_model = AveragedModel(self.model)
            self.swa_model.load_state_dict(state["swa"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.best_val, self.elapsed = float(state["best_val"]), float(state["elapsed"])
        torch.set_rng_state(state["torch_rng"].cpu())
        self._truncate_log()
        self._log(f"resumed from {path} at epoch {self.epoch} (step {self.step})")
        return True

    def _truncate_log(self) -> None:
        """Drop log rows of epochs after the resume point (a run killed between logging and saving its state)."""
        if not self.dist.is_main:
            return
        rows = self._read_log()
        kept = [r for r in rows if r.get("epoch", "").isdigit() and int(r["epoch"]) <= self.epoch]
        if len(kept) == len(rows) or not rows:
            return
        tmp = self.log_path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(kept)
        os.replace(tmp, self.log_path)

    # ----- loop -----------------------------------------------------------------------------------------
    def _batches(self, epoch: int) -> list[list[int]]:
        sampler = AtomBudgetBatchSampler(
            [g.num_atoms for g in self.train_graphs], self.cfg.max_atoms_per_batch or sys.maxsize,
            max_structures=self.cfg.batch_size, shuffle=True, seed=self.cfg.seed, drop_last=True,
            num_replicas=self.dist.world_size, rank=self.dist.rank)
        sampler.set_epoch(epoch)
        batches = sampler.batches()
        if not batches:
            raise TrainingError(f"too few batches for {self.dist.world_size} processes")
        return batches

    @property
    def planned_steps(self) -> int:
        """Optimizer steps of the whole run as configured (epochs × batches of epoch 0), for the cosine schedule."""
        if self._planned_steps is None:
            self._planned_steps = self.cfg.epochs * len(self._batches(0))
        return self._planned_steps

    def _stop(self) -> bool:
        return self.stop_requested is not None and bool(self.stop_requested())

    def _validate_and_keep_best(self) -> float:
        """Mean val MAE of the current weights; saved as ``best.safetensors`` when better than any before."""
        metrics = evaluate_graphs(self.model, self.val_graphs, 64, self.device)
        mae = float(np.mean(metrics["mae"]))
        if mae < self.best_val:
            self.best_val = mae
            save_checkpoint(self.model, self.out_dir / "best.safetensors",
                            self._info({"val_mae": metrics["mae"], "epoch": self.epoch, "kind": "best-val"}))
        return mae

    @staticmethod
    def _format_row(row: dict[str, Any]) -> str:
        return " ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())

    def _train_step(self, batch: GraphBatch) -> float:
        model = self.ddp_model
        model.train()
        if self.cfg.lr_schedule == "cosine":
            lr = self.cfg.lr * cosine_factor(self.step, self.planned_steps)
        elif self.epoch < self.swa_start or self.swa_model is None:
            lr = self.cfg.lr * inverse_sqrt_factor(self.step, self.cfg.schedule_t)
        else:
            lr = None  # SWA at the learning rate it started with
        if lr is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr * warmup_factor(self.step, self.cfg.warmup_steps)
        try:
            out = model(batch)
            target = self.model.normalize(batch.target)
            mask = torch.isfinite(target)
            loss = (out - torch.nan_to_num(target)).abs()[mask].mean()
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"loss became {loss.item()} at epoch {self.epoch}, step {self.step} "
                    f"(structures {batch.idents[:5]}...); lower the learning rate or check the data")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_norm)
            self.optimizer.step()
        except torch.OutOfMemoryError as exc:
            raise TrainingError(
                f"out of memory on a batch of {batch.num_graphs} structures / {batch.species.shape[0]} atoms / "
                f"{batch.edge_src.shape[0]} image-edges; lower batch_size or set max_atoms_per_batch") from exc
        self.step += 1
        if self.epoch >= self.swa_start:
            if self.swa_model is None:
                self.swa_model = AveragedModel(self.model)
            self.swa_model.update_parameters(self.model)
        return float(loss.item())

    def fit(self) -> dict[str, Any]:
        """Run until ``epochs`` (or the time budget); returns the final metrics."""
        cfg = self.cfg
        dtype = self.model.dtype
        if self.dist.is_main:
            (self.out_dir / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
            self.model.config.save(self.out_dir / "model_config.json")
        writer = None
        if cfg.tensorboard and self.dist.is_main:
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(str(self.out_dir / "tb"))
        start_time = time.time() - self.elapsed
        stopped_early = False
        if cfg.eval_before_training and self.epoch == 0 and self.dist.is_main and self.val_graphs:
            # The starting weights compete in the best-val selection: training never returns a worse model.
            row0 = {"epoch": 0, "step": 0, "train_l1_norm": float("nan"), "lr": 0.0, "elapsed_s": 0.0,
                    "val_mae": self._validate_and_keep_best()}
            self._log(self._format_row(row0))
            if self.epoch_callback is not None:
                self.epoch_callback(0, row0)
        while self.epoch < cfg.epochs and not stopped_early:
            if self._stop():
                stopped_early = True
                self._log(f"stopped on request before epoch {self.epoch + 1}")
                break
            batches = self._batches(self.epoch)
            iterator: Iterator[list[int]] | Any = batches
            if cfg.progress and self.dist.is_main:
                from tqdm.auto import tqdm
                iterator = tqdm(batches, desc=f"epoch {self.epoch + 1}/{cfg.epochs}", unit="batch", leave=False)
            losses = []
            for idx in iterator:
                batch = collate([self.train_graphs[k] for k in idx], dtype=dtype).to(self.device)
                losses.append(self._train_step(batch))
                if cfg.progress and self.dist.is_main and hasattr(iterator, "set_postfix"):
                    iterator.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
                if self._stop():
                    stopped_early = True
                    break
            if stopped_early and not losses:
                break
            train_loss = float(np.mean(losses)) if losses else float("nan")
            if self.dist.enabled:
                t = torch.tensor([train_loss], device=self.device)
                dist.all_reduce(t)
                train_loss = float(t.item()) / self.dist.world_size
            self.epoch += 1
            self.elapsed = time.time() - start_time
            row = {"epoch": self.epoch, "step": self.step, "train_l1_norm": train_loss,
                   "lr": self.optimizer.param_groups[0]["lr"], "elapsed_s": round(self.elapsed, 1)}
            if self.dist.is_main and self.val_graphs:
                row["val_mae"] = self._validate_and_keep_best()
            if self.dist.is_main:
                new = not self.log_path.exists()
                with self.log_path.open("a", newline="") as fh:
                    w = csv.DictWriter(fh, fieldnames=list(row))
                    if new:
                        w.writeheader()
                    w.writerow(row)
                if writer is not None:
                    for k, v in row.items():
                        writer.add_scalar(k, v, self.epoch)
                self._log(self._format_row(row))
                if self.epoch_callback is not None:
                    self.epoch_callback(self.epoch, row)
            self.save_resume_state()
            if stopped_early:
                self._log(f"stopped on request after epoch {self.epoch}")
                break
            if cfg.time_budget_minutes is not None and self.elapsed > cfg.time_budget_minutes * 60:
                self._log(f"time budget of {cfg.time_budget_minutes} min reached after epoch {self.epoch}")
                stopped_early = True
                break
        return self._finish(stopped_early)

    def _info(self, extra: dict[str, Any]) -> dict[str, Any]:
        return self.info | {"train_config": self.cfg.to_dict(), "epochs_done": self.epoch, "steps": self.step,
                            "wall_time_s": round(self.elapsed, 1), "world_size": self.dist.world_size} | extra

    def _read_log(self) -> list[dict[str, str]]:
        """The rows of ``log.csv`` as written (strings); none before the first epoch."""
        if not self.log_path.is_file():
            return []
        with self.log_path.open(newline="") as fh:
            return list(csv.DictReader(fh))

    def _history(self) -> list[dict[str, float]]:
        """The per-epoch rows of ``log.csv`` (resumed runs included) as numbers, so that a shipped checkpoint keeps
        its learning curve when the run folder is gone."""
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in self._read_log()]

    def _finish(self, stopped_early: bool) -> dict[str, Any]:
        result: dict[str, Any] = {"epochs_done": self.epoch, "steps": self.step, "wall_time_s": self.elapsed,
                                  "stopped_early": stopped_early}
        self.final_model = self.model
        if not self.dist.is_main:
            return result
        candidates: dict[str, tuple[float, CrystalFramer]] = {}
        if self.val_graphs:
            if (self.out_dir / "best.safetensors").exists():
                from crystalframer.model.checkpoint import load_model
                best = load_model(self.out_dir / "best.safetensors", device=self.device, dtype=self.model.dtype)
                candidates["best-val"] = (float(self.best_val), best)
            if self.swa_model is not None:
                swa = self.swa_model.module
                swa_metrics = evaluate_graphs(swa, self.val_graphs, 64, self.device)
                swa_mae = float(np.mean(swa_metrics["mae"]))
                save_checkpoint(swa, self.out_dir / "swa.safetensors",
                                self._info({"val_mae": swa_metrics["mae"], "kind": "swa"}))
                candidates["swa"] = (swa_mae, swa)
                result["val_mae_swa"] = swa_mae
            result["val_mae_best"] = float(self.best_val)
        if candidates:
            kind, (mae, chosen) = min(candidates.items(), key=lambda kv: kv[1][0])
        else:
            kind, mae, chosen = "last", float("nan"), self.model
        final = evaluate_graphs(chosen, self.val_graphs, 64, self.device) if self.val_graphs else {}
        info = self._info({"kind": kind, "val_mae": final.get("mae"), "val_rmse": final.get("rmse"),
                           "val_r2": final.get("r2"), "val_mae_best": result.get("val_mae_best"),
                           "val_mae_swa": result.get("val_mae_swa"),
                           "val_by_size": [{"sites": g["sites"], "mae": g["mae"], "count": g["count"]}
                                           for g in final.get("by_size", [])],
                           "history": self._history()})
        save_checkpoint(chosen, self.out_dir / "model.safetensors", info)
        for p in chosen.parameters():  # frozen for training only (freeze_encoder)
            p.requires_grad_(True)
        chosen.checkpoint_info = {"path": str(self.out_dir / "model.safetensors"), "code_version": code_version(),
                                  "info": info}
        self.final_model = chosen
        result.update({"selected": kind, "val_mae": mae})
        (self.out_dir / "result.json").write_text(json.dumps(result, indent=2, default=str))
        self._log(f"done: selected {kind} model, val MAE {mae:.5g}")
        return result
