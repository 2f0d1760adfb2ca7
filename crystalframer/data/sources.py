"""One entry point for labelled datasets, from a path or from an upload's ``(bytes, name)``.

The CLI (``data:`` sections), :mod:`crystalframer.train.datasets` and the app's uploads all read through
:func:`read_dataset`, so the same file gives the same ids, labels and structures everywhere. Kinds:

* ``csv``: a CSV (or ``.csv.gz``) with a structure-text column (:func:`~.records.read_csv_cif`);
* ``id_prop``: a folder, or a ``.zip`` of one, with ``id_prop.csv`` and structure files
  (:func:`~.records.read_id_prop_folder`; archives are unpacked with :func:`~.archive.extract_zip`);
* ``extxyz``: multi-frame extended XYZ with labels in ``info`` (:func:`~.records.read_extxyz`);
* ``jarvis``: a JARVIS-DFT JSON list (:func:`~.records.read_jarvis_dft3d`).
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path, PurePosixPath
from typing import Iterator, Sequence

from crystalframer.data.archive import ZipLimits, extract_zip
from crystalframer.data.errors import DataError
from crystalframer.data.records import RecordList, read_csv_cif, read_extxyz, read_id_prop_folder, read_jarvis_dft3d

DatasetSource = str | Path | tuple[bytes, str]
KINDS = ("csv", "id_prop", "extxyz", "jarvis")


def guess_kind(name: str | Path) -> str:
    """The dataset kind of a path or file name: ``.csv[.gz]`` → csv, ``.xyz``/``.extxyz`` → extxyz, ``.json``
    → jarvis, ``.zip`` or a folder → id_prop."""
    lower = str(name).lower()
    if lower.endswith((".csv", ".csv.gz")):
        return "csv"
    if lower.endswith((".xyz", ".extxyz", ".xyz.gz", ".extxyz.gz")):
        return "extxyz"
    if lower.endswith((".json", ".json.gz")):
        return "jarvis"
    if lower.endswith(".zip") or Path(name).is_dir():
        return "id_prop"
    raise DataError(f"{name}: cannot tell the dataset kind from the name; use a .csv (structure column + labels), "
                    "a folder or .zip with id_prop.csv, a multi-frame .extxyz, or set data.kind")


def read_dataset(source: DatasetSource, kind: str | None = None, targets: str | Sequence[str] | None = None, *,
                 cif_column: str | None = None, id_column: str | None = None, max_sites: int | None = None,
                 limit: int | None = None, nan_policy: str = "drop", on_error: str = "skip", cache: bool = True,
                 progress: bool = False, zip_limits: ZipLimits = ZipLimits()) -> RecordList:
    """Records (id, structure, labels) of a dataset file, folder or upload.

    targets: label names (default: every numeric label). max_sites: drop larger cells (with their count in the
    load report). Errors name the file as given (an upload's name, not a temporary path).
    """
    name = source[1] if isinstance(source, tuple) else str(source)
    kind = kind or guess_kind(name)
    if kind not in KINDS:
        raise DataError(f"{name}: unknown dataset kind {kind!r}; use one of {', '.join(KINDS)}")
    with _materialised(source, kind, zip_limits) as (path, scratch):
        try:
            records = _read(path, kind, targets, cif_column, id_column, limit, nan_policy, on_error, cache, progress)
        except DataError as exc:
            raise DataError(_relabel(str(exc), scratch, name)) from None
    records.source = name
    if max_sites is not None:
        kept = [r for r in records if r.num_sites <= int(max_sites)]
        records = RecordList(kept, records.errors, records.target_names, name, records.dropped_nan)
    return records


def _read(path: Path, kind: str, targets: str | Sequence[str] | None, cif_column: str | None,
          id_column: str | None, limit: int | None, nan_policy: str, on_error: str, cache: bool,
          progress: bool) -> RecordList:
    common = dict(nan_policy=nan_policy, on_error=on_error, progress=progress)
    names = [targets] if isinstance(targets, str) else (None if targets is None else list(targets))
    if kind == "csv":
        return read_csv_cif(path, cif_column=cif_column, id_column=id_column, target_columns=names, limit=limit,
                            cache=cache, **common)
    if kind == "id_prop":
        return read_id_prop_folder(path, target_names=names, cache=cache, **common)
    if kind == "extxyz":
        return read_extxyz(path, target_keys=names, cache=cache, **common)
    return read_jarvis_dft3d(names or [], path=path, limit=limit, **common)


@contextlib.contextmanager
def _materialised(source: DatasetSource, kind: str, limits: ZipLimits) -> Iterator[tuple[Path, str | None]]:
    """A path the readers can open, and the scratch folder used (if any): the path itself, a scratch copy of an
    upload, or the unpacked folder of an archive."""
    name = source[1] if isinstance(source, tuple) else str(source)
    is_zip = name.lower().endswith(".zip")
    if not isinstance(source, tuple) and not is_zip:
        yield Path(source).expanduser(), None
        return
    with tempfile.TemporaryDirectory(prefix="crystalframer-data-") as scratch:
        if is_zip:
            if kind != "id_prop":
                raise DataError(f"{name}: a .zip holds an id_prop dataset (structure files + id_prop.csv), not {kind}")
            archive = source[0] if isinstance(source, tuple) else Path(source).expanduser()
            unpacked = extract_zip(archive, Path(scratch) / "unpacked", name=name, limits=limits)
            yield _id_prop_root(unpacked, name), scratch
        else:
            path = Path(scratch) / (PurePosixPath(name.replace("\\", "/")).name or "upload")
            path.write_bytes(source[0])
            yield path, scratch


def _id_prop_root(folder: Path, name: str) -> Path:
    """The folder of an unpacked archive that holds ``id_prop.csv`` (the archive may wrap it in a folder)."""
    found = sorted(p for p in folder.rglob("*") if p.name.lower() == "id_prop.csv" and p.is_file())
    if not found:
        raise DataError(f"{name}: no id_prop.csv in the archive (expected the CGCNN layout: structure files plus "
                        "id_prop.csv with 'id,target' rows)")
    root = found[0].parent
    if found[0].name != "id_prop.csv":
        found[0].rename(root / "id_prop.csv")
    return root


def _relabel(message: str, scratch: str | None, name: str) -> str:
    """Error messages name the upload, not the scratch folder it was copied to."""
    if scratch is None:
        return message
    for prefix in (str(Path(scratch) / "unpacked") + "/", scratch + "/"):
        message = message.replace(prefix, "")
    return message.replace(scratch, name)
