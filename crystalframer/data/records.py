"""Dataset readers: every format becomes a list of :class:`StructureRecord` (id, pymatgen structure, labels).

Readers never abort on one bad row: rows whose structure cannot be parsed (or whose id is missing or duplicated,
or whose label is not a number) are skipped, listed in ``RecordList.errors`` as ``(ident, message)`` and summarised
in a :class:`DataWarning`; pass ``on_error="raise"`` to stop at the first one instead. Rows with NaN labels are
dropped with a warning (``nan_policy="drop"``), kept (``"keep"``: NaN marks a missing label for masked multi-target
losses) or rejected (``"raise"``). A :class:`DataError` is raised for problems with the whole input (missing file or
column, wrong file type, no numeric label) and when no valid row remains.

Parsing text into structures is the slow step, so tabular readers cache the parsed rows (see :mod:`.cache`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from crystalframer.data.cache import cached_table, canonical_content, file_sha256, params_key
from crystalframer.data.config import mp_megnet_path
from crystalframer.data.errors import DataError, summarize_errors, warn
from crystalframer.data.formats import (
    SUPPORTED, detect_format, expand_paths, parse_structure_text, read_ase_frames_text, read_structure_file,
    read_text, sniff_format, structure_from_jarvis, structure_stem, ase_to_structure,
)
from crystalframer.data.table import PackedStructure, ParsedTable

ID_COLUMNS = ("material_id", "id", "jid", "mpid", "name", "ident", "identifier", "filename", "file")
STRUCTURE_COLUMNS = ("cif", "structure", "poscar", "atoms")  # text columns that hold structures, in order
NA_STRINGS = frozenset({"", "na", "nan", "none", "null", "n/a", "-"})
NAN_POLICIES = ("drop", "keep", "raise")
ERROR_POLICIES = ("skip", "raise")
MP_SPLITS = ("train", "val", "extra")
MP_EFORM_COLUMNS = ("formation_energy_per_atom", "megnet_e_form")
TABLE_READER_VERSION = 1  # bump when a reader's parsing changes, to invalidate its cached tables
EXTXYZ_READER_VERSION = 2  # 2: energy_per_atom derived from a total energy


class StructureRecord:
    """One labelled (or unlabelled) crystal: ``targets`` maps label name → value (NaN = missing).

    ``structure`` is a pymatgen ``Structure``. Records read from a cache hold the structure as arrays
    (:class:`~.table.PackedStructure`) and build the pymatgen object on first access.
    """

    __slots__ = ("ident", "targets", "_structure", "_packed")

    def __init__(self, ident: str, structure: Any = None, targets: dict[str, float] | None = None, *,
                 packed: PackedStructure | None = None) -> None:
        if structure is None and packed is None:
            raise ValueError("StructureRecord needs a structure")
        self.ident = ident
        self.targets: dict[str, float] = {} if targets is None else targets
        self._structure = structure
        self._packed = packed

    @property
    def structure(self) -> Any:
        if self._structure is None:
            self._structure = self._packed.to_structure()
        return self._structure

    @structure.setter
    def structure(self, value: Any) -> None:
        self._structure, self._packed = value, None

    def peek_structure(self) -> Any:
        """The structure, without keeping a newly built pymatgen object (saves memory on large datasets)."""
        return self._structure if self._structure is not None else self._packed.to_structure()

    @property
    def num_sites(self) -> int:
        return len(self._structure if self._structure is not None else self._packed)

    def canonical_content(self) -> tuple[np.ndarray, ...]:
        """Content for :func:`~.cache.structure_key` (from the packed arrays while no pymatgen object exists)."""
        if self._structure is None:
            return self._packed.canonical_content()
        return canonical_content(self._structure)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StructureRecord):
            return NotImplemented
        return (self.ident, self.targets) == (other.ident, other.targets) and self.structure == other.structure

    def __repr__(self) -> str:
        formula = getattr(getattr(self.peek_structure(), "composition", None), "formula", "?")
        return (f"StructureRecord(ident={self.ident!r}, formula={formula!r}, sites={self.num_sites}, "
                f"targets={self.targets})")


class RecordList(list):
    """``list[StructureRecord]`` with the load report.

    errors: ``(ident, message)`` for every skipped row; dropped_nan: rows dropped for NaN labels;
    target_names: the label columns, in order; source: where the data came from.
    """

    def __init__(self, records: Iterable[StructureRecord] = (), errors: list[tuple[str, str]] | None = None,
                 target_names: Sequence[str] = (), source: str = "", dropped_nan: int = 0) -> None:
        super().__init__(records)
        self.errors: list[tuple[str, str]] = errors or []
        self.target_names: list[str] = list(target_names)
        self.source = source
        self.dropped_nan = dropped_nan

    @property
    def idents(self) -> list[str]:
        return [r.ident for r in self]


# ----- shared helpers ----------------------------------------------------------------------------------------------
def _check_policies(nan_policy: str, on_error: str) -> None:
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    if on_error not in ERROR_POLICIES:
        raise ValueError(f"on_error must be one of {ERROR_POLICIES}, got {on_error!r}")


def _as_names(names: str | Sequence[str] | None) -> list[str] | None:
    if names is None:
        return None
    return [names] if isinstance(names, str) else list(names)


def _to_float(value: Any) -> float:
    """A label value as float; NA-like strings → NaN; raises ``ValueError`` for other text."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    text = str(value).strip()
    if text.lower() in NA_STRINGS:
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not a number") from None


