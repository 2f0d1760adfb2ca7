"""The app's uploads: the library's one reader (:mod:`crystalframer.data`) plus size limits and user messages.

Every failure raises :class:`UploadError` whose message says what was wrong and what is accepted; nothing here
raises anything else for bad input. Structures are returned as pymatgen ``Structure`` objects that passed the
model's own validation (:func:`crystalframer.to_arrays`) and the app's size limit. Parsing is not done here: a
file gives the same ids, labels and structures in the app as through the CLI.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from crystalframer.data.archive import ZipLimits
from crystalframer.data.errors import DataError, DataWarning
from crystalframer.data.formats import parse_structure_text as _parse_text
from crystalframer.data.formats import read_structure_bytes, sniff_format
from crystalframer.data.sources import read_dataset
from crystalframer.structure import StructureError, estimate_cost, to_arrays

__all__ = ["UploadError", "LabelledData", "MAX_UPLOAD_BYTES", "APP_MAX_ATOMS", "MAX_DATASET_STRUCTURES",
           "STRUCTURE_SUFFIXES", "parse_structure_bytes", "parse_structure_text", "parse_dataset",
           "select_target", "split_indices", "check_structure"]

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
APP_MAX_ATOMS = 500  # interactive limit (the model itself takes up to ModelConfig.max_atoms)
MAX_DATASET_STRUCTURES = 5000
UPLOAD_ZIP_LIMITS = ZipLimits(max_members=2 * MAX_DATASET_STRUCTURES + 10, max_total_bytes=8 * MAX_UPLOAD_BYTES)
STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar", ".contcar", ".extxyz", ".xyz", ".json")
DATASET_SUFFIXES = (".csv", ".csv.gz", ".zip", ".extxyz", ".xyz")


class UploadError(ValueError):
    """A bad upload, with a message for the user."""


def _check_size(data: bytes, name: str) -> None:
    if len(data) == 0:
        raise UploadError(f"{name} is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(f"{name} is {len(data) / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB")


# ----------------------------------------------------------------------------------------------------------------
# single structures
# ----------------------------------------------------------------------------------------------------------------
def check_structure(structure: Structure, max_atoms: int = APP_MAX_ATOMS, what: str = "the structure") -> Structure:
    """The model's validation plus the app's size limit; raises UploadError."""
    if len(structure) > max_atoms:
        cost = estimate_cost(len(structure), float(structure.volume))
        raise UploadError(f"{what} has {len(structure)} sites; this app handles at most {max_atoms} (this cell: "
                          f"~{cost['edges']:.2g} image-edges, ~{cost['predict_s']:.0f} s per prediction); use the "
                          "command line (crystalframer predict --max-atoms N) for bigger cells")
    try:
        to_arrays(structure, max_atoms=max_atoms)
    except StructureError as exc:
        raise UploadError(f"{what} cannot be used: {exc}") from exc
    return structure


def _first(parsed: list[tuple[str, Structure]]) -> Structure:
    return parsed[0][1]


def parse_structure_text(text: str, fmt: str = "auto", name: str = "pasted text",
                         max_atoms: int = APP_MAX_ATOMS) -> Structure:
    """The first structure of a pasted text (format ``auto``: sniffed from the content)."""
    if not text or not text.strip():
        raise UploadError("nothing to read: the text is empty")
    fmt = sniff_format(text) if fmt == "auto" else fmt.lower()
    try:
        structure = _parse_text(text, fmt, source=name)[0]
    except DataError as exc:
        raise UploadError(f"could not read {exc}") from None
    return check_structure(structure, max_atoms=max_atoms, what=name)


def parse_structure_bytes(data: bytes, name: str, max_atoms: int = APP_MAX_ATOMS) -> Structure:
    """The first structure of an uploaded file (format from the name, else from the content)."""
    lower = name.lower()
    if lower.endswith((".zip", ".tar", ".png", ".jpg", ".jpeg", ".pdf", ".xlsx", ".docx", ".safetensors", ".pt")):
        raise UploadError(f"{name}: wrong file type; upload one structure file "
                          f"({', '.join(STRUCTURE_SUFFIXES)}, or a POSCAR/CONTCAR without extension)")
    _check_size(data, name)
    try:
        structure = _first(read_structure_bytes(data, name))
    except DataError as exc:
        raise UploadError(f"could not read {exc}") from None
    return check_structure(structure, max_atoms=max_atoms, what=name)


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


def parse_dataset(data: bytes, name: str, max_atoms: int = APP_MAX_ATOMS,
                  max_structures: int = MAX_DATASET_STRUCTURES) -> LabelledData:
    """A labelled data set from an upload: CSV (structure column + numeric columns; .csv or .csv.gz), a zip of
    structure files with ``id_prop.csv``, or a multi-frame extxyz with numeric ``info`` labels.

    Read by :func:`crystalframer.data.sources.read_dataset` (as the CLI reads it), with missing labels kept as
    NaN so that each target column keeps its own rows (see :func:`select_target`).
    """
    _check_size(data, name)
    if not name.lower().endswith(DATASET_SUFFIXES):
        raise UploadError(f"{name}: wrong file type for a labelled data set; upload a .csv (CIF column + target "
                          "columns), a .zip of structure files with id_prop.csv, or a multi-frame .extxyz")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        try:
            records = read_dataset((data, name), nan_policy="keep", cache=False, zip_limits=UPLOAD_ZIP_LIMITS)
        except DataError as exc:
            raise UploadError(_for_user(str(exc))) from None
    notes: list[str] = []
    if len(records) > max_structures:
        notes.append(f"only the first {max_structures} of {len(records)} structures are used")
    structures, ids, rows, skipped = [], [], [], [f"{i}: {m}" for i, m in records.errors]
    for record in list(records)[:max_structures]:
        try:
            structures.append(check_structure(record.structure, max_atoms=max_atoms, what=record.ident))
        except UploadError as exc:
            skipped.append(str(exc))
            continue
        ids.append(record.ident)
        rows.append(record.targets)
    if skipped:
        shown = "; ".join(skipped[:5]) + (f"; … ({len(skipped) - 5} more)" if len(skipped) > 5 else "")
        notes.append(f"skipped {len(skipped)} unusable structure(s): {shown}")
    if not structures:
        raise UploadError(f"{name}: no usable structures" + (f" ({skipped[0]})" if skipped else ""))
    labels = pd.DataFrame(rows, columns=records.target_names).apply(pd.to_numeric, errors="coerce")
    del caught  # the skipped rows are in the notes
    return LabelledData(structures=structures, ids=ids, labels=labels, source=name, warnings=notes)


def _for_user(message: str) -> str:
    if "no numeric label column" in message:
        return message.split(" (columns")[0].replace("no numeric label column found",
                                                     "no numeric target column found") + \
            "; add a column of numbers (e.g. formation_energy_per_atom) next to the structures"
    return message


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
