"""Compiled fused step kernels for NumPy arrays (numba): one compiled call per step and direction
for all of a cell's pointwise work, beside BLAS's recurrent GEMM, and the loops around them.

The kernels are generated from each cell's elementwise math (:mod:`xrnn.backends.numpy.generated`);
this module holds what they share — the scalar math namespace they compile against, the
compiled helpers (a small GEMM, the bias add, the finiteness check) — and the loops' Python
side: which loop runs (one compiled call, two threads in lockstep, or BLAS per step), and the
buffers it runs in. A step of the cell's math on whole NumPy arrays is a dozen or more ufunc
calls, each a pass over memory plus a few microseconds of dispatch; a kernel here makes one
pass, element by element, with every temporary in registers, written so that LLVM vectorises
it: an innermost loop over the contiguous batch axis, every output a different array than
every input (an array both read and written is passed once), and numba's
``error_model="numpy"`` (no ZeroDivisionError checks in the loop).

Activations: float32 ``tanh`` is a rational approximation (Eigen's ``ptanh_float`` coefficients,
clamped at ±7.9053, exact ``x`` below 4e-4 in magnitude) that vectorises, where ``math.tanh`` is one
scalar libm call per element: within 6 ulp (3.6e-7) of ``numpy.tanh`` over [-12, 12], 1 ulp on
average (``tests/backends/numpy/test_jit.py``). float64 uses ``math.tanh`` (libm, to 1e-16). ``σ(x)
= ½ tanh(x/2) + ½`` as everywhere in xrnn (no overflow). Constants are cast to the arrays' dtype at
compile time, so float32 kernels never promote to double.

Kernels are compiled on first use per dtype and layout and cached on disk (numba's
``cache=True``: ``__pycache__`` beside this file, or numba's user cache directory where that is
read-only), so a later process loads them instead of compiling. Importing this module imports
numba (about 0.2 s); :func:`xrnn.backends.get_ops` imports it on the first call with NumPy
arrays, never at ``import xrnn``. ``XRNN_JIT=0`` in the environment (read at that first call)
selects the NumPy backend without them (:mod:`xrnn.backends.numpy`: each cell's own math on
whole arrays).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numba
import numpy as np
from numba import types
from numba.extending import overload

import xrnn.core.tuning as tuning
from xrnn.backends.numpy import NumpyOps, cblas, generated, lockstep
from xrnn.core.layout import input_side, time_major
from xrnn.core.ops import BufferColumns, buffer_store, chunk_gradients, vector_rows
from xrnn.core.tuning import step_flops

__all__ = ["JitOps"]

# every kernel: cached on disk, the GIL released, no ZeroDivisionError checks in the loops
_kernel = numba.njit(cache=True, nogil=True, error_model="numpy")
# the small helpers the loops call: inlined into each caller, whose compilation then optimises
# them once with it (as functions of their own, each was a module compiled and linked apart)
_inlined = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")

# Eigen's ptanh_float: tanh(x) ≈ x·P(x²)/Q(x²) on [-7.9053, 7.9053]
_TANH_P = (
    4.89352455891786e-03,
    6.37261928875436e-04,
    1.48572235717979e-05,
    5.12229709037114e-08,
    -8.60467152213735e-11,
    2.00018790482477e-13,
    -2.76076847742355e-16,
)
_TANH_Q = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)


def tanh(x: Any) -> Any:
    """Scalar tanh for the kernels (compiled: see the module notes)."""
    return np.tanh(x)


def sigmoid(x: Any) -> Any:
    """Scalar ``½ tanh(x/2) + ½`` for the kernels."""
    return 0.5 * np.tanh(0.5 * x) + 0.5


def one(x: Any) -> Any:
    """``1`` in ``x``'s type (a bare ``1`` would promote a float32 expression to float64)."""
    return type(x)(1)


@overload(tanh)
def _tanh(x):
    if x == types.float32:
        f = np.float32
        a1, a3, a5, a7, a9, a11, a13 = (f(v) for v in _TANH_P)
        b0, b2, b4, b6 = (f(v) for v in _TANH_Q)
        clamp, tiny = f(7.90531110763549805), f(4e-4)

        def tanh_float32(x):
            y = min(max(x, -clamp), clamp)
            y2 = y * y
            p = a11 + y2 * a13
            p = a9 + y2 * p
            p = a7 + y2 * p
            p = a5 + y2 * p
            p = a3 + y2 * p
            p = y * (a1 + y2 * p)
            q = b0 + y2 * (b2 + y2 * (b4 + y2 * b6))
            return x if abs(x) < tiny else p / q

        return tanh_float32
    if x == types.float64:
        return lambda x: math.tanh(x)
    return None


@overload(sigmoid)
def _sigmoid(x):
    if isinstance(x, types.Float):
        half = np.dtype(str(x)).type(0.5)
        return lambda x: half * tanh(half * x) + half
    return None


@overload(one)
def _one(x):
    if isinstance(x, types.Float):
        value = np.dtype(str(x)).type(1)
        return lambda x: value
    return None


# --- the kernels: arrays (rows, m), the batch axis m innermost --------------------------------