def _float_column(values: Sequence[Any]) -> np.ndarray:
    """Convert a column, raising ``ValueError`` naming the first bad entry's position."""
    out = np.empty(len(values))
    for k, v in enumerate(values):
        try:
            out[k] = _to_float(v)
        except ValueError as exc:
            raise ValueError(f"entry {k}: {exc}") from None
    return out


def _parse_rows(items: Sequence[tuple[str, int, Callable[[], Any]]], on_error: str, progress: bool, desc: str,
                ) -> tuple[list[int], list[Any], list[tuple[str, str]]]:
    """Run each row's parser; returns kept positions, their structures, and ``(ident, message)`` errors."""
    kept, structures, errors = [], [], []
    for pos, (ident, row, parse) in enumerate(tqdm(items, desc=desc, unit="struct", disable=not progress,
                                                   leave=False)):
        try:
            structure = parse()
        except DataError as exc:
            if on_error == "raise":
                raise DataError(f"{desc}: row {row} ({ident}): {exc}") from None
            errors.append((ident, f"row {row}: {exc}"))
            continue
        kept.append(pos)
        structures.append(structure)
    return kept, structures, errors


def _default_targets(table: ParsedTable, exclude: Iterable[str]) -> list[str]:
    """Numeric columns, and text columns most of whose filled entries are numbers (the rest are then reported
    as bad rows instead of hiding the whole column)."""
    excluded = set(exclude)
    return [name for name, col in table.columns.items()
            if name not in excluded and not name.startswith("Unnamed:") and _mostly_numbers(col)]


def _mostly_numbers(column: np.ndarray) -> bool:
    if column.dtype.kind == "f":
        return True
    if column.dtype.kind not in "US":
        return False
    filled = [v for v in column.tolist() if str(v).strip().lower() not in NA_STRINGS]
    return bool(filled) and sum(_is_number(v) for v in filled) >= 0.5 * len(filled)


def _target_matrix(table: ParsedTable, names: list[str], source: str) -> tuple[np.ndarray, dict[int, str]]:
    """(rows, targets) float matrix; text columns are converted per entry, bad entries reported by row position."""
    matrix = np.full((len(table), len(names)), np.nan)
    bad: dict[int, str] = {}
    for j, name in enumerate(names):
        if name not in table.columns:
            raise DataError(f"{source}: no label column {name!r} (available: {sorted(table.columns)})")
        col = table.columns[name]
        if col.dtype.kind in "fiu":
            matrix[:, j] = col
            continue
        for i, value in enumerate(col.tolist()):
            try:
                matrix[i, j] = _to_float(value)
            except ValueError as exc:
                bad.setdefault(i, f"label {name!r}: {exc}")
    return matrix, bad


