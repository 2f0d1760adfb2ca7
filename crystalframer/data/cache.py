"""Disk caches: parsed dataset tables and crystal graphs, both as plain ``.npz`` files (never pickle).

Layout under :func:`~crystalframer.data.config.cache_root` (``$CRYSTALFRAMER_CACHE`` or ``~/.cache/crystalframer``)::

    records/<reader>-<key>.npz        parsed rows of one source file (key: file sha256 + reader parameters)
    graphs/<tag>/shard-<hash>.npz     graphs, keyed per structure by a content hash

``<tag>`` covers the cache format version, the cutoff and a hash of the code that computes graphs
(``crystalframer/structure.py`` and ``neighbors.py``), so changing any of them never serves stale graphs.
A structure's key is the sha256 of its canonical content: (Z, occupancy) per site, Cartesian positions and lattice
rounded to 1e-8 Å, plus the tag (structures closer than that share a graph). Each ``build_graphs`` call that computes new graphs appends one shard holding
them (concatenated arrays + offsets); edge vectors are recomputed on load exactly as the neighbour search does.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Callable, Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from crystalframer import neighbors as _neighbors_module
from crystalframer import structure as _structure_module
from crystalframer.graph import CrystalGraph, build_graph
from crystalframer.neighbors import NeighborList
from crystalframer.structure import DEFAULT_MAX_ATOMS, NUM_SPECIES, CrystalArrays, StructureError
from crystalframer.data.config import cache_root
from crystalframer.data.errors import DataError, summarize_errors, warn
from crystalframer.data.table import ParsedTable, atomic_savez, load_table, save_table



class StructureRecord(Protocol):
    """What :func:`build_graphs` needs of a record (``records.StructureRecord`` has it); kept here so the cache
    does not depend on the readers that use it."""

    ident: str
    targets: dict[str, float]

    @property
    def structure(self) -> Any: ...

CACHE_FORMAT_VERSION = 2
ROUND_DECIMALS = 8  # canonical positions/lattice are rounded to 1e-8 Å before hashing


# ----- hashing ------------------------------------------------------------------------------------------------------
def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def params_key(*parts: Any) -> str:
    """Hex sha256 of JSON-serialised parameters (order matters)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def code_tag() -> str:
    """Hash of the source of the modules that turn a structure into a graph."""
    digest = hashlib.sha256()
    for module in (_structure_module, _neighbors_module):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def graph_tag(cutoff: float) -> str:
    """Folder name for graphs of one cutoff, cache format and graph code version."""
    return f"v{CACHE_FORMAT_VERSION}-{params_key(repr(float(cutoff)), code_tag())[:16]}"


def canonical_content(structure: Any) -> tuple[np.ndarray, ...]:
    """What a graph depends on: species entries per site, (Z, occupancy) per entry, Cartesian positions, lattice.

    Accepts a pymatgen ``Structure``, an ASE ``Atoms``, a :class:`~.table.PackedStructure` or a record.
    """
    if hasattr(structure, "canonical_content"):  # PackedStructure, or a record holding one
        return structure.canonical_content()
    if hasattr(structure, "get_atomic_numbers"):  # ASE Atoms (and subclasses such as pymatgen's MSONAtoms)
        z = np.asarray(structure.get_atomic_numbers(), dtype=np.int64)
        return (np.ones(len(z), dtype=np.int64), z, np.ones(len(z)),
                np.asarray(structure.get_positions(), dtype=np.float64),
                np.asarray(structure.cell.array, dtype=np.float64))
    counts, zs, occus = [], [], []
    for site in structure:
        items = site.species.items()
        counts.append(len(items))
        for sp, occ in items:
            zs.append(getattr(sp, "Z", 0))
            occus.append(float(occ))
    return (np.asarray(counts, dtype=np.int64), np.asarray(zs, dtype=np.int64), np.asarray(occus, dtype=np.float64),
            np.asarray(structure.cart_coords, dtype=np.float64), np.asarray(structure.lattice.matrix, dtype=np.float64))


