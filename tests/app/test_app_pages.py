"""Streamlit AppTest runs of the Home, Attention & frames, Compare frames and Perturbation pages.

Checkpoints come from a temporary folder (``CRYSTALFRAMER_CHECKPOINTS``) holding untrained but calibrated
models saved in the shipped format, so the tests do not depend on trained checkpoints existing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pymatgen.io.cif import CifWriter
from pymatgen.io.vasp import Poscar
from streamlit.testing.v1 import AppTest

from crystalframer import CrystalFramer, ModelConfig, save_checkpoint
from crystalframer.examples import get_example, list_examples

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
TIMEOUT = 240


def make_checkpoints(folder: Path) -> Path:
    structures = [get_example(n) for n in list_examples()[:6]]
    for name, method in (("test-max", "max"), ("test-wpca", "weighted_pca")):
        torch.manual_seed(1)
        model = CrystalFramer(ModelConfig(frame_method=method, target_names=["e_form"], target_units=["eV/atom"]))
        model.calibrate(structures)
        save_checkpoint(model, folder / name, info={"untrained": True, "note": "test fixture"})
    return folder


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    folder = make_checkpoints(tmp_path_factory.mktemp("ckpts"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRYSTALFRAMER_CHECKPOINTS", str(folder))
        yield folder


def run_app(path: str = APP, **state) -> AppTest:
    at = AppTest.from_file(path, default_timeout=TIMEOUT)
    for k, v in state.items():
        at.session_state[k] = v
    return at.run()


def assert_ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_home_default_prediction(ckpts):
    at = run_app()
    assert_ok(at)
    sel = at.selectbox(key="home_model")
    assert sel.options[:2] == ["test-max", "test-wpca"]
    assert any("untrained" in o for o in sel.options)
    m = metrics(at)
    assert m["Formula"] == "SrTiO3" and m["Space group"].startswith("Pm-3m")
    assert "e_form (eV/atom)" in m
    float(m["e_form (eV/atom)"])
    # Change structure and model.
    at.selectbox(key="home_example").set_value("ZnS (zincblende)").run()
    assert_ok(at)
    assert metrics(at)["Formula"] == "ZnS"
    at.selectbox(key="home_model").set_value("test-wpca").run()
    assert_ok(at)
    assert at.session_state["cf_model_ref"] == "ckpt:test-wpca"
    at.checkbox(key="home_primitive").uncheck().run()
    assert_ok(at)
    assert metrics(at)["Sites"] == "8"
    at.sidebar.radio[0].set_value("Plotly (offline)").run()
    assert_ok(at)


def test_home_bad_and_good_uploads(ckpts):
    at = run_app()
    at.radio(key="home_source").set_value("Upload a file").run()
    assert_ok(at)
    uploader = at.file_uploader(key="home_upload")
    bad = [("broken.cif", b"data_x\n_cell_length_a 4\nloop_\n_atom_site_label\nnonsense", "text/plain"),
           ("photo.png", b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"),
           ("big.cif", str(CifWriter(get_example("SrTiO3 (cubic perovskite)") * (5, 5, 5))).encode(), "text/plain")]
    for name, data, mime in bad:
        uploader.set_value((name, data, mime))
        at.run()
        assert_ok(at)
        assert at.error, name
        assert metrics(at)["Formula"] == "SrTiO3"  # the app keeps working with the previous structure
        uploader = at.file_uploader(key="home_upload")
    poscar = Poscar(get_example("TiO2 (rutile)")).get_str().encode()
    uploader.set_value(("POSCAR", poscar, "application/octet-stream"))
    at.run()
    assert_ok(at)
    assert not at.error and metrics(at)["Formula"] == "TiO2"
    assert at.session_state["cf_structure_label"] == "POSCAR"


def test_home_paste_text(ckpts):
    at = run_app()
    at.radio(key="home_source").set_value("Paste text").run()
    at.text_area(key="home_paste_text").input("not a structure at all").run()
    at.button(key="home_paste_go").click().run()
    assert_ok(at)
    assert at.error
    cif = str(CifWriter(get_example("NaCl (rock salt)")))
    at.text_area(key="home_paste_text").input(cif).run()
    at.button(key="home_paste_go").click().run()
    assert_ok(at)
    assert metrics(at)["Formula"] == "NaCl"


def test_home_without_checkpoints(tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRYSTALFRAMER_CHECKPOINTS", str(tmp_path))
        at = run_app()
        assert_ok(at)
        assert any("No trained checkpoints" in i.value for i in at.info)
        assert any("untrained" in w.value for w in at.warning)
        assert at.selectbox(key="home_model").value.startswith("fresh:")
        assert any("untrained_output" in k for k in metrics(at))


def test_attention_page_interactions(ckpts):
    at = run_app(str(ROOT / "app_pages" / "1_Attention_and_frames.py"), cf_model_ref="ckpt:test-max")
    assert_ok(at)
    assert at.dataframe  # neighbour table, frame, σ
    for key, value in (("att_layer", 3), ("att_head", "mean"), ("att_head", 5), ("att_atom", 2)):
        at.selectbox(key=key).set_value(value).run()
        assert_ok(at)
    at.number_input(key="att_labels").set_value(3).run()
    assert_ok(at)
    assert len(at.get("download_button")) == 4  # scene HTML, attention CSV, frames CSV, JSON
    at.sidebar.radio[0].set_value("Plotly (offline)").run()
    assert_ok(at)
    assert len(at.get("plotly_chart")) >= 4  # scene, σ, layer strip, layer × head grid


def test_attention_page_layer_head_grid(ckpts):
    """The layer × head small multiples: one panel per (layer, head), rows = layers, columns = heads, shown on
    either renderer and switched off by its toggle."""
    import json

    at = run_app(str(ROOT / "app_pages" / "1_Attention_and_frames.py"), cf_model_ref="ckpt:test-max")
    assert_ok(at)
    cfg = ModelConfig(frame_method="max")

    def grid_spec():
        for chart in at.get("plotly_chart"):
            spec = json.loads(chart.proto.spec)
            names = [a.get("text") for a in spec["layout"].get("annotations", [])]
            if "layer 1" in names and "head 0" in names:
                return spec
        return None

    spec = grid_spec()
    assert spec is not None
    n_axes = sum(1 for k in spec["layout"] if k.startswith("xaxis"))
    assert n_axes == cfg.num_layers * cfg.num_heads
    assert sum(1 for t in spec["data"] if t.get("name") == "atoms") == cfg.num_layers * cfg.num_heads
    assert sum(1 for t in spec["data"] if t.get("name") == "e1") == cfg.num_layers * cfg.num_heads
    at.toggle(key="att_grid_on").set_value(False).run()
    assert_ok(at)
    assert grid_spec() is None


def test_compare_page_srtio3_and_zincblende(ckpts):
    at = run_app(str(ROOT / "app_pages" / "2_Compare_frames.py"), cf_model_ref="ckpt:test-max")
    assert_ok(at)
    text = " ".join(m.value for m in at.markdown)
    assert "Ti (site 1): CN 6, octahedral" in text
    static = next(m.value for m in at.markdown if "static local frames: median angle" in m.value)
    line = next(s for s in static.splitlines() if "static" in s)
    assert "median angle 0.0°" in line and "100% of" in line
    at.multiselect(key="cmp_methods").select("pca").select("lattice").run()
    assert_ok(at)
    at.selectbox(key="cmp_head").set_value(4).run()
    assert_ok(at)
    zns = get_example("ZnS (zincblende)")
    at = run_app(str(ROOT / "app_pages" / "2_Compare_frames.py"), cf_model_ref="ckpt:test-max", cf_structure=zns,
                 cf_structure_label="ZnS")
    assert_ok(at)
    text = " ".join(m.value for m in at.markdown)
    assert "Zn" in text and "tetrahedral" in text
    zn = next(k for k, site in enumerate(zns) if site.specie.symbol == "Zn")
    at.selectbox(key="cmp_atom").set_value(zn).run()
    assert_ok(at)
    assert f"Zn (site {zn}): CN 4, tetrahedral" in " ".join(m.value for m in at.markdown)


def test_compare_page_frameless_model(ckpts):
    at = run_app(str(ROOT / "app_pages" / "2_Compare_frames.py"), cf_model_ref="fresh:none")
    assert_ok(at)
    assert any("without frames" in i.value for i in at.info)


def test_perturbation_sweeps(ckpts):
    at = run_app(str(ROOT / "app_pages" / "3_Perturbation.py"), cf_model_ref="ckpt:test-max")
    assert_ok(at)
    assert at.multiselect(key="pert_models").value == ["ckpt:test-max", "ckpt:test-wpca"]
    at.text_input(key="pert_mags_rattle").input("0.001, 0.05").run()
    at.number_input(key="pert_samples").set_value(1).run()
    at.button(key="pert_run").click().run()
    assert_ok(at)
    df = at.session_state["cf_sweep"]["df"]
    assert len(df) == 2 * 2 and set(df["model"]) == {"test-max", "test-wpca"}
    assert at.get("plotly_chart")
    for kind in ("rotate", "strain", "supercell", "substitute"):
        at.selectbox(key="pert_kind").set_value(kind).run()
        key = f"pert_mags_{kind}"
        if kind in ("rotate", "strain"):
            at.text_input(key=key).input("1" if kind == "rotate" else "0.01").run()
        if kind == "supercell":
            at.text_input(key=key).input("1, 2").run()
        if kind == "substitute":
            at.text_input(key=key).input("1").run()
        at.button(key="pert_run").click().run()
        assert_ok(at)
        assert not at.error, [e.value for e in at.error]
        assert at.session_state["cf_sweep"]["kind"] == kind
    at.text_input(key="pert_mags_substitute").input("abc").run()
    assert_ok(at)
    assert at.error  # a clear message, not a crash


def test_pages_with_a_disordered_structure(ckpts):
    s = get_example("SrTiO3 (cubic perovskite)")
    s.replace(0, {"Sr": 0.5, "Ba": 0.5})
    for page in ("0_Home.py", "1_Attention_and_frames.py", "2_Compare_frames.py"):
        at = run_app(str(ROOT / "app_pages" / page), cf_model_ref="ckpt:test-max", cf_structure=s,
                     cf_structure_label="(Sr,Ba)TiO3")
        assert_ok(at)
        assert not at.error, page


@pytest.mark.parametrize("button, label, element", [("cmp_fig_c3n4", "C3N4", "C"), ("cmp_fig_mgf2", "MgF2", "Mg")])
def test_compare_page_paper_figures(ckpts, button, label, element):
    """One click loads the paper's figure: the crystal, its cation as the centre, max and weighted-PCA frames, and
    the side-by-side grid (rows: the two methods; columns: layers) with the centre's polyhedron in every panel."""
    import json

    at = run_app(str(ROOT / "app_pages" / "2_Compare_frames.py"), cf_model_ref="ckpt:test-max",
                 cf_renderer="Plotly (offline)")
    assert_ok(at)
    at.button(key=button).click().run()
    assert_ok(at)
    assert at.session_state["cf_structure_label"].startswith(label)
    structure = at.session_state["cf_structure"]
    atom = at.selectbox(key="cmp_atom").value
    assert structure[atom].specie.symbol == element
    assert at.multiselect(key="cmp_methods").value == ["max", "weighted_pca"]
    n_layers = ModelConfig().num_layers
    grids = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    # Plotly: 2D projections (rows: the two methods, columns: layers), no WebGL context per panel.
    side = [g for g in grids if sum(1 for k in g["layout"] if k.startswith("xaxis")) == 2 * n_layers
            and any(a.get("text") == "weighted-PCA frames" for a in g["layout"].get("annotations", []))]
    assert side, "no 2 × layers side-by-side figure"
    titles = [a.get("text", "") for a in side[0]["layout"]["annotations"]]
    assert sum(t.startswith("layer ") for t in titles) == n_layers and "max frames" in titles
    polys = [t for t in side[0]["data"] if t.get("name") == "polyhedron"]
    assert len(polys) == 2 * n_layers  # the centre's polyhedron in each panel
    assert {p["meta"]["vertices"] for p in polys} == {4 if element == "C" else 6}  # tetrahedron / octahedron
    assert {p["meta"]["centre"] for p in polys} == {atom}
    assert sum(1 for t in side[0]["data"] if t.get("name") == "e1") == 2 * n_layers
