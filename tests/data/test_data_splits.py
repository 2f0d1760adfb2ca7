"""Splits as id files (crystalframer.data.splits)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from crystalframer.data import (
    DataError, DataWarning, apply_split, load_split, random_split, read_ids, save_split, split_from_mapping,
    write_ids,
)


def test_random_split_is_deterministic_and_partitions():
    ids = [f"id{k}" for k in range(103)]
    split = random_split(ids, seed=7)
    assert [len(split[n]) for n in ("train", "val", "test")] == [83, 10, 10]
    assert sorted(split["train"] + split["val"] + split["test"]) == sorted(ids)
    assert split == random_split(ids, seed=7)
    assert split != random_split(ids, seed=8)
    two = random_split(ids, fractions=(0.9, 0.1))
    assert set(two) == {"train", "val"} and len(two["val"]) == 10 and len(two["train"]) == 93
    partial = random_split(ids, fractions=(0.5, 0.1, 0.1))
    assert len(partial["train"]) == 52  # fractions summing below 1 leave the rest out
    with pytest.raises(ValueError, match="fractions"):
        random_split(ids, fractions=(0.8, 0.3))
    with pytest.raises(DataError, match="duplicate id 'id1'"):
        random_split(ids + ["id1"])


@pytest.mark.parametrize("name", ["split.json", "split_dir"])
def test_split_round_trip(tmp_path, name):
    split = random_split([f"mp-{k}" for k in range(20)], seed=1)
    path = save_split(split, tmp_path / name)
    assert load_split(path) == split
    if name.endswith(".json"):
        assert json.loads(path.read_text()) == split
    else:
        assert read_ids(path / "val.txt") == split["val"]


def test_id_list_files(tmp_path):
    path = tmp_path / "test.txt"
    write_ids(["a", "b"], path)
    path.write_text(path.read_text() + "\n# comment\n  c  \n")
    assert read_ids(path) == ["a", "b", "c"]
    assert load_split(path) == {"test": ["a", "b", "c"]}


def test_bad_split_files(tmp_path):
    leak = tmp_path / "leak.json"
    leak.write_text(json.dumps({"train": ["a", "b"], "test": ["b"]}))
    with pytest.raises(DataError, match="'b' is in both 'train' and 'test'"):
        load_split(leak)
    bad = tmp_path / "bad.json"
    bad.write_text('["a", "b"]')
    with pytest.raises(DataError, match="JSON object of id lists"):
        load_split(bad)
    bad.write_text("{oops")
    with pytest.raises(DataError, match="malformed JSON"):
        load_split(bad)
    with pytest.raises(DataError, match="not found"):
        load_split(tmp_path / "none.json")
    with pytest.raises(DataError, match="no <split>.txt"):
        load_split(tmp_path)


def test_split_from_mapping_ignores_extra():
    mapping = {"mp-1": "train", "mp-2": "val", "mp-3": "extra", "mp-4": "train"}
    assert split_from_mapping(mapping) == {"train": ["mp-1", "mp-4"], "val": ["mp-2"]}


def test_apply_split_orders_and_reports_missing():
    items = [SimpleNamespace(ident=f"x{k}") for k in range(5)]
    split = {"train": ["x3", "x0", "x1"], "val": ["x4", "gone"]}
    with pytest.warns(DataWarning, match="1 of 2 ids not in the data"):
        parts = apply_split(items, split)
    assert [i.ident for i in parts["train"]] == ["x3", "x0", "x1"] and [i.ident for i in parts["val"]] == ["x4"]
    with pytest.raises(DataError, match="not in the data"):
        apply_split(items, split, strict=True)
