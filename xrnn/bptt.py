"""The backward time loop shared by the RNN and the LSTM, in chunks of time steps.

Steps run from ``T-1`` down to ``0``; each fills its column block ``[:, j*m:(j+1)*m]`` of the
pre-activation gradients ``dP`` (k n_a, K*m) of a chunk of K steps. After every chunk the
weight, bias and input gradients of the chunk are reduced with large 2-D GEMMs over its
K*m (step, batch) columns:

    dW_a += dP A_prevᵀ,   dW_x += dP Xᵀ,   db += Σ_columns dP,   dX = W_xᵀ dP

where ``A_prev`` and ``X`` are the chunk's hidden states and inputs laid out the same way.
Chunking keeps the GEMMs large (``CHUNK_COLUMNS`` columns) while ``dP`` stays a small buffer
reused across chunks, instead of a ``(k n_a, T*m)`` array allocated afresh on every call: the
fresh pages of such an array cost more than the GEMMs on a CPU, and memory on a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xrnn.layout import columns, public, time_major

__all__ = ["CHUNK_COLUMNS", "backward_in_chunks"]

# Step × batch columns of dP per chunk: large enough for GEMMs near peak, small enough that the
# chunk's temporaries are recycled by the allocator rather than page-faulted in afresh on every
# call. Config A forward+backward (benchmarks/phases.py): 512 → 29.7 ms, 1024 → 30.3 ms,
# 2048 → 34.1 ms, 4096 → 37.3 ms; config B was fastest at 1024 in an earlier sweep.
CHUNK_COLUMNS = 1024


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
        column block ``j`` of ``dP`` from the upstream gradient ``da_t`` (n_a, m), carrying
        its own recurrent state between calls.
    da : array of shape (n_a, m, T)
        Upstream gradient of every hidden state (read, never written).
    x : array of shape (n_x, m, T)
    H : array of shape (T+1, n_a, m)
        Hidden states; block ``t`` is ``a⟨t-1⟩`` for step ``t``.
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
    n_a = int(H.shape[1])
    k = max(1, min(T, CHUNK_COLUMNS // m))
    like = {"dtype": ctx.dtype, "device": ctx.device}
    dP = xp.empty((rows, k * m), **like)
    dWa = xp.zeros((rows, n_a), **like)
    dWx = xp.zeros((rows, n_x), **like)
    db = xp.zeros((rows, 1), **like)
    dX = xp.empty((n_x, T * m), **like)
    WxT = Wx.T
    end = T
    while end > 0:
        start = max(0, end - k)
        dAc = time_major(xp, da[:, :, start:end])  # contiguous (n_a, m) block per step
        for t in reversed(range(start, end)):
            step(dP, t - start, dAc[t - start, :, :], t)
        dPc = dP[:, : (end - start) * m]
        H_prev = columns(xp, public(xp, H[start:end, :, :]))  # (n_a, K*m), like dPc
        dWa = dWa + xp.matmul(dPc, H_prev.T)
        dWx = dWx + xp.matmul(dPc, columns(xp, x[:, :, start:end]).T)
        db = db + xp.sum(dPc, axis=1, keepdims=True)
        dX[:, start * m : end * m] = xp.matmul(WxT, dPc)
        end = start
    dx = xp.permute_dims(xp.reshape(dX, (n_x, T, m)), (0, 2, 1))
    return dWa, dWx, db, dx
