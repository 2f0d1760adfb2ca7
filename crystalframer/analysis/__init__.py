"""Analysis behind the app: plain functions on models, structures and inspections (no Streamlit).

Submodules: ``structures`` (summaries), ``attention`` (neighbour tables, σ, exports), ``compare`` (frame methods,
coordination polyhedra, frame–bond alignment), ``perturb`` (perturbation sweeps).
"""

from crystalframer.analysis import attention, compare, perturb, structures

__all__ = ["attention", "compare", "perturb", "structures"]
