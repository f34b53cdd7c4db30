"""The bit-exact model's hot element passes in C, compiled on first use; numpy otherwise.

Why a compiled helper: quantising an operand, rounding an accumulator and finding a
tensor's peak are each several numpy passes (scale, round, saturate, convert; max and
min), and every pass costs about as much as the arithmetic, so in numpy the golden
backend spends more time on them than on its matrix products. ``native.c`` does each
in one pass. It needs no new dependency: it is compiled with the C compiler the
project already needs for Verilator (``$CC``, else ``cc``), once per source version,
into the cache (:func:`barista_base.cache.cache_dir`). Without a compiler, or with
``BARISTA_NATIVE=0``, the numpy code runs instead; both give the same bits (the
tests run both).

The exact matrix product of 16-bit operands (``native_gemm.c``) is the other hot spot:
exactness needs float64 BLAS for them (their products take 30 bits, beyond float32's 24),
at half float32's speed. Where the CPU has AMX-INT8 (and Linux grants the tile state),
the operands' bytes are multiplied in int8 tiles with int32 sums instead, which gives the
same integers several times faster, and the rounding runs on each tile as it is formed.

Each function here returns ``None`` when it cannot serve a call (no library, or an
array it does not handle), and the caller then takes its numpy path.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from barista_base.cache import atomic_directory, cache_dir, entry_lock

ENV = "BARISTA_NATIVE"
SOURCE = Path(__file__).with_name("native.c")
# The exact 16-bit matrix product on AMX (exact_product), in a file of its own.
SOURCES = (SOURCE, Path(__file__).with_name("native_gemm.c"))
# IEEE arithmetic as numpy does it: no fast-math, no fused multiply-add. Without trapping
# math (FP exceptions never trap in numpy's process, and the values are the same) GCC
# vectorises floor as it does rint.
FLAGS = [
    "-O3",
    "-std=c99",
    "-fPIC",
    "-shared",
    "-ffp-contract=off",
    "-fno-fast-math",
    "-fno-trapping-math",
]


def _arch_flags() -> list[str]:
    """The widest x86-64 level this CPU runs (rint, floor and compares in vectors)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return []
    try:
        cpu = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set(next((ln for ln in cpu.splitlines() if ln.startswith("flags")), "").split())
    # AVX-512's mask registers make the saturating compares cheap: the passes run about
    # twice as fast as with AVX2's blends (same IEEE operations, so the same bits).
    if {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"} <= flags:
        return ["-march=x86-64-v4"]
    if {"avx2", "fma", "bmi2"} <= flags:
        return ["-march=x86-64-v3"]
    return ["-march=x86-64-v2"] if "sse4_2" in flags else []


_I64P = ctypes.POINTER(ctypes.c_int64)
_lib: ctypes.CDLL | None = None
_tried = False
_exact = False  # the library's exact_product can run here (AMX-INT8, allowed by the OS)
_disabled = 0


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def _build() -> ctypes.CDLL | None:
    cc = _compiler()
    try:
        sources = [path.read_bytes() for path in SOURCES]
    except OSError:
        return None
    if cc is None:
        return None
    flags = FLAGS + _arch_flags()
    key = hashlib.sha256(b"\0".join([*sources, cc.encode(), " ".join(flags).encode()]))
    entry = cache_dir("native") / key.hexdigest()[:16]
    lib = entry / "libbarista_native.so"
    try:
        with entry_lock(entry):
            if not lib.is_file():
                with atomic_directory(entry) as tmp:
                    subprocess.run(
                        [cc, *flags, "-o", str(tmp / lib.name), *map(str, SOURCES), "-lm"],
                        check=True,
                        capture_output=True,
                    )
    except (OSError, subprocess.CalledProcessError):
        return None
    try:
        dll = ctypes.CDLL(str(lib))
    except OSError:
        return None
    dll.bn_peak.restype = ctypes.c_double
    dll.bn_peak.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
    dll.bn_quantize.restype = ctypes.c_double
    dll.bn_quantize.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int,
        _I64P,
        _I64P,
        ctypes.c_double,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_double,
        ctypes.c_double,
        ctypes.c_void_p,
    ]
    # How a result is rounded and stored: mode, scale, lo, hi, out, its row stride, dequantize.
    rounding = [
        ctypes.c_int,
        *[ctypes.c_double] * 3,
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_double,
    ]
    dll.bn_round.restype = ctypes.c_double
    dll.bn_round.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, *rounding]
    dll.bn_round_stochastic.restype = ctypes.c_double
    dll.bn_round_stochastic.argtypes = [
        ctypes.c_void_p,
        *[ctypes.c_int64] * 6,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_uint32,
        ctypes.c_double,
        ctypes.c_double,
        ctypes.c_double,
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_double,
    ]
    dll.bn_exact_ready.restype = ctypes.c_int
    dll.bn_exact_ready.argtypes = []
    # The operands of an exact product (_operand_args): a, its strides, b, its strides, m, k, n.
    operands = [ctypes.c_void_p, *[ctypes.c_int64] * 2, ctypes.c_void_p, *[ctypes.c_int64] * 5]
    dll.bn_exact_gemm.restype = ctypes.c_int
    dll.bn_exact_gemm.argtypes = [*operands, ctypes.c_void_p, ctypes.c_int64, ctypes.c_double]
    dll.bn_exact_gemm_round.restype = ctypes.c_int
    dll.bn_exact_gemm_round.argtypes = [*operands, *rounding, ctypes.POINTER(ctypes.c_double)]
    return dll


