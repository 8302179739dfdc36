"""BLAS's GEMM called from compiled code, on a private one-thread copy of NumPy's OpenBLAS.

The time loops' per-step GEMMs are small, thousands per call: fanned out over BLAS's threads
they gain little on an idle machine and lose badly on a busy one, where the threads wait for
cores held by other programs. They should run on one thread — but an OpenBLAS's thread count
is one number for the whole process (``openblas_set_num_threads_local`` included): setting
it around a loop would change it under every other thread's NumPy calls, and race with them
and with a user's own ``threadpool_limits``. So the loops call a copy of their own: the
OpenBLAS library file NumPy loaded, loaded a second time from an anonymous in-memory file
(``memfd_create``; elsewhere a temporary copy, removed once loaded). The dynamic loader maps
it as a separate library, with its own thread count, set to one here once and never changed;
NumPy's OpenBLAS is only read (its thread count, so that a user who limited it to one thread
gets no second thread from :mod:`xrnn.backends.numpy.lockstep` either).

What this module provides:

- :func:`private`: the copy's GEMM entry points (:class:`Blas`), or None where NumPy's BLAS is
  not an OpenBLAS with C entry points, or the copy cannot be loaded.
- :func:`gemm`: ``C = op(A) op(B) + βC`` on row-major blocks through such an entry point, from
  compiled code (its address is an argument, so the kernels stay cacheable on disk).
- :func:`matmul_into`: ``out = A @ B`` for the Python loops, on the copy where there is one.
- :func:`numpy_threads`: the thread count of NumPy's OpenBLAS, read only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import tempfile
import threading
from functools import cache
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

import xrnn.core.tuning as tuning

__all__ = [
    "Blas",
    "element_pointer",
    "gemm",
    "matmul_into",
    "numpy_threads",
    "private",
    "step_gemm",
]

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_PRECISIONS = {"float32": "s", "float64": "d"}


def element_pointer(context: Any, builder: Any, array_type: Any, array: Any, index: Any) -> Any:
    """Code for the address of the flat element ``index`` of a contiguous array."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.gep(data, [index])


def _gemm_intrinsic(int_bits: int) -> Any:
    integer = ir.IntType(int_bits)
    enum = ir.IntType(32)

    @intrinsic
    def call(typingctx, address, ta, tb, M, N, K, A, a0, lda, B, b0, ldb, beta, C, c0, ldc):
        """``C[c0:] = op(A[a0:]) op(B[b0:]) + beta C`` (row-major; ``op`` transposes where
        ``ta``/``tb``) through the C function at ``address``: ``cblas_sgemm``/``cblas_dgemm``
        for ``A``'s dtype, ``int_bits``-bit integers."""
        scalar = A.dtype
        sig = types.void(address, ta, tb, M, N, K, A, a0, lda, B, b0, ldb, beta, C, c0, ldc)

        def codegen(context, builder, sig, args):
            address_, ta_, tb_, M_, N_, K_, A_, a0_, lda_, B_, b0_, ldb_, beta_, C_, c0_, ldc_ = (
                args
            )
            real = context.get_value_type(scalar)
            pointer = ir.IntType(8).as_pointer()
            fnty = ir.FunctionType(
                ir.VoidType(),
                [enum, enum, enum, integer, integer, integer, real, pointer, integer]
                + [pointer, integer, real, pointer, integer],
            )
            fn = builder.inttoptr(address_, fnty.as_pointer())

            def at(array_type, array, offset):
                p = element_pointer(context, builder, array_type, array, offset)
                return builder.bitcast(p, pointer)

            def int_(value):
                return builder.trunc(value, integer) if int_bits < 64 else value

            def trans(flag):
                return builder.select(
                    builder.icmp_signed("!=", flag, ir.Constant(flag.type, 0)),
                    ir.Constant(enum, _TRANS),
                    ir.Constant(enum, _NO_TRANS),
                )

            builder.call(
                fn,
                [
                    ir.Constant(enum, _ROW_MAJOR), trans(ta_), trans(tb_),
                    int_(M_), int_(N_), int_(K_), context.get_constant(scalar, 1),
                    at(sig.args[6], A_, a0_), int_(lda_),
                    at(sig.args[9], B_, b0_), int_(ldb_),
                    context.cast(builder, beta_, sig.args[12], scalar),
                    at(sig.args[13], C_, c0_), int_(ldc_),
                ],
            )  # fmt: skip
            return context.get_dummy_value()

        return sig, codegen

    return call


_gemm64 = _gemm_intrinsic(64)
_gemm32 = _gemm_intrinsic(32)
_kernel = numba.njit(cache=True, nogil=True, error_model="numpy")


