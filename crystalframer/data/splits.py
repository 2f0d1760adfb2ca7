"""Dataset splits as files of ids, so every reported number can be reproduced.

A split is a mapping ``{"train": [...], "val": [...], "test": [...]}`` stored either as one JSON file or as a folder
of ``<name>.txt`` files with one id per line. MP uses its official ``split`` column instead (see
:func:`split_from_mapping`); the ``extra`` rows are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from crystalframer.data.errors import DataError, warn

SPLIT_NAMES = ("train", "val", "test")
T = TypeVar("T")


def random_split(ids: Sequence[str], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 123,
                 names: Sequence[str] = SPLIT_NAMES) -> dict[str, list[str]]:
    """Shuffle ``ids`` with ``seed`` and cut them by ``fractions`` (one per name, summing to at most 1).

    Sizes are rounded; the first split (train) takes whatever the rounding leaves, so every id lands in exactly one
    split when the fractions sum to 1. Each split keeps the shuffled order.
    """
    ids = [str(i) for i in ids]
    _check_unique(ids, "ids")
    fractions = [float(f) for f in fractions]
    if len(fractions) > len(names) or any(f < 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
        raise ValueError(f"fractions must be ≥ 0, sum to ≤ 1 and number at most {len(names)}; got {fractions}")
    order = np.random.default_rng(seed).permutation(len(ids))
    sizes = [int(round(f * len(ids))) for f in fractions]
    if abs(sum(fractions) - 1) < 1e-9:
        sizes[0] = len(ids) - sum(sizes[1:])
    out, start = {}, 0
    for name, size in zip(names, sizes):
        out[name] = [ids[k] for k in order[start:start + size]]
        start += size
    return out


def split_from_mapping(split_of: Mapping[str, str], names: Sequence[str] = ("train", "val", "test"),
                       ) -> dict[str, list[str]]:
    """``{id: split}`` (e.g. MP's ``split`` column) → ``{split: [ids]}`` for ``names`` (other splits ignored)."""
    out: dict[str, list[str]] = {name: [] for name in names}
    for ident, name in split_of.items():
        if name in out:
            out[name].append(ident)
    return {name: ids for name, ids in out.items() if ids}


def save_split(split: Mapping[str, Sequence[str]], path: str | Path) -> Path:
    """Write ``split`` as JSON (``*.json``) or as a folder of ``<name>.txt`` files (any other path)."""
    path = Path(path)
    clean = {str(name): [str(i) for i in ids] for name, ids in split.items()}
    check_disjoint(clean)
    if path.suffix.lower() == ".json":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(clean, indent=1) + "\n")
        return path
    path.mkdir(parents=True, exist_ok=True)
    for name, ids in clean.items():
        write_ids(ids, path / f"{name}.txt")
    return path


def load_split(path: str | Path) -> dict[str, list[str]]:
    """Read a split: a JSON object of id lists, a folder of ``<name>.txt`` files, or one ``.txt`` (→ its stem)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
        if not files:
            raise DataError(f"{path}: no <split>.txt files in this folder")
        split = {f.stem: read_ids(f) for f in files}
    elif path.suffix.lower() == ".json":
        split = _load_json_split(path)
    elif path.is_file():
        split = {path.stem: read_ids(path)}
    else:
        raise DataError(f"{path}: split file not found")
    check_disjoint(split, source=str(path))
    return split


def _load_json_split(path: Path) -> dict[str, list[str]]:
    if not path.is_file():
        raise DataError(f"{path}: split file not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: malformed JSON split ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise DataError(f'{path}: expected a JSON object of id lists such as {{"train": [...], "val": [...]}}')
    return {str(k): [str(i) for i in v] for k, v in data.items()}


def read_ids(path: str | Path) -> list[str]:
    """Ids from a text file, one per line (blank lines and ``#`` comments ignored)."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read id list ({exc})") from None
    ids = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    _check_unique(ids, str(path))
    return ids


def write_ids(ids: Sequence[str], path: str | Path) -> None:
    """Write one id per line."""
    Path(path).write_text("".join(f"{i}\n" for i in ids))


def check_disjoint(split: Mapping[str, Sequence[str]], source: str = "split") -> None:
    """Raise :class:`DataError` if an id appears twice in one split or in two splits (a leak)."""
    owner: dict[str, str] = {}
    for name, ids in split.items():
        _check_unique(list(ids), f"{source}[{name}]")
        for ident in ids:
            if ident in owner:
                raise DataError(f"{source}: id {ident!r} is in both {owner[ident]!r} and {name!r}")
            owner[ident] = name


def apply_split(items: Sequence[T], split: Mapping[str, Sequence[str]], ident: str = "ident",
                strict: bool = False) -> dict[str, list[T]]:
    """Partition ``items`` (records or graphs, anything with an ``ident`` attribute) by ``split``.

    Ids of the split that are not among the items (e.g. rows skipped as bad) are reported with a warning, or raise
    with ``strict=True``. Items whose id is in no split are left out. Order follows the split file.
    """
    check_disjoint(split)
    by_id = {getattr(item, ident): item for item in items}
    out: dict[str, list[T]] = {}
    for name, ids in split.items():
        missing = [i for i in ids if i not in by_id]
        if missing:
            message = f"split {name!r}: {len(missing)} of {len(ids)} ids not in the data (e.g. {missing[:3]})"
            if strict:
                raise DataError(message)
            warn(message)
        out[name] = [by_id[i] for i in ids if i in by_id]
    return out


def _check_unique(ids: list[str], source: str) -> None:
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))
        raise DataError(f"{source}: duplicate id {dup!r}")
