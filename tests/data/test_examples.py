"""Built-in example crystals: they build, have the right symmetry, composition and bond lengths."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from crystalframer import to_arrays
from crystalframer.examples import DEFAULT_EXAMPLE, EXAMPLES, get_example, list_examples

EXPECTED = {  # name: (space group number, reduced formula, conventional-cell sites, shortest cation–anion bond Å)
    "SrTiO3 (cubic perovskite)": (221, "SrTiO3", 5, 1.9525),
    "TiO2 (rutile)": (136, "TiO2", 6, 1.95),
    "MgAl2O4 (spinel)": (227, "MgAl2O4", 56, 1.92),
    "ZnS (zincblende)": (216, "ZnS", 8, 2.342),
    "ZnO (wurtzite)": (186, "ZnO", 4, 1.97),
    "NaCl (rock salt)": (225, "NaCl", 8, 2.820),
    "C (diamond)": (227, "C", 8, 1.545),
    "C3N4 (pseudocubic, defect zincblende)": (215, "C3N4", 7, 1.498),
}


def test_default_example_exists():
    assert DEFAULT_EXAMPLE in list_examples()
    assert len(list_examples()) >= 10


@pytest.mark.parametrize("name", list(EXPECTED))
def test_example_symmetry_and_geometry(name):
    number, formula, n_conv, bond = EXPECTED[name]
    conv = get_example(name, primitive=False)
    prim = get_example(name)
    assert conv.composition.reduced_formula == formula
    assert len(conv) == n_conv
    assert len(prim) <= len(conv)
    assert SpacegroupAnalyzer(prim, symprec=0.01).get_space_group_number() == number
    dm = prim.distance_matrix + np.eye(len(prim)) * 100
    shortest = min(dm.min(), min(prim.lattice.abc))
    assert shortest == pytest.approx(bond, abs=0.02)


@pytest.mark.parametrize("name", list_examples())
def test_every_example_is_valid_model_input(name):
    s = get_example(name)
    arrays = to_arrays(s)
    assert arrays.num_atoms == len(s)


def test_examples_are_fresh_copies():
    a = get_example(DEFAULT_EXAMPLE)
    a.replace(0, "Ba")
    b = get_example(DEFAULT_EXAMPLE)
    assert b.composition.reduced_formula == "SrTiO3"


def test_unknown_example():
    with pytest.raises(KeyError):
        get_example("unobtainium")


def test_metadata_consistent():
    for ex in EXAMPLES.values():
        assert len(ex.species) == len(ex.coords) == len(ex.wyckoff)
        assert ex.reference
