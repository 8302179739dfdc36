"""Numerically stable activations, written against the array API."""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

__all__ = ["sigmoid", "softmax"]


def sigmoid(z: Any, /) -> Any:
    """Logistic sigmoid ``1 / (1 + exp(-z))``, without overflow.

    Parameters
    ----------
    z : array of any shape, real floating dtype

    Returns
    -------
    array of the same shape, dtype and device as ``z``

    Notes
    -----
    Computed as ``0.5 * tanh(z / 2) + 0.5``: one transcendental, no branch, no ``exp`` that
    could overflow at ``z = -1000``, and exactly 0 or 1 only where the float saturates.
    """
    xp = array_namespace(z)
    return 0.5 * xp.tanh(0.5 * z) + 0.5


def softmax(z: Any, /) -> Any:
    """Softmax over axis 0 (the class axis of ``(n_y, m)`` and ``(n_y, m, T_x)`` logits).

    Parameters
    ----------
    z : array of shape (n_y, ...), real floating dtype

    Returns
    -------
    array of the same shape, dtype and device; every slice along axis 0 sums to 1

    Notes
    -----
    The column maximum is subtracted before ``exp``, so logits of ±1000 neither overflow nor
    produce NaN.
    """
    xp = array_namespace(z)
    e = xp.exp(z - xp.max(z, axis=0, keepdims=True))
    return e / xp.sum(e, axis=0, keepdims=True)
