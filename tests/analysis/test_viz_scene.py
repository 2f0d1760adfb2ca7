"""Scenes and renderers (py3Dmol HTML, Plotly figures) and 2D charts."""

from __future__ import annotations

import re

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
    atom_traces = [t for t in fig.data if t.type == "scatter3d" and t.name.startswith("atoms")]
    assert sum(len(t.x) for t in atom_traces) == len(scene.atoms)
    # Every atom marker carries its scene-atom index (what a click reports).
    assert sorted(int(k) for t in atom_traces for k in t.customdata) == list(range(len(scene.atoms)))
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


# ---------------------------------------------------------------------------------------------------------------
# polyhedra, bonds, legend, axes, attention scale, labels, views, supercells, picking (issue 10)
# ---------------------------------------------------------------------------------------------------------------
from crystalframer.analysis.compare import coordination_environment  # noqa: E402
from crystalframer.viz.colors import COLOR_SCHEMES, attention_color  # noqa: E402
from crystalframer.viz.scene import (add_polyhedra, default_polyhedron_elements, picked_atom,  # noqa: E402
                                     polyhedron_centres, polyhedron_faces, rotation_quaternion, view_rotation,
                                     view_spec)


def _site(structure, element: str) -> int:
    return next(k for k, site in enumerate(structure) if site.specie.symbol == element)


def _target_polyhedron(name: str, element: str):
    s = get_example(name)
    j = _site(s, element)
    scene = scene_from_structure(s, scheme="VESTA")
    add_polyhedra(scene, {j: coordination_environment(s, j)}, centres=[(j, (0, 0, 0))], scheme="VESTA")
    return s, j, scene


@pytest.mark.parametrize("name, element, n_vertices, n_faces", [
    ("SrTiO3 (cubic perovskite)", "Ti", 6, 8),  # TiO6 octahedron
    ("ZnS (zincblende)", "Zn", 4, 4),  # ZnS4 tetrahedron
    ("MgAl2O4 (spinel)", "Mg", 4, 4),
    ("TiO2 (rutile)", "Ti", 6, 8),
])
def test_polyhedron_vertex_counts(name, element, n_vertices, n_faces):
    s, j, scene = _target_polyhedron(name, element)
    assert len(scene.polyhedra) == 1
    poly = scene.polyhedra[0]
    assert poly.n_vertices == n_vertices and len(poly.faces) == n_faces and poly.index == j
    assert len(poly.edges()) == (12 if n_vertices == 6 else 6)  # octahedron / tetrahedron edges
    assert 0 < poly.opacity < 1  # translucent
    centre = np.asarray(s[j].coords)
    lengths = np.linalg.norm(poly.vertices - centre, axis=1)
    assert np.ptp(lengths) < 0.2 and lengths.min() > 1.5  # ligands at the bond length, all alike here
    # Bonds to every ligand, each in two halves (centre colour, ligand colour), and every vertex has an atom.
    assert len(scene.bonds) == 2 * n_vertices
    assert {b.color for b in scene.bonds[0::2]} == {poly.color}
    drawn = np.array([a.position for a in scene.atoms])
    for v in poly.vertices:
        assert np.min(np.linalg.norm(drawn - v, axis=1)) < 1e-6


def test_polyhedron_faces_cover_the_hull_and_flat_cases():
    octa = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=float)
    faces = polyhedron_faces(octa)
    assert faces.shape == (8, 3) and set(faces.ravel()) == set(range(6))
    square = np.array([[1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]], dtype=float)  # square planar: a fan
    assert polyhedron_faces(square).shape == (2, 3)
    assert polyhedron_faces(square[:2]).shape == (0, 3)


def test_polyhedra_in_attention_scene_modes(insp):
    s = get_example("SrTiO3 (cubic perovskite)")
    scene = attention_scene(insp, 0, 1, head=0)
    assert polyhedron_centres(scene, "none") == []
    assert polyhedron_centres(scene, "target") == [(1, (0, 0, 0))]
    assert polyhedron_centres(scene, "element") == [(1, (0, 0, 0))]  # one Ti per cell
    every = polyhedron_centres(scene, "all")
    assert len(every) == sum(1 for a in scene.atoms if a.in_cell) == 15
    with pytest.raises(ValueError):
        polyhedron_centres(scene, "some")
    envs = {j: coordination_environment(s, j) for j in range(len(s))}
    add_polyhedra(scene, envs, centres=polyhedron_centres(scene, "target"))
    assert [p.n_vertices for p in scene.polyhedra] == [6]
    assert default_polyhedron_elements(envs) == ["Ti"]  # not Sr (CN 12) nor O (CN 2)
    zns = get_example("ZnS (zincblende)")
    assert default_polyhedron_elements({j: coordination_environment(zns, j) for j in range(len(zns))}) == ["Zn"]


