"""PyTorch's storage and loops: preallocated buffers written in place, for torch tensors on any
device, when autograd is not recording.

The reference path (:class:`xrnn.ops.Ops`) never writes into an array, so ``torch.autograd``
can differentiate through every forward function; it pays for that with a fresh tensor for
every intermediate and a stack of every step at the end. When no tensor of the call requires a
gradient (or grad mode is off) nothing needs recording, and this backend runs the loop the way
the NumPy and CuPy backends do: states and saved gates written into time-major buffers,
gradients into the chunk's column buffers. When autograd records, every hook below hands the
work to the reference, unchanged.

CPU tensors, steps up to config A's size (:meth:`xrnn.backends.jit.JitOps.lends_to_torch`): the
input side, the loops and the backward chunks run the NumPy backend's compiled code (its
lockstep loops included, :mod:`xrnn.backends.lockstep`) on the tensors' own memory —
``Tensor.numpy()`` is a view, no copy — so they run at NumPy's speed; torch's per-op dispatch
costs microseconds a step. Larger steps on CPU tensors keep torch's own GEMMs (and threads),
with the step kernels compiled from the cell's math between them (:func:`_bridge`: one pass
over memory a step where torch's ops make one per operation). Other devices, and the steps of
a call with lengths, run the cell's own math with torch's ops.
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
from xrnn.ops import BufferColumns, BufferStore, Ops, buffer_store

__all__ = ["TorchOps"]


def _recording(*tensors: Any) -> bool:
    return torch.is_grad_enabled() and any(
        t is not None and getattr(t, "requires_grad", False) for t in tensors
    )


def _numpy(t: Any) -> Any:
    """A CPU tensor's memory as a NumPy array (a view)."""
    return None if t is None else t.detach().numpy()


@cache
def _compiled() -> Any:
    """The compiled NumPy backend, or None where it is off."""
    if not jit_enabled():
        return None
    return get_ops(array_api_compat.array_namespace(_numpy(torch.empty(0))))


# Set while a call runs with the compiled NumPy kernels (TorchOps.own_threads): per thread, as
# torch's thread count is held at one for exactly those calls
_compiled_call = threading.local()


def _twin() -> Any:
    """The compiled NumPy backend inside a call that runs on it (:meth:`TorchOps.own_threads`:
    CPU tensors, which a call never mixes with others; autograd not recording is the caller's
    test), else None."""
    return _compiled() if getattr(_compiled_call, "active", False) else None


@contextlib.contextmanager
def _compiled_scope() -> Any:
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


_NUMPY_DTYPES = {torch.float32: "float32", torch.float64: "float64"}


def _trace(trace: Any) -> Any:
    """A trace's arrays as NumPy views (the order stays: the compiled steps do not read it)."""
    return dataclasses.replace(
        trace,
        states=tuple(_numpy(s) for s in trace.states),
        saved=_numpy(trace.saved),
        x=_numpy(trace.x),
    )


def _carried(g: tuple, arrays: tuple, done: tuple) -> tuple:
    """The tensors of ``g`` where the compiled kernels wrote into their memory (``arrays``,
    their views), new tensors for the arrays they returned instead."""
    return tuple(
        t if d is a else torch.from_numpy(d) for t, a, d in zip(g, arrays, done, strict=True)
    )


def _weights(W: Any) -> Any:
    return dataclasses.replace(
        W, **{f.name: _numpy(getattr(W, f.name)) for f in dataclasses.fields(W)}
    )