def structure_key(structure: Any, cutoff: float, tag: str | None = None) -> str:
    """Content hash of ``structure`` (anything :func:`canonical_content` takes) for graphs built with ``cutoff``."""
    counts, z, occ, pos, lattice = canonical_content(structure)
    digest = hashlib.sha256((tag or graph_tag(cutoff)).encode())
    digest.update(np.asarray([len(pos), len(z)], dtype=np.int64).tobytes())
    for arr in (counts.astype(np.int64), z.astype(np.int64), np.round(occ, ROUND_DECIMALS) + 0.0,
                np.round(pos, ROUND_DECIMALS) + 0.0, np.round(lattice, ROUND_DECIMALS) + 0.0):
        digest.update(np.ascontiguousarray(arr).tobytes())
    return digest.hexdigest()


# ----- record (parsed table) cache --------------------------------------------------------------------------------
def cached_table(reader: str, key: str, build: Callable[[], ParsedTable], enabled: bool = True) -> ParsedTable:
    """Return the cached table ``records/<reader>-<key>.npz`` or build, store and return it."""
    if not enabled:
        return build()
    path = cache_root() / "records" / f"{reader}-{key[:32]}.npz"
    if path.exists():
        try:
            return load_table(path)
        except Exception as exc:  # a corrupt or foreign file: rebuild it
            warn(f"ignoring unreadable record cache {path}: {exc}")
    table = build()
    try:
        save_table(table, path)
    except OSError as exc:
        warn(f"could not write the record cache {path}: {exc}")
    return table


# ----- graph cache --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GraphParts:
    """The structure-dependent part of a :class:`CrystalGraph` (targets and ident come from the record)."""

    arrays: CrystalArrays
    neighbors: NeighborList


def _small_int(values: np.ndarray) -> np.ndarray:
    """``values`` in the smallest signed integer type that holds them."""
    if values.size == 0:
        return values.astype(np.int8)
    lo, hi = int(values.min()), int(values.max())
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return values.astype(dtype)
    return values.astype(np.int64)


def pack_graphs(keys: Sequence[str], parts: Sequence[GraphParts]) -> dict[str, np.ndarray]:
    """Concatenate graphs into flat arrays with per-graph atom and edge counts."""
    species = np.concatenate([p.arrays.species for p in parts])
    atom_idx, species_idx = np.nonzero(species)
    edges_per_atom = [np.bincount(p.neighbors.src, minlength=p.arrays.num_atoms) for p in parts]
    return {
        "format_version": np.asarray(CACHE_FORMAT_VERSION),
        "keys": np.asarray(keys, dtype="S64"),
        "atom_counts": np.asarray([p.arrays.num_atoms for p in parts], dtype=np.int64),
        "edge_counts": np.asarray([p.neighbors.num_edges for p in parts], dtype=np.int64),
        "cutoffs": np.asarray([p.neighbors.cutoff for p in parts], dtype=np.float64),
        "lattices": np.stack([p.arrays.lattice for p in parts]),
        "positions": np.concatenate([p.arrays.positions for p in parts]),
        "atomic_numbers": _small_int(np.concatenate([p.arrays.atomic_numbers for p in parts])),
        "species_atom": atom_idx.astype(np.int64),
        "species_index": species_idx.astype(np.int16),
        "species_value": species[atom_idx, species_idx],
        "edges_per_atom": _small_int(np.concatenate(edges_per_atom)),
        "edge_dst": _small_int(np.concatenate([p.neighbors.dst for p in parts])),
        "edge_image": _small_int(np.concatenate([p.neighbors.image for p in parts])),
    }