def test_color_schemes_and_legend():
    assert element_color(8, "VESTA") != element_color(8, "Jmol")
    assert set(COLOR_SCHEMES) == {"VESTA", "Jmol"}
    with pytest.raises(ValueError):
        element_color(8, "pastel")
    s = get_example("SrTiO3 (cubic perovskite)")
    for scheme in COLOR_SCHEMES:
        legend = scene_from_structure(s, scheme=scheme).legend()
        assert [el for el, _ in legend] == ["O", "Ti", "Sr"]  # by atomic number
        assert dict(legend)["O"] == element_color(8, scheme)
    assert attention_color(0.0) != attention_color(1.0)


def test_axes_long_labelled_and_clear_of_the_target(insp):
    scene = attention_scene(insp, 0, 1, head=0)
    target = next(a for a in scene.atoms if a.role == "target")
    for arrow in scene.arrows:
        length = float(np.linalg.norm(arrow.end - arrow.start))
        assert length >= 2.4 and length - target.radius > 1.5  # most of each arrow is outside the atom
    axis_labels = [lab for lab in scene.labels if lab.kind == "axis"]
    assert [lab.text for lab in axis_labels] == ["e1", "e2", "e3"]
    assert [lab.color for lab in axis_labels] == list(AXIS_COLORS)
    for arrow, lab in zip(scene.arrows, axis_labels):  # labels just beyond the tips
        assert np.linalg.norm(lab.position - arrow.start) > np.linalg.norm(arrow.end - arrow.start)
    assert [lab.text for lab in scene.labels if lab.kind == "lattice"] == ["a", "b", "c"]


def test_attention_as_opacity_size_and_colour(insp):
    scene = attention_scene(insp, 0, 1, head=0, color_by="attention")
    others = [a for a in scene.atoms if a.role == "neighbor"]
    by_weight = sorted(others, key=lambda a: a.weight)
    light, heavy = by_weight[0], by_weight[-1]
    assert heavy.opacity > light.opacity
    assert heavy.radius / element_radius(8 if heavy.element == "O" else 38 if heavy.element == "Sr" else 22) > \
        light.radius / element_radius(8 if light.element == "O" else 38 if light.element == "Sr" else 22)
    assert heavy.color != heavy.element_color  # coloured by weight, the legend keeps element colours
    assert scene.colorbar is not None and scene.colorbar.vmax == pytest.approx(max(a.weight for a in others))
    assert dict(scene.legend())["O"] == element_color(8)
    with pytest.raises(ValueError):
        attention_scene(insp, 0, 1, head=0, color_by="mood")


def test_supercell_view():
    s = get_example("SrTiO3 (cubic perovskite)")
    scene = scene_from_structure(s, repeat=(2, 2, 2))
    counts = pd.Series([a.element for a in scene.atoms]).value_counts().to_dict()
    assert counts == {"Sr": 27, "Ti": 8, "O": 36}
    assert len(scene.cell) == 54  # every edge of the 2×2×2 grid of cells, once
    assert len(cell_edges(np.eye(3))) == 12
    with pytest.raises(ValueError):
        scene_from_structure(s, repeat=(0, 1, 1))