class TorchOps(Ops):
    """Torch storage and in-place step kernels where autograd is not recording; the reference
    (:class:`xrnn.ops.Ops`) where it is; the compiled NumPy kernels on CPU tensors' memory
    (see the module notes)."""

    def own_threads(
        self, device: Any, arrays: list, cell: Any, n_a: int, m: int, stepped: bool
    ) -> Any:
        """A call on CPU tensors that records nothing, whose loops run whole (not ``stepped``
        by the engine, as with lengths) and whose steps the compiled NumPy kernels take
        (:meth:`xrnn.backends.jit.JitOps.lends_to_torch`: up to config A's size) runs those
        kernels on the tensors' memory, with torch on one thread meanwhile: torch's parallel
        copies and sums between them left its OpenMP threads spinning for a while after each,
        and beside them BLAS's and the lockstep loops' threads (two pools on two cores) ran
        config A's LSTM forward+backward in 111 ms instead of 40. Every other call keeps
        torch's threads and its own kernels (config B's: with torch's glue on one thread,
        xrnn on torch tensors took 1.5× NumPy's time)."""
        twin = None if stepped or getattr(device, "type", None) != "cpu" else _compiled()
        dtype = next((a.dtype for a in arrays if a is not None), None)
        if (
            twin is None
            or _recording(*arrays)
            or not twin.lends_to_torch(cell, _NUMPY_DTYPES.get(dtype), n_a, m)
        ):
            return contextlib.nullcontext()
        return _compiled_scope()

    def all_full(self, lengths: Any, T: int) -> bool:
        """CPU tensors' lengths are host memory, read in place (``Tensor.numpy()``: no copy, no
        device round trip), and full lengths skip the masking, as NumPy's do; on a device the
        reference's answer, without a read."""
        if lengths.device.type != "cpu":
            return False
        return bool((_numpy(lengths) == T).all())

    def input_side(self, cell: Any, W: Any, x: Any) -> Any:
        twin = None if _recording(x, W.Wx, W.b) else _twin()
        if twin is None:
            return super().input_side(cell, W, x)
        return torch.from_numpy(twin.input_side(cell, _weights(W), _numpy(x)))

    def forward_store(self, cell: Any, state0: tuple, GX: Any) -> Any:
        if _recording(GX, *state0):
            return super().forward_store(cell, state0, GX)
        return buffer_store(self, cell, state0, GX)

    def outputs_store(self, cell: Any, state0: tuple, T: int) -> Any:
        if _recording(*state0):
            return None
        return BufferStore(self.xp, state0, T, None)

    def saved_in_gx(self, cell: Any) -> bool:
        # the compiled loops fill the store, or the compiled step kernels between torch's GEMMs
        # (_bridge): theirs is the layout (a step of the reference's copies its saved values in)
        compiled = _compiled()
        return super().saved_in_gx(cell) if compiled is None else compiled.saved_in_gx(cell)

    def add_bias(self, G: Any, b: Any) -> Any:
        return G + b if _recording(G, b) else G.add_(b)

    def accumulate(self, a: Any, b: Any) -> Any:
        return a + b if _recording(a, b) else a.add_(b)

    def scratch(self, a: Any) -> Any:
        return a if _recording(a) else a.clone()

    def gradient_columns(self, rows: int, k: int, m: int, like: Any, recurrent_rows: int) -> Any:
        if _recording(like):
            return super().gradient_columns(rows, k, m, like, recurrent_rows)
        return BufferColumns(self.xp, rows, k, m, like, recurrent_rows)

    # A step whose inputs require a gradient (list storage; or buffers chosen from tensors that
    # did not, e.g. only Wa or da requiring one) runs the reference; its results are copied
    # into the buffers, which autograd records.

    def forward_step(self, cell: Any, W: Any, gx: Any, state: tuple, slot: Any) -> tuple:
        if slot is None or _recording(W.Wa, W.V, gx, *state):
            ra = torch.matmul(W.Wa, state[0])
            return cell.forward_pointwise(self.xp, gx, ra, state, W)
        return super().forward_step(cell, W, gx, state, slot)

    def backward_step(
        self, cell: Any, saved: Any, prev: tuple, new: tuple, up: tuple, slot: Any, W: Any = None
    ) -> tuple:
        if slot is None or _recording(saved, *prev, *new, *up, None if W is None else W.V):
            return cell.backward_pointwise(self.xp, saved, prev, new, up, W)
        return super().backward_step(cell, saved, prev, new, up, slot, W)

    def forward_loop(self, cell: Any, W: Any, GX: Any, store: Any) -> bool:
        """Every forward step at once, on the compiled NumPy backend (whole, or its step
        kernels between torch's GEMMs: :func:`_bridge`) where it takes them; else False (the
        engine steps with the cell's own math)."""
        # buffers only where GX and the initial states record nothing (forward_store)
        if not isinstance(store, BufferStore) or _recording(W.Wa, W.V):
            return False
        twin = _twin()
        if twin is not None and twin.forward_loop(
            cell, _weights(W), _numpy(GX), store.viewed(_numpy)
        ):
            return True
        kernels = _bridge(cell, GX)
        if kernels is None:
            return False
        _bridged_forward_loop(kernels, cell, W, GX, store)
        return True

    def backward_steps(
        self, cell: Any, W: Any, trace: Any, dA: Any, start: int, g: tuple, store: Any
    ) -> tuple | None:
        """A chunk's backward steps in a lean loop of the compiled step kernels between
        torch's GEMMs (:func:`_bridge`) where they run; else None (the engine steps)."""
        if not isinstance(store, BufferColumns) or _recording(
            W.Wa, dA, *g, *trace.states, trace.saved
        ):
            return None
        kernels = _bridge(cell, dA)
        if kernels is None:
            return None
        return _bridged_backward_steps(kernels, cell, W, trace, dA, start, g, store)

    def backward_chunk(
        self, cell: Any, W: Any, trace: Any, dA: Any, start: int, g: tuple, store: Any
    ) -> tuple[tuple, tuple, Any] | None:
        """The compiled NumPy backend's whole chunk on CPU tensors' memory where it has one
        (see the module notes), else None: :meth:`backward_steps` and torch's GEMMs."""
        twin = _twin()
        if (
            twin is None
            or not isinstance(store, BufferColumns)
            or _recording(W.Wa, W.Wx, W.V, dA, *g, *trace.states, trace.saved, trace.x)
        ):
            return None
        arrays = tuple(_numpy(d) for d in g)
        done = twin.backward_chunk(
            cell, _weights(W), _trace(trace), _numpy(dA), start, arrays, store.viewed(_numpy)
        )
        if done is None:
            return None
        carried, weights, dX = done
        tensors = tuple(None if w is None else torch.from_numpy(w) for w in weights)
        return _carried(g, arrays, carried), tensors, torch.from_numpy(dX)

    def keep_finished(self, keep: Any, new: tuple, old: tuple) -> tuple:
        if _recording(*new, *old):
            return super().keep_finished(keep, new, old)
        for n, o in zip(new, old, strict=True):
            if n is not o:
                torch.where(keep, o, n, out=n)  # n is the step's own result
        return new


