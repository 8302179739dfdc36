"""Compiled fused step kernels for NumPy arrays (numba): one compiled call per step and direction
for all of a cell's pointwise work, beside BLAS's recurrent GEMM.

The in-place NumPy kernels (:mod:`xrnn.backends.numpy`) issue about 10 ufunc calls per forward
step and 20 per backward step, each a pass over memory plus a few microseconds of dispatch; the
kernels here make one pass, element by element, with every temporary in registers. They are
written so that LLVM vectorises them: an innermost loop over the contiguous batch axis, every
output a different array than every input (an array both read and written is passed once), and
numba's ``error_model="numpy"`` (no ZeroDivisionError checks in the loop).

Activations: float32 ``tanh`` is a rational approximation (Eigen's ``ptanh_float``
coefficients, clamped at ±7.9053, exact ``x`` below 4e-4 in magnitude) that vectorises, where
``math.tanh`` is one scalar libm call per element: within 6 ulp (3.6e-7) of ``numpy.tanh`` over
[-12, 12], 1 ulp on average (``tests/test_jit.py``). float64 uses ``math.tanh`` (libm, to
1e-16). ``σ(x) = ½ tanh(x/2) + ½`` as everywhere in xrnn (no overflow). Constants are cast to
the arrays' dtype at compile time, so float32 kernels never promote to double.

Kernels are compiled on first use per dtype and layout and cached on disk (numba's
``cache=True``: ``__pycache__`` beside this file, or numba's user cache directory where that is
read-only), so a later process loads them instead of compiling. Importing this module imports
numba (about 0.2 s); :func:`xrnn.backends.get_ops` imports it on the first call with NumPy
arrays, never at ``import xrnn``. ``XRNN_JIT=0`` in the environment (read at that first call)
selects the pure-NumPy kernels instead.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numba
import numpy as np
from numba import types
from numba.extending import overload

import xrnn.tuning as tuning
from xrnn.backends import cblas, lockstep
from xrnn.backends.numpy import NumpyOps
from xrnn.layout import input_side, time_major
from xrnn.ops import BufferColumns, chunk_gradients, vector_rows
from xrnn.tuning import step_flops

__all__ = ["JitOps"]

# every kernel: cached on disk, the GIL released, no ZeroDivisionError checks in the loops
_kernel = numba.njit(cache=True, nogil=True, error_model="numpy")

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


@_kernel
def rnn_forward_step(h, gx):  # h: Wa a⟨t-1⟩ in, a⟨t⟩ out; both C-contiguous (flat loop)
    h1, gx1 = h.reshape(h.size), gx.reshape(gx.size)
    for p in range(h1.size):
        h1[p] = tanh(h1[p] + gx1[p])


@_kernel
def rnn_backward_step(da, a, dp, j0):  # dp: the chunk's (n_a, k·m) buffer, columns j0 + j
    u0 = np.uintp(j0)  # unsigned column indices: no negative-index wraparound in the loop
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            dp[i, u0 + np.uintp(j)] = da[i, j] * (one(a[i, j]) - a[i, j] * a[i, j])


@_kernel
def relu_forward_step(h, gx):
    h1, gx1 = h.reshape(h.size), gx.reshape(gx.size)
    for p in range(h1.size):
        v = h1[p] + gx1[p]
        h1[p] = one(v) - one(v) if v < 0 else v  # NaN stays NaN, as in numpy.maximum


@_kernel
def relu_backward_step(da, a, dp, j0):
    u0 = np.uintp(j0)
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            dp[i, u0 + np.uintp(j)] = da[i, j] if a[i, j] > 0 else da[i, j] - da[i, j]


@_kernel
def lstm_forward_step(g, r, c_prev, c, h):
    """``g`` (4n_a, m): the input side ``Wx x⟨t⟩ + b`` in, the gates ``[Γf; Γu; Γo; c̃]`` out;
    ``r`` (4n_a, m) ``Wa a⟨t-1⟩``; ``c_prev``, ``c``, ``h`` (n_a, m). All C-contiguous."""
    lstm_forward_units(g, r, c_prev, c, h, 0, c.shape[0])


@_kernel
def lstm_forward_units(g, r, c_prev, c, h, u0, u1):
    """:func:`lstm_forward_step` for the hidden units ``u0 ≤ i < u1`` only, whose four gate
    blocks of ``Wa a⟨t-1⟩`` are all ``r`` holds: (4(u1 - u0), m)."""
    m = c.shape[1]
    g1, r1 = g.reshape(g.size), r.reshape(r.size)
    cp1, c1, h1 = c_prev.reshape(c_prev.size), c.reshape(c.size), h.reshape(h.size)
    # gate k of element p lies at k·n + p in g, k·nu + p - base in r; every offset unsigned
    # (no wraparound check) and precomputed (with ``2 * n`` in the loop LLVM did not vectorise)
    n, nu, base = np.uintp(c1.size), np.uintp((u1 - u0) * m), np.uintp(u0 * m)
    n2, n3, nu2, nu3 = n + n, n + n + n, nu + nu, nu + nu + nu
    for p in range((u1 - u0) * m):
        k = np.uintp(p)
        q = base + k
        f = sigmoid(g1[q] + r1[k])
        u = sigmoid(g1[n + q] + r1[nu + k])
        o = sigmoid(g1[n2 + q] + r1[nu2 + k])
        cc = tanh(g1[n3 + q] + r1[nu3 + k])
        ct = f * cp1[q] + u * cc
        g1[q] = f
        g1[n + q] = u
        g1[n2 + q] = o
        g1[n3 + q] = cc
        c1[q] = ct
        h1[q] = o * tanh(ct)


@_kernel
def lstm_backward_step(da, dc, g, c, c_prev, dp, j0):
    """``dc`` (n_a, m): ``dc⟨t⟩`` in, ``dc⟨t-1⟩`` out; ``dp``: the chunk's (4n_a, k·m) buffer,
    columns ``j0 + j`` get ``[dΓf; dΓu; dΓo; dc̃]`` (the corrected equations of
    :mod:`xrnn.lstm`)."""
    lstm_backward_units(da, dc, g, c, c_prev, dp, j0, 0, c.shape[0])


@_kernel
def lstm_backward_units(da, dc, g, c, c_prev, dp, j0, u0, u1):
    """:func:`lstm_backward_step` for the hidden units ``u0 ≤ i < u1`` only."""
    n, c0 = c.shape[0], np.uintp(j0)
    for i in range(u0, u1):
        for j in range(c.shape[1]):
            f, u, o, cc = g[i, j], g[n + i, j], g[2 * n + i, j], g[3 * n + i, j]
            d, cp = da[i, j], c_prev[i, j]
            k = one(d)
            tc = tanh(c[i, j])
            dct = dc[i, j] + d * o * (k - tc * tc)
            q = c0 + np.uintp(j)  # unsigned: no wraparound check, the loop vectorises
            dp[i, q] = dct * cp * f * (k - f)
            dp[n + i, q] = dct * cc * u * (k - u)
            dp[2 * n + i, q] = d * tc * o * (k - o)
            dp[3 * n + i, q] = dct * u * (k - cc * cc)
            dc[i, j] = dct * f


@_kernel
def gru_forward_step(gx, ra, bhn, a_prev, s, h):
    """``gx``, ``ra`` (3n_a, m) input and recurrent sides; ``bhn`` (n_a, 1); ``s`` (4n_a, m)
    out: ``[Γr; Γz; ñ; hn]``; ``h`` (n_a, m) out."""
    n = h.shape[0]
    for i in range(n):
        b = bhn[i, 0]
        for j in range(h.shape[1]):
            r = sigmoid(gx[i, j] + ra[i, j])
            z = sigmoid(gx[n + i, j] + ra[n + i, j])
            hn = ra[2 * n + i, j] + b
            nt = tanh(gx[2 * n + i, j] + r * hn)
            s[i, j], s[n + i, j], s[2 * n + i, j], s[3 * n + i, j] = r, z, nt, hn
            h[i, j] = nt + z * (a_prev[i, j] - nt)


@_kernel
def gru_backward_step(da, s, a_prev, dgx, dra, j0):
    """``da`` (n_a, m): the upstream gradient in, its direct part ``da∗Γz`` out; ``dgx``,
    ``dra``: the chunk's (3n_a, k·m) buffers, columns ``j0 + j``."""
    n, u0 = da.shape[0], np.uintp(j0)
    for i in range(n):
        for j in range(da.shape[1]):
            r, z, nt, hn = s[i, j], s[n + i, j], s[2 * n + i, j], s[3 * n + i, j]
            d = da[i, j]
            k = one(d)
            dn = d * (k - z) * (k - nt * nt)
            dz = d * (a_prev[i, j] - nt) * z * (k - z)
            dr = dn * hn * r * (k - r)
            q = u0 + np.uintp(j)  # unsigned: no wraparound check, the loop vectorises
            dgx[i, q], dgx[n + i, q], dgx[2 * n + i, q] = dr, dz, dn
            dra[i, q], dra[n + i, q], dra[2 * n + i, q] = dr, dz, dn * r
            da[i, j] = d * z


