"""Disk caches (crystalframer.data.cache, .table): content keys, graph shards, parsed-record tables."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from crystalframer.model.config import ModelConfig
from crystalframer.data import (
    DataError, DataWarning, GraphStore, StructureRecord, build_graphs, cache_root, data_root, read_csv_cif,
    structure_key,
)
from crystalframer.data.table import ParsedTable, load_table, pack_structures, save_table, unpack_structures
from crystalframer.graph import build_graph

CUTOFF = ModelConfig().cutoff


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYSTALFRAMER_CACHE", str(tmp_path / "cache"))


def structures() -> list[Structure]:
    out = [
        Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure(Lattice.cubic(3.35), ["Po"], [[0, 0, 0]]),
        Structure(Lattice.from_parameters(3.1, 4.2, 5.3, 80, 95, 110), ["Si", "O", "O"],
                  [[0, 0, 0], [0.3, 0.2, 0.1], [0.6, 0.7, 0.4]]),
        Structure(Lattice.cubic(3.9), [{"Sr": 0.5, "Ba": 0.5}, "Ti", "O", "O", "O"],
                  [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]),
    ]
    out[0].add_oxidation_state_by_element({"Cs": 1, "Cl": -1})
    return out


def records() -> list[StructureRecord]:
    return [StructureRecord(f"s{k}", s, {"y": float(k), "z": -float(k)}) for k, s in enumerate(structures())]


def assert_same_graph(a, b) -> None:
    assert a.ident == b.ident
    for name in ("species", "positions", "lattice", "atomic_numbers"):
        x, y = getattr(a.arrays, name), getattr(b.arrays, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    for name in ("src", "dst", "image", "vec"):
        x, y = getattr(a.neighbors, name), getattr(b.neighbors, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert a.neighbors.cutoff == b.neighbors.cutoff
    assert (a.target is None and b.target is None) or np.array_equal(a.target, b.target, equal_nan=True)


def test_structure_key_is_content_based():
    s = structures()
    key = structure_key(s[0], CUTOFF)
    assert len(key) == 64 and key == structure_key(s[0].copy(), CUTOFF)
    assert key != structure_key(s[0], CUTOFF + 0.1)
    moved = s[0].copy()
    moved.translate_sites([1], [1e-4, 0, 0], frac_coords=False)
    assert key != structure_key(moved, CUTOFF)
    jitter = s[0].copy()
    jitter.translate_sites([1], [1e-11, 0, 0], frac_coords=False)
    assert key == structure_key(jitter, CUTOFF)  # below the 1e-8 Å rounding
    swapped = Structure(s[0].lattice, ["Cl", "Cs"], s[0].frac_coords)
    assert key != structure_key(swapped, CUTOFF)
    from pymatgen.io.ase import AseAtomsAdaptor
    plain = Structure(s[1].lattice, ["Po"], [[0, 0, 0]])
    assert structure_key(AseAtomsAdaptor.get_atoms(plain), CUTOFF) == structure_key(plain, CUTOFF)


def test_build_graphs_matches_build_graph_and_targets():
    recs = records()
    recs[2].targets.pop("z")
    graphs = build_graphs(recs, CUTOFF, ["z", "y"], progress=False, cache=False)
    assert [g.ident for g in graphs] == ["s0", "s1", "s2", "s3"]
    for rec, graph in zip(recs, graphs):
        ref = build_graph(rec.structure, CUTOFF, ident=rec.ident,
                          target=[rec.targets.get("z", np.nan), rec.targets["y"]])
        assert_same_graph(graph, ref)
    assert np.isnan(graphs[2].target[0]) and graphs[2].target[1] == 2.0
    assert build_graphs(recs, CUTOFF, progress=False, cache=False)[0].target is None


def test_graph_cache_hit_is_identical():
    recs = records()
    first = build_graphs(recs, CUTOFF, ["y"], progress=False)
    shards = GraphStore(CUTOFF).shards()
    assert len(shards) == 1 and shards[0].is_relative_to(cache_root())
    second = build_graphs(recs, CUTOFF, ["y"], progress=False)
    for a, b in zip(first, second):
        assert_same_graph(a, b)
    assert len(GraphStore(CUTOFF).shards()) == 1  # nothing new to store
    # A partly new dataset reuses the cached graphs and stores only the new one.
    extra = StructureRecord("new", Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]), {})
    third = build_graphs(recs[:2] + [extra], CUTOFF, ["y"], progress=False)
    assert len(GraphStore(CUTOFF).shards()) == 2 and np.isnan(third[2].target[0])
    assert_same_graph(third[0], first[0])


def test_graph_cache_hit_is_faster():
    recs = [StructureRecord(f"big{k}", s * (3, 3, 3), {}) for k, s in enumerate(structures())]
    start = time.perf_counter()
    first = build_graphs(recs, CUTOFF, progress=False)
    cold = time.perf_counter() - start
    warm = min(_timed(lambda: build_graphs(recs, CUTOFF, progress=False)) for _ in range(2))
    assert warm < cold / 2, (cold, warm)
    for a, b in zip(first, build_graphs(recs, CUTOFF, progress=False)):
        assert_same_graph(a, b)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_graph_cache_never_pickles_and_survives_corruption():
    recs = records()
    build_graphs(recs, CUTOFF, progress=False)
    shard = GraphStore(CUTOFF).shards()[0]
    with np.load(shard, allow_pickle=False) as npz:
        assert all(npz[name].dtype != object for name in npz.files)
    shard.write_bytes(b"garbage")
    with pytest.warns(DataWarning, match="unreadable graph cache"):
        again = build_graphs(recs, CUTOFF, progress=False)
    assert len(again) == len(recs)


def test_build_graphs_skips_rejected_structures():
    recs = records()
    recs.insert(1, StructureRecord("overlap", Structure(Lattice.cubic(4.0), ["Na", "Na"],
                                                        [[0, 0, 0], [0.001, 0, 0]]), {}))
    with pytest.warns(DataWarning, match="overlap"):
        graphs = build_graphs(recs, CUTOFF, progress=False)
    assert [g.ident for g in graphs] == ["s0", "s1", "s2", "s3"]
    assert graphs.errors[0][0] == "overlap" and "apart" in graphs.errors[0][1]
    with pytest.raises(DataError, match="overlap"):
        build_graphs(recs, CUTOFF, progress=False, on_error="raise")
    with pytest.warns(DataWarning, match="more than the limit of 4"):  # cached graphs obey max_atoms too
        limited = build_graphs(records(), CUTOFF, max_atoms=4, progress=False)
    assert [g.ident for g in limited] == ["s0", "s1", "s2"]
    with pytest.raises(DataError, match="none of the 1 structures"):
        build_graphs(recs[1:2], CUTOFF, progress=False)


def test_table_round_trip_keeps_species_and_coordinates(tmp_path):
    s = structures()
    table = ParsedTable(ids=["a", "b", "c", "d"], rows=[0, 1, 2, 5], structures=s,
                        columns={"y": np.array([1.0, np.nan, 3.0, 4.0]), "split": np.array(["train", "val", "", "x"])},
                        errors=[("e", "row 3: bad CIF")])
    save_table(table, tmp_path / "t.npz")
    back = load_table(tmp_path / "t.npz")
    assert back.ids == table.ids and back.rows == table.rows and back.errors == table.errors
    assert np.array_equal(back.columns["y"], table.columns["y"], equal_nan=True)
    assert back.columns["split"].tolist() == ["train", "val", "", "x"]
    for packed, y in zip(back.structures, s):
        x = packed.to_structure()
        assert len(packed) == len(y) and x == y and np.array_equal(x.cart_coords, y.cart_coords)
        assert [str(site.species) for site in x] == [str(site.species) for site in y]
    assert unpack_structures(pack_structures([])) == []


def test_record_cache_makes_second_read_fast(tmp_path):
    rows = [{"material_id": f"m{k}", "y": float(k), "cif": s.to(fmt="cif")} for k, s in enumerate(structures())]
    path = tmp_path / "d.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    first = read_csv_cif(path, progress=False)
    cached = list((cache_root() / "records").glob("csv-*.npz"))
    assert len(cached) == 1
    second = read_csv_cif(path, progress=False)
    assert second.idents == first.idents and [r.targets for r in second] == [r.targets for r in first]
    assert all(a.structure == b.structure for a, b in zip(first, second))
    # Changing the file changes its hash: the cache is not reused.
    pd.DataFrame(rows[:2]).to_csv(path, index=False)
    assert len(read_csv_cif(path, progress=False)) == 2


def test_cache_speedup_on_mp_sample():
    root = data_root()
    path = root / "mp_megnet" / "mp_sample.csv.gz" if root else None
    if path is None or not path.exists():
        pytest.skip("mp_sample.csv.gz not available")
    start = time.perf_counter()
    recs = read_csv_cif(path, limit=40, progress=False)
    graphs = build_graphs(recs, CUTOFF, recs.target_names, progress=False)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    recs2 = read_csv_cif(path, limit=40, progress=False)
    graphs2 = build_graphs(recs2, CUTOFF, recs2.target_names, progress=False)
    warm = time.perf_counter() - start
    assert warm < cold / 3, (cold, warm)
    for a, b in zip(graphs, graphs2):
        assert_same_graph(a, b)


def test_cached_records_are_lazy_and_hash_like_fresh_ones(tmp_path):
    rows = [{"material_id": f"m{k}", "y": float(k), "cif": s.to(fmt="cif")} for k, s in enumerate(structures())]
    path = tmp_path / "d.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    fresh = read_csv_cif(path, progress=False)
    lazy = read_csv_cif(path, progress=False)
    assert all(r._structure is None for r in lazy)  # nothing built yet
    assert [r.num_sites for r in lazy] == [len(s) for s in structures()]
    assert [structure_key(r, CUTOFF) for r in lazy] == [structure_key(r.structure, CUTOFF) for r in fresh]
    graphs = build_graphs(lazy, CUTOFF, ["y"], progress=False)
    assert all(r._structure is None for r in lazy)  # graphs were built without keeping pymatgen objects
    for a, b in zip(graphs, build_graphs(fresh, CUTOFF, ["y"], progress=False, cache=False)):
        assert_same_graph(a, b)
    assert lazy[3].structure == fresh[3].structure and lazy[3] == fresh[3]