def _records_from_table(table: ParsedTable, target_names: list[str] | None, source: str, nan_policy: str,
                        on_error: str, mask: np.ndarray | None = None, exclude: Iterable[str] = ()) -> RecordList:
    """Turn a parsed table into records: choose labels, apply ``mask``, handle NaN labels and duplicate ids."""
    if target_names is None:
        target_names = _default_targets(table, exclude)
        if not target_names:
            raise DataError(f"{source}: no numeric label column found (columns: {sorted(table.columns)}); "
                            "name them with target_columns/target_keys, or pass [] to load structures only")
    matrix, bad = _target_matrix(table, target_names, source)
    errors = list(table.errors)
    if errors and on_error == "raise":
        raise DataError(f"{source}: {errors[0][0]}: {errors[0][1]}")
    records, seen, dropped = [], {}, 0
    for i, ident in enumerate(table.ids):
        if mask is not None and not mask[i]:
            continue
        message = bad.get(i)
        if message is None and ident in seen:
            message = f"duplicate id (first seen at row {seen[ident]})"
        if message is not None:
            if on_error == "raise":
                raise DataError(f"{source}: row {table.rows[i]} ({ident}): {message}")
            errors.append((ident, f"row {table.rows[i]}: {message}"))
            continue
        seen[ident] = table.rows[i]
        values = matrix[i]
        if np.isnan(values).any() and nan_policy != "keep":
            if nan_policy == "raise":
                missing = [n for n, v in zip(target_names, values) if np.isnan(v)]
                raise DataError(f"{source}: row {table.rows[i]} ({ident}): missing (NaN) label {missing}")
            dropped += 1
            continue
        records.append(_make_record(ident, table.structures[i], dict(zip(target_names, map(float, values)))))
    note = "" if mask is None else f"{int(np.sum(mask))} of {len(mask)} parsed rows pass the filters"
    return _finish(RecordList(records, errors, target_names, source, dropped), note)


def _make_record(ident: str, structure: Any, targets: dict[str, float]) -> StructureRecord:
    if isinstance(structure, PackedStructure):
        return StructureRecord(ident, None, targets, packed=structure)
    return StructureRecord(ident, structure, targets)


def _finish(records: RecordList, note: str = "") -> RecordList:
    """Warn about skipped rows and NaN drops; raise if nothing valid remains."""
    source, errors = records.source, records.errors
    if not records:
        parts = [f"{source}: no valid structures"]
        if errors:
            parts.append(f"{len(errors)} bad rows: {summarize_errors(errors)}")
        if records.dropped_nan:
            parts.append(f"{records.dropped_nan} rows dropped for NaN labels {records.target_names}")
        if note:
            parts.append(note)
        raise DataError("; ".join(parts))
    if errors:
        warn(f"{source}: skipped {len(errors)} bad rows ({len(records)} kept): {summarize_errors(errors)} "
             "(details in .errors)")
    if records.dropped_nan:
        warn(f"{source}: dropped {records.dropped_nan} rows with missing (NaN) labels in {records.target_names}")
    return records


