"""Plain facts about a structure for display: formula, space group, cell."""

from __future__ import annotations

from typing import Any

import numpy as np
from pymatgen.core import Structure

__all__ = ["to_pymatgen", "structure_summary", "lattice_table", "sites_table", "element_symbols"]


def to_pymatgen(structure: Any) -> Structure:
    """pymatgen ``Structure`` from a pymatgen or ASE object."""
    if isinstance(structure, Structure):
        return structure
    if type(structure).__module__.startswith("ase"):
        from pymatgen.io.ase import AseAtomsAdaptor

        return AseAtomsAdaptor.get_structure(structure)
    raise TypeError(f"expected a pymatgen Structure or ASE Atoms, got {type(structure).__name__}")


def structure_summary(structure: Structure, symprec: float = 0.01) -> dict[str, Any]:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        sga = SpacegroupAnalyzer(structure, symprec=symprec)
        sg_symbol, sg_number = sga.get_space_group_symbol(), int(sga.get_space_group_number())
        crystal_system = sga.get_crystal_system()
    except Exception:  # spglib can fail on odd inputs; the summary must not
        sg_symbol, sg_number, crystal_system = "?", 0, "?"
    lat = structure.lattice
    return {
        "formula": structure.composition.reduced_formula,
        "full_formula": structure.composition.formula.replace(" ", ""),
        "num_sites": len(structure),
        "spacegroup": sg_symbol,
        "spacegroup_number": sg_number,
        "crystal_system": crystal_system,
        "a": lat.a, "b": lat.b, "c": lat.c,
        "alpha": lat.alpha, "beta": lat.beta, "gamma": lat.gamma,
        "volume": lat.volume,
        "density": float(structure.density),
        "is_ordered": structure.is_ordered,
    }


def lattice_table(structure: Structure):
    import pandas as pd

    m = np.asarray(structure.lattice.matrix)
    return pd.DataFrame(m, index=["a", "b", "c"], columns=["x (Å)", "y (Å)", "z (Å)"])


def element_symbols(structure: Structure) -> list[str]:
    out = []
    for site in structure:
        sp = max(site.species.items(), key=lambda kv: kv[1])[0]
        out.append(getattr(sp, "symbol", str(sp)))
    return out


def sites_table(structure: Structure):
    import pandas as pd

    symbols = element_symbols(structure)
    frac = np.asarray(structure.frac_coords)
    cart = np.asarray(structure.cart_coords)
    return pd.DataFrame({
        "site": np.arange(len(structure)), "element": symbols,
        "species": [site.species_string for site in structure],
        "a": frac[:, 0], "b": frac[:, 1], "c": frac[:, 2],
        "x (Å)": cart[:, 0], "y (Å)": cart[:, 1], "z (Å)": cart[:, 2],
    })
