"""Every registered cell through its public functions, one calling convention for the tests.

``forward(name, x, state0, p, **kw)`` returns ``(states, y, caches)`` with ``states`` a tuple
of every state component's outputs (``(a,)`` or ``(a, c)``), whatever the cell's own return
tuple; ``backward(name, da, caches)`` returns the gradient dict. The built-in cells go through
the exercise's per-family functions (``lstm_forward``, ...), every other cell through the
generic API (``xrnn.forward``, ...), which ``test_api.py`` checks equal to the former.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import xrnn

NAMES = sorted(xrnn.CELLS)


def spec(name: str) -> Any:
    return xrnn.CELLS[name]


def _variant(name: str) -> dict:
    """Keywords selecting a cell variant in its family's functions (the ReLU RNN)."""
    return {"nonlinearity": "relu"} if name == "rnn_relu" else {}


# the cells with the exercise's per-family functions
FAMILIES = ("rnn", "rnn_relu", "lstm", "gru")


def forward(name: str, x: Any, state0: tuple, p: dict, **kw: Any) -> tuple:
    if name not in FAMILIES:
        initial = {f"{s}0": v for s, v in zip(spec(name).states[1:], state0[1:], strict=False)}
        out = xrnn.forward(name, x, state0[0], p, **initial, **kw)
        return (out[0], *out[2:-1]), out[1], out[-1]
    if name == "lstm":
        c0 = state0[1] if len(state0) > 1 else None
        a, y, c, caches = xrnn.lstm_forward(x, state0[0], p, c0=c0, **kw)
        return (a, c), y, caches
    family = spec(name).family
    a, y, caches = getattr(xrnn, f"{family}_forward")(x, state0[0], p, **_variant(name), **kw)
    return (a,), y, caches


def backward(name: str, da: Any, caches: Any, **kw: Any) -> dict:
    if name not in FAMILIES:
        return xrnn.backward(da, caches, cell=name, **kw)
    return getattr(xrnn, f"{spec(name).family}_backward")(da, caches, **_variant(name), **kw)


def cell_forward(name: str, xt: Any, prev: tuple, p: dict, **kw: Any) -> tuple:
    if name not in FAMILIES:
        further = {f"{s}_prev": v for s, v in zip(spec(name).states[1:], prev[1:], strict=True)}
        out = xrnn.cell_forward(name, xt, prev[0], p, **further, **kw)
        return out[: len(prev)], out[-1]
    fn = getattr(xrnn, f"{spec(name).family}_cell_forward")
    out = fn(xt, *prev, p, **_variant(name), **kw)
    return out[: len(prev)], out[-1]


def cell_backward(name: str, dnew: tuple, cache: tuple, **kw: Any) -> dict:
    if name not in FAMILIES:
        further = {f"d{s}_next": v for s, v in zip(spec(name).states[1:], dnew[1:], strict=True)}
        return xrnn.cell_backward(name, dnew[0], cache, **further, **kw)
    fn = getattr(xrnn, f"{spec(name).family}_cell_backward")
    return fn(*dnew, cache, **_variant(name), **kw)


def random_parameters(name: str, rng: np.random.Generator, n_x: int, n_a: int) -> dict:
    """Normal draws of every key of the cell (scaled so gates are neither saturated nor flat)."""
    return {
        k: rng.normal(size=shape) / np.sqrt(shape[1] if k[0] == "W" else 1)
        for k, (shape, _) in spec(name).shapes(n_x, n_a).items()
    }


def initialize(name: str, *args: Any, **kw: Any) -> dict:
    """``initialize_<family>``: the cell's seeded parameters (a variant shares its family's)."""
    if name not in FAMILIES:
        return xrnn.initialize(name, *args, **kw)
    return getattr(xrnn, f"initialize_{spec(name).family}")(*args, **kw)