def _ensure_file(path: str | Path, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: {what} not found")
    if not path.is_file():
        raise DataError(f"{path}: expected a {what} file, found a folder")
    return path


# ----- CSV with a CIF column ---------------------------------------------------------------------------------------
def read_csv_cif(path: str | Path, cif_column: str | None = "cif", id_column: str | None = None,
                 target_columns: str | Sequence[str] | None = None, *, nan_policy: str = "drop",
                 on_error: str = "skip", limit: int | None = None, cache: bool = True,
                 progress: bool = True) -> RecordList:
    """Read a CSV (optionally ``.gz``) with one structure text per row (CIF, or POSCAR/extxyz/JSON text).

    cif_column: the structure column; ``None`` picks the first of ``cif, structure, poscar, atoms`` present, else
    the first column whose first entry looks like a CIF.
    id_column: defaults to the first of ``material_id, id, jid, ...`` present, else ``row<k>``.
    target_columns: default all numeric columns except the id (and pandas ``Unnamed:`` index columns);
    ``[]`` loads structures without labels. limit: read only the first ``limit`` data rows.
    """
    _check_policies(nan_policy, on_error)
    path = _ensure_file(path, "CSV file")
    table, id_column = _load_csv_table(path, cif_column, id_column, limit, cache, progress, on_error)
    return _records_from_table(table, _as_names(target_columns), str(path), nan_policy, on_error,
                               exclude=[id_column] if id_column else [])


def _csv_header(path: Path) -> list[str]:
    import pandas as pd

    if detect_format(path) is not None:
        raise DataError(f"{path}: this is a structure file, not a CSV table; use read_structure_files")
    try:
        return [str(c) for c in pd.read_csv(path, nrows=0).columns]
    except Exception as exc:  # pandas raises ParserError, UnicodeDecodeError, EmptyDataError, gzip errors, ...
        raise DataError(f"{path}: cannot read as CSV ({type(exc).__name__}: {exc})") from None


def _find_structure_column(path: Path, columns: list[str]) -> str:
    import pandas as pd

    lowered = {c.lower().strip(): c for c in columns}
    named = next((lowered[c] for c in STRUCTURE_COLUMNS if c in lowered), None)
    if named is not None:
        return named
    try:
        first = pd.read_csv(path, nrows=1, dtype=str)
    except Exception as exc:
        raise DataError(f"{path}: cannot read as CSV ({type(exc).__name__}: {exc})") from None
    for col in first.columns:
        value = str(first[col].iloc[0]) if len(first) else ""
        if "_cell_length_a" in value or value.lstrip().lower().startswith("data_"):
            return str(col)
    raise DataError(f"{path}: no structure column; name a column 'cif' holding CIF text (columns found: "
                    f"{', '.join(columns[:10])})")


def _pick_id_column(path: Path, columns: list[str], id_column: str | None) -> str | None:
    if id_column is not None:
        if id_column not in columns:
            raise DataError(f"{path}: no id column {id_column!r} (columns: {columns})")
        return id_column
    lowered = {c.lower().strip(): c for c in columns}
    return next((lowered[c] for c in ID_COLUMNS if c in lowered), None)


def _load_csv_table(path: Path, cif_column: str, id_column: str | None, limit: int | None, cache: bool,
                    progress: bool, on_error: str) -> tuple[ParsedTable, str | None]:
    """Parse (or fetch from the cache) every row of a CIF CSV; returns the table and the id column used."""
    columns = _csv_header(path)
    if cif_column is None:
        cif_column = _find_structure_column(path, columns)
    if cif_column not in columns:
        raise DataError(f"{path}: no CIF column {cif_column!r} (columns: {columns})")
    id_column = _pick_id_column(path, columns, id_column)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    key = params_key("csv_cif", TABLE_READER_VERSION, file_sha256(path), cif_column, id_column, limit,
                     _pymatgen_version())
    build = lambda: _parse_csv(path, cif_column, id_column, limit, progress, on_error)  # noqa: E731
    return cached_table("csv", key, build, enabled=cache), id_column


def _parse_csv(path: Path, cif_column: str, id_column: str | None, limit: int | None, progress: bool,
               on_error: str) -> ParsedTable:
    import pandas as pd

    dtypes = {cif_column: str} | ({id_column: str} if id_column else {})
    try:
        frame = pd.read_csv(path, nrows=limit, dtype=dtypes)
    except Exception as exc:
        raise DataError(f"{path}: cannot read as CSV ({type(exc).__name__}: {exc})") from None
    raw_ids = frame[id_column].tolist() if id_column else [None] * len(frame)
    ids = [v.strip() if isinstance(v, str) and v.strip() else f"row{k}" for k, v in enumerate(raw_ids)]
    cifs = frame[cif_column].tolist()
    items = [(ident, k, _text_parser(cif) if id_column is None or ident != f"row{k}" else _missing_id(id_column))
             for k, (ident, cif) in enumerate(zip(ids, cifs))]
    kept, structures, errors = _parse_rows(items, on_error, progress, f"parsing {path.name}")
    columns = {}
    for name in frame.columns:
        if name in (cif_column, id_column):
            continue
        col = frame[name]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            columns[str(name)] = col.to_numpy(dtype=np.float64)[kept]
        else:
            columns[str(name)] = np.asarray(col.fillna("").astype(str).tolist(), dtype=str)[kept]
    return ParsedTable(ids=[ids[k] for k in kept], rows=kept, structures=structures, columns=columns,
                       errors=errors)


def _missing_id(id_column: str) -> Callable[[], Any]:
    def fail() -> Any:
        raise DataError(f"empty id in column {id_column!r}")
    return fail


def _text_parser(text: Any) -> Callable[[], Any]:
    """Parser of one table cell holding a structure text (its format sniffed from the content)."""
    def parse() -> Any:
        if not isinstance(text, str) or not text.strip():
            raise DataError("empty structure text")
        fmt = sniff_format(text)
        structures = parse_structure_text(text, fmt, source=fmt.upper())
        if len(structures) != 1:
            raise DataError(f"the {fmt} text holds {len(structures)} structures, expected 1")
        return structures[0]
    return parse


def _pymatgen_version() -> str:
    from importlib.metadata import version

    return version("pymatgen")


# ----- MP (MEGNet MP-2018.6.1 train/val) ---------------------------------------------------------------------------
def read_mp_megnet(path: str | Path | None = None, target: str | Sequence[str] = "megnet_e_form",
                   splits: Sequence[str] = ("train", "val"), *, max_sites: int | None = None,
                   limit: int | None = None, max_abs_eform: float | None = 5.0, nan_policy: str = "drop",
                   on_error: str = "skip", cache: bool = True, progress: bool = True,
                   ) -> tuple[RecordList, dict[str, str]]:
    """The MEGNet MP benchmark rows of ``mp_megnet_trainval.csv.gz`` and their official split.

    Returns ``(records, split_of)`` where ``split_of`` maps each returned id to ``"train"``/``"val"``. Training rows
    with |formation energy| > ``max_abs_eform`` eV/atom (4 MP artefacts) are dropped (``None`` keeps them).
    ``max_sites`` drops larger cells; ``limit`` reads only the first ``limit`` rows of the file (quick tests).
    The full parse (~4 min) is cached; later calls take seconds.
    """
    _check_policies(nan_policy, on_error)
    path = _ensure_file(path if path is not None else mp_megnet_path(), "MP MEGNet CSV")
    table, _ = _load_csv_table(path, "cif", "material_id", limit, cache, progress, on_error)
    if "split" not in table.columns:
        raise DataError(f"{path}: no 'split' column (columns: {sorted(table.columns)})")
    unknown = sorted(set(splits) - set(MP_SPLITS))
    if unknown:
        raise DataError(f"{path}: unknown split(s) {unknown}; this file has {list(MP_SPLITS)} "
                        "(the benchmark's test split is held out)")
    mask = _mp_mask(table, splits, max_sites, max_abs_eform)
    records = _records_from_table(table, _as_names(target), str(path), nan_policy, on_error, mask=mask)
    split_col = dict(zip(table.ids, table.columns["split"].tolist()))
    return records, {r.ident: split_col[r.ident] for r in records}


def _mp_mask(table: ParsedTable, splits: Sequence[str], max_sites: int | None,
             max_abs_eform: float | None) -> np.ndarray:
    split = table.columns["split"]
    mask = np.isin(split, list(splits))
    if max_abs_eform is not None:
        for name in MP_EFORM_COLUMNS:
            if name in table.columns:
                mask &= ~((split == "train") & (np.abs(table.columns[name]) > max_abs_eform))
    if max_sites is not None:
        mask &= np.asarray([len(s) <= max_sites for s in table.structures], dtype=bool)
    return mask


# ----- folder + id_prop.csv (CGCNN / ALIGNN) -----------------------------------------------------------------------
def read_id_prop_folder(folder: str | Path, target_names: Sequence[str] | None = None, *,
                        nan_policy: str = "drop", on_error: str = "skip", cache: bool = True,
                        progress: bool = True) -> RecordList:
    """A folder with ``id_prop.csv`` (no header: ``file_or_id, value[, value ...]``) and structure files.

    An id without a file of that name is looked up as ``<id>.cif``, ``<id>.vasp``, ``POSCAR-<id>``, ... .
    Idents are the first column with any structure extension removed. target_names default to ``target`` (one
    value column) or ``target0, target1, ...``; a header row, if present, names them instead.
    """
    _check_policies(nan_policy, on_error)
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder (expected a folder holding id_prop.csv and structure files)")
    id_prop = folder / "id_prop.csv"
    if not id_prop.is_file():
        raise DataError(f"{folder}: no id_prop.csv; for unlabelled structure files use read_structure_files")
    rows, header = _read_id_prop(id_prop)
    names = _id_prop_names(id_prop, rows, header, target_names)
    files = [_resolve_structure_file(folder, row[0]) for _, row in rows]
    key = params_key("id_prop", TABLE_READER_VERSION, file_sha256(id_prop), names, _pymatgen_version(),
                     [(str(f.relative_to(folder)), file_sha256(f)) if f else None for f in files])
    build = lambda: _parse_id_prop(folder, rows, files, names, progress, on_error)  # noqa: E731
    table = cached_table("idprop", key, build, enabled=cache)
    return _records_from_table(table, names, str(id_prop), nan_policy, on_error)


def _read_id_prop(path: Path) -> tuple[list[tuple[int, list[str]]], list[str] | None]:
    """Non-empty rows as ``(line number, cells)``; a first row with no numeric value is returned as a header."""
    text = read_text(path)
    rows = [(n + 1, [c.strip() for c in cells]) for n, cells in enumerate(csv.reader(io.StringIO(text)))
            if any(c.strip() for c in cells)]
    if not rows:
        raise DataError(f"{path}: empty id_prop.csv")
    if len(rows[0][1]) < 2:
        raise DataError(f"{path}: line {rows[0][0]}: expected 'id, value[, value ...]', got {rows[0][1]}")
    header = None
    if not any(_is_number(c) for c in rows[0][1][1:]):
        header, rows = rows[0][1], rows[1:]
    return rows, header


def _is_number(text: str) -> bool:
    """True for numbers and NA-like strings (a missing label), False for words such as a header's names."""
    try:
        _to_float(text)
    except ValueError:
        return False
    return True


def _id_prop_names(path: Path, rows: list[tuple[int, list[str]]], header: list[str] | None,
                   target_names: Sequence[str] | None) -> list[str]:
    width = len(header) - 1 if header else (len(rows[0][1]) - 1 if rows else 0)
    if target_names is not None:
        names = list(target_names)
        if len(names) != width:
            raise DataError(f"{path}: {width} value column(s) but {len(names)} target_names {names}")
        return names
    if header:
        return header[1:]
    return ["target"] if width == 1 else [f"target{k}" for k in range(width)]


def _resolve_structure_file(folder: Path, entry: str) -> Path | None:
    candidates = [entry, f"{entry}.cif", f"{entry}.vasp", f"POSCAR-{entry}", f"POSCAR-{entry}.vasp",
                  f"{entry}.poscar", f"{entry}.extxyz", f"{entry}.xyz", f"{entry}.json", f"{entry}.cif.gz",
                  f"{entry}.vasp.gz", f"{entry}/POSCAR"]
    return next((folder / c for c in candidates if entry and (folder / c).is_file()), None)


def _parse_id_prop(folder: Path, rows: list[tuple[int, list[str]]], files: list[Path | None], names: list[str],
                   progress: bool, on_error: str) -> ParsedTable:
    items, values, bad = [], [], []
    for (line, cells), path in zip(rows, files):
        ident = structure_stem(cells[0]) if cells[0] else f"line{line}"
        try:
            if len(cells) != len(names) + 1:
                raise DataError(f"expected {len(names) + 1} fields, got {len(cells)}")
            row_values = [_to_float(c) for c in cells[1:]]
        except (DataError, ValueError) as exc:
            bad.append((ident, f"line {line}: {exc}"))
            continue
        items.append((ident, line, _file_parser(folder, cells[0], path)))
        values.append(row_values)
    if bad and on_error == "raise":
        raise DataError(f"{folder / 'id_prop.csv'}: {bad[0][0]}: {bad[0][1]}")
    kept, structures, errors = _parse_rows(items, on_error, progress, f"reading {folder.name}")
    matrix = np.asarray(values, dtype=np.float64).reshape(len(values), len(names))[kept]
    return ParsedTable(ids=[items[k][0] for k in kept], rows=[items[k][1] for k in kept], structures=structures,
                       columns={n: matrix[:, j].copy() for j, n in enumerate(names)}, errors=bad + errors)


def _file_parser(folder: Path, entry: str, path: Path | None) -> Callable[[], Any]:
    def parse() -> Any:
        if path is None:
            raise DataError(f"no structure file for {entry!r} in {folder} (tried {entry}, {entry}.cif, "
                            f"{entry}.vasp, POSCAR-{entry}, ...)")
        fmt = detect_format(path) or sniff_format(read_text(path))
        structures = read_structure_file(path, fmt)
        if len(structures) != 1:
            raise DataError(f"{path} holds {len(structures)} structures, expected 1")
        return structures[0][1]
    return parse


# ----- extended XYZ ------------------------------------------------------------------------------------------------
def read_extxyz(path: str | Path, target_keys: str | Sequence[str] | None = None, *, id_key: str | None = None,
                nan_policy: str = "drop", on_error: str = "skip", cache: bool = True,
                progress: bool = True) -> RecordList:
    """Periodic frames of an extxyz file, labels from ``atoms.info`` (and scalar calculator results, e.g. energy).

    target_keys: default all numeric scalar keys except the id key. id_key: default the first of
    ``material_id, id, jid, ...`` in each frame's info, else ``<file stem>:<frame>``.
    """
    _check_policies(nan_policy, on_error)
    path = _ensure_file(path, "extxyz file")
    if detect_format(path) not in ("extxyz", None):
        raise DataError(f"{path}: not an extxyz file (expected .extxyz or .xyz)")
    key = params_key("extxyz", TABLE_READER_VERSION, EXTXYZ_READER_VERSION, file_sha256(path), id_key,
                     _pymatgen_version())
    build = lambda: _parse_extxyz(path, id_key, progress, on_error)  # noqa: E731
    table = cached_table("extxyz", key, build, enabled=cache)
    names = _as_names(target_keys)
    if names is not None:
        known = set(table.columns)
        missing = [n for n in names if n not in known]
        if missing:
            raise DataError(f"{path}: no frame has label(s) {missing} in atoms.info (found: {sorted(known)})")
    return _records_from_table(table, names, str(path), nan_policy, on_error)


def _parse_extxyz(path: Path, id_key: str | None, progress: bool, on_error: str) -> ParsedTable:
    try:
        frames = read_ase_frames_text(read_text(path))
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: malformed extxyz ({type(exc).__name__}: {exc})") from None
    labels = [_frame_labels(atoms) for atoms in frames]
    ids = [_frame_ident(path, k, lab, id_key) for k, lab in enumerate(labels)]
    items = [(ident, k, _frame_parser(atoms, k)) for k, (ident, atoms) in enumerate(zip(ids, frames))]
    kept, structures, errors = _parse_rows(items, on_error, progress, f"reading {path.name}")
    numeric = sorted({k for lab in labels for k, v in lab.items() if isinstance(v, float)} - {id_key})
    columns = {n: np.asarray([labels[k].get(n, math.nan) if isinstance(labels[k].get(n), float) else math.nan
                              for k in kept], dtype=np.float64) for n in numeric}
    return ParsedTable(ids=[ids[k] for k in kept], rows=kept, structures=structures, columns=columns,
                       errors=errors)


def _frame_labels(atoms: Any) -> dict[str, Any]:
    """Scalar labels of a frame: ``info`` entries plus scalar calculator results (numbers as float)."""
    raw = dict(atoms.info)
    if atoms.calc is not None:
        raw.update({k: v for k, v in getattr(atoms.calc, "results", {}).items() if k not in raw})
    energy = raw.get("energy")
    if "energy_per_atom" not in raw and np.size(energy) == 1 and np.asarray(energy).dtype.kind in "fiu" and len(atoms):
        raw["energy_per_atom"] = float(np.asarray(energy).reshape(())) / len(atoms)
    labels: dict[str, Any] = {}
    for key, value in raw.items():
        arr = np.asarray(value) if not isinstance(value, str) else None
        if arr is not None and arr.size == 1 and arr.dtype.kind in "fiu":
            labels[key] = float(arr.reshape(()))
        elif isinstance(value, str):
            labels[key] = value
    return labels


def _frame_ident(path: Path, k: int, labels: dict[str, Any], id_key: str | None) -> str:
    keys = [id_key] if id_key else list(ID_COLUMNS)
    for key in keys:
        if key in labels and str(labels[key]).strip():
            value = labels[key]
            return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value).strip()
    return f"{structure_stem(path)}:{k}"


