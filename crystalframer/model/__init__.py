"""The model: configuration, distance/angle features, frames, attention, the network and its checkpoints.

Read in this order: ``config`` (every hyper-parameter), ``ops`` and ``geometry`` (segment reductions over packed
edge rows), ``features`` (Gaussian bases), ``frames`` (max / weighted-PCA / ... frames), ``attention`` (one
encoder block), ``model`` (:class:`CrystalFramer`), ``checkpoint`` (safetensors files and the name registry).
The maths is in docs/model.md.
"""

from crystalframer.model.config import FRAME_METHODS, ModelConfig
from crystalframer.model.model import CrystalFramer, Inspection, LayerInspection, resolve_device

__all__ = ["FRAME_METHODS", "ModelConfig", "CrystalFramer", "Inspection", "LayerInspection", "resolve_device"]
