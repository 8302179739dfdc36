"""Gradient clipping and parameter updates on dicts of arrays (any array-API backend)."""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import array_namespace

__all__ = ["SGD", "Adam", "clip", "clip_by_global_norm"]


def clip(gradients: dict[str, Any], max_value: float) -> dict[str, Any]:
    """Clip every gradient elementwise to ``[-max_value, max_value]`` (the exercise's ``clip``).

    Returns a new dict; the input arrays are not modified.
    """
    if not max_value > 0:
        raise ValueError(f"max_value must be positive, got {max_value!r}")
    return {k: array_namespace(g).clip(g, -max_value, max_value) for k, g in gradients.items()}


def clip_by_global_norm(gradients: dict[str, Any], max_norm: float) -> dict[str, Any]:
    """Scale all gradients together so their joint L2 norm is at most ``max_norm``.

    Keeps the gradient's direction (unlike elementwise clipping). The scale stays an array on
    the gradients' device: no host synchronisation.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be positive, got {max_norm!r}")
    first = next(iter(gradients.values()))
    xp = array_namespace(first)
    sq = sum(xp.sum(g * g) for g in gradients.values())
    scale = xp.clip(max_norm / (xp.sqrt(sq) + 1e-12), max=1.0)
    return {k: g * scale for k, g in gradients.items()}


class SGD:
    """Plain gradient descent ``θ ← θ − lr ∇θ``."""

    def __init__(self, lr: float) -> None:
        self.lr = lr

    def step(self, params: dict[str, Any], grads: dict[str, Any]) -> dict[str, Any]:
        return {k: p - self.lr * grads["d" + k] for k, p in params.items()}


class Adam:
    """Adam (Kingma & Ba, 2015) with bias correction; state kept per parameter key."""

    def __init__(self, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.t = 0
        self.m: dict[str, Any] = {}
        self.v: dict[str, Any] = {}

    def step(self, params: dict[str, Any], grads: dict[str, Any]) -> dict[str, Any]:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        lr_t = self.lr * math.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        out = {}
        for k, p in params.items():
            g = grads["d" + k]
            xp = array_namespace(g)
            self.m[k] = b1 * self.m[k] + (1 - b1) * g if k in self.m else (1 - b1) * g
            self.v[k] = b2 * self.v[k] + (1 - b2) * g * g if k in self.v else (1 - b2) * g * g
            out[k] = p - lr_t * self.m[k] / (xp.sqrt(self.v[k]) + self.eps)
        return out