@_inlined
def add_bias(G, b):
    """``G`` (T, rows, m) ``+= b`` (rows, 1): the bias held in a register per row (NumPy's
    broadcast add took 3.5× longer on the "long" config's 512 × 16 rows); with ``m = 1`` the
    loop goes along the rows, which vectorises (a batch axis of one does not)."""
    T, rows, m = G.shape
    if m == 1 and G.flags.c_contiguous and b.flags.c_contiguous:
        G1, b1 = G.reshape((T, rows)), b.reshape(rows)
        for t in range(T):
            for i in range(rows):
                G1[t, i] += b1[i]
        return
    for t in range(T):
        for i in range(rows):
            bi = b[i, 0]
            for j in range(m):
                G[t, i, j] += bi


@_kernel
def finite(flat):
    """Whether every element of the 1-D contiguous ``flat`` is finite: ``x - x`` is 0 for a
    finite ``x`` and NaN for NaN and ±inf; no branch in the loop, so it vectorises (an early
    exit would not), a quarter of ``numpy.sum``'s time on large arrays."""
    bad = False
    for i in range(flat.size):
        x = flat[i]
        bad |= (x - x) != 0
    return not bad


# --- whole forward loops for small steps ------------------------------------------------------
# Where a step's recurrent GEMM is a few thousand FLOPs (charlm: 200×50 by 50×1) calling BLAS and
# the step kernel from Python costs more than the arithmetic; these run every step in one call,
# the GEMM by hand (an axpy per input row, the innermost loop contiguous).


@_inlined
def small_gemm(WaT, A, R):
    """``R = WaT.T @ A``: ``WaT`` (n_a, rows) C-contiguous, ``A`` (n_a, m), ``R`` (rows, m)."""
    rows, m = R.shape
    zero = one(A[0, 0]) - one(A[0, 0])  # 0 in A's type, whatever A holds
    for i in range(rows):
        for j in range(m):
            R[i, j] = zero
    if m == 1:  # the batch axis is too short to vectorise over: go along the rows instead
        R1 = R.reshape(rows)  # contiguous: the row loop vectorises
        K, k = WaT.shape[0], 0
        while k + 4 <= K:  # four inputs a pass: a quarter of the passes over R
            a0, a1, a2, a3 = A[k, 0], A[k + 1, 0], A[k + 2, 0], A[k + 3, 0]
            w0, w1, w2, w3 = WaT[k], WaT[k + 1], WaT[k + 2], WaT[k + 3]
            for i in range(rows):
                R1[i] += (w0[i] * a0 + w1[i] * a1) + (w2[i] * a2 + w3[i] * a3)
            k += 4
        for q in range(k, K):
            aq = A[q, 0]
            for i in range(rows):
                R1[i] += WaT[q, i] * aq
        return
    for k in range(WaT.shape[0]):
        for i in range(rows):
            w = WaT[k, i]
            for j in range(m):
                R[i, j] += w * A[k, j]


@_kernel
def stack_gates(gates, Wa, Wx):
    """``Wa`` (k n_a, n_a) and ``Wx`` (k n_a, n_x) stacked from the gates' weights on
    ``[a⟨t-1⟩; x⟨t⟩]``, each (n_a, n_a + n_x): one call for what takes a concatenation each."""
    n_a = Wa.shape[1]
    for q in range(len(gates)):
        w = gates[q]
        for i in range(w.shape[0]):
            r = q * w.shape[0] + i
            for j in range(n_a):
                Wa[r, j] = w[i, j]
            for j in range(Wx.shape[1]):
                Wx[r, j] = w[i, n_a + j]


@_kernel
def input_side_lockstep(blas, thread, flags, WX, b, XE, G):
    """This thread's share of the steps of :meth:`JitOps.input_side`: ``G[t] = Wx XE[t] + b``,
    ``XE`` (T, n_x, m) time-major, ``b`` (rows, 1), ``Wx``'s rows in the blocks ``WX``, each
    the last ``n_x`` columns of its array (:func:`_input_weights`). The two threads take the
    steps one at a time (:func:`xrnn.backends.numpy.lockstep.take_next`): a helper whose core
    another thread holds for a while takes fewer."""
    T, rows, m = G.shape
    n_x, blocks = XE.shape[1], len(WX)
    h, ld = rows // blocks, WX[0].shape[1]
    while True:
        t = lockstep.take_next(flags)
        if t >= T:
            return
        for q in range(blocks):
            cblas.gemm(
                blas, False, False, h, m, n_x, WX[q], ld - n_x, ld, XE, t * n_x * m, m, 0.0,
                G, (t * blocks + q) * h * m, m,
            )  # fmt: skip
        add_bias(G[t : t + 1], b)