# inlined into each caller: a kernel calls it with arrays of several kinds (2-D, 3-D), and as a
# function of its own it was compiled again for every combination, each time as a whole module
@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def gemm(blas, ta, tb, M, N, K, A, a0, lda, B, b0, ldb, beta, C, c0, ldc):
    """``C = op(A) op(B) + beta C`` on the row-major blocks starting at flat element offsets
    ``a0``, ``b0``, ``c0`` of the C-contiguous arrays ``A``, ``B``, ``C`` (leading dimensions
    ``lda``, ``ldb``, ``ldc``); ``op(A) = Aᵀ`` where ``ta`` (``B``: ``tb``). ``blas`` is
    :meth:`Blas.handle` for ``A``'s dtype."""
    address, ilp64 = blas
    if ilp64:
        _gemm64(address, ta, tb, M, N, K, A, a0, lda, B, b0, ldb, beta, C, c0, ldc)
    else:
        _gemm32(address, ta, tb, M, N, K, A, a0, lda, B, b0, ldb, beta, C, c0, ldc)


@_kernel
def _matmul(blas, A, B, C):
    """``C = A @ B`` through :func:`gemm` where each 2-D array has unit stride along one axis
    (``A`` either: a transposed view goes as ``op(A) = Aᵀ``; ``B``, ``C`` along their rows);
    False, having done nothing, otherwise."""
    size = C.itemsize
    M, K = A.shape
    N = B.shape[1]
    if B.shape[0] != K or C.shape[0] != M or C.shape[1] != N or min(M, N, K) == 0:
        return False  # (NumPy's matmul raises or handles it)
    if B.strides[1] != size or C.strides[1] != size:
        return False
    if A.strides[1] == size:
        ta, lda = False, _leading(A.strides[0], size, M, K)
    elif A.strides[0] == size:
        ta, lda = True, _leading(A.strides[1], size, K, M)
    else:
        return False
    ldb, ldc = _leading(B.strides[0], size, K, N), _leading(C.strides[0], size, M, N)
    if lda == 0 or ldb == 0 or ldc == 0:
        return False
    gemm(blas, ta, False, M, N, K, A, 0, lda, B, 0, ldb, 0.0, C, 0, ldc)
    return True


@_kernel
def _leading(stride, size, rows, columns):
    """The leading dimension, in elements, of a row-major block of ``rows`` × ``columns``
    whose rows lie ``stride`` bytes apart (any stride for a single row: NumPy's strides of a
    length-1 axis say nothing); 0 where BLAS cannot take it (overlapping or reversed rows)."""
    if rows == 1:
        return max(columns, 1)
    if stride % size != 0 or stride // size < columns:
        return 0
    return stride // size


class Blas:
    """A loaded OpenBLAS's C GEMM entry points."""

    def __init__(self, addresses: dict[str, int], ilp64: bool) -> None:
        self.addresses, self.ilp64 = addresses, ilp64

    def handle(self, dtype: Any) -> tuple[int, bool] | None:
        """``(address, ilp64)`` of the GEMM for ``dtype`` (``"float32"``/``"float64"``)."""
        address = self.addresses.get(str(dtype))
        return None if address is None else (address, self.ilp64)


