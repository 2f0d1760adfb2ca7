"""Self-describing checkpoints: one safetensors file with the config and provenance in its metadata.

Never unpickles: weights are read with safetensors, metadata is JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from crystalframer.model.config import ModelConfig
from crystalframer.model.model import CrystalFramer, resolve_device

FORMAT_NAME = "crystalframer-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
ENV_VAR = "CRYSTALFRAMER_CHECKPOINTS"
SHIPPED_PACKAGE = "crystalframer._shipped_checkpoints"  # the repo's checkpoints/ folder, installed as package data


def _shipped_dir() -> Path:
    """The shipped checkpoints: ``checkpoints/`` of a checkout, or the copy a (non-editable) install carries."""
    checkout = Path(__file__).resolve().parents[2] / "checkpoints"
    if checkout.is_dir():
        return checkout
    from importlib.util import find_spec

    try:
        spec = find_spec(SHIPPED_PACKAGE)
    except ModuleNotFoundError:
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else checkout


SHIPPED_DIR = _shipped_dir()


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded, with the reason."""


def code_version() -> str:
    """Package version plus the git commit when run from a checkout."""
    from crystalframer import __version__

    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


def save_checkpoint(model: CrystalFramer, path: str | Path, info: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to ``path`` (a .safetensors file, or a directory that gets ``model.safetensors``).

    ``info`` holds provenance (dataset, split, metrics, training command...). Written atomically: a crash never
    leaves a half-written checkpoint behind.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        path.mkdir(parents=True, exist_ok=True)
        path = path / WEIGHTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "config": model.config.to_json(),
        "code_version": code_version(),
        "info": json.dumps(info or {}, default=str),
    }
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=path.parent)
    os.close(fd)
    try:
        save_file(state, tmp, metadata=meta)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def checkpoint_dirs() -> list[Path]:
    """Where checkpoint names are looked up: the folders in ``$CRYSTALFRAMER_CHECKPOINTS`` (``os.pathsep``-separated)
    when it is set, else the shipped checkpoints."""
    value = os.environ.get(ENV_VAR, "").strip()
    if value:
        return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]
    return [SHIPPED_DIR]


def available_checkpoints() -> dict[str, Path]:
    """name → weights file for every ``<dir>/<name>/model.safetensors`` in :func:`checkpoint_dirs` (first wins).

    The one registry: ``load_model(name)``, ``crystalframer checkpoints`` and the app all use it.
    """
    found: dict[str, Path] = {}
    for root in checkpoint_dirs():
        if not root.is_dir():
            continue
        if (root / WEIGHTS_FILE).is_file():  # the variable may point straight at one checkpoint directory
            found.setdefault(root.name, root / WEIGHTS_FILE)
        for sub in sorted(root.iterdir()):
            if (sub / WEIGHTS_FILE).is_file():
                found.setdefault(sub.name, sub / WEIGHTS_FILE)
    return found


def list_shipped() -> list[str]:
    """Names :func:`load_model` resolves (see :func:`available_checkpoints`)."""
    return sorted(available_checkpoints())


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A checkpoint name (``mp-eform-max``, see :func:`available_checkpoints`), a directory holding
    ``model.safetensors``, or a ``.safetensors`` file. URLs are refused (download the file, then pass its path)."""
    text = str(name_or_path)
    if "://" in text:
        raise CheckpointError(f"{text}: checkpoints are not fetched from URLs; download the file and pass its path")
    candidate = Path(text).expanduser()
    if candidate.is_file():
        return candidate
    if candidate.is_dir() and (candidate / WEIGHTS_FILE).is_file():
        return candidate / WEIGHTS_FILE
    if candidate.is_dir():
        raise CheckpointError(f"{text} is a folder without {WEIGHTS_FILE}")
    found = available_checkpoints()
    if text in found:
        return found[text]
    if candidate.parent != Path(".") or text.endswith(".safetensors"):
        raise CheckpointError(f"{text}: checkpoint file not found")
    from crystalframer.model.config import closest_hint

    available = ", ".join(found) or "none"
    raise CheckpointError(f"no checkpoint named {text!r}{closest_hint(text, found)} (available: {available}; "
                          f"searched {', '.join(map(str, checkpoint_dirs()))})")


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Config, provenance and format fields of a checkpoint, without loading weights."""
    from safetensors import safe_open

    path = resolve_checkpoint(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint (corrupt or truncated?): {exc}") from exc
    if meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path} is a safetensors file but not a CrystalFramer checkpoint")
    version = int(meta.get("format_version", "0"))
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}; this CrystalFramer ({code_version()}) reads version "
            f"{FORMAT_VERSION}. Re-export it with a matching version.")
    return {"config": json.loads(meta["config"]), "info": json.loads(meta.get("info", "{}")),
            "code_version": meta.get("code_version", ""), "format_version": version, "path": str(path)}


# Config keys that older checkpoints carry and this version no longer has (dropped: never read by the model).
_OBSOLETE_CONFIG_KEYS = ("edge_chunk_size",)


def upgrade_config(data: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's stored config as this version reads it, predicting exactly as when it was saved.

    Checkpoints from before the ``angle_features`` option used every angle Gaussian, so they get the exact path;
    their cutoff is whatever ``cutoff_sigmas`` they recorded. Obsolete keys are dropped.
    """
    data = {k: v for k, v in data.items() if k not in _OBSOLETE_CONFIG_KEYS}
    data.setdefault("angle_features", "exact")
    data.setdefault("head_cutoff", False)  # before per-head cutoffs every head used the whole sphere
    return data


def load_model(name_or_path: str | Path, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> CrystalFramer:
    """Load a checkpoint (shipped name or path) into an eval-mode model. ``model.checkpoint_info`` holds provenance."""
    meta = read_metadata(name_or_path)
    path = Path(meta["path"])
    try:
        config = ModelConfig.from_dict(upgrade_config(meta["config"]))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has a config this version cannot read: {exc}") from exc
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} could not be read (corrupt or truncated?): {exc}") from exc
    model = CrystalFramer(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path} does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model = model.to(device=resolve_device(device), dtype=dtype)
    model.eval()
    model.checkpoint_info = {k: v for k, v in meta.items() if k != "config"}
    return model
