"""Model hyperparameters as one dataclass that round-trips through JSON and YAML."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

FRAME_METHODS = ("none", "max", "weighted_pca", "static", "pca", "lattice")
ANGLE_FEATURE_PATHS = ("grid", "exact")


class ConfigError(ValueError):
    """A run configuration (file or override) with an unknown key or a value of the wrong kind."""


def closest_hint(name: str, valid: Iterable[str]) -> str:
    """``" (did you mean 'max_sites'?)"`` for the closest valid name, or ``""`` when nothing is close."""
    match = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def check_keys(cls: type, data: dict[str, Any], where: str | None = None, extra: Sequence[str] = ()) -> None:
    """Reject keys of ``data`` that are not fields of the dataclass ``cls`` (or in ``extra``), naming the closest."""
    valid = [f.name for f in fields(cls)] + list(extra)
    unknown = [k for k in data if k not in valid]
    if unknown:
        label = where or cls.__name__
        hints = "; ".join(f"{k!r}{closest_hint(k, valid)}" for k in unknown)
        raise ConfigError(f"unknown {label} key(s): {hints}; valid keys: {', '.join(sorted(valid))}")


@dataclass
class ModelConfig:
    """Every hyperparameter of CrystalFramer. Defaults are the paper's (docs/model.md §4).

    Lengths are in ångström. ``frame_method="none"`` gives the Crystalformer baseline.
    """

    frame_method: str = "max"
    num_layers: int = 4
    model_dim: int = 128
    num_heads: int = 8
    ff_dim: int = 512
    num_species: int = 98
    head_hidden_dim: int = 128
    n_targets: int = 1
    target_names: list[str] = field(default_factory=lambda: ["target"])
    target_units: list[str] = field(default_factory=lambda: [""])
    # Gaussian distance-decay attention (docs/model.md §2.2).
    scale_real: float = 1.4  # r0, Å
    gauss_lb_real: float = 0.5  # b, lower bound of the positive map
    positive_func_beta: float = 0.1
    # R_c = cutoff_sigmas · r0/√b ≈ 10.9 Å: predictions within 1e-5 eV/atom of the converged lattice sum
    # (docs/model.md); checkpoints record their own value (those trained before this default used 3.5).
    cutoff_sigmas: float = 5.5
    # Opt-in per-head cutoffs (docs/model.md §1.2): head h of atom i weighs an image-edge by a smooth switch that is 1
    # within (cutoff_sigmas − cutoff_taper)·σ_ih and falls to 0 at cutoff_sigmas·σ_ih. Faster (fewer image-edges per
    # head) but not the default: heads whose q·k favours a distant atom lose images that matter (§6.2).
    head_cutoff: bool = False
    cutoff_taper: float = 0.5
    # Value position encodings (docs/model.md §2.4).
    dist_bases: int = 64
    dist_max_factor: float = 10.0  # r_max = dist_max_factor * r0
    dist_width_scale: float = 1.0
    dist_coef: float = 1.0
    angle_bases: int = 64  # per frame axis
    angle_width_scale: float = 4.0
    angle_coef: float = 1.0
    cos_abs: bool = False
    # "grid": tabulated projected basis with a proven interpolation bound (fast, default); "exact": every Gaussian.
    angle_features: str = "grid"
    angle_grid_tol: float = 1e-7  # bound on |g̃(c) − g(c)| for every angle Gaussian (docs/model.md)
    # Frames (docs/model.md §3; §3.4 for the PCA fields).
    symm_break_noise: float = 1e-5
    pca_unit_vectors: bool = False
    pca_det_threshold: float = 1e-6  # relative: det(Σ) ≤ this·(tr Σ/3)^3 counts as rank-deficient
    # Engineering.
    max_atoms: int = 2000

    def __post_init__(self) -> None:
        if self.frame_method not in FRAME_METHODS:
            raise ValueError(f"frame_method must be one of {FRAME_METHODS}, got {self.frame_method!r}")
        if self.angle_features not in ANGLE_FEATURE_PATHS:
            raise ValueError(f"angle_features must be one of {ANGLE_FEATURE_PATHS}, got {self.angle_features!r}")
        if self.head_cutoff and not 0 < self.cutoff_taper < self.cutoff_sigmas:
            raise ValueError(f"cutoff_taper must be in (0, cutoff_sigmas), got {self.cutoff_taper}")
        if not self.angle_grid_tol > 0:
            raise ValueError(f"angle_grid_tol must be positive, got {self.angle_grid_tol}")
        if self.model_dim % self.num_heads:
            raise ValueError("model_dim must be divisible by num_heads")
        if len(self.target_names) != self.n_targets:
            if self.target_names == ["target"] and self.n_targets > 1:
                self.target_names = [f"target_{k}" for k in range(self.n_targets)]
            else:
                raise ValueError("target_names must have n_targets entries")
        if len(self.target_units) != self.n_targets:
            if self.target_units == [""]:
                self.target_units = [""] * self.n_targets
            else:
                raise ValueError("target_units must have n_targets entries")

    # ----- derived quantities -------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.model_dim // self.num_heads

    @property
    def head_cut(self) -> tuple[float, float]:
        """(x_out, x_in) on the log distance factor x = a_ih·|r|² = −|r|²/2σ_ih²: an image-edge leaves head h at
        x ≤ x_out = −cutoff_sigmas²/2 and has full weight from x ≥ x_in = −(cutoff_sigmas − cutoff_taper)²/2;
        (−inf, −inf) without per-head cutoffs."""
        if not self.head_cutoff:
            return float("-inf"), float("-inf")
        return -0.5 * self.cutoff_sigmas**2, -0.5 * (self.cutoff_sigmas - self.cutoff_taper) ** 2

    @property
    def uses_angles(self) -> bool:
        return self.frame_method != "none" and self.angle_bases > 0

    @property
    def sigma_max(self) -> float:
        """Largest Gaussian width any head can produce, r0/sqrt(b) (Å)."""
        return self.scale_real / math.sqrt(self.gauss_lb_real)

    @property
    def cutoff(self) -> float:
        """Neighbour-sphere radius R_c (Å)."""
        return self.cutoff_sigmas * self.sigma_max

    # ----- presets ------------------------------------------------------------------------
    @classmethod
    def default(cls, **overrides: Any) -> "ModelConfig":
        """The paper's default CrystalFramer (max frames, 64 angle bases)."""
        return cls(**overrides)

    @classmethod
    def light(cls, **overrides: Any) -> "ModelConfig":
        """The paper's lightweight preset: 16 angle bases, s_ang=1, c_ang=6, c_dist=1.5."""
        base = dict(angle_bases=16, angle_width_scale=1.0, angle_coef=6.0, dist_coef=1.5)
        base.update(overrides)
        return cls(**base)

    @classmethod
    def crystalformer(cls, **overrides: Any) -> "ModelConfig":
        """The Crystalformer baseline (no frames)."""
        base: dict[str, Any] = dict(frame_method="none")
        base.update(overrides)
        return cls(**base)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "ModelConfig":
        presets = {"default": cls.default, "light": cls.light, "crystalformer": cls.crystalformer}
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(presets)}")
        return presets[name](**overrides)

    # ----- serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        check_keys(cls, data)
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        return cls.from_dict(json.loads(text))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> "ModelConfig":
        return cls.from_dict(yaml.safe_load(text) or {})

    def save(self, path: str | Path) -> None:
        path = Path(path)
        text = self.to_yaml() if path.suffix in (".yaml", ".yml") else self.to_json()
        path.write_text(text)

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        path = Path(path)
        text = path.read_text()
        return cls.from_yaml(text) if path.suffix in (".yaml", ".yml") else cls.from_json(text)