@_kernel
def add_bias(G, b):
    """``G`` (T, rows, m) ``+= b`` (rows, 1): the bias held in a register per row (NumPy's
    broadcast add took 3.5× longer on the "long" config's 512 × 16 rows)."""
    for t in range(G.shape[0]):
        for i in range(G.shape[1]):
            bi = b[i, 0]
            for j in range(G.shape[2]):
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


@_kernel
def small_gemm(WaT, A, R):
    """``R = WaT.T @ A``: ``WaT`` (n_a, rows) C-contiguous, ``A`` (n_a, m), ``R`` (rows, m)."""
    rows, m = R.shape
    zero = one(A[0, 0]) - one(A[0, 0])  # 0 in A's type, whatever A holds
    for i in range(rows):
        for j in range(m):
            R[i, j] = zero
    if m == 1:  # the batch axis is too short to vectorise over: go along the rows instead
        R1 = R.reshape(rows)  # contiguous: the row loop vectorises
        for k in range(WaT.shape[0]):
            ak = A[k, 0]
            for i in range(rows):
                R1[i] += WaT[k, i] * ak
        return
    for k in range(WaT.shape[0]):
        for i in range(rows):
            w = WaT[k, i]
            for j in range(m):
                R[i, j] += w * A[k, j]


@_kernel
def rnn_forward_loop(WaT, GX, H, R):
    for t in range(GX.shape[0]):
        small_gemm(WaT, H[t], H[t + 1])
        rnn_forward_step(H[t + 1], GX[t])


