"""Conversions between the public ``(n, m, T_x)`` layout and the kernels' time-major
``(T_x, n, m)`` layout, per-sequence time reversal, and the output layer over all steps."""

from __future__ import annotations

from typing import Any

import array_api_compat

__all__ = [
    "columns",
    "input_side",
    "output_layer_forward",
    "public",
    "reorder",
    "reversal",
    "time_major",
]


def time_major(xp: Any, x: Any) -> Any:
    """``(n, m, T)`` → a C-contiguous ``(T, n, m)`` copy: block ``t`` is time step ``t``.

    The reshape through 2-D forces the copy to be contiguous (a plain copy of the permuted
    view could keep its strides), so each step's ``(n, m)`` block is contiguous.
    """
    n, m, T = map(int, x.shape)
    return xp.reshape(xp.reshape(xp.permute_dims(x, (2, 0, 1)), (T * n, m)), (T, n, m))


def input_side(xp: Any, Wx: Any, x: Any) -> Any:
    """``Wx x⟨t⟩`` for every step: ``Wx`` (rows, n) by ``x`` (n, m, T) → (T, rows, m).

    A batched GEMM over the time-major copy of ``x``, which calls BLAS once per step; with
    ``m = 1`` one GEMM, ``xᵀ Wxᵀ`` (T, rows), whose memory is (T, rows, 1)'s (charlm's
    forward: 3 µs instead of 12).
    """
    n, m, T = map(int, x.shape)
    if m == 1:
        xT = xp.matrix_transpose(xp.reshape(x, (n, T)))
        return xp.reshape(xp.matmul(xT, xp.matrix_transpose(Wx)), (T, int(Wx.shape[0]), 1))
    return xp.matmul(Wx, time_major(xp, x))


def columns(xp: Any, x: Any) -> Any:
    """``(n, m, T)`` → ``(n, T*m)``: column block ``t`` is time step ``t`` (one copy at most)."""
    n, m, T = map(int, x.shape)
    return xp.reshape(xp.permute_dims(x, (0, 2, 1)), (n, T * m))


def public(xp: Any, M: Any) -> Any:
    """``(T, n, m)`` → ``(n, m, T)``, a view."""
    return xp.permute_dims(M, (1, 2, 0))


def reversal(xp: Any, lengths: Any, m: int, T: int) -> Any:
    """The gather that reverses each sequence over its own length: for the flattened
    ``(m·T)`` axis of an ``(n, m, T)`` array, position ``(j, t)`` reads ``(j, L_j − 1 − t)``
    for ``t < L_j`` and stays put past the length. It is its own inverse.

    ``lengths`` None reverses every sequence over all ``T`` steps (returned as the string
    ``"flip"``: a plain flip, no gather).
    """
    if lengths is None:
        return "flip"
    like = {"dtype": lengths.dtype, "device": array_api_compat.device(lengths)}
    t = xp.arange(T, **like)[None, :]
    L = lengths[:, None]
    within = xp.where(t < L, L - 1 - t, t)
    base = xp.arange(m, **like)[:, None] * T
    return xp.reshape(base + within, (m * T,))


def step_masks(xp: Any, lengths: Any, T: int, dtype: Any, device: Any = None) -> tuple[Any, Any]:
    """``(done, live)`` for ``lengths`` (m,): ``done`` (T, 1, m) boolean, true where step ``t``
    of sequence ``j`` does not run (``t ≥ L_j``), and ``live``, its complement as 0/1 of
    ``dtype``; on ``device`` (None: the library's default, as inside ``jax.jit``)."""
    m = int(lengths.shape[0])
    on = {} if device is None else {"device": device}
    steps = xp.arange(T, dtype=lengths.dtype, **on)
    done = xp.reshape(steps, (T, 1, 1)) >= xp.reshape(lengths, (1, 1, m))
    return done, xp.astype(xp.logical_not(done), dtype)


def reorder(xp: Any, a: Any, order: Any) -> Any:
    """``a`` (n, m, T) with each sequence's steps reordered by :func:`reversal`'s ``order``
    (``None``: unchanged)."""
    if order is None:
        return a
    if isinstance(order, str):
        return xp.flip(a, axis=2)
    n, m, T = map(int, a.shape)
    return xp.reshape(xp.take(xp.reshape(a, (n, m * T)), order, axis=1), (n, m, T))


def output_layer_forward(xp: Any, W: Any, b: Any, H: Any) -> Any:
    """``softmax(W a⟨t⟩ + b)`` for every step; ``H`` is (T, n_a, m), the result (n_y, m, T).

    The softmax runs over the class axis with its maximum subtracted, as :func:`xrnn.softmax`.
    """
    z = xp.matmul(W, H) + b
    z = xp.exp(z - xp.max(z, axis=1, keepdims=True))
    return public(xp, z / xp.sum(z, axis=1, keepdims=True))


def output_layer_backward(xp: Any, W: Any, a: Any, dz: Any) -> tuple[Any, Any, Any]:
    """Backward of the output layer ``z⟨t⟩ = W a⟨t⟩ + b`` over every step at once.

    ``dz`` (n_y, m, T) is ∂L/∂z (for softmax + cross-entropy, ``ŷ − y``), ``a`` (n_a, m, T)
    the hidden states, ``W`` (n_y, n_a). Returns ``dW (n_y, n_a)``, ``db (n_y, 1)`` and
    ``da = Wᵀ dz`` (n_a, m, T), the gradient flowing into the recurrent layer.
    """
    n_y, m, T = map(int, dz.shape)
    n_a = int(a.shape[0])
    dz2 = xp.reshape(dz, (n_y, m * T))
    dW = xp.matmul(dz2, xp.reshape(a, (n_a, m * T)).T)
    db = xp.sum(dz2, axis=1, keepdims=True)
    return dW, db, xp.reshape(xp.matmul(W.T, dz2), (n_a, m, T))
