"""Compiled CPU kernels for the grid path of the framed angle term (docs/model.md §6, "Angle features").

The grid path spreads every (image-edge, head, axis) item onto four grid nodes of a per-(head, axis, atom)
histogram, multiplies the histogram by the tabulated projected basis, and in the backward pass gathers the
histogram's gradient at the same nodes. In pure PyTorch each per-item step is a separate pass over E·H·3 values in
memory; the C kernels in ``csrc/angle_grid.c`` do the cosine, the stencil weights and the four additions of a row
in one go while the atom's histogram stays in cache (measured ~3–4× faster than the PyTorch passes, and than a numba
version of the same loops).

The C file is compiled on first use with the system C compiler (``$CC``, else ``cc``) into the user cache
(``$XDG_CACHE_HOME/crystalframer/kernels``, keyed by the source, the compiler flags and the CPU) and loaded with
ctypes. Where no compiler works, or with ``CRYSTALFRAMER_KERNELS=0``, or on GPUs, the PyTorch version in
``features.py`` runs instead: same arithmetic, the tests compare the two in float64. Parallelism: the atoms are
split into ``torch.get_num_threads()`` ranges of about equal rows, each run by a Python thread (ctypes releases the
GIL), so no second OpenMP runtime is loaded next to PyTorch's.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "angle_grid.c"
FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fPIC", "-shared"]
MAX_WIDTH = 256  # slots per row the kernels accept (csrc MAX_WIDTH); geometry.ROW_WIDTH is 32

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_failed: str | None = None
_pool: ThreadPoolExecutor | None = None


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "crystalframer" / "kernels"


def _cpu_signature() -> str:
    """The CPU model and flags (``-march=native`` code is only valid on the same kind of CPU)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            lines = [ln for ln in fh if ln.startswith(("model name", "flags"))][:2]
        return "".join(lines)
    except OSError:
        return platform.processor() or platform.machine()


