"""Package a finished training run as a shipped checkpoint: copy its model and write a model card.

Usage (from the repository root):
    python -m scripts.make_card runs/mp-eform-max checkpoints/mp-eform-max [--compare runs/mp-eform-wpca ...] [--note F]
The card states the exact command, data, split, epochs, wall time, hardware, validation MAE and parameter count,
and (with --compare) a table of the other runs: those with the same data and budget as a like-for-like comparison,
the others apart.
"""

from __future__ import annotations

import argparse
import csv
import platform
import shutil
from pathlib import Path

from crystalframer.benchmark import machine_description
from crystalframer import load_model, read_metadata
from crystalframer.train.trainer import TrainConfig


def run_summary(run: Path) -> dict:
    meta = read_metadata(run / "model.safetensors")
    info = meta["info"]
    log = run / "log.csv"  # a shipped checkpoint folder has no log: it carries the per-epoch rows in its info
    rows = list(csv.DictReader(log.open())) if log.exists() else info.get("history", [])
    model = load_model(run / "model.safetensors")
    return {
        "run": run.name, "frame_method": meta["config"]["frame_method"], "angle_bases": meta["config"]["angle_bases"],
        "params": model.num_trainable_parameters(), "selected": info.get("kind"),
        "target": meta["config"]["target_names"][0], "unit": meta["config"]["target_units"][0],
        "val_mae": (info.get("val_mae") or [float("nan")])[0], "val_rmse": (info.get("val_rmse") or [float("nan")])[0],
        "val_r2": (info.get("val_r2") or [float("nan")])[0], "val_mae_best": info.get("val_mae_best"),
        "val_mae_swa": info.get("val_mae_swa"), "epochs": info.get("epochs_done"), "steps": info.get("steps"),
        "wall_s": float(rows[-1]["elapsed_s"] if rows else info.get("wall_time_s", "nan")),
        "command": info.get("command", ""),
        "data": info.get("data", {}), "rows": rows, "by_size": info.get("val_by_size") or [],
        "code_version": info.get("training_code_version") or meta["code_version"],
        # Settings added after a run was trained held their default value in it.
        "train_config": TrainConfig().to_dict() | info.get("train_config", {}),
    }


# What each MEGNet MP label is, and the paper's test MAE for it (Crystalformer; max frames; weighted PCA).
TARGETS = {
    "megnet_e_form": ("formation energy", (0.0186, 0.0172, 0.0197)),
    "megnet_gappbe": ("PBE band gap", (0.198, 0.185, 0.214)),
}


def preset_sentence(summary: dict) -> str:
    if summary["frame_method"] == "none":
        return ""
    if summary["angle_bases"] == 64:
        return " This is the paper's default CrystalFramer preset."
    if summary["angle_bases"] == 16:
        return (" This is the paper's lightweight CrystalFramer preset (16 angle bases, s_ang = 1, c_ang = 6, "
                "c_dist = 1.5).")
    return ""


# A safety cap that stops a run early: when it did not bind, the runs had the same budget (their epochs say so).
NOT_RECIPE = ("time_budget_minutes",)
# Settings of how a fixed budget is spent: runs differing only in these are tabulated with the difference named.
SCHEDULE_KEYS = ("epochs", "lr_schedule", "swa_epochs")


def recipe_differences(a: dict, b: dict) -> list[str]:
    """Training settings (other than NOT_RECIPE) whose values differ between the runs ``a`` and ``b``."""
    ta, tb = a["train_config"], b["train_config"]
    return sorted(k for k in set(ta) | set(tb) if k not in NOT_RECIPE and ta.get(k) != tb.get(k))


def same_budget(a: dict, b: dict, ignore: tuple[str, ...] = ()) -> bool:
    """Same data selection and the same optimisation settings (the frame method may differ), apart from the
    training settings named in ``ignore``."""
    keys = ("path", "max_sites", "n_train", "n_val", "targets")
    return (all(a["data"].get(k) == b["data"].get(k) for k in keys)
            and all(k in ignore for k in recipe_differences(a, b)))


