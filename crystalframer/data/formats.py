"""Structure file formats → pymatgen ``Structure`` objects.

Supported: CIF (``.cif``), POSCAR/CONTCAR (``.vasp``, ``.poscar``, names starting with ``POSCAR``/``CONTCAR``),
extended XYZ (``.extxyz``, ``.xyz``; periodic frames only), JSON (a pymatgen ``Structure.as_dict()``, a JARVIS atoms
dict, or a list of either). Any of them may be gzipped (``.gz``). Every failure is a :class:`DataError` naming the file.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from crystalframer.data.errors import DataError

FORMAT_SUFFIXES: dict[str, str] = {
    ".cif": "cif", ".vasp": "poscar", ".poscar": "poscar", ".extxyz": "extxyz", ".xyz": "extxyz", ".json": "json",
}
POSCAR_PREFIXES = ("poscar", "contcar")
SUPPORTED = "CIF (.cif), POSCAR/CONTCAR (.vasp, .poscar, POSCAR*), extxyz (.extxyz, .xyz), pymatgen/JARVIS JSON (.json)"


def strip_gz(name: str) -> str:
    """``"a.cif.gz"`` → ``"a.cif"``."""
    return name[:-3] if name.lower().endswith(".gz") else name


def detect_format(path: str | Path) -> str | None:
    """``"cif"``, ``"poscar"``, ``"extxyz"``, ``"json"`` from the file name, or ``None`` if not a structure file."""
    name = strip_gz(Path(path).name)
    lower = name.lower()
    for suffix, fmt in FORMAT_SUFFIXES.items():
        if lower.endswith(suffix):
            return fmt
    if lower.startswith(POSCAR_PREFIXES):
        return "poscar"
    return None


def structure_stem(path: str | Path) -> str:
    """File name without its structure extension (and ``.gz``): ``"POSCAR-JVASP-1.vasp"`` → ``"POSCAR-JVASP-1"``."""
    name = strip_gz(Path(path).name)
    lower = name.lower()
    for suffix in FORMAT_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_text(path: str | Path) -> str:
    """The text of a (possibly gzipped) file; :class:`DataError` if it is missing, unreadable or binary."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc})") from None
    return decode_text(raw, str(path))


def decode_text(raw: bytes, source: str) -> str:
    """Bytes of a text file (gzip is undone) as text; :class:`DataError` naming ``source`` for binary data.

    UTF-8 first, then Latin-1 (older CIF writers); NUL bytes mark a binary file.
    """
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{source}: not a valid gzip file ({exc})") from None
    if b"\x00" in raw[:4096]:
        raise DataError(f"{source}: looks like a binary file, not a text structure file (accepted: {SUPPORTED})")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def sniff_format(text: str, name: str = "") -> str:
    """The format of a structure text: from ``name`` when it says (see :func:`detect_format`), else from the
    content: CIF (``data_``/``_cell_length_a``), JSON (``{``/``[``), extxyz (count line then ``Lattice=``),
    otherwise POSCAR."""
    fmt = detect_format(name) if name else None
    if fmt is not None:
        return fmt
    head = text[:4000]
    stripped = head.lstrip()
    if "_cell_length_a" in head or stripped.lower().startswith("data_") or "\ndata_" in head:
        return "cif"
    if stripped[:1] in ("{", "["):
        return "json"
    lines = stripped.splitlines()
    if len(lines) > 1 and lines[0].strip().isdigit() and "lattice=" in lines[1].lower():
        return "extxyz"
    return "poscar"


def read_structure_bytes(raw: bytes, name: str, fmt: str | None = None) -> list[tuple[str, Any]]:
    """Like :func:`read_structure_file` for an upload's ``(bytes, name)``: the format comes from the name or,
    when the name says nothing, from the content."""
    if not raw:
        raise DataError(f"{name}: empty file")
    text = decode_text(raw, name)
    structures = parse_structure_text(text, fmt or sniff_format(text, name), source=name)
    stem = structure_stem(name)
    if len(structures) == 1:
        return [(stem, structures[0])]
    return [(f"{stem}:{k}", s) for k, s in enumerate(structures)]


def read_structure_file(path: str | Path, fmt: str | None = None) -> list[tuple[str, Any]]:
    """Parse one file into ``[(ident, Structure), ...]`` (several for multi-frame extxyz, multi-block CIF, JSON lists).

    The ident is the file stem, with ``:k`` appended when the file holds more than one structure.
    """
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt is None:
        raise DataError(f"{path}: unsupported structure file type; supported: {SUPPORTED}")
    text = read_text(path)
    structures = parse_structure_text(text, fmt, source=str(path))
    stem = structure_stem(path)
    if len(structures) == 1:
        return [(stem, structures[0])]
    return [(f"{stem}:{k}", s) for k, s in enumerate(structures)]


def parse_structure_text(text: str, fmt: str, source: str = "<string>") -> list[Any]:
    """Parse ``text`` in format ``fmt``; :class:`DataError` naming ``source`` on failure or when empty."""
    parsers = {"cif": parse_cif, "poscar": parse_poscar, "extxyz": parse_extxyz, "json": parse_json}
    if fmt not in parsers:
        raise DataError(f"{source}: unknown format {fmt!r}; supported: {sorted(parsers)}")
    if not text.strip():
        raise DataError(f"{source}: empty {fmt} input")
    try:
        structures = parsers[fmt](text)
    except DataError as exc:
        raise DataError(f"{source}: {exc}") from None
    except Exception as exc:  # parsers raise anything from ValueError to IndexError on malformed input
        detail = " ".join(str(exc).split())[:300]  # one line, whatever the parser printed
        raise DataError(f"{source}: malformed {fmt} ({type(exc).__name__}: {detail})") from None
    if not structures:
        raise DataError(f"{source}: no structure found in the {fmt} input")
    return structures


