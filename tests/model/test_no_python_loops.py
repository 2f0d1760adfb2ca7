"""The forward pass has no Python-level loop over atoms, edges or images.

Every line executed inside the ``crystalframer`` package during a forward pass is counted with ``sys.settrace``.
Growing the crystal 8x (a 2x2x2 supercell: 8x the atoms and image-edges) must not change any line's count.
The structures are small enough that the row-chunked angle features (features.py, grid path) stay one chunk: the
test checks this precondition against ``features._GRID_CHUNK_ITEMS``.
"""

from __future__ import annotations

import collections
import os
import sys

import pytest
import torch


import crystalframer
import reference_model as ref
from crystalframer import CrystalFramer, ModelConfig, build_graph, collate
from crystalframer.model import features
from crystalframer.model.geometry import ROW_WIDTH
from crystalframer.model.frames import FrameSampling
from crystalframer.neighbors import neighbor_list

PKG_DIR = os.path.dirname(os.path.abspath(crystalframer.__file__)) + os.sep


def count_lines(fn) -> collections.Counter:
    """(file, line) → number of times executed inside the crystalframer package while running ``fn``."""
    counts: collections.Counter = collections.Counter()

    def local(frame, event, arg):
        if event == "line":
            counts[(os.path.basename(frame.f_code.co_filename), frame.f_lineno)] += 1
        return local

    def global_tracer(frame, event, arg):
        if frame.f_code.co_filename.startswith(PKG_DIR):
            return local
        return None

    previous = sys.gettrace()
    sys.settrace(global_tracer)
    try:
        fn()
    finally:
        sys.settrace(previous)
    return counts


def _diff(small: collections.Counter, large: collections.Counter) -> list[str]:
    return [f"{f}:{line} ran {small[(f, line)]}x -> {large[(f, line)]}x"
            for (f, line) in sorted(set(small) | set(large)) if small[(f, line)] != large[(f, line)]]


def small_cell():
    """A rattled 2-atom triclinic cell (~45 Å^3)."""
    from pymatgen.core import Lattice, Structure

    lat = Lattice.from_parameters(3.3, 3.6, 4.0, 82.0, 97.0, 103.0)
    return ref.rattle(Structure(lat, ["Zn", "S"], [[0, 0, 0], [0.45, 0.55, 0.5]]), 0.05, 0)


STRUCTURES = {"small": small_cell(), "large": small_cell() * (2, 2, 2)}
MODES = ("eval", "train", "sample")


def config(method: str) -> ModelConfig:
    # One block: every block runs the same code, so one is enough to see a loop (and keeps tracing cheap).
    return ModelConfig.light(frame_method=method, num_layers=1)


@pytest.fixture(scope="module")
def batches():
    cfg = config("max")
    graphs = {k: build_graph(s, cfg.cutoff) for k, s in STRUCTURES.items()}
    assert graphs["large"].num_atoms == 8 * graphs["small"].num_atoms
    assert graphs["large"].num_edges == 8 * graphs["small"].num_edges
    # Precondition: the angle features (features._GridAngleTerm, _GRID_CHUNK_ITEMS (slot, head, axis) items per
    # chunk of rows) are one chunk even for the large structure.
    rows = -(-graphs["large"].num_edges // ROW_WIDTH) + graphs["large"].num_atoms
    assert rows * cfg.num_heads * 3 * ROW_WIDTH <= features._GRID_CHUNK_ITEMS, "test structures too large for one chunk"
    return {k: collate([g], dtype=torch.float64) for k, g in graphs.items()}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", crystalframer.FRAME_METHODS)
def test_forward_line_counts_do_not_grow_with_size(batches, method, mode):
    model = CrystalFramer(config(method)).double()
    model.calibrate([STRUCTURES["small"]])

    def run(batch):
        def call():
            if mode == "train":
                model.train()
                out = model(batch, FrameSampling(mode="train", generator=torch.Generator().manual_seed(0)))
                out.sum().backward()
            else:
                model.eval()
                sampling = None if mode == "eval" else FrameSampling("sample", torch.Generator().manual_seed(0))
                with torch.no_grad():
                    model(batch, sampling)
        return call

    small = count_lines(run(batches["small"]))
    large = count_lines(run(batches["large"]))
    files = {f for f, _ in small}
    assert {"model.py", "attention.py", "ops.py"} <= files, files
    if method != "none":
        assert "frames.py" in files
    assert sum(small.values()) > 100
    diff = _diff(small, large)
    assert not diff, "Python lines whose count grows with the number of atoms/edges:\n" + "\n".join(diff)


def test_neighbor_search_and_collate_have_no_per_atom_loop():
    small_s, large_s = STRUCTURES["small"], STRUCTURES["large"]
    cutoff = config("max").cutoff
    arrays = {k: crystalframer.to_arrays(s) for k, s in STRUCTURES.items()}
    graphs = {k: build_graph(s, cutoff) for k, s in (("small", small_s), ("large", large_s))}

    def run(key):
        def call():
            a = arrays[key]
            neighbor_list(a.positions, a.lattice, cutoff)
            collate([graphs[key]] * 3)
        return call

    diff = _diff(count_lines(run("small")), count_lines(run("large")))
    assert not diff, "\n".join(diff)


def test_line_counter_detects_a_loop(batches, monkeypatch):
    """The detector works: forcing the angle features into several row chunks makes a line count grow (the chunks
    are the PyTorch version's; the compiled CPU kernels have none)."""
    monkeypatch.setenv("CRYSTALFRAMER_KERNELS", "0")
    monkeypatch.setattr(features, "_GRID_CHUNK_ITEMS", 1)
    model = CrystalFramer(config("max")).double()
    model.calibrate([STRUCTURES["small"]])
    model.eval()

    def run(batch):
        def call():
            with torch.no_grad():
                model(batch)
        return call

    assert _diff(count_lines(run(batches["small"])), count_lines(run(batches["large"])))
