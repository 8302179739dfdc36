"""NumPy's storage: xrnn's own preallocated buffers (``out=``), host-side checks.

With ``XRNN_JIT=0`` (or no numba) NumPy arrays run here: each step the cell's own pointwise
math on whole arrays, written into the buffers; :mod:`xrnn.backends.numpy.jit` adds the kernels
compiled from that math on top.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from xrnn.core.ops import InPlaceOps

__all__ = ["NumpyOps"]


class NumpyOps(InPlaceOps):
    """In-place NumPy storage and step kernels; same math as :class:`xrnn.core.ops.Ops`."""

    lib = np

    def empty(self, shape: tuple, dtype: Any, like: Any) -> Any:
        return np.empty(shape, dtype=dtype)  # host memory: no device to read from like

    def zeros(self, shape: tuple, ctx: Any) -> Any:
        return np.zeros(shape, dtype=ctx.dtype)

    def all_finite(self, values: list, conditions: list) -> bool:
        # host arrays: reading a sum back costs nothing, so no stacking into one read
        if not values:
            return all(bool(ok) for ok in conditions)
        with np.errstate(all="ignore"):  # a sum of finite values may overflow: caller rechecks
            for value in values:
                if not math.isfinite(np.add.reduce(value, axis=None)):
                    return False
        return all(bool(ok) for ok in conditions)

    def all_full(self, lengths: Any, T: int) -> bool:
        # a host array: reading it costs nothing, and full lengths skip the masking entirely
        return bool(np.all(lengths == T))

    def quiet(self) -> Any:
        return np.errstate(over="ignore", invalid="ignore", divide="ignore")  # this thread's
