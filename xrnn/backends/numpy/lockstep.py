"""Two threads stepping through one time loop in lockstep, for the compiled NumPy kernels.

A time loop cannot run its steps in parallel, but it can split each step: one thread takes the
first half of the hidden units, a helper thread the second — each its units' rows of the
recurrent GEMM and its units' pointwise math —, and the two meet once per step, when each
needs the whole state the other half finished. OpenBLAS's own threads split only the GEMM,
and the pointwise kernel and the Python between the calls run on one core: on the benchmark's
"long" LSTM (n_a = 128, m = 16) a forward step took 25 µs that way and 14 µs in lockstep.

What this module provides, for :mod:`xrnn.backends.numpy.jit`'s loops:

- :func:`publish` / :func:`wait_for`: the per-step meeting point, an atomic store-release of a
  step counter and a spinning load-acquire of the other thread's counter (the wait is a few
  microseconds; a sleeping wait costs a wake-up per step), yielding the core after
  :data:`SPINS` checks. A thread whose partner failed or was interrupted stops waiting
  (:data:`ABORT`).
- :func:`take_next`: independent items (the input side's steps) that both threads take one at
  a time from a shared counter, so that a late helper takes fewer of them.
- :func:`enter` / :func:`wait_or_take`: a loop that can go on without its helper. The helper
  claims each step before it starts it; the caller, waiting at a meeting for a helper that is
  late (its core taken by another thread: another library's pool still spinning after its own
  call, another process), claims the helper's next step first and runs both halves from
  there, so that one late start or one preemption costs one wait rather than one per step.
  Exactly one of the two claims succeeds (an atomic compare-and-exchange); the helper that
  loses says :data:`DONE` and stops.
- :func:`run`: hands a helper thread its half and runs the caller's half. Each thread's GEMMs
  go through :mod:`xrnn.backends.numpy.cblas`'s private one-thread OpenBLAS, so nothing any other
  thread can see changes. Helpers are daemon threads owned by this module, idle (blocked, not
  spinning) between calls: one per caller running a loop at the same moment, so that
  concurrent calls take the same path (and round alike) as a lone one. They are stopped and
  joined at exit.

The loop runs in lockstep only where it can: the private OpenBLAS loaded, at least two CPUs
for this process, and NumPy's BLAS allowed more than one thread (a user who set one thread,
or holds ``threadpool_limits(1)``, gets one). :func:`available` says so (and hands out the
GEMM); the loops run on one thread otherwise.
"""

from __future__ import annotations

import atexit
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

from xrnn.backends.numpy import cblas
from xrnn.backends.numpy.cblas import element_pointer

__all__ = [
    "ABORT",
    "DONE",
    "FLAGS",
    "available",
    "enter",
    "helpers",
    "new_flags",
    "publish",
    "run",
    "take_next",
    "wait_for",
    "wait_or_take",
]

# The flags array (new_flags): int64, one counter per thread a cache line apart (no false
# sharing), the abort flag, the address of the C library's sched_yield (0: none) and the steps
# the helper has entered (TAKEN once the caller took its next one over)
FLAGS, ABORT, YIELD, ENTERED = 24, 16, 17, 18
TAKEN = -1
# The helper's counter once it has stopped after losing a step to the caller: beyond any step
DONE = 1 << 62
# A wait spins this many times, then yields the core at every check: where another thread
# holds a core, the one it waits for runs sooner (the "long" LSTM's forward loop beside an
# OpenBLAS worker still spinning after a threaded GEMM: 70 ms waiting by spinning only, 6 ms
# yielding after 100 checks, 2.8 ms without that worker either way)
SPINS = 200


# --- atomics -------------------------------------------------------------------------------------


@intrinsic
def _load_acquire(typingctx, flags, index):
    """``flags[index]`` read with acquire ordering (every write the other thread made before
    its release store of that value is visible after this load)."""

    def codegen(context, builder, sig, args):
        pointer = element_pointer(context, builder, sig.args[0], args[0], args[1])
        return builder.load_atomic(pointer, "acquire", 8)

    return types.int64(flags, index), codegen


@intrinsic
def _store_release(typingctx, flags, index, value):
    """``flags[index] = value`` with release ordering (after every earlier write)."""

    def codegen(context, builder, sig, args):
        pointer = element_pointer(context, builder, sig.args[0], args[0], args[1])
        builder.store_atomic(args[2], pointer, "release", 8)
        return context.get_dummy_value()

    return types.void(flags, index, value), codegen


@intrinsic
def _compare_exchange(typingctx, flags, index, expected, value):
    """``flags[index] = value`` if it holds ``expected``, atomically (acquire-release); whether
    it did."""

    def codegen(context, builder, sig, args):
        pointer = element_pointer(context, builder, sig.args[0], args[0], args[1])
        pair = builder.cmpxchg(pointer, args[2], args[3], "acq_rel", "acquire")
        return builder.extract_value(pair, 1)

    return types.boolean(flags, index, types.int64, types.int64), codegen


@intrinsic
def _fetch_add(typingctx, flags, index, value):
    """``flags[index] += value``, atomically (acquire-release); the value before."""

    def codegen(context, builder, sig, args):
        pointer = element_pointer(context, builder, sig.args[0], args[0], args[1])
        return builder.atomic_rmw("add", pointer, args[2], "acq_rel")

    return types.int64(flags, index, types.int64), codegen


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
# the primitives the loops call: inlined into each (a few lines each; as functions of their own
# they were compiled once per combination of literal and variable arguments at the call sites)
_primitive = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")


