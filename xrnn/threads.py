"""BLAS threads around the time loops: small per-step GEMMs run on one thread.

A time loop issues one small recurrent GEMM per step, thousands per call. Fanned out over
OpenBLAS's threads they gain little on an idle machine and lose badly on a busy one, where the
threads wait for cores held by other programs (on the 2-core development machine with one
competing process, ``xrnn train`` took 9.1 s with the default two threads and 3.6 s with one;
README, *Performance on a busy machine*). So while a loop's steps are small, NumPy's BLAS runs
them on one thread, through threadpoolctl; the batched GEMMs before and after the loop keep
the library's own setting. A user who set the thread count (``OPENBLAS_NUM_THREADS``,
``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, …) is left alone.
"""

from __future__ import annotations

import contextlib
import os
from functools import cache
from typing import Any

import array_api_compat

__all__ = [
    "SMALL_STEP_FLOPS",
    "SMALL_TRAINING_STEP_FLOPS",
    "USER_SETTINGS",
    "step_flops",
    "step_threads",
]

# A step GEMM below this many FLOPs runs on one thread. For one call (the engine): 2^21, the
# LSTM's 2·4n_a·n_a·m at n_a = 128, m = 16 — the benchmark's "long" config and everything
# larger (config A: 8.4 MFLOP, 1.3× faster on two threads on an idle machine, 2× slower with
# a competing process, like torch's own LSTM) keeps the threads; charlm-sized steps do not
# gain from them anywhere. A training loop (xrnn.charlm) runs thousands of calls of one
# size: up to 2^24 FLOPs (n_a = 128, m = 128) on one thread, which loses nothing idle and
# keeps `xrnn train` 2.4× faster on a busy machine (xrnn bench --busy).
SMALL_STEP_FLOPS = 2**21
SMALL_TRAINING_STEP_FLOPS = 2**24
# Below this OpenBLAS runs a GEMM on one thread by itself (interface/gemm.c: M·N·K under
# 65536 · GEMM_MULTITHREAD_THRESHOLD, 4 by default): a limit would change nothing and cost
# a call (threadpoolctl's limit()+restore, about 8 µs; charlm's forward takes 110 µs)
SINGLE_THREAD_FLOPS = 2 * 65536 * 4
USER_SETTINGS = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


@cache
def _blas() -> Any:
    """threadpoolctl's handle on the loaded BLAS libraries, or None (threadpoolctl missing,
    no BLAS found, or the user chose the thread count)."""
    if any(name in os.environ for name in USER_SETTINGS):
        return None
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    blas = ThreadpoolController().select(user_api="blas")
    return blas if blas.lib_controllers else None


def step_threads(
    xp: Any,
    step_flops: float,
    small: float = SMALL_STEP_FLOPS,
    floor: float = SINGLE_THREAD_FLOPS,
) -> contextlib.AbstractContextManager:
    """A context for a time loop whose steps each do ``step_flops`` GEMM FLOPs: NumPy's BLAS
    on one thread when the steps are ``small`` (from ``floor`` up: smaller steps BLAS keeps
    on one thread anyway), else nothing changes (other libraries manage their own
    threads)."""
    if step_flops >= small or step_flops < floor or not array_api_compat.is_numpy_namespace(xp):
        return contextlib.nullcontext()
    blas = _blas()
    return contextlib.nullcontext() if blas is None else blas.limit(limits=1)


def step_flops(cell: Any, n_a: int, m: int) -> float:
    """FLOPs of one step's recurrent GEMM ``Wa a⟨t-1⟩`` (``blocks·n_a × n_a`` by ``n_a × m``)."""
    return 2.0 * cell.blocks * n_a * n_a * m
