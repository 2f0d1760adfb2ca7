"""The defaults are faithful to the exact model, on trained weights and real crystals, in float64:

* the grid angle features (``angle_features="grid"``) give predictions and gradients within 1e-6 (relative) of the
  exact path (every Gaussian evaluated);
* the default neighbour sphere (``cutoff_sigmas``) gives predictions within 1e-5 eV/atom of a converged lattice sum
  (an 8 σ_max sphere, whose dropped images weigh < e^-32 each).

Framed models choose frame axes by argmax, a discontinuous function: on crystals with (near-)tied neighbours any
perturbation — a truncated sum, float rounding — can pick another tied axis (the documented tie-breaking,
docs/model.md). The framed checks therefore use rattled cells (seeded, 0.05 Å) and count a structure whose frame
axes switch (move by more than 1e-3) between the two runs as a tie switch, not an error; switches must stay rare.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from pymatgen.core import Structure

from crystalframer import CrystalFramer, ModelConfig, load_model
from crystalframer.examples import get_example, list_examples

CONVERGED_SIGMAS = 8.0
CUTOFF_TOL = 1e-5  # eV/atom
GRID_REL_TOL = 1e-6
SHIPPED = ("mp-eform-none", "mp-eform-max", "mp-eform-wpca")


def rattled(structure: Structure, seed: int, amplitude: float = 0.05) -> Structure:
    rng = np.random.default_rng(seed)
    coords = structure.cart_coords + rng.normal(0.0, amplitude, (len(structure), 3))
    return Structure(structure.lattice, structure.species, coords, coords_are_cartesian=True)


def mp_cells(count: int = 16, skewed: int = 4) -> list[Structure]:
    """Real MP cells from the data folder's 97-structure sample: the first ``count`` with ≤ 30 sites plus the
    ``skewed`` most oblique cells (largest lattice-angle deviation from 90°)."""
    from crystalframer.data import mp_sample_path, read_csv_cif

    try:
        path = mp_sample_path()
    except Exception:  # noqa: BLE001 - no data folder configured
        path = None
    if path is None or not path.exists():
        pytest.skip("MP sample data not available")
    records = [r for r in read_csv_cif(path, progress=False) if len(r.structure) <= 30]
    cells = [r.structure for r in records]
    deviation = [max(abs(90.0 - a) for a in s.lattice.angles) for s in cells]
    order = np.argsort(deviation)[::-1]
    chosen = cells[:count] + [cells[int(k)] for k in order[:skewed] if int(k) >= count]
    assert max(deviation[int(k)] for k in order[:skewed]) > 30.0, "no skewed cell in the sample"
    return chosen


def example_cells() -> list[Structure]:
    """Built-in crystals (always available), rattled so that no frame is decided by an exact tie."""
    return [rattled(get_example(name), seed) for seed, name in enumerate(list_examples())]


def with_config(model: CrystalFramer, **changes) -> CrystalFramer:
    other = CrystalFramer(dataclasses.replace(model.config, **changes)).double()
    other.load_state_dict(model.state_dict())
    return other.eval()


def frames_of(model: CrystalFramer, structure: Structure) -> list[np.ndarray]:
    return [layer.frames for layer in model.inspect(structure).layers]


def same_frames(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    """No discrete switch of any axis (a switch moves an axis by O(1); weighted-PCA axes also drift continuously)."""
    return all(np.abs(x - y).max() <= 1e-3 for x, y in zip(a, b))


@pytest.fixture(scope="module", params=SHIPPED)
def trained(request):
    return load_model(request.param, dtype=torch.float64)


def _check_cutoff(trained: CrystalFramer, cells: list[Structure], tol: float = CUTOFF_TOL,
                  max_switch_fraction: float = 0.2) -> None:
    defaults = ModelConfig()
    default = defaults.cutoff_sigmas
    assert default < CONVERGED_SIGMAS
    near = with_config(trained, cutoff_sigmas=default, head_cutoff=defaults.head_cutoff,
                       cutoff_taper=defaults.cutoff_taper, angle_features="exact")
    far = with_config(trained, cutoff_sigmas=CONVERGED_SIGMAS, head_cutoff=False, angle_features="exact")
    framed = trained.config.uses_angles
    checked, switched, worst = 0, 0, 0.0
    for structure in cells:
        # One structure per call: batch composition changes float rounding, which can switch near-tied frames.
        err = abs(float(near.predict([structure])[0, 0] - far.predict([structure])[0, 0]))
        if framed and not same_frames(frames_of(near, structure), frames_of(far, structure)):
            switched += 1
            continue
        checked += 1
        worst = max(worst, err)
        assert err <= tol, (f"{structure.composition.reduced_formula}: default sphere {default}σ predicts "
                            f"{err:.2e} eV/atom away from the converged sum")
    assert switched <= max(1, int(max_switch_fraction * len(cells))), (
        f"{switched} of {len(cells)} structures switched frames")
    assert checked >= len(cells) - switched and worst <= tol


def test_default_cutoff_is_converged_on_real_mp_cells(trained):
    cells = mp_cells()
    if trained.config.uses_angles:
        cells = [rattled(s, seed) for seed, s in enumerate(cells)]
    _check_cutoff(trained, cells)


def test_default_cutoff_is_converged_on_builtin_crystals(trained):
    """Rattled high-symmetry crystals. Weighted-PCA frames of their near-cubic sites are ill-conditioned (Σ has
    nearly equal eigenvalues, so the axes and the prediction move ~1/gap times any perturbation): measured 1.0e-5
    eV/atom on rattled NaCl, hence the looser bounds (error, and up to half the cells switching axes) for that
    method only."""
    if trained.config.frame_method == "weighted_pca":
        _check_cutoff(trained, example_cells(), 3 * CUTOFF_TOL, max_switch_fraction=0.5)
    else:
        _check_cutoff(trained, example_cells())


def test_truncation_error_is_visible_at_the_old_default():
    """The check can fail: the old 3.5σ sphere is far more than 1e-5 eV/atom off on the same crystals."""
    model = load_model("mp-eform-none", dtype=torch.float64)
    old = with_config(model, cutoff_sigmas=3.5, head_cutoff=False)
    far = with_config(model, cutoff_sigmas=CONVERGED_SIGMAS, head_cutoff=False)
    cells = example_cells()
    errs = np.abs(old.predict(cells, batch_size=1) - far.predict(cells, batch_size=1))
    assert errs.max() > 10 * CUTOFF_TOL


def _relative_gap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


@pytest.mark.parametrize("name", ["mp-eform-max", "mp-eform-wpca"])
def test_grid_angle_features_match_exact_on_trained_weights(name):
    trained = load_model(name, dtype=torch.float64)
    grid = with_config(trained, angle_features="grid")
    exact = with_config(trained, angle_features="exact")
    cells = example_cells()
    try:
        cells += [rattled(s, seed) for seed, s in enumerate(mp_cells(8, 2))]
    except pytest.skip.Exception:
        pass
    for structure in cells:
        if not same_frames(frames_of(grid, structure), frames_of(exact, structure)):
            continue  # a tie switch, see the module docstring
        g, e = grid.predict([structure]), exact.predict([structure])
        assert _relative_gap(g, e) <= GRID_REL_TOL, structure.composition.reduced_formula


@pytest.mark.parametrize("preset", ["default", "light"])
@pytest.mark.parametrize("method", ["max", "weighted_pca"])
def test_grid_angle_features_match_exact_gradients(preset, method):
    """Predictions and every parameter gradient of a training step (float64, default and lightweight presets)."""
    from crystalframer.model.frames import FrameSampling
    from crystalframer.graph import collate

    torch.manual_seed(0)
    cells = example_cells()[:5]
    base = CrystalFramer(ModelConfig.preset(preset, frame_method=method)).double()
    base.calibrate(cells)
    results = []
    for path in ("exact", "grid"):
        model = with_config(base, angle_features=path)
        batch = collate([model.make_graph(s, target=[0.0]) for s in cells], dtype=torch.float64)
        out = model(batch, FrameSampling(mode="eval"))
        (out**2).sum().backward()
        results.append((out.detach().numpy(), {k: p.grad.numpy().copy() for k, p in model.named_parameters()}))
    (out_e, grad_e), (out_g, grad_g) = results
    assert _relative_gap(out_g, out_e) <= GRID_REL_TOL
    for key, g in grad_e.items():
        assert _relative_gap(grad_g[key], g) <= GRID_REL_TOL, key
