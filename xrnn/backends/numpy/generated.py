"""Compiled step kernels and loops for any cell with traced elementwise math (numba).

A cell that defines its pointwise math as elementwise functions (:mod:`xrnn.cells.elementwise`)
exposes them as traced programs (``cell.programs``). This module writes one cell-agnostic
template per kernel around those programs and compiles it with numba, per cell and dtype:

- ``forward_step(GX, R, [V], P…, N…, [S])``: the input side plus the recurrent GEMM ``R``
  give each gate's pre-activation; the new state components ``N`` and saved values ``S``
  are written, element by element (the saved values over ``GX`` itself, and no ``S``, where
  they fit: :func:`saves_in_gx`);
- ``backward_step(U…, [S], [V], P…, N…, DP, [DR], j0)``: from the upstream gradients ``U``
  (each overwritten by the direct gradient of its previous state component), the gate and
  vector rows of the chunk's gradient buffer ``DP`` at columns ``j0 + j`` — and, for a cell
  with a gate whose two sides reach the math apart (``cell.apart``), every gate's recurrent
  side's gradient in ``DR``, the buffer the GEMMs ``Waᵀ dra`` and ``dWa`` read;
- ``forward_loop(WaT, GX, [V], H…, [S], R)`` and ``backward_loop``: every forward step of a
  call, and every backward step of a chunk, in one compiled call for small steps (the
  hand-written GEMM of :func:`xrnn.backends.numpy.jit.small_gemm`); ``chunk_small``: a
  backward chunk's steps and then its weight and input GEMMs, in one compiled call;
- ``forward_lockstep`` and ``chunk_lockstep``: one thread's half of the forward loop and of a
  backward chunk (steps, then the chunk's weight GEMMs) on two threads in lockstep
  (:mod:`xrnn.backends.numpy.lockstep`) for mid-sized steps, over ``forward_units`` and
  ``backward_units``, the step kernels restricted to a range of hidden units;
- ``forward_fused``: one thread's half of a whole forward, input side included, for a cell
  whose every pre-activation is its gate's ``Wx x⟨t⟩ + Wa a⟨t-1⟩ + b``: one GEMM per gate
  over ``[a⟨t-1⟩; x⟨t⟩]`` with the gate's weight as the parameters hold it, no input side
  computed beforehand.

The math is the compiled scalar namespace of :mod:`xrnn.backends.numpy.jit` (its fast float32
``tanh``); every constant is a global of the kernel's float type, so float32 kernels compute in
float32. The generated source is a module written to a cache directory (:func:`cache_dir`) and
imported from there, so numba caches the compiled kernels on disk beside it: a cell's kernels
compile on its first call per dtype, and later processes load them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import re
import sys
import tempfile
import threading
import types
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = ["Compiled", "compiled"]


class Compiled(NamedTuple):
    """A cell's compiled kernels for one dtype (see the module notes)."""

    forward_step: Any
    backward_step: Any
    forward_loop: Any
    backward_loop: Any
    direct_hidden: bool  # the backward writes a direct gradient of a⟨t-1⟩ into U0
    saved_in_gx: bool  # the forward writes the saved values over GX (:func:`saves_in_gx`)
    forward_lockstep: Any
    chunk_lockstep: Any
    forward_fused: Any
    chunk_small: Any


_CACHE: dict[tuple, Compiled] = {}
_LOCK = threading.Lock()


def compiled(cell: Any, dtype: Any) -> Compiled | None:
    """``cell``'s kernels for ``dtype`` (compiled on first use), or None for a cell without
    traced elementwise math."""
    programs = getattr(cell, "programs", None)
    if programs is None:
        return None
    found = _CACHE.get((type(cell), cell.name, dtype))  # dtype as the caller has it: no
    if found is not None:  # normalising on every call of a loop
        return found
    key = (type(cell), cell.name, np.dtype(dtype).name)
    found = _CACHE.get(key)
    if found is None:
        with _LOCK:
            found = _CACHE.get(key)
            if found is None:
                found = _CACHE[key] = _build(cell, programs, np.dtype(dtype))
    _CACHE[(type(cell), cell.name, dtype)] = found
    return found