def test_views_along_axes(insp):
    lat = np.array([[4.0, 0, 0], [1.0, 5.0, 0], [0.5, 0.3, 6.0]])
    assert view_spec(lat, "oblique") is None
    for k, name in enumerate("abc"):
        view = view_spec(lat, name)
        assert np.allclose(view.direction, lat[k] / np.linalg.norm(lat[k]))
        assert abs(np.dot(view.up, view.direction)) < 1e-9
        rot = view_rotation(view)
        assert np.allclose(rot @ view.direction, [0, 0, 1])  # the named axis points at the viewer
        assert np.allclose(rot @ rot.T, np.eye(3)) and np.linalg.det(rot) == pytest.approx(1.0)
        x, y, z, w = rotation_quaternion(rot)
        from_q = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                           [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                           [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
        assert np.allclose(from_q, rot, atol=1e-9)
    frame = insp.layers[0].frames[1, 0]
    assert np.allclose(view_spec(insp.lattice, "e1", frame).direction, frame[0])
    assert view_spec(insp.lattice, "e1", None) is None
    with pytest.raises(ValueError):
        view_spec(lat, "d")


def test_picked_atom_from_clicks(insp):
    s = get_example("SrTiO3 (cubic perovskite)")
    scene = attention_scene(insp, 0, 1, head=0)
    add_polyhedra(scene, {1: coordination_environment(s, 1)}, centres=[(1, (0, 0, 0))])
    k = next(i for i, a in enumerate(scene.atoms) if a.element == "O")
    j = scene.atoms[k].index
    assert picked_atom(scene, k) == j  # 3Dmol.js reports the scene-atom index
    assert picked_atom(scene, {"customdata": k, "x": 0, "y": 0, "z": 0}) == j  # a Plotly point
    assert picked_atom(scene, {"customdata": [k]}) == j
    assert picked_atom(scene, {"selection": {"points": [{"customdata": k}]}}) == j  # st.plotly_chart's state
    p = scene.atoms[k].position
    assert picked_atom(scene, {"x": p[0], "y": p[1], "z": p[2]}) == j
    assert picked_atom(scene, {"x": p[0] + 1.0, "y": p[1], "z": p[2]}) is None
    assert picked_atom(scene, {"selection": {"points": []}}) is None
    assert picked_atom(scene, None) is None and picked_atom(scene, 10**6) is None and picked_atom(scene, "x") is None
    ligand = next((i for i, a in enumerate(scene.atoms) if a.role == "ligand"), None)
    if ligand is not None:
        assert picked_atom(scene, ligand) is None


def _decorated_scene(insp, view="a"):
    s = get_example("SrTiO3 (cubic perovskite)")
    scene = attention_scene(insp, 0, 1, head=0, scheme="VESTA")
    add_polyhedra(scene, {1: coordination_environment(s, 1)}, centres=[(1, (0, 0, 0))], scheme="VESTA")
    scene.view = view_spec(insp.lattice, view, insp.layers[0].frames[1, 0])
    return scene


def test_plotly_draws_polyhedra_legend_colorbar_labels_and_view(insp):
    scene = _decorated_scene(insp)
    fig = render_plotly.scene_figure(scene)
    meshes = [t for t in fig.data if t.type == "mesh3d"]
    assert len(meshes) == 1 and len(meshes[0].x) == 6 and len(meshes[0].i) == 8
    assert 0 < meshes[0].opacity < 1
    legend = [t.name for t in fig.data if t.type == "scatter3d" and t.legendgroup == "elements"]
    assert legend == ["O", "Ti", "Sr"]
    bars = [t for t in fig.data if t.type == "scatter3d" and t.mode == "markers" and t.marker.showscale]
    assert len(bars) == 1 and bars[0].marker.colorbar.title.text == "attention weight"
    texts = [x for t in fig.data if t.type == "scatter3d" and t.mode == "text" for x in t.text]
    assert {"<b>a</b>", "<b>b</b>", "<b>c</b>", "<b>e1</b>", "<b>e2</b>", "<b>e3</b>"} <= set(texts)
    cam = fig.layout.scene.camera
    assert cam.projection.type == "orthographic"
    eye = np.array([cam.eye.x, cam.eye.y, cam.eye.z])
    assert np.allclose(eye / np.linalg.norm(eye), scene.view.direction)
    assert render_plotly.png_config("x")["toImageButtonOptions"] == {"format": "png", "filename": "x", "scale": 2}
    grid = render_plotly.grid_figure([scene] * 4, cols=2)
    assert "scene4" in grid.layout and sum(t.type == "mesh3d" for t in grid.data) == 4


def test_3dmol_draws_polyhedra_overlays_png_and_clicks(insp):
    scene = _decorated_scene(insp)
    view = render_3dmol.scene_view(scene, js_url="/app/static/3dmol/3Dmol-min.js", pick_id="att_scene",
                                   file_stem="SrTiO3_atom1")
    html = render_3dmol.view_html(view)
    assert html.count("addCustom") == 1  # the octahedron mesh
    assert html.count("cfPick") >= len([a for a in scene.atoms if a.index >= 0])  # click callbacks
    assert '"clickable": true' in html
    for element in ("O", "Ti", "Sr"):
        assert f">{element}</span>" in html  # legend chips
    assert "cf-colorbar" in html and "attention weight" in html
    assert "cf-png" in html and "pngURI()" in html and '"SrTiO3_atom1.png"' in html
    assert "setView(s)" in html  # the view along a
    for text in ('"e1"', '"e2"', '"e3"', '"a"', '"b"', '"c"'):
        assert f"addLabel({text}" in html
    assert '"inFront": true' in html
    mesh = render_3dmol.polyhedron_mesh(scene.polyhedra[0].vertices, scene.polyhedra[0].faces,
                                        scene.polyhedra[0].center)
    assert len(mesh["vertexArr"]) == 24 and len(mesh["faceArr"]) == 24
    centre = scene.polyhedra[0].center
    for k in range(0, 24, 3):  # normals point outwards
        p = np.mean([[mesh["vertexArr"][k + i][c] for c in "xyz"] for i in range(3)], axis=0)
        n = np.array([mesh["normalArr"][k][c] for c in "xyz"])
        assert np.dot(n, p - centre) > 0
    page = render_3dmol.standalone_html(view, title="t")
    assert "cf-png" in page and "addCustom" in page
    if render_3dmol.local_js_path() is not None:
        assert "$3Dmolpromise = Promise.resolve()" in page and "cdn.jsdelivr" not in page.split("<body")[0]
    grid = render_3dmol.view_html(render_3dmol.grid_view([scene] * 4, rows=2))
    assert "rows: 2, cols: 2" in grid and "cf-png" in grid and grid.count("setView(s)") == 4
    # Every panel gets the same invisible corners, so zoomTo gives all panels one scale.
    small = attention_scene(insp, 0, 1, head=0, neighbor_cutoff=0.9)
    strip = render_3dmol.view_html(render_3dmol.grid_view([scene, small]))
    corners = re.findall(r'viewergrid_\d+\[0\]\[(\d)\]\.addSphere\((\{[^}]*\}, "radius": 0\.01, "opacity": 0\.0)', strip)
    assert sorted(c for c, _ in corners) == ["0", "0", "1", "1"]
    assert {spec for c, spec in corners if c == "0"} == {spec for c, spec in corners if c == "1"}
    plain = render_3dmol.view_html(render_3dmol.scene_view(attention_scene(insp, 0, 1, head=0)))
    assert "cfPick" not in plain and "setView(s)" not in plain


def test_layer_head_grid_small_multiples(insp):
    """Rows = layers, columns = heads, each panel the scene of that (layer, head): one shared scale, the target
    atom outlined, the frame axes as arrows, and each panel's projection the view's rotation."""
    n_layers, n_heads = len(insp.layers), insp.layers[0].sigma.shape[1]
    ti = 1  # SrTiO3: Sr 0, Ti 1, O 2-4
    scenes = [[attention_scene(insp, k, ti, h, title=f"L{k + 1} h{h}") for h in range(n_heads)]
              for k in range(n_layers)]
    fig = render_plotly.layer_head_grid_figure(scenes, row_titles=[f"layer {k + 1}" for k in range(n_layers)],
                                               col_titles=[f"head {h}" for h in range(n_heads)])
    xaxes = [k for k in fig.layout if k.startswith("xaxis")]
    assert len(xaxes) == n_layers * n_heads
    texts = [a.text for a in fig.layout.annotations]
    assert "layer 1" in texts and f"head {n_heads - 1}" in texts
    atom_traces = [t for t in fig.data if t.name == "atoms"]
    assert len(atom_traces) == n_layers * n_heads
    arrows = [t for t in fig.data if t.name in ("e1", "e2", "e3")]
    assert len(arrows) == 3 * n_layers * n_heads  # max frames: every head has a frame
    # One scale for all panels, and equal aspect.
    ranges = {tuple(fig.layout[k].range) for k in xaxes}
    assert len(ranges) == 1
    assert fig.layout.yaxis2.scaleanchor == "x2"
    # Panel (layer 2, head 3) is that scene: same atom count, target outlined, opacities differ by head.
    panel = 1 * n_heads + 3
    trace = atom_traces[panel]
    assert {p for p, _ in trace.customdata} == {panel}
    assert len(trace.x) == len(scenes[1][3].atoms)
    target = [k for k, a in enumerate(scenes[1][3].atoms) if a.role == "target"]
    outlined = [int(k) for (_, k), w in zip(trace.customdata, trace.marker.line.width) if w > 0]
    assert outlined == target
    assert not np.allclose(sorted(atom_traces[0].marker.opacity), sorted(atom_traces[1].marker.opacity))
    # Projection: the e1 view puts e1 straight at the viewer (its 2D arrow shrinks to a point).
    from crystalframer.analysis.attention import frame_of
    from crystalframer.viz.scene import view_spec

    s = scenes[0][0]
    s.view = view_spec(insp.lattice, "e1", frame_of(insp, 0, ti, 0))
    arrows2d = render_plotly.project_scene(s)["arrows"]
    assert np.linalg.norm(arrows2d[0, 1, :2] - arrows2d[0, 0, :2]) < 1e-9
    assert np.linalg.norm(arrows2d[1, 1, :2] - arrows2d[1, 0, :2]) > 0.5
