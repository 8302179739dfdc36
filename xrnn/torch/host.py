"""Sequence calls on CPU tensors that autograd does not record, run whole on the compiled
NumPy kernels.

A CPU tensor's memory is a NumPy array without a copy (``Tensor.numpy()`` is a view), so such
a call — a forward, or a backward over the caches one left — checks its tensors once (library,
device, dtype, shapes), runs the engine on their views with the NumPy backend — input side,
loops, finiteness checks, output layer, gradients — and hands back tensors over the arrays it
made (``torch.from_numpy``, no copy). No torch operation runs inside it: torch's threads
neither compete with the compiled loops nor are held at one meanwhile. Tensors that autograd
records run as one operator instead (:mod:`xrnn.torch.autograd`); a cell without compiled
kernels runs on torch's own ops.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from xrnn.backends import get_ops, resolve
from xrnn.cells.base import Cell
from xrnn.core.engine import (
    StepCaches,
    Trace,
    check_forward,
    check_lengths,
    forward_arrays,
    loop_inputs,
    run_checked_backward,
    run_checked_forward,
)
from xrnn.core.host import c_contiguous

__all__ = ["sequence_backward", "sequence_forward", "view"]


def sequence_forward(
    cell: Cell,
    x: Any,
    initial: tuple,
    parameters: Mapping[str, Any],
    *,
    lengths: Any,
    reverse: bool,
    check_finite: bool,
    return_caches: bool,
    private: bool,
) -> tuple[tuple, Any, Any] | None:
    """:func:`xrnn.core.engine.run_forward` on CPU tensors that autograd does not record:
    ``(outputs, y, caches)`` as there, as tensors (the caches' trace too, over the arrays the
    forward made); None, having checked the arguments, where ``cell`` has no compiled kernels
    (the caller then runs torch's own ops)."""
    _, ctx, sizes = check_forward(cell, x, initial, parameters)
    _, m, T, n_a, _ = sizes
    lengths, _ = check_lengths(ctx, lengths, m, T)  # the values: checked on the host below
    xv = view(x)
    host = resolve([("x", xv)])
    if not _lends(host, cell, xv):
        return None
    views = tuple(map(view, initial))
    weights = {k: view(v) for k, v in parameters.items()}
    outputs, y, caches = run_checked_forward(
        cell, forward_arrays(cell, xv, views, weights), host, sizes, xv, views, weights,
        lengths=view(lengths), reverse=reverse, check_finite=check_finite,
        return_caches=return_caches, private=private,
    )  # fmt: skip
    outputs = tuple(_tensor(o) for o in outputs)
    y = None if y is None else _tensor(y)
    if caches is None:
        return outputs, y, None
    trace = caches[0].trace
    saved = trace.saved
    if saved is not None:  # the saved blocks lead each step's rows (the rest: input side)
        saved = _tensor(c_contiguous(saved[:, : cell.saved_blocks * n_a, :], copy=False))
    # the order the loop read x in and the steps that ran, in x's library (the backward on
    # tensors reads them)
    xe, order, _, live = loop_inputs(ctx, x.detach(), lengths, reverse)
    states = tuple(torch.from_numpy(s) for s in trace.states)
    return outputs, y, (StepCaches(Trace(cell, states, saved, xe, live, order), parameters), x)


def sequence_backward(
    cell: Cell,
    named: list,
    trace: Trace,
    parameters: Mapping[str, Any],
    da: Any,
    dfinal: tuple | None,
    dfurther: tuple | None,
    *,
    check_finite: bool,
) -> dict[str, Any] | None:
    """:func:`xrnn.core.engine.run_checked_backward` on CPU tensors that autograd does not
    record, checked as :func:`xrnn.core.engine.run_backward` checks them (``named``: the arrays
    whose values ``check_finite`` checks): every gradient, as tensors; None where ``cell`` has
    no compiled kernels (the caller then runs torch's own ops)."""
    xe = view(trace.x)
    host = resolve([("x", xe)])
    if not _lends(host, cell, xe):
        return None
    order = (
        trace.order if trace.order is None or isinstance(trace.order, str) else view(trace.order)
    )
    views = Trace(
        cell,
        tuple(map(view, trace.states)),
        view(trace.saved),
        xe,
        view(trace.live),
        order,
    )
    grads = run_checked_backward(
        cell, [(name, view(a)) for name, a in named], host, views,
        {k: view(v) for k, v in parameters.items()}, view(da),
        None if dfinal is None else tuple(map(view, dfinal)),
        None if dfurther is None else tuple(map(view, dfurther)),
        check_finite=check_finite,
    )  # fmt: skip
    return {k: _tensor(g) for k, g in grads.items()}


def _lends(host: Any, cell: Cell, like: Any) -> bool:
    """Whether the NumPy backend of ``host`` (its context) has compiled kernels for ``cell``
    in ``like``'s dtype."""
    lends = getattr(get_ops(host.xp), "lends_to_torch", None)
    return lends is not None and lends(cell, like.dtype.name)


def view(t: Any) -> Any:
    """A CPU tensor's memory as a NumPy array (a view; None stays None), for the compiled
    kernels (here and in :mod:`xrnn.torch.autograd`)."""
    # force: detached (a tensor that requires grad), one call; a CPU tensor is not copied
    # (but for a negative or conjugate view's bit, which no kernel reads: then its values)
    return None if t is None else t.numpy(force=True)


def _tensor(a: Any) -> torch.Tensor:
    """A tensor over ``a``'s memory, or over a fresh C-ordered copy where ``a`` runs backwards
    along an axis (a reversed sequence's view), which a tensor cannot."""
    if any(s < 0 for s in a.strides):  # (a view of one step keeps its stride: copy=True)
        a = c_contiguous(a, copy=True)
    return torch.from_numpy(a)
