"""scripts/make_card.py sorts the compared runs: identical budget, same recipe with another epoch count, or other."""

from __future__ import annotations

from scripts.make_card import same_budget


def _run(epochs: int, max_sites: int | None = None, lr: float = 5e-4) -> dict:
    return {"data": {"path": "mp.csv.gz", "max_sites": max_sites, "n_train": 10, "n_val": 2, "targets": ["e"]},
            "train_config": {"epochs": epochs, "lr": lr, "batch_size": 32}}


def test_same_budget_needs_identical_data_and_recipe():
    assert same_budget(_run(12), _run(12))
    assert not same_budget(_run(12), _run(10))
    assert not same_budget(_run(12), _run(12, max_sites=8))
    assert not same_budget(_run(12), _run(12, lr=1e-3))


def test_epoch_count_can_be_ignored_but_nothing_else():
    assert same_budget(_run(12), _run(10), ignore=("epochs",))
    assert not same_budget(_run(12), _run(10, lr=1e-3), ignore=("epochs",))
    assert not same_budget(_run(12), _run(10, max_sites=8), ignore=("epochs",))
