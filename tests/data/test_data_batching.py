"""Atom-budget batching (crystalframer.data.batching)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from torch.utils.data import DataLoader

from crystalframer.data import AtomBudgetBatchSampler, build_graphs, iterate_batches, num_atoms_of
from crystalframer.data.records import StructureRecord
from crystalframer.graph import collate

SIZES = np.random.default_rng(0).integers(1, 60, size=200).tolist() + [150, 1]


def flatten(batches):
    return sorted(i for b in batches for i in b)


@pytest.mark.parametrize("max_structures", [None, 5])
def test_batches_respect_the_budget_and_cover_everything(max_structures):
    sampler = AtomBudgetBatchSampler(SIZES, max_atoms_per_batch=128, max_structures=max_structures, seed=3)
    batches = list(sampler)
    assert flatten(batches) == list(range(len(SIZES)))
    assert len(batches) == len(sampler)
    for b in batches:
        total = sum(SIZES[i] for i in b)
        assert total <= 128 or len(b) == 1  # the 150-atom crystal goes alone
        assert max_structures is None or len(b) <= max_structures
    assert [150] in [[SIZES[i] for i in b] for b in batches]


def test_shuffle_is_deterministic_per_epoch():
    a = AtomBudgetBatchSampler(SIZES, 100, seed=1)
    b = AtomBudgetBatchSampler(SIZES, 100, seed=1)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    a.set_epoch(0)
    assert list(a) == first
    ordered = list(AtomBudgetBatchSampler([3, 3, 3, 3], 6, shuffle=False))
    assert ordered == [[0, 1], [2, 3]]


def test_drop_last():
    assert list(AtomBudgetBatchSampler([3, 3, 3], 6, shuffle=False, drop_last=True)) == [[0, 1]]
    assert list(AtomBudgetBatchSampler([3, 3, 3], 6, shuffle=False)) == [[0, 1], [2]]


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("replicas", [2, 3, 4])
def test_distributed_ranks_are_disjoint_and_equal(replicas, drop_last):
    samplers = [AtomBudgetBatchSampler(SIZES, 128, seed=5, num_replicas=replicas, rank=r, drop_last=drop_last)
                for r in range(replicas)]
    for s in samplers:
        s.set_epoch(2)
    per_rank = [list(s) for s in samplers]
    assert len({len(b) for b in per_rank}) == 1
    seen = [i for batches in per_rank for b in batches for i in b]
    assert len(seen) == len(set(seen))  # disjoint
    if not drop_last:
        assert sorted(seen) == list(range(len(SIZES)))  # nothing lost either
    for batches in per_rank:
        assert all(sum(SIZES[i] for i in b) <= 128 or len(b) == 1 for b in batches)


def test_distributed_tiny_dataset_pads_like_distributed_sampler():
    per_rank = [list(AtomBudgetBatchSampler([5, 5, 5], 4, num_replicas=2, rank=r, shuffle=False)) for r in range(2)]
    assert per_rank == [[[0], [2]], [[1], [0]]]


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_atoms_per_batch"):
        AtomBudgetBatchSampler([1], 0)
    with pytest.raises(ValueError, match="rank"):
        AtomBudgetBatchSampler([1], 5, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="at least one atom"):
        AtomBudgetBatchSampler([0, 1], 5)


def test_iterate_batches_and_dataloader(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYSTALFRAMER_CACHE", str(tmp_path))
    recs = [StructureRecord(f"c{a}", Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
                            {"y": a}) for a in (4.0, 4.1, 4.2, 4.3, 4.4)]
    graphs = build_graphs(recs, 5.0, ["y"], progress=False, cache=False)
    sampler = AtomBudgetBatchSampler(num_atoms_of(graphs), 4, shuffle=False)
    batches = list(iterate_batches(graphs, sampler, dtype=torch.float64))
    assert [b.idents for b in batches] == [["c4.0", "c4.1"], ["c4.2", "c4.3"], ["c4.4"]]
    assert batches[0].positions.dtype == torch.float64 and batches[0].target.shape == (2, 1)
    loader = DataLoader(graphs, batch_sampler=sampler, collate_fn=collate)
    assert [b.idents for b in loader] == [b.idents for b in batches]


def test_drop_last_keeps_a_full_or_only_batch():
    assert list(AtomBudgetBatchSampler([1, 1, 1, 1], 100, max_structures=2, shuffle=False, drop_last=True)) == [
        [0, 1], [2, 3]]
    assert list(AtomBudgetBatchSampler([1, 1, 1], 100, max_structures=5, shuffle=False, drop_last=True)) == [[0, 1, 2]]


def test_inference_batches_are_in_order_and_bounded():
    from crystalframer.data.batching import inference_batches

    sizes = [2, 5, 3, 8, 1, 4, 6, 2, 2, 7]
    batches = inference_batches(sizes, batch_size=3, max_atoms_per_batch=10)
    assert sum(batches, []) == list(range(10))
    assert all(len(b) <= 3 and (sum(sizes[i] for i in b) <= 10 or len(b) == 1) for b in batches)
    assert inference_batches(sizes, batch_size=4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert inference_batches([], batch_size=4) == []
