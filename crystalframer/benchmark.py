"""Throughput and peak-memory benchmark: structures/s for inference and training per frame method.

Each configuration runs in a fresh subprocess so its peak resident memory (CPU) or peak allocated memory (CUDA)
is its own. Structures come from the MP set in the data directory (≤ ``max_sites`` sites) or, when it is absent,
from generated rattled crystals.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Any, Sequence

import numpy as np

CONFIGS = {
    "none": {"preset": "crystalformer"},
    "max": {"preset": "default", "frame_method": "max"},
    "weighted_pca": {"preset": "default", "frame_method": "weighted_pca"},
    "max-light": {"preset": "light", "frame_method": "max"},
    "weighted_pca-light": {"preset": "light", "frame_method": "weighted_pca"},
}


def generated_structures(count: int, seed: int = 0) -> list[Any]:
    """Rattled random crystals (2–12 sites, 12–20 Å^3/atom) when no real data is available."""
    from pymatgen.core import Lattice, Structure

    rng = np.random.default_rng(seed)
    elements = ["Li", "O", "Mg", "Si", "Ti", "Fe", "Cu", "Zn", "S", "N", "Al", "Ca"]
    out = []
    while len(out) < count:
        n = int(rng.integers(2, 13))
        volume = n * rng.uniform(12, 20)
        a, b, c = rng.uniform(0.8, 1.2, 3) * volume ** (1 / 3)
        lattice = Lattice.from_parameters(a, b, c, *rng.uniform(75, 105, 3))
        try:
            s = Structure(lattice, list(rng.choice(elements, n)), rng.random((n, 3)))
        except ValueError:
            continue
        if n > 1 and min(s.distance_matrix[np.triu_indices(n, 1)]) < 1.2:
            continue
        out.append(s)
    return out


def mp_structures(count: int, max_sites: int, seed: int = 0) -> list[Any] | None:
    """``count`` MP train structures with ≤ ``max_sites`` sites drawn uniformly (seeded), or None without data.

    Uses the cached MP reader (the first call parses the whole file, ~4 min; later calls take seconds).
    """
    from .data import read_mp_megnet
    from .data.config import mp_megnet_path

    try:
        path = mp_megnet_path()
    except Exception:  # noqa: BLE001 - any failure means "no data here"
        return None
    if not path.exists():
        return None
    records, split_of = read_mp_megnet(path, splits=("train",), max_sites=max_sites, progress=False)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(records), size=min(count, len(records)), replace=False)
    return [records[int(k)].structure for k in picks]


def run_one(name: str, structures: Sequence[Any], batch_size: int, repeats: int, device: str) -> dict[str, Any]:
    import torch

    from .config import ModelConfig
    from .graph import collate
    from .model import CrystalFramer, resolve_device

    dev = resolve_device(device)
    spec = dict(CONFIGS[name])
    cfg = ModelConfig.preset(spec.pop("preset"), **spec)
    torch.manual_seed(0)
    model = CrystalFramer(cfg).to(dev)
    graphs = [model.make_graph(s, target=[0.0]) for s in structures]
    batches = [collate(graphs[i:i + batch_size]).to(dev) for i in range(0, len(graphs) - batch_size + 1, batch_size)]
    n_structs = sum(b.num_graphs for b in batches)
    model.train()
    model(batches[0])  # freezes the a_ih statistics
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def train_pass() -> None:
        for b in batches:
            loss = (model(b) - b.target).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

    def infer_pass() -> None:
        with torch.no_grad():
            for b in batches:
                model(b)

    results: dict[str, Any] = {"name": name, "params": model.num_trainable_parameters(),
                               "structures": n_structs, "atoms_per_structure": float(np.mean([g.num_atoms for g in graphs])),
                               "edges_per_structure": float(np.mean([g.num_edges for g in graphs]))}
    for label, fn, mode in (("train", train_pass, True), ("infer", infer_pass, False)):
        model.train(mode)
        fn()  # warm-up
        sync()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        results[f"{label}_per_s"] = n_structs / float(np.median(times))
    if dev.type == "cuda":
        results["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        results["peak_mem_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return results


def machine_description(threads: int | None = None) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({threads or torch.get_num_threads()} threads), {gpu}, "
            f"Python {platform.python_version()}")


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    base = next((r for r in rows if r["name"] == "none"), None)
    lines = ["| model | params | train structs/s | infer structs/s | train cost vs none | infer cost vs none | peak mem (MB) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        rel_t = f"{base['train_per_s'] / r['train_per_s']:.2f}x" if base else "-"
        rel_i = f"{base['infer_per_s'] / r['infer_per_s']:.2f}x" if base else "-"
        lines.append(f"| {r['name']} | {r['params'] / 1000:.1f}K | {r['train_per_s']:.1f} | {r['infer_per_s']:.1f} | "
                     f"{rel_t} | {rel_i} | {r['peak_mem_mb']:.0f} |")
    return "\n".join(lines)


def run_cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crystalframer bench", description=__doc__)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--structures", type=int, default=256)
    parser.add_argument("--max-sites", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args(list(argv) if argv is not None else None)

    if args.one:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        structures = mp_structures(args.structures, args.max_sites)
        source = "MP (mp_megnet train split)"
        if not structures:
            structures, source = generated_structures(args.structures), "generated rattled crystals"
        result = run_one(args.one, structures, args.batch_size, args.repeats, args.device)
        result["source"] = source
        print("RESULT " + json.dumps(result))
        return 0

    rows = []
    for name in args.configs:
        cmd = [sys.executable, "-m", "crystalframer.benchmark", "--one", name, "--structures", str(args.structures),
               "--max-sites", str(args.max_sites), "--batch-size", str(args.batch_size), "--repeats",
               str(args.repeats), "--device", args.device, "--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            print(proc.stderr[-2000:], file=sys.stderr)
            raise SystemExit(f"benchmark of {name} failed")
        rows.append(json.loads(line[len("RESULT "):]))
        print(f"  {name}: train {rows[-1]['train_per_s']:.1f}/s, infer {rows[-1]['infer_per_s']:.1f}/s", flush=True)
    print(f"\nMachine: {machine_description(args.threads or None)}")
    print(f"Data: {rows[0]['source']}, {rows[0]['structures']} structures (≤ {args.max_sites} sites, "
          f"{rows[0]['atoms_per_structure']:.1f} atoms and {rows[0]['edges_per_structure']:.0f} image-edges per "
          f"structure on average), batch {args.batch_size}, median of {args.repeats} passes\n")
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine_description(args.threads or None), "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli())
