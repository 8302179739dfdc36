"""The exercise's LSTM functions: cell and sequence, forward and backward, and the initialiser.

With ``z = [a⟨t-1⟩; x⟨t⟩]``: ``Γf = σ(Wf z + bf)``, ``Γu = σ(Wi z + bi)``,
``c̃ = tanh(Wc z + bc)``, ``Γo = σ(Wo z + bo)``, ``c⟨t⟩ = Γf∗c⟨t-1⟩ + Γu∗c̃``,
``a⟨t⟩ = Γo∗tanh(c⟨t⟩)``, optionally ``ŷ⟨t⟩ = softmax(Wy a⟨t⟩ + by)``. The cell itself (its
math, once) is :mod:`xrnn.cells.lstm`.
"""

from __future__ import annotations

from typing import Any

from xrnn.cells.lstm import LSTM_CELL
from xrnn.core.engine import run_backward, run_cell_backward, run_cell_forward, run_forward
from xrnn.core.params import initialize

__all__ = [
    "LSTM_CELL",
    "initialize_lstm",
    "lstm_backward",
    "lstm_cell_backward",
    "lstm_cell_forward",
    "lstm_forward",
]


def initialize_lstm(
    n_x: int,
    n_a: int,
    n_y: int | None = None,
    *,
    seed: int = 0,
    dtype: Any = None,
    like: Any = None,
) -> dict[str, Any]:
    """Random LSTM parameters ``Wf, Wi, Wc, Wo (n_a, n_a + n_x)``, ``bf, bi, bc, bo (n_a, 1)``
    and, when ``n_y`` is given, ``Wy (n_y, n_a)``, ``by (n_y, 1)``.

    Weights are uniform in ``±1/sqrt(n_a)`` (PyTorch's ``nn.LSTM`` default) from a NumPy
    ``Generator`` seeded with ``seed``; biases are zero except the forget-gate bias ``bf = 1``,
    which keeps the cell's memory open early in training (Jozefowicz et al., 2015).
    ``like`` and ``dtype`` as in :func:`xrnn.initialize_rnn`.
    """
    return initialize(
        LSTM_CELL.draw, LSTM_CELL.output_keys, n_x, n_a, n_y, seed=seed, dtype=dtype, like=like
    )


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
    (a_next, c_next), yt, cache = run_cell_forward(
        LSTM_CELL, xt, (a_prev, c_prev), parameters, check_finite=check_finite
    )
    return a_next, c_next, yt, cache


def lstm_forward(
    x: Any,
    a0: Any,
    parameters: dict[str, Any],
    *,
    c0: Any = None,
    lengths: Any = None,
    reverse: bool = False,
    check_finite: bool = True,
    return_caches: bool = True,
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
    lengths : integer array of shape (m,), optional
        Each sequence's length (1 ≤ length ≤ T_x); see :func:`xrnn.rnn_forward`.
    reverse : bool, default False
        Run each sequence backwards over its own length; see :func:`xrnn.rnn_forward`.
    check_finite : bool, default True
        Refuse NaN/inf in the inputs and parameters, and lengths out of range, with a
        ``ValueError`` (one host read each; pass False in GPU hot loops).
    return_caches : bool, default True
        False for a forward whose backward never runs (sampling, evaluation): ``caches``
        is then None and no per-step state is kept for it.

    Returns
    -------
    a : array of shape (n_a, m, T_x)
    y : array of shape (n_y, m, T_x), or None without an output layer
    c : array of shape (n_a, m, T_x)
    caches : tuple ``(step_caches, x)``
        ``step_caches[t]`` is step t's 10-tuple cache, built on demand from views of stacked
        gate and state buffers; ``step_caches.final_states()`` is ``(a_T, c_T)``.

    Notes
    -----
    The four gates' weights are stacked once per call into ``W_a (4n_a, n_a)`` and
    ``W_x (4n_a, n_x)``; the input projection ``W_x x⟨t⟩ + b`` of all steps is one batched GEMM
    before the loop and the output layer one after it, so the loop does only the recurrent GEMM
    ``W_a a⟨t-1⟩`` and the pointwise gate math (:mod:`xrnn.core.engine`).

    Examples
    --------
    >>> import numpy as np, xrnn
    >>> p = xrnn.initialize_lstm(3, 5, seed=0)
    >>> x = np.random.default_rng(0).normal(size=(3, 4, 6))
    >>> a, y, c, caches = xrnn.lstm_forward(x, np.zeros((5, 4)), p, lengths=[6, 2, 4, 1])
    >>> a.shape, y is None, float(abs(a[:, 1, 2:]).max())   # zero past length 2
    ((5, 4, 6), True, 0.0)
    >>> grads = xrnn.lstm_backward(np.ones_like(a), caches)
    >>> grads["dx"].shape, grads["da0"].shape, grads["dWf"].shape
    ((3, 4, 6), (5, 4), (5, 8))
    """
    (a, c), y, caches = run_forward(
        LSTM_CELL,
        x,
        (a0, c0),
        parameters,
        lengths=lengths,
        reverse=reverse,
        check_finite=check_finite,
        return_caches=return_caches,
    )
    return a, y, c, caches


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
    return run_cell_backward(LSTM_CELL, (da_next, dc_next), cache, check_finite=check_finite)


def lstm_backward(
    da: Any, caches: tuple, *, dfinal: tuple | None = None, check_finite: bool = True
) -> dict[str, Any]:
    """Backpropagation through time for :func:`lstm_forward`.

    Parameters
    ----------
    da : array of shape (n_a, m, T_x)
        Upstream gradient of the loss with respect to every hidden state; its ``T_x`` must be
        the forward pass's (the exercise's test passes 4 steps against 7 — erratum 3).
    caches : tuple
        ``(step_caches, x)`` from :func:`lstm_forward` (or an exercise-style list of 10-tuples
        in place of ``step_caches``).
    dfinal : tuple ``(da_T, dc_T)`` of arrays of shape (n_a, m), optional
        Upstream gradient of the final states ``caches[0].final_states()`` (from a later
        chunk of a long sequence, or a loss on the final state). Default: none.

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
    are large GEMMs over the stacked ``dp`` of each chunk of steps (:mod:`xrnn.core.engine`).
    """
    return run_backward(
        LSTM_CELL, da, caches, "lstm_forward", dfinal=dfinal, check_finite=check_finite
    )
