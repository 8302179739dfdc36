"""The exercise's vanilla-RNN functions: cell and sequence, forward and backward, and the
initialiser, for the tanh and the ReLU cell (:mod:`xrnn.cells.rnn`).

``a⟨t⟩ = tanh(Waa a⟨t-1⟩ + Wax x⟨t⟩ + ba)``, optionally ``ŷ⟨t⟩ = softmax(Wya a⟨t⟩ + by)``.
"""

from __future__ import annotations

from typing import Any

from xrnn.cells.rnn import NONLINEARITIES, RNN_CELL, RNN_RELU_CELL, RNNCell
from xrnn.core.engine import (
    recorded_cell,
    run_backward,
    run_cell_backward,
    run_cell_forward,
    run_forward,
)
from xrnn.core.params import initialize

__all__ = [
    "NONLINEARITIES",
    "RNN_CELL",
    "RNN_RELU_CELL",
    "initialize_rnn",
    "rnn_backward",
    "rnn_cell_backward",
    "rnn_cell_forward",
    "rnn_cell_of",
    "rnn_forward",
]


def rnn_cell_of(nonlinearity: Any) -> RNNCell:
    """The RNN spec for ``nonlinearity`` (``"tanh"`` or ``"relu"``)."""
    if not isinstance(nonlinearity, str) or nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return NONLINEARITIES[nonlinearity]


def initialize_rnn(
    n_x: int,
    n_a: int,
    n_y: int | None = None,
    *,
    seed: int = 0,
    dtype: Any = None,
    like: Any = None,
) -> dict[str, Any]:
    """Random RNN parameters ``Wax (n_a, n_x)``, ``Waa (n_a, n_a)``, ``ba (n_a, 1)`` and,
    when ``n_y`` is given, the output layer ``Wya (n_y, n_a)``, ``by (n_y, 1)``.

    Weights are drawn uniformly from ``±1/sqrt(n_a)`` (PyTorch's ``nn.RNN`` default; output layer
    ``±1/sqrt(n_a)`` too) from a NumPy ``Generator`` seeded with ``seed``, so every backend gets
    the same numbers; biases start at zero.

    Parameters
    ----------
    like : array, optional
        Create the arrays in this array's namespace, on its device, with its dtype.
    dtype : dtype, optional
        Floating dtype of the result (of ``like``'s namespace when ``like`` is given). Default:
        ``like``'s dtype, else NumPy float64.
    """
    return initialize(
        RNN_CELL.draw, RNN_CELL.output_keys, n_x, n_a, n_y, seed=seed, dtype=dtype, like=like
    )


