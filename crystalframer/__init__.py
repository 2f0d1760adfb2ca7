"""CrystalFramer: SE(3)-invariant crystal property prediction with dynamic frames, in pure PyTorch."""

from crystalframer.model.checkpoint import CheckpointError, list_shipped, load_model, read_metadata, save_checkpoint
from crystalframer.model.config import FRAME_METHODS, ModelConfig
from crystalframer.graph import CrystalGraph, GraphBatch, build_graph, collate
from crystalframer.model.model import CrystalFramer, Inspection, LayerInspection, resolve_device
from crystalframer.structure import StructureError, to_arrays

__version__ = "0.1.0"

__all__ = [
    "CheckpointError", "list_shipped", "load_model", "read_metadata", "save_checkpoint", "FRAME_METHODS", "ModelConfig", "CrystalGraph", "GraphBatch", "build_graph", "collate", "CrystalFramer",
    "Inspection", "LayerInspection", "resolve_device", "StructureError", "to_arrays", "__version__",
]
