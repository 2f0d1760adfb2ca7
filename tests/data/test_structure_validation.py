"""Bad structures raise ``StructureError`` with a message that says why; good ones convert correctly."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from pymatgen.core import DummySpecies, Element, Lattice, Molecule, Structure

import crystalframer
from crystalframer import CrystalFramer, ModelConfig, StructureError, to_arrays

CUBIC = Lattice.cubic(4.0)


def nacl():
    return Structure(CUBIC, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def expect_error(structure, *fragments, **kwargs):
    with pytest.raises(StructureError) as info:
        to_arrays(structure, **kwargs)
    message = str(info.value).lower()
    for fragment in fragments:
        assert fragment.lower() in message, f"{fragment!r} not in {str(info.value)!r}"
    return str(info.value)


def test_structure_error_is_exported_and_a_value_error():
    assert crystalframer.StructureError is StructureError
    assert issubclass(StructureError, ValueError)


def test_empty_structure():
    expect_error(Structure(CUBIC, [], []), "empty")


def test_dummy_species():
    expect_error(Structure(CUBIC, [DummySpecies("X")], [[0, 0, 0]]), "dummy")
    expect_error(Structure(CUBIC, ["Na", DummySpecies("X")], [[0, 0, 0], [0.5, 0.5, 0.5]]), "site 1", "dummy")


def test_atomic_number_above_98():
    assert Element("Es").Z == 99
    msg = expect_error(Structure(CUBIC, [Element("Es")], [[0, 0, 0]]), "99", "98")
    assert "Es" in msg
    expect_error(Atoms(numbers=[11, 99], positions=[[0, 0, 0], [2, 2, 2]], cell=np.eye(3) * 4.0, pbc=True),
                 "site 1", "99")
    expect_error(Atoms(numbers=[0], positions=[[0, 0, 0]], cell=np.eye(3) * 4.0, pbc=True), "atomic number 0")


def test_nan_coordinates():
    expect_error(Structure(CUBIC, ["Na", "Cl"], [[0, 0, 0], [np.nan, 0.5, 0.5]]), "nan")
    expect_error(Atoms("NaCl", positions=[[0, 0, 0], [2.0, np.nan, 2.0]], cell=np.eye(3) * 4.0, pbc=True), "nan")
    expect_error(Atoms("NaCl", positions=[[0, 0, 0], [2.0, 2.0, np.inf]], cell=np.eye(3) * 4.0, pbc=True), "infinite")


def test_singular_lattice():
    expect_error(Structure(Lattice([[1, 0, 0], [0, 1, 0], [1, 1, 0]]), ["Na"], [[0, 0, 0]]), "singular")
    expect_error(Atoms("NaCl", positions=[[0, 0, 0], [1, 1, 0]], cell=[[4, 0, 0], [0, 4, 0], [4, 4, 0]], pbc=True),
                 "singular")
    # Not exactly singular, but flat: a lattice-plane spacing of 1e-3 Å.
    expect_error(Structure(Lattice([[4, 0, 0], [0, 4, 0], [0, 3.99999, 1e-3]]), ["Fe"], [[0, 0, 0]]), "degenerate")


def test_overlapping_atoms():
    msg = expect_error(Structure(CUBIC, ["Na", "Cl"], [[0, 0, 0], [0.01, 0, 0]]), "0.1", "apart")
    assert "0 and 1" in msg
    # Also across the periodic boundary, and with unwrapped coordinates.
    msg = expect_error(Structure(CUBIC, ["Na", "Cl", "K"], [[0.5, 0.5, 0.5], [0.001, 0, 0], [0.995, 2.0, -1.0]]),
                       "apart")
    assert "1 and 2" in msg or "2 and 1" in msg
    to_arrays(Structure(CUBIC, ["Na", "Cl"], [[0, 0, 0], [0.03, 0, 0]]))  # 0.12 Å: allowed


def test_too_many_atoms():
    s = nacl() * (2, 1, 1)  # 4 sites
    expect_error(s, "4 sites", "limit of 3", max_atoms=3)
    assert to_arrays(s, max_atoms=4).num_atoms == 4
    model = CrystalFramer(ModelConfig(frame_method="none", num_layers=1, max_atoms=3))
    with pytest.raises(StructureError, match="limit of 3"):
        model.predict([s])


def test_unsupported_objects():
    expect_error([[0, 0, 0]], "pymatgen", "ase")
    expect_error(Atoms("Na", positions=[[0, 0, 0]], cell=np.eye(3) * 4.0, pbc=[True, True, False]), "periodic")


def test_molecule_is_rejected_clearly():
    expect_error(Molecule(["H", "H"], [[0, 0, 0], [0.74, 0, 0]]), "lattice")


def test_disordered_site_gives_occupancy_weighted_onehot():
    s = Structure(CUBIC, [{"Fe": 0.5, "Ni": 0.5}, {"O": 0.75, "F": 0.25}], [[0, 0, 0], [0.5, 0.5, 0.5]])
    arrays = to_arrays(s)
    assert arrays.species.shape == (2, 98)
    expected = np.zeros((2, 98))
    expected[0, 26 - 1] = 0.5
    expected[0, 28 - 1] = 0.5
    expected[1, 8 - 1] = 0.75
    expected[1, 9 - 1] = 0.25
    np.testing.assert_array_equal(arrays.species, expected)
    assert arrays.atomic_numbers[1] == 8  # majority species
    # The embedding is linear, so a 50/50 site embeds as the mean of the two pure sites.
    model = CrystalFramer(ModelConfig(frame_method="none", num_layers=1)).double()
    emb = model.embedding.weight.detach().numpy()
    np.testing.assert_allclose(emb @ arrays.species[0], 0.5 * (emb[:, 25] + emb[:, 27]), atol=1e-15)


def test_oxidation_states_are_ignored():
    plain = to_arrays(nacl())
    charged = to_arrays(Structure(CUBIC, ["Na+", "Cl-"], [[0, 0, 0], [0.5, 0.5, 0.5]]))
    np.testing.assert_array_equal(plain.species, charged.species)


def test_ase_atoms_input():
    s = nacl()
    atoms = Atoms(numbers=[11, 17], positions=s.cart_coords, cell=s.lattice.matrix, pbc=True)
    a, b = to_arrays(atoms), to_arrays(s)
    np.testing.assert_array_equal(a.species, b.species)
    np.testing.assert_allclose(a.positions, b.positions, atol=1e-12)
    np.testing.assert_allclose(a.lattice, b.lattice, atol=1e-12)
    np.testing.assert_array_equal(a.atomic_numbers, [11, 17])
    model = CrystalFramer(ModelConfig(num_layers=1)).double()
    model.calibrate([s])
    np.testing.assert_allclose(model.predict([atoms]), model.predict([s]), rtol=1e-12)


def test_positions_are_not_wrapped():
    s = Structure(CUBIC, ["Na", "Cl"], [[1.25, -0.5, 0.0], [0.5, 0.5, 2.5]])
    np.testing.assert_allclose(to_arrays(s).positions, s.cart_coords)
