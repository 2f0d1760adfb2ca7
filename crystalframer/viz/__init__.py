"""Visualisation for the app: renderer-independent scenes, py3Dmol and Plotly renderers, 2D charts.

``ui`` holds the Streamlit helpers shared by the pages (imported only by the app).
"""

from .scene import AXIS_COLORS, Scene, SceneArrow, SceneAtom, attention_scene, cell_edges, cell_images, structure_scene

__all__ = ["AXIS_COLORS", "Scene", "SceneArrow", "SceneAtom", "attention_scene", "cell_edges", "cell_images",
           "structure_scene"]
