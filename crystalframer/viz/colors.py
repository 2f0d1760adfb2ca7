"""Element colours (Jmol scheme, from ASE's tables) and display radii."""

from __future__ import annotations

import numpy as np

__all__ = ["element_color", "element_radius", "hex_to_rgb"]


def element_color(z: int) -> str:
    from ase.data.colors import jmol_colors

    z = int(z)
    rgb = jmol_colors[z] if 0 < z < len(jmol_colors) else np.array([0.6, 0.6, 0.6])
    r, g, b = (int(round(255 * float(c))) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def element_radius(z: int) -> float:
    """A display radius (Å): the covalent radius, clamped to a readable range."""
    from ase.data import covalent_radii

    z = int(z)
    r = float(covalent_radii[z]) if 0 < z < len(covalent_radii) else 1.0
    return float(np.clip(r, 0.45, 1.6))


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    return int(color[0:2], 16), int(color[2:4], 16), int(color[4:6], 16)