def unpack_graphs(arrays: dict[str, np.ndarray], select: Iterable[int]) -> dict[int, GraphParts]:
    """Rebuild the graphs at positions ``select`` of a packed shard."""
    atom_off = np.concatenate([[0], np.cumsum(arrays["atom_counts"])])
    edge_off = np.concatenate([[0], np.cumsum(arrays["edge_counts"])])
    species = np.zeros((int(atom_off[-1]), NUM_SPECIES))
    species[arrays["species_atom"], arrays["species_index"]] = arrays["species_value"]
    numbers = arrays["atomic_numbers"].astype(np.int64)
    per_atom = arrays["edges_per_atom"].astype(np.int64)
    out = {}
    for k in select:
        a0, a1, e0, e1 = atom_off[k], atom_off[k + 1], edge_off[k], edge_off[k + 1]
        positions, lattice = arrays["positions"][a0:a1], arrays["lattices"][k]
        src = np.repeat(np.arange(a1 - a0, dtype=np.int64), per_atom[a0:a1])
        # Edge vectors are recomputed on use by NeighborList.vec, with the arithmetic of neighbors.neighbor_list.
        out[k] = GraphParts(
            arrays=CrystalArrays(species=species[a0:a1], positions=positions, lattice=lattice,
                                 atomic_numbers=numbers[a0:a1]),
            neighbors=NeighborList.compact(src, arrays["edge_dst"][e0:e1], arrays["edge_image"][e0:e1], positions,
                                           lattice, float(arrays["cutoffs"][k])))
    return out


class GraphStore:
    """The graph shards of one cutoff: look graphs up by structure key, append new shards."""

    def __init__(self, cutoff: float, root: Path | None = None) -> None:
        self.cutoff = float(cutoff)
        self.tag = graph_tag(cutoff)
        self.folder = (root or cache_root()) / "graphs" / self.tag

    def shards(self) -> list[Path]:
        """Shard files, oldest first."""
        if not self.folder.is_dir():
            return []
        return sorted(self.folder.glob("shard-*.npz"), key=lambda p: (p.stat().st_mtime, p.name))

    def load(self, keys: Iterable[str]) -> dict[str, GraphParts]:
        """Cached graphs for as many of ``keys`` as the shards hold."""
        wanted = set(keys)
        found: dict[str, GraphParts] = {}
        for shard in self.shards():
            if not wanted:
                break
            try:
                found.update(self._load_shard(shard, wanted))
            except Exception as exc:  # corrupt or foreign file: ignore, graphs get recomputed
                warn(f"ignoring unreadable graph cache shard {shard}: {exc}")
            wanted -= found.keys()
        return found

    def _load_shard(self, shard: Path, wanted: set[str]) -> dict[str, GraphParts]:
        with np.load(shard, allow_pickle=False) as npz:
            if int(npz["format_version"]) != CACHE_FORMAT_VERSION:
                return {}
            shard_keys = [k.decode() for k in npz["keys"].tolist()]
            hits = {i: k for i, k in enumerate(shard_keys) if k in wanted}
            if not hits:
                return {}
            arrays = {name: npz[name] for name in npz.files}
        return {hits[i]: parts for i, parts in unpack_graphs(arrays, sorted(hits)).items()}

    def save(self, new: dict[str, GraphParts]) -> Path | None:
        """Write ``new`` graphs as one shard (named by the hash of their keys); returns its path."""
        if not new:
            return None
        keys = sorted(new)
        path = self.folder / f"shard-{params_key(keys)[:24]}.npz"
        try:
            atomic_savez(path, pack_graphs(keys, [new[k] for k in keys]))
        except OSError as exc:
            warn(f"could not write the graph cache {path}: {exc}")
            return None
        return path


def clear_cache(root: Path | None = None) -> None:
    """Delete every cached table and graph under ``root`` (default :func:`cache_root`)."""
    root = root or cache_root()
    for sub in ("records", "graphs"):
        shutil.rmtree(root / sub, ignore_errors=True)


# ----- graphs from records ----------------------------------------------------------------------------------------
class GraphList(list):
    """``list[CrystalGraph]`` plus ``errors``: ``(ident, message)`` of records whose structure was rejected."""

    def __init__(self, graphs: Iterable[CrystalGraph] = (), errors: list[tuple[str, str]] | None = None) -> None:
        super().__init__(graphs)
        self.errors: list[tuple[str, str]] = errors or []


