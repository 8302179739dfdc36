"""The LSTM: cell and sequence, forward and backward through time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xrnn.activations import softmax
from xrnn.backends import get_ops, resolve
from xrnn.bptt import backward_in_chunks
from xrnn.caches import LSTMStepCaches, open_caches
from xrnn.inputs import check_shape, sequence_shape, shape_of
from xrnn.layout import output_layer_forward, public, time_major
from xrnn.ops import lstm_pointwise_backward, lstm_pointwise_forward
from xrnn.params import (
    LSTM_GATES,
    LSTM_KEYS,
    LSTM_OUTPUT,
    parameter_items,
    validate_lstm_parameters,
)

__all__ = ["lstm_backward", "lstm_cell_backward", "lstm_cell_forward", "lstm_forward"]

_ALL_KEYS = LSTM_KEYS + LSTM_OUTPUT


def _stacked_split(xp: Any, parameters: Mapping[str, Any], n_a: int) -> tuple[Any, Any, Any]:
    """The stacked recurrent part ``W_a (4n_a, n_a)``, input part ``W_x (4n_a, n_x)`` and
    ``b (4n_a, 1)`` in the kernels' gate order ``[f; u; o; c̃]``, each a contiguous array:
    GEMMs on column slices of one stacked ``W`` are markedly slower (NumPy's batched matmul
    falls off its fast path on them)."""
    Wa = xp.concat([parameters[w][:, :n_a] for w, _ in LSTM_GATES], axis=0)
    Wx = xp.concat([parameters[w][:, n_a:] for w, _ in LSTM_GATES], axis=0)
    b = xp.concat([parameters[b] for _, b in LSTM_GATES], axis=0)
    return Wa, Wx, b


def _unstacked(dW: Any, db: Any, n_a: int) -> dict[str, Any]:
    """Split stacked gradients back into ``dWf, dWi, dWo, dWc, dbf, …`` (views)."""
    out = {}
    for k, (w, b) in enumerate(LSTM_GATES):
        rows = slice(k * n_a, (k + 1) * n_a)
        out["d" + w] = dW[rows, :]
        out["d" + b] = db[rows, :]
    return out


def lstm_cell_forward(
    xt: Any,
    a_prev: Any,
    c_prev: Any,
    parameters: dict[str, Any],
    *,
    check_finite: bool = True,
) -> tuple[Any, Any, Any, tuple]:
    """One step of the LSTM.

    Parameters
    ----------
    xt : array of shape (n_x, m)
    a_prev, c_prev : arrays of shape (n_a, m)
        Hidden and cell state at step t-1.
    parameters : dict of arrays
        ``Wf, Wi, Wc, Wo (n_a, n_a + n_x)`` acting on ``[a_prev; xt]``, ``bf, bi, bc, bo
        (n_a, 1)``; optionally the output layer ``Wy (n_y, n_a)``, ``by (n_y, 1)``.
    check_finite : bool, default True
        Refuse NaN/inf in the inputs and parameters with a ``ValueError``.

    Returns
    -------
    a_next, c_next : arrays of shape (n_a, m)
    yt_pred : array of shape (n_y, m), or None without an output layer
    cache : tuple
        ``(a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)``.

    Notes
    -----
    With ``z = [a⟨t-1⟩; x⟨t⟩]``: ``Γf = σ(Wf z + bf)``, ``Γu = σ(Wi z + bi)``,
    ``c̃ = tanh(Wc z + bc)``, ``c⟨t⟩ = Γf∗c⟨t-1⟩ + Γu∗c̃``, ``Γo = σ(Wo z + bo)``,
    ``a⟨t⟩ = Γo∗tanh(c⟨t⟩)``, ``ŷ⟨t⟩ = softmax(Wy a⟨t⟩ + by)``.
    """
    ctx = resolve(
        [
            ("xt", xt),
            ("a_prev", a_prev),
            ("c_prev", c_prev),
            *parameter_items(parameters, _ALL_KEYS),
        ],
        check_finite=check_finite,
    )
    xp = ctx.xp
    n_x, m = shape_of("xt", xt, ("n_x", "m"))
    n_a, _ = shape_of("a_prev", a_prev, ("n_a", "m"))
    check_shape("a_prev", a_prev, (n_a, m), f"m={m} from xt")
    check_shape("c_prev", c_prev, (n_a, m), "the shape of a_prev")
    n_y = validate_lstm_parameters(parameters, n_x, n_a)
    Wa, Wx, b = _stacked_split(xp, parameters, n_a)
    p = xp.matmul(Wa, a_prev) + xp.matmul(Wx, xt) + b
    gates, c_next, a_next = lstm_pointwise_forward(xp, p, c_prev, n_a)
    ft, it = gates[:n_a, :], gates[n_a : 2 * n_a, :]
    ot, cct = gates[2 * n_a : 3 * n_a, :], gates[3 * n_a :, :]
    yt_pred = None
    if n_y is not None:
        yt_pred = softmax(xp.matmul(parameters["Wy"], a_next) + parameters["by"])
    cache = (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)
    return a_next, c_next, yt_pred, cache


def lstm_forward(
    x: Any,
    a0: Any,
    parameters: dict[str, Any],
    *,
    c0: Any = None,
    check_finite: bool = True,
) -> tuple[Any, Any, Any, tuple]:
    """The LSTM over a whole sequence.

    Parameters
    ----------
    x : array of shape (n_x, m, T_x)
    a0 : array of shape (n_a, m)
    parameters : dict of arrays
        As in :func:`lstm_cell_forward`.
    c0 : array of shape (n_a, m), optional
        Initial cell state; zeros when omitted (the exercise's behaviour).
    check_finite : bool, default True
        Refuse NaN/inf in the inputs and parameters with a ``ValueError``.

    Returns
    -------
    a : array of shape (n_a, m, T_x)
    y : array of shape (n_y, m, T_x), or None without an output layer
    c : array of shape (n_a, m, T_x)
    caches : tuple ``(step_caches, x)``
        ``step_caches[t]`` is step t's 10-tuple cache, built on demand from views of stacked
        gate and state buffers.

    Notes
    -----
    The four gates' weights are stacked once per call into ``W_a (4n_a, n_a)`` and
    ``W_x (4n_a, n_x)``; the input projection ``W_x x⟨t⟩ + b`` of all steps is one batched GEMM
    before the loop and the output layer one after it, so the loop does only the recurrent GEMM
    ``W_a a⟨t-1⟩`` and the pointwise gate math (:mod:`xrnn.ops`).
    """
    ctx = resolve(
        [("x", x), ("a0", a0), ("c0", c0), *parameter_items(parameters, _ALL_KEYS)],
        check_finite=check_finite,
    )
    xp = ctx.xp
    n_x, m, T = sequence_shape(x)
    n_a, _ = shape_of("a0", a0, ("n_a", "m"))
    check_shape("a0", a0, (n_a, m), f"m={m} from x")
    if c0 is not None:
        check_shape("c0", c0, (n_a, m), "the shape of a0")
    n_y = validate_lstm_parameters(parameters, n_x, n_a)

    Wa, Wx, b = _stacked_split(xp, parameters, n_a)
    G = xp.matmul(Wx, time_major(xp, x))  # (T, 4n_a, m): every step's input part
    G += b  # in place: no second (T, 4n_a, m) array
    H = xp.empty((T + 1, n_a, m), dtype=ctx.dtype, device=ctx.device)
    C = xp.empty((T + 1, n_a, m), dtype=ctx.dtype, device=ctx.device)
    H[0, :, :] = a0
    C[0, :, :] = 0 if c0 is None else c0
    ops = get_ops(xp)
    for t in range(T):
        ops.lstm_forward_step(G, H, C, Wa, t)

    y = None
    if n_y is not None:
        y = output_layer_forward(xp, parameters["Wy"], parameters["by"], H[1:, :, :])
    a, c = public(xp, H[1:, :, :]), public(xp, C[1:, :, :])
    return a, y, c, (LSTMStepCaches(G, H, C, x, parameters), x)


def lstm_cell_backward(
    da_next: Any, dc_next: Any, cache: tuple, *, check_finite: bool = True
) -> dict[str, Any]:
    """Backward pass of one LSTM step (the corrected equations, see Notes).

    Parameters
    ----------
    da_next, dc_next : arrays of shape (n_a, m)
        Gradients of the loss with respect to ``a_next`` and ``c_next``.
    cache : tuple
        The 10-tuple from :func:`lstm_cell_forward`.

    Returns
    -------
    dict
        ``dxt (n_x, m)``, ``da_prev (n_a, m)``, ``dc_prev (n_a, m)``,
        ``dWf, dWi, dWc, dWo (n_a, n_a + n_x)``, ``dbf, dbi, dbc, dbo (n_a, 1)``.

    Notes
    -----
    With ``dc = dc_next + da_next∗Γo∗(1 − tanh²(c_next))``:
    ``dΓo = da_next∗tanh(c_next)∗Γo(1−Γo)``, ``dc̃ = dc∗Γu∗(1−c̃²)``,
    ``dΓu = dc∗c̃∗Γu(1−Γu)``, ``dΓf = dc∗c_prev∗Γf(1−Γf)``; ``dW· = dΓ· zᵀ``,
    ``db· = Σ_m dΓ·``, ``[da_prev; dxt] = Σ W·ᵀ dΓ·``, ``dc_prev = dc∗Γf``. The exercise's
    printed equations misplace the parentheses of ``dc`` (erratum 1); these do not.
    """
    if not isinstance(cache, tuple | list) or len(cache) != 10:
        raise ValueError(
            "cache must be the 10-tuple (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, "
            "parameters) from lstm_cell_forward"
        )
    a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters = cache
    names = ("a_next", "c_next", "a_prev", "c_prev", "ft", "it", "cct", "ot", "xt")
    ctx = resolve(
        [
            ("da_next", da_next),
            ("dc_next", dc_next),
            *((f"cache {n}", v) for n, v in zip(names, cache[:9], strict=True)),
            *parameter_items(parameters, LSTM_KEYS),
        ],
        check_finite=check_finite,
    )
    xp = ctx.xp
    n_a, m = shape_of("cache a_next", a_next, ("n_a", "m"))
    check_shape("da_next", da_next, (n_a, m), "the shape of a_next")
    check_shape("dc_next", dc_next, (n_a, m), "the shape of c_next")
    n_x, _ = shape_of("cache xt", xt, ("n_x", "m"))
    validate_lstm_parameters(parameters, n_x, n_a)
    gates = xp.concat([ft, it, ot, cct], axis=0)
    dp, dc_prev = lstm_pointwise_backward(xp, gates, c_next, c_prev, da_next, dc_next, n_a)
    Wa, Wx, _ = _stacked_split(xp, parameters, n_a)
    grads = {
        "dxt": xp.matmul(Wx.T, dp),
        "da_prev": xp.matmul(Wa.T, dp),
        "dc_prev": dc_prev,
    }
    dW = xp.concat([xp.matmul(dp, a_prev.T), xp.matmul(dp, xt.T)], axis=1)
    grads.update(_unstacked(dW, xp.sum(dp, axis=1, keepdims=True), n_a))
    return grads


def lstm_backward(da: Any, caches: tuple, *, check_finite: bool = True) -> dict[str, Any]:
    """Backpropagation through time for :func:`lstm_forward`.

    Parameters
    ----------
    da : array of shape (n_a, m, T_x)
        Upstream gradient of the loss with respect to every hidden state; its ``T_x`` must be
        the forward pass's (the exercise's test passes 4 steps against 7 — erratum 3).
    caches : tuple
        ``(step_caches, x)`` from :func:`lstm_forward` (or an exercise-style list of 10-tuples
        in place of ``step_caches``).

    Returns
    -------
    dict
        ``dx (n_x, m, T_x)``, ``da0 (n_a, m)``, ``dc0 (n_a, m)``,
        ``dWf, dWi, dWc, dWo (n_a, n_a + n_x)``, ``dbf, dbi, dbc, dbo (n_a, 1)``.

    Notes
    -----
    Step t receives ``da[:, :, t] + da_prev(t+1)`` and ``dc_prev(t+1)`` — both carried, unlike
    the exercise's solution (erratum 2). The loop does the pointwise gate math of
    :func:`lstm_cell_backward` and one recurrent GEMM ``W_aᵀ dp``; ``dW``, ``db`` and ``dx``
    are large GEMMs over the stacked ``dp`` of each chunk of steps (:mod:`xrnn.bptt`).
    """
    ctx, steps, x, n_x, n_a, m, T = open_caches(
        da,
        caches,
        LSTMStepCaches,
        "lstm_forward",
        LSTM_KEYS,
        validate_lstm_parameters,
        check_finite,
    )
    xp, parameters = ctx.xp, steps.parameters
    Wa, Wx, _ = _stacked_split(xp, parameters, n_a)
    ops, WaT = get_ops(xp), Wa.T
    state = [xp.zeros((n_a, m), dtype=ctx.dtype, device=ctx.device) for _ in range(2)]

    def step(dP: Any, j: int, da_t: Any, t: int) -> None:
        state[:] = ops.lstm_backward_step(dP, j, da_t, steps.G, steps.C, WaT, t, *state)

    dWa, dWx, db, dx = backward_in_chunks(xp, ctx, step, da, x, steps.H, Wx, 4 * n_a)
    grads = {"dx": dx, "da0": state[0], "dc0": state[1]}
    grads.update(_unstacked(xp.concat([dWa, dWx], axis=1), db, n_a))
    return grads