@intrinsic
def _call(typingctx, address):
    """Call the C function ``int f(void)`` at ``address``."""

    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(ir.IntType(32), [])
        builder.call(builder.inttoptr(args[0], fnty.as_pointer()), [])
        return context.get_dummy_value()

    return types.void(address), codegen


@_primitive
def publish(flags, thread, steps):
    """Say that ``thread`` (0 or 1) has finished its first ``steps`` steps."""
    _store_release(flags, thread * 8, steps)


@_primitive
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


@_primitive
def enter(flags, step):
    """The helper's claim of step ``step`` (its half of it): False where the caller took the
    step over (:func:`wait_or_take`); the helper then publishes :data:`DONE` and stops."""
    return _compare_exchange(flags, ENTERED, step, step + 1)


@_primitive
def wait_or_take(flags, steps, budget):
    """The caller's wait (thread 0) at a meeting for the helper's first ``steps`` steps, taking
    the loop over from a late helper after ``budget`` checks (never where it is negative).
    Returns 0 where the helper failed (:data:`ABORT`); 1 where it arrived; 2 where it arrived
    and the caller has its next step: the helper finishes this one (its half of the meeting's
    work included) and publishes :data:`DONE`, which the caller waits for before it reads
    that work; 3 where the helper had not started at all: the caller has every step, the
    helper's share of this one included, and need not wait for it."""
    checks = 0
    taken = False
    while _load_acquire(flags, 8) < steps:
        if _load_acquire(flags, ABORT) != 0:
            return 0
        checks += 1
        if not taken and 0 <= budget < checks:
            if _compare_exchange(flags, ENTERED, 0, TAKEN):
                return 3
            taken = _compare_exchange(flags, ENTERED, steps, TAKEN)
        if checks > SPINS and flags[YIELD] != 0:
            _call(flags[YIELD])
        else:
            _spin_hint()
    return 2 if taken else 1


@_primitive
def take_next(flags):
    """The next item of a loop whose items two threads take as they go (a late helper takes
    fewer; no meeting): 0, 1, 2, ... across both threads' calls."""
    return _fetch_add(flags, ENTERED, 1)


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


# --- the helper threads -----------------------------------------------------------------------


class _Helper:
    """A daemon thread that runs the second half of lockstep loops, one call at a time."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.done: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._serve, name="xrnn-lockstep", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:  # stop()
                return
            kernel, args, flags = job
            try:
                kernel(*args)
                error = None
            except BaseException as exc:  # handed to the caller, which re-raises it
                flags[ABORT] = 1
                error = exc
            # the job's arrays are the caller's again: none is kept alive while this waits
            job = args = flags = None
            self.done.put(error)

    def stop(self, timeout: float) -> None:
        self.jobs.put(None)
        self.thread.join(timeout)


class _Pool:
    """The idle helpers, and every helper started (for :meth:`stop`)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: list[_Helper] = []
        self.started: list[_Helper] = []

    def take(self) -> _Helper | None:
        """An idle helper, started if none is (None: no thread could start)."""
        with self.lock:
            if self.idle:
                return self.idle.pop()
            try:
                helper = _Helper()
            except RuntimeError:  # "can't start new thread": the caller runs on one thread
                return None
            self.started.append(helper)
            return helper

    def give_back(self, helper: _Helper) -> None:
        with self.lock:
            self.idle.append(helper)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop and join every helper (each finishes the job it has first)."""
        with self.lock:
            helpers, self.started, self.idle = self.started, [], []
        for helper in helpers:
            helper.stop(timeout)


_pool = _Pool()
atexit.register(_pool.stop)


def _reset_after_fork() -> None:
    global _pool
    _pool = _Pool()  # a forked child has none of its parent's threads


os.register_at_fork(after_in_child=_reset_after_fork)


def helpers() -> list[threading.Thread]:
    """The helper threads started and not stopped (for tests and diagnostics)."""
    with _pool.lock:
        return [h.thread for h in _pool.started]


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@cache
def _enough_cpus() -> bool:
    return _cpus() >= 2


def available(dtype: Any) -> tuple[int, bool] | None:
    """The private GEMM handle (:meth:`xrnn.backends.numpy.cblas.Blas.handle`) for a loop over
    ``dtype`` arrays that may run in lockstep now, else None (see the module notes)."""
    if os.environ.get("XRNN_LOCKSTEP", "1").strip() == "0" or not _enough_cpus():
        return None
    threads = cblas.numpy_threads()
    if threads is None or threads < 2:
        return None
    blas = cblas.private()
    return None if blas is None else blas.handle(dtype)


def run(kernel: Any, mine: tuple, helpers: tuple, flags: Any) -> bool:
    """Run ``kernel(*mine)`` here and ``kernel(*helpers)`` on a helper thread; both share
    ``flags`` (:func:`new_flags`). False, having run nothing, when no helper thread could be
    started. An exception in either half (a KeyboardInterrupt here included) stops the other
    half at its next meeting and is raised once both have stopped."""
    helper = _pool.take()
    if helper is None:
        return False
    helper.jobs.put((kernel, helpers, flags))
    raised: BaseException | None = None
    try:
        kernel(*mine)
    except BaseException as exc:
        flags[ABORT] = 1  # the helper stops waiting for us
        raised = exc
    while True:  # the helper's half ends at its next meeting at the latest
        try:
            error = helper.done.get()
            break
        except BaseException as exc:  # interrupted while waiting: wait on, raise it after
            flags[ABORT] = 1
            raised = raised or exc
    _pool.give_back(helper)
    if raised is not None:
        raise raised
    if error is not None:
        raise error
    return True