def rnn_cell_forward(
    xt: Any,
    a_prev: Any,
    parameters: dict[str, Any],
    *,
    nonlinearity: str = "tanh",
    check_finite: bool = True,
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
    nonlinearity : {"tanh", "relu"}, default "tanh"
        ``relu`` is PyTorch's ``nn.RNN(nonlinearity="relu")``: ``max(0, ·)`` in place of tanh.
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
    (a_next,), yt, cache = run_cell_forward(
        rnn_cell_of(nonlinearity), xt, (a_prev,), parameters, check_finite=check_finite
    )
    return a_next, yt, cache


def rnn_forward(
    x: Any,
    a0: Any,
    parameters: dict[str, Any],
    *,
    nonlinearity: str = "tanh",
    lengths: Any = None,
    reverse: bool = False,
    check_finite: bool = True,
    return_caches: bool = True,
) -> tuple[Any, Any, Any]:
    """The RNN over a whole sequence.

    Parameters
    ----------
    x : array of shape (n_x, m, T_x)
    a0 : array of shape (n_a, m)
    parameters : dict of arrays
        As in :func:`rnn_cell_forward`.
    nonlinearity : {"tanh", "relu"}, default "tanh"
        Recorded in the caches, so :func:`rnn_backward` follows it.
    lengths : integer array of shape (m,), optional
        Each sequence's length (1 ≤ length ≤ T_x), in ``x``'s library and device (a list of
        ints is converted). Past its length a sequence's state is carried unchanged, its
        outputs are zero and no gradient flows there — PyTorch's packed sequences.
    reverse : bool, default False
        Run each sequence backwards over its own length (a bidirectional layer's backward
        direction); outputs are returned in the original time order.
    check_finite : bool, default True
        Refuse NaN/inf in the inputs and parameters, and lengths out of range, with a
        ``ValueError``. Each check reads one number back to the host; pass False in GPU hot
        loops.
    return_caches : bool, default True
        False for a forward whose backward never runs (sampling, evaluation): ``caches``
        is then None and no per-step state is kept for it.

    Returns
    -------
    a : array of shape (n_a, m, T_x)
        Hidden states of every step.
    y_pred : array of shape (n_y, m, T_x), or None without an output layer
    caches : tuple ``(step_caches, x)``
        ``step_caches[t]`` is step t's ``(a_next, a_prev, xt, parameters)``; stored compactly
        (one stacked state buffer) and built from views on demand.
        ``step_caches.final_states()`` is ``(a_T,)``, the state at each sequence's end.

    Notes
    -----
    The input projection ``Wax x⟨t⟩ + ba`` of all steps is one GEMM before the loop and the
    output layer one GEMM after it; the loop does only ``Waa a⟨t-1⟩`` and ``tanh``
    (:mod:`xrnn.core.engine`).

    Examples
    --------
    >>> import numpy as np, xrnn
    >>> p = xrnn.initialize_rnn(3, 5, 2, seed=0)
    >>> x = np.random.default_rng(0).normal(size=(3, 10, 4))
    >>> a, y, caches = xrnn.rnn_forward(x, np.zeros((5, 10)), p)
    >>> a.shape, y.shape
    ((5, 10, 4), (2, 10, 4))
    >>> xrnn.rnn_backward(np.ones_like(a), caches)["dWaa"].shape
    (5, 5)
    """
    (a,), y, caches = run_forward(
        rnn_cell_of(nonlinearity),
        x,
        (a0,),
        parameters,
        lengths=lengths,
        reverse=reverse,
        check_finite=check_finite,
        return_caches=return_caches,
    )
    return a, y, caches


def rnn_cell_backward(
    da_next: Any, cache: tuple, *, nonlinearity: str = "tanh", check_finite: bool = True
) -> dict[str, Any]:
    """Backward pass of one RNN step.

    Parameters
    ----------
    da_next : array of shape (n_a, m)
        Gradient of the loss with respect to ``a_next``.
    cache : tuple
        ``(a_next, a_prev, xt, parameters)`` from :func:`rnn_cell_forward`.
    nonlinearity : {"tanh", "relu"}, default "tanh"
        The forward step's (the cache tuple does not record it).

    Returns
    -------
    dict
        ``dxt (n_x, m)``, ``da_prev (n_a, m)``, ``dWax (n_a, n_x)``, ``dWaa (n_a, n_a)``,
        ``dba (n_a, 1)``.

    Notes
    -----
    With ``dz = da_next ∗ (1 − a⟨t⟩²)``: ``dxt = Waxᵀ dz``, ``da_prev = Waaᵀ dz``,
    ``dWax = dz xtᵀ``, ``dWaa = dz a_prevᵀ``, ``dba = Σ_m dz`` (ReLU: ``dz = da_next ∗
    [a⟨t⟩ > 0]``).
    """
    cell = rnn_cell_of(nonlinearity)
    return run_cell_backward(cell, (da_next,), cache, check_finite=check_finite)


def rnn_backward(
    da: Any,
    caches: tuple,
    *,
    dfinal: tuple | None = None,
    nonlinearity: str | None = None,
    check_finite: bool = True,
) -> dict[str, Any]:
    """Backpropagation through time for :func:`rnn_forward`.

    Parameters
    ----------
    da : array of shape (n_a, m, T_x)
        Upstream gradient of the loss with respect to every hidden state; its ``T_x`` must be
        the forward pass's.
    caches : tuple
        ``(step_caches, x)`` from :func:`rnn_forward` (or an exercise-style list of step
        tuples in place of ``step_caches``). ``lengths``, ``reverse`` and the nonlinearity
        come with them.
    dfinal : tuple ``(da_T,)``, optional
        Upstream gradient of the final state ``caches[0].final_states()`` (n_a, m): the
        gradient arriving from a later chunk of a long sequence, or from a loss on the final
        state. Default: none.
    nonlinearity : {"tanh", "relu"}, optional
        Only for an exercise-style list of step tuples (default there "tanh"); ``step_caches``
        from :func:`rnn_forward` record it.

    Returns
    -------
    dict
        ``dx (n_x, m, T_x)``, ``da0 (n_a, m)``, ``dWax (n_a, n_x)``, ``dWaa (n_a, n_a)``,
        ``dba (n_a, 1)``.

    Notes
    -----
    Step t receives ``da[:, :, t] + da_prev(t+1)``. Inside the loop only the pointwise
    ``dz = da ∗ (1 − a⟨t⟩²)`` and the recurrent GEMM ``Waaᵀ dz``; ``dWax``, ``dWaa``, ``dba``
    and ``dx`` are GEMMs over the stacked ``dz`` of each chunk of steps (:mod:`xrnn.core.engine`).
    """
    cell = recorded_cell(caches)
    if cell is None:  # an exercise-style list of step tuples records no nonlinearity
        cell = rnn_cell_of("tanh" if nonlinearity is None else nonlinearity)
    elif nonlinearity is not None and rnn_cell_of(nonlinearity) is not cell:
        raise ValueError(
            f"nonlinearity={nonlinearity!r} disagrees with the caches, which come from the "
            f"{cell.name} forward pass (step caches record it: leave nonlinearity out)"
        )
    return run_backward(cell, da, caches, "rnn_forward", dfinal=dfinal, check_finite=check_finite)
