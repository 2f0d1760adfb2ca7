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
    structures: pymatgen ``Structure`` (or lazy :class:`PackedStructure`) per row; columns: name → array aligned with ``ids`` (float64 for numeric
    columns, str for text columns); errors: ``(ident, message)`` of rows that could not be parsed.
    """

    ids: list[str]
    rows: list[int]
    structures: list[Any]
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


class PackedStructure:
    """A crystal kept as plain arrays; :meth:`to_structure` builds the pymatgen ``Structure`` when needed.

    Rebuilding tens of thousands of pymatgen objects costs tens of seconds, so cached tables hand these out and
    records materialise them lazily; content hashes and site counts come straight from the arrays.
    lattice (3, 3) rows; frac_coords (N, 3); entry_counts (N,) species per site; symbols, z, occupancies per entry.
    """

    __slots__ = ("lattice", "frac_coords", "entry_counts", "symbols", "z", "occupancies")

    def __init__(self, lattice: np.ndarray, frac_coords: np.ndarray, entry_counts: np.ndarray, symbols: np.ndarray,
                 z: np.ndarray, occupancies: np.ndarray) -> None:
        self.lattice, self.frac_coords, self.entry_counts = lattice, frac_coords, entry_counts
        self.symbols, self.z, self.occupancies = symbols, z, occupancies

    def __len__(self) -> int:
        return int(self.frac_coords.shape[0])

    def canonical_content(self) -> tuple[np.ndarray, ...]:
        """Entries per site, Z and occupancy per entry, Cartesian positions, lattice (see ``cache.structure_key``)."""
        return self.entry_counts, self.z, self.occupancies, self.frac_coords @ self.lattice, self.lattice

    def to_structure(self) -> Any:
        """The pymatgen ``Structure`` (ordered sites as plain species, disordered ones as composition dicts)."""
        from pymatgen.core import Lattice, Structure

        symbols, occus = self.symbols.tolist(), self.occupancies.tolist()
        species: list[Any] = []
        start = 0
        for count in self.entry_counts.tolist():
            if count == 1 and occus[start] == 1.0:
                species.append(symbols[start])
            else:
                species.append({symbols[e]: occus[e] for e in range(start, start + count)})
            start += count
        return Structure(Lattice(self.lattice), species, self.frac_coords)


def pack_structures(structures: list[Any]) -> dict[str, np.ndarray]:
    """Structures → flat arrays: lattices, fractional coordinates and (species, occupancy) entries with offsets."""
    lattices = np.zeros((len(structures), 3, 3))
    site_counts = np.zeros(len(structures), dtype=np.int64)
    frac, entry_counts, symbols, occus = [], [], [], []
    for k, s in enumerate(structures):
        if isinstance(s, PackedStructure):
            lattices[k], site_counts[k] = s.lattice, len(s)
            frac.append(s.frac_coords)
            entry_counts.extend(s.entry_counts.tolist())
            symbols.extend(s.symbols.tolist())
            occus.extend(s.occupancies.tolist())
            continue
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


def unpack_structures(arrays: dict[str, np.ndarray]) -> list[PackedStructure]:
    """Inverse of :func:`pack_structures`, as lazy :class:`PackedStructure` views into the arrays."""
    site_off = np.concatenate([[0], np.cumsum(arrays["site_counts"])]).tolist()
    entry_counts = arrays["entry_counts"]
    entry_off = np.concatenate([[0], np.cumsum(entry_counts)]).tolist()
    symbols = arrays["species"]
    unique, inverse = np.unique(symbols, return_inverse=True)
    z_all = np.asarray([symbol_z(sym) for sym in unique.tolist()], dtype=np.int64)[inverse.reshape(-1)]
    occus, frac = arrays["occupancies"], arrays["frac_coords"]
    out = []
    for k, lattice in enumerate(arrays["lattices"]):
        s0, s1 = site_off[k], site_off[k + 1]
        e0, e1 = entry_off[s0], entry_off[s1]
        out.append(PackedStructure(lattice, frac[s0:s1], entry_counts[s0:s1], symbols[e0:e1], z_all[e0:e1],
                                   occus[e0:e1]))
    return out


def symbol_z(symbol: str) -> int:
    """Atomic number of a pymatgen species string (``"Fe"``, ``"Fe2+"``); 0 for dummy species."""
    from pymatgen.core.periodic_table import get_el_sp

    try:
        return int(getattr(get_el_sp(symbol), "Z", 0))
    except ValueError:
        return 0


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
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; cache files are as readable as normally written ones
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

