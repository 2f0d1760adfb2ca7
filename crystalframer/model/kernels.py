"""Compiled CPU kernels: the fused per-slot work of attention and max frames (docs/model.md §6.3, §6.5) and the
grid path of the framed angle term (§6.4).

Attention (``csrc/attention_core.c``): logits, the softmax over each atom's slots, the value sums per atom pair and
the distance features, and their backward pass, in one pass per atom instead of a dozen PyTorch passes over
(rows, heads, slots) tensors; for max frames it also chooses and assembles each head's frame right after its softmax
(``csrc/max_frames.c``). Angle term (``csrc/angle_grid.c``): per atom, every (image-edge, head, axis) item is spread
onto six grid nodes of the atom's histograms, heads as vector lanes and stencils shared by heads with equal frame
axes, and the histograms are multiplied by the tabulated projected basis in cache; backward, the histograms'
gradient is gathered at the same nodes.

The C files are compiled on first use with the system C compiler (``$CC``, else ``cc``) into the user cache
(``$XDG_CACHE_HOME/crystalframer/kernels``, keyed by the source, the compiler flags and the CPU) and loaded with
ctypes. Where no compiler works, or with ``CRYSTALFRAMER_KERNELS=0``, or on GPUs, the PyTorch version in
``features.py`` runs instead: same arithmetic, the tests compare the two in float64. Parallelism: where PyTorch runs
on GNU OpenMP, the library links that same runtime and each kernel splits its atoms over PyTorch's threads
(``csrc/parallel.h``); elsewhere (or with ``CRYSTALFRAMER_OPENMP=0``) the atoms are split into
``torch.get_num_threads()`` ranges of about equal rows, each run by a Python thread (ctypes releases the GIL).
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from crystalframer.model.ops import log_tiny

log = logging.getLogger(__name__)

HEADERS = tuple(Path(__file__).with_name("csrc") / name
                for name in ("ftz.h", "parallel.h", "angle_grid_body.h", "max_frames_body.h"))
SOURCES = tuple(Path(__file__).with_name("csrc") / name
                for name in ("angle_grid.c", "attention_core.c", "max_frames.c", "pair_products.c"))
FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd", "-fPIC", "-shared"]
MAX_WIDTH = 256  # slots per row the kernels accept (csrc MAX_WIDTH); geometry.ROW_WIDTH is 32

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_failed: str | None = None
_pool: ThreadPoolExecutor | None = None
_openmp = False  # the loaded kernels split the atoms over PyTorch's OpenMP threads themselves


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


def _openmp_flags() -> list[str]:
    """``-fopenmp`` where PyTorch runs on GNU OpenMP (libgomp.so.1): the library then links the runtime PyTorch has
    already loaded (same soname), and its parallel regions run on PyTorch's threads (csrc/parallel.h). Elsewhere
    (another runtime, or none), no flag: the kernels run serially and Python threads split the atoms."""
    if os.environ.get("CRYSTALFRAMER_OPENMP", "1") == "0":
        return []
    torch_lib = Path(torch.__file__).with_name("lib")
    return ["-fopenmp"] if (torch_lib / "libgomp.so.1").exists() and "OpenMP" in torch.__config__.parallel_info() else []


def _compile(compiler: str, flags: list[str], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        subprocess.run([compiler, *flags, *map(str, SOURCES), "-o", str(out), "-lm"], check=True, capture_output=True,
                       timeout=120)
        os.replace(out, target)  # atomic: concurrent processes never load a half-written library


def _declare(lib: ctypes.CDLL) -> None:
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    lib.cf_openmp.argtypes = []
    lib.cf_openmp.restype = ctypes.c_int
    for suffix, real in (("f32", ctypes.c_float), ("f64", ctypes.c_double)):
        angle_fwd = getattr(lib, f"cf_angle_fwd_{suffix}")
        angle_fwd.argtypes = [ptr] * 5 + [i64] * 5 + [real, real, ctypes.c_int, ptr, i64, ptr, ptr]
        angle_fwd.restype = ctypes.c_int
        angle_bwd = getattr(lib, f"cf_angle_bwd_{suffix}")
        angle_bwd.argtypes = [ptr] * 4 + [i64] * 5 + [real, real, ctypes.c_int, ptr, i64] + [ptr] * 4 + [i64] * 2
        angle_bwd.restype = ctypes.c_int
        forward = getattr(lib, f"cf_attn_fwd_{suffix}")
        forward.argtypes = ([ptr] * 8 + [i64] * 7 + [real, real, real] + [ptr] * 5 + [ptr] * 3
                            + [ctypes.c_int, real, real, ctypes.c_uint64] + [ptr] * 4)
        forward.restype = ctypes.c_int
        backward = getattr(lib, f"cf_attn_bwd_{suffix}")
        backward.argtypes = [ptr] * 7 + [i64] * 7 + [real, real] + [ptr] * 7
        backward.restype = ctypes.c_int
        for name, args in (("dot_fwd", [ptr] * 4 + [i64] * 5 + [real, ptr]),
                           ("dot_bwd", [ptr] * 4 + [i64] * 5 + [real] + [ptr] * 3 + [i64] * 2),
                           ("mix_fwd", [ptr] * 4 + [i64] * 5 + [ptr]),
                           ("mix_bwd", [ptr] * 4 + [i64] * 5 + [ptr] * 3 + [i64] * 2)):
            fn = getattr(lib, f"cf_pair_{name}_{suffix}")
            fn.argtypes = args
            fn.restype = ctypes.c_int
        frames = getattr(lib, f"cf_max_frames_{suffix}")
        frames.argtypes = [ptr] * 8 + [i64] * 4 + [ctypes.c_int, real, real, ctypes.c_uint64] + [ptr] * 3
        frames.restype = ctypes.c_int


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
            flags = FLAGS + _openmp_flags()
            key = hashlib.sha256(b"".join(src.read_bytes() for src in SOURCES + HEADERS) + " ".join([compiler, *flags]).encode()
                                 + _cpu_signature().encode()).hexdigest()[:16]
            target = _cache_dir() / f"crystalframer-{platform.machine()}-{key}.so"
            if not target.exists():
                try:
                    _compile(compiler, flags, target)
                except subprocess.SubprocessError:
                    if flags == FLAGS:
                        raise
                    flags = FLAGS  # no OpenMP here: serial kernels, split by Python threads
                    target = target.with_name(target.stem + "-serial.so")
                    if not target.exists():
                        _compile(compiler, flags, target)
            lib = ctypes.CDLL(str(target))
            _declare(lib)
            global _openmp
            _openmp = lib.cf_openmp() > 0
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


def _thread_ranges(bounds: np.ndarray) -> list[tuple[int, int]]:
    """The atom ranges a kernel call is split into here: one (the kernels split it over PyTorch's OpenMP threads
    themselves), or one per PyTorch thread of about equal rows (``bounds``: prefix sums) for Python threads."""
    if _openmp:
        return [(0, len(bounds) - 1)]
    return _atom_ranges(bounds, torch.get_num_threads())


class _Partials:
    """Per-range output buffers of a kernel whose outputs reach other atoms (summed by the caller): with OpenMP one
    buffer per thread, all passed at once (base pointer, stride, count); otherwise one per Python-thread range."""

    def __init__(self, like: torch.Tensor, shape: tuple[int, ...], ranges: list[tuple[int, int]]):
        count = max(1, torch.get_num_threads()) if _openmp else len(ranges)
        self.buffers = like.new_zeros((count,) + tuple(shape))
        self._slot = {rg: k for k, rg in enumerate(ranges)}

    def args(self, lo: int, hi: int) -> tuple[int, int, int]:
        """(pointer, stride, count) for the call on atoms [lo, hi)."""
        if _openmp:
            return _ptr(self.buffers), self.buffers[0].numel(), self.buffers.shape[0]
        return _ptr(self.buffers[self._slot[(lo, hi)]]), 0, 1

    def total(self) -> torch.Tensor:
        return self.buffers.sum(0)


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
        raise RuntimeError(f"CPU kernel failed (codes {codes}); row width over {MAX_WIDTH}?")


def _suffix(t: torch.Tensor) -> str:
    """The kernels' name suffix for a tensor's dtype (float32 or float64; kernels_enabled checks the rest)."""
    return "f32" if t.dtype == torch.float32 else "f64"


def _ptr(t: torch.Tensor | np.ndarray) -> int:
    return t.data_ptr() if isinstance(t, torch.Tensor) else t.ctypes.data


def _atom_row_bounds(row_atom: torch.Tensor, num_atoms: int) -> np.ndarray:
    """(N + 1,) first row of each atom (rows are sorted by atom), int64."""
    counts = torch.bincount(row_atom, minlength=num_atoms)
    bounds = np.zeros(num_atoms + 1, dtype=np.int64)
    np.cumsum(counts.numpy(), out=bounds[1:])
    return bounds


ANGLE_LANES = 8  # heads per vector in the angle kernels (csrc/angle_grid.c): models with more heads use PyTorch


class CpuAngleTerm(torch.autograd.Function):
    """The framed angle term Σ_k P_kh Σ_m w_m g(e_ihk·r̂_m) (N, H, D) of the grid path in one compiled pass per atom
    (``csrc/angle_grid.c``): each (image-edge, head, axis) item is spread onto six nodes of the atom's histograms
    with its quintic Lagrange weights, and the histograms are multiplied by the tabulated projected basis while
    they are in cache; backward, the histograms' gradient is formed per atom and gathered at the same nodes.

    weights (R, H, W); table (3, G, D, 8) the projected basis at the grid nodes in head lanes (heads beyond H
    zero; differentiable); frames
    (N, H, 3, 3) detached; unit_rows (R, 3, W); row_atom (R,), sorted. Only slots with a direction count, so the
    zero image and empty slots need no zero weight. ``ends`` (N, H) int64, optional: only the first ends[i, h]
    slots of atom i are inside head h's softmax (slots are nearest first); the others are not visited and get
    weight gradient 0 (nothing upstream depends on it). Requires H ≤ 8.
    """

    @staticmethod
    def forward(ctx, weights: torch.Tensor, table: torch.Tensor, frames: torch.Tensor,  # type: ignore[override]
                unit_rows: torch.Tensor, row_atom: torch.Tensor, num_atoms: int, grid, cos_abs: bool,
                ends: torch.Tensor | None = None) -> torch.Tensor:
        lib = library()
        suffix = _suffix(weights)
        heads, width = weights.shape[1], weights.shape[2]
        dim = table.shape[2]
        weights_c = weights.detach().contiguous()
        ends_c = None if ends is None else ends.to(torch.int64).contiguous()
        frames_c = frames.detach().to(weights.dtype).contiguous()
        unit_c = unit_rows.detach().to(weights.dtype).contiguous()
        lanes = table.detach().contiguous()  # every product of the kernel is one 8-lane multiply-add
        bounds = _atom_row_bounds(row_atom, num_atoms)
        ranges = _thread_ranges(bounds)
        out = weights.new_empty((num_atoms, heads, dim))
        keep = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        hist = weights.new_empty((num_atoms, 3 * grid.size, ANGLE_LANES)) if keep else None
        _run_parallel(getattr(lib, f"cf_angle_fwd_{suffix}"), ranges, lambda lo, hi: (
            _ptr(weights_c), _ptr(frames_c), _ptr(unit_c), _ptr(bounds), None if ends_c is None else _ptr(ends_c),
            lo, hi, heads, width, grid.size, grid.start, 1.0 / grid.step, int(cos_abs), _ptr(lanes), dim, _ptr(out),
            None if hist is None else _ptr(hist)))
        if keep:
            ctx.save_for_backward(frames_c, unit_c, lanes, hist)
            ctx.meta = (grid, cos_abs, bounds, ranges, ends_c, heads, width, weights.shape[0])
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        frames, unit_rows, lanes, hist = ctx.saved_tensors
        grid, cos_abs, bounds, ranges, ends, heads, width, rows = ctx.meta
        grad_out = grad_out.contiguous()
        dim = grad_out.shape[-1]
        grad_weights = grad_out.new_empty((rows, heads, width)) if ctx.needs_input_grad[0] else None
        partial = _Partials(grad_out, tuple(lanes.shape), ranges)  # the table's gradient, per thread
        _run_parallel(getattr(library(), f"cf_angle_bwd_{_suffix(grad_out)}"), ranges, lambda lo, hi: (
            _ptr(frames), _ptr(unit_rows), _ptr(bounds), None if ends is None else _ptr(ends), lo, hi, heads, width,
            grid.size, grid.start, 1.0 / grid.step, int(cos_abs), _ptr(lanes), dim, _ptr(grad_out), _ptr(hist),
            None if grad_weights is None else _ptr(grad_weights), *partial.args(lo, hi)))
        grad_table = partial.total() if ctx.needs_input_grad[1] else None
        return grad_weights, grad_table, None, None, None, None, None, None, None


@dataclass
class SlotLayout:
    """The per-slot inputs of the attention kernels, prepared once per forward pass and shared by the layers.

    dist2 (R, W) Å²; pair_slot (R, W) int64; pad (R, W) uint8 (1 where the slot holds an image-edge); basis (R, W, B)
    the window of B consecutive distance bases first_basis .. first_basis + B − 1 of each slot (the others are below
    the window's bound, :func:`crystalframer.model.features.distance_basis_window`); num_bases K; bounds (N + 1,)
    the first row of each atom; ranges the atom ranges run by the threads.
    """

    dist2: torch.Tensor
    pair_slot: torch.Tensor
    pad: torch.Tensor
    basis: torch.Tensor
    first_basis: torch.Tensor
    num_bases: int
    bounds: np.ndarray
    ranges: list[tuple[int, int]]

    @classmethod
    def build(cls, dist2: torch.Tensor, pair_slot: torch.Tensor, pad_mask: torch.Tensor, row_atom: torch.Tensor,
              num_atoms: int, basis: torch.Tensor, first_basis: torch.Tensor, num_bases: int) -> "SlotLayout":
        bounds = _atom_row_bounds(row_atom, num_atoms)
        return cls(dist2=dist2.contiguous(), pair_slot=pair_slot.contiguous(),
                   pad=pad_mask.to(torch.uint8).contiguous(), basis=basis.contiguous(),
                   first_basis=first_basis.contiguous(), num_bases=num_bases, bounds=bounds,
                   ranges=_thread_ranges(bounds))


@dataclass
class MaxFrameRequest:
    """Max frames to compute inside the attention kernel, per atom while its logits are in cache
    (``csrc/max_frames.c``, the rules of :func:`crystalframer.model.frames.max_frames`): the geometry's unit_rows
    (R, 3, W), vec (R, W, 3) and valid_bias (R, W) in the logits' dtype; the tie-break noise (``stochastic``,
    half-widths of axes 1 and 2, and the counter-based generator's seed)."""

    unit_rows: torch.Tensor
    vec: torch.Tensor
    valid_bias: torch.Tensor
    stochastic: bool
    half_width1: float
    half_width2: float
    seed: int


class CpuAttentionCore(torch.autograd.Function):
    """The per-slot work of one attention layer in one compiled pass per atom (``csrc/attention_core.c``).

    qk (N, H, J): q·k/√d of each atom pair; a (N, H): the Gaussian coefficients a_ih; cut = (x_out, x_in): the
    per-head cutoff switch on x = a_ih·|r|² (:attr:`ModelConfig.head_cut`; (−inf, −inf): none). Returns weights
    (R, H, W) (the softmax over each atom's slots, times the switch; zero outside the cutoff), logits (R, H, W) (−inf on empty slots; only when
    ``need_logits``, else an empty tensor; −inf outside the cutoff; no gradient), pair weights (N, H, J) = Σ_n w_ijn and distance features
    (N, H, K) = Σ_m w_m b(|r_m|), ends (N, H) int64: the number of atom i's slots (nearest first) inside head h's
    cutoff, and, with a :class:`MaxFrameRequest`, the max frames (N, H, 3, 3) (rows e1, e2, e3; an empty tensor
    otherwise). The backward pass takes the gradients of weights, pair weights and features (the weights' from the
    angle term of framed models) and returns those of qk and a.
    """

    @staticmethod
    def forward(ctx, qk: torch.Tensor, a: torch.Tensor, layout: SlotLayout,  # type: ignore[override]
                need_logits: bool, cut: tuple[float, float],
                frames: MaxFrameRequest | None = None) -> tuple[torch.Tensor, ...]:
        lib = library()
        suffix = _suffix(qk)
        qk_c, a_c = qk.detach().contiguous(), a.detach().contiguous()
        n, heads, pairs = qk_c.shape
        rows, width = layout.dist2.shape
        window = layout.basis.shape[-1]
        weights = qk.new_empty((rows, heads, width))
        logits = qk.new_empty((rows, heads, width) if need_logits else (0,))
        pair_weights = qk.new_zeros((n, heads, pairs))
        features = qk.new_zeros((n, heads, layout.num_bases))
        ends = torch.empty((n, heads), dtype=torch.int64)
        floor = log_tiny(qk.dtype)
        if frames is not None:
            geometry = [frames.unit_rows.contiguous(), frames.vec.to(qk.dtype).contiguous(),
                        frames.valid_bias.contiguous()]
            d1, d2 = qk.new_empty((n, heads, 3)), qk.new_empty((n, heads, 3))  # the chosen directions (scratch)
            found = torch.empty((n, heads, 2), dtype=torch.uint8)
            frames_out = qk.new_empty((n, heads, 3, 3))
            frame_args = (*[_ptr(t) for t in geometry], int(frames.stochastic), frames.half_width1,
                          frames.half_width2, frames.seed, _ptr(d1), _ptr(d2), _ptr(found), _ptr(frames_out))
        else:
            frames_out = qk.new_empty((0,))
            frame_args = (None, None, None, 0, 0.0, 0.0, 0, None, None, None, None)
        _run_parallel(getattr(lib, f"cf_attn_fwd_{suffix}"), layout.ranges, lambda lo, hi: (
            _ptr(qk_c), _ptr(a_c), _ptr(layout.dist2), _ptr(layout.pair_slot), _ptr(layout.pad), _ptr(layout.basis),
            _ptr(layout.first_basis), _ptr(layout.bounds), lo, hi, heads, width, pairs, layout.num_bases, window,
            floor, cut[0], cut[1], _ptr(logits) if need_logits else None, _ptr(weights), _ptr(pair_weights), _ptr(features),
            _ptr(ends), *frame_args))
        ctx.save_for_backward(weights, ends, a_c)
        ctx.layout, ctx.shape, ctx.cut = layout, (n, heads, pairs), cut
        ctx.mark_non_differentiable(logits, ends, frames_out)
        ctx.set_materialize_grads(False)
        return weights, logits, pair_weights, features, ends, frames_out

    @staticmethod
    def backward(ctx, grad_weights, grad_logits, grad_pairs, grad_features, grad_ends, *_):  # type: ignore[override]
        weights, ends, a = ctx.saved_tensors
        layout: SlotLayout = ctx.layout
        n, heads, pairs = ctx.shape
        rows, width = layout.dist2.shape
        lib = library()
        suffix = _suffix(weights)
        grad_pairs = weights.new_zeros((n, heads, pairs)) if grad_pairs is None else grad_pairs.contiguous()
        if grad_features is None:
            grad_features = weights.new_zeros((n, heads, layout.num_bases))
        grad_features = grad_features.contiguous()
        extra = None if grad_weights is None else grad_weights.contiguous()
        grad_logit = weights.new_empty((rows, heads, width))
        grad_qk = weights.new_zeros((n, heads, pairs))
        grad_a = weights.new_zeros((n, heads))
        _run_parallel(getattr(lib, f"cf_attn_bwd_{suffix}"), layout.ranges, lambda lo, hi: (
            _ptr(weights), _ptr(layout.dist2), _ptr(layout.pair_slot), _ptr(ends), _ptr(layout.basis),
            _ptr(layout.first_basis), _ptr(layout.bounds), lo, hi, heads, width, pairs, layout.num_bases,
            layout.basis.shape[-1], ctx.cut[0], ctx.cut[1], _ptr(a), _ptr(grad_pairs), _ptr(grad_features), None if extra is None else _ptr(extra),
            _ptr(grad_logit), _ptr(grad_qk), _ptr(grad_a)))
        return grad_qk, grad_a, None, None, None, None


def max_frame_axes(scores: torch.Tensor, weights: torch.Tensor, unit_rows: torch.Tensor, vec: torch.Tensor,
                   dist2: torch.Tensor, valid_bias: torch.Tensor, a: torch.Tensor, row_atom: torch.Tensor,
                   stochastic: bool, half_width1: float, half_width2: float,
                   generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The two chosen directions of max (or static) frames, by the rules of :func:`frames.max_frames`
    (``csrc/max_frames.c``): scores, weights (R, H, W); unit_rows (R, 3, W) the slots' unit vectors, one component
    per line; vec (R, W, 3); dist2 (R, W); valid_bias (R, W) 0 on valid slots, −inf elsewhere (the geometry's
    :meth:`~crystalframer.model.geometry.EdgeGeometry.unit_rows` and ``valid_bias``, in the scores' dtype); a (N, H).
    Returns d1, d2 (N, H, 3) (oriented; zero where not found) and found1, found2 (N, H) bool.
    Stochastic tie-break noise comes from a counter-based generator keyed by one seed drawn from ``generator``
    (the global generator when None), so the draws are reproducible from the caller's generator."""
    lib = library()
    suffix = _suffix(scores)
    n, heads = a.shape
    width = scores.shape[2]
    bounds = _atom_row_bounds(row_atom, n)
    ranges = _thread_ranges(bounds)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator)) if stochastic else 0
    tensors = [t.detach().to(scores.dtype).contiguous() for t in (scores, weights, unit_rows, vec, dist2, valid_bias)]
    a_c = a.detach().to(scores.dtype).contiguous()
    d1 = scores.new_empty((n, heads, 3))
    d2 = scores.new_empty((n, heads, 3))
    found = torch.empty((n, heads, 2), dtype=torch.uint8)
    _run_parallel(getattr(lib, f"cf_max_frames_{suffix}"), ranges, lambda lo, hi: (
        *[_ptr(t) for t in tensors], _ptr(a_c), _ptr(bounds), lo, hi, heads, width,
        int(stochastic), half_width1, half_width2, seed, _ptr(d1), _ptr(d2), _ptr(found)))
    found = found.bool()
    return d1, d2, found[..., 0], found[..., 1]


def _pair_ranges(count: torch.Tensor) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """(count as int64 numpy, atom ranges of about equal numbers of pairs for the threads)."""
    counts = count.detach().cpu().numpy().astype(np.int64)
    bounds = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=bounds[1:])
    return np.ascontiguousarray(counts), _thread_ranges(bounds)