@_kernel
def relu_forward_loop(WaT, GX, H, R):
    for t in range(GX.shape[0]):
        small_gemm(WaT, H[t], H[t + 1])
        relu_forward_step(H[t + 1], GX[t])


@_kernel
def lstm_forward_loop(WaT, GX, H, C, R):
    """Every step of :func:`lstm_forward_step`: ``GX`` (T, 4n_a, m) in, the gates out; ``H``,
    ``C`` (T+1, n_a, m) with the initial states in block 0; ``R`` (4n_a, m) scratch."""
    for t in range(GX.shape[0]):
        small_gemm(WaT, H[t], R)
        lstm_forward_step(GX[t], R, C[t], C[t + 1], H[t + 1])


@_kernel
def gru_forward_loop(WaT, GX, bhn, H, S, R):
    for t in range(GX.shape[0]):
        small_gemm(WaT, H[t], R)
        gru_forward_step(GX[t], R, bhn, H[t], S[t], H[t + 1])


# --- the LSTM's loops on two threads in lockstep (xrnn.backends.lockstep) ----------------------
# Thread ``thread`` (0: the caller, 1: the helper) owns the hidden units [u0, u1): its rows of
# each step's recurrent GEMM (BLAS on one thread) and its units' pointwise math. The threads
# meet once per step, where each needs rows the other wrote.


@_kernel
def lstm_forward_lockstep(blas, thread, flags, Wp, GX, H, C, R, u0, u1):
    """This thread's half of :func:`lstm_forward_loop`: ``Wp`` (4(u1 - u0), n_a) holds Wa's
    rows of its units' four gates, ``R`` (4(u1 - u0), m) is its scratch."""
    n_a, m = H.shape[1], H.shape[2]
    for t in range(GX.shape[0]):
        if not lockstep.wait_for(flags, 1 - thread, t):  # a⟨t-1⟩ complete
            return
        cblas.gemm(
            blas, False, False, Wp.shape[0], m, n_a, Wp, 0, n_a, H, t * n_a * m, m, 0.0, R, 0, m
        )
        lstm_forward_units(GX[t], R, C[t], C[t + 1], H[t + 1], u0, u1)
        lockstep.publish(flags, thread, t + 1)