@_kernel
def input_side_small(blas, WX, b, x, XE, G):
    """``G[t] = Wx x⟨t⟩ + b`` for every step in one call on this thread (small steps: see
    :meth:`JitOps.input_side`): ``x`` (n_x, m, T) C-contiguous, ``XE`` (n_x, m) scratch,
    ``WX`` and ``b`` as in :func:`input_side_lockstep`. With ``m = 1``, one GEMM per block of
    ``WX``, ``xᵀ Wxᵀ`` into ``G`` seen as (T, rows); else per step, ``x⟨t⟩`` copied to ``XE``
    first (BLAS reads unit-stride rows)."""
    T, rows, m = G.shape
    n_x, blocks = x.shape[0], len(WX)
    h, ld = rows // blocks, WX[0].shape[1]
    if m == 1:
        for q in range(blocks):
            cblas.gemm(
                blas, True, True, T, h, n_x, x, 0, T, WX[q], ld - n_x, ld, 0.0, G, q * h, rows
            )
    else:
        for t in range(T):
            for i in range(n_x):
                for j in range(m):
                    XE[i, j] = x[i, j, t]
            for q in range(blocks):
                cblas.gemm(
                    blas, False, False, h, m, n_x, WX[q], ld - n_x, ld, XE, 0, m, 0.0, G,
                    (t * blocks + q) * h * m, m,
                )  # fmt: skip
    add_bias(G, b)


def _gates_apart(W: Any) -> bool:
    """Whether the loops read each gate's rows from the parameters themselves
    (:attr:`xrnn.cells.base.Stacked.gates`, C-contiguous) rather than from stacked copies:
    a GEMM per gate, and no copy of the weights per call."""
    gates = W.gates
    return gates is not None and all(w.flags.c_contiguous for w in gates)


def _input_weights(W: Any) -> tuple:
    """``WX`` of :func:`input_side_lockstep`: the gates apart, else ``Wx`` in one block."""
    return W.gates if _gates_apart(W) else (np.ascontiguousarray(W.Wx),)


def _recurrent_weights(W: Any, blocks: int, n_a: int, lo: int, hi: int) -> tuple[tuple, int]:
    """``(WA, a0)`` of a forward loop thread's units ``[lo, hi)``: the gates apart, its rows
    at element ``a0`` of each, else those rows of every gate of ``Wa`` copied into one
    block."""
    if _gates_apart(W):
        return W.gates, lo * int(W.gates[0].shape[1])
    gates = W.Wa.reshape(blocks, n_a, n_a)
    return (np.ascontiguousarray(gates[:, lo:hi, :]).reshape(blocks * (hi - lo), n_a),), 0


def _lockstep(cell: Any, dtype: Any, n_a: int, m: int) -> Any:
    """The BLAS handle for ``cell``'s loops over these steps in lockstep, or None: they run
    on one thread (cells without generated kernels, too small steps, no helper)."""
    if not _traced(cell):
        return None
    if step_flops(cell, n_a, m) < tuning.LOCKSTEP_MIN_FLOPS or n_a < 2:
        return None
    return lockstep.available(dtype)


def _chunk_work(W: Any, trace: Any, dA: Any, g0: Any, store: Any, rows: int) -> tuple:
    """What a compiled backward chunk works with (``rows``: its gate rows): ``Wa``, ``Wx``
    C-contiguous, the step's upstream scratch ``up`` (n_a, m), the chunk's previous states and
    inputs as columns ``A``, ``X`` and a column of ones (the store's scratch, reused by every
    chunk), and the chunk's gradients ``dWa``, ``dWx``, ``db``, ``dX``."""
    n_a, m = int(g0.shape[0]), int(g0.shape[1])
    K, dtype, n_x = int(dA.shape[0]) * m, g0.dtype, int(trace.x.shape[0])
    return (
        np.ascontiguousarray(W.Wa),
        np.ascontiguousarray(W.Wx),
        np.empty_like(g0),
        store.scratch("A", (n_a, K), dtype),
        store.scratch("X", (n_x, K), dtype),
        store.scratch("ones", (K, 1), dtype, fill=1),
        np.empty((rows, n_a), dtype),
        np.empty((rows, n_x), dtype),
        np.empty((rows, 1), dtype),
        np.empty((n_x, K), dtype),
    )


def _small_chunk(cell: Any, dA: Any, g0: Any, n_x: int) -> Any:
    """The private GEMM handle for a backward chunk of small steps
    (:data:`xrnn.core.tuning.SMALL_LOOP_FLOPS`) in one compiled call, its GEMMs on one thread:
    where each of them is below :data:`xrnn.core.tuning.SMALL_STEP_FLOPS` (larger ones gain
    from NumPy's threads); else None."""
    n_a, m = int(g0.shape[0]), int(g0.shape[1])
    if step_flops(cell, n_a, m) > tuning.SMALL_LOOP_FLOPS:
        return None
    gemm_flops = 2.0 * cell.gradient_rows(n_a) * max(n_a, n_x) * int(dA.shape[0]) * m
    return cblas.step_gemm(dA.dtype, gemm_flops)


class _Span(NamedTuple):
    """A span of a forward store's steps (:meth:`JitOps.forward_loop`): each state's blocks
    t0 … t1 and the saved blocks t0 … t1 - 1 (or None), views."""

    states: tuple
    saved: Any


# --- the chunk buffers' layout -------------------------------------------------------------------


class ColumnBlock(tuple):
    """A backward step's ``(dgx, dra)`` column views, plus the C-contiguous chunk buffers they
    lie in and their first column: a kernel writing ``buffer[i, j0 + j]`` (unsigned column
    indices) runs a vectorised innermost loop over contiguous memory; through the strided view
    (numba's any-layout arrays) a backward step took 5× longer."""

    gx: Any
    ra: Any
    j0: int

    def __new__(cls, views: tuple, gx: Any, ra: Any, j0: int) -> ColumnBlock:
        block = super().__new__(cls, views)
        block.gx, block.ra, block.j0 = gx, ra, j0
        return block


