"""A parsed dataset table (ids, structures, label columns, per-row errors) and its pickle-free ``.npz`` form.

This is what the record cache stores: the expensive step (parsing CIF/POSCAR text) is done once per source file,
and later loads rebuild the pymatgen structures from plain arrays in seconds.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TABLE_FORMAT_VERSION = 1


@dataclass
class ParsedTable:
    """Rows of a dataset that parsed, aligned lists/arrays, plus the rows that did not.

    ids: identifier per row; rows: the row (or frame) number in the source, for messages;
    structures: pymatgen ``Structure`` per row; columns: name → array aligned with ``ids`` (float64 for numeric
    columns, str for text columns); errors: ``(ident, message)`` of rows that could not be parsed.
    """

    ids: list[str]
    rows: list[int]
    structures: list[Any]
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


def pack_structures(structures: list[Any]) -> dict[str, np.ndarray]:
    """Structures → flat arrays: lattices, fractional coordinates and (species, occupancy) entries with offsets."""
    lattices = np.zeros((len(structures), 3, 3))
    site_counts = np.zeros(len(structures), dtype=np.int64)
    frac, entry_counts, symbols, occus = [], [], [], []
    for k, s in enumerate(structures):
        lattices[k] = s.lattice.matrix
        site_counts[k] = len(s)
        frac.append(np.asarray(s.frac_coords, dtype=np.float64).reshape(-1, 3))
        for site in s:
            items = list(site.species.items())
            entry_counts.append(len(items))
            symbols.extend(str(sp) for sp, _ in items)
            occus.extend(float(o) for _, o in items)
    return {
        "lattices": lattices,
        "site_counts": site_counts,
        "frac_coords": np.concatenate(frac) if frac else np.zeros((0, 3)),
        "entry_counts": np.asarray(entry_counts, dtype=np.int64),
        "species": np.asarray(symbols, dtype=str),
        "occupancies": np.asarray(occus, dtype=np.float64),
    }


def unpack_structures(arrays: dict[str, np.ndarray]) -> list[Any]:
    """Inverse of :func:`pack_structures` (ordered sites as plain species, disordered ones as composition dicts)."""
    from pymatgen.core import Lattice, Structure

    site_off = np.concatenate([[0], np.cumsum(arrays["site_counts"])])
    entry_counts = arrays["entry_counts"]
    entry_off = np.concatenate([[0], np.cumsum(entry_counts)])
    symbols = arrays["species"].tolist()
    occus = arrays["occupancies"].tolist()
    frac = arrays["frac_coords"]
    out = []
    for k, lattice in enumerate(arrays["lattices"]):
        species: list[Any] = []
        for site in range(site_off[k], site_off[k + 1]):
            a, b = entry_off[site], entry_off[site + 1]
            if b - a == 1 and occus[a] == 1.0:
                species.append(symbols[a])
            else:
                species.append({symbols[e]: occus[e] for e in range(a, b)})
        out.append(Structure(Lattice(lattice), species, frac[site_off[k]:site_off[k + 1]]))
    return out


def save_table(table: ParsedTable, path: Path) -> None:
    """Write ``table`` to ``path`` (``.npz``, no pickled objects) atomically."""
    arrays = pack_structures(table.structures)
    arrays["format_version"] = np.asarray(TABLE_FORMAT_VERSION)
    arrays["ids"] = np.asarray(table.ids, dtype=str)
    arrays["rows"] = np.asarray(table.rows, dtype=np.int64)
    arrays["column_names"] = np.asarray(list(table.columns), dtype=str)
    for k, values in enumerate(table.columns.values()):
        arrays[f"col{k}"] = values
    arrays["error_ids"] = np.asarray([e[0] for e in table.errors], dtype=str)
    arrays["error_messages"] = np.asarray([e[1] for e in table.errors], dtype=str)
    atomic_savez(path, arrays)


def load_table(path: Path) -> ParsedTable:
    """Read a table written by :func:`save_table` (``allow_pickle=False``); raises ``ValueError`` if incompatible."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    if int(arrays.get("format_version", -1)) != TABLE_FORMAT_VERSION:
        raise ValueError(f"{path}: table format {arrays.get('format_version')} != {TABLE_FORMAT_VERSION}")
    names = arrays["column_names"].tolist()
    columns = {name: arrays[f"col{k}"] for k, name in enumerate(names)}
    errors = list(zip(arrays["error_ids"].tolist(), arrays["error_messages"].tolist()))
    return ParsedTable(ids=arrays["ids"].tolist(), rows=arrays["rows"].tolist(),
                       structures=unpack_structures(arrays), columns=columns, errors=errors)


def atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` to a temporary file in the same folder, then rename (readers never see a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp.npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
