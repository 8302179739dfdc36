"""The vanilla RNN: cell and sequence, forward and backward through time."""

from __future__ import annotations

from typing import Any

from xrnn.activations import softmax
from xrnn.backends import get_ops, resolve
from xrnn.bptt import backward_in_chunks
from xrnn.caches import RNNStepCaches, open_caches
from xrnn.inputs import check_shape, sequence_shape, shape_of
from xrnn.layout import output_layer_forward, public, time_major
from xrnn.ops import rnn_pointwise_backward, rnn_pointwise_forward
from xrnn.params import RNN_KEYS, RNN_OUTPUT, parameter_items, validate_rnn_parameters

__all__ = ["rnn_backward", "rnn_cell_backward", "rnn_cell_forward", "rnn_forward"]

_ALL_KEYS = RNN_KEYS + RNN_OUTPUT


def rnn_cell_forward(
    xt: Any, a_prev: Any, parameters: dict[str, Any], *, check_finite: bool = True
) -> tuple[Any, Any, tuple]:
    """One step of the RNN.

    Parameters
    ----------
    xt : array of shape (n_x, m)
        Input at step t.
    a_prev : array of shape (n_a, m)
        Hidden state at step t-1.
    parameters : dict of arrays
        ``Wax (n_a, n_x)``, ``Waa (n_a, n_a)``, ``ba (n_a, 1)``; optionally the output layer
        ``Wya (n_y, n_a)``, ``by (n_y, 1)``.
    check_finite : bool, default True
        Refuse NaN/inf in the inputs and parameters with a ``ValueError``.

    Returns
    -------
    a_next : array of shape (n_a, m)
    yt_pred : array of shape (n_y, m), or None without an output layer
    cache : tuple ``(a_next, a_prev, xt, parameters)``

    Notes
    -----
    ``a⟨t⟩ = tanh(Waa a⟨t-1⟩ + Wax x⟨t⟩ + ba)``, ``ŷ⟨t⟩ = softmax(Wya a⟨t⟩ + by)``.
    """
    ctx = resolve(
        [("xt", xt), ("a_prev", a_prev), *parameter_items(parameters, _ALL_KEYS)],
        check_finite=check_finite,
    )
    xp = ctx.xp
    n_x, m = shape_of("xt", xt, ("n_x", "m"))
    n_a, _ = shape_of("a_prev", a_prev, ("n_a", "m"))
    check_shape("a_prev", a_prev, (n_a, m), f"m={m} from xt")
    n_y = validate_rnn_parameters(parameters, n_x, n_a)
    p = xp.matmul(parameters["Wax"], xt) + xp.matmul(parameters["Waa"], a_prev) + parameters["ba"]
    a_next = rnn_pointwise_forward(xp, p)
    yt_pred = None
    if n_y is not None:
        yt_pred = softmax(xp.matmul(parameters["Wya"], a_next) + parameters["by"])
    return a_next, yt_pred, (a_next, a_prev, xt, parameters)


def rnn_forward(
    x: Any, a0: Any, parameters: dict[str, Any], *, check_finite: bool = True
) -> tuple[Any, Any, tuple]:
    """The RNN over a whole sequence.

    Parameters
    ----------
    x : array of shape (n_x, m, T_x)
    a0 : array of shape (n_a, m)
    parameters : dict of arrays
        As in :func:`rnn_cell_forward`.
    check_finite : bool, default True
        Refuse NaN/inf in the inputs and parameters with a ``ValueError``.

    Returns
    -------
    a : array of shape (n_a, m, T_x)
        Hidden states of every step.
    y_pred : array of shape (n_y, m, T_x), or None without an output layer
    caches : tuple ``(step_caches, x)``
        ``step_caches[t]`` is step t's ``(a_next, a_prev, xt, parameters)``; stored compactly
        (one stacked state buffer) and built from views on demand.

    Notes
    -----
    The input projection ``Wax x⟨t⟩ + ba`` of all steps is one GEMM before the loop and the
    output layer one GEMM after it; the loop does only ``Waa a⟨t-1⟩`` and ``tanh``.
    """
    ctx = resolve(
        [("x", x), ("a0", a0), *parameter_items(parameters, _ALL_KEYS)],
        check_finite=check_finite,
    )
    xp = ctx.xp
    n_x, m, T = sequence_shape(x)
    n_a, _ = shape_of("a0", a0, ("n_a", "m"))
    check_shape("a0", a0, (n_a, m), f"m={m} from x")
    n_y = validate_rnn_parameters(parameters, n_x, n_a)

    GX = xp.matmul(parameters["Wax"], time_major(xp, x))  # (T, n_a, m)
    GX += parameters["ba"]  # in place: no second (T, n_a, m) array
    H = xp.empty((T + 1, n_a, m), dtype=ctx.dtype, device=ctx.device)
    H[0, :, :] = a0
    ops, Waa = get_ops(xp), parameters["Waa"]
    for t in range(T):
        ops.rnn_forward_step(H, GX, Waa, t)

    y_pred = None
    if n_y is not None:
        y_pred = output_layer_forward(xp, parameters["Wya"], parameters["by"], H[1:, :, :])
    a = public(xp, H[1:, :, :])
    return a, y_pred, (RNNStepCaches(H, x, parameters), x)