class JitColumns(BufferColumns):
    """Buffer columns (:class:`~xrnn.core.ops.BufferColumns`) whose slots say where they lie
    (:class:`ColumnBlock`)."""

    def slot(self, j: int) -> ColumnBlock:
        views = super().slot(j)
        gx, ra = self.gx_buffer, self.ra_buffer
        return ColumnBlock(views, gx, gx if ra is None else ra, j * self.m)


class JitOps(NumpyOps):
    """NumPy storage with the compiled step kernels above, and those generated from a cell's
    elementwise math (:mod:`xrnn.backends.numpy.generated`) for every other cell that has it."""

    def kernel(self, cell: Any, direction: str) -> Any:
        return _generated_forward_step if direction == "forward" and _traced(cell) else None

    def saved_in_gx(self, cell: Any) -> bool:
        return _traced(cell) and generated.saves_in_gx(cell)

    def backward_step(
        self, cell: Any, saved: Any, prev: tuple, new: tuple, up: tuple, slot: Any, W: Any = None
    ) -> tuple:
        if _traced(cell):
            return _generated_backward_step(cell, saved, prev, new, up, slot, W)
        return super().backward_step(cell, saved, prev, new, up, slot, W)

    def gradient_columns(self, rows: int, k: int, m: int, like: Any, recurrent_rows: int) -> Any:
        return JitColumns(self, rows, k, m, like, recurrent_rows)

    def input_side(self, cell: Any, W: Any, x: Any) -> Any:
        """The reference's GEMM (batched over steps; one GEMM for m = 1), then
        :func:`add_bias` (NumPy's broadcast add took 3.5× as long) — or, for small steps, both
        in one compiled call on the private one-thread BLAS (:func:`input_side_small`), or,
        where the cell's loop runs in lockstep, the steps on the loop's two threads, each
        taking the next step as it goes, so that no BLAS thread is left spinning beside them
        (:mod:`xrnn.backends.numpy.lockstep`). One GEMM for all steps would be faster on its
        own, but its (rows, T·m) product is a second array of GX's size to relay out, and a
        fresh array's first touch costs its page faults — as much as the GEMM — on every
        call."""
        n_x, m, T = map(int, x.shape)
        n_a = int(W.b.shape[0]) // cell.blocks
        blas = _lockstep(cell, x.dtype, n_a, m) if T >= 2 else None
        if blas is not None:
            rows = cell.blocks * n_a
            G = np.empty((T, rows, m), dtype=x.dtype)
            XE, WX = time_major(np, x), _input_weights(W)
            # two threads' spans at a time (see forward_loop), each as costly as a loop's
            every = 2 * tuning.steps_per_span(2.0 * rows * n_x * m)
            for t0 in range(0, T, every):
                t1 = min(T, t0 + every)
                flags = lockstep.new_flags()
                args = [(blas, i, flags, WX, W.b, XE[t0:t1], G[t0:t1]) for i in (0, 1)]
                if not lockstep.run(input_side_lockstep, args[0], args[1], flags):
                    break  # no helper thread: the rest below, by one GEMM
            else:
                return G
        rows = cell.blocks * n_a
        # small steps: one compiled call on this thread, where each GEMM is small enough for
        # the private one-thread BLAS (the Python around NumPy's GEMM cost more than it)
        gemm_flops = 2.0 * rows * n_x * (T if m == 1 else m)
        handle = cblas.step_gemm(x.dtype, gemm_flops)
        if handle is not None and step_flops(cell, n_a, m) <= tuning.SMALL_LOOP_FLOPS:
            G = np.empty((T, rows, m), dtype=x.dtype)
            XE = np.empty((n_x, m), dtype=x.dtype)
            input_side_small(handle, _input_weights(W), W.b, np.ascontiguousarray(x), XE, G)
            return G
        if m > 1 and _gates_apart(W):  # gate by gate from the parameters: no copy of them
            G = np.empty((T, cell.blocks * n_a, m), dtype=x.dtype)
            XE = time_major(np, x)
            for q, w in enumerate(W.gates):
                np.matmul(w[:, n_a:], XE, out=G[:, q * n_a : (q + 1) * n_a, :])
        else:
            G = input_side(np, W.Wx, x)
        add_bias(G, W.b)
        return G

    def lends_to_torch(self, cell: Any, dtype: Any) -> bool:
        """Whether torch CPU tensors of ``cell``'s call in ``dtype`` (a NumPy dtype name, or
        None for one these kernels do not take) run these kernels on their memory
        (:mod:`xrnn.torch.host`): every call whose cell has generated kernels."""
        return dtype is not None and _traced(cell)

    def backward_chunk(
        self, cell: Any, W: Any, trace: Any, dA: Any, start: int, g: tuple, store: Any
    ) -> tuple[tuple, tuple, Any] | None:
        """A whole chunk: for mid-sized steps, its steps and its gradients on two
        threads in lockstep, one hand-over for both (see :meth:`input_side`); for small steps
        and GEMMs, both in one compiled call on this thread (the kernels' ``chunk_small``:
        the Python around NumPy's small GEMMs cost more than they did); else the lean loop of
        :meth:`backward_steps` and NumPy's GEMMs — what the engine would do, here so that
        torch CPU tensors borrowing these kernels get NumPy's GEMMs too."""
        if not isinstance(store, BufferColumns) or _generated(cell, dA.dtype) is None:
            return None
        blas = _lockstep(cell, dA.dtype, int(g[0].shape[0]), int(dA.shape[2]))
        if blas is not None:
            whole = _generated_chunk_lockstep(blas, cell, W, trace, dA, start, g, store)
            if whole is not None:
                return whole
        blas = _small_chunk(cell, dA, g[0], int(trace.x.shape[0]))
        if blas is not None:
            return _generated_chunk_small(blas, cell, W, trace, dA, start, g, store)
        carried = self.backward_steps(cell, W, trace, dA, start, g, store)
        if carried is None:
            return None
        weights, dX = chunk_gradients(self.xp, cell, W, trace, store, start, int(dA.shape[0]))
        return carried, weights, dX

    def all_finite(self, values: list, conditions: list) -> bool:
        """:func:`finite` on each contiguous array (about 0.3 µs a call where the sum costs
        1.5 µs: charlm's forward checks 11 small arrays), NumPy's sum on the others."""
        strided = []
        for value in values:
            if value.flags.forc:  # C or Fortran order: ravel('K') is a view
                if not finite(value.ravel(order="K")):
                    return False
            else:
                strided.append(value)
        return super().all_finite(strided, conditions)

    def forward_loop(
        self, cell: Any, W: Any, GX: Any, store: Any, reuse: dict | None = None
    ) -> bool:
        """Every forward step at once: in one compiled call when the steps are small (see
        :data:`xrnn.core.tuning.SMALL_LOOP_FLOPS`), on two threads in lockstep for mid-sized steps
        (:data:`xrnn.core.tuning.LOCKSTEP_MIN_FLOPS`), else a lean loop of one BLAS GEMM into a
        reused buffer and one step kernel per step (none of the engine's per-step
        bookkeeping). The compiled calls take the steps a span at a time
        (:func:`xrnn.core.tuning.steps_between_checks`), so that a KeyboardInterrupt reaches the
        caller between spans rather than when the last step is done."""
        T, (n_a, m) = int(GX.shape[0]), map(int, store.states[0].shape[1:])
        key = ("forward loop", GX.dtype, n_a, m)
        if reuse is not None and key in reuse:  # an earlier chunk of the same call's
            run = reuse[key]
        else:
            run = _generated_forward(cell, W, GX.dtype, n_a, m)
            if reuse is not None:
                reuse[key] = run
        if run is None:
            return False  # no kernels for this cell
        every = tuning.steps_between_checks(cell, n_a, m)
        if T <= every:  # one span: the whole store
            run(GX, store)
            return True
        for t0 in range(0, T, every):
            t1 = min(T, t0 + every)
            span = _Span(
                tuple(s[t0 : t1 + 1] for s in store.states),
                None if store.saved is None else store.saved[t0:t1],
            )
            run(GX[t0:t1], span)
        return True

    def forward_small(self, cell: Any, W: Any, x: Any, state0: tuple) -> tuple | None:
        """Small steps (:data:`xrnn.core.tuning.SMALL_LOOP_FLOPS`), no more of them than one
        span (:func:`xrnn.core.tuning.steps_between_checks`): the input side and the loop, two
        compiled calls (:func:`input_side_small`, the kernels' ``forward_loop``), into buffers
        in :func:`xrnn.core.ops.buffer_store`'s buffers."""
        n_x, m, T = map(int, x.shape)
        n_a, dtype = int(state0[0].shape[0]), x.dtype
        if step_flops(cell, n_a, m) > tuning.SMALL_LOOP_FLOPS:
            return None
        kernels = _generated(cell, dtype)
        if kernels is None or _lockstep(cell, dtype, n_a, m) is not None:  # (where tuned so)
            return None
        rows = cell.blocks * n_a
        handle = cblas.step_gemm(dtype, 2.0 * rows * n_x * (T if m == 1 else m))
        if handle is None or T > tuning.steps_between_checks(cell, n_a, m):
            return None
        G = np.empty((T, rows, m), dtype=dtype)
        XE = np.empty((n_x, m), dtype=dtype)
        input_side_small(handle, _input_weights(W), W.b, np.ascontiguousarray(x), XE, G)
        store = buffer_store(self, cell, state0, G)
        # the saved blocks as the loop takes them: none where they go over G
        apart = () if kernels.saved_in_gx or store.saved is None else (store.saved,)
        R = np.empty((rows, m), dtype=dtype)
        if _gates_apart(W) and not W.is_stacked:  # both in one call, for the backward too
            Wa, Wx = np.empty((rows, n_a), dtype=dtype), np.empty((rows, n_x), dtype=dtype)
            stack_gates(W.gates, Wa, Wx)
            W.stacked_as(Wa, Wx)  # what the backward reads
        WaT = np.ascontiguousarray(W.Wa.T)
        kernels.forward_loop(WaT, G, *_vectors(W), *store.states, *apart, R)
        return tuple(store.states), store.saved

    def backward_small(
        self, cell: Any, W: Any, trace: Any, dA: Any, g: tuple
    ) -> tuple[tuple, tuple, Any] | None:
        """All steps as one chunk of :meth:`backward_chunk`'s compiled ``chunk_small``, where
        they fit in one (:data:`xrnn.core.tuning.CHUNK_COLUMNS`) and are small enough for it."""
        T, n_a, m = map(int, dA.shape)
        if T * m > tuning.CHUNK_COLUMNS or step_flops(cell, n_a, m) > tuning.SMALL_LOOP_FLOPS:
            return None
        if _generated(cell, dA.dtype) is None or _lockstep(cell, dA.dtype, n_a, m) is not None:
            return None  # no kernels, or the lockstep loops (where tuned so)
        blas = _small_chunk(cell, dA, g[0], int(trace.x.shape[0]))
        if blas is None:
            return None
        store = JitColumns(self, cell.gradient_rows(n_a), T, m, dA, cell.recurrent_rows(n_a))
        return _generated_chunk_small(blas, cell, W, trace, dA, 0, g, store)

    def forward_outputs(self, cell: Any, W: Any, x: Any, state0: tuple) -> tuple | None:
        """The whole forward on two threads in lockstep, one GEMM per gate and step over
        ``[a⟨t-1⟩; x⟨t⟩]`` (the generated ``forward_fused``), where the cell's
        pre-activations each add both sides of their gate and its weights are apart
        (:func:`_gates_apart`): no input side of every step beforehand — the call holds its
        outputs and a step's scratch —, and each step's gx computed where it is read. None
        elsewhere. (The caching forward keeps the input side of every step for its saved
        values, and there the separate pass, whose first touch of that array runs on both
        threads without meeting, is the faster.)"""
        return _fused_forward(self, cell, W, x, state0)

    def backward_steps(
        self, cell: Any, W: Any, trace: Any, dA: Any, start: int, g: tuple, store: Any
    ) -> tuple | None:
        """A chunk's backward steps in a lean loop: per step one ``add(out=)``, one compiled
        kernel writing into the chunk's columns and one ``matmul(out=)`` for ``Waᵀ dra``."""
        return _generated_backward_steps(cell, W, trace, dA, start, g, store)


