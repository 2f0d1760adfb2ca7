"""Typed run configuration: the YAML/JSON files in ``configs/`` and their ``--section.key value`` overrides.

A run file has top-level keys (:class:`RunConfig`), a ``data:`` section (:class:`DataConfig`), a ``model:``
section (:class:`~crystalframer.model.config.ModelConfig` fields plus ``preset``) and a ``train:`` section
(:class:`~crystalframer.train.trainer.TrainConfig`). Every key is checked: a typo fails with the closest valid key.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from crystalframer.model.config import ConfigError, check_keys, closest_hint

__all__ = ["ConfigError", "check_keys", "closest_hint", "DataConfig", "RunConfig", "apply_overrides",
           "load_run_config", "parse_value", "DATA_KINDS"]

DATA_KINDS = ("mp_megnet", "csv", "id_prop", "extxyz", "jarvis")


@dataclass
class DataConfig:
    """Where the labelled structures come from and how they are split (the ``data:`` section).

    kind: one of ``mp_megnet, csv, id_prop, extxyz, jarvis`` (guessed from ``path`` when omitted).
    target / targets: the label column(s); units: their units (e.g. ``[eV/atom]``).
    max_sites: drop larger cells; limit: read only the first rows (quick runs); train_limit: cap the train split.
    split_file: a saved split (``split.json``); otherwise MP uses its official split and other kinds a seeded random
    split of ``val_fraction`` / ``test_fraction``. eval_split: the split ``evaluate`` scores.
    """

    kind: str | None = None
    path: str | None = None
    target: str | None = None
    targets: list[str] | None = None
    units: list[str] | None = None
    max_sites: int | None = None
    limit: int | None = None
    train_limit: int | None = None
    cif_column: str | None = None  # None: the first of cif/structure/poscar/atoms (or CIF-looking) columns
    id_column: str | None = None
    split_file: str | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.0
    eval_split: str | None = None

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in DATA_KINDS:
            raise ConfigError(f"unknown data kind {self.kind!r}{closest_hint(str(self.kind), DATA_KINDS)}; "
                              f"use one of {', '.join(DATA_KINDS)}")
        if isinstance(self.targets, str):
            self.targets = [self.targets]
        if isinstance(self.units, str):
            self.units = [self.units]

    @property
    def target_names(self) -> list[str]:
        """The label columns, in order (``target`` when nothing is named)."""
        return list(self.targets or [self.target or "target"])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DataConfig":
        check_keys(cls, data, "data")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunConfig:
    """One training/evaluation run: top-level keys plus the data/model/train sections.

    out_dir: the run directory. init_from: a checkpoint to fine-tune from (same targets). renormalize_targets:
    re-estimate the target mean/std from the new training labels when fine-tuning (default: keep the checkpoint's).
    model: ModelConfig fields plus ``preset`` (``default`` or ``light``), checked when the model is built.
    """

    out_dir: str = "runs/latest"
    init_from: str | None = None
    renormalize_targets: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        from crystalframer.model.config import ModelConfig
        from crystalframer.train.trainer import TrainConfig

        check_keys(cls, data, "run config (top-level)")
        data = dict(data)
        for section in ("data", "model", "train"):
            if data.get(section) is None:
                data[section] = {}
            if not isinstance(data[section], dict):
                raise ConfigError(f"the {section!r} section must be a mapping, got {type(data[section]).__name__}")
        check_keys(ModelConfig, data["model"], "model", extra=("preset",))
        check_keys(TrainConfig, data["train"], "train")
        data["data"] = DataConfig.from_dict(data["data"])
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["data"] = self.data.to_dict()
        return out

    def train_config(self) -> Any:
        from crystalframer.train.trainer import TrainConfig

        return TrainConfig.from_dict(self.train)


def parse_value(text: str) -> Any:
    """``--train.epochs 5`` → 5; YAML scalars/lists are accepted (``[1, 2]``, ``true``, ``null``)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(config: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``--section.key value`` pairs (dots descend into sections); keys are checked later by ``from_dict``."""
    config = json.loads(json.dumps(config))
    items = list(overrides)
    for k in range(0, len(items), 2):
        key = items[k]
        if not key.startswith("--"):
            raise ConfigError(f"unrecognised argument {key!r}; config overrides look like --train.epochs 5 "
                              "(sections: data, model, train) or --init_from NAME")
        if k + 1 >= len(items):
            raise ConfigError(f"override {key} has no value (use '--section.key value')")
        path = key[2:].replace("-", "_").split(".")
        node = config
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"cannot override {key}: {part} is not a section")
        node[path[-1]] = parse_value(items[k + 1])
    return config


def load_run_config(path: str | Path | None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML/JSON run file (or start empty), apply overrides, and check every key."""
    base: dict[str, Any] = {}
    if path:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        text = path.read_text()
        try:
            base = (yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)) or {}
        except (yaml.YAMLError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'} "
                              f"({str(exc).splitlines()[0]})") from None
        if not isinstance(base, dict):
            raise ConfigError(f"{path}: a run config is a mapping of keys, got {type(base).__name__}")
    return RunConfig.from_dict(apply_overrides(base, overrides))
