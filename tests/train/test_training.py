"""Trainer: loss goes down, resume continues, checkpoints reload exactly, DDP keeps replicas identical."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from crystalframer import CrystalFramer, load_model
from crystalframer.train.trainer import TrainConfig, Trainer, TrainingError
from helpers.tiny import labelled_structures, tiny_config


def graphs_for(model, count=24, seed=0):
    structures, labels = labelled_structures(count, seed)
    return [model.make_graph(s, target=[y], ident=f"s{k}") for k, (s, y) in enumerate(zip(structures, labels))]


def read_log(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_two_epochs_lower_the_loss(tmp_path):
    torch.manual_seed(0)
    model = CrystalFramer(tiny_config())
    graphs = graphs_for(model)
    cfg = TrainConfig(epochs=4, batch_size=4, swa_epochs=1, lr=2e-3, progress=False, device="cpu")
    result = Trainer(model, graphs[:18], graphs[18:], cfg, tmp_path).fit()
    rows = read_log(tmp_path / "log.csv")
    assert len(rows) == 4
    assert float(rows[-1]["train_l1_norm"]) < float(rows[0]["train_l1_norm"])
    assert result["selected"] in ("best-val", "swa")
    for name in ("best.safetensors", "swa.safetensors", "model.safetensors", "resume_state.pt"):
        assert (tmp_path / name).exists()


def test_shipped_checkpoint_carries_its_learning_curve(tmp_path):
    """A checkpoint copied out of its run folder still gives its card the per-epoch rows of log.csv."""
    import shutil

    from crystalframer import read_metadata
    from scripts.make_card import run_summary

    torch.manual_seed(0)
    model = CrystalFramer(tiny_config())
    graphs = graphs_for(model)
    cfg = TrainConfig(epochs=2, batch_size=4, swa_epochs=1, progress=False, device="cpu")
    Trainer(model, graphs[:18], graphs[18:], cfg, tmp_path / "run").fit()
    rows = read_log(tmp_path / "run" / "log.csv")
    history = read_metadata(tmp_path / "run" / "model.safetensors")["info"]["history"]
    assert [h["epoch"] for h in history] == [1.0, 2.0]
    for h, row in zip(history, rows):
        assert h["val_mae"] == float(row["val_mae"]) and h["elapsed_s"] == float(row["elapsed_s"])
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    shutil.copyfile(tmp_path / "run" / "model.safetensors", shipped / "model.safetensors")
    summary = run_summary(shipped)
    assert [float(r["val_mae"]) for r in summary["rows"]] == [float(r["val_mae"]) for r in rows]
    assert summary["wall_s"] == float(rows[-1]["elapsed_s"])


def test_resume_continues_where_it_stopped(tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=4, swa_epochs=1, progress=False, device="cpu")
    torch.manual_seed(0)
    model = CrystalFramer(tiny_config())
    graphs = graphs_for(model)
    Trainer(model, graphs[:18], graphs[18:], cfg, tmp_path).fit()
    steps_after_two = int(read_log(tmp_path / "log.csv")[-1]["step"])

    cfg3 = TrainConfig(epochs=3, batch_size=4, swa_epochs=1, progress=False, device="cpu")
    resumed = Trainer(CrystalFramer(tiny_config()), graphs[:18], graphs[18:], cfg3, tmp_path)
    assert resumed.try_resume()
    assert resumed.epoch == 2 and resumed.step == steps_after_two
    # The resumed model holds the trained weights, not a fresh initialisation.
    for (name, p), q in zip(model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(p, q), name
    resumed.fit()
    rows = read_log(tmp_path / "log.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert int(rows[-1]["step"]) > steps_after_two


def test_save_load_gives_identical_predictions(tmp_path):
    torch.manual_seed(0)
    model = CrystalFramer(tiny_config(frame_method="max"))
    graphs = graphs_for(model)
    Trainer(model, graphs[:18], graphs[18:], TrainConfig(epochs=1, batch_size=4, swa_epochs=0, progress=False,
                                                          device="cpu"), tmp_path).fit()
    loaded = load_model(tmp_path / "model.safetensors")
    structures, _ = labelled_structures(6, seed=3)
    again = load_model(tmp_path / "model.safetensors")
    np.testing.assert_array_equal(loaded.predict(structures), again.predict(structures))
    info = loaded.checkpoint_info["info"]
    assert info["kind"] in ("best-val", "swa") and "val_mae" in info and "train_config" in info
    assert loaded.gauss_stats_frozen


def test_nan_labels_are_masked_but_nan_loss_stops(tmp_path):
    torch.manual_seed(0)
    model = CrystalFramer(tiny_config())
    graphs = graphs_for(model, 8)
    graphs[0].target = np.array([np.nan])  # a missing label is ignored by the loss
    Trainer(model, graphs[:6], graphs[6:], TrainConfig(epochs=1, batch_size=4, swa_epochs=0, progress=False,
                                                        device="cpu"), tmp_path / "a").fit()
    with torch.no_grad():
        model.embedding.weight.fill_(float("nan"))
    with pytest.raises(TrainingError, match="loss became nan"):
        Trainer(model, graphs[1:6], graphs[6:], TrainConfig(epochs=1, batch_size=4, swa_epochs=0, progress=False,
                                                             device="cpu"), tmp_path / "b").fit()


def test_ddp_two_processes_keep_replicas_identical(tmp_path):
    script = Path(__file__).resolve().parents[1] / "helpers" / "ddp_train.py"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[1])]))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29533", str(script), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    p0 = np.load(tmp_path / "params_rank0.npy")
    p1 = np.load(tmp_path / "params_rank1.npy")
    np.testing.assert_array_equal(p0, p1)
    assert (tmp_path / "model.safetensors").exists()
    assert len(read_log(tmp_path / "log.csv")) == 2


def test_cosine_schedule_decays_to_zero_over_the_planned_steps_swa_included(tmp_path):
    from crystalframer.train.trainer import cosine_factor

    assert cosine_factor(0, 100) == 1.0
    assert cosine_factor(50, 100) == pytest.approx(0.5)
    assert cosine_factor(100, 100) == pytest.approx(0.0) and cosine_factor(150, 100) == pytest.approx(0.0)
    torch.manual_seed(0)
    model = CrystalFramer(tiny_config())
    graphs = graphs_for(model)
    cfg = TrainConfig(epochs=3, batch_size=4, swa_epochs=1, lr=1e-3, lr_schedule="cosine", progress=False,
                      device="cpu")
    trainer = Trainer(model, graphs[:18], graphs[18:], cfg, tmp_path)
    assert trainer.planned_steps == 3 * 4  # 18 structures in batches of 4, last one dropped
    trainer.fit()
    lrs = [float(r["lr"]) for r in read_log(tmp_path / "log.csv")]
    # lr set before each step: the last of each epoch is step 4k-1 of 12; it keeps decaying during SWA.
    assert lrs == pytest.approx([1e-3 * cosine_factor(4 * k - 1, 12) for k in (1, 2, 3)])
    assert lrs[0] > lrs[1] > lrs[2] > 0


def test_unknown_lr_schedule_is_a_clear_error():
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")