def _build(cell: Any, programs: tuple, dtype: np.dtype) -> Compiled:
    forward, backward = programs
    k, v, s, n = cell.blocks, len(cell.vectors), cell.saved_blocks, len(cell.states)
    kz, split = len(cell.pre_activations), cell.split_recurrent
    consts: dict[str, Any] = {}

    def const(value: float) -> str:
        name = f"K{len(consts)}" if repr(value) not in consts else consts[repr(value)][0]
        consts.setdefault(repr(value), (name, dtype.type(value)))
        return name

    P = [f"P{i}" for i in range(n)]
    N = [f"N{i}" for i in range(n)]
    U = [f"U{i}" for i in range(n)]
    in_gx = saves_in_gx(cell)
    S = ["S"] if s and not in_gx else []
    V = ["V"] if v else []
    sig = cell.signature

    # forward step: every array C-contiguous and read flat, element k of block q at q·n·m + k
    # (unsigned offsets computed once: no wraparound check, the loop vectorises whatever m);
    # each input the math uses read once, per row (vectors) or per element; the saved values
    # written over the input side where they fit (read first, element by element)
    f_sig = sig["forward"]
    sides = {
        "both": "(gx[o{0} + k] + r[ro{0} + kr])",
        "input": "gx[o{0} + k]",
        "recurrent": "r[ro{0} + kr]",
    }
    reads = {
        z: sides[side].format(q)
        for z, (q, side) in zip(f_sig[:kz], cell.pre_activations, strict=True)
    }
    reads.update({name: f"P{q}f[k]" for q, name in enumerate(f_sig[kz + v :])})
    rows = {name: f"V[{q} * n + i, 0]" for q, name in enumerate(f_sig[kz : kz + v])}
    saved_to = "gx" if in_gx else "Sf"
    stores = (
        [f"N{q}f[k]" for q in range(n)],
        [f"{saved_to}[o{q} + k]" for q in range(len(forward.outputs[1]))],
    )
    body = forward.python({name: name for name in f_sig}, stores, const)
    head = [
        "    n, m = N0.shape",
        "    size = n * m",
        "    gx, r = GX.reshape(GX.size), R.reshape(R.size)",
        # the previous states the math reads (an unused one costs a reshape a step)
        *(
            f"    {p}f = {p}.reshape(size)"
            for p, x in zip(P, f_sig[kz + v :], strict=True)
            if x in forward.used
        ),
        *(f"    {a}f = {a}.reshape(size)" for a in N),
        *(["    Sf = S.reshape(S.size)"] if S else []),
        *(f"    o{q} = np.uintp({q} * size)" for q in range(max(k, s))),
        *(f"    ro{q} = np.uintp({q} * (hi - lo) * m)" for q in range(k)),
    ]
    inner = [*(f"{x} = {e}" for x, e in reads.items() if x in forward.used), *body]
    if v:  # a vector's value per row, over that row's m elements
        loop = [
            "    for i in range(lo, hi):",
            *(f"        {x} = {e}" for x, e in rows.items() if x in forward.used),
            "        base, rbase = np.uintp(i * m), np.uintp((i - lo) * m)",
            "        for j in range(m):",
            "            k, kr = base + np.uintp(j), rbase + np.uintp(j)",
            *(f"            {line}" for line in inner),
        ]
    else:
        loop = [
            "    base = np.uintp(lo * m)",
            "    for e in range((hi - lo) * m):",
            "        kr = np.uintp(e)",
            "        k = base + kr",
            *(f"        {line}" for line in inner),
        ]
    # the units lo ≤ i < hi only (names no cell input takes: its upstream gradients are
    # u0, u1, ...), whose gate rows of Wa a⟨t-1⟩ are all R holds (the two threads of the
    # lockstep loop each run half); forward_step runs them all
    lines = [
        f"def forward_units(GX, R, {_args(V, P, N, S)}, lo, hi):",
        *head,
        *loop,
        "",
        f"def forward_step(GX, R, {_args(V, P, N, S)}):",
        f"    forward_units(GX, R, {_args(V, P, N, S)}, ZERO, N0.shape[0])",
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

    def gradient(q: int, side: str) -> str | tuple[str, str]:
        # the input side's gradient into DP, the recurrent side's into DR (the GEMMs
        # Waᵀ dra and dWa read it) where a gate takes its two sides apart, else DP alone
        into = {"input": "DP", "recurrent": "DR"}
        if side != "both":
            return f"{into[side]}[{q} * n + i, c0 + np.uintp(j)]"
        gx, ra = (f"{b}[{q} * n + i, c0 + np.uintp(j)]" for b in ("DP", "DR"))
        return (gx, ra) if split else gx

    results = (
        [gradient(q, side) for q, side in cell.pre_activations],
        [f"DP[{k + q} * n + i, c0 + np.uintp(j)]" for q in range(v)],
        ["U0[i, j]" if direct_hidden else None, *(f"U{q}[i, j]" for q in range(1, n))],
    )
    body = backward.python({name: name for name in b_sig}, results, const)
    SB = ["S"] if s else []
    DR = ["DR"] if split else []
    lines += [
        "",
        f"def backward_units({_args(U, SB, V, P, N, ['DP'], DR)}, j0, lo, hi):",
        "    n, m = N0.shape",
        "    c0 = np.uintp(j0)",
        # one column (m = 1): the loop over the units is the innermost, which vectorises
        "    if m == 1:",
        "        j = 0",
        "        for i in range(lo, hi):",
        *(f"            {x} = {e}" for x, e in rows.items() if x in backward.used),
        *(f"            {x} = {e}" for x, e in reads.items() if x in backward.used),
        *(f"            {line}" for line in body),
        "        return",
        "    for i in range(lo, hi):",
        *(f"        {x} = {e}" for x, e in rows.items() if x in backward.used),
        "        for j in range(m):",
        *(f"            {x} = {e}" for x, e in reads.items() if x in backward.used),
        *(f"            {line}" for line in body),
        "",
        f"def backward_step({_args(U, SB, V, P, N, ['DP'], DR)}, j0):",
        f"    backward_units({_args(U, SB, V, P, N, ['DP'], DR)}, j0, ZERO, N0.shape[0])",
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

    # every backward step of a chunk (small steps): the carried gradient g0 = Waᵀ dz by the
    # hand-written GEMM over the step's columns of the chunk buffer
    G = [f"G{q}" for q in range(1, n)]  # the carried gradients of the further states
    dr = ["dr"] if split else []  # the recurrent side's gradient columns, where apart
    recurrent = "dr" if split else "dp"
    unit_args = _args(
        ["up"], G, [x + "[t]" for x in SB], V, [f"{h}[t]" for h in H], [f"{h}[t + 1]" for h in H]
    )
    lines += [
        "",
        f"def backward_loop(Wa, dA, start, {_args(SB, V, H)}, g0, {''.join(g + ', ' for g in G)}"
        f"up, {_args(['dp'], dr)}):",
        "    k, n_a, m = dA.shape[0], g0.shape[0], g0.shape[1]",
        f"    rows = {k} * n_a",
        "    for s in range(k):",
        "        j = k - 1 - s",
        "        t = start + j",
        "        for i in range(n_a):",
        "            for c in range(m):",
        "                up[i, c] = g0[i, c] + dA[j, i, c]",
        f"        backward_units({unit_args}, {_args(['dp'], dr)}, j * m, ZERO, n_a)",
        f"        small_gemm(Wa, {recurrent}[:rows, j * m : (j + 1) * m], g0)",
        *(
            [
                "        for i in range(n_a):",
                "            for c in range(m):",
                "                g0[i, c] += up[i, c]",
            ]
            if direct_hidden
            else []
        ),
    ]

    # the loops on two threads in lockstep (xrnn.backends.numpy.lockstep): half 0 is the hidden
    # units [0, n_a/2), half 1 the rest, each with its rows of the gates' weights (WA, at
    # element o of each) and its scratch R; thread ``thread`` does its half of each step (its
    # rows of the recurrent GEMM, its units' pointwise math) and the threads meet once per
    # step, where each needs rows the other wrote. The caller (thread 0) takes the helper's
    # half over where the helper is late (xrnn.backends.numpy.lockstep.wait_or_take)
    half_args = f"GX, {_args(V, H, S)}"
    lines += [
        "",
        f"def forward_half(blas, WA, o, R, lo, hi, t, {half_args}):",
        "    n_a, m = H0.shape[1], H0.shape[2]",
        "    h, ld = R.shape[0] // len(WA), WA[0].shape[1]",
        "    for q in range(len(WA)):",
        "        gemm(blas, False, False, h, m, n_a, WA[q], o, ld, H0, t * n_a * m, m, 0.0, R,",
        "             q * h * m, m)",
        f"    forward_units(GX[t], R, {step_args}, lo, hi)",
        "",
        f"def forward_lockstep(blas, thread, flags, WA0, o0, R0, WA1, o1, R1, {half_args},",
        "                     budget):",
        "    n_a = H0.shape[1]",
        "    mid = n_a // 2",
        "    first, last = thread, thread  # the halves this thread does",
        "    for t in range(GX.shape[0]):",
        "        if thread == 1 and not enter(flags, t):  # the caller has the rest",
        "            publish(flags, 1, DONE)",
        "            return",
        "        if first == 0:",
        f"            forward_half(blas, WA0, o0, R0, ZERO, mid, t, {half_args})",
        "        if last == 1:",
        f"            forward_half(blas, WA1, o1, R1, mid, n_a, t, {half_args})",
        "        if first == last:  # in lockstep: the meeting",
        "            publish(flags, thread, t + 1)",
        "            met = 1",
        "            if thread == 0:",
        "                met = wait_or_take(flags, t + 1, budget)",
        "            elif not wait_for(flags, 0, t + 1):",
        "                met = 0",
        "            if met == 0:",
        "                return",
        "            if met == 3:  # the helper never started: its half of this step here",
        f"                forward_half(blas, WA1, o1, R1, mid, n_a, t, {half_args})",
        "            if met >= 2:",
        "                last = 1",
    ]
    # the whole forward, input side included, on two threads in lockstep, for cells whose
    # every pre-activation adds the input and recurrent sides of its gate: each gate's rows
    # of W [a⟨t-1⟩; x⟨t⟩] by one GEMM from Z[t % 2] = [a⟨t-1⟩; x⟨t⟩] (each thread writes its
    # units' rows of the next step's Z and half of its x rows; the other thread's GEMM of
    # that buffer two steps back is done once it has published the step in between), the
    # bias over the step's gx rows (the saved values may go over them), then the units; GX
    # and S are one step's scratch, which the threads share (each writes its units' rows)
    fused_step = _args(V, [f"{h}[t]" for h in H], [f"{h}[t + 1]" for h in H], S)
    lines += [
        "",
        f"def forward_fused(blas, thread, flags, WZ, b, X, Z, GX, {_args(V, H, S)}, R, t0, t1,",
        "                  lo, hi, x0, x1):",
        "    n_a, m, T = H0.shape[1], H0.shape[2], X.shape[2]",
        "    h, K = hi - lo, Z.shape[1]",
        "    for t in range(t0, t1):",
        "        if not wait_for(flags, 1 - thread, t - t0):",
        "            return",
        "        z0 = (t % 2) * K * m",
        f"        for q in range({k}):",
        "            gemm(blas, False, False, h, m, K, WZ[q], lo * K, K, Z, z0, m, 0.0, R,",
        "                 q * h * m, m)",
        f"        for q in range({k}):",
        "            for i in range(q * n_a + lo, q * n_a + hi):",
        "                bias = b[i, 0]",
        "                for j in range(m):",
        "                    GX[i, j] = bias",
        "        nz = (t + 1) % 2",
        "        if t + 1 < T:",
        "            for i in range(x0, x1):",
        "                for j in range(m):",
        "                    Z[nz, n_a + i, j] = X[i, j, t + 1]",
        f"        forward_units(GX, R, {fused_step}, lo, hi)",
        "        if t + 1 < T:",
        "            for i in range(lo, hi):",
        "                for j in range(m):",
        "                    Z[nz, i, j] = H0[t + 1, i, j]",
        "        publish(flags, thread, t + 1 - t0)",
    ]
    direct = " + up[i, c]" if direct_hidden else ""
    chunk_args = f"{_args(SB, V, H)}, XE, g0, {''.join(g + ', ' for g in G)}up, {_args(['dp'], dr)}"
    # a backward chunk on two threads in lockstep, in halves: half 0 is the hidden units
    # [0, n_a/2), half 1 the rest; thread ``thread`` does its half of each step (its units'
    # math and its rows' share of Waᵀ dz, summed with the other's after the meeting), of the
    # staging of the chunk's columns and of the chunk's GEMMs. The caller (thread 0) takes the
    # helper's halves over where the helper is late (xrnn.backends.numpy.lockstep.
    # wait_or_take): the same work in the same order, so the same results
    lines += [
        "",
        "def chunk_stage(part, parts, start, H0, XE, A, X):",
        "    n_a, m, n_x = H0.shape[1], H0.shape[2], X.shape[0]",
        "    k = A.shape[1] // m",
        "    a0, a1 = part * n_a // parts, (part + 1) * n_a // parts",
        "    x0, x1 = part * n_x // parts, (part + 1) * n_x // parts",
        "    for j in range(k):",
        "        for i in range(a0, a1):",
        "            for c in range(m):",
        "                A[i, j * m + c] = H0[start + j, i, c]",
        "    for i in range(x0, x1):",
        "        for c in range(m):",
        "            for j in range(k):",
        "                X[i, j * m + c] = XE[i, c, start + j]",
        "",
        f"def chunk_half(half, s, blas, Wa, dA, start, {chunk_args}, P):",
        "    k, n_a, m, pitch = dA.shape[0], g0.shape[0], g0.shape[1], dp.shape[1]",
        "    lo, hi = (0, n_a // 2) if half == 0 else (n_a // 2, n_a)",
        "    j = k - 1 - s",
        "    t = start + j",
        "    for i in range(lo, hi):",
        "        for c in range(m):",
        "            up[i, c] = g0[i, c] + dA[j, i, c]",
        f"    backward_units({unit_args}, {_args(['dp'], dr)}, j * m, lo, hi)",
        "    mine = P[half, s % 2]",
        f"    for b in range({k}):",
        "        row = b * n_a + lo",
        f"        gemm(blas, True, False, n_a, m, hi - lo, Wa, row * n_a, n_a, {recurrent},",
        "             row * pitch + j * m, pitch, 0.0 if b == 0 else 1.0, mine, 0, m)",
        "",
        "def chunk_combine(half, s, g0, up, P):",
        "    n_a, m = g0.shape",
        "    lo, hi = (0, n_a // 2) if half == 0 else (n_a // 2, n_a)",
        "    first, second = P[0, s % 2], P[1, s % 2]",
        "    for i in range(lo, hi):",
        "        for c in range(m):",
        f"            g0[i, c] = first[i, c] + second[i, c]{direct}",
        "",
        f"def chunk_gemms(part, parts, blas, Wx, {_args(['dp'], dr)}, A, X, ones, dWa, dWx, db,",
        "                dX):",
        "    n_a, n_x, K, pitch = A.shape[0], X.shape[0], A.shape[1], dp.shape[1]",
        f"    rows = {k} * n_a",
        "    r0, r1 = part * rows // parts, (part + 1) * rows // parts",
        "    c0, c1 = part * K // parts, (part + 1) * K // parts",
        "    h = r1 - r0",
        f"    gemm(blas, False, True, h, n_a, K, {recurrent}, r0 * pitch, pitch, A, 0, K, 0.0,",
        "         dWa, r0 * n_a, n_a)",
        "    gemm(blas, False, True, h, n_x, K, dp, r0 * pitch, pitch, X, 0, K, 0.0, dWx,",
        "         r0 * n_x, n_x)",
        "    gemm(blas, False, False, h, 1, K, dp, r0 * pitch, pitch, ones, 0, 1, 0.0, db, r0, 1)",
        "    if c1 > c0:",
        "        gemm(blas, True, False, n_x, c1 - c0, rows, Wx, 0, n_x, dp, c0, pitch, 0.0, dX,",
        "             c0, K)",
        "",
        f"def chunk_lockstep(blas, thread, flags, Wa, Wx, dA, start, {chunk_args}, P, A, X, ones,",
        "                   dWa, dWx, db, dX, budget):",
        "    k = dA.shape[0]",
        "    first, last = thread, thread  # the halves this thread does",
        "    for s in range(k + 1):  # step k: the chunk's GEMMs",
        "        if thread == 1 and not enter(flags, s):  # the caller has the rest",
        "            publish(flags, 1, DONE)",
        "            return",
        "        if s == 0:",
        "            chunk_stage(thread, TWO, start, H0, XE, A, X)",
        "        if s == k:",
        "            break",
        "        for half in range(first, last + 1):",
        f"            chunk_half(half, s, blas, Wa, dA, start, {chunk_args}, P)",
        "        met = 1",
        "        if first == last:  # in lockstep: the meeting",
        "            publish(flags, thread, s + 1)",
        "            if thread == 0:",
        "                met = wait_or_take(flags, s + 1, budget)",
        "            elif not wait_for(flags, 0, s + 1):",
        "                met = 0",
        "            if met == 0:",
        "                return",
        "            if met == 3:  # the helper never started: its share so far here",
        "                chunk_stage(ONE, TWO, start, H0, XE, A, X)",
        f"                chunk_half(ONE, s, blas, Wa, dA, start, {chunk_args}, P)",
        "                last = 1",
        "        for half in range(first, last + 1):",
        "            chunk_combine(half, s, g0, up, P)",
        "        if met == 2:  # the helper combines its half of this step, then stops",
        "            if not wait_for(flags, 1, DONE):",
        "                return",
        "            last = 1",
        "    for half in range(first, last + 1):",
        f"        chunk_gemms(half, TWO, blas, Wx, {_args(['dp'], dr)}, A, X, ones, dWa, dWx, db,",
        "                    dX)",
    ]
    # a whole backward chunk of small steps in one compiled call on one thread: its steps
    # (backward_loop), then the chunk's weight and input GEMMs over all its rows and columns
    lines += [
        "",
        f"def chunk_small(blas, Wa, Wx, dA, start, {chunk_args}, A, X, ones, dWa, dWx, db, dX):",
        f"    backward_loop(Wa, dA, start, {_args(SB, V, H)}, g0, {''.join(g + ', ' for g in G)}"
        f"up, {_args(['dp'], dr)})",
        "    chunk_stage(ZERO, ONE, start, H0, XE, A, X)",
        f"    chunk_gemms(ZERO, ONE, blas, Wx, {_args(['dp'], dr)}, A, X, ones, dWa, dWx, db, dX)",
    ]
    head = [
        f"# The compiled kernels of xrnn's {cell.name!r} cell for {dtype.name}, generated from",
        "# its elementwise math by xrnn.backends.numpy.generated (rewritten whenever they differ).",
        # numba's cache notices a change of this file, not of the helpers compiled into it
        f"# The helpers' sources: {_helpers_digest()}",
        "import numba",
        "import numpy as np",
        "",
        "from xrnn.backends.numpy.cblas import gemm",
        "from xrnn.backends.numpy.jit import sigmoid, small_gemm, tanh",
        "from xrnn.backends.numpy.lockstep import DONE, enter, publish, wait_for, wait_or_take",
        "",
        "exp, log, sqrt, maximum, minimum = np.exp, np.log, np.sqrt, np.maximum, np.minimum",
        "# index arguments at call sites: a literal one would compile its callee once more",
        "ZERO, ONE, TWO = np.intp(0), np.intp(1), np.intp(2)",
        *(f"{name} = np.{dtype.name}({float(value)!r})" for name, value in consts.values()),
        "",
    ]

    def decorated(line: str) -> str:
        if not line.startswith("def "):
            return line
        name = line[4 : line.index("(")]
        return ("@inlined\n" if name in _INLINED else "@kernel\n") + line

    body = "\n".join(decorated(x) for x in lines) + "\n"

    def source(cached: bool) -> str:
        options = f"cache={cached}, nogil=True, error_model='numpy'"
        kernel = f"kernel = numba.njit({options})"
        inlined = f"inlined = numba.njit({options}, inline='always')"
        return "\n".join([*head, kernel, inlined, ""]) + body

    module = _load(source, f"{cell.name}_{dtype.name}")
    return Compiled(
        module.forward_step,
        module.backward_step,
        module.forward_loop,
        module.backward_loop,
        direct_hidden,
        in_gx,
        module.forward_lockstep,
        module.chunk_lockstep,
        module.forward_fused,
        module.chunk_small,
    )


# Kernels inlined into their callers, whose compilation optimises them once with the caller
# (as a function of its own, each was a module compiled and linked apart, adding to a cell's
# first call): the one-line wrappers and the lockstep loops' small stages
_INLINED = frozenset(
    {
        "forward_step",
        "backward_step",
        "chunk_stage",
        "chunk_combine",
        "chunk_gemms",
        "forward_units",
        "backward_units",
    }
)


@cache
def _helpers_digest() -> str:
    """A digest of the modules whose functions the generated kernels compile in (the scalar
    math, the GEMMs, the lockstep primitives): part of each generated module's text, so that a
    change to one of them writes the module anew and numba compiles it again rather than
    loading the kernels it cached against the old helpers."""
    digest = hashlib.sha256()
    for name in ("jit.py", "cblas.py", "lockstep.py"):
        try:
            digest.update(Path(__file__).with_name(name).read_bytes())
        except OSError:  # installed without its sources: the release tells versions apart
            digest.update(_release().encode())
    return digest.hexdigest()[:16]


def _release() -> str:
    try:
        return importlib.metadata.version("xrnn-kernels")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def saves_in_gx(cell: Any) -> bool:
    """Whether ``cell``'s forward kernels write its saved values over the input side ``GX``
    (no second buffer of the steps' size, as the LSTM's hand-written kernels do): where they
    need no more rows than the gates have."""
    return 0 < cell.saved_blocks <= cell.blocks


def cache_dir() -> Path | None:
    """Where generated kernel modules are written, so that numba caches their compiled code
    beside them (``__pycache__``) and a later process loads it: ``XRNN_KERNEL_CACHE``, else
    ``xrnn/`` under numba's cache directory (``NUMBA_CACHE_DIR``) or the user's cache
    directory (``$XDG_CACHE_HOME`` or ``~/.cache``). None (compile in memory, every process)
    where none can be made."""
    chosen = os.environ.get("XRNN_KERNEL_CACHE") or None
    if chosen is None:
        base = os.environ.get("NUMBA_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME")
        if base is None:
            base = os.path.join(os.path.expanduser("~"), ".cache")
        chosen = os.path.join(base, "xrnn")
    path = Path(chosen, "kernels")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return path if os.access(path, os.W_OK) else None


def _load(source: Callable[[bool], str], name: str) -> Any:
    """The generated module ``source(cached)``: imported from a file of the kernel cache,
    written there first unless it holds exactly this source (numba's cache needs a source
    file); else executed in memory, uncached."""
    stem = "xrnn_kernels_" + re.sub(r"\W", "_", name)
    text = source(True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    where = cache_dir()
    if where is not None:
        path = where / f"{stem}_{digest}.py"
        try:
            if not path.is_file() or path.read_text("utf-8") != text:
                handle, scratch = tempfile.mkstemp(dir=where, suffix=".tmp")
                with os.fdopen(handle, "w", encoding="utf-8") as out:
                    out.write(text)
                os.replace(scratch, path)
            spec = importlib.util.spec_from_file_location(f"{stem}_{digest}", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            # under its own name in sys.modules: numba's cached code refers to its module by name
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            return module
        except OSError:
            pass  # a read-only or vanished cache: compile in memory instead
    module = types.ModuleType(stem)
    exec(compile(source(False), f"<{stem}>", "exec"), module.__dict__)
    return module


def _args(*groups: list) -> str:
    return ", ".join(a for group in groups for a in group)
