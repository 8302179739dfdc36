"""The generic sequence API: any registered cell (or cell object) by name.

``xrnn.forward("lstm", ...)`` is ``xrnn.lstm_forward(...)``: both run the same engine body
(:func:`xrnn.core.engine.run_forward`) with the same cell spec, and return the same arrays.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from xrnn.cells.base import Cell, get_cell
from xrnn.core.engine import (
    recorded_cell,
    run_backward,
    run_cell_backward,
    run_cell_forward,
    run_forward,
)
from xrnn.core.params import initialize as _initialize

__all__ = ["backward", "cell_backward", "cell_forward", "forward", "initialize"]


def _spec(cell: Any) -> Cell:
    if isinstance(cell, Cell):
        return cell
    return get_cell(cell)


@lru_cache(maxsize=256)
def _further_names(states: tuple[str, ...], name: str) -> tuple[str, ...]:
    """The keywords of the further state components (asked on every call)."""
    return tuple(name.format(s) for s in states)


def _further(spec: Cell, name: str, given: dict[str, Any]) -> tuple:
    """The further state components' arrays (after the hidden state's) from keywords named
    ``name.format(state)``, None for those not given; an unknown keyword is an error."""
    names = _further_names(tuple(spec.states[1:]), name)
    given = {k: v for k, v in given.items() if v is not None}
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise TypeError(
            f"unexpected state {', '.join(unknown)} for the {spec.name!r} cell "
            f"(its states: {', '.join(spec.states)})"
        )
    return tuple(given.get(n) for n in names)


def forward(
    cell: Any,
    x: Any,
    a0: Any,
    parameters: dict[str, Any],
    *,
    c0: Any = None,
    lengths: Any = None,
    reverse: bool = False,
    check_finite: bool = True,
    return_caches: bool = True,
    **initial: Any,
) -> tuple:
    """Run ``cell`` over a whole sequence.

    Parameters
    ----------
    cell : str or Cell
        A registered cell's name (``"rnn"``, ``"rnn_relu"``, ``"lstm"``, ``"gru"``,
        ``"peephole_lstm"``, or one of your own) or a cell object.
    x : array of shape (n_x, m, T_x)
    a0 : array of shape (n_a, m)
    parameters : dict of arrays
        The cell's keys (``xrnn.initialize(cell, ...)`` makes them) and optionally the output
        layer's.
    c0 : array of shape (n_a, m), optional
        The initial memory cell of a cell with a state ``c``; zeros when omitted.
    lengths : integer array of shape (m,), optional
        Each sequence's length (1 ≤ length ≤ T_x); see :func:`xrnn.rnn_forward`.
    reverse : bool, default False
        Run each sequence backwards over its own length.
    check_finite : bool, default True
        Refuse NaN/inf in the inputs and parameters, and lengths out of range.
    return_caches : bool, default True
        False for a forward whose backward never runs (sampling, evaluation): ``caches``
        is then None and no per-step state is kept for it.
    **initial : arrays of shape (n_a, m)
        ``<state>0`` for a cell's further state components (zeros when omitted).

    Returns
    -------
    tuple
        ``(a, y, caches)`` for a cell whose only state is ``a``; ``(a, y, c, caches)`` for a
        cell with a memory cell; in general ``a``, ``y``, then every further state
        component's outputs (each (n_a, m, T_x)), then ``caches``. ``y`` (n_y, m, T_x) is None
        without an output layer.

    Examples
    --------
    >>> import numpy as np, xrnn
    >>> p = xrnn.initialize("peephole_lstm", 3, 5, seed=0)
    >>> x = np.random.default_rng(0).normal(size=(3, 4, 6))
    >>> a, y, c, caches = xrnn.forward("peephole_lstm", x, np.zeros((5, 4)), p)
    >>> a.shape, c.shape, y is None
    ((5, 4, 6), (5, 4, 6), True)
    >>> sorted(xrnn.backward(np.ones_like(a), caches))[:4]
    ['dWc', 'dWf', 'dWi', 'dWo']
    """
    spec = _spec(cell)
    further = _further(spec, "{}0", {"c0": c0, **initial})
    outputs, y, caches = run_forward(
        spec,
        x,
        (a0, *further),
        parameters,
        lengths=lengths,
        reverse=reverse,
        check_finite=check_finite,
        return_caches=return_caches,
    )
    return (outputs[0], y, *outputs[1:], caches)


def backward(
    da: Any,
    caches: tuple,
    *,
    dfinal: tuple | None = None,
    check_finite: bool = True,
    cell: Any = None,
) -> dict[str, Any]:
    """Backpropagation through time for :func:`forward`.

    Parameters
    ----------
    da : array of shape (n_a, m, T_x)
        Upstream gradient of every output hidden state.
    caches : tuple
        ``(step_caches, x)`` from :func:`forward` (or a cell's own forward function).
    dfinal : tuple of arrays of shape (n_a, m), optional
        Upstream gradient of each final state component (``(da_T,)`` or ``(da_T, dc_T)``).
    check_finite : bool, default True
    cell : str or Cell, optional
        Needed only for exercise-style caches (a list of per-step cache tuples), which do not
        record their cell.

    Returns
    -------
    dict
        ``dx (n_x, m, T_x)``, ``da0`` (and ``dc0``, ...) ``(n_a, m)`` and ``"d" + key`` for
        every parameter key of the cell, each of that parameter's shape.
    """
    spec = recorded_cell(caches)
    if spec is None:
        if cell is None:
            raise ValueError(
                "caches must be the caches returned by xrnn.forward (or a cell's forward "
                "function); for a list of per-step cache tuples pass cell="
            )
        spec = _spec(cell)
    elif cell is not None and _spec(cell) is not spec:
        raise ValueError(f"caches come from the {spec.name!r} cell, not {_spec(cell).name!r}")
    return run_backward(spec, da, caches, "xrnn.forward", dfinal=dfinal, check_finite=check_finite)


def initialize(
    cell: Any,
    n_x: int,
    n_a: int,
    n_y: int | None = None,
    *,
    seed: int = 0,
    dtype: Any = None,
    like: Any = None,
) -> dict[str, Any]:
    """Seeded random parameters of ``cell`` (the cell's own rule: weights uniform in
    ``±1/sqrt(n_a)``, biases and vectors as the cell says) and, with ``n_y``, the output
    layer. ``like`` and ``dtype`` as in :func:`xrnn.initialize_rnn`; the same seed gives the
    same values as the cell's own ``initialize_<cell>``."""
    spec = _spec(cell)
    return _initialize(
        spec.draw, spec.output_keys, n_x, n_a, n_y, seed=seed, dtype=dtype, like=like
    )


def cell_forward(
    cell: Any,
    xt: Any,
    a_prev: Any,
    parameters: dict[str, Any],
    *,
    c_prev: Any = None,
    check_finite: bool = True,
    **prev: Any,
) -> tuple:
    """One step of ``cell``.

    Parameters
    ----------
    cell : str or Cell
    xt : array of shape (n_x, m)
    a_prev : array of shape (n_a, m)
    parameters : dict of arrays
    c_prev : array of shape (n_a, m)
        The previous memory cell of a cell with a state ``c`` (required there);
        ``<state>_prev`` likewise for any further state component.
    check_finite : bool, default True

    Returns
    -------
    tuple
        ``(a_next, yt_pred, cache)``, or ``(a_next, c_next, yt_pred, cache)`` for a cell with
        a memory cell (every state component's new value, then ``yt_pred`` (n_y, m) or None,
        then the step's cache tuple for :func:`cell_backward`).
    """
    spec = _spec(cell)
    further = _further(spec, "{}_prev", {"c_prev": c_prev, **prev})
    for state, value in zip(spec.states[1:], further, strict=True):
        if value is None:
            raise TypeError(f"the {spec.name!r} cell's step needs {state}_prev")
    new, yt, cache = run_cell_forward(
        spec, xt, (a_prev, *further), parameters, check_finite=check_finite
    )
    return (*new, yt, cache)


def cell_backward(
    cell: Any,
    da_next: Any,
    cache: tuple,
    *,
    dc_next: Any = None,
    check_finite: bool = True,
    **dnext: Any,
) -> dict[str, Any]:
    """Backward pass of one step of ``cell`` from its cache (:func:`cell_forward`).

    ``da_next`` (and ``dc_next``, ``d<state>_next``) of shape (n_a, m): the upstream
    gradients of the step's new state; an omitted one is zero. Returns ``dxt (n_x, m)``,
    ``da_prev`` (``dc_prev``, ...) ``(n_a, m)`` and ``"d" + key`` for every parameter key.
    """
    spec = _spec(cell)
    further = _further(spec, "d{}_next", {"dc_next": dc_next, **dnext})
    up = (da_next, *further)
    if any(u is None for u in up[1:]):
        from array_api_compat import array_namespace

        xp = array_namespace(da_next)
        up = tuple(xp.zeros_like(da_next) if u is None else u for u in up)
    return run_cell_backward(spec, up, cache, check_finite=check_finite)