def comparison_table(runs: list[dict], with_data: bool = False) -> list[str]:
    head = (f"| checkpoint | frames | angle bases | params | val MAE ({runs[0].get('unit', 'eV/atom')}) | best-val raw "
            "| SWA | wall time |")
    rule = "|---|---|---|---|---|---|---|---|"
    if with_data:
        head, rule = head + " train cells | epochs |", rule + "---|---|"
    lines = [head, rule]
    for s in runs:
        row = (f"| {s['run']} | {s['frame_method']} | {s['angle_bases'] if s['frame_method'] != 'none' else '-'} "
               f"| {s['params']:,} | {s['val_mae']:.4f} | {s['val_mae_best']:.4f} | "
               + (f"{s['val_mae_swa']:.4f}" if s["val_mae_swa"] is not None else "-")
               + f" | {s['wall_s'] / 60:.0f} min |")
        if with_data:
            sites = s["data"].get("max_sites")
            row += f" {'≤ ' + str(sites) + ' sites' if sites else 'all'} ({s['data'].get('n_train')}) | {s['epochs']} |"
        lines.append(row)
    return lines


def write_card(summary: dict, others: list[dict], dest: Path, name: str, note: str = "") -> None:
    data = summary["data"]
    tc = summary["train_config"]
    unit = summary["unit"]
    what, paper = TARGETS.get(summary["target"], (summary["target"], None))
    lines = [
        f"# {name}", "",
        f"CrystalFramer checkpoint predicting MP {what} (`{summary['target']}`, {unit}) with "
        f"**{summary['frame_method']}** frames"
        + (f" ({summary['angle_bases']} angle bases per axis)." if summary["frame_method"] != "none"
           else " (the Crystalformer baseline: no frames).")
        + preset_sentence(summary), "",
        "## Result", "",
        f"- Validation MAE: **{summary['val_mae']:.4f} {unit}** (RMSE {summary['val_rmse']:.4f}, "
        f"R² {summary['val_r2']:.4f}) on the official MEGNet MP `val` split"
        + (f" restricted to cells with ≤ {data.get('max_sites')} sites" if data.get("max_sites") else
           " (all cell sizes)") + f" ({data.get('n_val')} structures).",
        f"- Shipped weights: the {summary['selected']} model (best-val raw model: "
        f"{summary['val_mae_best']:.4f}; SWA average: "
        + (f"{summary['val_mae_swa']:.4f}" if summary["val_mae_swa"] is not None else "n/a") + ").",
        f"- Trainable parameters: {summary['params']:,}.", "",
    ]
    if summary["by_size"]:
        lines += [f"| sites per cell | val MAE ({unit}) | structures |", "|---|---|---|"]
        lines += [f"| {g['sites']} | {g['mae'][0]:.4f} | {g['count'][0]} |" for g in summary["by_size"]]
        lines += [""]
    lines += [
        "## Training", "",
        f"- Exact command: `{summary['command']}` (config in `configs/`, run by this project's CLI).",
        f"- Data: `{data.get('path')}` — MEGNet MP-2018.6.1 benchmark rows, official `train` split"
        + (f" restricted to ≤ {data.get('max_sites')} sites" if data.get("max_sites") else " (all cell sizes)")
        + f" ({data.get('n_train')} structures; the 4 |E_form| > 5 eV/atom artefacts "
        "dropped). The held-out test split was not used.",
        f"- Recipe: AdamW lr {tc.get('lr')}, betas {tc.get('betas')}, weight decay {tc.get('weight_decay')}, "
        + ("cosine schedule to zero over all planned steps (SWA included)" if tc.get("lr_schedule") == "cosine"
           else f"inverse-sqrt schedule T={tc.get('schedule_t')}")
        + f", clip {tc.get('clip_norm')}, L1 on normalised targets, "
        f"batch {tc.get('batch_size')} structures"
        + (f" (at most {tc['max_atoms_per_batch']} atoms)" if tc.get("max_atoms_per_batch") else "")
        + f", {summary['epochs']} epochs ({summary['steps']} steps), SWA over the last "
        f"{tc.get('swa_epochs')} epochs, seed {tc.get('seed')}.",
        f"- Wall time: {summary['wall_s'] / 60:.1f} min of training (plus data loading) on "
        f"{machine_description(threads=tc.get('threads') or None)}, {platform.system()}.",
        f"- Code version: {summary['code_version']}.", "",
    ]
    if note:
        lines += [note.strip(), ""]
    equal = [o for o in others if same_budget(summary, o)]
    rescheduled = [o for o in others if not same_budget(summary, o) and same_budget(summary, o, SCHEDULE_KEYS)]
    unequal = [o for o in others if not same_budget(summary, o, SCHEDULE_KEYS)]
    if equal:
        lines += ["## Equal-budget comparison of frame methods", "",
                  "Same data, split, epochs, batch size, seed and recipe; only the frame method differs.", ""]
        lines += comparison_table([summary] + equal)
        lines += ["", "One seed per method: small differences between single runs are within what a "
                  "different seed could change, so read the ranking as indicative.", ""]
    if rescheduled:
        lines += ["## Same data, batches and optimiser; different epochs or learning-rate schedule", "",
                  "These runs differ from this one only in the settings named in the last column (and the frame "
                  "method).", ""]
        table = comparison_table([summary] + rescheduled, with_data=True)
        differs = [" differs in |", "---|", " (this run) |"] + [
            " " + "; ".join(f"{k} {o['train_config'].get(k)}" for k in recipe_differences(summary, o)) + " |"
            for o in rescheduled]
        lines += [row + extra for row, extra in zip(table, differs)]
        lines += ["", "One seed per run, and a run with more epochs has an advantage: read the ranking as "
                  "indicative.", ""]
    if unequal:
        lines += ["## Other checkpoints (not the same data or budget: not like-for-like)", "",
                  "Each one's val MAE is on its own val selection (its `train cells` rule applied to the val split).", ""]
        lines += comparison_table(unequal, with_data=True) + [""]
    if paper:
        lines += [f"Paper (full MP, ~500 epochs on a GPU, test split): Crystalformer {paper[0]}, CrystalFramer max "
                  f"frames {paper[1]}, weighted PCA {paper[2]} {unit}. Our budget is far smaller, so absolute numbers "
                  "are higher.", ""]
    lines += ["## Learning curve", "", f"| epoch | train L1 (normalised) | val MAE ({unit}) |", "|---|---|---|"]
    for row in summary["rows"]:
        lines.append(f"| {row['epoch']} | {float(row['train_l1_norm']):.4f} | {float(row['val_mae']):.4f} |")
    lines += ["", "## Use", "", "```python", "from crystalframer import load_model",
              f"model = load_model(\"{name}\")", f"model.predict([structure])  # {unit}", "```", ""]
    (dest / "card.md").write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--compare", type=Path, nargs="*", default=[],
                        help="other runs (or checkpoint folders) to tabulate; equal-budget ones are compared")
    parser.add_argument("--note", type=Path, help="a Markdown file whose text is added after the training facts")
    args = parser.parse_args()
    summary = run_summary(args.run)
    others = [run_summary(r) for r in args.compare]
    args.dest.mkdir(parents=True, exist_ok=True)
    if (args.run / "model.safetensors").resolve() != (args.dest / "model.safetensors").resolve():
        shutil.copyfile(args.run / "model.safetensors", args.dest / "model.safetensors")
    note = args.note.read_text() if args.note else ""
    write_card(summary, others, args.dest, args.dest.name, note)
    print(f"wrote {args.dest}/model.safetensors and card.md (val MAE {summary['val_mae']:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
