"""Validation MAE broken down by cell size (the shipped cards' table): groups, labels, counts and values."""

from __future__ import annotations

import numpy as np

from crystalframer.train.trainer import CELL_SIZE_BINS, metrics_by_cell_size, regression_metrics


def test_groups_cover_every_size_once_with_the_cards_labels():
    sizes = np.array([1, 8, 9, 20, 21, 40, 41, 200])
    true = np.zeros((8, 1))
    pred = np.arange(1.0, 9.0)[:, None]  # error = index + 1
    groups = metrics_by_cell_size(sizes, true, pred)
    assert [g["sites"] for g in groups] == ["≤ 8", "9–20", "21–40", "> 40"]
    assert [g["count"][0] for g in groups] == [2, 2, 2, 2]
    assert [g["mae"][0] for g in groups] == [1.5, 3.5, 5.5, 7.5]
    assert sum(g["count"][0] for g in groups) == len(sizes)
    assert CELL_SIZE_BINS[0][0] == 1 and CELL_SIZE_BINS[-1][1] is None


def test_empty_groups_are_left_out_and_nan_labels_are_not_counted():
    sizes = np.array([4, 5, 30])
    true = np.array([[1.0], [np.nan], [2.0]])
    pred = np.array([[1.5], [9.0], [2.25]])
    groups = metrics_by_cell_size(sizes, true, pred)
    assert [g["sites"] for g in groups] == ["≤ 8", "21–40"]
    assert groups[0]["count"][0] == 1 and groups[0]["mae"][0] == 0.5
    assert groups[1]["mae"][0] == regression_metrics(true[2:], pred[2:])["mae"][0] == 0.25
