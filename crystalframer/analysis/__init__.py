"""Analysis functions behind the app: plain functions on models, structures and inspections (no Streamlit).

Submodules: ``models`` (which checkpoints exist, loading), ``structures`` (summaries), ``uploads`` (parsing user
files with clear errors), ``attention`` (neighbour tables, σ, exports), ``compare`` (frame methods, coordination
polyhedra, frame–bond alignment), ``perturb`` (perturbation sweeps).
"""

from . import attention, compare, models, perturb, structures, uploads

__all__ = ["attention", "compare", "models", "perturb", "structures", "uploads"]
