"""PyTorch's storage and loops: preallocated buffers written in place, for torch tensors on any
device, when autograd is not recording.

The reference path (:class:`xrnn.core.ops.Ops`) never writes into an array, so ``torch.autograd``
can differentiate through every forward function; it pays for that with a fresh tensor for
every intermediate and a stack of every step at the end. When no tensor of the call requires a
gradient (or grad mode is off) nothing needs recording, and this backend runs the loop the way
the NumPy and CuPy backends do: states and saved gates written into time-major buffers,
gradients into the chunk's column buffers. When autograd records, every hook below hands the
work to the reference, unchanged.

A call on CPU tensors that autograd does not record runs whole on NumPy views of them, with
the compiled kernels, before any of this (:mod:`xrnn.torch.host`). Other devices and cells
without compiled kernels run here, the cell's own math with torch's ops.
"""

from __future__ import annotations

from typing import Any

import torch

from xrnn.core.ops import BufferColumns, BufferStore, Ops, buffer_store

__all__ = ["TorchOps"]


def _recording(*tensors: Any) -> bool:
    return torch.is_grad_enabled() and any(
        t is not None and getattr(t, "requires_grad", False) for t in tensors
    )


class TorchOps(Ops):
    """Torch storage and in-place step kernels where autograd is not recording; the reference
    (:class:`xrnn.core.ops.Ops`) where it is (see the module notes)."""

    def all_full(self, lengths: Any, T: int) -> bool:
        """CPU tensors' lengths are host memory, read in place (``Tensor.numpy()``: no copy, no
        device round trip), and full lengths skip the masking, as NumPy's do; on a device the
        reference's answer, without a read."""
        if lengths.device.type != "cpu":
            return False
        return bool((lengths.detach().numpy() == T).all())

    def forward_store(self, cell: Any, state0: tuple, GX: Any) -> Any:
        if _recording(GX, *state0):
            return super().forward_store(cell, state0, GX)
        return buffer_store(self, cell, state0, GX)

    def outputs_store(self, cell: Any, state0: tuple, T: int) -> Any:
        if _recording(*state0):
            return None
        return BufferStore(self, state0, T, None)

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

    def keep_finished(self, keep: Any, new: tuple, old: tuple) -> tuple:
        if _recording(*new, *old):
            return super().keep_finished(keep, new, old)
        for n, o in zip(new, old, strict=True):
            if n is not o:
                torch.where(keep, o, n, out=n)  # n is the step's own result
        return new
