"""Visualisation for the app: renderer-independent scenes, py3Dmol and Plotly renderers, 2D charts.

The Streamlit helpers shared by the pages live in :mod:`crystalframer.app.ui`.
"""

from crystalframer.viz.scene import AXIS_COLORS, Scene, SceneArrow, SceneAtom, attention_scene, cell_edges, cell_images, structure_scene

__all__ = ["AXIS_COLORS", "Scene", "SceneArrow", "SceneAtom", "attention_scene", "cell_edges", "cell_images",
           "structure_scene"]