def _numpy_openblas() -> Any:
    """threadpoolctl's controller of the OpenBLAS NumPy loaded, or None."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    found = ThreadpoolController().select(internal_api="openblas").lib_controllers
    # NumPy's own copy where another library (SciPy's wheels) brought a second OpenBLAS
    found.sort(key=lambda c: "numpy" not in os.path.basename(os.path.dirname(c.filepath)))
    return found[0] if found else None


def _once(load: Any) -> Any:
    """``load()`` run once per process, on first use, however many threads ask at once."""
    lock = threading.Lock()
    result: list[Any] = []

    def get() -> Any:
        if not result:
            with lock:
                if not result:  # (another thread may have loaded it meanwhile)
                    result.append(load())
        return result[0]

    return get


_controller = _once(_numpy_openblas)


def numpy_threads() -> int | None:
    """The thread count of NumPy's OpenBLAS now (None: NumPy's BLAS is another library)."""
    controller = _controller()
    return None if controller is None else int(controller.get_num_threads())


def _load_copy(path: str) -> Any:
    """The library file at ``path`` loaded as a library of its own, or None."""
    with open(path, "rb") as source:
        if hasattr(os, "memfd_create"):
            with contextlib.suppress(OSError):
                fd = os.memfd_create("xrnn-openblas", 0)
                try:
                    with os.fdopen(os.dup(fd), "wb") as copy:
                        shutil.copyfileobj(source, copy)
                    return ctypes.CDLL(f"/proc/self/fd/{fd}", mode=os.RTLD_LOCAL)
                except OSError:  # memfd files not executable here: the temporary copy
                    source.seek(0)
                finally:
                    os.close(fd)  # the loader keeps its own mapping
        folder = tempfile.mkdtemp(prefix="xrnn-openblas-")
        copy_path = os.path.join(folder, os.path.basename(path))
        try:
            with open(copy_path, "wb") as copy:
                shutil.copyfileobj(source, copy)
            return ctypes.CDLL(copy_path, mode=getattr(os, "RTLD_LOCAL", 0))
        except OSError:
            return None
        finally:
            # removable once loaded where the system allows it (not on Windows): the folder
            # then stays in the temporary directory
            with contextlib.suppress(OSError):
                os.unlink(copy_path)
                os.rmdir(folder)


_SPELLINGS = (("scipy_", "64_"), ("", "64_"), ("scipy_", ""), ("", ""))


def _entry_points(library: Any) -> tuple[dict[str, int], bool, Any] | None:
    """The library's C GEMM entry points by dtype, whether its integers are 64-bit, and its
    ``openblas_set_num_threads``, under the names OpenBLAS builds use; None where it has
    none."""
    # numpy's wheels: scipy-openblas64 ("scipy_" prefix, "64_" suffix, 64-bit integers);
    # distribution builds: plain names, 64-bit integers only with a "64_" suffix
    for prefix, suffix in _SPELLINGS:
        names = {d: f"{prefix}cblas_{c}gemm{suffix}" for d, c in _PRECISIONS.items()}
        setter = getattr(library, f"{prefix}openblas_set_num_threads{suffix}", None)
        if setter is None or not all(hasattr(library, n) for n in names.values()):
            continue
        ilp64 = _ilp64(library, prefix, suffix)
        if ilp64 is None:
            continue
        addresses = {
            d: ctypes.cast(getattr(library, n), ctypes.c_void_p).value for d, n in names.items()
        }
        return addresses, ilp64, setter  # type: ignore[return-value]
    return None


def _ilp64(library: Any, prefix: str, suffix: str) -> bool | None:
    """Whether the library's integers are 64-bit: its build configuration says
    ``USE64BITINT`` (None when it does not say)."""
    config = getattr(library, f"{prefix}openblas_get_config{suffix}", None)
    if config is None:
        return None
    config.restype = ctypes.c_char_p
    return b"USE64BITINT" in (config() or b"")


def _load_private() -> Blas | None:
    controller = _controller()
    if controller is None:
        return None
    copy = _load_copy(controller.filepath)
    found = None if copy is None else _entry_points(copy)
    if found is None:
        return None
    addresses, ilp64, set_threads = found
    theirs = _entry_points(ctypes.CDLL(controller.filepath))  # NumPy's, already loaded
    if theirs is None or theirs[0] == addresses:
        return None  # the loader handed back NumPy's library itself: not ours to change
    set_threads.argtypes = [ctypes.c_int]
    set_threads(1)
    return Blas(addresses, ilp64)


_private = _once(_load_private)


def private() -> Blas | None:
    """The private one-thread OpenBLAS (see the module notes), loaded on first use (once per
    process); None where there is none."""
    return _private()


def step_gemm(dtype: Any, flops: float) -> tuple[int, bool] | None:
    """The GEMM handle (:meth:`Blas.handle`) for a time loop's per-step GEMMs of ``flops``
    FLOPs over ``dtype`` arrays: the private one-thread OpenBLAS's for steps below
    :data:`xrnn.core.tuning.SMALL_STEP_FLOPS`, None (NumPy's ``matmul``, on its threads) for larger
    ones or where there is no private copy."""
    if flops >= tuning.SMALL_STEP_FLOPS:
        return None
    return _handles().get(dtype)


@cache
def _handles() -> dict[Any, tuple[int, bool]]:
    """The private GEMM handles by NumPy dtype (a dictionary: a loop looks one up per step)."""
    blas = private()
    if blas is None:
        return {}
    return {np.dtype(d): blas.handle(d) for d in _PRECISIONS}  # type: ignore[misc]


def matmul_into(handle: tuple[int, bool] | None, A: Any, B: Any, out: Any) -> Any:
    """``out = A @ B`` for 2-D arrays of ``handle``'s dtype: through the GEMM ``handle``
    (:func:`step_gemm`) where the arrays' strides allow it, else NumPy's ``matmul``."""
    if handle is None or not _matmul(handle, A, B, out):
        np.matmul(A, B, out=out)
    return out