def _frame_parser(atoms: Any, k: int) -> Callable[[], Any]:
    return lambda: ase_to_structure(atoms, frame=k)


# ----- loose structure files (prediction) --------------------------------------------------------------------------
def read_structure_files(paths: str | Path | Sequence[str | Path], *, recursive: bool = False,
                         on_error: str = "skip", progress: bool = False, quiet: bool = False) -> RecordList:
    """Structures (no labels) from files, folders (structure files inside) and glob patterns.

    Formats: {SUPPORTED}. Idents are file stems (``:k`` per frame of multi-structure files; the full path where
    two files share a stem). quiet: return the load report even when no file was readable, without warnings (the
    caller reports ``.errors``, each ``(stem, "<path>: <problem>")``).
    """
    _check_policies("keep", on_error)
    files = list(expand_paths(paths, recursive=recursive))
    if not files:
        raise DataError(f"{paths}: no structure files found (supported: {SUPPORTED})")
    stems = [structure_stem(p) for p, _ in files]
    records, errors = [], []
    for (path, _), stem in zip(tqdm(files, desc="reading", disable=not progress, leave=False), stems):
        try:
            parsed = read_structure_file(path)
        except DataError as exc:
            if on_error == "raise":
                raise
            errors.append((stem, str(exc)))
            continue
        unique = stems.count(stem) == 1
        records.extend(StructureRecord(ident if unique else str(path) + ident[len(stem):], s) for ident, s in parsed)
    found = RecordList(records, errors, (), ", ".join(str(p) for p, _ in files[:3]) + (" ..." if len(files) > 3 else ""))
    return found if quiet else _finish(found)


