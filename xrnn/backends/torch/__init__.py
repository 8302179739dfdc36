"""PyTorch's storage and loops: preallocated buffers written in place, for torch tensors on any
device, when autograd is not recording.

The reference path (:class:`xrnn.core.ops.Ops`) never writes into an array, so ``torch.autograd``
can differentiate through every forward function; it pays for that with a fresh tensor for
every intermediate and a stack of every step at the end. When no tensor of the call requires a
gradient (or grad mode is off) nothing needs recording, and this backend runs the loop the way
the NumPy and CuPy backends do: states and saved gates written into time-major buffers,
gradients into the chunk's column buffers. When autograd records, every hook below hands the
work to the reference, unchanged.

A forward on CPU tensors runs whole on NumPy views of them, before any of this
(:mod:`xrnn.torch.host`); a backward on CPU tensors runs each chunk on the NumPy backend's
compiled kernels, on the tensors' memory (:mod:`xrnn.backends.torch.bridge`). Other devices,
cells without compiled kernels, and the steps of a call with lengths run the cell's own math
with torch's ops.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from xrnn.backends.torch import bridge
from xrnn.core.ops import BufferColumns, BufferStore, Ops, buffer_store

__all__ = ["TorchOps"]


def _recording(*tensors: Any) -> bool:
    return torch.is_grad_enabled() and any(
        t is not None and getattr(t, "requires_grad", False) for t in tensors
    )


class TorchOps(Ops):
    """Torch storage and in-place step kernels where autograd is not recording; the reference
    (:class:`xrnn.core.ops.Ops`) where it is; the compiled NumPy kernels on CPU tensors' memory
    (see the module notes)."""

    def own_threads(self, device: Any, arrays: list, cell: Any, stepped: bool) -> Any:
        """A backward on CPU tensors that records nothing, whose loops run whole (not
        ``stepped`` by the engine, as with lengths) and whose cell has compiled kernels
        (:meth:`xrnn.backends.numpy.jit.JitOps.lends_to_torch`) runs those kernels on the
        tensors' memory, with torch on one thread meanwhile: torch's parallel copies and sums
        between them would leave its OpenMP threads spinning for a while after each, beside
        the compiled loops' own two threads. Every other call keeps torch's threads and its
        own kernels (a forward on CPU tensors has run whole on NumPy views before it gets
        here: :mod:`xrnn.torch.host`)."""
        compiled = None if stepped or getattr(device, "type", None) != "cpu" else bridge.compiled()
        dtype = next((a.dtype for a in arrays if a is not None), None)
        if (
            compiled is None
            or _recording(*arrays)
            or not compiled.lends_to_torch(cell, bridge.NUMPY_DTYPES.get(dtype))
        ):
            return contextlib.nullcontext()
        return bridge.scope()

    def all_full(self, lengths: Any, T: int) -> bool:
        """CPU tensors' lengths are host memory, read in place (``Tensor.numpy()``: no copy, no
        device round trip), and full lengths skip the masking, as NumPy's do; on a device the
        reference's answer, without a read."""
        if lengths.device.type != "cpu":
            return False
        return bool((bridge.view(lengths) == T).all())

    def forward_store(self, cell: Any, state0: tuple, GX: Any) -> Any:
        if _recording(GX, *state0):
            return super().forward_store(cell, state0, GX)
        return buffer_store(self, cell, state0, GX)

    def outputs_store(self, cell: Any, state0: tuple, T: int) -> Any:
        if _recording(*state0):
            return None
        return BufferStore(self, state0, T, None)

    def saved_in_gx(self, cell: Any) -> bool:
        # the compiled loops fill the store: theirs is the layout (a step of the reference's
        # copies its saved values in)
        compiled = bridge.compiled()
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
        return BufferColumns(self, rows, k, m, like, recurrent_rows)

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

    def backward_chunk(
        self, cell: Any, W: Any, trace: Any, dA: Any, start: int, g: tuple, store: Any
    ) -> tuple[tuple, tuple, Any] | None:
        """The compiled NumPy backend's whole chunk on CPU tensors' memory where it has one
        (see the module notes), else None: :meth:`backward_steps` and torch's GEMMs."""
        compiled = bridge.in_call()
        if (
            compiled is None
            or not isinstance(store, BufferColumns)
            or _recording(W.Wa, W.Wx, W.V, dA, *g, *trace.states, trace.saved, trace.x)
        ):
            return None
        arrays = tuple(bridge.view(d) for d in g)
        done = compiled.backward_chunk(
            cell,
            bridge.weights_view(W),
            bridge.trace_view(trace),
            bridge.view(dA),
            start,
            arrays,
            store.viewed(bridge.view, compiled),
        )
        if done is None:
            return None
        carried, weights, dX = done
        tensors = tuple(None if w is None else torch.from_numpy(w) for w in weights)
        return bridge.carried(g, arrays, carried), tensors, torch.from_numpy(dX)

    def keep_finished(self, keep: Any, new: tuple, old: tuple) -> tuple:
        if _recording(*new, *old):
            return super().keep_finished(keep, new, old)
        for n, o in zip(new, old, strict=True):
            if n is not o:
                torch.where(keep, o, n, out=n)  # n is the step's own result
        return new
