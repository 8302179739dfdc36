"""The backward time loop shared by the RNN and the LSTM, in chunks of time steps.

Steps run from ``T-1`` down to ``0``; each fills its block of the pre-activation gradients
``dP``. After every chunk of steps, the weight, bias and input gradients of that chunk are
reduced with large GEMMs:

    dW_a += dP_c a_prevᵀ,   dW_x += dP_c x_cᵀ,   db += Σ dP_c,   dx_c = W_xᵀ dP_c.

Chunking keeps the GEMMs large (``CHUNK_COLUMNS`` columns) while ``dP`` stays a small buffer
reused across chunks instead of a ``(k n_a, T m)`` array allocated afresh on every call: the
fresh pages of such an array cost more than the GEMMs on a CPU, and memory on a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xrnn.layout import time_blocked, unblocked

__all__ = ["CHUNK_COLUMNS", "backward_in_chunks"]

# Columns (time steps × batch) of dP per chunk: enough for GEMMs near peak speed.
CHUNK_COLUMNS = 2048


def backward_in_chunks(
    xp: Any,
    ctx: Any,
    step: Callable[[Any, int, Any, int], None],
    da: Any,
    x: Any,
    H: Any,
    Wx: Any,
    rows: int,
) -> tuple[Any, Any, Any, Any]:
    """Run ``step(dP, j, da_t, t)`` for every time step, last first, and reduce the gradients.

    Parameters
    ----------
    step : callable
        ``step(dP, j, da_t, t)`` computes time step ``t``'s pre-activation gradient into
        column block ``j`` of ``dP`` from the upstream gradient ``da_t`` (n_a, m), carrying its
        own recurrent state between calls.
    da : array of shape (n_a, m, T)
        Upstream gradient of every hidden state (read, never written).
    x : array of shape (n_x, m, T)
    H : array of shape (n_a, (T+1)*m)
        Hidden states, time-blocked; block ``t`` is ``a⟨t-1⟩`` for step ``t``.
    Wx : array of shape (rows, n_x)
        The input columns of the (stacked) weight matrix.
    rows : int
        Rows of ``dP``: ``n_a`` for the RNN, ``4 n_a`` for the LSTM.

    Returns
    -------
    dWa : array of shape (rows, n_a)
    dWx : array of shape (rows, n_x)
    db : array of shape (rows, 1)
    dx : array of shape (n_x, m, T)
    """
    n_x, m, T = (int(s) for s in x.shape)
    n_a = int(H.shape[0])
    k = max(1, min(T, CHUNK_COLUMNS // m))
    like = {"dtype": ctx.dtype, "device": ctx.device}
    dP = xp.empty((rows, k * m), **like)
    dWa = xp.zeros((rows, n_a), **like)
    dWx = xp.zeros((rows, n_x), **like)
    db = xp.zeros((rows, 1), **like)
    dxm = xp.empty((n_x, T * m), **like)
    WxT = Wx.T
    end = T
    while end > 0:
        start = max(0, end - k)
        # one contiguous copy per chunk: da[:, :, t] itself has no unit-stride axis
        dAc = time_blocked(xp, da[:, :, start:end])
        for t in reversed(range(start, end)):
            j = t - start
            step(dP, j, dAc[:, j * m : (j + 1) * m], t)
        dPc = dP[:, : (end - start) * m]
        cols = slice(start * m, end * m)
        dWa = dWa + xp.matmul(dPc, H[:, cols].T)
        dWx = dWx + xp.matmul(dPc, time_blocked(xp, x[:, :, start:end]).T)
        db = db + xp.sum(dPc, axis=1, keepdims=True)
        dxm[:, cols] = xp.matmul(WxT, dPc)
        end = start
    return dWa, dWx, db, unblocked(xp, dxm, T, m)
