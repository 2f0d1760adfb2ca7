"""Throughput/memory table for none, max and weighted-PCA models (default and light presets).

Usage: python bench/throughput.py [--structures 256] [--max-sites 20] [--batch-size 32] [--device auto]
Same as `crystalframer bench`. Record results in docs/benchmarks.md with the machine line it prints.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crystalframer.benchmark import run_cli  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(run_cli())
