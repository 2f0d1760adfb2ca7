"""Batches bounded by an atom budget (cost grows with atoms × neighbours, not with the number of crystals).

:class:`AtomBudgetBatchSampler` is a ``torch.utils.data.Sampler`` of index lists, so it can drive a ``DataLoader``
(``batch_sampler=...``, ``collate_fn=crystalframer.graph.collate``) or :func:`iterate_batches` directly.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from crystalframer.graph import CrystalGraph, GraphBatch, collate


class AtomBudgetBatchSampler(Sampler[list[int]]):
    """Greedy batches whose total atom count is ≤ ``max_atoms_per_batch`` (and ≤ ``max_structures`` crystals).

    A crystal larger than the budget forms a batch on its own. The order is a permutation drawn from
    ``(seed, epoch)`` when ``shuffle`` (call :meth:`set_epoch` every epoch), else the input order, so batches are
    reproducible. ``drop_last`` drops the final batch of each epoch when it is partly filled (fewer than
    ``max_structures`` crystals) and is not the only one.

    Distributed (``num_replicas`` > 1): every rank builds the same global batch list and takes every
    ``num_replicas``-th batch from ``rank``, so ranks get disjoint batches of equal count. The count is made
    divisible by ``num_replicas`` by dropping trailing batches (``drop_last``) or by splitting the largest batches
    in two (no crystal lost or repeated); only if there are fewer splittable batches than needed are the first
    batches repeated, as ``DistributedSampler`` does.
    """

    def __init__(self, num_atoms: Sequence[int], max_atoms_per_batch: int, max_structures: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False, num_replicas: int = 1,
                 rank: int = 0) -> None:
        counts = np.asarray(num_atoms, dtype=np.int64).reshape(-1)
        if counts.size and counts.min() < 1:
            raise ValueError("every structure needs at least one atom")
        if max_atoms_per_batch < 1:
            raise ValueError(f"max_atoms_per_batch must be ≥ 1, got {max_atoms_per_batch}")
        if max_structures is not None and max_structures < 1:
            raise ValueError(f"max_structures must be ≥ 1 or None, got {max_structures}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need 0 ≤ rank < num_replicas, got rank={rank}, num_replicas={num_replicas}")
        self.num_atoms = counts
        self.max_atoms_per_batch = int(max_atoms_per_batch)
        self.max_structures = max_structures
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch`` (shuffle only)."""
        self.epoch = int(epoch)

    def order(self) -> np.ndarray:
        """The visiting order of the current epoch."""
        n = len(self.num_atoms)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, self.epoch]).permutation(n)

    def global_batches(self) -> list[list[int]]:
        """All batches of the epoch before they are dealt to ranks."""
        batches = pack_by_budget(self.order(), self.num_atoms, self.max_atoms_per_batch, self.max_structures)
        if self.drop_last and len(batches) > 1 and (self.max_structures is None
                                                     or len(batches[-1]) < self.max_structures):
            batches = batches[:-1]
        if self.num_replicas > 1:
            batches = self._balance(batches)
        return batches

    def _balance(self, batches: list[list[int]]) -> list[list[int]]:
        if self.drop_last:
            return batches[:len(batches) - len(batches) % self.num_replicas]
        batches = split_until_divisible(batches, self.num_atoms, self.num_replicas)
        short = -len(batches) % self.num_replicas
        return batches + [list(batches[k % len(batches)]) for k in range(short)] if batches else batches

    def batches(self) -> list[list[int]]:
        """This rank's batches for the current epoch."""
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self.global_batches()[self.rank::self.num_replicas])
        return self._cache[1]

    def __iter__(self) -> Iterator[list[int]]:
        return iter([list(b) for b in self.batches()])

    def __len__(self) -> int:
        return len(self.batches())


def pack_by_budget(order: Sequence[int], num_atoms: np.ndarray, budget: int,
                   max_structures: int | None) -> list[list[int]]:
    """Greedy packing in ``order``: start a new batch when the next crystal would exceed a limit."""
    batches: list[list[int]] = []
    current: list[int] = []
    total = 0
    for idx in order:
        n = int(num_atoms[idx])
        full = max_structures is not None and len(current) >= max_structures
        if current and (total + n > budget or full):
            batches.append(current)
            current, total = [], 0
        current.append(int(idx))
        total += n
    if current:
        batches.append(current)
    return batches


def split_until_divisible(batches: list[list[int]], num_atoms: np.ndarray, parts: int) -> list[list[int]]:
    """Split the largest multi-crystal batches in two (by atoms) until the batch count is divisible by ``parts``."""
    batches = [list(b) for b in batches]
    while len(batches) % parts:
        sizes = [int(num_atoms[b].sum()) if len(b) > 1 else -1 for b in batches]
        k = int(np.argmax(sizes)) if sizes else 0
        if not batches or sizes[k] < 0:
            break
        b = batches[k]
        cum = np.cumsum(num_atoms[b])
        cut = int(np.clip(np.searchsorted(cum, cum[-1] / 2), 1, len(b) - 1))
        batches[k:k + 1] = [b[:cut], b[cut:]]
    return batches


def iterate_batches(graphs: Sequence[CrystalGraph], sampler: Sampler[list[int]] | Sequence[list[int]],
                    dtype: torch.dtype = torch.float32) -> Iterator[GraphBatch]:
    """Collate ``graphs`` batch by batch as the sampler dictates."""
    for indices in sampler:
        yield collate([graphs[i] for i in indices], dtype=dtype)


def num_atoms_of(graphs: Sequence[CrystalGraph]) -> list[int]:
    """Atom counts to build a sampler from."""
    return [g.num_atoms for g in graphs]


def inference_batches(num_atoms: Sequence[int], batch_size: int,
                      max_atoms_per_batch: int | None = None) -> list[list[int]]:
    """In-order batches of ≤ ``batch_size`` crystals (and ≤ ``max_atoms_per_batch`` atoms, if given).

    The batches of evaluation, prediction and benchmarks: the same packing as training, without shuffling.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    if len(num_atoms) == 0:
        return []
    return AtomBudgetBatchSampler(num_atoms, max_atoms_per_batch or sys.maxsize, max_structures=batch_size,
                                  shuffle=False).batches()
