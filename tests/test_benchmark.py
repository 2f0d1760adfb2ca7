"""`crystalframer bench` (and `python -m bench.throughput`) runs end to end (tiny settings) and reports the tables and both speed bars."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crystalframer import benchmark
from crystalframer import ModelConfig
from crystalframer.cli.main import main


def test_bench_reports_groups_and_bars(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "--configs", "none", "max", "--groups", "small", "--structures", "4", "--batch-size", "2",
                 "--repeats", "1", "--threads", "1", "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "### small" in text and "| none |" in text and "| max |" in text
    assert "max cost / none (≤ 1.5×)" in text and "none vs 432 / 902" in text
    assert "max cost / none (≤ 1.5×), interleaved runs" in text  # the bar comes from the interleaved run
    raw = json.loads(out.read_text())
    rows = raw["groups"]["small"]
    paired = raw["paired"]["small"]
    assert set(paired["ratios"]) == {"max"} and len(paired["rounds"]) == 1
    assert all(paired["ratios"]["max"][k] > 0 for k in ("train", "infer"))
    assert "train cost vs none (interleaved)" in text
    assert [r["name"] for r in rows] == ["none", "max"]
    assert all(r["train_per_s"] > 0 and r["infer_per_s"] > 0 and r["structures"] == 4 for r in rows)
    assert rows[0]["cutoff"] == rows[1]["cutoff"] == pytest.approx(ModelConfig().cutoff)  # same sphere for both


def test_bar_table_flags_a_missed_bar():
    rows = [{"name": "none", "train_per_s": 500.0, "infer_per_s": 1000.0},
            {"name": "max", "train_per_s": 100.0, "infer_per_s": 900.0}]
    bars = benchmark.format_bars(rows)
    assert "| max cost / none (≤ 1.5×) | 5.00× | 1.11× | no |" in bars
    assert "| yes |" in bars  # none is above the reference throughput


def test_bar_table_uses_interleaved_ratios_when_given():
    rows = [{"name": "none", "train_per_s": 500.0, "infer_per_s": 1000.0},
            {"name": "max", "train_per_s": 100.0, "infer_per_s": 900.0}]
    bars = benchmark.format_bars(rows, {"max": {"train": 1.4, "infer": 1.2}})
    assert "| max cost / none (≤ 1.5×), interleaved runs | 1.40× | 1.20× | yes |" in bars


def test_large_cell_is_the_thousand_atom_spinel():
    cell = benchmark.large_cell()
    assert len(cell) == 1008 and cell.composition.reduced_formula == "MgAl2O4"


def test_repository_script_is_the_same_benchmark():
    """``python -m bench.throughput`` (the repository's script) is a thin entry point to the library's benchmark."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-m", "bench.throughput", "--help"], capture_output=True, text=True,
                         cwd=root, check=True).stdout
    assert out.startswith("usage: python -m bench.throughput") and "--cutoff-sigmas" in out