read_structure_files.__doc__ = (read_structure_files.__doc__ or "").replace("{SUPPORTED}", SUPPORTED)


# ----- JARVIS-DFT 3D -----------------------------------------------------------------------------------------------
def read_jarvis_dft3d(target: str | Sequence[str], path: str | Path | None = None, *, id_key: str = "jid",
                      max_sites: int | None = None, limit: int | None = None, nan_policy: str = "drop",
                      on_error: str = "skip", progress: bool = True) -> RecordList:
    """JARVIS-DFT 3D entries with labels ``target`` (e.g. ``"optb88vdw_bandgap"``, ``"formation_energy_peratom"``).

    path: a local JSON file (optionally gzipped): a list of dicts with ``atoms`` (JARVIS ``Atoms.to_dict()``),
    ``jid`` and the label keys. Without it, ``jarvis.db.figshare.data("dft_3d")`` downloads the dataset (needs
    jarvis-tools and network). Labels ``"na"`` count as missing (NaN).
    """
    _check_policies(nan_policy, on_error)
    entries, source = _jarvis_entries(path)
    if limit is not None:
        entries = entries[:limit]
    names = _as_names(target) or []
    present = {k for e in entries[:1000] if isinstance(e, dict) for k in e}
    missing = [n for n in names if not any(isinstance(e, dict) and n in e for e in entries)]
    if missing:
        raise DataError(f"{source}: no entry has label(s) {missing} (keys: {sorted(present)})")
    table = _jarvis_table(entries, names, id_key, progress, on_error, source)
    mask = None if max_sites is None else np.asarray([len(s) <= max_sites for s in table.structures], dtype=bool)
    return _records_from_table(table, names, source, nan_policy, on_error, mask=mask)


