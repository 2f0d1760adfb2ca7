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
from crystalframer.model import kernels
from crystalframer.model.features import AngleGrid, angle_centers, angle_term_grid, angle_width

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CC") or "cc") is None, reason="no C compiler here")


def test_the_kernels_build_here():
    assert kernels.library() is not None, kernels._failed
    assert kernels.kernels_enabled(torch.zeros(1))
    assert not kernels.kernels_enabled(torch.zeros(1, dtype=torch.float16))


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


@pytest.mark.parametrize("frames_mode", ["distinct", "shared", "one"])
@pytest.mark.parametrize("with_ends", [False, True])
def test_angle_kernel_paths_match_the_pytorch_version(frames_mode, with_ends, monkeypatch):
    """Eight heads (the kernel's head lanes): atoms whose heads all have different frames take the per-head way,
    atoms with few distinct frames (two, or one) the shared way; ``ends`` (the attention kernel's count of each
    atom's slots inside a head's softmax) leaves partial rows. Values and gradients agree with PyTorch in float64."""
    weights, frames, unit, row_atom, proj = _inputs(torch.float64, seed=3, rows=80, heads=8, atoms=10)
    if frames_mode == "shared":
        frames = frames[:, [0, 1, 0, 1, 0, 1, 0, 1]].clone()
    elif frames_mode == "one":
        frames = frames[:, :1].expand(-1, 8, -1, -1).clone()
    ends = None
    if with_ends:  # head h of atom i keeps its first ends[i, h] slots; weights beyond are zero, as attention's are
        counts = torch.bincount(row_atom, minlength=frames.shape[0]) * weights.shape[2]
        ends = (counts[:, None] * torch.linspace(0.3, 1.0, 8, dtype=torch.float64)).long()
        first_row = torch.cumsum(torch.bincount(row_atom, minlength=frames.shape[0]), 0) - torch.bincount(
            row_atom, minlength=frames.shape[0])
        slot = (torch.arange(weights.shape[0]) - first_row[row_atom])[:, None] * weights.shape[2] + torch.arange(
            weights.shape[2])[None, :]  # (R, W) index of each slot within its atom
        weights = weights * (slot[:, None, :] < ends[row_atom][:, :, None]).to(weights.dtype)
    centers = angle_centers(64, False, torch.float64, weights.device)
    tau = angle_width(64, 4.0, False)
    grid = AngleGrid.for_basis(tau, False, 1e-7)
    results = []
    for flag in ("1", "0"):
        monkeypatch.setenv("CRYSTALFRAMER_KERNELS", flag)
        w, p = weights.clone().requires_grad_(True), proj.clone().requires_grad_(True)
        out = angle_term_grid(w, frames, unit, row_atom, p, centers, tau, grid, False, ends if flag == "1" else None)
        gw, gp = torch.autograd.grad(out, (w, p), torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out))
        if ends is not None:
            gw = gw * (w != 0)  # slots outside a head's softmax: the kernel reports 0, PyTorch their sensitivity
        results.append((out.detach(), gw * (unit != 0).any(-1)[:, None, :], gp))
    for got, want in zip(*results):
        assert got.abs().max() > 0
        assert (got - want).abs().max() <= 1e-12 * want.abs().max(), (got - want).abs().max()


def test_atom_ranges_cover_every_atom_once():
    bounds = np.array([0, 5, 5, 6, 20, 21, 21, 40])
    for parts in (1, 2, 3, 8, 20):
        ranges = kernels._atom_ranges(bounds, parts)
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