class CpuPairDot(torch.autograd.Function):
    """s (N, H, J) = scale · <a[i, h], b[dst[i, j], h]> for each atom's pairs j < count[i] (0 beyond): q·k/√d.
    a, b (N, H, D); dst (N, J) int64; count (N,) int64 (``csrc/pair_products.c``)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, dst: torch.Tensor, count: torch.Tensor,  # type: ignore[override]
                scale: float) -> torch.Tensor:
        lib = library()
        suffix = _suffix(a)
        a_c, b_c, dst_c = a.detach().contiguous(), b.detach().contiguous(), dst.contiguous()
        counts, ranges = _pair_ranges(count)
        n, heads, dim = a_c.shape
        pairs = dst_c.shape[1]
        out = a_c.new_empty((n, heads, pairs))
        _run_parallel(getattr(lib, f"cf_pair_dot_fwd_{suffix}"), ranges, lambda lo, hi: (
            _ptr(a_c), _ptr(b_c), _ptr(dst_c), _ptr(counts), lo, hi, heads, pairs, dim, scale, _ptr(out)))
        ctx.save_for_backward(a_c, b_c, dst_c)
        ctx.meta = (counts, ranges, scale)
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        a, b, dst = ctx.saved_tensors
        counts, ranges, scale = ctx.meta
        lib = library()
        suffix = _suffix(a)
        grad = grad.contiguous()
        n, heads, dim = a.shape
        ga = torch.empty_like(a)
        gbs = _Partials(a, tuple(b.shape), ranges)  # b's gradient reaches other atoms: one buffer per thread
        _run_parallel(getattr(lib, f"cf_pair_dot_bwd_{suffix}"), ranges, lambda lo, hi: (
            _ptr(a), _ptr(b), _ptr(dst), _ptr(counts), lo, hi, heads, dst.shape[1], dim, scale, _ptr(grad), _ptr(ga),
            *gbs.args(lo, hi)))
        return ga, gbs.total(), None, None, None


class CpuPairMix(torch.autograd.Function):
    """o (N, H, D) = Σ_{j < count[i]} p[i, h, j] · b[dst[i, j], h]: the value sums of attention.
    p (N, H, J); b (N, H, D); dst (N, J) int64; count (N,) int64 (``csrc/pair_products.c``)."""

    @staticmethod
    def forward(ctx, p: torch.Tensor, b: torch.Tensor, dst: torch.Tensor,  # type: ignore[override]
                count: torch.Tensor) -> torch.Tensor:
        lib = library()
        suffix = _suffix(p)
        p_c, b_c, dst_c = p.detach().contiguous(), b.detach().contiguous(), dst.contiguous()
        counts, ranges = _pair_ranges(count)
        n, heads, dim = b_c.shape
        pairs = dst_c.shape[1]
        out = b_c.new_empty((n, heads, dim))
        _run_parallel(getattr(lib, f"cf_pair_mix_fwd_{suffix}"), ranges, lambda lo, hi: (
            _ptr(p_c), _ptr(b_c), _ptr(dst_c), _ptr(counts), lo, hi, heads, pairs, dim, _ptr(out)))
        ctx.save_for_backward(p_c, b_c, dst_c)
        ctx.meta = (counts, ranges)
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        p, b, dst = ctx.saved_tensors
        counts, ranges = ctx.meta
        lib = library()
        suffix = _suffix(p)
        grad = grad.contiguous()
        n, heads, dim = b.shape
        gp = torch.empty_like(p)
        gbs = _Partials(b, tuple(b.shape), ranges)
        _run_parallel(getattr(lib, f"cf_pair_mix_bwd_{suffix}"), ranges, lambda lo, hi: (
            _ptr(p), _ptr(b), _ptr(dst), _ptr(counts), lo, hi, heads, dst.shape[1], dim, _ptr(grad), _ptr(gp),
            *gbs.args(lo, hi)))
        return gp, gbs.total(), None, None