# --- the bridge: torch's GEMMs, the compiled kernels' pointwise steps ---------------------------


def _bridge(cell: Any, like: Any) -> Any:
    """The compiled step kernels generated from ``cell``'s elementwise math
    (:meth:`xrnn.backends.jit.JitOps.step_kernels`) for CPU tensors like ``like``, or None
    (another device, the compiled backend off, a cell without traced math). The loops below
    run them on the tensors' memory between torch's own GEMMs, which keep torch's threads: one
    pass over memory a step where torch's ops make one per operation."""
    jit = _compiled()
    dtype = _NUMPY_DTYPES.get(like.dtype)
    if jit is None or dtype is None or like.device.type != "cpu":
        return None
    return jit.step_kernels(cell, dtype)


def _bridged_forward_loop(kernels: Any, cell: Any, W: Any, GX: Any, store: Any) -> None:
    """Every forward step: ``Wa a⟨t-1⟩`` by torch into a reused buffer, then the compiled
    step kernel on the tensors' memory (the saved values over ``GX`` where they go there)."""
    H = store.states[0].unbind(0)
    n_a, m = int(store.states[0].shape[1]), int(store.states[0].shape[2])
    R = torch.empty((cell.blocks * n_a, m), dtype=GX.dtype)
    r, gx = _numpy(R), _numpy(GX)
    states = [_numpy(s) for s in store.states]
    V = () if W.V is None else (_numpy(W.V),)
    S = None if kernels.saved_in_gx else _numpy(store.saved)
    for t in range(int(GX.shape[0])):
        torch.mm(W.Wa, H[t], out=R)
        saved = () if S is None else (S[t],)
        kernels.forward_step(
            gx[t], r, *V, *(s[t] for s in states), *(s[t + 1] for s in states), *saved
        )


def _bridged_backward_steps(
    kernels: Any, cell: Any, W: Any, trace: Any, dA: Any, start: int, g: tuple, store: Any
) -> tuple:
    """A chunk's backward steps: the compiled step kernel into the chunk's columns, then
    ``Waᵀ dz`` by torch (see :func:`_bridged_forward_loop`)."""
    m, g0 = int(dA.shape[2]), g[0]
    rows = cell.blocks * int(g0.shape[0])
    states = [_numpy(s) for s in trace.states]
    S = None if trace.saved is None else _numpy(trace.saved)
    V = () if W.V is None else (_numpy(W.V),)
    up = torch.empty_like(g0)
    carried = [_numpy(d) for d in (up, *g[1:])]
    buffers = store.buffers()  # Waᵀ multiplies the last one (dra's, where it has its own)
    D, columns, WaT = [_numpy(b) for b in buffers], buffers[-1][:rows], W.Wa.T
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
