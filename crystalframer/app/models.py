"""Which models the app can offer, and loading them.

A model reference is a string:

* ``ckpt:<name>`` — a checkpoint directory ``<dir>/<name>/model.safetensors`` found in the checkpoint search path:
  the directories in ``$CRYSTALFRAMER_CHECKPOINTS`` (``os.pathsep``-separated) when that variable is set, else the
  library's shipped ``checkpoints/`` folder;
* ``path:<file or dir>`` — any checkpoint file or directory;
* ``fresh:<frame_method>`` — a freshly initialised, **untrained** model (seeded, a_ih statistics calibrated on the
  built-in examples). Its predictions are meaningless numbers, but its attention and frames are real computations,
  which is what the analysis pages need when no trained checkpoint exists.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from crystalframer.model.checkpoint import ENV_VAR, available_checkpoints, checkpoint_dirs, load_model, read_metadata
from crystalframer.model.config import ModelConfig
from crystalframer.model.model import CrystalFramer

FRESH_METHODS = ("max", "weighted_pca", "none")
FRESH_SEED = 0

__all__ = ["ENV_VAR", "checkpoint_dirs", "available_checkpoints", "model_refs", "describe_ref", "build_model",
           "fresh_model", "weights_fingerprint", "model_summary", "provenance", "is_untrained", "frame_method_of", "companion_ref"]


def weights_fingerprint(model: CrystalFramer) -> str:
    """A hash of the config, weights and buffers: a cache key that cannot collide the way ``id()`` of a
    collected object can (two sessions, or a model freed and another allocated at the same address)."""
    digest = hashlib.blake2b(model.config.to_json().encode(), digest_size=16)
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def model_refs(include_fresh: bool = True) -> list[str]:
    refs = [f"ckpt:{name}" for name in available_checkpoints()]
    if include_fresh:
        refs += [f"fresh:{m}" for m in FRESH_METHODS]
    return refs


def describe_ref(ref: str) -> str:
    kind, _, value = ref.partition(":")
    if kind == "ckpt":
        return value
    if kind == "path":
        return Path(value).name or value
    if kind == "fresh":
        return f"fresh untrained model ({value} frames) — NOT trained" if value != "none" else \
            "fresh untrained model (no frames) — NOT trained"
    return ref


def fresh_model(frame_method: str = "max", seed: int = FRESH_SEED) -> CrystalFramer:
    """A seeded, calibrated, untrained model (eval mode). Deterministic for a given seed."""
    from crystalframer.examples import get_example, list_examples

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = CrystalFramer(ModelConfig(frame_method=frame_method, target_names=["untrained_output"],
                                          target_units=["arbitrary"]))
    finally:
        torch.random.set_rng_state(state)
    model.calibrate([get_example(name) for name in list_examples()])
    model.eval()
    info = {"untrained": True, "note": f"fresh initialisation, seed {seed}"}
    model.checkpoint_info = {"info": info, "path": "", "code_version": ""}
    return model


def build_model(ref: str, device: str = "auto") -> CrystalFramer:
    kind, _, value = ref.partition(":")
    if kind == "ckpt":
        if value not in available_checkpoints():
            raise FileNotFoundError(f"checkpoint {value!r} not found in {[str(p) for p in checkpoint_dirs()]}")
        return load_model(value, device=device)
    if kind == "path":
        return load_model(value, device=device)
    if kind == "fresh":
        from crystalframer.model.model import resolve_device
        return fresh_model(value).to(resolve_device(device))
    raise ValueError(f"unknown model reference {ref!r}")


def is_untrained(model: CrystalFramer) -> bool:
    info = model.checkpoint_info
    return bool((info.get("info") or {}).get("untrained"))


def _scalar(value: Any) -> Any:
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
        return value[-1]
    return value


def provenance(model: CrystalFramer) -> dict[str, Any]:
    """Training facts found in the checkpoint's info (whatever the trainer recorded), compactly.

    Understands the library trainer's fields (``data``, ``epochs_done``, ``val_mae``, ``kind``) and the fine-tune
    page's (``dataset``, ``n_train``, ``n_val``, ``metrics``). Long lists (split ids) are never included.
    """
    info = model.checkpoint_info.get("info") or {}
    out: dict[str, Any] = {}
    data = info.get("data")
    if isinstance(data, dict):
        out["data"] = data.get("kind") or data.get("path")
        out["n_train"], out["n_val"] = data.get("n_train"), data.get("n_val")
    if info.get("dataset"):
        out["data"] = info["dataset"]
    for key in ("n_train", "n_val"):
        if info.get(key) is not None:
            out[key] = info[key]
    epochs = info.get("epochs_done", info.get("epochs_run"))
    if epochs is not None:
        out["epochs"] = epochs
    metrics = info.get("metrics") if isinstance(info.get("metrics"), dict) else {}
    val = metrics.get("val_mae", info.get("val_mae"))
    if val is not None:
        out["val_mae"] = _scalar(val)
    if info.get("kind"):
        out["checkpoint_kind"] = info["kind"]
    if info.get("finetuned_from") or info.get("base_model"):
        out["finetuned_from"] = info.get("base_model") or info.get("finetuned_from")
    return {k: v for k, v in out.items() if v not in (None, "")}


def model_summary(model: CrystalFramer) -> dict[str, Any]:
    cfg = model.config
    meta = model.checkpoint_info
    return {
        "frame_method": cfg.frame_method,
        "layers": cfg.num_layers,
        "heads": cfg.num_heads,
        "targets": ", ".join(f"{n} [{u}]" if u else n for n, u in zip(cfg.target_names, cfg.target_units)),
        "parameters": model.num_trainable_parameters(),
        "device": str(model.device),
        "untrained": is_untrained(model),
        "training": provenance(model),
        "path": meta.get("path", ""),
        "code_version": meta.get("code_version", ""),
    }


def frame_method_of(ref: str) -> str | None:
    """The frame method of a model reference, read from checkpoint metadata (no weights loaded)."""
    kind, _, value = ref.partition(":")
    try:
        if kind == "fresh":
            return value
        if kind == "ckpt":
            path = available_checkpoints().get(value)
            return None if path is None else read_metadata(path)["config"].get("frame_method", "max")
        if kind == "path":
            return read_metadata(value)["config"].get("frame_method", "max")
    except Exception:  # unreadable checkpoints are reported when loaded, not here
        return None
    return None


def companion_ref(ref: str, refs: list[str]) -> str | None:
    """Another model of the same kind to compare with: weighted-PCA for a max model, max otherwise."""
    kind = ref.partition(":")[0]
    method = frame_method_of(ref)
    wanted = ["weighted_pca", "max"] if method == "max" else ["max", "weighted_pca"]
    candidates = [r for r in refs if r != ref and r.partition(":")[0] == kind]
    for target in wanted:
        for other in candidates:
            if other != ref and frame_method_of(other) == target and target != method:
                return other
    return None
