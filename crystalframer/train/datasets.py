"""Dataset specs (the ``data:`` section of a run config) → train/val graphs with a recorded split.

Kinds: ``mp_megnet`` (official MEGNet split column), ``csv`` (CIF column), ``id_prop`` (folder + id_prop.csv),
``extxyz`` (labels in ``info``), ``jarvis`` (dft_3d through jarvis-tools, or a local JSON file).
Splits other than MP's come from ``split_file`` or a seeded random split that is saved with the run.
"""

from __future__ import annotations

from typing import Any, Sequence

from crystalframer.train.runconfig import DataConfig
from crystalframer.data import build_graphs, load_split, random_split, read_jarvis_dft3d, read_mp_megnet
from crystalframer.data.sources import guess_kind, read_dataset
from crystalframer.data.errors import DataError
from crystalframer.graph import CrystalGraph


def _records(spec: DataConfig, target_names: Sequence[str], splits: Sequence[str] = ("train", "val")):
    if spec.kind is None and spec.path is None:
        raise DataError("the data section needs a 'kind' or a 'path'")
    kind = spec.kind or guess_kind(spec.path)
    targets = list(target_names)
    if kind == "mp_megnet":
        records, split_of = read_mp_megnet(spec.path, target=targets, splits=tuple(splits),
                                           max_sites=spec.max_sites, limit=spec.limit)
        return kind, records, split_of
    if spec.path is None and kind == "jarvis":  # downloaded through jarvis-tools
        return kind, read_jarvis_dft3d(targets, max_sites=spec.max_sites, limit=spec.limit), None
    if spec.path is None:
        raise DataError(f"data kind {kind!r} needs a path (set data.path)")
    records = read_dataset(spec.path, kind, targets, cif_column=spec.cif_column, id_column=spec.id_column,
                           max_sites=spec.max_sites, limit=spec.limit, progress=True)
    return kind, records, None


def load_training_data(spec: DataConfig, cutoff: float, target_names: Sequence[str], max_atoms: int,
                       seed: int = 123) -> tuple[list[CrystalGraph], list[CrystalGraph], dict[str, Any]]:
    """(train graphs, val graphs, provenance incl. the split ids) for a ``data:`` spec."""
    kind, records, split_of = _records(spec, target_names)
    if split_of is not None:
        split = {"train": [r.ident for r in records if split_of[r.ident] == "train"],
                 "val": [r.ident for r in records if split_of[r.ident] == "val"]}
    elif spec.split_file:
        split = load_split(spec.split_file)
    else:
        val = float(spec.val_fraction)
        test = float(spec.test_fraction)
        split = random_split([r.ident for r in records], fractions=(1.0 - val - test, val, test), seed=seed)
    train_limit = spec.train_limit
    if train_limit:
        split["train"] = list(split["train"])[: int(train_limit)]
    graphs = build_graphs(records, cutoff, target_names, max_atoms=max_atoms)
    by_id = {g.ident: g for g in graphs}
    train = [by_id[i] for i in split["train"] if i in by_id]
    val = [by_id[i] for i in split.get("val", []) if i in by_id]
    if not train:
        raise DataError("no training structures left after parsing and splitting")
    info = {"kind": kind, "path": str(spec.path or getattr(records, "source", "")), "targets": list(target_names),
            "max_sites": spec.max_sites, "n_train": len(train), "n_val": len(val),
            "split": {k: list(v) for k, v in split.items()}, "skipped": len(getattr(graphs, "errors", []))}
    return train, val, info


def load_eval_data(spec: DataConfig, cutoff: float, target_names: Sequence[str],
                   max_atoms: int) -> tuple[list[CrystalGraph], dict[str, Any]]:
    """Graphs of one split (``eval_split``, default all rows) of a labelled dataset."""
    which = spec.eval_split
    splits = (which,) if which else ("train", "val")
    kind, records, split_of = _records(spec, target_names, splits=splits)
    if which and split_of is None and spec.split_file:
        keep = set(load_split(spec.split_file)[which])
        records = [r for r in records if r.ident in keep]
    graphs = build_graphs(records, cutoff, target_names, max_atoms=max_atoms)
    return list(graphs), {"kind": kind, "n": len(graphs), "split": which}