def rnn_cell_backward(da_next: Any, cache: tuple, *, check_finite: bool = True) -> dict[str, Any]:
    """Backward pass of one RNN step.

    Parameters
    ----------
    da_next : array of shape (n_a, m)
        Gradient of the loss with respect to ``a_next``.
    cache : tuple
        ``(a_next, a_prev, xt, parameters)`` from :func:`rnn_cell_forward`.

    Returns
    -------
    dict
        ``dxt (n_x, m)``, ``da_prev (n_a, m)``, ``dWax (n_a, n_x)``, ``dWaa (n_a, n_a)``,
        ``dba (n_a, 1)``.

    Notes
    -----
    With ``dz = da_next ∗ (1 − a⟨t⟩²)``: ``dxt = Waxᵀ dz``, ``da_prev = Waaᵀ dz``,
    ``dWax = dz xtᵀ``, ``dWaa = dz a_prevᵀ``, ``dba = Σ_m dz``.
    """
    if not isinstance(cache, tuple | list) or len(cache) != 4:
        raise ValueError(
            "cache must be the (a_next, a_prev, xt, parameters) tuple from rnn_cell_forward"
        )
    a_next, a_prev, xt, parameters = cache
    ctx = resolve(
        [
            ("da_next", da_next),
            ("cache a_next", a_next),
            ("cache a_prev", a_prev),
            ("cache xt", xt),
            *parameter_items(parameters, RNN_KEYS),
        ],
        check_finite=check_finite,
    )
    xp = ctx.xp
    check_shape("da_next", da_next, tuple(a_next.shape), "the shape of a_next")
    n_x, _ = shape_of("cache xt", xt, ("n_x", "m"))
    validate_rnn_parameters(parameters, n_x, int(a_next.shape[0]))
    dz = rnn_pointwise_backward(xp, a_next, da_next)
    return {
        "dxt": xp.matmul(parameters["Wax"].T, dz),
        "da_prev": xp.matmul(parameters["Waa"].T, dz),
        "dWax": xp.matmul(dz, xt.T),
        "dWaa": xp.matmul(dz, a_prev.T),
        "dba": xp.sum(dz, axis=1, keepdims=True),
    }


def rnn_backward(da: Any, caches: tuple, *, check_finite: bool = True) -> dict[str, Any]:
    """Backpropagation through time for :func:`rnn_forward`.

    Parameters
    ----------
    da : array of shape (n_a, m, T_x)
        Upstream gradient of the loss with respect to every hidden state; its ``T_x`` must be
        the forward pass's.
    caches : tuple
        ``(step_caches, x)`` from :func:`rnn_forward` (or an exercise-style list of step
        tuples in place of ``step_caches``).

    Returns
    -------
    dict
        ``dx (n_x, m, T_x)``, ``da0 (n_a, m)``, ``dWax (n_a, n_x)``, ``dWaa (n_a, n_a)``,
        ``dba (n_a, 1)``.

    Notes
    -----
    Step t receives ``da[:, :, t] + da_prev(t+1)``. Inside the loop only the pointwise
    ``dz = da ∗ (1 − a⟨t⟩²)`` and the recurrent GEMM ``Waaᵀ dz``; ``dWax``, ``dWaa``, ``dba``
    and ``dx`` are GEMMs over the stacked ``dz`` of each chunk of steps (:mod:`xrnn.bptt`).
    """
    ctx, steps, x, n_x, n_a, m, T = open_caches(
        da, caches, RNNStepCaches, "rnn_forward", RNN_KEYS, validate_rnn_parameters, check_finite
    )
    xp, parameters = ctx.xp, steps.parameters
    ops, WaaT = get_ops(xp), parameters["Waa"].T
    da_next = [xp.zeros((n_a, m), dtype=ctx.dtype, device=ctx.device)]

    def step(dP: Any, j: int, da_t: Any, t: int) -> None:
        da_next[0] = ops.rnn_backward_step(dP, j, da_t, steps.H, WaaT, t, da_next[0])

    dWaa, dWax, dba, dx = backward_in_chunks(xp, ctx, step, da, x, steps.H, parameters["Wax"], n_a)
    return {"dx": dx, "da0": da_next[0], "dWax": dWax, "dWaa": dWaa, "dba": dba}