def library() -> ctypes.CDLL | None:
    """The compiled helper, building it on first use; ``None`` when unavailable or disabled."""
    global _lib, _tried, _exact
    if _disabled or os.environ.get(ENV, "1") == "0":
        return None
    if not _tried:
        _tried = True
        _lib = _build()
        _exact = _lib is not None and bool(_lib.bn_exact_ready())
    return _lib


def exact_products() -> bool:
    """Whether :func:`exact_product` can run here (the helper is built, not disabled, and
    the CPU's AMX-INT8 tiles are granted to this process)."""
    return library() is not None and _exact


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Run the numpy paths inside the block (the reference the C passes are tested against)."""
    global _disabled
    _disabled += 1
    try:
        yield
    finally:
        _disabled -= 1


def _layout(x: np.ndarray) -> tuple[ctypes.Array, ctypes.Array] | None:
    """Shape and byte strides padded to four axes, or None beyond four."""
    if x.ndim > 4:
        return None
    pad = 4 - x.ndim
    shape = (ctypes.c_int64 * 4)(*([1] * pad + list(x.shape)))
    strides = (ctypes.c_int64 * 4)(*([0] * pad + list(x.strides)))
    return shape, strides


def _float(x: np.ndarray) -> int | None:
    """1 for float64, 0 for float32, None for anything else."""
    return {np.dtype(np.float64): 1, np.dtype(np.float32): 0}.get(x.dtype)


def peak(x: np.ndarray) -> float | None:
    """``max |x|`` of a float32/float64 array whose elements fill one block of memory (in
    any axis order), nan if it holds a nan; or None."""
    lib, is64 = library(), _float(x)
    if lib is None or is64 is None or x.size == 0:
        return None
    dense = x.transpose(np.argsort(x.strides)[::-1])  # the order doesn't change a maximum
    if not dense.flags.c_contiguous:
        return None
    return float(lib.bn_peak(x.ctypes.data, x.size, is64))


def quantize(
    x: np.ndarray,
    scale: float,
    floor: bool,
    bounds: tuple[float, float] | None,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, float] | None:
    """``clip(round(x * scale))`` into ``out`` (C-contiguous float64, x's shape) or a new
    array, and ``max |x|`` read in the same pass (nan if x holds a nan); or None. Rounds
    to nearest even, or down with ``floor``; saturates to ``bounds`` when given."""
    lib, is64 = library(), _float(x)
    layout = _layout(x)
    if lib is None or is64 is None or layout is None or x.size == 0:
        return None
    if out is None:
        out = np.empty(x.shape, dtype=np.float64)
    lo, hi = bounds if bounds is not None else (0.0, 0.0)
    peak = lib.bn_quantize(
        x.ctypes.data,
        is64,
        *layout,
        scale,
        int(floor),
        int(bounds is not None),
        lo,
        hi,
        out.ctypes.data,
    )
    return out, float(peak)


def _target(shape: tuple[int, ...], out: np.ndarray | None) -> tuple[int | None, int] | None:
    """Pointer and row stride of a float32 ``out`` for values of ``shape`` (NULL: in place)."""
    if out is None:
        return None, 0
    if out.dtype != np.float32 or out.shape != shape or out.strides[1] != 4:
        return None
    return out.ctypes.data, out.strides[0] // 4


def _block(acc: np.ndarray) -> bool:
    return acc.dtype == np.float64 and acc.ndim == 2 and acc.flags.c_contiguous


_MODES = {"rint": 0, "floor": 1, "none": 2}  # the rounding modes' codes in native.c


def round_accumulators(
    acc: np.ndarray,
    mode: str,
    bounds: tuple[float, float],
    out: np.ndarray | None = None,
    dequantize: float = 1.0,
    scale: float = 1.0,
) -> float | None:
    """Round an ``(m, n)`` C-contiguous float64 block of accumulators times ``scale`` (a
    power of two: ``2**-shift``, or 1 for accumulators already scaled):
    ``q = clip(round(acc * scale))``, mode ``"rint"``, ``"floor"`` or ``"none"``.
    Writes ``q`` over ``acc``, or ``q * dequantize`` into the float32 ``out`` (rows
    contiguous; ``acc`` then keeps its values). Returns ``max |q|``, or None."""
    lib = library()
    target = _target(acc.shape, out)
    if lib is None or not _block(acc) or target is None:
        return None
    code = _MODES[mode]
    m, n = acc.shape
    return float(lib.bn_round(acc.ctypes.data, m, n, code, scale, *bounds, *target, dequantize))


def round_stochastic(
    acc: np.ndarray,
    rows: int,
    cols: int,
    tiles: tuple[int, int],
    tables: np.ndarray,
    planes: np.ndarray,
    shift: int,
    bounds: tuple[float, float],
    out: np.ndarray | None = None,
    dequantize: float = 1.0,
) -> float | None:
    """Stochastic rounding of an ``(m, n)`` float64 block of accumulators, columns
    ``tiles[0] * cols`` on of a result ``tiles[1]`` column tiles wide, drawing element
    ``(i, j)``'s word as :func:`barista_hw.model.output_words` does from the lanes'
    product ``tables`` and the byte ``planes`` of the beat powers. Stores and returns as
    :func:`round_accumulators` does, or None."""
    lib = library()
    target = _target(acc.shape, out)
    if (
        lib is None
        or not _block(acc)
        or target is None
        or tables.dtype != np.uint32
        or not tables.flags.c_contiguous
        or planes.dtype != np.uint8
        or not planes.flags.c_contiguous
    ):
        return None
    m, n = acc.shape
    peak = lib.bn_round_stochastic(
        acc.ctypes.data,
        m,
        n,
        rows,
        cols,
        *tiles,
        tables.ctypes.data,
        planes.ctypes.data,
        planes.shape[1],
        (1 << shift) - 1,
        2.0**-shift,
        *bounds,
        *target,
        dequantize,
    )
    return float(peak)


def _exact_operands(a: np.ndarray, b: np.ndarray) -> ctypes.CDLL | None:
    """The library when its exact product can take ``a @ b`` (see :func:`exact_product`)."""
    lib = library()
    if not exact_products() or a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        return None
    for x in (a, b):
        if x.dtype != np.float64 or x.size == 0 or any(s % 8 for s in x.strides):
            return None
    return lib


def _operand_args(a: np.ndarray, b: np.ndarray) -> tuple[int, ...]:
    """Pointers, element strides and ``m, k, n`` of ``a @ b`` as the C passes take them."""
    (m, k), n = a.shape, b.shape[1]
    a_at, b_at = a.ctypes.data, b.ctypes.data
    return (
        a_at,
        a.strides[0] // 8,
        a.strides[1] // 8,
        b_at,
        b.strides[0] // 8,
        b.strides[1] // 8,
        m,
        k,
        n,
    )


def exact_product(a: np.ndarray, b: np.ndarray, scale: float = 1.0) -> np.ndarray | None:
    """``(a @ b) * scale`` as a new C-contiguous float64 array, for float64 ``a`` (m, k)
    and ``b`` (k, n) (any strides) holding integers in [-32768, 32767] whose product the
    caller has proved exact in float64 (every partial sum below 2**53); ``scale`` a
    power of two. Formed from int8 tile products with int32 sums on AMX: the exact
    integers, as the float64 BLAS call gives them. None without AMX or for other arrays."""
    lib = _exact_operands(a, b)
    if lib is None:
        return None
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.float64)
    done = lib.bn_exact_gemm(*_operand_args(a, b), out.ctypes.data, out.shape[1], scale)
    return out if done == 0 else None


def exact_rounded(
    a: np.ndarray,
    b: np.ndarray,
    mode: str,
    scale: float,
    bounds: tuple[float, float],
    out: np.ndarray,
    dequantize: float,
) -> float | None:
    """:func:`exact_product` ``(a @ b)`` rounded as :func:`round_accumulators` rounds it
    (``q = clip(round(acc * scale))``, mode ``"rint"``, ``"floor"`` or ``"none"``), each
    16x16 tile as it is formed, into the float32 ``out`` (rows contiguous) as
    ``q * dequantize``; the accumulators are never stored. Returns ``max |q|``, or None."""
    lib = _exact_operands(a, b)
    target = _target((a.shape[0], b.shape[1]), out)
    if lib is None or target is None or target[0] is None:
        return None
    code = _MODES[mode]
    peak = ctypes.c_double()
    done = lib.bn_exact_gemm_round(
        *_operand_args(a, b), code, scale, *bounds, *target, dequantize, ctypes.byref(peak)
    )
    return peak.value if done == 0 else None
