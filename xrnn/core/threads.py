"""The ``xrnn`` command's BLAS thread policy while it trains.

The library never changes a thread pool: a thread count is one number for the whole process,
and a call that set it around its work would change it under every other thread's NumPy
calls. The time loops' per-step GEMMs run on a private one-thread OpenBLAS instead
(:mod:`xrnn.backends.numpy.cblas`). A training step has more GEMMs than the loops' — the output
layer's, the embedding's, the optimiser's —, and at the sizes of ``xrnn train`` they are small
too: fanned out over BLAS's threads they gain little on an idle machine and lose badly on a
busy one, where the threads wait for cores other programs hold (docs/performance.md, *A busy
machine*).
``xrnn train`` owns its process, so it puts NumPy's BLAS on one thread for the rest of the
run when its steps are small, unless the user chose a thread count (``OPENBLAS_NUM_THREADS``,
``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, …). A program that calls
:func:`xrnn.charlm.train` itself decides for itself (``threadpoolctl.threadpool_limits(1)``).
"""

from __future__ import annotations

import os
from typing import Any

import array_api_compat

from xrnn.core.tuning import SMALL_TRAINING_STEP_FLOPS

__all__ = ["USER_SETTINGS", "one_blas_thread_for_training"]

USER_SETTINGS = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def one_blas_thread_for_training(xp: Any, step_flops: float) -> bool:
    """Put NumPy's BLAS on one thread for the rest of the process when training steps of
    ``step_flops`` recurrent-GEMM FLOPs (:func:`xrnn.core.tuning.step_flops`) are small (below
    :data:`xrnn.core.tuning.SMALL_TRAINING_STEP_FLOPS`), the arrays are NumPy's and the user set no
    thread count. For the ``xrnn`` command only (see the module notes). Whether it did."""
    if (
        step_flops >= SMALL_TRAINING_STEP_FLOPS
        or not array_api_compat.is_numpy_namespace(xp)
        or any(name in os.environ for name in USER_SETTINGS)
    ):
        return False
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return False
    threadpool_limits(limits=1, user_api="blas")  # not restored: the process is the command's
    return True
