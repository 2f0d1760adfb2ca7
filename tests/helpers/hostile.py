"""Hostile and broken inputs for the reliability tests (docs/reliability.md): file name → (bytes, what the error
must say)."""

from __future__ import annotations

import json

from pymatgen.core import Lattice, Structure
from pymatgen.core.periodic_table import DummySpecies

CUBIC = [[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]]


def poscar(lattice, species: list[str], frac: list[list]) -> str:
    """A POSCAR text written by hand, so that broken values (NaN, equal vectors) can be put in."""
    order = sorted(set(species), key=species.index)
    lines = ["hand-written", "1.0"] + [" ".join(map(str, row)) for row in lattice]
    lines += [" ".join(order), " ".join(str(species.count(e)) for e in order), "direct"]
    lines += [" ".join(map(str, f)) for e in order for sp, f in zip(species, frac) if sp == e]
    return "\n".join(lines) + "\n"


def bad_files() -> dict[str, tuple[bytes, str]]:
    """Files every surface must refuse, with a fragment the one-line message must contain."""
    dummy = Structure(Lattice.cubic(4), [DummySpecies("X"), "Na"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    heavy = Structure(Lattice.cubic(4), ["Es"], [[0, 0, 0]])
    over = Structure(Lattice.cubic(4), [{"Na": 0.7, "K": 0.3}, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).as_dict()
    over["sites"][0]["species"][1]["occu"] = 0.6  # occupancies 1.3 in all
    return {
        "malformed.cif": (b"data_x\n_cell_length_a 3\nloop_\n_atom_site_label\n_atom_site_fract_x\nA1 0.1\n",
                          "malformed cif"),
        "binary.cif": (bytes(range(256)) * 8, "binary"),
        "empty.cif": (b"", "empty"),
        "nan.vasp": (poscar(CUBIC, ["Na", "Cl"], [[0, 0, 0], ["nan", 0.5, 0.5]]).encode(), "NaN"),
        "dummy.json": (json.dumps(dummy.as_dict()).encode(), "dummy"),
        "z99.json": (json.dumps(heavy.as_dict()).encode(), "Z = 1..98"),
        "overlap0.vasp": (poscar(CUBIC, ["Si", "Si"], [[0, 0, 0], [0, 0, 0]]).encode(), "overlapping atoms"),
        "overlap005.vasp": (poscar(CUBIC, ["Si", "Si"], [[0, 0, 0], [0.0125, 0, 0]]).encode(), "0.05 Å apart"),
        "singular.vasp": (poscar([[4, 0, 0], [4, 0, 0], [0, 0, 4]], ["Si"], [[0, 0, 0]]).encode(), "singular"),
        "molecule.xyz": (b"3\nwater\nO 0 0 0\nH 0.76 0.59 0\nH -0.76 0.59 0\n", "not periodic"),
        "occupancy.json": (json.dumps(over).encode(), "occupancies sum to more than 1"),
    }


def vacuum_slab() -> Structure:
    """A two-layer NaCl slab with 500 Å of vacuum: valid, with no neighbours across the gap."""
    a = 5.64
    lattice = Lattice.from_parameters(a, a, 500.0 + a, 90, 90, 90)
    species = ["Na", "Cl", "Na", "Cl", "Na", "Cl", "Na", "Cl"]
    z = a / 2 / lattice.c
    frac = [[0, 0, 0], [0.5, 0, 0], [0.5, 0.5, 0], [0, 0.5, 0],
            [0.5, 0, z], [0, 0, z], [0, 0.5, z], [0.5, 0.5, z]]
    return Structure(lattice, species, frac)


def partially_occupied() -> Structure:
    """Rock salt with a 50/50 Na/K site: accepted (occupancy-weighted species, docs/model.md)."""
    return Structure(Lattice.cubic(5.8), [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