def target_vector(targets: dict[str, float], target_names: Sequence[str]) -> np.ndarray | None:
    """Targets in ``target_names`` order as float64, NaN where missing; ``None`` when no names are given."""
    if not target_names:
        return None
    return np.asarray([targets.get(name, np.nan) for name in target_names], dtype=np.float64)


def build_graphs(records: Sequence[StructureRecord], cutoff: float, target_names: Sequence[str] = (),
                 max_atoms: int = DEFAULT_MAX_ATOMS, progress: bool = True, cache: bool = True,
                 on_error: str = "skip") -> GraphList:
    """Graphs of ``records`` (in order), reusing cached ones; new ones are computed and cached.

    Each graph's ``target`` is ``record.targets`` in ``target_names`` order (NaN if missing; ``None`` if no names).
    Records whose structure is rejected (:class:`~crystalframer.structure.StructureError`, e.g. overlapping atoms or
    more than ``max_atoms`` sites) are skipped and listed in ``.errors`` with a warning (``on_error="skip"``), or
    raise :class:`DataError` (``on_error="raise"``). Raises if no record yields a graph.
    """
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    tag = graph_tag(cutoff)
    store = GraphStore(cutoff)
    keys = [structure_key(_hashable(r), cutoff, tag) for r in records]
    found = store.load(keys) if cache else {}
    todo = {k: r for k, r in zip(keys, records) if k not in found}
    new, failed = _compute_graphs(todo, cutoff, max_atoms, progress, on_error)
    if cache:
        store.save(new)
    found.update(new)
    graphs, errors = GraphList(), []
    for key, record in zip(keys, records):
        parts = found.get(key)
        message = failed.get(key) or (_too_many(parts, max_atoms) if parts else "no graph")
        if message:
            errors.append((record.ident, message))
            if on_error == "raise":
                raise DataError(f"{record.ident}: {message}")
            continue
        graphs.append(CrystalGraph(arrays=parts.arrays, neighbors=parts.neighbors,
                                   target=target_vector(record.targets, target_names), ident=record.ident))
    graphs.errors = errors
    _report_graph_errors(len(records), graphs, errors)
    return graphs


def _hashable(record: Any) -> Any:
    """A StructureRecord hashes its packed arrays when it has them (no pymatgen object needed)."""
    return record if hasattr(record, "canonical_content") else record.structure


def _compute_graphs(todo: dict[str, StructureRecord], cutoff: float, max_atoms: int, progress: bool,
                    on_error: str) -> tuple[dict[str, GraphParts], dict[str, str]]:
    new: dict[str, GraphParts] = {}
    failed: dict[str, str] = {}
    bar = tqdm(todo.items(), total=len(todo), desc="neighbour lists", unit="struct",
               disable=not progress or not todo, leave=False)
    for key, record in bar:
        try:
            structure = record.peek_structure() if hasattr(record, "peek_structure") else record.structure
            graph = build_graph(structure, cutoff, max_atoms=max_atoms)
        except StructureError as exc:
            if on_error == "raise":
                raise DataError(f"{record.ident}: {exc}") from None
            failed[key] = str(exc)
            continue
        new[key] = GraphParts(arrays=graph.arrays, neighbors=graph.neighbors)
    return new, failed


def _too_many(parts: GraphParts, max_atoms: int) -> str:
    n = parts.arrays.num_atoms
    return f"the structure has {n} sites, more than the limit of {max_atoms}" if n > max_atoms else ""


def _report_graph_errors(total: int, graphs: GraphList, errors: list[tuple[str, str]]) -> None:
    if not graphs:
        raise DataError(f"none of the {total} structures gave a graph: {summarize_errors(errors)}")
    if errors:
        warn(f"skipped {len(errors)} of {total} structures that the model cannot take: {summarize_errors(errors)} "
             "(see .errors)")