@_kernel
def lstm_chunk_lockstep(
    blas, thread, flags, Wa, Wx, dA, start, S, C, H, XE, g0, dc, up, dp, P, A, X, ones, dWa, dWx,
    db, dX, u0, u1,
):  # fmt: skip
    """This thread's half of a chunk of the LSTM's backward pass (:meth:`JitOps.backward_chunk`):
    the steps ``start + k - 1`` down to ``start`` — rows [u0, u1) of ``g0`` (da⟨t⟩ carried back,
    (n_a, m)), ``dc`` and ``up``, the chunk's ``dp`` columns of its units' gates —, then its
    half of the chunk's gradients: rows of ``dWa = dp A_prevᵀ``, ``dWx = dp Xᵀ``, ``db = dp 1``,
    columns of ``dX = Wxᵀ dp``. ``Wa`` (4n_a, n_a), ``Wx`` (4n_a, n_x) C-contiguous; ``P`` (2,
    2, n_a, m): each thread's partial ``Waᵀ dΓ``, two buffers each, by step parity; ``A`` (n_a,
    k m), ``X`` (n_x, k m): the chunk's previous states and inputs as columns, filled here."""
    k, n_a, m, pitch = dA.shape[0], g0.shape[0], g0.shape[1], dp.shape[1]
    rows, n_x, K = 4 * n_a, X.shape[0], k * m
    other = 1 - thread
    # this thread's rows of A and X; the other's are complete once it has met this thread
    # after the first step
    a0, a1 = (0, n_a // 2) if thread == 0 else (n_a // 2, n_a)
    x0, x1 = (0, n_x // 2) if thread == 0 else (n_x // 2, n_x)
    for j in range(k):
        for i in range(a0, a1):
            for c in range(m):
                A[i, j * m + c] = H[start + j, i, c]
    for i in range(x0, x1):
        for c in range(m):
            for j in range(k):
                X[i, j * m + c] = XE[i, c, start + j]
    for s in range(k):
        j = k - 1 - s
        t = start + j
        for i in range(u0, u1):
            for c in range(m):
                up[i, c] = g0[i, c] + dA[j, i, c]
        lstm_backward_units(up, dc, S[t], C[t + 1], C[t], dp, j * m, u0, u1)
        # this thread's part of da⟨t-1⟩ = Waᵀ dΓ⟨t⟩, over the gate rows it has just written:
        # no GEMM reads rows the other core wrote (splitting by output rows instead, the
        # GEMMs' reads of the other half took 22 rather than 17 µs a step on the "long" config)
        mine, theirs = P[thread, s % 2], P[other, s % 2]
        for b in range(4):
            row = b * n_a + u0
            cblas.gemm(
                blas, True, False, n_a, m, u1 - u0, Wa, row * n_a, n_a, dp, row * pitch + j * m,
                pitch, 0.0 if b == 0 else 1.0, mine, 0, m,
            )  # fmt: skip
        lockstep.publish(flags, thread, s + 1)
        if not lockstep.wait_for(flags, other, s + 1):
            return
        # the other thread writes its other buffer next step and this one only after it has
        # waited for this thread's next step, by which this thread has read it
        for i in range(u0, u1):
            for c in range(m):
                g0[i, c] = mine[i, c] + theirs[i, c]
    # every dΓ of the chunk is written (the last meeting): the gradients, by halves
    r0, r1 = (0, rows // 2) if thread == 0 else (rows // 2, rows)
    c0, c1 = (0, K // 2) if thread == 0 else (K // 2, K)
    h = r1 - r0
    cblas.gemm(
        blas, False, True, h, n_a, K, dp, r0 * pitch, pitch, A, 0, K, 0.0, dWa, r0 * n_a, n_a
    )
    cblas.gemm(
        blas, False, True, h, n_x, K, dp, r0 * pitch, pitch, X, 0, K, 0.0, dWx, r0 * n_x, n_x
    )
    cblas.gemm(blas, False, False, h, 1, K, dp, r0 * pitch, pitch, ones, 0, 1, 0.0, db, r0, 1)
    if c1 > c0:  # a one-column chunk leaves thread 0 none
        cblas.gemm(blas, True, False, n_x, c1 - c0, rows, Wx, 0, n_x, dp, c0, pitch, 0.0, dX, c0, K)


@_kernel
def input_side_lockstep(blas, thread, flags, Wx, b, XE, G):
    """This thread's half of the steps of :meth:`JitOps.input_side`: ``G[t] = Wx XE[t] + b``,
    ``XE`` (T, n_x, m) time-major, ``b`` (rows, 1)."""
    T, rows, m = G.shape
    n_x = XE.shape[1]
    half = T // 2
    first, last = (0, half) if thread == 0 else (half, T)
    for t in range(first, last):
        cblas.gemm(
            blas, False, False, rows, m, n_x, Wx, 0, n_x, XE, t * n_x * m, m, 0.0, G,
            t * rows * m, m,
        )  # fmt: skip
        add_bias(G[t : t + 1], b)


def _lockstep(cell: Any, dtype: Any, n_a: int, m: int) -> Any:
    """The BLAS handle for ``cell``'s loops over these steps in lockstep, or None: they run
    on one thread (cells other than the LSTM and the generated ones, too small or too large
    steps, no helper)."""
    if cell.name != "lstm" and not _traced(cell):
        return None
    flops = step_flops(cell, n_a, m)
    if not tuning.LOCKSTEP_MIN_FLOPS <= flops <= tuning.LOCKSTEP_MAX_FLOPS or n_a < 2:
        return None
    return lockstep.available(dtype)


def _lstm_forward_lockstep(blas: Any, W: Any, GX: Any, store: Any) -> bool:
    H, C = store.states
    n_a, m = int(H.shape[1]), int(H.shape[2])
    halves = ((0, n_a // 2), (n_a // 2, n_a))
    gates = W.Wa.reshape(4, n_a, n_a)
    flags = lockstep.new_flags()

    def args(thread: int) -> tuple:
        u0, u1 = halves[thread]
        Wp = np.ascontiguousarray(gates[:, u0:u1, :]).reshape(4 * (u1 - u0), n_a)
        R = np.empty((4 * (u1 - u0), m), dtype=GX.dtype)
        return (blas, thread, flags, Wp, GX, H, C, R, u0, u1)

    return lockstep.run(lstm_forward_lockstep, args(0), args(1), flags)


def _chunk_work(W: Any, trace: Any, dA: Any, g0: Any, store: Any, rows: int) -> tuple:
    """What a backward chunk on two threads works with (``rows``: its gate rows): ``Wa``,
    ``Wx`` C-contiguous, the step's upstream scratch ``up`` (n_a, m), the threads' partial
    sums ``P`` (2, 2, n_a, m), the chunk's previous states and inputs as columns ``A``, ``X``
    and a column of ones (the store's scratch, reused by every chunk), the chunk's gradients
    ``dWa``, ``dWx``, ``db``, ``dX``, and the threads' flags."""
    n_a, m = int(g0.shape[0]), int(g0.shape[1])
    K, dtype, n_x = int(dA.shape[0]) * m, g0.dtype, int(trace.x.shape[0])
    return (
        np.ascontiguousarray(W.Wa),
        np.ascontiguousarray(W.Wx),
        np.empty_like(g0),
        np.empty((2, 2, n_a, m), dtype=dtype),
        store.scratch("A", (n_a, K), dtype),
        store.scratch("X", (n_x, K), dtype),
        store.scratch("ones", (K, 1), dtype, fill=1),
        np.empty((rows, n_a), dtype),
        np.empty((rows, n_x), dtype),
        np.empty((rows, 1), dtype),
        np.empty((n_x, K), dtype),
        lockstep.new_flags(),
    )


def _lstm_chunk_lockstep(
    blas: Any, W: Any, trace: Any, dA: Any, start: int, g: tuple, store: Any
) -> tuple[tuple, tuple, Any] | None:
    g0, dc = g
    n_a, XE = int(g0.shape[0]), trace.x
    work = _chunk_work(W, trace, dA, g0, store, 4 * n_a)
    Wa, Wx, up, P, A, X, ones, dWa, dWx, db, dX, flags = work
    S, C, H, dp = trace.saved, trace.states[1], trace.states[0], store.gx_buffer

    def args(thread: int, u0: int, u1: int) -> tuple:
        return (
            blas, thread, flags, Wa, Wx, dA, start, S, C, H, XE, g0, dc, up, dp, P, A, X, ones,
            dWa, dWx, db, dX, u0, u1,
        )  # fmt: skip

    if not lockstep.run(lstm_chunk_lockstep, args(0, 0, n_a // 2), args(1, n_a // 2, n_a), flags):
        return None
    return g, (dWa, dWx, db, None, None), dX


class _Span(NamedTuple):
    """A span of a forward store's steps (:meth:`JitOps.forward_loop`): each state's blocks
    t0 … t1 and the saved blocks t0 … t1 - 1 (or None), views."""

    states: tuple
    saved: Any


# --- registered per cell -----------------------------------------------------------------------


class ColumnBlock(tuple):
    """A backward step's ``(dgx, dra)`` column views, plus the C-contiguous chunk buffers they
    lie in and their first column: a kernel writing ``buffer[i, j0 + j]`` (unsigned column
    indices) runs a vectorised innermost loop over contiguous memory; through the strided view
    (numba's any-layout arrays) the LSTM backward step took 5× longer."""

    gx: Any
    ra: Any
    j0: int

    def __new__(cls, views: tuple, gx: Any, ra: Any, j0: int) -> ColumnBlock:
        block = super().__new__(cls, views)
        block.gx, block.ra, block.j0 = gx, ra, j0
        return block


class JitColumns(BufferColumns):
    """:class:`~xrnn.ops.BufferColumns` whose slots say where they lie (:class:`ColumnBlock`)."""

    def slot(self, j: int) -> ColumnBlock:
        views = super().slot(j)
        gx, ra = self.gx_buffer, self.ra_buffer
        return ColumnBlock(views, gx, gx if ra is None else ra, j * self.m)


class JitOps(NumpyOps):
    """NumPy storage with the compiled step kernels above, and those generated from a cell's
    elementwise math (:mod:`xrnn.backends.generated`) for every other cell that has it."""

    def kernel(self, cell: Any, direction: str) -> Any:
        found = super().kernel(cell, direction)
        if found is None and direction == "forward" and _traced(cell):
            return _generated_forward_step
        return found

    def saved_in_gx(self, cell: Any) -> bool:
        if super().kernel(cell, "forward") is None and _traced(cell):
            from xrnn.backends.generated import saves_in_gx

            return saves_in_gx(cell)
        return super().saved_in_gx(cell)

    def backward_step(
        self, cell: Any, saved: Any, prev: tuple, new: tuple, up: tuple, slot: Any, W: Any = None
    ) -> tuple:
        if super().kernel(cell, "backward") is None and _traced(cell):
            return _generated_backward_step(cell, saved, prev, new, up, slot, W)
        return super().backward_step(cell, saved, prev, new, up, slot, W)

    def gradient_columns(self, rows: int, k: int, m: int, like: Any, split: bool) -> Any:
        return JitColumns(self.xp, rows, k, m, like, split)

    def input_side(self, cell: Any, W: Any, x: Any) -> Any:
        """The reference's GEMM (batched over steps; one GEMM for m = 1), then
        :func:`add_bias` (NumPy's broadcast add took 3.5× as long) — or, where the cell's loop
        runs in lockstep, both halves of the steps at once, on the loop's two threads, so that
        no BLAS thread is left spinning beside them (:mod:`xrnn.backends.lockstep`). One GEMM
        for all steps would be faster on its own (1.2 ms vs 1.9 on the "long" config), but
        its (rows, T·m) product is a second array of GX's size to relay out, and a fresh
        array's first touch costs its page faults — here as much as the GEMM — on every
        call."""
        n_x, m, T = (int(s) for s in x.shape)
        blas = _lockstep(cell, x.dtype, int(W.Wa.shape[1]), m) if T >= 2 else None
        if blas is not None:
            rows = int(W.Wx.shape[0])
            G = np.empty((T, rows, m), dtype=x.dtype)
            XE, Wx = time_major(np, x), np.ascontiguousarray(W.Wx)
            # two threads' spans at a time (see forward_loop), each as costly as a loop's
            every = 2 * tuning.steps_per_span(2.0 * rows * n_x * m)
            for t0 in range(0, T, every):
                t1 = min(T, t0 + every)
                flags = lockstep.new_flags()
                args = [(blas, i, flags, Wx, W.b, XE[t0:t1], G[t0:t1]) for i in (0, 1)]
                if not lockstep.run(input_side_lockstep, args[0], args[1], flags):
                    break  # no helper thread: the rest below, by one GEMM
            else:
                return G
        G = input_side(np, W.Wx, x)
        add_bias(G, W.b)
        return G

    def lends_to_torch(self, cell: Any, dtype: Any, n_a: int, m: int) -> bool:
        """Whether torch CPU tensors of ``cell``'s call (``dtype``, ``n_a`` units, batch
        ``m``) run these kernels on their memory (:mod:`xrnn.backends.torch`): steps up to
        :data:`xrnn.tuning.LOCKSTEP_MAX_FLOPS` (above it torch's own kernels keep up, and its
        threads are better left alone)."""
        return (
            dtype is not None
            and (cell.name in _LOOPS or _traced(cell))
            and step_flops(cell, n_a, m) <= tuning.LOCKSTEP_MAX_FLOPS
        )

    def backward_chunk(
        self, cell: Any, W: Any, trace: Any, dA: Any, start: int, g: tuple, store: Any
    ) -> tuple[tuple, tuple, Any] | None:
        """A whole chunk: for the LSTM's mid-sized steps, its steps and its gradients on two
        threads in lockstep, one hand-over for both (see :meth:`input_side`); else the lean
        loop of :meth:`backward_steps` and NumPy's GEMMs — what the engine would do, here so
        that torch CPU tensors borrowing these kernels get NumPy's GEMMs too."""
        if not isinstance(store, BufferColumns) or (
            cell.name not in _LOOPS and _generated(cell, dA.dtype) is None
        ):
            return None
        blas = _lockstep(cell, dA.dtype, int(g[0].shape[0]), int(dA.shape[2]))
        if blas is not None:
            if _traced(cell):
                whole = _generated_chunk_lockstep(blas, cell, W, trace, dA, start, g, store)
            else:
                whole = _lstm_chunk_lockstep(blas, W, trace, dA, start, g, store)
            if whole is not None:
                return whole
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

    def forward_loop(self, cell: Any, W: Any, GX: Any, store: Any) -> bool:
        """Every forward step at once: in one compiled call when the steps are small (see
        :data:`xrnn.tuning.SMALL_LOOP_FLOPS`), on two threads in lockstep for the LSTM's
        mid-sized steps (:data:`xrnn.tuning.LOCKSTEP_MIN_FLOPS`), else a lean loop of one BLAS
        GEMM into a reused buffer and one step kernel per step (none of the engine's per-step
        bookkeeping). The compiled calls take the steps a span at a time
        (:func:`xrnn.tuning.steps_between_checks`), so that a KeyboardInterrupt reaches the
        caller between spans rather than when the last step is done."""
        T, (n_a, m) = int(GX.shape[0]), (int(s) for s in store.states[0].shape[1:])
        every = tuning.steps_between_checks(cell, n_a, m)
        for t0 in range(0, T, every):
            t1 = min(T, t0 + every)
            span = _Span(
                tuple(s[t0 : t1 + 1] for s in store.states),
                None if store.saved is None else store.saved[t0:t1],
            )
            if not self._forward_span(cell, W, GX[t0:t1], span):
                return False  # (no kernels for this cell: decided before any step ran)
        return True

    def _forward_span(self, cell: Any, W: Any, GX: Any, store: Any) -> bool:
        if cell.name not in _LOOPS:
            return _generated_forward_loop(cell, W, GX, store)
        H = store.states[0]
        n_a, m = int(H.shape[1]), int(H.shape[2])
        if cell.name == "lstm":
            blas = _lockstep(cell, GX.dtype, n_a, m)
            if blas is not None and _lstm_forward_lockstep(blas, W, GX, store):
                return True
        R = np.empty((cell.blocks * n_a, m), dtype=GX.dtype)
        if step_flops(cell, n_a, m) <= tuning.SMALL_LOOP_FLOPS:
            _LOOPS[cell.name](np.ascontiguousarray(W.Wa.T), GX, W, store, R)
        else:
            _blas_loop(cell.name, W, GX, store, R)
        return True

    def backward_steps(
        self, cell: Any, W: Any, trace: Any, dA: Any, start: int, g: tuple, store: Any
    ) -> tuple | None:
        """A chunk's backward steps in a lean loop: per step one ``add(out=)``, one compiled
        kernel writing into the chunk's columns and one ``matmul(out=)`` for ``Waᵀ dra``."""
        if cell.name not in _LOOPS:
            return _generated_backward_steps(cell, W, trace, dA, start, g, store)
        H, S, m = trace.states[0], trace.saved, int(dA.shape[2])
        WaT, g0, gx, ra = W.Wa.T, g[0], store.gx_buffer, store.ra_buffer
        up = np.empty_like(g0)
        steps = [(start + j, j * m) for j in reversed(range(int(dA.shape[0])))]
        blas = _step_gemm(W.Wa, m)
        if cell.name == "lstm":
            C, dc = trace.states[1], g[1]
            for t, j0 in steps:
                np.add(g0, dA[t - start], out=up)
                lstm_backward_step(up, dc, S[t], C[t + 1], C[t], gx, j0)
                cblas.matmul_into(blas, WaT, gx[:, j0 : j0 + m], g0)
        elif cell.name == "gru":
            for t, j0 in steps:
                np.add(g0, dA[t - start], out=up)
                gru_backward_step(up, S[t], H[t], gx, ra, j0)
                cblas.matmul_into(blas, WaT, ra[:, j0 : j0 + m], g0)
                g0 += up  # the direct part da∗Γz
        else:
            kernel = rnn_backward_step if cell.name == "rnn" else relu_backward_step
            for t, j0 in steps:
                np.add(g0, dA[t - start], out=up)
                kernel(up, H[t + 1], gx, j0)
                cblas.matmul_into(blas, WaT, gx[:, j0 : j0 + m], g0)
        return (g0, *g[1:])


# --- cells with traced elementwise math (xrnn.backends.generated) --------------------------------


def _traced(cell: Any) -> bool:
    """Whether ``cell`` has traced elementwise math to generate kernels from."""
    return hasattr(type(cell), "programs")


def _generated(cell: Any, dtype: Any) -> Any:
    """The generated kernels of ``cell`` for ``dtype``, or None (a cell without traced math)."""
    if not _traced(cell):
        return None
    from xrnn.backends import generated

    return generated.compiled(cell, dtype)


def _vectors(W: Any) -> tuple:
    return () if W.V is None else (W.V,)


def _saved(S: Any, t: Any) -> tuple:
    return () if S is None else (S[t],)


def _generated_forward_step(ops, cell, W, gx, state, slot):
    # where the saved values go over the input side (JitOps.saved_in_gx), the store lent
    # GX[t] itself as slot.saved: the kernel writes them into gx
    kernels = _generated(cell, gx.dtype)
    R = _recurrent(W.Wa, state[0])
    prev = tuple(np.ascontiguousarray(s) for s in state)  # the caller's initial states
    saved = () if slot.saved is None or kernels.saved_in_gx else (slot.saved,)
    kernels.forward_step(gx, R, *_vectors(W), *prev, *slot.states, *saved)
    return slot.states, slot.saved


def _generated_backward_step(cell, saved, prev, new, up, slot, W):
    kernels = _generated(cell, up[0].dtype)
    S = () if saved is None else (np.ascontiguousarray(saved),)
    prev = tuple(np.ascontiguousarray(p) for p in prev)
    new = tuple(np.ascontiguousarray(p) for p in new)
    kernels.backward_step(*up, *S, *_vectors(W), *prev, *new, slot.gx, slot.j0)
    return slot[0], slot[0], (up[0] if kernels.direct_hidden else None, *up[1:])


def _generated_forward_loop(cell: Any, W: Any, GX: Any, store: Any) -> bool:
    """Every forward step of a generated cell: one compiled loop for small steps, else a lean
    loop of BLAS's GEMM into a reused buffer and the compiled step (as :func:`_blas_loop`)."""
    kernels = _generated(cell, GX.dtype)
    if kernels is None:
        return False
    states = store.states
    S = None if kernels.saved_in_gx else store.saved  # else the store's saved blocks are GX
    n_a, m = int(states[0].shape[1]), int(states[0].shape[2])
    V = _vectors(W)
    blas = _lockstep(cell, GX.dtype, n_a, m)
    if blas is not None:
        halves = ((0, n_a // 2), (n_a // 2, n_a))
        gates = W.Wa.reshape(cell.blocks, n_a, n_a)
        flags = lockstep.new_flags()

        def args(thread: int) -> tuple:
            u0, u1 = halves[thread]
            rows = cell.blocks * (u1 - u0)
            Wp = np.ascontiguousarray(gates[:, u0:u1, :]).reshape(rows, n_a)
            R = np.empty((rows, m), dtype=GX.dtype)
            saved = () if S is None else (S,)
            return (blas, thread, flags, Wp, GX, *V, *states, *saved, R, u0, u1)

        if lockstep.run(kernels.forward_lockstep, args(0), args(1), flags):
            return True
    R = np.empty((cell.blocks * n_a, m), dtype=GX.dtype)
    if step_flops(cell, n_a, m) <= tuning.SMALL_LOOP_FLOPS:
        WaT = np.ascontiguousarray(W.Wa.T)
        kernels.forward_loop(WaT, GX, *V, *states, *(() if S is None else (S,)), R)
        return True
    Wa, blas = W.Wa, _step_gemm(W.Wa, m)
    for t in range(int(GX.shape[0])):
        cblas.matmul_into(blas, Wa, states[0][t], R)
        kernels.forward_step(
            GX[t], R, *V, *(s[t] for s in states), *(s[t + 1] for s in states), *_saved(S, t)
        )
    return True


def _generated_chunk_lockstep(
    blas: Any, cell: Any, W: Any, trace: Any, dA: Any, start: int, g: tuple, store: Any
) -> tuple[tuple, tuple, Any] | None:
    """A generated cell's whole backward chunk on two threads in lockstep (see
    :func:`_lstm_chunk_lockstep`); the vectors' gradients summed from their rows after."""
    kernels = _generated(cell, dA.dtype)
    g0, XE = g[0], trace.x
    n_a = int(g0.shape[0])
    work = _chunk_work(W, trace, dA, g0, store, cell.blocks * n_a)
    Wa, Wx, up, P, A, X, ones, dWa, dWx, db, dX, flags = work
    S = () if trace.saved is None else (trace.saved,)
    dp = store.gx_buffer

    def args(thread: int, u0: int, u1: int) -> tuple:
        return (
            blas, thread, flags, Wa, Wx, dA, start, *S, *_vectors(W), *trace.states, XE, g0,
            *g[1:], up, dp, P, A, X, ones, dWa, dWx, db, dX, u0, u1,
        )  # fmt: skip

    run = kernels.chunk_lockstep
    if not lockstep.run(run, args(0, 0, n_a // 2), args(1, n_a // 2, n_a), flags):
        return None
    _, _, dV = vector_rows(np, cell, *store.columns(int(dA.shape[0])))
    return g, (dWa, dWx, db, None, dV), dX


def _generated_backward_steps(
    cell: Any, W: Any, trace: Any, dA: Any, start: int, g: tuple, store: Any
) -> tuple | None:
    """A chunk's backward steps of a generated cell in a lean loop (see
    :meth:`JitOps.backward_steps`)."""
    kernels = _generated(cell, dA.dtype)
    if kernels is None or not isinstance(store, BufferColumns):
        return None
    states, S, m = trace.states, trace.saved, int(dA.shape[2])
    WaT, g0, gx = W.Wa.T, g[0], store.gx_buffer
    rows, V = cell.blocks * int(g0.shape[0]), _vectors(W)
    up, blas = np.empty_like(g0), _step_gemm(W.Wa, m)
    for j in reversed(range(int(dA.shape[0]))):
        t, j0 = start + j, j * m
        np.add(g0, dA[j], out=up)
        kernels.backward_step(
            up, *g[1:], *_saved(S, t), *V, *(s[t] for s in states), *(s[t + 1] for s in states),
            gx, j0,
        )  # fmt: skip
        cblas.matmul_into(blas, WaT, gx[:rows, j0 : j0 + m], g0)
        if kernels.direct_hidden:
            g0 += up
    return (g0, *g[1:])


def _blas_loop(name: str, W: Any, GX: Any, store: Any, R: Any) -> None:
    """The forward steps from Python with BLAS's GEMM: per step one GEMM into a reused buffer
    (:func:`_step_gemm`) and one compiled kernel, views taken once."""
    Wa, H, T = W.Wa, store.states[0], int(GX.shape[0])
    blas = _step_gemm(Wa, int(H.shape[2]))
    if name == "lstm":
        C = store.states[1]
        for t in range(T):
            cblas.matmul_into(blas, Wa, H[t], R)
            lstm_forward_step(GX[t], R, C[t], C[t + 1], H[t + 1])
    elif name == "gru":
        S, bhn = store.saved, W.bh
        for t in range(T):
            cblas.matmul_into(blas, Wa, H[t], R)
            gru_forward_step(GX[t], R, bhn, H[t], S[t], H[t + 1])
    else:
        kernel = rnn_forward_step if name == "rnn" else relu_forward_step
        for t in range(T):
            h = H[t + 1]
            cblas.matmul_into(blas, Wa, H[t], h)
            kernel(h, GX[t])


def _step_gemm(Wa: Any, m: int) -> Any:
    """The GEMM handle for a loop's steps ``Wa @ a`` (``a``: (n_a, m)), or None for NumPy's
    matmul: :func:`xrnn.backends.cblas.step_gemm`'s policy."""
    return cblas.step_gemm(Wa.dtype, 2.0 * int(Wa.shape[0]) * int(Wa.shape[1]) * m)


def _recurrent(Wa: Any, a: Any, out: Any = None) -> Any:
    """One step's recurrent GEMM ``Wa @ a`` (into ``out`` where given)."""
    if out is None:
        out = np.empty((int(Wa.shape[0]), int(a.shape[1])), dtype=Wa.dtype)
    return cblas.matmul_into(_step_gemm(Wa, int(a.shape[1])), Wa, a, out)


def _register_rnn(name: str, forward_kernel: Any, backward_kernel: Any) -> None:
    @JitOps.register(name, "forward")
    def forward(ops, cell, W, gx, state, slot):
        h = slot.states[0]
        _recurrent(W.Wa, state[0], h)
        forward_kernel(h, gx)
        return (h,), None

    @JitOps.register(name, "backward")
    def backward(ops, cell, saved, prev, new, up, slot):
        backward_kernel(up[0], new[0], slot.gx, slot.j0)
        return slot[0], slot[0], (None,)


_register_rnn("rnn", rnn_forward_step, rnn_backward_step)
_register_rnn("rnn_relu", relu_forward_step, relu_backward_step)


def _lstm_forward(ops, cell, W, gx, state, slot):
    h, c = slot.states  # slot.saved is GX[t]; the caller's c⟨0⟩ may be a strided view
    lstm_forward_step(slot.saved, _recurrent(W.Wa, state[0]), np.ascontiguousarray(state[1]), c, h)
    return (h, c), slot.saved


_lstm_forward.saved_in_gx = True  # type: ignore[attr-defined]
JitOps.register("lstm", "forward")(_lstm_forward)


@JitOps.register("lstm", "backward")
def _lstm_backward(ops, cell, saved, prev, new, up, slot):
    dc = up[1]  # the engine's temporary: dc⟨t⟩ in, dc⟨t-1⟩ out
    lstm_backward_step(up[0], dc, saved, new[1], prev[1], slot.gx, slot.j0)
    return slot[0], slot[0], (None, dc)


@JitOps.register("gru", "forward")
def _gru_forward(ops, cell, W, gx, state, slot):
    h = slot.states[0]
    gru_forward_step(gx, _recurrent(W.Wa, state[0]), W.bh, state[0], slot.saved, h)
    return (h,), slot.saved


@JitOps.register("gru", "backward")
def _gru_backward(ops, cell, saved, prev, new, up, slot):
    da = up[0]  # the engine's temporary: its direct part da∗Γz overwrites it
    gru_backward_step(da, saved, prev[0], slot.gx, slot.ra, slot.j0)
    return slot[0], slot[1], (da,)


# the compiled loops by cell: (WaT, GX, W, store, R) -> None, filling the store's buffers
_LOOPS = {
    "rnn": lambda WaT, GX, W, store, R: rnn_forward_loop(WaT, GX, store.states[0], R),
    "rnn_relu": lambda WaT, GX, W, store, R: relu_forward_loop(WaT, GX, store.states[0], R),
    "lstm": lambda WaT, GX, W, store, R: lstm_forward_loop(
        WaT, GX, store.states[0], store.states[1], R
    ),
    "gru": lambda WaT, GX, W, store, R: gru_forward_loop(
        WaT, GX, W.bh, store.states[0], store.saved, R
    ),
}
