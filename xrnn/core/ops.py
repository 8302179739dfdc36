"""Per-step work of the time loops and where it is stored: the generic reference, which every
array library can run, and the hooks backends override.

The engine (:mod:`xrnn.core.engine`) owns the loops and the recurrent state; each step asks ``Ops``
to run one cell step and to store its results. The reference never writes into an array after
creating it — step results are collected in lists and stacked once — so immutable arrays (JAX)
work and a library's autograd (``torch.autograd``, ``jax.grad``) can differentiate through every
forward function.

Backends subclass ``Ops`` (``xrnn/backends/numpy/``, ``xrnn/backends/cupy/``): they store
into preallocated buffers and run step kernels generated from each cell's elementwise math
(:meth:`Ops.kernel`, :meth:`Ops.backward_step`); where a backend has none, a step runs the
cell's own pointwise math on whole arrays (``forward_pointwise``/``backward_pointwise``) — the
reference the kernels are tested against.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import array_api_compat

from xrnn.core.layout import columns, input_side, output_layer_forward, public

__all__ = [
    "BufferColumns",
    "buffer_store",
    "chunk_gradients",
    "BufferStore",
    "InPlaceOps",
    "ListColumns",
    "ListStore",
    "Ops",
    "Slot",
    "vector_rows",
    "weight_gradients",
]


@dataclass(frozen=True)
class Slot:
    """Where a step may write its results in place: views into preallocated buffers."""

    states: tuple  # the new state components, each (n_a, m)
    saved: Any  # the step's saved block, or None


class ListStore:
    """Forward results collected in lists and stacked at the end (the reference)."""

    def __init__(self, xp: Any, state0: tuple) -> None:
        self.xp = xp
        self.states: list[list[Any]] = [[s] for s in state0]
        self.saved: list[Any] = []

    def slot(self, t: int) -> Slot | None:
        return None

    def put(self, t: int, state: tuple, saved: Any) -> None:
        for column, s in zip(self.states, state, strict=True):
            column.append(s)
        if saved is not None:
            self.saved.append(saved)

    def result(self) -> tuple[tuple, Any]:
        """``(states, saved)``: each state component (T+1, n_a, m), saved (T, rows, m)."""
        xp = self.xp
        states = tuple(xp.stack(column, axis=0) for column in self.states)
        return states, xp.stack(self.saved, axis=0) if self.saved else None


class BufferStore:
    """Forward results written into preallocated time-major buffers (in-place backends).

    A step kernel writes straight into :meth:`slot`'s views and returns them; a step that
    returned arrays of its own (a cell without an in-place kernel) is copied in by :meth:`put`.
    """

    def __init__(self, ops: Any, state0: tuple, T: int, saved: Any) -> None:
        n_a, m = map(int, state0[0].shape)
        self.states = []
        for s in state0:
            buf = ops.empty((T + 1, n_a, m), s.dtype, s)
            buf[0, ...] = s
            self.states.append(buf)
        self.saved = saved
        self._slot: Slot | None = None

    def slot(self, t: int) -> Slot:
        saved = None if self.saved is None else self.saved[t]
        self._slot = Slot(tuple(buf[t + 1] for buf in self.states), saved)
        return self._slot

    def put(self, t: int, state: tuple, saved: Any) -> None:
        slot = self._slot
        assert slot is not None, "put() follows slot()"
        for buf, s, view in zip(self.states, state, slot.states, strict=True):
            if s is not view:
                buf[t + 1, ...] = s
        if saved is not None and saved is not slot.saved:
            # the saved blocks may fill only the first rows of a step's GX (saved_in_gx)
            self.saved[t, : int(saved.shape[0]), ...] = saved

    def result(self) -> tuple[tuple, Any]:
        return tuple(self.states), self.saved

    def steps(self, start: int, end: int, saved: Any) -> BufferStore:
        """The store of steps ``start`` to ``end - 1`` alone: views of this store's state
        buffers (block 0 the state before ``start``) and ``saved`` for those steps' saved
        blocks (a forward that keeps no caches: one chunk's work area)."""
        part = copy.copy(self)
        part.states = [buf[start : end + 1] for buf in self.states]
        part.saved = saved
        part._slot = None
        return part


def buffer_store(ops: Any, cell: Any, state0: tuple, GX: Any) -> BufferStore:
    """A :class:`BufferStore` for ``ops``' kernels: the saved blocks are ``GX`` itself when the
    cell's forward kernel is registered ``saved_in_gx``, else a fresh ``(T, rows, m)`` buffer."""
    T = int(GX.shape[0])
    if ops.saved_in_gx(cell):
        saved = GX
    elif cell.saved_blocks:
        n_a, m = map(int, state0[0].shape)
        shape = (T, cell.saved_blocks * n_a, m)
        saved = ops.empty(shape, GX.dtype, GX)
    else:
        saved = None
    return BufferStore(ops, state0, T, saved)


class BufferColumns:
    """A chunk's gradient column blocks in preallocated ``(rows, k·m)`` buffers (``k`` steps
    of ``m`` columns), reused across chunks (in-place backends); ``dra`` gets its own buffer,
    of ``recurrent_rows`` rows (the gate rows), only where that is not 0."""

    def __init__(self, ops: Any, rows: int, k: int, m: int, like: Any, recurrent_rows: int) -> None:
        dtype = like.dtype
        shape = (rows, _pitch(k * m, ops.xp.finfo(dtype).bits // 8))
        # the whole buffers (C-contiguous, padded rows) and their (rows, k·m) views
        self._ops = ops
        self.gx_buffer = ops.empty(shape, dtype, like)
        self.ra_buffer = (
            ops.empty((recurrent_rows, shape[1]), dtype, like) if recurrent_rows else None
        )
        self.gx = self.gx_buffer[:, : k * m]
        self.ra = None if self.ra_buffer is None else self.ra_buffer[:, : k * m]
        self.m = m
        self._slot: tuple[Any, Any] = (None, None)
        self._scratch: dict[tuple, Any] = {}

    def scratch(self, name: str, shape: tuple, dtype: Any, fill: float | None = None) -> Any:
        """A work array of the buffers' library and device, made on first request and handed
        out again to every later chunk of the pass (a fresh array is page-faulted in anew),
        filled with ``fill`` once when given."""
        key = (name, shape, dtype)
        if key not in self._scratch:
            made = self._ops.empty(shape, dtype, self.gx_buffer)
            if fill is not None:
                made[...] = fill
            self._scratch[key] = made
        return self._scratch[key]

    def slot(self, j: int) -> tuple[Any, Any]:
        cols = slice(j * self.m, (j + 1) * self.m)
        ra = None if self.ra is None else self.ra[:, cols]
        self._slot = (self.gx[:, cols], ra)
        return self._slot

    def put(self, j: int, dgx: Any, dra: Any) -> None:
        gx_view, ra_view = self._slot
        cols = slice(j * self.m, (j + 1) * self.m)
        if dgx is not gx_view:
            self.gx[:, cols] = dgx
        if self.ra is not None and dra is not ra_view:
            self.ra[:, cols] = dra

    def columns(self, K: int) -> tuple[Any, Any]:
        dgx = self.gx[:, : K * self.m]
        return dgx, dgx if self.ra is None else self.ra[:, : K * self.m]

    def buffers(self) -> tuple:
        """The whole buffers a compiled backward kernel writes: ``dgx``'s, then ``dra``'s where
        it has its own (the last one is what ``Waᵀ`` multiplies)."""
        return (self.gx_buffer,) if self.ra_buffer is None else (self.gx_buffer, self.ra_buffer)


def weight_gradients(xp: Any, dgx: Any, dra: Any, A_prev: Any, X: Any) -> tuple[Any, Any, Any]:
    """The stacked weight gradients over a block of (step, batch) columns.

    ``dgx``/``dra`` (k n_a, K) are the steps' gradients of the input and recurrent sides,
    ``A_prev`` (n_a, K) and ``X`` (n_x, K) the matching previous states and inputs. Returns
    ``dWa = dra A_prevᵀ``, ``dWx = dgx Xᵀ`` and ``db = Σ dgx``.
    """
    return xp.matmul(dra, A_prev.T), xp.matmul(dgx, X.T), xp.sum(dgx, axis=1, keepdims=True)


def chunk_gradients(
    xp: Any, cell: Any, W: Any, trace: Any, store: Any, start: int, k: int
) -> tuple[tuple, Any]:
    """The gradients from a backward chunk's ``k`` steps from ``start``, whose gradient
    columns ``store`` holds: :func:`weight_gradients` against the trace's previous states and
    inputs laid out as columns, plus the vectors' summed gradient (:func:`vector_rows`), and
    the input gradient ``dX = Wxᵀ dgx`` (n_x, k m)."""
    end = start + k
    A_prev = columns(xp, public(xp, trace.states[0][start:end, ...]))  # (n_a, k m)
    X = columns(xp, trace.x[:, :, start:end])
    dgx, dra, dV = vector_rows(xp, cell, *store.columns(k))
    weights = weight_gradients(xp, dgx, dra, A_prev, X)
    return (*weights, dV), xp.matmul(W.Wx.T, dgx)


def vector_rows(xp: Any, cell: Any, dgx: Any, dra: Any) -> tuple[Any, Any, Any]:
    """A backward step's (or chunk's) ``dgx``/``dra`` column blocks split into the gate rows
    and the vectors' rows (:attr:`xrnn.cells.base.Cell.vectors`): ``(dgx, dra, dV)`` with ``dV``
    (v n_a, 1) the vectors' gradients summed over the columns, None for a cell without any."""
    if not cell.vectors:
        return dgx, dra, None
    rows = cell.blocks * int(dgx.shape[0]) // (cell.blocks + len(cell.vectors))
    dV = xp.sum(dgx[rows:, :], axis=1, keepdims=True)
    return dgx[:rows, :], dra[:rows, :], dV


def _pitch(width: int, itemsize: int) -> int:
    """Elements per row of a ``width``-column buffer: a whole, odd number of 64-byte cache
    lines. A power-of-two pitch (1024 float32 columns: the "long" benchmark's chunk) puts a
    column's element of every row in the same cache set, and the backward kernels, which write
    four gate rows per element down all 4n_a rows, ran 4× slower on that cache set's 8 ways."""
    per_line = max(1, 64 // itemsize)
    lines = -(-width // per_line)
    return (lines + 1 - lines % 2) * per_line


def _device(a: Any) -> Any:
    return array_api_compat.device(a)


class Ops:
    """The reference step work; backends override the hooks and supply step kernels.

    A backend's step kernels (:meth:`kernel`), made from the cell's math, never chosen by
    its name:

    - ``forward(ops, cell, W, gx, state, slot) -> (state, saved)``: the kernel does the
      recurrent GEMM ``W.Wa @ state[0]`` itself;
    - ``backward(ops, cell, saved, prev, new, up, slot) -> (dgx, dra, direct)``.

    ``slot`` holds views the kernel may write into (None for list storage). A backward kernel
    may overwrite the arrays of ``up``, temporaries of the engine's (e.g. write ``dc⟨t-1⟩``
    over ``dc⟨t⟩``); nothing else it is given.
    """

    def __init__(self, xp: Any) -> None:
        self.xp = xp

    def kernel(self, cell: Any, direction: str) -> Callable | None:
        """This backend's ``direction`` step kernel for ``cell``, or None: the reference."""
        return None

    def saved_in_gx(self, cell: Any) -> bool:
        """Whether ``cell``'s forward kernel here writes the saved blocks over the input side
        ``GX``, which the store then lends."""
        return False

    def empty(self, shape: tuple, dtype: Any, like: Any) -> Any:
        """An uninitialised array of ``shape`` and ``dtype`` on ``like``'s device."""
        return self.xp.empty(shape, dtype=dtype, device=_device(like))

    def zeros(self, shape: tuple, ctx: Any) -> Any:
        """Zeros of ``shape`` in the call's dtype, on its device (``ctx``: its
        :class:`xrnn.backends.Context`)."""
        return self.xp.zeros(shape, dtype=ctx.dtype, device=ctx.device)

    def on_device(self, device: Any) -> contextlib.AbstractContextManager:
        """A scope in which work on ``device`` runs (a library that launches on a *current*
        device, CuPy, enters it); nothing for the others."""
        return contextlib.nullcontext()

    def output_layer(self, W: Any, b: Any, H: Any) -> Any:
        """``softmax(W a⟨t⟩ + b)`` for every step: ``H`` (T, n_a, m), the result (n_y, m, T)
        (:func:`xrnn.core.layout.output_layer_forward`)."""
        return output_layer_forward(self.xp, W, b, H)

    def quiet(self) -> contextlib.AbstractContextManager:
        """A scope in which the library's own floating-point warnings (overflow, invalid
        value) stay silent: for a call whose non-finite results raise an error anyway
        (``check_finite=True``), not a second message. Nothing here."""
        return contextlib.nullcontext()

    # --- storage --------------------------------------------------------------------------

    def forward_store(self, cell: Any, state0: tuple, GX: Any) -> Any:
        """Where the forward loop keeps states and saved blocks (``GX``: the input side)."""
        return ListStore(self.xp, state0)

    def outputs_store(self, cell: Any, state0: tuple, T: int) -> BufferStore | None:
        """Where a forward that keeps no caches writes its states, chunk by chunk
        (:meth:`BufferStore.steps`): preallocated buffers of every step's states only; None
        where arrays cannot be written into (the reference: immutable or lazy arrays), whose
        forward then runs as the caching one does."""
        return None

    def input_side(self, cell: Any, W: Any, x: Any) -> Any:
        """``Wx x⟨t⟩ + b`` for every step of ``cell``'s loop: ``x`` (n_x, m, T) → (T, k n_a,
        m), the engine's own array (the step kernels may write into it)."""
        return self.add_bias(input_side(self.xp, W.Wx, x), W.b)

    def add_bias(self, G: Any, b: Any) -> Any:
        """``G + b`` (in place where the backend may: ``G`` is xrnn's own array)."""
        return G + b

    def accumulate(self, a: Any, b: Any) -> Any:
        """``a + b``, in place into ``a`` where the backend may (``a`` must be xrnn's own
        fresh array that nothing else reads)."""
        return a + b

    def private(self, a: Any) -> Any:
        """A copy of ``a`` that shares no memory with xrnn's caches, for a returned array the
        caller may write into (``a *= 0`` must not change a later backward). Arrays of an
        immutable (JAX) or lazy (Dask) library cannot be written into: returned as they are."""
        xp = self.xp
        if array_api_compat.is_jax_namespace(xp) or array_api_compat.is_dask_namespace(xp):
            return a
        return xp.asarray(a, copy=True)

    def scratch(self, a: Any) -> Any:
        """``a``'s values in an array the step kernels may overwrite: ``a`` itself for the
        reference, whose kernels never write into their arguments."""
        return a

    def all_finite(self, values: list, conditions: list) -> bool:
        """Whether every array in ``values`` is finite and every 0-d boolean in ``conditions``
        holds, with one host read: each array summed on its device (one pass, no temporary;
        a NaN/inf makes the sum non-finite), each condition counting 1 when false, and
        ``Σ sum·0 + Σ failed`` read back — on a GPU one round trip per call rather than one
        per array. A sum of finite values that overflows reads as a failure (the caller's
        exact test then clears it)."""
        xp = self.xp
        with warnings.catch_warnings():  # NumPy warns when a sum overflows; torch when it
            warnings.simplefilter("ignore", RuntimeWarning)  # reads a tensor requiring grad
            warnings.simplefilter("ignore", UserWarning)
            terms = [xp.sum(value) * 0 for value in values]
            if conditions:
                dtype = values[0].dtype if values else xp.float32
                terms += [xp.astype(xp.logical_not(ok), dtype) for ok in conditions]
            return float(xp.sum(xp.stack(terms))) == 0

    def gradient_columns(self, rows: int, k: int, m: int, like: Any, recurrent_rows: int) -> Any:
        """Storage for the ``dgx`` (``rows``) and, where ``recurrent_rows`` is not 0, ``dra``
        (``recurrent_rows`` rows) column blocks of a chunk of ``k`` steps of ``m`` columns each."""
        return ListColumns(self.xp)

    # --- steps ----------------------------------------------------------------------------

    def forward_step(self, cell: Any, W: Any, gx: Any, state: tuple, slot: Any) -> tuple:
        fused = self.kernel(cell, "forward")
        if fused is not None:
            return fused(self, cell, W, gx, state, slot)
        ra = self.xp.matmul(W.Wa, state[0])
        return cell.forward_pointwise(self.xp, gx, ra, state, W)

    def backward_step(
        self, cell: Any, saved: Any, prev: tuple, new: tuple, up: tuple, slot: Any, W: Any = None
    ) -> tuple:
        fused = self.kernel(cell, "backward")
        if fused is not None:
            return fused(self, cell, saved, prev, new, up, slot)
        return cell.backward_pointwise(self.xp, saved, prev, new, up, W)

    def forward_outputs(self, cell: Any, W: Any, x: Any, state0: tuple) -> tuple | None:
        """The whole forward of ``cell`` over ``x`` (n_x, m, T; no lengths to mask) for a
        call that keeps no caches, input side included: each state component of every step,
        (T+1, n_a, m) with block 0 ``state0`` — or None and let the engine run the input
        side and :meth:`forward_loop` chunk by chunk (the reference always does)."""
        return None

    def forward_small(self, cell: Any, W: Any, x: Any, state0: tuple) -> tuple | None:
        """The whole caching forward of ``cell`` over ``x`` (n_x, m, T; no lengths to mask) in
        one pass, input side included, where its steps are small enough that the engine's
        bookkeeping would cost more than they do: ``(states, saved)`` as the engine's store
        holds them after the loop (:meth:`forward_store`) — or None and let the engine run it
        (the reference always does)."""
        return None

    def forward_loop(
        self, cell: Any, W: Any, GX: Any, store: Any, reuse: dict | None = None
    ) -> bool:
        """Run every forward step at once into ``store`` (no lengths to mask) and return True,
        or return False and let the engine step (the reference always does). ``reuse``: a
        dict that lives for one call, where a backend may keep what it prepares from ``W``
        for the loop (weight layouts, scratch) — the forward without caches calls this once
        per chunk of steps, with the same ``W``."""
        return False

    def backward_steps(
        self, cell: Any, W: Any, trace: Any, dA: Any, start: int, g: tuple, store: Any
    ) -> tuple | None:
        """Run the backward steps ``start + len(dA) - 1`` down to ``start`` of a chunk (no
        lengths): ``dA`` (k, n_a, m) the upstream gradients of the chunk's outputs, ``g`` the
        state gradients after its last step (the engine's own arrays: they may be
        overwritten), gradients into ``store``'s columns; return the state gradients before
        ``start`` — or None and let the engine step (the reference always does)."""
        return None

    def backward_chunk(
        self, cell: Any, W: Any, trace: Any, dA: Any, start: int, g: tuple, store: Any
    ) -> tuple[tuple, tuple, Any] | None:
        """Like :meth:`backward_steps`, and the chunk's gradients too: return ``(g, weights,
        dX)`` — the state gradients before ``start``, :func:`weight_gradients` over the
        chunk's columns and ``dX = Wxᵀ dgx`` (n_x, k m) — or None and let the engine run the
        steps (:meth:`backward_steps`) and the GEMMs itself (the reference always does)."""
        return None

    def backward_small(
        self, cell: Any, W: Any, trace: Any, dA: Any, g: tuple
    ) -> tuple[tuple, tuple, Any] | None:
        """The whole backward of a call of small steps as one chunk, returned as
        :meth:`backward_chunk` returns it: ``dA`` (T, n_a, m) the upstream gradients of every
        output in loop order, C-contiguous; ``g`` the state gradients after the last step (the
        engine's own arrays) — or None and let the engine run it (the reference always
        does)."""
        return None

    def keep_finished(self, keep: Any, new: tuple, old: tuple) -> tuple:
        """Where ``keep`` (1, m) is true the sequence has ended: its state stays ``old``."""
        xp = self.xp
        return tuple(xp.where(keep, o, n) for n, o in zip(new, old, strict=True))

    def all_full(self, lengths: Any, T: int) -> bool:
        """Whether every length is ``T`` — known without a host read only on the host; the
        reference answers False (the masked path is then exact, just not free)."""
        return False


class ListColumns:
    """A chunk's gradient column blocks, collected and concatenated (the reference)."""

    def __init__(self, xp: Any) -> None:
        self.xp = xp
        self.gx: dict[int, Any] = {}
        self.ra: dict[int, Any] = {}

    def slot(self, j: int) -> Any:
        return None

    def put(self, j: int, dgx: Any, dra: Any) -> None:
        self.gx[j] = dgx
        self.ra[j] = dra

    def columns(self, K: int) -> tuple[Any, Any]:
        xp = self.xp
        dgx = xp.concat([self.gx[j] for j in range(K)], axis=1)
        same = all(self.ra[j] is self.gx[j] for j in range(K))
        dra = dgx if same else xp.concat([self.ra[j] for j in range(K)], axis=1)
        self.gx.clear()
        self.ra.clear()
        return dgx, dra


class InPlaceOps(Ops):
    """Shared storage of the in-place backends (NumPy, CuPy): preallocated time-major buffers,
    the bias added in place, finished sequences kept with ``copyto(..., where=)``.

    ``lib`` is the library module itself (``numpy``, ``cupy``), for what the array API lacks
    (``out=``, ``copyto``). A forward kernel that writes the saved values over the input
    side (:meth:`Ops.saved_in_gx`) turns each
    step's input-side block into its saved block in place, so the store lends it ``GX``.
    """

    lib: Any = None

    def forward_store(self, cell: Any, state0: tuple, GX: Any) -> Any:
        return buffer_store(self, cell, state0, GX)

    def outputs_store(self, cell: Any, state0: tuple, T: int) -> BufferStore | None:
        return BufferStore(self, state0, T, None)

    def add_bias(self, G: Any, b: Any) -> Any:
        G += b  # G is the engine's own fresh GEMM result: no second (T, k n_a, m) array
        return G

    def accumulate(self, a: Any, b: Any) -> Any:
        self.lib.add(a, b, out=a)
        return a

    def scratch(self, a: Any) -> Any:
        return self.lib.array(a, copy=True)

    def gradient_columns(self, rows: int, k: int, m: int, like: Any, recurrent_rows: int) -> Any:
        return BufferColumns(self, rows, k, m, like, recurrent_rows)

    def keep_finished(self, keep: Any, new: tuple, old: tuple) -> tuple:
        for n, o in zip(new, old, strict=True):
            if n is not o:
                self.lib.copyto(n, o, where=keep)  # n is the step's own result
        return new
