"""The bridge from torch CPU tensors to the NumPy backend's compiled kernels.

A CPU tensor's memory is a NumPy array without a copy (``Tensor.numpy()`` is a view), so the
compiled NumPy backend can run on it:

- whole calls (:func:`scope`, :func:`in_call`): the input side, the loops and the backward
  chunks of steps up to the size the compiled backend takes on tensors
  (:meth:`xrnn.backends.numpy.jit.JitOps.lends_to_torch`), at NumPy's speed, with torch held on
  one thread meanwhile;
- step kernels alone (:func:`step_kernels`, :func:`forward_loop`, :func:`backward_steps`):
  larger steps keep torch's own GEMMs (and threads), with the compiled step kernels generated
  from the cell's math between them: one pass over memory a step where torch's ops make one
  per operation.

:class:`xrnn.backends.torch.TorchOps` decides when (autograd not recording, CPU tensors); this
module only runs what it is asked to.
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
    "backward_steps",
    "carried",
    "compiled",
    "forward_loop",
    "in_call",
    "scope",
    "step_kernels",
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
    return dataclasses.replace(
        W, **{f.name: view(getattr(W, f.name)) for f in dataclasses.fields(W)}
    )


def step_kernels(cell: Any, like: Any) -> Any:
    """The compiled step kernels generated from ``cell``'s elementwise math
    (:meth:`xrnn.backends.numpy.jit.JitOps.step_kernels`) for CPU tensors like ``like``, or None
    (another device, the compiled backend off, a cell without traced math). The loops below
    run them on the tensors' memory between torch's own GEMMs, which keep torch's threads: one
    pass over memory a step where torch's ops make one per operation."""
    jit = compiled()
    dtype = NUMPY_DTYPES.get(like.dtype)
    if jit is None or dtype is None or like.device.type != "cpu":
        return None
    return jit.step_kernels(cell, dtype)


def forward_loop(kernels: Any, cell: Any, W: Any, GX: Any, store: Any) -> None:
    """Every forward step: ``Wa a⟨t-1⟩`` by torch into a reused buffer, then the compiled
    step kernel on the tensors' memory (the saved values over ``GX`` where they go there)."""
    H = store.states[0].unbind(0)
    n_a, m = int(store.states[0].shape[1]), int(store.states[0].shape[2])
    R = torch.empty((cell.blocks * n_a, m), dtype=GX.dtype)
    r, gx = view(R), view(GX)
    states = [view(s) for s in store.states]
    V = () if W.V is None else (view(W.V),)
    S = None if kernels.saved_in_gx else view(store.saved)
    for t in range(int(GX.shape[0])):
        torch.mm(W.Wa, H[t], out=R)
        saved = () if S is None else (S[t],)
        kernels.forward_step(
            gx[t], r, *V, *(s[t] for s in states), *(s[t + 1] for s in states), *saved
        )


def backward_steps(
    kernels: Any, cell: Any, W: Any, trace: Any, dA: Any, start: int, g: tuple, store: Any
) -> tuple:
    """A chunk's backward steps: the compiled step kernel into the chunk's columns, then
    ``Waᵀ dz`` by torch (see :func:`forward_loop`)."""
    m, g0 = int(dA.shape[2]), g[0]
    rows = cell.blocks * int(g0.shape[0])
    states = [view(s) for s in trace.states]
    S = None if trace.saved is None else view(trace.saved)
    V = () if W.V is None else (view(W.V),)
    up = torch.empty_like(g0)
    carried = [view(d) for d in (up, *g[1:])]
    buffers = store.buffers()  # Waᵀ multiplies the last one (dra's, where it has its own)
    D, columns, WaT = [view(b) for b in buffers], buffers[-1][:rows], W.Wa.T
    for j in reversed(range(int(dA.shape[0]))):
        t = start + j
        torch.add(g0, dA[j], out=up)
        kernels.backward_step(
            *carried, *(() if S is None else (S[t],)), *V, *(s[t] for s in states),
            *(s[t + 1] for s in states), *D, j * m,
        )  # fmt: skip
        torch.mm(WaT, columns[:, j * m : (j + 1) * m], out=g0)
        if kernels.direct_hidden:  # the direct part of da⟨t-1⟩, written over `up`
            g0.add_(up)
    return (g0, *g[1:])