# --- cells with traced elementwise math (xrnn.backends.numpy.generated) ---------------------------


_TRACED: dict[type, bool] = {}


def _traced(cell: Any) -> bool:
    """Whether ``cell`` has traced elementwise math to generate kernels from (asked a few
    times a call: the answer kept per cell class)."""
    kind = type(cell)
    found = _TRACED.get(kind)
    if found is None:
        found = _TRACED[kind] = hasattr(kind, "programs")
    return found


def _generated(cell: Any, dtype: Any) -> Any:
    """The generated kernels of ``cell`` for ``dtype``, or None (a cell without traced math)."""
    if not _traced(cell):
        return None
    return generated.compiled(cell, dtype)


def _vectors(W: Any) -> tuple:
    return () if W.V is None else (W.V,)


def _saved(S: Any, t: Any) -> tuple:
    return () if S is None else (S[t],)


def _generated_forward_step(ops, cell, W, gx, state, slot):
    # where the saved values go over the input side (JitOps.saved_in_gx), the store lent
    # GX[t] itself as slot.saved: the kernel writes them into gx
    kernels = _generated(cell, gx.dtype)
    R = _recurrent(W, state[0])
    prev = tuple(np.ascontiguousarray(s) for s in state)  # the caller's initial states
    saved = () if slot.saved is None or kernels.saved_in_gx else (slot.saved,)
    kernels.forward_step(gx, R, *_vectors(W), *prev, *slot.states, *saved)
    return slot.states, slot.saved


