"""Conversions between the public ``(n, m, T_x)`` layout and the time-blocked ``(n, T_x*m)``
layout of the kernels' buffers, and the output layer applied to all steps at once."""

from __future__ import annotations

from typing import Any

from xrnn.activations import softmax

__all__ = ["output_layer_forward", "time_blocked", "unblocked"]


def time_blocked(xp: Any, x: Any) -> Any:
    """``(n, m, T)`` → ``(n, T*m)``: column block ``t`` is time step ``t`` (one copy at most)."""
    n, m, T = (int(s) for s in x.shape)
    return xp.reshape(xp.permute_dims(x, (0, 2, 1)), (n, T * m))


def unblocked(xp: Any, M: Any, T: int, m: int) -> Any:
    """``(n, T*m)`` → ``(n, m, T)``, a view where the library allows one."""
    return xp.permute_dims(xp.reshape(M, (int(M.shape[0]), T, m)), (0, 2, 1))


def output_layer_forward(xp: Any, W: Any, b: Any, Hm: Any, T: int, m: int) -> Any:
    """``softmax(W a⟨t⟩ + b)`` for every step as one GEMM; ``Hm`` is (n_a, T*m) → (n_y, m, T)."""
    return unblocked(xp, softmax(xp.matmul(W, Hm) + b), T, m)
