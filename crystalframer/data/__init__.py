"""Data pipeline: read datasets into records, cache parsed graphs, split by id files, batch by an atom budget.

Typical use::

    from crystalframer.data import read_mp_megnet, build_graphs, split_from_mapping, apply_split
    records, split_of = read_mp_megnet(target="megnet_e_form", max_sites=200)
    graphs = build_graphs(records, cutoff=ModelConfig().cutoff, target_names=["megnet_e_form"])
    parts = apply_split(graphs, split_from_mapping(split_of))
    sampler = AtomBudgetBatchSampler(num_atoms_of(parts["train"]), max_atoms_per_batch=2048, seed=0)
    for batch in iterate_batches(parts["train"], sampler): ...
"""

from crystalframer.data.batching import AtomBudgetBatchSampler, iterate_batches, num_atoms_of, pack_by_budget
from crystalframer.data.cache import (
    CACHE_FORMAT_VERSION, GraphList, GraphStore, build_graphs, clear_cache, file_sha256, structure_key,
)
from crystalframer.data.config import (
    cache_root, carbon24_path, castelli_path, data_root, dataset_path, jarvis_sample_path, mp_elasticity_path,
    mp_megnet_path, mp_sample_path,
)
from crystalframer.data.errors import DataError, DataWarning
from crystalframer.data.formats import detect_format, read_structure_file
from crystalframer.data.records import (
    RecordList, StructureRecord, read_csv_cif, read_extxyz, read_id_prop_folder, read_jarvis_dft3d,
    read_mp_megnet, read_structure_files,
)
from crystalframer.data.splits import (
    apply_split, check_disjoint, load_split, random_split, read_ids, save_split, split_from_mapping, write_ids,
)

__all__ = [
    "AtomBudgetBatchSampler", "iterate_batches", "num_atoms_of", "pack_by_budget",
    "CACHE_FORMAT_VERSION", "GraphList", "GraphStore", "build_graphs", "clear_cache", "file_sha256", "structure_key",
    "cache_root", "carbon24_path", "castelli_path", "data_root", "dataset_path", "jarvis_sample_path",
    "mp_elasticity_path", "mp_megnet_path", "mp_sample_path",
    "DataError", "DataWarning", "detect_format", "read_structure_file",
    "RecordList", "StructureRecord", "read_csv_cif", "read_extxyz", "read_id_prop_folder", "read_jarvis_dft3d",
    "read_mp_megnet", "read_structure_files",
    "apply_split", "check_disjoint", "load_split", "random_split", "read_ids", "save_split", "split_from_mapping",
    "write_ids",
]
