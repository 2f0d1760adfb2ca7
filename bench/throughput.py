"""``python -m bench.throughput``: the throughput and memory benchmark, kept here for the repository's benchmark
scripts; the implementation is :mod:`crystalframer.benchmark` (also ``crystalframer bench``)."""

from __future__ import annotations

from crystalframer.benchmark import run_cli

if __name__ == "__main__":
    raise SystemExit(run_cli(prog="python -m bench.throughput"))