def _generated_backward_step(cell, saved, prev, new, up, slot, W):
    kernels = _generated(cell, up[0].dtype)
    S = () if saved is None else (np.ascontiguousarray(saved),)
    prev = tuple(np.ascontiguousarray(p) for p in prev)
    new = tuple(np.ascontiguousarray(p) for p in new)
    DR = (slot.ra,) if cell.split_recurrent else ()
    kernels.backward_step(*up, *S, *_vectors(W), *prev, *new, slot.gx, *DR, slot.j0)
    dra = slot[1] if cell.split_recurrent else slot[0]
    return slot[0], dra, (up[0] if kernels.direct_hidden else None, *up[1:])


def _generated_forward(cell: Any, W: Any, dtype: Any, n_a: int, m: int) -> Any:
    """The forward loop of a generated cell for steps of ``n_a`` units and batch ``m``, as a
    function of one span of steps ``(GX, store)``, or None (no kernels): in lockstep on two
    threads for mid-sized steps, one compiled loop for small ones, else a lean loop of BLAS's
    GEMM into a reused buffer and the compiled step. What every span reuses — the scratch, the
    weights' layouts, the threads' halves — is made once."""
    kernels = _generated(cell, dtype)
    if kernels is None:
        return None
    V = _vectors(W)

    def saved(store: Any) -> tuple:  # where they go over the input side, the saved blocks are GX
        return () if kernels.saved_in_gx or store.saved is None else (store.saved,)

    blas = _lockstep(cell, dtype, n_a, m)
    if blas is not None:
        # each half's rows of the gates' weights (WA, at element o of each) and its scratch R,
        # both halves to each thread: the caller may take the helper's over
        halves = tuple(
            part
            for lo, hi in ((0, n_a // 2), (n_a // 2, n_a))
            for part in (
                *_recurrent_weights(W, cell.blocks, n_a, lo, hi),
                np.empty((cell.blocks * (hi - lo), m), dtype=dtype),
            )
        )

        def in_lockstep(GX: Any, store: Any) -> None:
            flags = lockstep.new_flags()
            patience = tuning.LOCKSTEP_TAKEOVER_CHECKS
            mine, theirs = (
                (blas, thread, flags, *halves, GX, *V, *store.states, *saved(store), patience)
                for thread in (0, 1)
            )
            if not lockstep.run(kernels.forward_lockstep, mine, theirs, flags):
                one_thread(GX, store)  # no helper thread

    R = np.empty((cell.blocks * n_a, m), dtype=dtype)
    if step_flops(cell, n_a, m) <= tuning.SMALL_LOOP_FLOPS:
        WaT = np.ascontiguousarray(W.Wa.T)

        def one_thread(GX: Any, store: Any) -> None:
            kernels.forward_loop(WaT, GX, *V, *store.states, *saved(store), R)

    else:
        gemm = cblas.step_gemm(dtype, step_flops(cell, n_a, m))

        def one_thread(GX: Any, store: Any) -> None:
            states, S = store.states, saved(store)
            H, step, blocks = states[0], kernels.forward_step, _recurrent_blocks(W, n_a, R)
            for t in range(int(GX.shape[0])):
                for Wq, Rq in blocks:
                    cblas.matmul_into(gemm, Wq, H[t], Rq)
                step(GX[t], R, *V, *(s[t] for s in states), *(s[t + 1] for s in states),
                     *(x[t] for x in S))  # fmt: skip

    return in_lockstep if blas is not None else one_thread


def _fused_forward(ops: Any, cell: Any, W: Any, x: Any, state0: tuple) -> tuple | None:
    """:meth:`JitOps.forward_outputs`."""
    n_x, m, T = map(int, x.shape)
    n_a, dtype = int(state0[0].shape[0]), x.dtype
    if not _traced(cell) or any(side != "both" for _, side in cell.pre_activations):
        return None
    blas = _lockstep(cell, dtype, n_a, m)
    if blas is None or not _gates_apart(W):
        return None
    kernels = _generated(cell, dtype)
    rows = cell.blocks * n_a
    store = ops.outputs_store(cell, state0, T)  # block 0 of each state: a copy of state0
    # one step's gx and saved rows, shared by the threads (each writes its units' rows)
    GX = np.empty((rows, m), dtype=dtype)
    saved_apart = cell.saved_blocks and not kernels.saved_in_gx
    S = (np.empty((cell.saved_blocks * n_a, m), dtype=dtype),) if saved_apart else ()
    Z = np.empty((2, n_a + n_x, m), dtype=dtype)  # [a⟨t-1⟩; x⟨t⟩], two steps in turn
    Z[0, :n_a] = state0[0]
    Z[0, n_a:] = x[:, :, 0]
    fixed = (W.gates, W.b, x, Z, GX, *_vectors(W), *store.states, *S)
    halves = [
        (np.empty((cell.blocks * (hi - lo), m), dtype=dtype), lo, hi, x0, x1)
        for (lo, hi), (x0, x1) in zip(
            ((0, n_a // 2), (n_a // 2, n_a)), ((0, n_x // 2), (n_x // 2, n_x)), strict=True
        )
    ]
    every = tuning.steps_per_span((2.0 * (n_a + n_x) + tuning.POINTWISE_FLOPS) * rows * m)
    for t0 in range(0, T, every):
        t1 = min(T, t0 + every)
        flags = lockstep.new_flags()
        mine, theirs = (
            (blas, thread, flags, *fixed, R, t0, t1, lo, hi, x0, x1)
            for thread, (R, lo, hi, x0, x1) in enumerate(halves)
        )
        if not lockstep.run(kernels.forward_fused, mine, theirs, flags):
            # no helper thread: this thread takes every unit, the other counted as done
            lockstep.publish(flags, 1, T)
            R = np.empty((rows, m), dtype=dtype)
            kernels.forward_fused(blas, 0, flags, *fixed, R, t0, t1, 0, n_a, 0, n_x)
    return tuple(store.states)


def _generated_chunk_lockstep(
    blas: Any, cell: Any, W: Any, trace: Any, dA: Any, start: int, g: tuple, store: Any
) -> tuple[tuple, tuple, Any] | None:
    """A generated cell's whole backward chunk on two threads in lockstep (see
    the kernels' ``chunk_lockstep``); the vectors' gradients summed from their rows after."""
    kernels = _generated(cell, dA.dtype)
    g0, XE = g[0], trace.x
    n_a = int(g0.shape[0])
    work = _chunk_work(W, trace, dA, g0, store, cell.blocks * n_a)
    Wa, Wx, up, A, X, ones, dWa, dWx, db, dX = work
    # the threads' partial sums of Waᵀ dz, per half and step parity, and their flags
    P, flags = np.empty((2, 2, *g0.shape), dtype=g0.dtype), lockstep.new_flags()
    S = () if trace.saved is None else (trace.saved,)
    D = store.buffers()

    def args(thread: int) -> tuple:
        return (
            blas, thread, flags, Wa, Wx, dA, start, *S, *_vectors(W), *trace.states, XE, g0,
            *g[1:], up, *D, P, A, X, ones, dWa, dWx, db, dX, tuning.LOCKSTEP_TAKEOVER_CHECKS,
        )  # fmt: skip

    if not lockstep.run(kernels.chunk_lockstep, args(0), args(1), flags):
        return None
    _, _, dV = vector_rows(np, cell, *store.columns(int(dA.shape[0])))
    return g, (dWa, dWx, db, dV), dX


def _generated_chunk_small(
    blas: Any, cell: Any, W: Any, trace: Any, dA: Any, start: int, g: tuple, store: Any
) -> tuple[tuple, tuple, Any]:
    """A generated cell's whole backward chunk of small steps in one compiled call (the
    kernels' ``chunk_small``); the vectors' gradients summed from their rows after."""
    kernels = _generated(cell, dA.dtype)
    g0 = g[0]
    work = _chunk_work(W, trace, dA, g0, store, cell.blocks * int(g0.shape[0]))
    Wa, Wx, up, A, X, ones, dWa, dWx, db, dX = work
    S = () if trace.saved is None else (trace.saved,)
    kernels.chunk_small(
        blas, Wa, Wx, dA, start, *S, *_vectors(W), *trace.states, trace.x, g0, *g[1:], up,
        *store.buffers(), A, X, ones, dWa, dWx, db, dX,
    )  # fmt: skip
    _, _, dV = vector_rows(np, cell, *store.columns(int(dA.shape[0])))
    return g, (dWa, dWx, db, dV), dX


def _generated_backward_steps(
    cell: Any, W: Any, trace: Any, dA: Any, start: int, g: tuple, store: Any
) -> tuple | None:
    """A chunk's backward steps of a generated cell in a lean loop (see
    :meth:`JitOps.backward_steps`)."""
    kernels = _generated(cell, dA.dtype)
    if kernels is None or not isinstance(store, BufferColumns):
        return None
    states, S, m = trace.states, trace.saved, int(dA.shape[2])
    WaT, g0, D = W.Wa.T, g[0], store.buffers()
    n_a = int(g0.shape[0])
    rows, V = cell.blocks * n_a, _vectors(W)
    up = np.empty_like(g0)
    if step_flops(cell, n_a, m) <= tuning.SMALL_LOOP_FLOPS:  # the chunk in one compiled call
        Wa = np.ascontiguousarray(W.Wa)
        kernels.backward_loop(Wa, dA, start, *(() if S is None else (S,)), *V, *states, *g, up, *D)
        return g
    blas = _step_gemm(W.Wa, m)
    for j in reversed(range(int(dA.shape[0]))):
        t, j0 = start + j, j * m
        np.add(g0, dA[j], out=up)
        kernels.backward_step(
            up, *g[1:], *_saved(S, t), *V, *(s[t] for s in states), *(s[t + 1] for s in states),
            *D, j0,
        )  # fmt: skip
        cblas.matmul_into(blas, WaT, D[-1][:rows, j0 : j0 + m], g0)
        if kernels.direct_hidden:
            g0 += up
    return (g0, *g[1:])


def _step_gemm(Wa: Any, m: int) -> Any:
    """The GEMM handle for a loop's steps ``Wa @ a`` (``a``: (n_a, m)), or None for NumPy's
    matmul: :func:`xrnn.backends.numpy.cblas.step_gemm`'s policy."""
    return cblas.step_gemm(Wa.dtype, 2.0 * int(Wa.shape[0]) * int(Wa.shape[1]) * m)


def _recurrent(W: Any, a: Any) -> Any:
    """One step's recurrent GEMM ``Wa @ a``, into a fresh array."""
    n_a, m = map(int, a.shape)
    out = np.empty((int(W.b.shape[0]), m), dtype=a.dtype)
    handle = cblas.step_gemm(a.dtype, 2.0 * int(W.b.shape[0]) * n_a * m)
    for Wq, out_q in _recurrent_blocks(W, n_a, out):
        cblas.matmul_into(handle, Wq, a, out_q)
    return out


def _recurrent_blocks(W: Any, n_a: int, R: Any) -> list[tuple[Any, Any]]:
    """The recurrent GEMM ``R = Wa a`` as ``(weights, rows of R)`` pairs: gate by gate where
    the weights are apart (:func:`_gates_apart`: views of the parameters, no copy), else
    ``Wa`` into all of ``R``."""
    if not _gates_apart(W):
        return [(W.Wa, R)]
    return [(w[:, :n_a], R[q * n_a : (q + 1) * n_a]) for q, w in enumerate(W.gates)]
