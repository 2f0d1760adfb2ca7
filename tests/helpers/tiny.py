"""Small real structures and a tiny model configuration for fast training tests."""

from __future__ import annotations

import numpy as np
from pymatgen.core import Lattice, Structure

from crystalframer import ModelConfig


def tiny_config(**overrides) -> ModelConfig:
    base = dict(num_layers=1, model_dim=16, num_heads=2, ff_dim=32, head_hidden_dim=16, dist_bases=8,
                angle_bases=4)
    base.update(overrides)
    return ModelConfig(**base)


def labelled_structures(count: int, seed: int = 0) -> tuple[list[Structure], list[float]]:
    """Rattled rock-salt-like binaries; the label is a smooth function of lattice constant and species."""
    rng = np.random.default_rng(seed)
    pairs = [("Na", "Cl"), ("Mg", "O"), ("K", "Br"), ("Li", "F"), ("Ca", "S")]
    structures, labels = [], []
    for k in range(count):
        a_el, b_el = pairs[k % len(pairs)]
        a = rng.uniform(4.0, 5.6)
        s = Structure(Lattice.cubic(a), [a_el, b_el], [[0, 0, 0], [0.5, 0.5, 0.5]])
        s.perturb(0.05, min_distance=0.0)
        structures.append(s)
        labels.append(float(0.5 * a - 2.0 + 0.3 * (k % len(pairs))))
    return structures, labels


def write_energy_csv(path, structures, labels) -> None:
    """A CSV dataset (material_id, cif, energy) as the CLI's csv kind reads it."""
    import csv

    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["material_id", "cif", "energy"])
        for k, (s, y) in enumerate(zip(structures, labels)):
            writer.writerow([f"m{k}", s.to(fmt="cif"), y])
