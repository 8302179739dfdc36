"""Compiled step kernels and loops for any cell with traced elementwise math (numba).

A cell that defines its pointwise math as elementwise functions (:mod:`xrnn.cells.elementwise`)
exposes them as traced programs (``cell.programs``). This module writes one cell-agnostic
template per kernel around those programs and compiles it with numba, per cell and dtype:

- ``forward_step(GX, R, [V], P…, N…, [S])``: the input side plus the recurrent GEMM ``R``
  give each gate's pre-activation; the new state components ``N`` and saved values ``S``
  are written, element by element, batch axis innermost;
- ``backward_step(U…, [S], [V], P…, N…, DP, j0)``: from the upstream gradients ``U`` (each
  overwritten by the direct gradient of its previous state component), the gate and vector
  rows of the chunk's gradient buffer ``DP`` at columns ``j0 + j``;
- ``forward_loop(WaT, GX, [V], H…, [S], R)``: every forward step of a call in one compiled
  call for small steps (the hand-written GEMM of :func:`xrnn.backends.jit.small_gemm`).

The math is the compiled scalar namespace of :mod:`xrnn.backends.jit` (its fast float32
``tanh``); every constant is a global of the kernel's float type, so float32 kernels compute in
float32. Kernels compile on a cell's first call per dtype in a process (numba cannot cache
generated source on disk).
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

import numba
import numpy as np

from xrnn.backends import jit

__all__ = ["Compiled", "compiled"]

_kernel = numba.njit(nogil=True, error_model="numpy")


class Compiled(NamedTuple):
    """A cell's compiled kernels for one dtype (see the module notes)."""

    forward_step: Any
    backward_step: Any
    forward_loop: Any
    direct_hidden: bool  # the backward writes a direct gradient of a⟨t-1⟩ into U0


_CACHE: dict[tuple, Compiled] = {}
_LOCK = threading.Lock()


def compiled(cell: Any, dtype: Any) -> Compiled | None:
    """``cell``'s kernels for ``dtype`` (compiled on first use), or None for a cell without
    traced elementwise math."""
    programs = getattr(cell, "programs", None)
    if programs is None:
        return None
    key = (type(cell), cell.name, np.dtype(dtype).name)
    found = _CACHE.get(key)
    if found is None:
        with _LOCK:
            found = _CACHE.get(key)
            if found is None:
                found = _CACHE[key] = _build(cell, programs, np.dtype(dtype))
    return found


def _build(cell: Any, programs: tuple, dtype: np.dtype) -> Compiled:
    forward, backward = programs
    k, v, s, n = cell.blocks, len(cell.vectors), cell.saved_blocks, len(cell.states)
    consts: dict[str, Any] = {}

    def const(value: float) -> str:
        name = f"K{len(consts)}" if repr(value) not in consts else consts[repr(value)][0]
        consts.setdefault(repr(value), (name, dtype.type(value)))
        return name

    P = [f"P{i}" for i in range(n)]
    N = [f"N{i}" for i in range(n)]
    U = [f"U{i}" for i in range(n)]
    S = ["S"] if s else []
    V = ["V"] if v else []
    sig = cell.signature

    # forward step: each input the math uses read once, per row (vectors) or per element
    f_sig = sig["forward"]
    reads = {z: f"(GX[{q} * n + i, j] + R[{q} * n + i, j])" for q, z in enumerate(f_sig[:k])}
    reads.update({name: f"P{q}[i, j]" for q, name in enumerate(f_sig[k + v :])})
    rows = {name: f"V[{q} * n + i, 0]" for q, name in enumerate(f_sig[k : k + v])}
    stores = (
        [f"N{q}[i, j]" for q in range(n)],
        [f"S[{q} * n + i, j]" for q in range(len(forward.outputs[1]))],
    )
    body = forward.python({name: name for name in f_sig}, stores, const)
    lines = [
        f"def forward_step(GX, R, {_args(V, P, N, S)}):",
        "    n, m = N0.shape",
        "    for i in range(n):",
        *(f"        {x} = {e}" for x, e in rows.items() if x in forward.used),
        "        for j in range(m):",
        *(f"            {x} = {e}" for x, e in reads.items() if x in forward.used),
        *(f"            {line}" for line in body),
    ]

    # backward step: the upstream gradients are read before the direct gradients overwrite
    # them; gate and vector rows go to the chunk buffer's columns c0 + j (unsigned: no
    # wraparound check in the loop)
    b_sig = sig["backward"]
    reads = {name: f"S[{q} * n + i, j]" for q, name in enumerate(b_sig[:s])}
    rows = {name: f"V[{q} * n + i, 0]" for q, name in enumerate(b_sig[s : s + v])}
    rest = b_sig[s + v :]
    for q in range(n):
        reads[rest[q]] = f"P{q}[i, j]"
        reads[rest[n + q]] = f"N{q}[i, j]"
        reads[rest[2 * n + q]] = f"U{q}[i, j]"
    direct_hidden = backward.outputs[2][0] is not None
    results = (
        [f"DP[{q} * n + i, c0 + np.uintp(j)]" for q in range(k)],
        [f"DP[{k + q} * n + i, c0 + np.uintp(j)]" for q in range(v)],
        ["U0[i, j]" if direct_hidden else None, *(f"U{q}[i, j]" for q in range(1, n))],
    )
    body = backward.python({name: name for name in b_sig}, results, const)
    lines += [
        "",
        f"def backward_step({_args(U, S, V, P, N)}, DP, j0):",
        "    n, m = N0.shape",
        "    c0 = np.uintp(j0)",
        "    for i in range(n):",
        *(f"        {x} = {e}" for x, e in rows.items() if x in backward.used),
        "        for j in range(m):",
        *(f"            {x} = {e}" for x, e in reads.items() if x in backward.used),
        *(f"            {line}" for line in body),
    ]

    # every forward step of a call (small steps)
    H = [f"H{i}" for i in range(n)]
    step_args = _args(V, [f"{h}[t]" for h in H], [f"{h}[t + 1]" for h in H], [x + "[t]" for x in S])
    lines += [
        "",
        f"def forward_loop(WaT, GX, {_args(V, H, S)}, R):",
        "    for t in range(GX.shape[0]):",
        "        small_gemm(WaT, H0[t], R)",
        f"        forward_step(GX[t], R, {step_args})",
    ]
    source = "\n".join(lines) + "\n"
    scope: dict[str, Any] = {
        "np": np,
        "sigmoid": jit.sigmoid,
        "tanh": jit.tanh,
        "exp": np.exp,
        "log": np.log,
        "sqrt": np.sqrt,
        "maximum": np.maximum,
        "minimum": np.minimum,
        "small_gemm": jit.small_gemm,
        **dict(consts.values()),
    }
    code = compile(source, f"<xrnn kernels of the {cell.name!r} cell, {dtype.name}>", "exec")
    exec(code, scope)
    forward_step = _kernel(scope["forward_step"])
    scope["forward_step"] = forward_step
    return Compiled(
        forward_step, _kernel(scope["backward_step"]), _kernel(scope["forward_loop"]), direct_hidden
    )


def _args(*groups: list) -> str:
    return ", ".join(a for group in groups for a in group)
