"""Conversions between the public ``(n, m, T_x)`` layout and the kernels' time-major
``(T_x, n, m)`` layout, and the output layer applied to all steps at once."""

from __future__ import annotations

from typing import Any

__all__ = ["columns", "output_layer_forward", "public", "time_major"]


def time_major(xp: Any, x: Any) -> Any:
    """``(n, m, T)`` → a C-contiguous ``(T, n, m)`` copy: block ``t`` is time step ``t``.

    The reshape through 2-D forces the copy to be contiguous (a plain copy of the permuted
    view could keep its strides), so each step's ``(n, m)`` block is contiguous.
    """
    n, m, T = (int(s) for s in x.shape)
    return xp.reshape(xp.reshape(xp.permute_dims(x, (2, 0, 1)), (T * n, m)), (T, n, m))


def columns(xp: Any, x: Any) -> Any:
    """``(n, m, T)`` → ``(n, T*m)``: column block ``t`` is time step ``t`` (one copy at most)."""
    n, m, T = (int(s) for s in x.shape)
    return xp.reshape(xp.permute_dims(x, (0, 2, 1)), (n, T * m))


def public(xp: Any, M: Any) -> Any:
    """``(T, n, m)`` → ``(n, m, T)``, a view."""
    return xp.permute_dims(M, (1, 2, 0))


def output_layer_forward(xp: Any, W: Any, b: Any, H: Any) -> Any:
    """``softmax(W a⟨t⟩ + b)`` for every step; ``H`` is (T, n_a, m), the result (n_y, m, T).

    The softmax runs over the class axis with its maximum subtracted, as :func:`xrnn.softmax`.
    """
    z = xp.matmul(W, H)
    z += b
    z = xp.exp(z - xp.max(z, axis=1, keepdims=True))
    z /= xp.sum(z, axis=1, keepdims=True)
    return public(xp, z)