def parse_cif(text: str) -> list[Any]:
    """All data blocks of a CIF, as given (``primitive=False``); pymatgen's parse warnings are silenced."""
    from pymatgen.io.cif import CifParser

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CifParser.from_str(text).parse_structures(primitive=False, on_error="raise")


def parse_poscar(text: str) -> list[Any]:
    """One POSCAR/CONTCAR."""
    from pymatgen.io.vasp import Poscar

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [Poscar.from_str(text).structure]


def parse_extxyz(text: str) -> list[Any]:
    """Every frame of an extended XYZ text (each must be periodic)."""
    return [ase_to_structure(atoms, frame=k) for k, atoms in enumerate(read_ase_frames_text(text))]


def read_ase_frames_text(text: str) -> list[Any]:
    """ASE ``Atoms`` frames of an extxyz text."""
    import ase.io

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frames = ase.io.read(io.StringIO(text), index=":", format="extxyz")
    return list(frames) if isinstance(frames, list) else [frames]


def ase_to_structure(atoms: Any, frame: int | None = None) -> Any:
    """Periodic ASE ``Atoms`` → pymatgen ``Structure`` (Cartesian positions and cell kept exactly)."""
    from pymatgen.core import Lattice, Structure

    where = "" if frame is None else f"frame {frame}: "
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    if not all(atoms.pbc) or abs(np.linalg.det(cell)) < 1e-8:
        raise DataError(f"{where}not periodic in 3D (pbc={list(map(bool, atoms.pbc))}); a crystal needs a full cell")
    numbers = np.asarray(atoms.get_atomic_numbers())
    if len(numbers) and (numbers.min() < 1 or numbers.max() > 118):
        raise DataError(f"{where}unknown element (atomic number {int(numbers.min())})")
    return Structure(Lattice(cell), [int(z) for z in numbers], np.asarray(atoms.get_positions(), dtype=np.float64),
                     coords_are_cartesian=True)


def parse_json(text: str) -> list[Any]:
    """A pymatgen ``Structure`` dict, a JARVIS atoms dict, or a list of them."""
    data = json.loads(text)
    items = data if isinstance(data, list) else [data]
    return [structure_from_dict(item, index=k) for k, item in enumerate(items)]


def structure_from_dict(item: Any, index: int = 0) -> Any:
    """pymatgen ``Structure.as_dict()`` or JARVIS ``Atoms.to_dict()`` → ``Structure``."""
    from pymatgen.core import Structure

    if isinstance(item, dict) and "lattice" in item and "sites" in item:
        return Structure.from_dict(item)
    if isinstance(item, dict) and "lattice_mat" in item and "elements" in item:
        return structure_from_jarvis(item)
    raise DataError(f"item {index} is not a pymatgen Structure dict (keys 'lattice', 'sites') nor a JARVIS atoms "
                    "dict (keys 'lattice_mat', 'coords', 'elements')")


def structure_from_jarvis(atoms: dict[str, Any]) -> Any:
    """JARVIS ``Atoms.to_dict()`` (``lattice_mat`` rows, ``coords``, ``elements``, ``cartesian``) → ``Structure``."""
    from pymatgen.core import Lattice, Structure

    missing = [k for k in ("lattice_mat", "coords", "elements") if k not in atoms]
    if missing:
        raise DataError(f"JARVIS atoms dict lacks {missing}")
    lattice = np.asarray(atoms["lattice_mat"], dtype=np.float64)
    coords = np.asarray(atoms["coords"], dtype=np.float64).reshape(-1, 3)
    elements = [str(e).strip() for e in atoms["elements"]]
    if lattice.shape != (3, 3) or len(elements) != len(coords):
        raise DataError(f"JARVIS atoms dict has lattice shape {lattice.shape}, {len(coords)} coords and "
                        f"{len(elements)} elements")
    return Structure(Lattice(lattice), elements, coords, coords_are_cartesian=bool(atoms.get("cartesian", False)))


def expand_paths(paths: str | Path | list[str | Path] | tuple[str | Path, ...], recursive: bool = False
                 ) -> Iterator[tuple[Path, bool]]:
    """Files named by ``paths`` (files, folders, glob patterns), sorted; yields ``(path, explicit)``.

    Files inside folders or matched by globs are kept only when they look like structure files (``explicit=False``);
    a file named directly is always yielded (``explicit=True``), so an unsupported type gives an error, not silence.
    """
    import glob

    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    for item in items:
        text = os.path.expanduser(str(item))
        path = Path(text)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            yield from ((p, False) for p in sorted(path.glob(pattern)) if p.is_file() and detect_format(p))
        elif any(ch in text for ch in "*?[") and not path.exists():
            matches = sorted(Path(m) for m in glob.glob(text, recursive=recursive))
            if not matches:
                raise DataError(f"{text}: the pattern matches no file")
            yield from ((p, False) for p in matches if p.is_file() and detect_format(p))
        else:
            yield path, True
