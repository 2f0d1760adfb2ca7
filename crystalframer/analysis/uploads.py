"""Parsing user uploads (one structure, or a labelled data set) with messages a user can act on.

Every failure raises :class:`UploadError` whose message says what was wrong and what is accepted; nothing here
raises anything else for bad input. Structures are returned as pymatgen ``Structure`` objects that passed the
model's own validation (:func:`crystalframer.to_arrays`) and the app's size limit.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath
import numpy as np
import pandas as pd
from pymatgen.core import Structure

from ..structure import StructureError, to_arrays
from .structures import to_pymatgen

__all__ = ["UploadError", "LabelledData", "MAX_UPLOAD_BYTES", "APP_MAX_ATOMS", "MAX_DATASET_STRUCTURES",
           "STRUCTURE_SUFFIXES", "parse_structure_bytes", "parse_structure_text", "parse_dataset",
           "select_target", "split_indices", "check_structure"]

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
APP_MAX_ATOMS = 500  # interactive limit (the model itself takes up to ModelConfig.max_atoms)
MAX_DATASET_STRUCTURES = 5000
STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar", ".contcar", ".extxyz", ".xyz", ".json")
STRUCTURE_COLUMNS = ("cif", "structure", "poscar", "atoms")
ID_COLUMNS = ("material_id", "id", "jid", "mpid", "name", "filename", "file")


class UploadError(ValueError):
    """A bad upload, with a message for the user."""


# ----------------------------------------------------------------------------------------------------------------
# single structures
# ----------------------------------------------------------------------------------------------------------------
def _decode(data: bytes, name: str) -> str:
    if len(data) == 0:
        raise UploadError(f"{name} is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(f"{name} is {len(data) / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB")
    if b"\x00" in data[:4096]:
        raise UploadError(f"{name} looks like a binary file, not a text structure file "
                          f"(accepted: CIF, POSCAR/CONTCAR, extxyz, pymatgen JSON)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            return data.decode("latin-1")
        except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes everything
            raise UploadError(f"{name} is not a text file") from exc


def guess_format(text: str, name: str = "") -> str:
    """``cif`` | ``poscar`` | ``extxyz`` | ``json`` from the file name, else from the content."""
    lower = PurePosixPath(name.lower()).name
    if lower.endswith(".cif"):
        return "cif"
    if lower.endswith((".vasp", ".poscar", ".contcar")) or lower.startswith(("poscar", "contcar")):
        return "poscar"
    if lower.endswith((".extxyz", ".xyz")):
        return "extxyz"
    if lower.endswith(".json"):
        return "json"
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return "json"
    if "_cell_length_a" in text or stripped.lower().startswith("data_") or "\ndata_" in text:
        return "cif"
    lines = stripped.splitlines()
    if len(lines) > 1 and lines[0].strip().isdigit() and "lattice=" in lines[1].lower():
        return "extxyz"
    return "poscar"


def check_structure(structure: Structure, max_atoms: int = APP_MAX_ATOMS, what: str = "the structure") -> Structure:
    """The model's validation plus the app's size limit; raises UploadError."""
    if len(structure) > max_atoms:
        raise UploadError(f"{what} has {len(structure)} sites; this app handles at most {max_atoms} "
                          "(use the command-line tools for bigger cells)")
    try:
        to_arrays(structure, max_atoms=max_atoms)
    except StructureError as exc:
        raise UploadError(f"{what} cannot be used: {exc}") from exc
    return structure


def _parse(text: str, fmt: str, name: str) -> Structure:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if fmt == "cif":
                from pymatgen.io.cif import CifParser

                parser = CifParser(io.StringIO(text))
                structures = parser.parse_structures(primitive=False)
                if not structures:
                    raise ValueError("no structure in the CIF")
                return structures[0]
            if fmt == "poscar":
                from pymatgen.io.vasp import Poscar

                return Poscar.from_str(text).structure
            if fmt == "extxyz":
                from ase.io import read

                atoms = read(io.StringIO(text), index=0, format="extxyz")
                if not all(atoms.pbc) or atoms.cell.rank < 3:
                    raise ValueError("the extxyz frame has no 3D periodic lattice (Lattice=... pbc=\"T T T\")")
                return to_pymatgen(atoms)
            if fmt == "json":
                import json

                return Structure.from_dict(json.loads(text))
        except UploadError:
            raise
        except Exception as exc:  # the parsers raise many types on malformed input
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UploadError(f"could not read {name} as {fmt.upper()}: {msg[:300]}") from exc
    raise UploadError(f"unknown structure format {fmt!r}")


def parse_structure_text(text: str, fmt: str = "auto", name: str = "pasted text",
                         max_atoms: int = APP_MAX_ATOMS) -> Structure:
    if not text or not text.strip():
        raise UploadError("nothing to read: the text is empty")
    fmt = guess_format(text, name) if fmt == "auto" else fmt.lower()
    structure = _parse(text, fmt, name)
    return check_structure(structure, max_atoms=max_atoms, what=name)


def parse_structure_bytes(data: bytes, name: str, max_atoms: int = APP_MAX_ATOMS) -> Structure:
    lower = name.lower()
    if lower.endswith((".zip", ".gz", ".tar", ".png", ".jpg", ".jpeg", ".pdf", ".xlsx", ".docx")):
        raise UploadError(f"{name}: wrong file type; upload one structure file "
                          f"({', '.join(STRUCTURE_SUFFIXES)}, or a POSCAR/CONTCAR without extension)")
    text = _decode(data, name)
    return parse_structure_text(text, "auto", name=name, max_atoms=max_atoms)


# ----------------------------------------------------------------------------------------------------------------
# labelled data sets
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class LabelledData:
    """Structures with a table of numeric labels (one row per structure)."""

    structures: list[Structure]
    ids: list[str]
    labels: pd.DataFrame  # numeric columns only, index aligned with structures
    source: str
    warnings: list[str] = field(default_factory=list)

    @property
    def targets(self) -> list[str]:
        return list(self.labels.columns)

    def __len__(self) -> int:
        return len(self.structures)


def _numeric_columns(df: pd.DataFrame, exclude: set[str]) -> list[str]:
    cols = []
    for col in df.columns:
        if col in exclude:
            continue
        values = pd.to_numeric(df[col], errors="coerce")
        present = df[col].notna()
        # Numeric = at least one number, and (nearly) every filled cell is a number; empty cells are NaN labels.
        if values.notna().sum() > 0 and values[present].notna().mean() >= 0.9:
            cols.append(col)
    return cols


def _finish(structures: list[Structure], ids: list[str], labels: pd.DataFrame, source: str,
            notes: list[str], skipped: list[str]) -> LabelledData:
    if skipped:
        shown = "; ".join(skipped[:5]) + (f"; … ({len(skipped) - 5} more)" if len(skipped) > 5 else "")
        notes.append(f"skipped {len(skipped)} unusable structure(s): {shown}")
    if not structures:
        raise UploadError(f"{source}: no usable structures" + (f" ({skipped[0]})" if skipped else ""))
    if labels.shape[1] == 0:
        raise UploadError(f"{source}: no numeric target column found; add a column of numbers "
                          "(e.g. formation_energy_per_atom) next to the structures")
    labels = labels.reset_index(drop=True).apply(pd.to_numeric, errors="coerce")
    return LabelledData(structures=structures, ids=ids, labels=labels, source=source, warnings=notes)


def _parse_dataset_structure(text: str, fmt: str, ident: str, max_atoms: int) -> Structure:
    structure = _parse(text, fmt, ident)
    return check_structure(structure, max_atoms=max_atoms, what=ident)


def _dataset_from_csv(text: str, source: str, max_atoms: int, max_structures: int) -> LabelledData:
    try:
        df = pd.read_csv(io.StringIO(text))
    except Exception as exc:
        raise UploadError(f"{source} is not a readable CSV file: {str(exc)[:200]}") from exc
    if df.empty:
        raise UploadError(f"{source} has no rows")
    lowered = {c.lower().strip(): c for c in df.columns}
    struct_col = next((lowered[c] for c in STRUCTURE_COLUMNS if c in lowered), None)
    if struct_col is None:
        for col in df.columns:
            first = str(df[col].dropna().iloc[0]) if df[col].notna().any() else ""
            if "_cell_length_a" in first or first.lstrip().lower().startswith("data_"):
                struct_col = col
                break
    if struct_col is None:
        raise UploadError(f"{source}: no structure column; name a column 'cif' holding CIF text "
                          f"(columns found: {', '.join(map(str, df.columns[:10]))})")
    id_col = next((lowered[c] for c in ID_COLUMNS if c in lowered and lowered[c] != struct_col), None)
    numeric = _numeric_columns(df, {struct_col} | ({id_col} if id_col else set()))
    if not numeric:
        raise UploadError(f"{source}: no numeric target column found next to '{struct_col}' "
                          f"(columns: {', '.join(map(str, df.columns[:10]))})")
    notes: list[str] = []
    if len(df) > max_structures:
        notes.append(f"only the first {max_structures} of {len(df)} rows are used")
        df = df.iloc[:max_structures]
    structures, ids, rows, skipped = [], [], [], []
    for k, row in enumerate(df.itertuples(index=False)):
        record = dict(zip(df.columns, row))
        ident = str(record[id_col]) if id_col else f"row {k}"
        text_k = record[struct_col]
        if not isinstance(text_k, str) or not text_k.strip():
            skipped.append(f"{ident}: empty structure")
            continue
        try:
            fmt = guess_format(text_k)
            structures.append(_parse_dataset_structure(text_k, fmt, ident, max_atoms))
        except UploadError as exc:
            skipped.append(str(exc))
            continue
        ids.append(ident)
        rows.append(k)
    labels = df.iloc[rows][numeric]
    return _finish(structures, ids, labels, source, notes, skipped)


def _read_id_prop(text: str, source: str) -> pd.DataFrame:
    df = pd.read_csv(io.StringIO(text), header=None)
    if df.shape[1] < 2:
        raise UploadError(f"{source}: id_prop.csv needs at least two columns (file id, target)")
    first = df.iloc[0, 1:]
    if pd.to_numeric(first, errors="coerce").isna().all():  # a header row
        df = pd.read_csv(io.StringIO(text))
    else:
        df.columns = ["id"] + (["target"] if df.shape[1] == 2 else [f"target_{k}" for k in range(df.shape[1] - 1)])
    return df


def _dataset_from_zip(data: bytes, source: str, max_atoms: int, max_structures: int) -> LabelledData:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise UploadError(f"{source} is not a valid zip archive") from exc
    with archive:
        names = [n for n in archive.namelist() if not n.endswith("/") and "__MACOSX" not in n]
        prop = [n for n in names if PurePosixPath(n).name.lower() == "id_prop.csv"]
        if not prop:
            raise UploadError(f"{source}: no id_prop.csv in the archive (expected the CGCNN layout: "
                              "structure files plus id_prop.csv with 'id,target' rows)")
        total = sum(info.file_size for info in archive.infolist())
        if total > 8 * MAX_UPLOAD_BYTES:
            raise UploadError(f"{source} unpacks to {total / 1e6:.0f} MB, too large for this app")
        table = _read_id_prop(_decode(archive.read(prop[0]), "id_prop.csv"), source)
        id_col = table.columns[0]
        numeric = _numeric_columns(table, {id_col})
        if not numeric:
            raise UploadError(f"{source}: id_prop.csv has no numeric target column")
        by_name: dict[str, str] = {}
        for n in names:
            base = PurePosixPath(n).name
            by_name.setdefault(base, n)
            stem = base.rsplit(".", 1)[0] if "." in base else base
            by_name.setdefault(stem, n)
        notes: list[str] = []
        if len(table) > max_structures:
            notes.append(f"only the first {max_structures} of {len(table)} rows are used")
            table = table.iloc[:max_structures]
        structures, ids, rows, skipped = [], [], [], []
        for k, ident in enumerate(table[id_col].astype(str)):
            member = by_name.get(ident) or by_name.get(ident + ".cif") or by_name.get(ident + ".vasp")
            if member is None:
                skipped.append(f"{ident}: file not in the archive")
                continue
            try:
                text = _decode(archive.read(member), member)
                structures.append(_parse_dataset_structure(text, guess_format(text, member), ident, max_atoms))
            except UploadError as exc:
                skipped.append(str(exc))
                continue
            ids.append(ident)
            rows.append(k)
    return _finish(structures, ids, table.iloc[rows][numeric], source, notes, skipped)


def _dataset_from_extxyz(text: str, source: str, max_atoms: int, max_structures: int) -> LabelledData:
    from ase.io import read

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frames = read(io.StringIO(text), index=":", format="extxyz")
    except Exception as exc:
        raise UploadError(f"could not read {source} as extxyz: {str(exc)[:200]}") from exc
    notes: list[str] = []
    if len(frames) > max_structures:
        notes.append(f"only the first {max_structures} of {len(frames)} frames are used")
        frames = frames[:max_structures]
    structures, ids, records, skipped = [], [], [], []
    for k, atoms in enumerate(frames):
        ident = str(atoms.info.get("id", atoms.info.get("material_id", f"frame {k}")))
        record: dict[str, float] = {}
        for key, value in atoms.info.items():
            if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
                record[key] = float(value)
        calc = atoms.calc
        if calc is not None and "energy" in getattr(calc, "results", {}):
            energy = float(calc.results["energy"])
            record.setdefault("energy", energy)
            record.setdefault("energy_per_atom", energy / max(1, len(atoms)))
        try:
            if not all(atoms.pbc) or atoms.cell.rank < 3:
                raise UploadError(f"{ident}: not periodic in 3D")
            structures.append(check_structure(to_pymatgen(atoms), max_atoms=max_atoms, what=ident))
        except UploadError as exc:
            skipped.append(str(exc))
            continue
        ids.append(ident)
        records.append(record)
    labels = pd.DataFrame(records)
    if not labels.empty:
        labels = labels[_numeric_columns(labels, set())]
    return _finish(structures, ids, labels, source, notes, skipped)


def parse_dataset(data: bytes, name: str, max_atoms: int = APP_MAX_ATOMS,
                  max_structures: int = MAX_DATASET_STRUCTURES) -> LabelledData:
    """A labelled data set from an upload: CSV (CIF column + numeric columns; .csv or .csv.gz), a zip of
    structure files with ``id_prop.csv``, or a multi-frame extxyz with numeric ``info`` labels."""
    lower = name.lower()
    if len(data) == 0:
        raise UploadError(f"{name} is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(f"{name} is {len(data) / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB")
    if lower.endswith(".zip"):
        return _dataset_from_zip(data, name, max_atoms, max_structures)
    if lower.endswith(".gz"):
        import gzip

        try:
            data = gzip.decompress(data)
        except OSError as exc:
            raise UploadError(f"{name} is not a valid gzip file") from exc
        lower = lower[:-3]
    if lower.endswith(".csv"):
        return _dataset_from_csv(_decode(data, name), name, max_atoms, max_structures)
    if lower.endswith((".extxyz", ".xyz")):
        return _dataset_from_extxyz(_decode(data, name), name, max_atoms, max_structures)
    raise UploadError(f"{name}: wrong file type for a labelled data set; upload a .csv (CIF column + target "
                      "columns), a .zip of structure files with id_prop.csv, or a multi-frame .extxyz")


def select_target(data: LabelledData, column: str) -> tuple[list[Structure], np.ndarray, list[str], list[str]]:
    """Structures and finite labels of one target column; rows with NaN/inf labels are dropped (with a note)."""
    if column not in data.labels.columns:
        raise UploadError(f"no column {column!r}; numeric columns: {', '.join(data.targets)}")
    values = pd.to_numeric(data.labels[column], errors="coerce").to_numpy(dtype=np.float64)
    finite = np.isfinite(values)
    notes = []
    if not finite.all():
        notes.append(f"{int((~finite).sum())} of {len(values)} rows have a missing or non-numeric "
                     f"'{column}' label (NaN) and are left out")
    keep = np.flatnonzero(finite)
    if len(keep) < 2:
        raise UploadError(f"'{column}' has only {len(keep)} usable (finite) label(s); need at least 2")
    return [data.structures[k] for k in keep], values[keep], [data.ids[k] for k in keep], notes


def split_indices(n: int, val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random train/validation split; at least one structure on each side when n ≥ 2."""
    if n < 2:
        raise UploadError("need at least 2 structures to make a train/validation split")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_val = int(round(n * float(val_fraction)))
    n_val = min(max(n_val, 1), n - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
