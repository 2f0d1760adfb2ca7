"""Reading structures for prediction and inspection (files, folders, globs), keeping per-file errors."""

from __future__ import annotations

from typing import Any, Sequence

from .data import read_structure_files
from .data.errors import DataError


def read_structures(inputs: Sequence[str]) -> tuple[list[str], list[Any], list[tuple[str, str]]]:
    """(names, pymatgen structures, [(name, error message)]) for CIF/POSCAR/extxyz/JSON inputs.

    A bad file is reported and skipped; it never stops the others.
    """
    names: list[str] = []
    structures: list[Any] = []
    errors: list[tuple[str, str]] = []
    for item in inputs:
        try:
            records = read_structure_files([item])
        except DataError as exc:
            errors.append((item, str(exc)))
            continue
        errors.extend(records.errors)
        for record in records:
            names.append(record.ident)
            structures.append(record.structure)
    return names, structures, errors
