"""The sequence functions on JAX arrays: the time loop as ``lax.scan``, the gradient as
``jax.custom_vjp`` whose backward is xrnn's.

The forward is one ``lax.scan`` over the steps: per step the input side ``W_x x⟨t⟩ + b``, the
recurrent GEMM ``W_a a⟨t-1⟩`` and the cell's pointwise math. The backward is one reverse
``lax.scan`` of the cell's pointwise backward, ``W_aᵀ dra`` and ``W_xᵀ dgx``, with the weight
gradients summed step by step in its carry (on XLA's CPU backend, GEMMs over all (step,
batch) columns at once cost more than they save: the steps' blocks must be transposed first).
A jaxpr (and its compile time) therefore holds one step's equations whatever ``T_x`` is, and
``jax.jit``, ``jax.grad`` and ``jax.vmap`` apply as to any JAX function. The whole call is
``jax.jit``-compiled once per cell, shape and dtype.

Finiteness: on concrete arrays the checks run as on every backend (one host read); on values
being traced (inside ``jax.jit``, ``jax.grad``, ``jax.vmap``) there is nothing to read, and
they are skipped — wrap the call in ``jax.experimental.checkify`` for checks inside compiled
code.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from xrnn.cells.base import Cell
from xrnn.core.layout import public, reorder, reversal, step_masks

__all__ = ["sequence", "sequence_backward"]


def _loop_forward(
    cell: Cell, W: Any, xe: Any, state0: tuple, live: Any, keep: bool = True
) -> tuple[tuple, Any]:
    """Every step's states (T+1, n_a, m) each (block 0 the initial state) and saved blocks
    (T, rows, m) — None where the cell saves nothing or without ``keep`` —, for ``xe``
    (n_x, m, T) in loop order."""
    # the input side step by step: XLA runs a step's two GEMMs faster than one GEMM over all
    # steps into the time-major layout (a transposing contraction)
    X = jnp.transpose(xe, (2, 0, 1))  # (T, n_x, m)

    def step(state: tuple, inputs: tuple) -> tuple[tuple, tuple]:
        xt, lv = inputs
        gx = jnp.matmul(W.Wx, xt) + W.b
        ra = jnp.matmul(W.Wa, state[0])
        new, saved = cell.forward_pointwise(jnp, gx, ra, state, W)
        if lv is not None:  # a finished sequence keeps its state
            new = tuple(jnp.where(lv > 0, n, s) for n, s in zip(new, state, strict=True))
        return tuple(new), (tuple(new), saved if keep else None)

    _, (news, saved) = lax.scan(step, tuple(state0), (X, live))
    states = tuple(
        jnp.concatenate([s0[None, :, :], s], axis=0) for s0, s in zip(state0, news, strict=True)
    )
    return states, saved


def _loop_backward(
    cell: Cell,
    W: Any,
    states: tuple,
    saved: Any,
    xe: Any,
    live: Any,
    dsteps: tuple,
    dfinal: tuple,
) -> tuple[Any, tuple, tuple]:
    """Backpropagation through the scan: ``dsteps`` the upstream gradient of each state
    component's every step, (T, n_a, m) loop order (masked where the outputs are), ``dfinal``
    each final state's. Returns ``dx`` (n_x, m, T) in loop order, each initial state's
    gradient, and ``(dWa, dWx, db, dV)``."""
    T = xe.shape[2]
    prev = tuple(s[:T] for s in states)
    new = tuple(s[1:] for s in states)

    rows = W.Wa.shape[0]
    X = jnp.transpose(xe, (2, 0, 1))  # (T, n_x, m)

    def total(d: Any) -> Any:
        return jnp.sum(d, axis=1, keepdims=True)

    def step(carry: tuple, inputs: tuple) -> tuple[tuple, Any]:
        g, (dWa, dWx, db, dV) = carry
        prev_t, new_t, saved_t, d_t, lv, xt = inputs
        up = tuple(gi + di for gi, di in zip(g, d_t, strict=True))
        up_live = up if lv is None else tuple(u * lv for u in up)
        dgx, dra, direct = cell.backward_pointwise(jnp, saved_t, prev_t, new_t, up_live, W)
        if dV is not None:  # the vectors' rows follow the gates'
            dV = dV + total(dgx[rows:, :])
            dgx, dra = dgx[:rows, :], dra[:rows, :]
        da_prev = jnp.matmul(W.Wa.T, dra)
        if direct[0] is not None:
            da_prev = da_prev + direct[0]
        carried = (da_prev, *(jnp.zeros_like(g[0]) if d is None else d for d in direct[1:]))
        if lv is not None:  # a finished sequence passes its gradient straight through
            carried = tuple(c + u * (1 - lv) for c, u in zip(carried, up, strict=True))
        # the weight gradients summed step by step, as autodiff of a scan does: one GEMM
        # over all (step, batch) columns needs the steps' blocks transposed first
        weights = (
            dWa + jnp.matmul(dra, prev_t[0].T),
            dWx + jnp.matmul(dgx, xt.T),
            db + total(dgx),
            dV,
        )
        return (carried, weights), jnp.matmul(W.Wx.T, dgx)

    dt = W.Wa.dtype
    n_a = W.Wa.shape[1]
    zeros = (
        jnp.zeros(W.Wa.shape, dt),
        jnp.zeros(W.Wx.shape, dt),
        jnp.zeros((rows, 1), dt),
        jnp.zeros((len(cell.vectors) * n_a, 1), dt) if cell.vectors else None,
    )
    (g0, weights), DX = lax.scan(
        step, (tuple(dfinal), zeros), (prev, new, saved, dsteps, live, X), reverse=True
    )
    return jnp.transpose(DX, (1, 2, 0)), g0, weights


def _prepare(cell: Cell, x: Any, weights: tuple, n_a: int, lengths: Any, reverse: bool) -> tuple:
    """The stacked weights, the per-sequence reversal (``reverse``) and the live steps."""
    _, m, T = x.shape
    W = cell.stack(jnp, dict(zip(cell.keys, weights, strict=True)), n_a)
    order = reversal(jnp, lengths, m, T) if reverse else None
    return W, order, None if lengths is None else step_masks(jnp, lengths, T, x.dtype)[1]


def _outputs(states: tuple, live: Any, order: Any) -> tuple:
    steps = [s[1:] for s in states]
    if live is not None:
        steps = [s * live for s in steps]
    return tuple(reorder(jnp, public(jnp, s), order) for s in steps)


def _forward(
    cell: Cell,
    reverse: bool,
    x: Any,
    initial: tuple,
    weights: tuple,
    lengths: Any,
    keep: bool = True,
) -> tuple:
    """``(outputs, finals, states, saved)`` (see :func:`sequence`); without ``keep`` no
    saved blocks (None)."""
    n_a = int(initial[0].shape[0])
    W, order, live = _prepare(cell, x, weights, n_a, lengths, reverse)
    xe = reorder(jnp, x, order)
    states, saved = _loop_forward(cell, W, xe, initial, live, keep)
    T = x.shape[2]
    return _outputs(states, live, order), tuple(s[T] for s in states), states, saved


def _residuals(cell, reverse, x, initial, weights, lengths):  # noqa: ANN001, ANN202
    primal = _forward(cell, reverse, x, initial, weights, lengths)
    return primal, (x, weights, lengths, primal[2], primal[3])


def _backward(cell, reverse, residuals, d_outs, d_finals, d_states):  # noqa: ANN001, ANN202
    x, weights, lengths, states, saved = residuals
    n_a = int(states[0].shape[1])
    W, order, live = _prepare(cell, x, weights, n_a, lengths, reverse)
    xe = reorder(jnp, x, order)
    dx, dinitial, dweights = _gradients(
        cell, W, xe, live, order, states, saved, d_outs, d_finals, d_states
    )
    return dx, dinitial, dweights, None


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _sequence(cell: Cell, reverse: bool, x: Any, initial: tuple, weights: tuple, lengths: Any):
    """The outputs, finals and the traces (``xrnn.backward``'s caches)."""
    return _forward(cell, reverse, x, initial, weights, lengths)


def _sequence_bwd(cell, reverse, residuals, cotangents):  # noqa: ANN001, ANN202
    # the traces' cotangents too: the caches' final states are views of them
    d_outs, d_finals, d_states, _ = cotangents
    return _backward(cell, reverse, residuals, d_outs, d_finals, d_states)


_sequence.defvjp(_residuals, _sequence_bwd)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _outputs_only(
    cell: Cell, reverse: bool, x: Any, initial: tuple, weights: tuple, lengths: Any
) -> tuple:
    """The outputs and finals alone (``return_caches=False``): no saved blocks unless
    differentiated."""
    return _forward(cell, reverse, x, initial, weights, lengths, keep=False)[:2]


def _outputs_only_fwd(cell, reverse, x, initial, weights, lengths):  # noqa: ANN001, ANN202
    primal, residuals = _residuals(cell, reverse, x, initial, weights, lengths)
    return primal[:2], residuals


def _outputs_only_bwd(cell, reverse, residuals, cotangents):  # noqa: ANN001, ANN202
    d_outs, d_finals = cotangents
    return _backward(cell, reverse, residuals, d_outs, d_finals, None)


_outputs_only.defvjp(_outputs_only_fwd, _outputs_only_bwd)


def _gradients(
    cell: Cell,
    W: Any,
    xe: Any,
    live: Any,
    order: Any,
    states: tuple,
    saved: Any,
    d_outs: tuple,
    d_finals: tuple,
    d_states: tuple | None = None,
) -> tuple[Any, tuple, tuple]:
    """``dx`` (n_x, m, T), the initial states' and the weights' gradients (``cell.keys``
    order) from the upstream gradients of every state component's outputs (n_a, m, T, public
    order), final values (n_a, m) and, optionally, loop-order traces (T+1, n_a, m)."""
    dsteps = []
    for i, d in enumerate(d_outs):
        d = jnp.transpose(reorder(jnp, d, order), (2, 0, 1))  # time-major, loop order
        d = d if live is None else d * live
        dsteps.append(d if d_states is None else d + d_states[i][1:])
    dx, dinitial, (dWa, dWx, db, dV) = _loop_backward(
        cell, W, states, saved, xe, live, tuple(dsteps), tuple(d_finals)
    )
    if d_states is not None:
        dinitial = tuple(g + d[0] for g, d in zip(dinitial, d_states, strict=True))
    n_a = int(states[0].shape[1])
    grads = cell.unstack(dWa, dWx, db, n_a)
    if dV is not None:
        grads.update(cell.unstack_vectors(dV, n_a))
    dweights = tuple(grads["d" + k] for k in cell.keys)
    return reorder(jnp, dx, order), tuple(dinitial), dweights


@partial(jax.jit, static_argnums=(0, 1, 6))
def sequence(
    cell: Cell,
    reverse: bool,
    x: Any,
    initial: tuple,
    weights: tuple,
    lengths: Any,
    caches: bool = True,
) -> tuple:
    """``(outputs, finals, states, saved)``: each state component's outputs (n_a, m, T) in
    public order (zero past each length), its final value (n_a, m), its loop-order trace
    (T+1, n_a, m), and the saved blocks (T, rows, m) or None; without ``caches``, ``states``
    and ``saved`` are None and the forward keeps no saved blocks. Differentiable (xrnn's
    backward through ``jax.custom_vjp``) in ``x``, ``initial`` and ``weights`` (``cell.keys``
    order)."""
    if caches:
        return _sequence(cell, reverse, x, initial, weights, lengths)
    return (*_outputs_only(cell, reverse, x, initial, weights, lengths), None, None)


@partial(jax.jit, static_argnums=(0, 1))
def sequence_backward(
    cell: Cell,
    flip: bool,
    xe: Any,
    parameters: dict,
    live: Any,
    order: Any,
    states: tuple,
    saved: Any,
    d_outs: tuple,
    d_finals: tuple,
) -> tuple[Any, tuple, tuple]:
    """The gradients from a trace (``xrnn.backward`` on JAX arrays): ``dx``, the initial
    states' and the weights' (``cell.keys`` order). ``order``: the trace's reversal array, or
    None (``flip``: a plain flip)."""
    W = cell.stack(jnp, parameters, int(states[0].shape[1]))
    order = "flip" if flip else order
    return _gradients(cell, W, xe, live, order, states, saved, d_outs, d_finals)
