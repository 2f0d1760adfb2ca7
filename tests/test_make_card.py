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


def test_the_stop_cap_is_not_part_of_the_recipe_and_differences_are_named():
    from scripts.make_card import SCHEDULE_KEYS, recipe_differences

    a, b = _run(12), _run(12)
    a["train_config"]["time_budget_minutes"] = 125
    b["train_config"].update(time_budget_minutes=135, lr_schedule="cosine", swa_epochs=2)
    assert recipe_differences(a, b) == ["lr_schedule", "swa_epochs"]
    assert not same_budget(a, b) and same_budget(a, b, SCHEDULE_KEYS)
    assert not same_budget(a, _run(12, lr=1e-3), SCHEDULE_KEYS)


def test_card_names_what_differs_for_rescheduled_runs(tmp_path):
    from scripts.make_card import write_card

    def summary(name, target="megnet_e_form", unit="eV/atom", **tc):
        run = _run(12)
        run["train_config"].update(tc)
        return run | {"target": target, "unit": unit, "run": name, "frame_method": "max", "angle_bases": 64, "params": 1, "selected": "swa",
                      "val_mae": 0.05, "val_rmse": 0.1, "val_r2": 0.9, "val_mae_best": 0.06, "val_mae_swa": 0.05,
                      "epochs": 12, "steps": 100, "wall_s": 60.0, "command": "c", "code_version": "v", "rows": [],
                      "by_size": []}

    write_card(summary("new", lr_schedule="cosine"), [summary("old", lr_schedule="inverse_sqrt")], tmp_path, "new")
    card = (tmp_path / "card.md").read_text()
    assert "different epochs or learning-rate schedule" in card
    rows = [line for line in card.splitlines() if line.startswith("| old ")]
    assert len(rows) == 1 and rows[0].endswith("| lr_schedule inverse_sqrt |")
    assert "(this run)" in card and "cosine schedule" in card

    write_card(summary("gap", target="megnet_gappbe", unit="eV"), [], tmp_path, "mp-gap-max")
    card = (tmp_path / "card.md").read_text()
    assert "MP PBE band gap (`megnet_gappbe`, eV)" in card
    assert "eV/atom" not in card.replace("|E_form| > 5 eV/atom", "")
    assert "max frames 0.185" in card
