"""Two threads stepping through one time loop in lockstep, for the compiled NumPy kernels.

A time loop cannot run its steps in parallel, but it can split each step: one thread takes the
first half of the hidden units, a helper thread the second — each its units' rows of the
recurrent GEMM and its units' pointwise math —, and the two meet once per step, when each
needs the whole state the other half finished. OpenBLAS's own threads split only the GEMM,
and the pointwise kernel and the Python between the calls run on one core: on the benchmark's
"long" LSTM (n_a = 128, m = 16) a forward step took 25 µs that way and 14 µs in lockstep.

What this module provides, for :mod:`xrnn.backends.jit`'s loops:

- :func:`gemm`: BLAS's GEMM called from compiled code, through the C entry point of the
  OpenBLAS that NumPy loaded (found by threadpoolctl; its address is an argument, so the
  kernels stay cacheable on disk). Each thread calls it on its own rows, with OpenBLAS on one
  thread for the loop (:func:`run`).
- :func:`publish` / :func:`wait_for`: the per-step meeting point, an atomic store-release of a
  step counter and a spinning load-acquire of the other thread's counter (the wait is a few
  microseconds; a sleeping wait costs a wake-up per step), yielding the core after
  :data:`SPINS` checks. A thread whose partner failed stops waiting (:data:`ABORT`).
- :func:`run`: hands the helper thread its half and runs the caller's half; the helper is one
  daemon thread per process, idle (blocked, not spinning) between calls, so it never competes
  with BLAS's threads for the cores outside the loops.

The loop runs in lockstep only where it can: OpenBLAS with a C GEMM entry point, at least two
CPUs for this process, BLAS allowed more than one thread (a user who set one thread gets
one), and the helper idle (a second Python thread calling xrnn meanwhile runs serially).
:func:`available` says so (and hands out the GEMM); the loops fall back to their one-thread
form otherwise.
"""

from __future__ import annotations

import ctypes
import os
import platform
import queue
import threading
from functools import cache
from typing import Any

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = [
    "ABORT",
    "Blas",
    "FLAGS",
    "available",
    "blas",
    "gemm",
    "new_flags",
    "publish",
    "run",
    "wait_for",
]

# The flags array (new_flags): int64, one counter per thread a cache line apart (no false
# sharing), the abort flag and the address of the C library's sched_yield (0: none)
FLAGS, ABORT, YIELD = 24, 16, 17
# A wait spins this many times, then yields the core at every check: where another thread
# holds a core, the one it waits for runs sooner (the "long" LSTM's forward loop beside an
# OpenBLAS worker still spinning after a threaded GEMM: 70 ms waiting by spinning only, 6 ms
# yielding after 100 checks, 2.8 ms without that worker either way)
SPINS = 200
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


# --- atomics -------------------------------------------------------------------------------------


def _element_pointer(context, builder, array_type, array, index):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.gep(data, [index])


@intrinsic
def _load_acquire(typingctx, flags, index):
    """``flags[index]`` read with acquire ordering (every write the other thread made before
    its release store of that value is visible after this load)."""

    def codegen(context, builder, sig, args):
        pointer = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        return builder.load_atomic(pointer, "acquire", 8)

    return types.int64(flags, index), codegen


@intrinsic
def _store_release(typingctx, flags, index, value):
    """``flags[index] = value`` with release ordering (after every earlier write)."""

    def codegen(context, builder, sig, args):
        pointer = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        builder.store_atomic(args[2], pointer, "release", 8)
        return context.get_dummy_value()

    return types.void(flags, index, value), codegen


_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")


@intrinsic
def _spin_hint(typingctx):
    """x86's ``pause`` in a spin loop (frees the core's pipeline for its sibling thread);
    nothing elsewhere."""

    def codegen(context, builder, sig, args):
        if _X86:
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause"
            )
            builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


_kernel = numba.njit(cache=True, nogil=True, error_model="numpy")


@intrinsic
def _call(typingctx, address):
    """Call the C function ``int f(void)`` at ``address``."""

    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(ir.IntType(32), [])
        builder.call(builder.inttoptr(args[0], fnty.as_pointer()), [])
        return context.get_dummy_value()

    return types.void(address), codegen


@_kernel
def publish(flags, thread, steps):
    """Say that ``thread`` (0 or 1) has finished its first ``steps`` steps."""
    _store_release(flags, thread * 8, steps)


@_kernel
def wait_for(flags, thread, steps):
    """Wait until ``thread`` has finished ``steps`` steps; False if it failed instead."""
    spins = 0
    while _load_acquire(flags, thread * 8) < steps:
        if _load_acquire(flags, ABORT) != 0:
            return False
        spins += 1
        if spins > SPINS and flags[YIELD] != 0:
            _call(flags[YIELD])
        else:
            _spin_hint()
    return True


def new_flags() -> Any:
    """A loop's flags array (see :data:`FLAGS`)."""
    import numpy as np

    flags = np.zeros(FLAGS, dtype=np.int64)
    flags[YIELD] = _sched_yield()
    return flags


@cache
def _sched_yield() -> int:
    try:
        return ctypes.cast(ctypes.CDLL(None).sched_yield, ctypes.c_void_p).value or 0
    except (AttributeError, OSError):  # no C library symbol: spin only
        return 0


