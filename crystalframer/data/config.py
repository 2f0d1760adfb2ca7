"""Where datasets and caches live.

- ``CRYSTALFRAMER_DATA``: root of the shared datasets (default ``<repo>/../shared/data`` when that folder exists).
- ``CRYSTALFRAMER_CACHE``: cache of parsed records and graphs (default ``~/.cache/crystalframer``).
"""

from __future__ import annotations

import os
from pathlib import Path

from crystalframer.data.errors import DataError

DATA_ENV = "CRYSTALFRAMER_DATA"
CACHE_ENV = "CRYSTALFRAMER_CACHE"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_ROOT = REPO_ROOT.parent / "shared" / "data"
DEFAULT_CACHE_ROOT = Path("~/.cache/crystalframer")


def data_root() -> Path | None:
    """The dataset root from ``$CRYSTALFRAMER_DATA``, else ``<repo>/../shared/data`` if present, else ``None``."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return DEFAULT_DATA_ROOT if DEFAULT_DATA_ROOT.is_dir() else None


def cache_root() -> Path:
    """The cache folder from ``$CRYSTALFRAMER_CACHE``, else ``~/.cache/crystalframer`` (not created here)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else DEFAULT_CACHE_ROOT.expanduser()


def dataset_path(*parts: str) -> Path:
    """``data_root()/parts``; raises :class:`DataError` with a hint when the root or the file is missing."""
    root = data_root()
    if root is None:
        raise DataError(f"no dataset root: set ${DATA_ENV} to the folder holding the datasets "
                        f"(default {DEFAULT_DATA_ROOT} does not exist)")
    path = root.joinpath(*parts)
    if not path.exists():
        raise DataError(f"dataset file {path} not found (dataset root {root}, from ${DATA_ENV} or the default)")
    return path


def mp_megnet_path() -> Path:
    """MEGNet MP-2018.6.1 train/val structures (34,499 rows, ``split`` column)."""
    return dataset_path("mp_megnet", "mp_megnet_trainval.csv.gz")


def mp_sample_path() -> Path:
    """97-structure MP fixture (``formation_energy_per_atom``, ``band_gap``)."""
    return dataset_path("mp_megnet", "mp_sample.csv.gz")


def mp_elasticity_path() -> Path:
    """3,191 MP elasticity structures (``K_VRH``, ``G_VRH`` in GPa, ``poisson_ratio``)."""
    return dataset_path("mp_megnet", "mp_elasticity.csv.gz")


def jarvis_sample_path() -> Path:
    """Folder of 70 JARVIS POSCARs with ``id_prop.csv`` (50 labelled band gaps)."""
    return dataset_path("jarvis_sample")


def castelli_path(split: str = "val") -> Path:
    """Castelli cubic perovskites, ``split`` is ``"val"`` or ``"test"`` (the source's file names)."""
    return dataset_path("castelli_perovskites", f"{split}.csv.gz")


def carbon24_path(split: str = "val") -> Path:
    """Carbon-24 polymorphs, ``split`` is ``"val"`` or ``"test"`` (the source's file names)."""
    return dataset_path("carbon_24", f"{split}.csv.gz")
