"""AppTest of the 3D views' wiring (issue 10): polyhedra on every page, click-to-select, deep links, the colour
scheme, views and supercells, PNG/HTML export, and the Fine-tune summary's Markdown.

The Plotly renderer is used (a click is a point selection, which AppTest can set through the chart's session
state); the 3Dmol.js click path is driven in a real browser by tests/browser/test_browser_app.py.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import plotly.graph_objects as go
import pytest
from streamlit.testing.v1 import AppTest

from crystalframer.app.links import example_from_slug
from crystalframer.app.models import fresh_model
from crystalframer.examples import get_example
from crystalframer.viz.colors import element_color

from tests.app.test_app_pages import make_checkpoints

ROOT = Path(__file__).resolve().parents[2]
ATTENTION = str(ROOT / "app_pages" / "1_Attention_and_frames.py")
COMPARE = str(ROOT / "app_pages" / "2_Compare_frames.py")
TIMEOUT = 240


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    folder = make_checkpoints(tmp_path_factory.mktemp("scene_ckpts"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRYSTALFRAMER_CHECKPOINTS", str(folder))
        mp.setenv("CRYSTALFRAMER_RENDERER", "plotly")
        yield folder


def run(path: str, params: dict | None = None, **state) -> AppTest:
    at = AppTest.from_file(path, default_timeout=TIMEOUT)
    for k, v in state.items():
        at.session_state[k] = v
    if params:
        at.query_params.update(params)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _decode(obj):
    """Plotly's JSON stores numeric arrays as {"dtype", "bdata" (base64)}: back to lists."""
    if isinstance(obj, dict):
        if set(obj) >= {"dtype", "bdata"}:
            arr = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=np.dtype(obj["dtype"]))
            return arr.reshape(obj["shape"]).tolist() if "shape" in obj else arr.tolist()
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def figures(at: AppTest) -> dict[str, go.Figure]:
    """The page's Plotly figures by chart key (decoded, arrays included)."""
    out = {}
    for chart in at.get("plotly_chart"):
        key = chart.proto.id.rsplit("-", 1)[-1]
        out[key] = go.Figure(_decode(json.loads(chart.proto.spec)))
    return out


def meshes(fig) -> list:
    return [t for t in fig.data if t.type == "mesh3d"]


def params(at: AppTest) -> dict[str, str]:
    return {k: at.query_params[k][0] if isinstance(at.query_params[k], list) else at.query_params[k]
            for k in at.query_params}


def test_attention_deep_link_is_read_and_written(ckpts):
    at = run(ATTENTION, {"example": "ZnS", "layer": "2", "head": "3", "atom": "1"}, cf_model_ref="ckpt:test-max")
    assert at.session_state["cf_structure_label"] == "ZnS (zincblende)"
    assert at.selectbox(key="att_layer").value == 1  # layer 2 in the URL is index 1
    assert at.selectbox(key="att_head").value == 3
    assert at.selectbox(key="att_atom").value == 1
    assert params(at) == {"model": "test-max", "example": "ZnS", "layer": "2", "head": "3", "atom": "1"}
    at.selectbox(key="att_atom").set_value(0).run()
    at.selectbox(key="att_head").set_value("mean").run()
    assert not at.exception
    assert params(at)["atom"] == "0" and params(at)["head"] == "mean"
    at.selectbox(key="att_view").set_value("c").run()
    assert params(at)["view"] == "c"
    # The link just written opens the same state in a fresh session.
    again = run(ATTENTION, params(at))
    assert again.selectbox(key="att_atom").value == 0 and again.selectbox(key="att_head").value == "mean"
    assert again.selectbox(key="att_view").value == "c"
    assert again.session_state["cf_model_ref"] == "ckpt:test-max"


@pytest.mark.parametrize("example, element, n_vertices", [("SrTiO3", "Ti", 6), ("ZnS", "Zn", 4)])
def test_attention_polyhedron_around_the_target(ckpts, example, element, n_vertices):
    s = get_example(example_from_slug(example))
    j = next(k for k, site in enumerate(s) if site.specie.symbol == element)
    at = run(ATTENTION, {"example": example, "atom": str(j), "head": "0"}, cf_model_ref="ckpt:test-max")
    fig = figures(at)["att_scene"]
    polys = meshes(fig)
    assert len(polys) == 1 and len(polys[0].x) == n_vertices
    # The layer strip shows the same polyhedron in every layer.
    strip = figures(at)["att_strip"]
    assert [len(m.x) for m in meshes(strip)] == [n_vertices] * 4
    at.selectbox(key="att_poly").set_value("none").run()
    assert not meshes(figures(at)["att_scene"])


def test_clicking_an_atom_makes_it_the_target(ckpts):
    at = run(ATTENTION, {"example": "SrTiO3", "atom": "1", "head": "0"}, cf_model_ref="ckpt:test-max")
    fig = figures(at)["att_scene"]
    assert "Ti 1" in fig.layout.title.text
    atoms = [(int(k), text) for t in fig.data if t.type == "scatter3d" and (t.name or "").startswith("atoms")
             for k, text in zip(t.customdata, t.text)]
    k, text = next((k, text) for k, text in atoms if text.startswith("O j=2 "))
    # What st.plotly_chart reports for a click on that marker.
    at.session_state["att_scene"] = {"selection": {"points": [{"customdata": k, "curve_number": 3,
                                                               "point_index": 0}],
                                                   "point_indices": [0], "box": [], "lasso": []}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="att_atom").value == 2
    assert "O 2" in figures(at)["att_scene"].layout.title.text
    assert params(at)["atom"] == "2"
    # Another click (on a Sr) moves the target again; a click on empty space changes nothing.
    fig = figures(at)["att_scene"]
    atoms = [(int(k), text) for t in fig.data if t.type == "scatter3d" and (t.name or "").startswith("atoms")
             for k, text in zip(t.customdata, t.text)]
    k = next(k for k, text in atoms if text.startswith("Sr j=0 "))
    at.session_state["att_scene"] = {"selection": {"points": [{"customdata": k}], "point_indices": [0],
                                                   "box": [], "lasso": []}}
    at.run()
    assert at.selectbox(key="att_atom").value == 0
    at.session_state["att_scene"] = {"selection": {"points": [], "point_indices": [], "box": [], "lasso": []}}
    at.run()
    assert at.selectbox(key="att_atom").value == 0


