"""The GRU's functions in the exercise's conventions: cell and sequence, forward and backward,
and the initialiser. The cell itself (PyTorch's form, its math once) is :mod:`xrnn.cells.gru`.
"""

from __future__ import annotations

from typing import Any

from xrnn.cells.gru import GRU_CELL
from xrnn.core.engine import run_backward, run_cell_backward, run_cell_forward, run_forward
from xrnn.core.params import initialize

__all__ = [
    "GRU_CELL",
    "gru_backward",
    "gru_cell_backward",
    "gru_cell_forward",
    "gru_forward",
    "initialize_gru",
]


def initialize_gru(
    n_x: int,
    n_a: int,
    n_y: int | None = None,
    *,
    seed: int = 0,
    dtype: Any = None,
    like: Any = None,
) -> dict[str, Any]:
    """Random GRU parameters ``Wr, Wz, Wn (n_a, n_a + n_x)``, ``br, bz, bn, bhn (n_a, 1)``
    and, when ``n_y`` is given, ``Wy (n_y, n_a)``, ``by (n_y, 1)``.

    Weights are uniform in ``±1/sqrt(n_a)`` (PyTorch's ``nn.GRU`` default) from a NumPy
    ``Generator`` seeded with ``seed``; biases start at zero. ``like`` and ``dtype`` as in
    :func:`xrnn.initialize_rnn`.
    """
    return initialize(
        GRU_CELL.draw, GRU_CELL.output_keys, n_x, n_a, n_y, seed=seed, dtype=dtype, like=like
    )


def gru_cell_forward(
    xt: Any, a_prev: Any, parameters: dict[str, Any], *, check_finite: bool = True
) -> tuple[Any, Any, tuple]:
    """One step of the GRU.

    Parameters
    ----------
    xt : array of shape (n_x, m)
    a_prev : array of shape (n_a, m)
    parameters : dict of arrays
        ``Wr, Wz, Wn (n_a, n_a + n_x)`` acting on ``[a_prev; xt]``, ``br, bz, bn, bhn
        (n_a, 1)``; optionally the output layer ``Wy (n_y, n_a)``, ``by (n_y, 1)``.
    check_finite : bool, default True
        Refuse NaN/inf in the inputs and parameters with a ``ValueError``.

    Returns
    -------
    a_next : array of shape (n_a, m)
    yt_pred : array of shape (n_y, m), or None without an output layer
    cache : tuple ``(a_next, a_prev, rt, zt, nt, hnt, xt, parameters)``
        ``hnt = Wnᵃ a_prev + bhn``, each gate (n_a, m).

    Notes
    -----
    ``Γr = σ(Wr z + br)``, ``Γz = σ(Wz z + bz)``,
    ``ñ = tanh(Wnˣ x⟨t⟩ + bn + Γr ∗ (Wnᵃ a⟨t-1⟩ + bhn))``, ``a⟨t⟩ = (1 − Γz)∗ñ + Γz∗a⟨t-1⟩``.
    """
    (a_next,), yt, cache = run_cell_forward(
        GRU_CELL, xt, (a_prev,), parameters, check_finite=check_finite
    )
    return a_next, yt, cache


def gru_forward(
    x: Any,
    a0: Any,
    parameters: dict[str, Any],
    *,
    lengths: Any = None,
    reverse: bool = False,
    check_finite: bool = True,
    return_caches: bool = True,
) -> tuple[Any, Any, tuple]:
    """The GRU over a whole sequence.

    Parameters
    ----------
    x : array of shape (n_x, m, T_x)
    a0 : array of shape (n_a, m)
    parameters : dict of arrays
        As in :func:`gru_cell_forward`.
    lengths : integer array of shape (m,), optional
        Each sequence's length (1 ≤ length ≤ T_x); see :func:`xrnn.rnn_forward`.
    reverse : bool, default False
        Run each sequence backwards over its own length; see :func:`xrnn.rnn_forward`.
    check_finite : bool, default True
        Refuse NaN/inf and lengths out of range with a ``ValueError``.
    return_caches : bool, default True
        False for a forward whose backward never runs (sampling, evaluation): ``caches``
        is then None and no per-step state is kept for it.

    Returns
    -------
    a : array of shape (n_a, m, T_x)
    y : array of shape (n_y, m, T_x), or None without an output layer
    caches : tuple ``(step_caches, x)``
        ``step_caches[t]`` is step t's 8-tuple cache (views of stacked buffers);
        ``step_caches.final_states()`` is ``(a_T,)``.

    Examples
    --------
    >>> import numpy as np, xrnn
    >>> p = xrnn.initialize_gru(3, 5, seed=0)
    >>> x = np.random.default_rng(0).normal(size=(3, 4, 6))
    >>> a, y, caches = xrnn.gru_forward(x, np.zeros((5, 4)), p, reverse=True)
    >>> g = xrnn.gru_backward(np.ones_like(a), caches)
    >>> g["dx"].shape, g["dbhn"].shape
    ((3, 4, 6), (5, 1))
    """
    (a,), y, caches = run_forward(
        GRU_CELL,
        x,
        (a0,),
        parameters,
        lengths=lengths,
        reverse=reverse,
        check_finite=check_finite,
        return_caches=return_caches,
    )
    return a, y, caches


def gru_cell_backward(da_next: Any, cache: tuple, *, check_finite: bool = True) -> dict[str, Any]:
    """Backward pass of one GRU step.

    Parameters
    ----------
    da_next : array of shape (n_a, m)
    cache : tuple
        The 8-tuple from :func:`gru_cell_forward`.

    Returns
    -------
    dict
        ``dxt (n_x, m)``, ``da_prev (n_a, m)``, ``dWr, dWz, dWn (n_a, n_a + n_x)``,
        ``dbr, dbz, dbn, dbhn (n_a, 1)``.

    Notes
    -----
    ``dñ = da∗(1−Γz)∗(1−ñ²)``, ``dΓz = da∗(a⟨t-1⟩−ñ)∗Γz(1−Γz)``, ``dΓr = dñ∗hn∗Γr(1−Γr)``;
    the hidden part of ``Wn`` and ``bhn`` see ``dñ∗Γr``; ``da_prev`` adds ``da∗Γz``.
    """
    return run_cell_backward(GRU_CELL, (da_next,), cache, check_finite=check_finite)


def gru_backward(
    da: Any, caches: tuple, *, dfinal: tuple | None = None, check_finite: bool = True
) -> dict[str, Any]:
    """Backpropagation through time for :func:`gru_forward`.

    Parameters
    ----------
    da : array of shape (n_a, m, T_x)
    caches : tuple
        ``(step_caches, x)`` from :func:`gru_forward` (or a list of 8-tuples in place of
        ``step_caches``).
    dfinal : tuple ``(da_T,)`` of arrays of shape (n_a, m), optional
        Upstream gradient of the final states ``caches[0].final_states()`` (from a later
        chunk of a long sequence, or a loss on the final state). Default: none.

    Returns
    -------
    dict
        ``dx (n_x, m, T_x)``, ``da0 (n_a, m)``, ``dWr, dWz, dWn (n_a, n_a + n_x)``,
        ``dbr, dbz, dbn, dbhn (n_a, 1)``.
    """
    return run_backward(
        GRU_CELL, da, caches, "gru_forward", dfinal=dfinal, check_finite=check_finite
    )