def _compile(compiler: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", str(out)], check=True, capture_output=True, timeout=120)
        os.replace(out, target)  # atomic: concurrent processes never load a half-written library


def _declare(lib: ctypes.CDLL) -> None:
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    for suffix, real in (("f32", ctypes.c_float), ("f64", ctypes.c_double)):
        spread = getattr(lib, f"cf_spread_{suffix}")
        spread.argtypes = [ptr, ptr, ptr, ptr, i64, i64, i64, i64, i64, i64, real, real, ctypes.c_int, ptr]
        spread.restype = ctypes.c_int
        gather = getattr(lib, f"cf_gather_{suffix}")
        gather.argtypes = [ptr, ptr, ptr, ptr, ptr, i64, i64, i64, i64, i64, i64, real, real, ctypes.c_int, ptr]
        gather.restype = ctypes.c_int


def library() -> ctypes.CDLL | None:
    """The compiled kernels (building them on first use), or None where they cannot be built."""
    global _library, _failed
    if _library is not None or _failed is not None:
        return _library
    with _lock:
        if _library is not None or _failed is not None:
            return _library
        compiler = os.environ.get("CC") or "cc"
        try:
            if shutil.which(compiler) is None:
                raise FileNotFoundError(f"no C compiler {compiler!r} on PATH")
            key = hashlib.sha256(SOURCE.read_bytes() + " ".join([compiler, *FLAGS]).encode()
                                 + _cpu_signature().encode()).hexdigest()[:16]
            target = _cache_dir() / f"angle_grid-{platform.machine()}-{key}.so"
            if not target.exists():
                _compile(compiler, target)
            lib = ctypes.CDLL(str(target))
            _declare(lib)
            _library = lib
        except (OSError, subprocess.SubprocessError, AttributeError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            _failed = f"{exc} {detail.decode(errors='replace')[:400]}".strip()
            log.warning("CPU angle-feature kernels unavailable (%s); using the PyTorch version (slower).", _failed)
    return _library


def kernels_enabled(tensor: torch.Tensor) -> bool:
    """Whether the compiled kernels handle this tensor: float32/float64 on the CPU, kernels buildable, not disabled
    by ``CRYSTALFRAMER_KERNELS=0``."""
    if tensor.device.type != "cpu" or tensor.dtype not in (torch.float32, torch.float64):
        return False
    if os.environ.get("CRYSTALFRAMER_KERNELS", "1") == "0":
        return False
    return library() is not None


def _atom_ranges(bounds: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Split atoms into ≤ ``parts`` consecutive ranges of about equal numbers of rows."""
    num_atoms, rows = len(bounds) - 1, int(bounds[-1])
    if parts <= 1 or num_atoms <= 1 or rows == 0:
        return [(0, num_atoms)]
    cuts = np.searchsorted(bounds, np.linspace(0, rows, parts + 1)[1:-1]).tolist()
    edges = sorted({0, num_atoms, *[min(max(int(c), 0), num_atoms) for c in cuts]})
    return list(zip(edges[:-1], edges[1:]))


def _run_parallel(fn, ranges: list[tuple[int, int]], make_args) -> None:
    """fn(*make_args(lo, hi)) for each atom range (lo, hi), in parallel threads; raises if a kernel reports an
    error."""
    global _pool
    if len(ranges) == 1:
        codes = [fn(*make_args(*ranges[0]))]
    else:
        if _pool is None or _pool._max_workers < len(ranges):  # noqa: SLF001 - resize on a thread-count change
            _pool = ThreadPoolExecutor(max_workers=len(ranges), thread_name_prefix="crystalframer-kernel")
        codes = list(_pool.map(lambda rg: fn(*make_args(*rg)), ranges))
    if any(codes):
        raise RuntimeError(f"angle-grid kernel failed (codes {codes}); row width over {MAX_WIDTH}?")


def _ptr(t: torch.Tensor | np.ndarray) -> int:
    return t.data_ptr() if isinstance(t, torch.Tensor) else t.ctypes.data


def _atom_row_bounds(row_atom: torch.Tensor, num_atoms: int) -> np.ndarray:
    """(N + 1,) first row of each atom (rows are sorted by atom), int64."""
    counts = torch.bincount(row_atom, minlength=num_atoms)
    bounds = np.zeros(num_atoms + 1, dtype=np.int64)
    np.cumsum(counts.numpy(), out=bounds[1:])
    return bounds


class CpuGridAngleTerm(torch.autograd.Function):
    """(Q, N, head_dim) = per (head, axis) block: hist @ table with hist[q, i, node] = Σ_m w_m L_s(c_m).

    weights (R, H, W), zero on empty slots and the zero image; table (Q = 3H, G, head_dim); frames (N, H, 3, 3)
    detached; unit (R, W, 3); row_atom (R,), sorted. The histogram (Q, N, G) is kept for the table's gradient.
    """

    @staticmethod
    def forward(ctx, weights: torch.Tensor, table: torch.Tensor, frames: torch.Tensor, unit: torch.Tensor,
                row_atom: torch.Tensor, num_atoms: int, grid, cos_abs: bool) -> torch.Tensor:  # type: ignore[override]
        lib = library()
        suffix = "f32" if weights.dtype == torch.float32 else "f64"
        weights_c = weights.detach().contiguous()
        frames_c = frames.detach().to(weights.dtype).contiguous()
        unit_t = unit.detach().to(weights.dtype).transpose(1, 2).contiguous()  # (R, 3, W)
        bounds = _atom_row_bounds(row_atom, num_atoms)
        hist = weights.new_zeros((table.shape[0], num_atoms, grid.size))
        heads, width = weights.shape[1], weights.shape[2]
        ranges = _atom_ranges(bounds, torch.get_num_threads())
        _run_parallel(getattr(lib, f"cf_spread_{suffix}"), ranges, lambda lo, hi: (
            _ptr(weights_c), _ptr(frames_c), _ptr(unit_t), _ptr(bounds), lo, hi, num_atoms, heads, width, grid.size,
            grid.start, 1.0 / grid.step, int(cos_abs), _ptr(hist)))
        ctx.save_for_backward(hist, table, frames_c, unit_t)
        ctx.meta = (grid, cos_abs, bounds, ranges)
        return torch.bmm(hist, table)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        hist, table, frames, unit_t = ctx.saved_tensors
        grid, cos_abs, bounds, ranges = ctx.meta
        grad_out = grad_out.contiguous()
        grad_weights = grad_table = None
        if ctx.needs_input_grad[1]:
            grad_table = torch.bmm(hist.transpose(1, 2), grad_out)
        if ctx.needs_input_grad[0]:
            lib = library()
            suffix = "f32" if grad_out.dtype == torch.float32 else "f64"
            grad_hist = torch.bmm(grad_out, table.transpose(1, 2)).contiguous()
            mask = (unit_t != 0).any(1).to(torch.uint8).contiguous()  # empty slots and the zero image: no direction
            rows, width = unit_t.shape[0], unit_t.shape[2]
            heads, num_atoms = table.shape[0] // 3, frames.shape[0]
            grad_weights = grad_out.new_empty((rows, heads, width))
            _run_parallel(getattr(lib, f"cf_gather_{suffix}"), ranges, lambda lo, hi: (
                _ptr(grad_hist), _ptr(frames), _ptr(unit_t), _ptr(mask), _ptr(bounds), lo, hi, num_atoms, heads,
                width, grid.size, grid.start, 1.0 / grid.step, int(cos_abs), _ptr(grad_weights)))
        return grad_weights, grad_table, None, None, None, None, None, None
