"""Element colours (Jmol or VESTA scheme, from pymatgen's tables; ASE's Jmol table as a fallback) and display
radii."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["COLOR_SCHEMES", "element_color", "element_radius", "hex_to_rgb", "attention_color", "ATTENTION_SCALE"]

COLOR_SCHEMES = ("VESTA", "Jmol")

# Attention colour scale (low → high weight): pale yellow → orange → dark red, readable on white.
ATTENTION_SCALE = ((0.0, "#fff5b1"), (0.35, "#fdae61"), (0.7, "#e6550d"), (1.0, "#7f0000"))


@lru_cache(maxsize=4)
def _scheme_table(scheme: str) -> dict[str, tuple[int, int, int]]:
    import yaml
    from importlib import resources

    for package in ("pymatgen.core", "pymatgen.vis"):
        try:
            text = resources.files(package).joinpath("ElementColorSchemes.yaml").read_text()
        except (ModuleNotFoundError, FileNotFoundError, OSError):
            continue
        table = yaml.safe_load(text).get(scheme)
        if table:
            return {el: tuple(int(v) for v in rgb) for el, rgb in table.items()}
    return {}


def element_color(z: int, scheme: str = "Jmol") -> str:
    """Hex colour of element ``z`` in the ``"Jmol"`` or ``"VESTA"`` scheme (grey for unknown elements)."""
    from ase.data import chemical_symbols
    from ase.data.colors import jmol_colors

    z = int(z)
    if scheme not in COLOR_SCHEMES:
        raise ValueError(f"colour scheme must be one of {COLOR_SCHEMES}, got {scheme!r}")
    symbol = chemical_symbols[z] if 0 < z < len(chemical_symbols) else ""
    rgb = _scheme_table(scheme).get(symbol)
    if rgb is None:
        unit = jmol_colors[z] if 0 < z < len(jmol_colors) else np.array([0.6, 0.6, 0.6])
        rgb = tuple(int(round(255 * float(c))) for c in unit)
    return "#%02x%02x%02x" % tuple(rgb)


def element_radius(z: int) -> float:
    """A display radius (Å): the covalent radius, clamped to a readable range."""
    from ase.data import covalent_radii

    z = int(z)
    r = float(covalent_radii[z]) if 0 < z < len(covalent_radii) else 1.0
    return float(np.clip(r, 0.45, 1.6))


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    return int(color[0:2], 16), int(color[2:4], 16), int(color[4:6], 16)


def attention_color(value: float) -> str:
    """Colour of a relative attention weight ``value`` in [0, 1] on :data:`ATTENTION_SCALE`."""
    v = float(np.clip(value, 0.0, 1.0))
    for (x0, c0), (x1, c1) in zip(ATTENTION_SCALE[:-1], ATTENTION_SCALE[1:]):
        if v <= x1:
            t = 0.0 if x1 == x0 else (v - x0) / (x1 - x0)
            a, b = np.array(hex_to_rgb(c0)), np.array(hex_to_rgb(c1))
            return "#%02x%02x%02x" % tuple(int(round(x)) for x in a + t * (b - a))
    return ATTENTION_SCALE[-1][1]
