"""Scenes and renderers (py3Dmol HTML, Plotly figures) and 2D charts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crystalframer.app.models import fresh_model
from crystalframer.examples import get_example
from crystalframer.viz import charts, render_3dmol, render_plotly
from crystalframer.viz.colors import element_color, element_radius
from crystalframer.viz.scene import AXIS_COLORS, attention_scene, cell_edges, cell_images, scene_from_structure


@pytest.fixture(scope="module")
def insp():
    return fresh_model("max").inspect(get_example("SrTiO3 (cubic perovskite)"))


def test_cell_edges_and_images():
    lat = np.diag([3.0, 4.0, 5.0])
    edges = cell_edges(lat)
    assert len(edges) == 12
    lengths = sorted(round(float(np.linalg.norm(b - a)), 6) for a, b in edges)
    assert lengths == [3.0] * 4 + [4.0] * 4 + [5.0] * 4
    # An atom at the origin shows on all 8 corners; one at the centre once; an unwrapped one is brought in.
    imgs = cell_images(np.array([[0.0, 0, 0], [1.5, 2.0, 2.5], [4.5, 2.0, 2.5]]), lat)
    assert sum(1 for j, _ in imgs if j == 0) == 8
    assert [n for j, n in imgs if j == 1] == [(0, 0, 0)]
    assert [n for j, n in imgs if j == 2] == [(-1, 0, 0)]


def test_structure_scene_perovskite():
    scene = scene_from_structure(get_example("SrTiO3 (cubic perovskite)"))
    counts = pd.Series([a.element for a in scene.atoms]).value_counts().to_dict()
    assert counts == {"Sr": 8, "Ti": 1, "O": 6}  # corners and face centres as in textbook drawings
    assert element_color(8).startswith("#") and element_radius(22) > 0


def test_attention_scene_shading_and_arrows(insp):
    scene = attention_scene(insp, 0, 1, head=0, min_opacity=0.1)
    target = [a for a in scene.atoms if a.role == "target"]
    assert len(target) == 1 and target[0].index == 1 and target[0].opacity == 1.0
    others = [a for a in scene.atoms if a.role != "target"]
    assert all(0.1 <= a.opacity <= 1.0 for a in others)
    heavy = max(others, key=lambda a: a.weight)
    light = min(others, key=lambda a: a.weight)
    assert heavy.opacity >= light.opacity
    # Periodic images beyond the cell are included (the neighbour sphere reaches past the cell).
    assert any(any(v != 0 for v in a.image) and a.weight > 0 for a in scene.atoms)
    assert [a.color for a in scene.arrows] == list(AXIS_COLORS)
    frame = insp.layers[0].frames[1, 0]
    for k, arrow in enumerate(scene.arrows):
        d = arrow.end - arrow.start
        assert np.allclose(d / np.linalg.norm(d), frame[k], atol=1e-6)
    assert attention_scene(insp, 0, 1, head=None).arrows == []


def test_py3dmol_html_and_export(insp):
    scene = attention_scene(insp, 1, 1, head=3)
    view = render_3dmol.scene_view(scene, js_url="/app/static/3dmol/3Dmol-min.js")
    html = render_3dmol.view_html(view)
    assert "/app/static/3dmol/3Dmol-min.js" in html and "addSphere" in html and "addArrow" in html
    assert html.count("addArrow") == 3
    grid = render_3dmol.view_html(render_3dmol.grid_view([attention_scene(insp, k, 1, 0) for k in range(4)]))
    assert "createViewerGrid" in grid and "viewergrid_" in grid
    page = render_3dmol.standalone_html(view, title="t")
    assert page.startswith("<!DOCTYPE html>") and "addSphere" in page
    if render_3dmol.local_js_path() is not None:
        assert "$3Dmolpromise = Promise.resolve()" in page  # inlined: works offline
    assert render_3dmol.cdn_url().endswith("/build/3Dmol-min.js")
    assert render_3dmol.py3dmol_version() in render_3dmol.cdn_url()


def test_js_source_prefers_local(tmp_path):
    url, where = render_3dmol.js_source(tmp_path)
    assert where == "cdn" and url.startswith("https://")
    (tmp_path / "static" / "3dmol").mkdir(parents=True)
    (tmp_path / "static" / "3dmol" / "3Dmol-min.js").write_text("x" * 2000)
    assert render_3dmol.js_source(tmp_path) == (render_3dmol.STATIC_URL, "local")


def test_plotly_renderer(insp):
    scene = attention_scene(insp, 0, 1, head=0)
    fig = render_plotly.scene_figure(scene)
    kinds = [t.type for t in fig.data]
    assert kinds.count("cone") == 3 and "scatter3d" in kinds
    n_points = sum(len(t.x) for t in fig.data if t.type == "scatter3d" and t.mode == "markers")
    assert n_points == len(scene.atoms)
    grid = render_plotly.grid_figure([attention_scene(insp, k, 1, 0) for k in range(4)])
    assert "scene4" in grid.layout


def test_charts():
    sig = pd.DataFrame(np.ones((4, 8)), index=[f"layer {k}" for k in range(4)], columns=[f"h{k}" for k in range(8)])
    assert len(charts.sigma_chart(sig).data) == 4
    table = pd.DataFrame({"method": ["max"] * 6, "layer": [1, 1, 1, 2, 2, 2], "head": 0,
                          "axis": ["e1", "e2", "e3"] * 2, "angle (deg)": [0, 1, 2, 3, 4, 5.0]})
    assert len(charts.alignment_chart(table).data) == 3
    df = pd.DataFrame({"model": ["a", "a"], "target": "t", "magnitude": [0.01, 0.1], "|delta|": [0.1, 0.2],
                       "e1 angle mean": [1.0, 2.0], "switched": [0.0, 0.5]})
    assert len(charts.perturbation_chart(df, angle_metric="e1 angle mean").data) == 6
    assert len(charts.training_chart([{"epoch": 1, "train_loss": 1.0, "val_mae": 0.5}]).data) == 2
    parity = charts.parity_chart({"val": (np.array([1.0, 2.0]), np.array([1.1, 1.9]))})
    assert len(parity.data) == 2
