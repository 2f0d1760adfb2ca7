"""Command line: ``crystalframer train|evaluate|predict|inspect|checkpoints|bench`` (also ``python -m crystalframer``)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

from crystalframer.train.runconfig import ConfigError, RunConfig, closest_hint, load_run_config


# ----- commands ---------------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from crystalframer.model.config import ModelConfig
    from crystalframer.train.datasets import load_training_data
    from crystalframer.model.model import CrystalFramer
    from crystalframer.model.checkpoint import load_model
    from crystalframer.train.trainer import Trainer

    run = load_run_config(args.config, extra)
    if args.out:
        run.out_dir = args.out
    out_dir = Path(run.out_dir)
    train_cfg = run.train_config()
    if args.device:
        train_cfg.device = args.device
    command = "crystalframer " + " ".join(shlex.quote(a) for a in sys.argv[1:])

    target_names = run.data.target_names
    units = run.data.units or [""] * len(target_names)
    if run.init_from:
        model = load_model(run.init_from, device="cpu")
        if list(model.config.target_names) != list(target_names):
            raise SystemExit(f"--init_from {run.init_from} predicts {model.config.target_names}, data has "
                             f"{target_names}; fine-tune on the same targets or start from scratch")
        model.train()
    else:
        model_cfg = dict(run.model)
        preset = model_cfg.pop("preset", "default")
        config = ModelConfig.preset(preset, n_targets=len(target_names), target_names=list(target_names),
                                    target_units=list(units), **model_cfg)
        model = CrystalFramer(config)
    train_graphs, val_graphs, data_info = load_training_data(run.data, model.config.cutoff, list(target_names),
                                                             max_atoms=model.config.max_atoms, seed=train_cfg.seed)
    if int(os.environ.get("RANK", "0")) == 0:
        from crystalframer.data import save_split

        # The split as a file of ids next to the run, so the same split can be reused (data.split_file).
        save_split(data_info["split"], out_dir / "split.json")
    info: dict[str, Any] = {"command": command, "data": data_info, "run_config": run.to_dict()}
    if run.init_from:
        info["init_from"] = str(run.init_from)
    # Fine-tuning keeps the checkpoint's target normalisation unless asked (small sets give poor statistics).
    keep = bool(run.init_from) and not run.renormalize_targets
    trainer = Trainer(model, train_graphs, val_graphs, train_cfg, out_dir, info=info, keep_normalization=keep)
    if not args.no_resume:
        trainer.try_resume()
    try:
        result = trainer.fit()
    except KeyboardInterrupt:
        print(f"\ninterrupted after epoch {trainer.epoch} of {train_cfg.epochs}; every file in {out_dir} is intact. "
              f"Run the same command again to resume from {out_dir / 'resume_state.pt'}.", file=sys.stderr)
        return 130
    print(json.dumps(result, indent=2, default=str))
    return 0


LARGE_CELL_NOTE = 500  # sites; bigger cells get a time estimate before the work starts


def _readable_structures(args: argparse.Namespace, model: Any) -> tuple[list[str], list[Any], int]:
    """(names, structures, number skipped) of ``args.inputs`` (files, folders, globs).

    Unreadable files and structures the model cannot take are reported one line each on stderr, naming the file
    and the problem, and skipped: one bad file never costs the others.
    """
    from crystalframer.data import read_structure_files
    from crystalframer.data.errors import DataError
    from crystalframer.structure import StructureError, estimate_cost, to_arrays

    names, structures, errors = [], [], []
    for item in args.inputs:
        try:
            records = read_structure_files(item, quiet=True)
        except DataError as exc:  # a missing file or a pattern that matches nothing
            errors.append(str(exc))
            continue
        errors.extend(message for _, message in records.errors)
        for record in records:
            structure = record.structure
            label = str(item) if Path(item).is_file() else f"{record.ident} (in {item})"
            try:
                to_arrays(structure, max_atoms=model.config.max_atoms)
            except StructureError as exc:
                errors.append(f"{label}: {exc}")
                continue
            if len(structure) > LARGE_CELL_NOTE:  # said before the heavy work starts
                cost = estimate_cost(len(structure), float(structure.volume), model.config.cutoff)
                print(f"note: {label} has {len(structure)} sites: about {cost['edges']:.3g} image-edges, "
                      f"~{cost['predict_s']:.0f} s to predict on a 2-core CPU", file=sys.stderr)
            names.append(record.ident)
            structures.append(structure)
    for message in errors:
        print(f"skipped {message}", file=sys.stderr)
    return names, structures, len(errors)


def _load_for_cli(args: argparse.Namespace) -> Any:
    from crystalframer.model.checkpoint import load_model

    model = load_model(args.model, device=args.device)
    if getattr(args, "max_atoms", None):
        model.config.max_atoms = int(args.max_atoms)
    return model


def cmd_predict(args: argparse.Namespace) -> int:
    model = _load_for_cli(args)
    names, structures, skipped = _readable_structures(args, model)
    if not structures:
        print("no readable structures", file=sys.stderr)
        return 1
    if args.frame_samples:
        mean, std = model.predict(structures, batch_size=args.batch_size, frame_samples=args.frame_samples,
                                  seed=args.seed, return_std=True, progress=len(structures) > 64)
    else:
        mean = model.predict(structures, batch_size=args.batch_size, progress=len(structures) > 64)
        std = None
    cfg = model.config
    header = ["id"] + [f"{n}" + (f" ({u})" if u else "") for n, u in zip(cfg.target_names, cfg.target_units)]
    if std is not None:
        header += [f"{n}_std" for n in cfg.target_names]
    rows = []
    for k, name in enumerate(names):
        row = [name] + [f"{v:.6g}" for v in mean[k]]
        if std is not None:
            row += [f"{v:.3g}" for v in std[k]]
        rows.append(row)
    if args.output:
        import csv

        with open(args.output, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)
        print(f"wrote {len(rows)} predictions to {args.output}")
    else:
        widths = [max(len(str(r[c])) for r in rows + [header]) for c in range(len(header))]
        for r in [header] + rows:
            print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))
    if skipped:
        print(f"{skipped} input(s) skipped (see above); exit status 1", file=sys.stderr)
    return 1 if skipped else 0


def cmd_evaluate(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from crystalframer.model.checkpoint import load_model
    from crystalframer.train.datasets import load_eval_data
    from crystalframer.model.model import resolve_device
    from crystalframer.train.trainer import evaluate_graphs

    run = load_run_config(args.config, extra)
    model = load_model(args.model, device=args.device)
    data_cfg = run.data
    if args.data:
        data_cfg.path = args.data
    if args.split:
        data_cfg.eval_split = args.split
    graphs, info = load_eval_data(data_cfg, model.config.cutoff, list(model.config.target_names),
                                  max_atoms=model.config.max_atoms)
    metrics = evaluate_graphs(model, graphs, args.batch_size, resolve_device(args.device))
    print(f"{'target':<24}{'MAE':>12}{'RMSE':>12}{'R2':>10}{'n':>8}")
    for k, name in enumerate(model.config.target_names):
        print(f"{name:<24}{metrics['mae'][k]:>12.5g}{metrics['rmse'][k]:>12.5g}{metrics['r2'][k]:>10.4f}"
              f"{metrics['count'][k]:>8}")
    if len(metrics["by_size"]) > 1:
        print("\nby cell size (sites per cell)")
        print(f"{'sites':<10}" + "".join(f"{'MAE ' + name:>24}" for name in model.config.target_names) + f"{'n':>8}")
        for group in metrics["by_size"]:
            print(f"{group['sites']:<10}" + "".join(f"{v:>24.5g}" for v in group["mae"]) + f"{group['count'][0]:>8}")
    if args.parity:
        import csv

        with open(args.parity, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["id"] + [f"{n}_true" for n in model.config.target_names]
                       + [f"{n}_pred" for n in model.config.target_names])
            for g, t, p in zip(graphs, metrics["true"], metrics["pred"]):
                w.writerow([g.ident] + [f"{v:.6g}" for v in t] + [f"{v:.6g}" for v in p])
        print(f"wrote parity data to {args.parity}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    model = _load_for_cli(args)
    args.inputs = [args.input]
    names, structures, skipped = _readable_structures(args, model)
    if not structures:
        print(f"cannot inspect {args.input}", file=sys.stderr)
        return 1
    ins = model.inspect(structures[0])
    payload = {
        "id": names[0], "prediction": ins.prediction.tolist(), "target_names": list(model.config.target_names),
        "frame_method": model.config.frame_method, "atomic_numbers": ins.atomic_numbers.tolist(),
        "positions": ins.positions.tolist(), "lattice": ins.lattice.tolist(),
        "layers": [{
            "sigma": layer.sigma.tolist(), "edges": layer.edges.tolist(), "images": layer.images.tolist(),
            "vectors": layer.vectors.tolist(), "attention": layer.attention.tolist(),
            "frames": None if layer.frames is None else layer.frames.tolist(),
        } for layer in ins.layers],
    }
    text = json.dumps(payload)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote attention and frames of {len(ins.layers)} layers to {args.output}")
    else:
        print(text)
    return 0


def cmd_checkpoints(args: argparse.Namespace) -> int:
    from crystalframer.model.checkpoint import available_checkpoints, read_metadata

    found = available_checkpoints()
    if not found:
        print("no checkpoints found (set $CRYSTALFRAMER_CHECKPOINTS to a folder of <name>/model.safetensors)")
        return 1
    rows = [("name", "targets", "frames", "val MAE", "path")]
    for name, path in found.items():
        try:
            meta = read_metadata(path)
        except Exception as exc:  # a broken file is listed with its problem rather than hiding the others
            rows.append((name, "?", "?", "?", f"{path} (unreadable: {exc})"))
            continue
        cfg, info = meta["config"], meta["info"]
        mae = info.get("val_mae")
        mae_text = ", ".join(f"{v:.4g}" for v in mae) if isinstance(mae, list) and mae else "-"
        rows.append((name, ",".join(cfg.get("target_names", [])), cfg.get("frame_method", "?"), mae_text, str(path)))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r[:-1], widths)) + "  " + r[-1])
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from crystalframer.benchmark import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    from crystalframer import __version__

    parser = argparse.ArgumentParser(prog="crystalframer", description=__doc__)
    parser.add_argument("--version", action="version", version=f"crystalframer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a YAML/JSON config; extra --section.key value overrides")
    p.add_argument("--config", help="YAML/JSON run config (see configs/)")
    p.add_argument("--out", help="run directory (overrides out_dir)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="overrides train.device")
    p.add_argument("--no-resume", action="store_true", help="start fresh even if the run directory has a resume state")

    p = sub.add_parser("evaluate", help="MAE/RMSE/R2 of a checkpoint on a labelled dataset")
    p.add_argument("model", help="shipped checkpoint name or path")
    p.add_argument("--config", help="run config whose data section describes the dataset")
    p.add_argument("--data", help="dataset path (CSV with cif column, id_prop folder, extxyz)")
    p.add_argument("--split", help="which split to evaluate (e.g. val)")
    p.add_argument("--parity", help="write id,true,pred CSV here")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")

    p = sub.add_parser("predict", help="predict structures (files, folders, globs) → table or CSV")
    p.add_argument("model", help="shipped checkpoint name or path")
    p.add_argument("inputs", nargs="+", help="CIF/POSCAR/extxyz files, folders or globs")
    p.add_argument("-o", "--output", help="write a CSV instead of printing")
    p.add_argument("--frame-samples", type=int, default=0, help="average K tie-break samples; adds a std column")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--max-atoms", type=int, help="largest cell accepted (default: the checkpoint's max_atoms, 2000)")

    p = sub.add_parser("inspect", help="attention weights and frames of every layer → JSON")
    p.add_argument("model")
    p.add_argument("input", help="one structure file")
    p.add_argument("-o", "--output", help="JSON file (default: stdout)")
    p.add_argument("--device", default="auto")
    p.add_argument("--max-atoms", type=int, help="largest cell accepted (default: the checkpoint's max_atoms, 2000)")

    sub.add_parser("checkpoints", help="list the checkpoints that load_model can resolve by name")

    from crystalframer import benchmark

    p = sub.add_parser("bench", help="throughput and peak memory per frame method and cell size, and the speed bars",
                       description=benchmark.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    benchmark.add_arguments(p)
    return parser


def _reject_unknown_flags(parser: argparse.ArgumentParser, command: str, extra: Sequence[str],
                          allow_overrides: bool) -> None:
    """Fail on flags the command does not have, naming the closest one (``--devcie`` → ``--device``)."""
    sub = next(a for a in parser._subparsers._group_actions if isinstance(a, argparse._SubParsersAction))
    options = [o for action in sub.choices[command]._actions for o in action.option_strings]
    top_level = ["--" + f.name for f in fields(RunConfig) if f.name not in ("data", "model", "train")]
    if allow_overrides:
        options += top_level
    for token in extra:
        flag = token.split("=")[0]
        if allow_overrides and flag.startswith("--") and ("." in flag or "--" + flag[2:].replace("-", "_") in top_level):
            continue
        if token.startswith("-"):
            hint = closest_hint(flag, options)
            more = " or a config override such as --train.epochs 5" if allow_overrides else ""
            parser.error(f"{command}: unknown option {flag}{hint}; see `crystalframer {command} --help`{more}")
    if not allow_overrides and extra:
        parser.error(f"{command}: unexpected argument(s): {' '.join(extra)}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    takes_overrides = args.command in ("train", "evaluate")
    _reject_unknown_flags(parser, args.command, extra, takes_overrides)
    try:
        if takes_overrides:
            return (cmd_train if args.command == "train" else cmd_evaluate)(args, extra)
        return {"predict": cmd_predict, "inspect": cmd_inspect, "checkpoints": cmd_checkpoints,
                "bench": cmd_bench}[args.command](args)
    except ConfigError as exc:
        print(f"crystalframer {args.command}: {exc}", file=sys.stderr)
        return 2
    except _user_errors() as exc:  # bad input or a bad checkpoint: one line, no traceback
        print(f"crystalframer {args.command}: error: {exc}", file=sys.stderr)
        return 1


def _user_errors() -> tuple[type[BaseException], ...]:
    from crystalframer.model.checkpoint import CheckpointError
    from crystalframer.data.errors import DataError
    from crystalframer.structure import StructureError
    from crystalframer.train.trainer import TrainingError

    return (DataError, CheckpointError, StructureError, TrainingError)


if __name__ == "__main__":
    raise SystemExit(main())
