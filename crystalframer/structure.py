"""Crystal structures (pymatgen ``Structure`` or ASE ``Atoms``) → validated numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

NUM_SPECIES = 98
MIN_ATOM_DISTANCE = 0.1  # Å
DEFAULT_MAX_ATOMS = 2000
MIN_CELL_VOLUME_PER_ATOM = 1e-3  # Å^3, guards against (near-)singular lattices
MIN_PLANE_SPACING = 0.05  # Å
MAX_SITE_OCCUPANCY = 1.0 + 1e-4  # a site's occupancies sum to at most 1 (rounding in CIFs allowed)
# Cost per image-edge, measured on the 1,008-atom spinel benchmark (573,568 edges, 2-core CPU; docs/benchmarks.md):
# 0.30 predictions/s and a 6.4 GB peak when training. Used only to say what a big cell would cost.
SECONDS_PER_EDGE_PREDICT = 5.8e-6
BYTES_PER_EDGE_TRAIN = 11_200
ESTIMATE_CUTOFF = 10.9  # Å, the default sphere (5.5 σ_max)


def estimate_cost(num_atoms: int, volume: float, cutoff: float = ESTIMATE_CUTOFF) -> dict[str, float]:
    """Rough image-edge count, seconds per prediction and training memory (GB) for a cell, from its density.

    edges ≈ N · (N / V) · (4/3)π r_c³ (each atom sees every atom image within the sphere).
    """
    edges = num_atoms * (num_atoms / max(volume, 1e-9)) * (4.0 / 3.0) * np.pi * cutoff**3
    return {"edges": edges, "predict_s": edges * SECONDS_PER_EDGE_PREDICT,
            "train_gb": edges * BYTES_PER_EDGE_TRAIN / 1e9}


class StructureError(ValueError):
    """A structure that the model cannot take, with a message that says why."""


@dataclass(frozen=True)
class CrystalArrays:
    """One crystal as plain arrays.

    species: (N, 98) occupancy-weighted one-hot, index Z-1.
    positions: (N, 3) Cartesian coordinates in Å, unaltered (not wrapped).
    lattice: (3, 3) lattice vectors as rows, Å.
    atomic_numbers: (N,) the majority species' Z of each site (for display).
    """

    species: np.ndarray
    positions: np.ndarray
    lattice: np.ndarray
    atomic_numbers: np.ndarray

    @property
    def num_atoms(self) -> int:
        return int(self.positions.shape[0])


def _from_pymatgen(structure: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from pymatgen.core.periodic_table import DummySpecies

    n = len(structure)
    species = np.zeros((n, NUM_SPECIES))
    numbers = np.zeros(n, dtype=np.int64)
    for idx, site in enumerate(structure):
        best = (-1.0, 0)
        for sp, occu in site.species.items():
            if isinstance(sp, DummySpecies) or not hasattr(sp, "Z"):
                raise StructureError(f"site {idx} has a dummy or unknown species {sp!s}; only real elements are supported")
            z = int(sp.Z)
            if z < 1 or z > NUM_SPECIES:
                raise StructureError(f"site {idx} is {sp!s} (Z={z}); the model supports Z = 1..{NUM_SPECIES}")
            if not np.isfinite(occu) or occu <= 0:
                raise StructureError(f"site {idx} has an invalid occupancy {occu}")
            species[idx, z - 1] += occu
            best = max(best, (float(occu), z))
        total = float(species[idx].sum())
        if total > MAX_SITE_OCCUPANCY:
            raise StructureError(f"site {idx} has occupancies summing to {total:.4g} (> 1): not a valid "
                                 "disordered site")
        numbers[idx] = best[1]
    positions = np.array(structure.cart_coords, dtype=np.float64).reshape(n, 3)
    lattice = np.array(structure.lattice.matrix, dtype=np.float64)
    return species, positions, lattice, numbers


def _from_ase(atoms: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    numbers = np.asarray(atoms.get_atomic_numbers(), dtype=np.int64)
    n = len(numbers)
    for idx, z in enumerate(numbers):
        if z < 1 or z > NUM_SPECIES:
            raise StructureError(f"site {idx} has atomic number {z}; the model supports Z = 1..{NUM_SPECIES}")
    if not all(atoms.pbc):
        raise StructureError("ASE Atoms must be periodic in all three directions (pbc=True)")
    species = np.zeros((n, NUM_SPECIES))
    species[np.arange(n), numbers - 1] = 1.0
    positions = np.array(atoms.get_positions(), dtype=np.float64).reshape(n, 3)
    lattice = np.array(atoms.cell.array, dtype=np.float64)
    return species, positions, lattice, numbers


def _is_ase_atoms(obj: Any) -> bool:
    try:
        from ase import Atoms
    except ImportError:  # pragma: no cover - ase is a dependency
        return False
    return isinstance(obj, Atoms)


def to_arrays(structure: Any, max_atoms: int = DEFAULT_MAX_ATOMS) -> CrystalArrays:
    """Convert and validate. Raises :class:`StructureError` with a clear message on bad input."""
    if _is_ase_atoms(structure):  # first: pymatgen's MSONAtoms is an ASE Atoms living in a pymatgen module
        species, positions, lattice, numbers = _from_ase(structure)
    elif hasattr(structure, "lattice") and hasattr(structure, "sites"):
        species, positions, lattice, numbers = _from_pymatgen(structure)
    elif isinstance(structure, CrystalArrays):
        species, positions, lattice, numbers = (
            structure.species, structure.positions, structure.lattice, structure.atomic_numbers)
    else:
        raise StructureError(
            f"expected a pymatgen Structure or an ASE Atoms object, got {type(structure).__name__} "
            "(a periodic crystal with a lattice is required)")
    arrays = CrystalArrays(species=species, positions=positions, lattice=lattice, atomic_numbers=numbers)
    validate(arrays, max_atoms=max_atoms)
    return arrays


def validate(arrays: CrystalArrays, max_atoms: int = DEFAULT_MAX_ATOMS) -> None:
    """Check a crystal; raise :class:`StructureError` naming the first problem found."""
    n = arrays.num_atoms
    if n == 0:
        raise StructureError("the structure is empty (no sites)")
    if n > max_atoms:
        volume = abs(float(np.linalg.det(arrays.lattice))) if arrays.lattice.shape == (3, 3) else 0.0
        cost = estimate_cost(n, volume) if np.isfinite(volume) and volume > 0 else None
        estimate = "" if cost is None else (
            f" (about {cost['edges']:.3g} image-edges: ~{cost['predict_s']:.0f} s per prediction and "
            f"~{cost['train_gb']:.0f} GB to train on a 2-core CPU)")
        raise StructureError(
            f"the structure has {n} sites, more than the limit of {max_atoms}{estimate}; raise max_atoms "
            "(ModelConfig.max_atoms) if you have the time and memory")
    if not np.all(np.isfinite(arrays.positions)):
        raise StructureError("atomic coordinates contain NaN or infinite values")
    lattice = arrays.lattice
    if lattice.shape != (3, 3) or not np.all(np.isfinite(lattice)):
        raise StructureError("the lattice must be a finite 3x3 matrix")
    volume = abs(float(np.linalg.det(lattice)))
    if volume < MIN_CELL_VOLUME_PER_ATOM * n or not np.isfinite(volume):
        raise StructureError(f"the lattice is singular or degenerate (cell volume {volume:.3g} Å^3)")
    spacings = plane_spacings(lattice)
    if spacings.min() < MIN_PLANE_SPACING:
        raise StructureError(
            f"the lattice is degenerate: a lattice-plane spacing is {spacings.min():.3g} Å (< {MIN_PLANE_SPACING} Å)")
    dmin, (i, j) = min_image_distance(arrays.positions, lattice)
    if dmin < MIN_ATOM_DISTANCE:
        raise StructureError(
            f"atoms {i} and {j} are {dmin:.3g} Å apart (closer than {MIN_ATOM_DISTANCE} Å): overlapping atoms")


def plane_spacings(lattice: np.ndarray) -> np.ndarray:
    """(3,) spacing d_k of the lattice planes spanned by the two other lattice vectors (Å)."""
    recip = np.linalg.inv(lattice).T  # rows b_k / 2π
    return 1.0 / np.linalg.norm(recip, axis=1)


def min_image_distance(positions: np.ndarray, lattice: np.ndarray) -> tuple[float, tuple[int, int]]:
    """Smallest distance between two distinct atoms (any periodic images), plus that pair.

    Only distances below ``MIN_ATOM_DISTANCE`` matter, so a 3x3x3 image search on wrapped fractional
    coordinates is enough for cells whose plane spacings exceed that distance. Chunked over atoms.
    """
    n = positions.shape[0]
    if n < 2:
        return float("inf"), (0, 0)
    frac = positions @ np.linalg.inv(lattice)
    frac = frac - np.floor(frac)
    wrapped = frac @ lattice
    shifts = np.array(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1], indexing="ij")).reshape(3, -1).T @ lattice
    best, pair = float("inf"), (0, 0)
    chunk = max(1, 200_000 // (n * 27))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        d = wrapped[None, :, None, :] + shifts[None, None, :, :] - wrapped[start:stop, None, None, :]
        dist = np.sqrt((d**2).sum(-1)).min(-1)  # (chunk, n)
        rows = np.arange(start, stop)
        dist[rows - start, rows] = np.inf
        k = int(np.argmin(dist))
        value = float(dist.flat[k])
        if value < best:
            best, pair = value, (start + k // n, k % n)
    return best, pair
