"""Throughput and peak-memory benchmark (``crystalframer bench``, also ``python -m bench.throughput`` from the
repository root): structures/s for inference and training per frame method and cell size.

Each (configuration, size group) runs in a fresh subprocess so its peak resident memory (CPU) or peak allocated
memory (CUDA) is its own. The costs relative to ``none`` (and so the bar) come from one more subprocess per group
that runs all the models interleaved batch by batch (:func:`run_paired`): a shared machine's speed drifts by ±20 %
within seconds, which the separate runs cannot tell from a difference between models. Size groups: ``small`` (MP cells with ≤ 20 sites, the speed bars' setting), ``medium``
(21–60 sites) and ``large`` (one 1,008-atom spinel supercell, batch 1). MP cells come from the data directory;
without it, generated rattled crystals stand in. The summary compares each model's cost with ``none`` at the same
cutoff (the ≤ 1.5× bar for max frames) and ``none`` with the reference no-frame throughput (432 / 902 structures/s
on the development machine before the faithful cutoff).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

# The directory holding the crystalframer package: each measurement's subprocess imports it from there.
PACKAGE_PARENT = Path(__file__).resolve().parents[1]

CONFIGS = {
    "none": {"preset": "crystalformer"},
    "max": {"preset": "default", "frame_method": "max"},
    "weighted_pca": {"preset": "default", "frame_method": "weighted_pca"},
    "max-light": {"preset": "light", "frame_method": "max"},
    "weighted_pca-light": {"preset": "light", "frame_method": "weighted_pca"},
    "max-exact": {"preset": "default", "frame_method": "max", "angle_features": "exact"},
}
DEFAULT_CONFIGS = ["none", "max", "weighted_pca", "max-light", "weighted_pca-light"]
# (min sites, max sites, structures, batch size); "large" is one generated supercell.
GROUPS = {"small": (1, 20, 256, 32), "medium": (21, 60, 64, 32), "large": (1000, 1100, 1, 1)}
REFERENCE_NONE = {"train": 432.0, "infer": 902.0}  # no-frame model at the old 3.5σ cutoff, docs/benchmarks.md
MAX_COST_BAR = 1.5


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


def mp_structures(count: int, max_sites: int, seed: int = 0, min_sites: int = 1) -> list[Any] | None:
    """``count`` MP train structures with ``min_sites``–``max_sites`` sites drawn uniformly (seeded), or None
    without data.

    Uses the cached MP reader (the first call parses the whole file, ~4 min; later calls take seconds).
    """
    from crystalframer.data import read_mp_megnet
    from crystalframer.data.config import mp_megnet_path

    try:
        path = mp_megnet_path()
    except Exception:  # noqa: BLE001 - any failure means "no data here"
        return None
    if not path.exists():
        return None
    records, split_of = read_mp_megnet(path, splits=("train",), max_sites=max_sites, progress=False)
    records = [r for r in records if len(r.structure) >= min_sites]
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(records), size=min(count, len(records)), replace=False)
    return [records[int(k)].structure for k in picks]


def large_cell() -> Any:
    """The 1,008-atom spinel supercell (2×3×3 conventional MgAl2O4 cells, slightly rattled so frames are generic)."""
    from crystalframer.examples import get_example

    from pymatgen.core import Structure

    s = get_example("MgAl2O4 (spinel)", primitive=False) * (2, 3, 3)
    rng = np.random.default_rng(0)
    coords = s.cart_coords + rng.normal(0.0, 0.01, (len(s), 3))
    return Structure(s.lattice, s.species, coords, coords_are_cartesian=True)


def group_structures(group: str, seed: int = 0) -> tuple[list[Any], str]:
    min_sites, max_sites, count, _ = GROUPS[group]
    if group == "large":
        return [large_cell()], "generated spinel supercell"
    structures = mp_structures(count, max_sites, seed, min_sites)
    if structures:
        return structures, "MP (mp_megnet train split)"
    generated = [s for s in generated_structures(4 * count, seed) if min_sites <= len(s) <= max_sites][:count]
    if len(generated) < count:  # generated crystals have ≤ 12 sites: build larger ones as supercells
        generated = [(s * (2, 2, 2) if len(s) * 8 <= max_sites else s) for s in generated_structures(count, seed)]
        generated = [s for s in generated if min_sites <= len(s) <= max_sites] or generated
    return generated, "generated rattled crystals"


def _prepare(name: str, structures: Sequence[Any], batch_size: int, device: str,
             cutoff_sigmas: float | None = None) -> dict[str, Any]:
    """A seeded model of configuration ``name`` with its full batches, an optimizer, and timed-pass closures:
    ``train()`` (forward, backward and step over every batch) and ``infer()`` (forward without gradients); both
    return the seconds they took."""
    import torch

    from crystalframer.model.config import ModelConfig
    from crystalframer.data.batching import inference_batches
    from crystalframer.graph import collate
    from crystalframer.model.model import CrystalFramer, resolve_device

    dev = resolve_device(device)
    spec = dict(CONFIGS[name])
    if cutoff_sigmas is not None:
        spec["cutoff_sigmas"] = cutoff_sigmas
    cfg = ModelConfig.preset(spec.pop("preset"), **spec)
    torch.manual_seed(0)
    model = CrystalFramer(cfg).to(dev)
    graphs = [model.make_graph(s, target=[0.0]) for s in structures]
    full = [b for b in inference_batches([g.num_atoms for g in graphs], batch_size) if len(b) == batch_size]
    batches = [collate([graphs[k] for k in b]).to(dev) for b in full]
    model.train()
    model(batches[0])  # freezes the a_ih statistics
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def train_step(b: Any) -> None:
        loss = (model(b) - b.target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    def infer_step(b: Any) -> None:
        with torch.no_grad():
            model(b)

    def timed(step, training: bool, which: Sequence[Any]) -> float:
        model.train(training)
        sync()
        t0 = time.perf_counter()
        for b in which:
            step(b)
        sync()
        return time.perf_counter() - t0

    return {"model": model, "cfg": cfg, "graphs": graphs, "structures": sum(b.num_graphs for b in batches),
            "batches": batches, "train": lambda: timed(train_step, True, batches),
            "infer": lambda: timed(infer_step, False, batches),
            "train_batch": lambda b: timed(train_step, True, [b]), "infer_batch": lambda b: timed(infer_step, False, [b]),
            "device": dev}


def run_one(name: str, structures: Sequence[Any], batch_size: int, repeats: int, device: str,
            cutoff_sigmas: float | None = None) -> dict[str, Any]:
    import torch

    run = _prepare(name, structures, batch_size, device, cutoff_sigmas)
    model, graphs, n_structs = run["model"], run["graphs"], run["structures"]
    results: dict[str, Any] = {"name": name, "params": model.num_trainable_parameters(), "cutoff": run["cfg"].cutoff,
                               "structures": n_structs, "atoms_per_structure": float(np.mean([g.num_atoms for g in graphs])),
                               "edges_per_structure": float(np.mean([g.num_edges for g in graphs]))}
    for label in ("train", "infer"):
        run[label]()  # warm-up
        times = [run[label]() for _ in range(repeats)]
        results[f"{label}_per_s"] = n_structs / float(np.median(times))
    if run["device"].type == "cuda":
        results["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        import resource  # POSIX only: imported here so that the CLI, which builds this parser, loads anywhere

        results["peak_mem_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return results


def run_paired(names: Sequence[str], structures: Sequence[Any], batch_size: int, repeats: int, device: str,
               cutoff_sigmas: float | None = None) -> dict[str, Any]:
    """Cost ratios to ``none`` measured in one process, the models interleaved batch by batch: each round times,
    for every batch in turn, a training step of every model, then likewise an inference step; a round's time of a
    model is the sum over its batches, and each ratio is the median over rounds of that round's ratio. A shared
    machine's speed drifts by ±20 % and more within a second; interleaving at the batch level lets both models see
    the same machine."""
    runs = {name: _prepare(name, structures, batch_size, device, cutoff_sigmas) for name in names}
    for run in runs.values():
        run["train"]()
        run["infer"]()  # warm-up
    count = min(len(run["batches"]) for run in runs.values())
    rounds: list[dict[str, dict[str, float]]] = []
    for _ in range(repeats):
        totals = {name: {"train": 0.0, "infer": 0.0} for name in runs}
        for label in ("train", "infer"):
            for k in range(count):
                for name, run in runs.items():
                    totals[name][label] += run[f"{label}_batch"](run["batches"][k])
        rounds.append(totals)
    ratios = {name: {label: float(np.median([r[name][label] / r["none"][label] for r in rounds]))
                     for label in ("train", "infer")} for name in names if name != "none"}
    return {"ratios": ratios, "rounds": rounds}


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


def _rate(per_s: float) -> str:
    """Structures per second with three significant digits (a 1,000-atom cell runs well below 1/s)."""
    return f"{per_s:.1f}" if per_s >= 100 else f"{per_s:.3g}"


def format_table(rows: Sequence[dict[str, Any]], paired: dict[str, dict[str, float]] | None = None) -> str:
    """The group's table. Costs relative to ``none`` come from ``paired`` (:func:`run_paired`, interleaved in one
    process) when given, else from the separate runs' throughputs."""
    base = next((r for r in rows if r["name"] == "none"), None)
    how = " (interleaved)" if paired else ""
    lines = [f"| model | params | train structs/s | infer structs/s | train cost vs none{how} | "
             f"infer cost vs none{how} | peak mem (MB) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        rel_t = f"{base['train_per_s'] / r['train_per_s']:.2f}x" if base else "-"
        rel_i = f"{base['infer_per_s'] / r['infer_per_s']:.2f}x" if base else "-"
        if paired and r["name"] in paired:
            rel_t, rel_i = f"{paired[r['name']]['train']:.2f}x", f"{paired[r['name']]['infer']:.2f}x"
        lines.append(f"| {r['name']} | {r['params'] / 1000:.1f}K | {_rate(r['train_per_s'])} | "
                     f"{_rate(r['infer_per_s'])} | {rel_t} | {rel_i} | {r['peak_mem_mb']:.0f} |")
    return "\n".join(lines)


def format_bars(rows: Sequence[dict[str, Any]], paired: dict[str, dict[str, float]] | None = None) -> str:
    """The two speed bars of the small group: max frames ≤ 1.5× none; none ≥ the reference throughput. With
    ``paired`` ratios (:func:`run_paired`), the cost bar uses them (interleaved in one process); otherwise the
    table's separate runs."""
    by_name = {r["name"]: r for r in rows}
    if "none" not in by_name:
        return ""
    none = by_name["none"]
    lines = ["| bar | train | infer | met |", "|---|---|---|---|"]
    for name in ("max", "max-light"):
        if paired and name in paired:
            t, i = paired[name]["train"], paired[name]["infer"]
            label = f"{name} cost / none (≤ {MAX_COST_BAR}×), interleaved runs"
        elif name in by_name:
            t = none["train_per_s"] / by_name[name]["train_per_s"]
            i = none["infer_per_s"] / by_name[name]["infer_per_s"]
            label = f"{name} cost / none (≤ {MAX_COST_BAR}×)"
        else:
            continue
        ok = "yes" if max(t, i) <= MAX_COST_BAR else "no"
        lines.append(f"| {label} | {t:.2f}× | {i:.2f}× | {ok} |")
    t = none["train_per_s"] / REFERENCE_NONE["train"]
    i = none["infer_per_s"] / REFERENCE_NONE["infer"]
    ok = "yes" if min(t, i) >= 1.0 else "no"
    lines.append(f"| none vs {REFERENCE_NONE['train']:.0f} / {REFERENCE_NONE['infer']:.0f} structs/s (≥ 1×) | "
                 f"{t:.2f}× | {i:.2f}× | {ok} |")
    return "\n".join(lines)


def _subprocess_env() -> dict[str, str]:
    """The environment with this package first on PYTHONPATH (the working directory stays the caller's, so relative
    paths such as $CRYSTALFRAMER_DATA keep their meaning)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_PARENT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's options, shared by ``crystalframer bench`` and ``python -m crystalframer.benchmark``."""
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, choices=list(CONFIGS))
    parser.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS))
    parser.add_argument("--structures", type=int, default=0, help="structures per group (0 = the group's default)")
    parser.add_argument("--batch-size", type=int, default=0, help="batch size (0 = the group's default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cutoff-sigmas", type=float, default=None, help="override the default cutoff (in σ_max)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--paired", help=argparse.SUPPRESS)
    parser.add_argument("--group", default="small", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the raw results here")


def _measure(what: list[str], group: str, args: argparse.Namespace, label: str) -> dict[str, Any]:
    """Run one measurement subprocess (``--one NAME`` or ``--paired NAMES``) for ``group``; its RESULT line."""
    cmd = [sys.executable, "-m", "crystalframer.benchmark", *what, "--group", group, "--structures",
           str(args.structures), "--batch-size", str(args.batch_size), "--repeats", str(args.repeats), "--device",
           args.device, "--threads", str(args.threads)]
    if args.cutoff_sigmas is not None:
        cmd += ["--cutoff-sigmas", str(args.cutoff_sigmas)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_subprocess_env())
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        print(proc.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f"{label} failed")
    return json.loads(line[len("RESULT "):])


def run(args: argparse.Namespace) -> int:
    """Run the benchmark described by parsed :func:`add_arguments` options; prints the tables. Returns 0."""
    if args.one or args.paired:  # a measurement subprocess: one model, or the interleaved models of a group
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        structures, source = group_structures(args.group)
        if args.structures:
            structures = structures[:args.structures]
        batch = args.batch_size or GROUPS[args.group][3]
        if args.one:
            result = run_one(args.one, structures, batch, args.repeats, args.device, args.cutoff_sigmas)
            result.update(source=source, group=args.group, batch_size=batch)
        else:
            result = run_paired(args.paired.split(","), structures, batch, args.repeats, args.device,
                                args.cutoff_sigmas)
        print("RESULT " + json.dumps(result))
        return 0

    all_rows: dict[str, list[dict[str, Any]]] = {}
    paired: dict[str, Any] = {}
    for group in args.groups:
        rows = []
        for name in args.configs:
            rows.append(_measure(["--one", name], group, args, f"benchmark of {name} ({group})"))
            print(f"  {group} {name}: train {_rate(rows[-1]['train_per_s'])}/s, "
                  f"infer {_rate(rows[-1]['infer_per_s'])}/s", flush=True)
        all_rows[group] = rows
        others = [n for n in args.configs if n != "none"]
        if "none" in args.configs and others:
            paired[group] = _measure(["--paired", ",".join(["none"] + others)], group, args,
                                     f"paired benchmark ({group})")
            print(f"  {group} interleaved cost vs none: " + ", ".join(
                f"{n} {r['train']:.2f}x / {r['infer']:.2f}x" for n, r in paired[group]["ratios"].items()), flush=True)
    print(f"\nMachine: {machine_description(args.threads or None)}")
    for group, rows in all_rows.items():
        r0 = rows[0]
        lo, hi = GROUPS[group][:2]
        print(f"\n### {group}: {r0['source']}, {r0['structures']} structures ({lo}–{hi} sites, "
              f"{r0['atoms_per_structure']:.1f} atoms and {r0['edges_per_structure']:.0f} image-edges per structure), "
              f"batch {r0['batch_size']}, cutoff {r0['cutoff']:.2f} Å, median of {args.repeats} passes\n")
        ratios = paired.get(group, {}).get("ratios")
        print(format_table(rows, ratios))
        if group == "small":
            bars = format_bars(rows, ratios)
            if bars:
                print("\nSpeed bars (small group):\n")
                print(bars)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine_description(args.threads or None), "groups": all_rows, "paired": paired}, fh,
                      indent=2)
    return 0


def run_cli(argv: Sequence[str] | None = None, prog: str = "crystalframer bench") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(list(argv) if argv is not None else None))


if __name__ == "__main__":
    raise SystemExit(run_cli(prog="python -m crystalframer.benchmark"))
