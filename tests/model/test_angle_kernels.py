"""The compiled CPU kernels of the grid angle term compute what the PyTorch version computes (float64 and float32,
values and gradients, any thread split), on random inputs and through the whole model on real structures; and the
model falls back to the PyTorch version, with a warning, where no C compiler works."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from crystalframer import CrystalFramer, ModelConfig, collate
from crystalframer.examples import EXAMPLES, get_example
from crystalframer.model import angle_kernels
from crystalframer.model.features import AngleGrid, angle_centers, angle_term_grid, angle_width

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CC") or "cc") is None, reason="no C compiler here")


def test_the_kernels_build_here():
    assert angle_kernels.library() is not None, angle_kernels._failed
    assert angle_kernels.kernels_enabled(torch.zeros(1))
    assert not angle_kernels.kernels_enabled(torch.zeros(1, dtype=torch.float16))


def _inputs(dtype, seed=0, rows=60, heads=3, width=32, atoms=9, head_dim=5, bases=64):
    gen = torch.Generator().manual_seed(seed)
    weights = torch.rand(rows, heads, width, dtype=torch.float64, generator=gen)
    unit = torch.nn.functional.normalize(torch.randn(rows, width, 3, dtype=torch.float64, generator=gen), dim=-1)
    empty = torch.rand(rows, width, generator=gen) < 0.2  # empty slots and zero images: no direction, no weight
    weights[empty[:, None, :].expand(-1, heads, -1)] = 0.0
    unit[empty] = 0.0
    unit[0, 0] = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)  # cosines of exactly ±1: the grid's ends
    frames = torch.linalg.qr(torch.randn(atoms, heads, 3, 3, dtype=torch.float64, generator=gen))[0]
    frames[0, 0] = torch.eye(3, dtype=torch.float64)
    row_atom = torch.sort(torch.randint(0, atoms - 1, (rows,), generator=gen))[0]  # the last atom has no rows
    proj = torch.randn(3, heads, head_dim, bases, dtype=torch.float64, generator=gen) * 0.05
    return [t.to(dtype) for t in (weights, frames, unit)] + [row_atom, proj.to(dtype)]


def _term(weights, frames, unit, row_atom, proj, cos_abs, kernels, monkeypatch):
    monkeypatch.setenv("CRYSTALFRAMER_KERNELS", "1" if kernels else "0")
    bases = proj.shape[-1]
    centers = angle_centers(bases, cos_abs, weights.dtype, weights.device)
    tau = angle_width(bases, 4.0, cos_abs)
    grid = AngleGrid.for_basis(tau, cos_abs, 1e-7)
    w, p = weights.clone().requires_grad_(True), proj.clone().requires_grad_(True)
    out = angle_term_grid(w, frames, unit, row_atom, p, centers, tau, grid, cos_abs)
    grad_out = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    gw, gp = torch.autograd.grad(out, (w, p), grad_out)
    return out.detach(), gw * (unit != 0).any(-1)[:, None, :], gp  # slots without a direction get no gradient


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("cos_abs", [False, True])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_kernels_match_the_pytorch_version(dtype, rtol, cos_abs, threads, monkeypatch):
    inputs = _inputs(dtype)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        compiled = _term(*inputs, cos_abs, True, monkeypatch)
    finally:
        torch.set_num_threads(previous)
    reference = _term(*inputs, cos_abs, False, monkeypatch)
    for got, want in zip(compiled, reference):
        assert got.abs().max() > 0
        assert (got - want).abs().max() <= rtol * want.abs().max(), (got - want).abs().max()


def test_atom_ranges_cover_every_atom_once():
    bounds = np.array([0, 5, 5, 6, 20, 21, 21, 40])
    for parts in (1, 2, 3, 8, 20):
        ranges = angle_kernels._atom_ranges(bounds, parts)
        assert ranges[0][0] == 0 and ranges[-1][1] == len(bounds) - 1
        assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(ranges, ranges[1:]))
        assert len(ranges) <= parts


def _rattled(name: str, seed: int):
    """An example crystal with every atom moved ~0.05 Å: in the symmetric originals the weighted second moment is
    degenerate, so weighted-PCA axes turn on rounding-level differences (documented tie-breaking, not an error)."""
    s = get_example(name).copy()
    rng = np.random.default_rng(seed)
    for k in range(len(s)):
        s.translate_sites([k], rng.normal(0, 0.05, 3), frac_coords=False, to_unit_cell=False)
    return s


@pytest.mark.parametrize("method", ["max", "weighted_pca"])
def test_model_with_kernels_matches_model_without(method, monkeypatch):
    """Whole model, float64, training mode: predictions and every parameter gradient agree to rounding."""
    torch.manual_seed(0)
    model = CrystalFramer(ModelConfig.preset("default", frame_method=method)).double().train()
    batch = collate([model.make_graph(_rattled(name, k), target=[0.0]) for k, name in enumerate(list(EXAMPLES)[:4])])
    batch = batch.to("cpu", torch.float64)
    results = []
    for flag in ("1", "0"):
        monkeypatch.setenv("CRYSTALFRAMER_KERNELS", flag)
        torch.manual_seed(1)  # the same frame tie-breaking draws
        model.zero_grad()
        out = model(batch)
        out.sum().backward()
        results.append((out.detach().clone(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (out_k, grads_k), (out_t, grads_t) = results
    assert (out_k - out_t).abs().max() <= 1e-12 * out_t.abs().max()
    assert len(grads_k) == len(grads_t)
    for a, b in zip(grads_k, grads_t):
        assert (a - b).abs().max() <= 1e-10 * b.abs().max().clamp_min(1e-300)


def test_without_a_compiler_the_model_falls_back_and_says_so(tmp_path):
    script = (
        "import json, logging, torch\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "from crystalframer import CrystalFramer, ModelConfig\n"
        "from crystalframer.examples import get_example\n"
        "from crystalframer.model import angle_kernels\n"
        "torch.manual_seed(0)\n"
        "m = CrystalFramer(ModelConfig.preset('default', frame_method='max')).eval()\n"
        "y = m.predict([get_example('NaCl (rock salt)')])\n"
        "print(json.dumps({'enabled': angle_kernels.kernels_enabled(torch.zeros(1)), 'y': float(y[0][0])}))\n")
    env = {**os.environ, "CC": str(tmp_path / "no-such-compiler"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["enabled"] is False and np.isfinite(result["y"])
    assert "PyTorch version" in proc.stderr
