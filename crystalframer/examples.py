"""Built-in example crystals, generated in code from crystallographic facts.

Each example is a space group, literature lattice constants and Wyckoff positions; pymatgen's
``Structure.from_spacegroup`` expands them. Nothing is downloaded and no structure file is shipped.

Values are room-temperature experimental ones from standard crystallographic references (Wyckoff, *Crystal
Structures*; ICSD entries); the C3N4 example is the theoretical "pseudocubic" defect-zincblende phase of
Teter & Hemley (Science 271, 53, 1996).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from pymatgen.core import Lattice, Structure

__all__ = ["Example", "EXAMPLES", "list_examples", "get_example", "DEFAULT_EXAMPLE"]


@dataclass(frozen=True)
class Example:
    name: str
    description: str
    spacegroup: str  # Hermann–Mauguin symbol understood by pymatgen (":2" = origin choice 2)
    system: str  # cubic | tetragonal | hexagonal
    a: float  # Å
    c: float | None  # Å (tetragonal / hexagonal)
    species: tuple[str, ...]
    coords: tuple[tuple[float, float, float], ...]  # fractional, one per Wyckoff site
    wyckoff: tuple[str, ...]
    reference: str
    expected_environments: dict[str, str] = field(default_factory=dict)  # element -> "octahedral" | ...

    def lattice(self) -> Lattice:
        if self.system == "cubic":
            return Lattice.cubic(self.a)
        if self.system == "tetragonal":
            return Lattice.tetragonal(self.a, self.c)
        if self.system == "hexagonal":
            return Lattice.hexagonal(self.a, self.c)
        raise ValueError(f"unknown crystal system {self.system!r}")


_EXAMPLES = [
    Example("SrTiO3 (cubic perovskite)", "Corner-sharing TiO6 octahedra, Sr in the 12-fold cavity.", "Pm-3m",
            "cubic", 3.905, None, ("Sr", "Ti", "O"), ((0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0)),
            ("1a", "1b", "3c"), "a = 3.905 Å (room temperature)",
            {"Ti": "octahedral"}),
    Example("TiO2 (rutile)", "Edge- and corner-sharing TiO6 octahedra chains along c.", "P4_2/mnm", "tetragonal",
            4.5937, 2.9587, ("Ti", "O"), ((0, 0, 0), (0.3048, 0.3048, 0)), ("2a", "4f"),
            "a = 4.5937 Å, c = 2.9587 Å, x(O) = 0.3048", {"Ti": "octahedral"}),
    Example("MgAl2O4 (spinel)", "Mg in tetrahedra, Al in octahedra (normal spinel). Primitive cell, 14 atoms.",
            "Fd-3m:2", "cubic", 8.0832, None, ("Mg", "Al", "O"),
            ((0.125, 0.125, 0.125), (0.5, 0.5, 0.5), (0.2624, 0.2624, 0.2624)), ("8a", "16d", "32e"),
            "a = 8.0832 Å, u(O) = 0.2624 (origin choice 2)", {"Mg": "tetrahedral", "Al": "octahedral"}),
    Example("ZnS (zincblende)", "Tetrahedral Zn and S on two interpenetrating fcc lattices.", "F-43m", "cubic",
            5.4093, None, ("Zn", "S"), ((0, 0, 0), (0.25, 0.25, 0.25)), ("4a", "4c"), "a = 5.4093 Å",
            {"Zn": "tetrahedral", "S": "tetrahedral"}),
    Example("ZnO (wurtzite)", "Hexagonal analogue of zincblende: corner-sharing ZnO4 tetrahedra.", "P6_3mc",
            "hexagonal", 3.2495, 5.2069, ("Zn", "O"), ((1 / 3, 2 / 3, 0), (1 / 3, 2 / 3, 0.3825)), ("2b", "2b"),
            "a = 3.2495 Å, c = 5.2069 Å, u = 0.3825", {"Zn": "tetrahedral", "O": "tetrahedral"}),
    Example("NaCl (rock salt)", "Octahedral Na and Cl on two interpenetrating fcc lattices.", "Fm-3m", "cubic",
            5.6402, None, ("Na", "Cl"), ((0, 0, 0), (0.5, 0.5, 0.5)), ("4a", "4b"), "a = 5.6402 Å",
            {"Na": "octahedral", "Cl": "octahedral"}),
    Example("MgO (periclase)", "Rock-salt oxide.", "Fm-3m", "cubic", 4.2117, None, ("Mg", "O"),
            ((0, 0, 0), (0.5, 0.5, 0.5)), ("4a", "4b"), "a = 4.2117 Å", {"Mg": "octahedral"}),
    Example("C (diamond)", "Tetrahedral sp3 carbon.", "Fd-3m:2", "cubic", 3.5668, None, ("C",),
            ((0.125, 0.125, 0.125),), ("8a",), "a = 3.5668 Å (origin choice 2)", {"C": "tetrahedral"}),
    Example("Si (diamond structure)", "Tetrahedral silicon.", "Fd-3m:2", "cubic", 5.4310, None, ("Si",),
            ((0.125, 0.125, 0.125),), ("8a",), "a = 5.4310 Å (origin choice 2)", {"Si": "tetrahedral"}),
    Example("CaF2 (fluorite)", "Ca in cubes of F, F in tetrahedra of Ca.", "Fm-3m", "cubic", 5.4626, None,
            ("Ca", "F"), ((0, 0, 0), (0.25, 0.25, 0.25)), ("4a", "8c"), "a = 5.4626 Å", {"F": "tetrahedral"}),
    Example("CsCl", "Simple cubic B2 structure, 8-fold coordination.", "Pm-3m", "cubic", 4.123, None, ("Cs", "Cl"),
            ((0, 0, 0), (0.5, 0.5, 0.5)), ("1a", "1b"), "a = 4.123 Å", {}),
    Example("C3N4 (pseudocubic, defect zincblende)", "sp3 C and 3-fold N; a zincblende lattice with one cation "
            "site in four vacant (theoretical).", "P-43m", "cubic", 3.4232, None, ("C", "N"),
            ((0.5, 0, 0), (0.2578, 0.2578, 0.2578)), ("3d", "4e"),
            "Teter & Hemley 1996 (DFT): a = 3.4232 Å, x(N) = 0.2578", {"C": "tetrahedral"}),
    # The paper's second figure shows MgSnF4. We found no verified description of it (space group and Wyckoff
    # positions) in the literature, ICSD or Materials Project pages we could reach, nor in the MEGNet MP set; so
    # the fluoride with octahedra shown in its place is MgF2 (sellaite, rutile type), whose structure is
    # verified: a, c from the Handbook of Mineralogy / Dana's System of Mineralogy (sellaite: P4_2/mnm,
    # a = 4.6213(2) Å, c = 3.0519(1) Å, Z = 2); x(F) = 0.303 (Baur, Acta Cryst. B32, 2200 (1976); the Materials
    # Project relaxation mp-1249 in the MEGNet MP data gives 0.3033).
    Example("MgF2 (rutile, sellaite)", "Rutile-type fluoride: distorted MgF6 octahedra sharing edges along c and "
            "corners between chains (shown in place of the paper's MgSnF4, which we could not verify).",
            "P4_2/mnm", "tetragonal", 4.6213, 3.0519, ("Mg", "F"), ((0, 0, 0), (0.303, 0.303, 0)), ("2a", "4f"),
            "Sellaite: a = 4.6213 Å, c = 3.0519 Å (Handbook of Mineralogy), x(F) = 0.303 (Baur 1976)",
            {"Mg": "octahedral"}),
]

EXAMPLES: dict[str, Example] = {ex.name: ex for ex in _EXAMPLES}
DEFAULT_EXAMPLE = "SrTiO3 (cubic perovskite)"


def list_examples() -> list[str]:
    return list(EXAMPLES)


@lru_cache(maxsize=64)
def _build(name: str, primitive: bool) -> Structure:
    ex = EXAMPLES[name]
    structure = Structure.from_spacegroup(ex.spacegroup, ex.lattice(), list(ex.species), [list(c) for c in ex.coords])
    if primitive:
        prim = structure.get_primitive_structure()
        if len(prim) < len(structure):
            structure = prim
    return structure


def get_example(name: str, primitive: bool = True) -> Structure:
    """A fresh copy of a built-in example (the primitive cell by default)."""
    if name not in EXAMPLES:
        raise KeyError(f"unknown example {name!r}; choose from {list_examples()}")
    return _build(name, primitive).copy()
