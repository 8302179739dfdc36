"""The bridge from torch CPU tensors to the NumPy backend's compiled kernels.

A CPU tensor's memory is a NumPy array without a copy (``Tensor.numpy()`` is a view), so the
compiled NumPy backend runs a backward's chunks on it (:func:`scope`, :func:`in_call`; which
calls: :meth:`xrnn.backends.numpy.jit.JitOps.lends_to_torch`) at NumPy's speed, with torch held
on one thread meanwhile. :class:`xrnn.backends.torch.TorchOps` decides when (autograd not
recording, CPU tensors, the loops run whole); this module holds the views and the thread
policy. (A forward on CPU tensors runs whole on NumPy views: :mod:`xrnn.torch.host`.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from functools import cache
from typing import Any

import array_api_compat
import torch

from xrnn.backends import get_ops, jit_enabled

__all__ = [
    "NUMPY_DTYPES",
    "carried",
    "compiled",
    "in_call",
    "scope",
    "trace_view",
    "view",
    "weights_view",
]


def view(t: Any) -> Any:
    """A CPU tensor's memory as a NumPy array (a view)."""
    return None if t is None else t.detach().numpy()


@cache
def compiled() -> Any:
    """The compiled NumPy backend, or None where it is off."""
    if not jit_enabled():
        return None
    return get_ops(array_api_compat.array_namespace(view(torch.empty(0))))


# Set while a call runs with the compiled NumPy kernels (TorchOps.own_threads): per thread, as
# torch's thread count is held at one for exactly those calls
_compiled_call = threading.local()


def in_call() -> Any:
    """The compiled NumPy backend inside a call that runs on it (:meth:`TorchOps.own_threads`:
    CPU tensors, which a call never mixes with others; autograd not recording is the caller's
    test), else None."""
    return compiled() if getattr(_compiled_call, "active", False) else None


@contextlib.contextmanager
def scope() -> Any:
    """A call on the compiled kernels: torch on one thread meanwhile."""
    before, was = torch.get_num_threads(), getattr(_compiled_call, "active", False)
    _compiled_call.active = True
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        _compiled_call.active = was
        if before != 1:
            torch.set_num_threads(before)


NUMPY_DTYPES = {torch.float32: "float32", torch.float64: "float64"}


def trace_view(trace: Any) -> Any:
    """A trace's arrays as NumPy views (the order stays: the compiled steps do not read it)."""
    return dataclasses.replace(
        trace,
        states=tuple(view(s) for s in trace.states),
        saved=view(trace.saved),
        x=view(trace.x),
    )


def carried(g: tuple, arrays: tuple, done: tuple) -> tuple:
    """The tensors of ``g`` where the compiled kernels wrote into their memory (``arrays``,
    their views), new tensors for the arrays they returned instead."""
    return tuple(
        t if d is a else torch.from_numpy(d) for t, a, d in zip(g, arrays, done, strict=True)
    )


def weights_view(W: Any) -> Any:
    """``W``'s arrays as NumPy views (weights stacked apart stay apart, stacked by NumPy's
    namespace where read)."""
    return W.map(view, array_api_compat.array_namespace(view(W.b)))