@pytest.mark.parametrize("method", ["none", "max", "weighted_pca", "static"])
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
        "from crystalframer.model import kernels\n"
        "torch.manual_seed(0)\n"
        "m = CrystalFramer(ModelConfig.preset('default', frame_method='max')).eval()\n"
        "y = m.predict([get_example('NaCl (rock salt)')])\n"
        "print(json.dumps({'enabled': kernels.kernels_enabled(torch.zeros(1)), 'y': float(y[0][0])}))\n")
    env = {**os.environ, "CC": str(tmp_path / "no-such-compiler"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["enabled"] is False and np.isfinite(result["y"])
    assert "PyTorch version" in proc.stderr


def test_kernels_run_on_pytorchs_openmp_threads_where_it_has_them():
    """With PyTorch on GNU OpenMP (its Linux wheels) the library links the same runtime: the only libgomp.so.1 in the
    process is PyTorch's, and the kernels' thread count follows torch.set_num_threads."""
    if not (Path(torch.__file__).with_name("lib") / "libgomp.so.1").exists():
        pytest.skip("this PyTorch does not run on GNU OpenMP")
    lib = kernels.library()
    assert kernels._openmp
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            assert lib.cf_openmp() == threads
    finally:
        torch.set_num_threads(previous)
    with open("/proc/self/maps", encoding="utf-8") as fh:  # other packages may bring their own, renamed runtimes
        runtimes = {line.split()[-1] for line in fh if line.rstrip().endswith("/libgomp.so.1")}
    assert runtimes == {str(Path(torch.__file__).with_name("lib") / "libgomp.so.1")}, runtimes


def test_without_openmp_python_threads_split_the_work(tmp_path):
    """CRYSTALFRAMER_OPENMP=0 (or a PyTorch without GNU OpenMP): serial kernels, the atoms split over Python threads;
    values and gradients as with PyTorch operations."""
    script = (
        "import json, torch\n"
        "import tests.model.test_kernels as t\n"
        "from crystalframer.model import kernels\n"
        "torch.set_num_threads(2)\n"
        "class Env:\n"
        "    def setenv(self, k, v):\n"
        "        import os; os.environ[k] = v\n"
        "inputs = t._inputs(torch.float64, heads=8)\n"
        "got = t._term(*inputs, False, True, Env())\n"
        "openmp = kernels._openmp\n"
        "want = t._term(*inputs, False, False, Env())\n"
        "err = max(float((g - w).abs().max() / w.abs().max()) for g, w in zip(got, want))\n"
        "print(json.dumps({'openmp': openmp, 'err': err}))\n")
    env = {**os.environ, "CRYSTALFRAMER_OPENMP": "0", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["openmp"] is False and result["err"] <= 1e-12


def _attention_inputs(dtype, seed=0, atoms=7, heads=3, width=32):
    """A random packed-row layout (uneven neighbour counts, padding, several rows per atom) with nearest-first
    slots, pair rows and pair logits."""
    from crystalframer.model.geometry import EdgeGeometry

    gen = torch.Generator().manual_seed(seed)
    counts = torch.randint(1, 80, (atoms,), generator=gen)
    src = torch.repeat_interleave(torch.arange(atoms), counts)
    dst = torch.randint(0, atoms, (int(counts.sum()),), generator=gen)
    order = torch.argsort(src * atoms + dst, stable=True)  # sorted by (src, dst), as the neighbour lists are
    src, dst = src[order], dst[order]
    vec = torch.randn(src.shape[0], 3, dtype=torch.float64, generator=gen) * 2.5
    first = torch.cumsum(counts, 0) - counts
    vec[first] = 0.0  # each atom's self image
    geom = EdgeGeometry.build(src, dst, vec.to(dtype), torch.zeros(atoms, dtype=torch.long),
                              torch.zeros(atoms, 3, dtype=dtype), torch.eye(3, dtype=dtype)[None],
                              nearest_first=True)
    pairs = geom.pair_dst.shape[1]
    qk = (torch.randn(atoms, heads, pairs, dtype=torch.float64, generator=gen) * 3).to(dtype)
    a = (-0.05 - 0.4 * torch.rand(atoms, heads, dtype=torch.float64, generator=gen)).to(dtype)
    return geom, qk, a


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("cut", [(float("-inf"), float("-inf")), (-0.5 * 3.0**2, -0.5 * 2.0**2)])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_attention_kernel_matches_the_pytorch_version(dtype, rtol, cut, threads):
    """Weights, logits, pair weights, distance features and the gradients of q·k and a (through all three
    outputs, the weights' gradient standing in for the angle term's) agree to rounding, with and without the
    per-head cutoff switch."""
    from crystalframer.model.attention import PeriodicAttention
    from crystalframer.model.features import distance_basis, distance_basis_window

    geom, qk, a = _attention_inputs(dtype)
    dist = geom.dist2.sqrt()
    full = distance_basis(dist, 64, 14.0, 1.0)
    values, first = distance_basis_window(dist, 64, 14.0, 1.0)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        layout = kernels.SlotLayout.build(geom.dist2, geom.pair_slot, geom.pad_mask, geom.row_atom, geom.num_atoms,
                                          values, first, 64)
    finally:
        torch.set_num_threads(previous)
    results = []
    for compiled in (True, False):
        q, aa = qk.clone().requires_grad_(True), a.clone().requires_grad_(True)
        if compiled:
            w, logits, pw, feat = kernels.CpuAttentionCore.apply(q, aa, layout, True, cut)[:4]
        else:
            w, logits, pw, feat = PeriodicAttention._slot_attention(q, aa, geom, full, cut)
        gen = torch.Generator().manual_seed(5)
        grads = [torch.randn(t.shape, dtype=dtype, generator=gen) for t in (w, pw, feat)]
        gq, ga = torch.autograd.grad((w, pw, feat), (q, aa), grads)
        results.append((w.detach(), logits.detach(), pw.detach(), feat.detach(), gq, ga))
    for got, want in zip(*results):
        finite = torch.isfinite(want)
        assert torch.equal(finite, torch.isfinite(got))  # −inf exactly where the PyTorch version has it
        got, want = got[finite], want[finite]
        assert want.abs().max() > 0
        assert (got - want).abs().max() <= rtol * want.abs().max(), (got - want).abs().max()
    if cut[0] > float("-inf"):  # the switch acts on some slots and excludes others
        x = a[geom.row_atom][..., None] * geom.dist2[:, None, :]
        inside = geom.pad_mask[:, None, :].expand_as(x)
        assert bool(((x > cut[0]) & (x < cut[1]) & inside).any()) and bool(((x <= cut[0]) & inside).any())


def test_distance_window_bound():
    """Every basis outside a slot's window is below the window's tolerance, and the window holds the rest
    exactly."""
    from crystalframer.model.features import DIST_WINDOW_TOL, distance_basis, distance_basis_window

    dist = torch.linspace(0.0, 16.0, 4001, dtype=torch.float64)
    full = distance_basis(dist, 64, 14.0, 1.0)
    values, first = distance_basis_window(dist, 64, 14.0, 1.0)
    window = torch.arange(values.shape[-1])
    inside = torch.zeros_like(full, dtype=torch.bool).scatter_(1, first[:, None] + window, True)
    torch.testing.assert_close(values, full.gather(1, first[:, None] + window), rtol=1e-10, atol=0.0)
    assert bool((first % (values.shape[-1] // 2) == 0).all())  # windows start on half-window boundaries
    assert full[~inside].max() <= DIST_WINDOW_TOL
    assert full[~inside].max() > DIST_WINDOW_TOL * 1e-3  # the window is not much wider than it needs to be


@pytest.mark.parametrize("name", ["SrTiO3 (cubic perovskite)", "ZnS (zincblende)", "TiO2 (rutile)"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_max_frames_kernel_matches_the_pytorch_version(name, dtype, monkeypatch):
    """Evaluation mode on rattled crystals, whose only exact ties are an atom's own lattice translations seen as +t
    and −t (oriented by the third moment): the compiled axis selection picks the same slots and orientations, so
    the frames agree to rounding; static scores (a·|r|²) and generic ones (a·|r|² plus random pair terms) both.
    (Unrattled centrosymmetric sites have third moments that vanish, so rounding decides their ±t ties in either
    version: the documented tie-breaking, docs/model.md §6.5.)"""
    from crystalframer.model.frames import FrameSampling, max_frames
    from crystalframer.model.geometry import EdgeGeometry

    model = CrystalFramer(ModelConfig.preset("default"))
    batch = collate([model.make_graph(_rattled(name, 0))], dtype=dtype)
    geom = EdgeGeometry.build(batch.edge_src, batch.edge_dst, batch.edge_vec, batch.batch, batch.positions,
                              batch.lattice)
    gen = torch.Generator().manual_seed(0)
    n, heads = geom.num_atoms, 4
    a = (-0.1 - 0.3 * torch.rand(n, heads, generator=gen, dtype=torch.float64)).to(dtype)
    static = a[geom.row_atom][..., None] * geom.dist2[:, None, :]
    pair_term = torch.randn(n, heads, geom.pair_dst.shape[1], generator=gen, dtype=torch.float64).to(dtype)
    generic = static + torch.gather(pair_term[geom.row_atom], 2, geom.pair_slot[:, None, :].expand(-1, heads, -1))
    for scores in (static, generic):
        scores = scores.masked_fill(~geom.pad_mask[:, None, :], float("-inf"))
        weights = geom.softmax(scores)
        results = []
        for flag in ("1", "0"):
            monkeypatch.setenv("CRYSTALFRAMER_KERNELS", flag)
            results.append(max_frames(scores, a, weights, geom, FrameSampling("eval"), 1e-5))
        assert (results[0] - results[1]).abs().max() <= 100 * torch.finfo(dtype).eps


@pytest.mark.parametrize("name", ["NaCl (rock salt)", "SrTiO3 (cubic perovskite)", "MgAl2O4 (spinel)", "chain"])
def test_max_frames_from_the_attention_kernel_match_the_pytorch_version(name, monkeypatch):
    """Max frames of a whole model are chosen and assembled inside the attention kernel, per atom (float64,
    evaluation mode, rattled crystals, every layer): the same frames as the PyTorch rules, and the same predictions.
    The chain (one atom, 2 Å period, 25 Å apart) has every neighbour on one line: no axis-2 candidate."""
    from pymatgen.core import Lattice, Structure

    torch.manual_seed(0)
    model = CrystalFramer(ModelConfig.preset("default", frame_method="max")).double()
    if name == "chain":
        structure = Structure(Lattice.orthorhombic(2.0, 25.0, 25.0), ["Cu"], [[0.0, 0.0, 0.0]])
        model.calibrate([structure])
    else:
        model.calibrate([get_example(name)])
        structure = _rattled(name, 1)
    results = []
    for flag in ("1", "0"):
        monkeypatch.setenv("CRYSTALFRAMER_KERNELS", flag)
        results.append(model.inspect(structure))
    fused, reference = results
    for got, want in zip(fused.layers, reference.layers):
        assert np.abs(got.frames - want.frames).max() <= 1e-12
    assert np.abs(fused.prediction - reference.prediction).max() <= 1e-12 * np.abs(reference.prediction).max()


def test_max_frames_kernel_noise_is_seeded_and_breaks_ties(monkeypatch):
    """Sample mode: the same generator seed gives the same frames; other seeds pick other tied neighbours of
    SrTiO3's Ti (six O at the same distance), and every pick is still a Ti–O direction."""
    from crystalframer.model.frames import FrameSampling, max_frames
    from crystalframer.model.geometry import EdgeGeometry

    monkeypatch.setenv("CRYSTALFRAMER_KERNELS", "1")
    model = CrystalFramer(ModelConfig.preset("default"))
    s = get_example("SrTiO3 (cubic perovskite)")
    batch = collate([model.make_graph(s)], dtype=torch.float64)
    geom = EdgeGeometry.build(batch.edge_src, batch.edge_dst, batch.edge_vec, batch.batch, batch.positions,
                              batch.lattice)
    a = torch.full((geom.num_atoms, 1), -0.3, dtype=torch.float64)
    scores = (a[geom.row_atom][..., None] * geom.dist2[:, None, :]).masked_fill(~geom.pad_mask[:, None, :],
                                                                                float("-inf"))
    weights = geom.softmax(scores)
    ti = [k for k, site in enumerate(s) if site.specie.symbol == "Ti"][0]

    def e1(seed):
        gen = torch.Generator().manual_seed(seed)
        return max_frames(scores, a, weights, geom, FrameSampling("sample", gen), 1e-5)[ti, 0, 0]

    assert torch.equal(e1(3), e1(3))
    picks = {tuple(np.round(e1(seed).numpy(), 6)) for seed in range(24)}
    assert len(picks) > 1
    assert all(sorted(np.abs(p)) == [0.0, 0.0, 1.0] for p in picks)  # along a cubic axis: a Ti–O bond


@pytest.mark.parametrize("threads", [1, 3])
def test_pair_products_match_their_definition(threads):
    """q·k per pair and value sums per pair (and their gradients, gradcheck in float64) against the explicit
    gathers, with uneven pair counts: entries past an atom's count stay zero and get no gradient."""
    gen = torch.Generator().manual_seed(1)
    n, heads, pairs, dim = 9, 3, 7, 5
    count = torch.randint(1, pairs + 1, (n,), generator=gen)
    dst = torch.randint(0, n, (n, pairs), generator=gen)
    dst[torch.arange(pairs)[None, :] >= count[:, None]] = 0
    a, b = (torch.randn(n, heads, dim, dtype=torch.float64, generator=gen).requires_grad_(True) for _ in range(2))
    p = torch.randn(n, heads, pairs, dtype=torch.float64, generator=gen)
    p[(torch.arange(pairs)[None, :] >= count[:, None])[:, None, :].expand(-1, heads, -1)] = 0.0
    p.requires_grad_(True)
    inside = (torch.arange(pairs)[None, :] < count[:, None])[:, None, :]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        dot = kernels.CpuPairDot.apply(a, b, dst, count, 0.25)
        mix = kernels.CpuPairMix.apply(p, b, dst, count)
        want_dot = 0.25 * torch.einsum("ihd,ijhd->ihj", a, b[dst]) * inside
        want_mix = torch.einsum("ihj,ijhd->ihd", p, b[dst])
        torch.testing.assert_close(dot, want_dot, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(mix, want_mix, rtol=1e-12, atol=1e-14)
        assert torch.autograd.gradcheck(lambda x, y: kernels.CpuPairDot.apply(x, y, dst, count, 0.25), (a, b))
        assert torch.autograd.gradcheck(lambda x, y: kernels.CpuPairMix.apply(x, y, dst, count), (p, b))
    finally:
        torch.set_num_threads(previous)