def _jarvis_entries(path: str | Path | None) -> tuple[list[Any], str]:
    if path is None:
        try:
            from jarvis.db.figshare import data
        except ImportError:
            raise DataError("jarvis-tools is not installed (pip install jarvis-tools), or pass path= to a local "
                            "JSON file") from None
        try:
            return list(data("dft_3d")), "JARVIS dft_3d"
        except Exception as exc:
            raise DataError(f"could not download JARVIS dft_3d ({type(exc).__name__}: {exc}); pass path= to a "
                            "local JSON file") from None
    path = _ensure_file(path, "JARVIS JSON file")
    try:
        entries = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: malformed JSON ({exc})") from None
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a JSON list of entries, got {type(entries).__name__}")
    return entries, str(path)


def _jarvis_table(entries: list[Any], names: list[str], id_key: str, progress: bool, on_error: str,
                  source: str) -> ParsedTable:
    items, values = [], []
    for k, entry in enumerate(entries):
        entry = entry if isinstance(entry, dict) else {}
        ident = str(entry.get(id_key, "")).strip() or f"entry{k}"
        items.append((ident, k, _jarvis_parser(entry)))
        values.append([entry.get(n, "na") for n in names])
    kept, structures, errors = _parse_rows(items, on_error, progress, f"converting {Path(source).name}")
    columns = {n: _jarvis_column([values[k][j] for k in kept]) for j, n in enumerate(names)}
    return ParsedTable(ids=[items[k][0] for k in kept], rows=kept, structures=structures, columns=columns,
                       errors=errors)


def _jarvis_column(values: list[Any]) -> np.ndarray:
    """Numeric labels as float64 ('na' → NaN); anything else stays text so the bad rows are reported."""
    try:
        return _float_column(values)
    except ValueError:
        return np.asarray([str(v) for v in values], dtype=str)


def _jarvis_parser(entry: dict[str, Any]) -> Callable[[], Any]:
    def parse() -> Any:
        atoms = entry.get("atoms")
        if not isinstance(atoms, dict):
            raise DataError("no 'atoms' dict")
        try:
            return structure_from_jarvis(atoms)
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"bad 'atoms' ({type(exc).__name__}: {exc})") from None
    return parse