# --- BLAS's GEMM from compiled code ----------------------------------------------------------


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
                p = _element_pointer(context, builder, array_type, array, offset)
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


@_kernel
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


class Blas:
    """The OpenBLAS NumPy loaded, through threadpoolctl: its C GEMM entry points and its
    thread count."""

    def __init__(self, controller: Any, addresses: dict[str, int], ilp64: bool) -> None:
        self.controller, self.addresses, self.ilp64 = controller, addresses, ilp64

    def handle(self, dtype: Any) -> tuple[int, bool] | None:
        """``(address, ilp64)`` of the GEMM for ``dtype`` (``"float32"``/``"float64"``)."""
        address = self.addresses.get(str(dtype))
        return None if address is None else (address, self.ilp64)

    def threads(self) -> int:
        return int(self.controller.get_num_threads())

    def set_threads(self, n: int) -> None:
        self.controller.set_num_threads(n)


@cache
def blas() -> Blas | None:
    """The :class:`Blas` of NumPy's OpenBLAS, or None (another BLAS, threadpoolctl missing, or
    no C GEMM symbol under the names OpenBLAS builds use)."""
    try:
        import numpy  # noqa: F401  (loads the BLAS threadpoolctl looks for)
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    for controller in ThreadpoolController().select(internal_api="openblas").lib_controllers:
        library = ctypes.CDLL(controller.filepath)
        # numpy's wheels: scipy-openblas64 ("scipy_" prefix, "64_" suffix, 64-bit integers);
        # distribution builds: plain names, 64-bit integers only with a "64_" suffix
        for prefix, suffix in (("scipy_", "64_"), ("", "64_"), ("scipy_", ""), ("", "")):
            names = {d: f"{prefix}cblas_{c}gemm{suffix}" for d, c in _PRECISIONS.items()}
            if all(hasattr(library, n) for n in names.values()):
                ilp64 = _ilp64(library, prefix, suffix)
                if ilp64 is None:
                    continue
                addresses = {
                    d: ctypes.cast(getattr(library, n), ctypes.c_void_p).value
                    for d, n in names.items()
                }
                return Blas(controller, addresses, ilp64)  # type: ignore[arg-type]
    return None


_PRECISIONS = {"float32": "s", "float64": "d"}


def _ilp64(library: Any, prefix: str, suffix: str) -> bool | None:
    """Whether the library's integers are 64-bit: its build configuration says
    ``USE64BITINT`` (None when it does not say)."""
    config = getattr(library, f"{prefix}openblas_get_config{suffix}", None)
    if config is None:
        return None
    config.restype = ctypes.c_char_p
    return b"USE64BITINT" in (config() or b"")


# --- the helper thread ------------------------------------------------------------------------


class _Helper:
    """One daemon thread that runs the second half of lockstep loops, one call at a time."""

    def __init__(self) -> None:
        self.busy = threading.Lock()  # held by the caller whose loop the helper runs
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.done: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._serve, name="xrnn-lockstep", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            kernel, args, flags = self.jobs.get()
            try:
                kernel(*args)
                error = None
            except BaseException as exc:  # handed to the caller, which re-raises it
                flags[ABORT] = 1
                error = exc
            self.done.put(error)


_helper: _Helper | None = None


def _reset_after_fork() -> None:
    global _helper
    _helper = None  # a forked child has none of its parent's threads


os.register_at_fork(after_in_child=_reset_after_fork)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@cache
def _enough_cpus() -> bool:
    return _cpus() >= 2


def available(dtype: Any) -> tuple[int, bool] | None:
    """The GEMM handle (:meth:`Blas.handle`) for a loop over ``dtype`` arrays that may run in
    lockstep now, else None (see the module notes; the helper being idle is checked by
    :func:`run` itself)."""
    if os.environ.get("XRNN_LOCKSTEP", "1").strip() == "0" or not _enough_cpus():
        return None
    b = blas()
    if b is None or b.threads() < 2:
        return None
    return b.handle(dtype)


def run(kernel: Any, mine: tuple, helpers: tuple, flags: Any) -> bool:
    """Run ``kernel(*mine)`` here and ``kernel(*helpers)`` on the helper thread, OpenBLAS on
    one thread meanwhile; both share ``flags`` (:func:`new_flags`). False, having run
    nothing, when the helper is busy with another caller's loop."""
    global _helper
    if _helper is None:
        _helper = _Helper()
    helper, b = _helper, blas()
    assert b is not None
    if not helper.busy.acquire(blocking=False):
        return False
    threads = b.threads()
    b.set_threads(1)  # each thread's GEMM stays on it
    helper.jobs.put((kernel, helpers, flags))
    error = None
    try:
        kernel(*mine)
    except BaseException:
        flags[ABORT] = 1  # the helper stops waiting for us
        raise
    finally:
        try:
            error = helper.done.get()
        except BaseException:  # interrupted while the helper works on: it finishes alone,
            flags[ABORT] = 1  # holding its lock, and a later call starts another helper
            _helper = None
            raise
        finally:
            b.set_threads(threads)
        helper.busy.release()
    if error is not None:
        raise error
    return True