def test_colour_scheme_view_supercell_and_exports(ckpts):
    at = run(ATTENTION, {"example": "SrTiO3", "atom": "1", "head": "0"}, cf_model_ref="ckpt:test-max")
    legend = {t.name: t.marker.color for t in figures(at)["att_scene"].data
              if t.type == "scatter3d" and t.legendgroup == "elements"}
    assert list(legend) == ["O", "Ti", "Sr"] and legend["O"] == element_color(8, "VESTA")
    scheme = next(r for r in at.sidebar.radio if r.label == "Element colours")
    scheme.set_value("Jmol").run()
    legend = {t.name: t.marker.color for t in figures(at)["att_scene"].data
              if t.type == "scatter3d" and t.legendgroup == "elements"}
    assert legend["O"] == element_color(8, "Jmol")
    fig = figures(at)["att_scene"]
    assert any(t.type == "scatter3d" and t.mode == "markers" and t.marker.showscale for t in fig.data)  # colour bar
    n_atoms = sum(len(t.x) for t in fig.data if t.type == "scatter3d" and (t.name or "").startswith("atoms"))
    at.selectbox(key="att_view").set_value("e1").run()
    cam = figures(at)["att_scene"].layout.scene.camera
    assert cam.projection.type == "orthographic"
    at.selectbox(key="att_repeat").set_value("2×2×2").run()
    assert not at.exception
    bigger = sum(len(t.x) for t in figures(at)["att_scene"].data
                 if t.type == "scatter3d" and (t.name or "").startswith("atoms"))
    assert bigger > n_atoms + 40
    at.selectbox(key="att_colorby").set_value("attention").run()
    assert not at.exception
    assert "Download scene (HTML)" in [d.proto.label for d in at.get("download_button")]
    # Plotly's modebar camera button is the PNG export (drawn in the browser): configured with a file name.
    chart = next(c for c in at.get("plotly_chart") if c.proto.id.endswith("att_scene"))
    config = json.loads(chart.proto.config)
    assert config["displayModeBar"] is True
    assert config["toImageButtonOptions"] == {"format": "png", "filename": "SrTiO3_atom1_layer1", "scale": 2}


def test_home_link_polyhedra_and_page_parameter(ckpts):
    at = run(str(ROOT / "app.py"), {"example": "ZnS", "conventional": "1"})
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Formula"] == "ZnS" and metrics["Sites"] == "8"
    assert at.multiselect(key="home_poly").value == ["Zn"]  # cations in anion polyhedra by default
    polys = meshes(figures(at)["home_scene"])
    assert len(polys) == 14 and {len(m.x) for m in polys} == {4}  # Zn on the fcc corners and faces
    assert params(at)["example"] == "ZnS" and params(at)["conventional"] == "1"
    at.multiselect(key="home_poly").set_value([]).run()
    assert not meshes(figures(at)["home_scene"])
    # ?page=compare on the root URL opens that page with the rest of the link.
    at = run(str(ROOT / "app.py"), {"page": "compare", "example": "SrTiO3", "atom": "1"},
             cf_model_ref="ckpt:test-max")
    assert any("Ti (site 1): CN 6, octahedral" in m.value for m in at.markdown)
    assert at.selectbox(key="cmp_atom").value == 1


def test_compare_strips_show_the_centre_polyhedron(ckpts):
    at = run(COMPARE, {"example": "SrTiO3", "atom": "1", "head": "2"}, cf_model_ref="ckpt:test-max")
    assert at.selectbox(key="cmp_head").value == 2
    strips = [fig for key, fig in figures(at).items() if key.startswith("cmp_strip_")]
    assert strips and all([len(m.x) for m in meshes(fig)] == [6] * 4 for fig in strips)
    assert params(at)["atom"] == "1" and params(at)["head"] == "2"


def test_finetune_summary_is_valid_markdown(ckpts):
    from tests.app.test_app_finetune import dataset_csv

    model = fresh_model("max")
    result = SimpleNamespace(
        model=model, history=[{"epoch": 0, "train_loss": float("nan"), "val_mae": 0.5312},
                              {"epoch": 1, "train_loss": 0.4, "val_mae": 0.279234}],
        train_true=np.array([1.0, 2.0]), train_pred=np.array([1.1, 1.9]), val_true=np.array([1.5]),
        val_pred=np.array([1.2]),
        info={"metrics": {"val_mae": 0.279234, "val_mae_start": 0.5312}, "epochs_run": 1, "n_train": 8,
              "n_val": 3, "target": "volume_per_atom", "target_unit": "", "run_id": "test-run"})
    at = AppTest.from_file(str(ROOT / "app_pages" / "4_Fine-tune.py"), default_timeout=TIMEOUT)
    at.run()
    at.file_uploader(key="ft_upload").set_value(("labels.csv", dataset_csv(), "text/csv"))
    at.run()
    at.session_state["cf_ft_result"] = result
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    summary = next(m.value for m in at.markdown if m.value.startswith("Validation MAE"))
    assert summary.startswith("Validation MAE **0.2792** after 1 epoch(s), from 0.5312 before training")
