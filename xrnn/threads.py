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

from xrnn.tuning import SINGLE_THREAD_FLOPS, SMALL_STEP_FLOPS

__all__ = ["USER_SETTINGS", "step_threads"]

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
    threads). The thresholds and why: :mod:`xrnn.tuning`."""
    if step_flops >= small or step_flops < floor or not array_api_compat.is_numpy_namespace(xp):
        return contextlib.nullcontext()
    blas = _blas()
    return contextlib.nullcontext() if blas is None else blas.limit(limits=1)
