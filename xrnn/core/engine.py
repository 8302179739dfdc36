"""The engine: one forward time loop and one backward time loop for every cell.

The public functions of each cell module are thin: they resolve the namespace, validate, call
:func:`run_forward`/:func:`run_backward` (or :func:`run_cell_forward`/:func:`run_cell_backward`
for one step) with their :class:`~xrnn.cells.base.Cell` spec, and present the results in the
exercise's tuples.

Buffers are time-major with a feature-major ``(features, m)`` block per step (:mod:`xrnn.core.ops`
stores them): the input side ``GX = Wx x + b`` of all steps is one batched GEMM before the loop,
so each step does one recurrent GEMM ``Wa a⟨t-1⟩`` and the cell's pointwise math. The backward
loop runs from the last step down in chunks of ``tuning.CHUNK_COLUMNS`` step × batch columns; after
each chunk the weight, bias and input gradients of the chunk are 2-D GEMMs over its columns::

    dWa += dRA A_prevᵀ,   dWx += dGX Xᵀ,   db += Σ_columns dGX,   dX = Wxᵀ dGX

Variable lengths: step ``t`` of sequence ``j`` runs only while ``t < lengths[j]``; after that the
state is carried unchanged (a ``where``, no boolean indexing, no data-dependent shape), outputs
are zero and no gradient flows into the step. ``reverse=True`` reverses each sequence over its
own length before the loop and the outputs after it (:func:`xrnn.core.layout.reversal`), which is
how PyTorch defines the backward direction of a bidirectional layer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import array_api_compat

import xrnn.core.tuning as tuning
import xrnn.dask as sharded  # Dask arrays: the same bodies run per batch chunk
import xrnn.torch as differentiable  # tensors autograd records: one operator per sequence
from xrnn.backends import Context, check_values, get_ops, resolve
from xrnn.cells.base import Cell, Stacked
from xrnn.core.activations import softmax
from xrnn.core.inputs import (
    check_da,
    check_shape,
    required,
    sequence_shape,
    shape_of,
    unpack_caches,
)
from xrnn.core.layout import public, reorder, reversal, step_masks, time_major
from xrnn.core.ops import chunk_gradients, vector_rows, weight_gradients
from xrnn.core.params import parameter_items

__all__ = [
    "StepCaches",
    "Trace",
    "backward",
    "check_forward",
    "check_lengths",
    "final_states",
    "forward",
    "gradients",
    "labels",
    "loop_inputs",
    "recorded_cell",
    "weight_gradients",
    "run_backward",
    "run_cell_backward",
    "run_cell_forward",
    "run_forward",
    "small_backward",
    "small_forward",
]


@dataclass(frozen=True)
class Trace:
    """What the forward loop leaves for the backward loop.

    Attributes
    ----------
    cell : Cell
    states : tuple of arrays of shape (T+1, n_a, m)
        Each state component, time-major; block 0 is the initial state, block ``t+1`` the state
        after step ``t`` (carried unchanged past a sequence's length).
    saved : array of shape (T, saved_blocks·n_a, m), or None
    x : array of shape (n_x, m, T_x)
        The input in the order the loop read it (reversed per sequence when ``reverse``).
    live : array of shape (T, 1, m), or None
        1.0 where step ``t`` of sequence ``j`` runs, 0.0 past its length (None: all run).
    order : None, ``"flip"`` or an integer array of shape (m·T,)
        The per-sequence reversal (:func:`xrnn.core.layout.reversal`) when ``reverse``.
    """

    cell: Cell
    states: tuple
    saved: Any
    x: Any
    live: Any
    order: Any
    owned: bool = False  # the state buffers are no cache's: the caller may write into them

    @property
    def T(self) -> int:
        return int(self.x.shape[2])

    def final_states(self) -> tuple:
        """Each state component after the last step of each sequence, (n_a, m)."""
        return tuple(s[self.T, ...] for s in self.states)


# --- the loops -----------------------------------------------------------------------------


def loop_inputs(ctx: Context, x: Any, lengths: Any, reverse: bool) -> tuple[Any, Any, Any, Any]:
    """What the loops read besides the weights: ``x`` in the order the loop reads it, the
    per-sequence reversal (``reverse``), and with lengths (not all ``T``) the steps that do
    not run (``done``, boolean (T, 1, m)) and those that do (``live``, 0/1 of the dtype)."""
    xp, ops = ctx.xp, get_ops(ctx.xp)
    _, m, T = map(int, x.shape)
    order = reversal(xp, lengths, m, T) if reverse else None
    done = live = None
    if lengths is not None and not ops.all_full(lengths, T):
        done, live = step_masks(xp, lengths, T, ctx.dtype, ctx.device)
    return reorder(xp, x, order), order, done, live


def forward(
    ctx: Context,
    cell: Cell,
    W: Any,
    x: Any,
    state0: tuple,
    *,
    lengths: Any = None,
    reverse: bool = False,
    keep: bool = True,
) -> Trace:
    """Run ``cell`` over ``x`` (n_x, m, T) from ``state0``; return the :class:`Trace`.

    ``keep=False``: for a forward whose backward never runs. Where the backend writes into
    buffers, the input side and the saved blocks then exist for one chunk of steps at a time
    and the trace keeps the states alone (``saved`` None)."""
    ops = get_ops(ctx.xp)
    T = int(x.shape[2])
    xe, order, done, live = loop_inputs(ctx, x, lengths, reverse)
    if done is None:  # the backend's whole forward, input side included
        if not keep:
            states = ops.forward_outputs(cell, W, xe, state0)
            if states is not None:
                return Trace(cell, states, None, xe, live, order, owned=True)
        else:
            made = ops.forward_small(cell, W, xe, state0)
            if made is not None:
                return Trace(cell, made[0], made[1], xe, live, order)
    outputs = None if keep else ops.outputs_store(cell, state0, T)
    if outputs is not None:
        _forward_chunks(ctx, cell, W, xe, state0, done, outputs)
        states, _ = outputs.result()
        return Trace(cell, states, None, xe, live, order, owned=True)
    GX = ops.input_side(cell, W, xe)  # (T, k n_a, m)
    store = ops.forward_store(cell, state0, GX)
    state = tuple(state0)
    if done is not None or not ops.forward_loop(cell, W, GX, store):  # else: all steps at once
        for t in range(T):
            new, saved = ops.forward_step(cell, W, GX[t, ...], state, store.slot(t))
            if done is not None:
                new = ops.keep_finished(done[t, ...], new, state)
            store.put(t, new, saved)
            state = new
    states, saved = store.result()
    return Trace(cell, states, saved, xe, live, order)


def small_forward(
    ctx: Context,
    cell: Cell,
    x: Any,
    initial: tuple,
    parameters: Any,
    *,
    reverse: bool,
    check_finite: bool,
) -> tuple[Trace, Stacked] | None:
    """The caching forward of a call on arguments :func:`check_forward` checked, over all
    ``T`` steps of every sequence (no lengths) and without an output layer, where the backend
    runs it whole (:meth:`xrnn.core.ops.Ops.forward_small`): its trace and the weights as
    stacked for it, the values checked as :func:`run_checked_forward` checks them — with none
    of that function's bookkeeping, which costs more than small steps do. None where the
    backend declines (nothing has run)."""
    xp, ops = ctx.xp, get_ops(ctx.xp)
    n_a, m = map(int, initial[0].shape)
    with call_scope(ctx, check_finite):
        state0 = tuple(ops.zeros((n_a, m), ctx) if s is None else s for s in initial)
        # apart: a backend that declines has stacked none of the weights (its caller does)
        W = cell.stack(xp, parameters, n_a, apart=True)
        order = "flip" if reverse else None
        xe = reorder(xp, x, order)
        made = ops.forward_small(cell, W, xe, state0)
        if made is None:
            return None
        trace = Trace(cell, made[0], made[1], xe, None, order)
        # the inputs and what the loop made, in one read; named only where one is not finite
        values = [x, *(s for s in initial if s is not None), *parameters.values()]
        if check_finite and not ops.all_finite([*values, *trace.states], []):
            named = forward_arrays(cell, x, initial, parameters)
            produced = list(zip(_output_names(cell), trace.states, strict=True))
            check_values(ctx, named, (), produced)
    return trace, W


def _forward_chunks(
    ctx: Context, cell: Cell, W: Any, xe: Any, state0: tuple, done: Any, outputs: Any
) -> None:
    """The forward loop chunk by chunk into ``outputs`` (:meth:`xrnn.core.ops.Ops.outputs_store`):
    per chunk of steps (:data:`xrnn.core.tuning.FORWARD_CHUNK_BYTES` of input side, at most
    :data:`xrnn.core.tuning.FORWARD_CHUNK_SHARE` of the output ``a``) its input side, its
    steps (the backend's whole loop where it has one) and its saved blocks, then dropped.
    A backend that runs the whole forward at once (:meth:`xrnn.core.ops.Ops.forward_outputs`)
    needs none of this."""
    xp, ops = ctx.xp, get_ops(ctx.xp)
    _, m, T = map(int, xe.shape)
    n_a = int(state0[0].shape[0])
    itemsize = xp.finfo(ctx.dtype).bits // 8
    step_bytes, output_bytes = cell.blocks * n_a * m * itemsize, n_a * m * T * itemsize
    share = max(tuning.FORWARD_CHUNK_MIN_BYTES, tuning.FORWARD_CHUNK_SHARE * output_bytes)
    chunk_bytes = min(tuning.FORWARD_CHUNK_BYTES, share)
    k = max(1, min(T, int(chunk_bytes // step_bytes)))
    work = None  # the saved blocks of a chunk, where they do not go over its input side
    if cell.saved_blocks and not ops.saved_in_gx(cell):
        work = xp.empty((k, cell.saved_blocks * n_a, m), dtype=ctx.dtype, device=ctx.device)
    reuse: dict = {}  # what the backend's loop prepares once for every chunk (Ops.forward_loop)
    state = tuple(state0)
    for start in range(0, T, k):
        # a function per chunk: its input side is gone before the next one's is made
        state = _forward_chunk(ctx, cell, W, xe, state, done, outputs, start, k, work, reuse)


def _forward_chunk(
    ctx: Context,
    cell: Cell,
    W: Any,
    xe: Any,
    state: tuple,
    done: Any,
    outputs: Any,
    start: int,
    k: int,
    work: Any,
    reuse: dict,
) -> tuple:
    """Steps ``start`` to ``start + k`` (or ``T``) of :func:`_forward_chunks`; returns the
    state after them."""
    ops = get_ops(ctx.xp)
    end = min(int(xe.shape[2]), start + k)
    GX = ops.input_side(cell, W, xe[:, :, start:end])
    saved = GX if ops.saved_in_gx(cell) else None if work is None else work[: end - start, ...]
    store = outputs.steps(start, end, saved)
    if done is not None or not ops.forward_loop(cell, W, GX, store, reuse):
        for j in range(end - start):
            new, saved_t = ops.forward_step(cell, W, GX[j, ...], state, store.slot(j))
            if done is not None:
                new = ops.keep_finished(done[start + j, ...], new, state)
            store.put(j, new, saved_t)
            state = new
    return tuple(s[end, ...] for s in outputs.states)


def backward(
    ctx: Context,
    W: Any,
    trace: Trace,
    da: Any,
    dfinal: tuple | None = None,
    dfurther: tuple | None = None,
) -> tuple[Any, tuple, Any, Any, Any, Any]:
    """Backpropagation through time over ``trace``.

    Parameters
    ----------
    da : array of shape (n_a, m, T)
        Upstream gradient of every output hidden state (read, never written).
    dfinal : tuple of arrays of shape (n_a, m), optional
        Upstream gradient of each final state component.
    dfurther : tuple of (arrays of shape (n_a, m, T) or None), optional
        Upstream gradient of every output of each further state component (``c``), one entry
        per component after the hidden state. The backends' whole-chunk and whole-loop
        kernels take the hidden state's only: given any, the engine steps.

    Returns
    -------
    dx : array of shape (n_x, m, T)
    dstate0 : tuple of arrays of shape (n_a, m)
    dWa, dWx, db : stacked gradients
    dV : the vectors' summed gradients (v n_a, 1) for a cell with vectors, else None
    """
    xp, ops, cell = ctx.xp, get_ops(ctx.xp), trace.cell
    xe, H, live = trace.x, trace.states[0], trace.live
    n_x, m, T = map(int, xe.shape)
    n_a = int(H.shape[1])
    k = max(1, min(T, tuning.CHUNK_COLUMNS // m))
    dae = reorder(xp, da, trace.order)
    dfe = tuple(None if d is None else reorder(xp, d, trace.order) for d in dfurther or ())
    dead = None
    if live is not None:  # outputs past a sequence's length are constant zeros
        dae = dae * public(xp, live)
        dfe = tuple(None if d is None else d * public(xp, live) for d in dfe)
        dead = 1 - live
    stepwise = live is not None or any(d is not None for d in dfe)
    g = _carried(ctx, cell, (n_a, m), dfinal)
    dA_all = time_major(xp, dae) if k == T else None  # one chunk: every step's, made once
    if not stepwise and dA_all is not None:  # the backend's whole backward, where it runs it
        whole = _whole_backward(ctx, W, trace, dA_all, g)
        if whole is not None:
            return whole
    store = ops.gradient_columns(cell.gradient_rows(n_a), k, m, H, cell.recurrent_rows(n_a))
    weights: tuple | None = None  # (dWa, dWx, db, dV), summed over the chunks
    dX: list[Any] = []
    end = T
    while end > 0:
        start = max(0, end - k)
        # contiguous (n_a, m) block per step
        dAc = dA_all if dA_all is not None else time_major(xp, dae[:, :, start:end])
        dFc = tuple(None if d is None else time_major(xp, d[:, :, start:end]) for d in dfe)
        # a backend may run the whole chunk, steps and gradients, or only its steps (no
        # lengths, no further states' outputs); else the engine steps
        whole = None if stepwise else ops.backward_chunk(cell, W, trace, dAc, start, g, store)
        if whole is not None:
            g, part, dX_c = whole
        else:
            g = _chunk_steps(ctx, cell, W, trace, (dAc, *dFc), start, g, store, dead, stepwise)
            part, dX_c = chunk_gradients(xp, cell, W, trace, store, start, end - start)
        weights = part if weights is None else tuple(map(_add, weights, part))
        dX.append(dX_c)
        end = start
    assert weights is not None  # T >= 1
    dX2 = dX[0] if len(dX) == 1 else xp.concat(dX[::-1], axis=1)
    return (_input_gradient(xp, dX2, trace), g, *weights)


def _input_gradient(xp: Any, dX: Any, trace: Trace) -> Any:
    """``dx`` (n_x, m, T) in the public order from the loop's ``dX`` (n_x, T·m), a block of
    ``m`` columns per step in loop order."""
    n_x, m, T = map(int, trace.x.shape)
    dx = xp.permute_dims(xp.reshape(dX, (n_x, T, m)), (0, 2, 1))
    return reorder(xp, dx, trace.order)


def _carried(ctx: Context, cell: Cell, shape: tuple, dfinal: tuple | None) -> tuple:
    """The state gradients carried into the last step: zeros, or copies of ``dfinal`` — the
    engine's own arrays, which a step kernel may overwrite."""
    ops = get_ops(ctx.xp)
    if dfinal is None:
        return tuple(ops.zeros(shape, ctx) for _ in cell.states)
    return tuple(ops.scratch(d) for d in dfinal)


def _whole_backward(ctx: Context, W: Any, trace: Trace, dA: Any, g: tuple) -> Any:
    """:func:`backward`'s result from the backend's whole backward
    (:meth:`xrnn.core.ops.Ops.backward_small`), or None where it declines (``g`` untouched)."""
    whole = get_ops(ctx.xp).backward_small(trace.cell, W, trace, dA, g)
    if whole is None:
        return None
    g, weights, dX = whole
    return (_input_gradient(ctx.xp, dX, trace), g, *weights)


def small_backward(ctx: Context, W: Any, trace: Trace, dA: Any, dfinal: tuple | None) -> Any:
    """:func:`backward` as the backend runs a call of small steps whole
    (:meth:`xrnn.core.ops.Ops.backward_small`), or None where it declines: ``dA`` (T, n_a, m)
    the upstream gradients of the hidden state's outputs in loop order, C-contiguous (those
    of further states' outputs: none), ``trace`` without lengths."""
    g = _carried(ctx, trace.cell, tuple(map(int, dA.shape[1:])), dfinal)
    return _whole_backward(ctx, W, trace, dA, g)


def _chunk_steps(
    ctx: Context,
    cell: Cell,
    W: Any,
    trace: Trace,
    dS: tuple,
    start: int,
    g: tuple,
    store: Any,
    dead: Any,
    stepwise: bool,
) -> tuple:
    """A chunk's backward steps, its last step first — the backend's own loop where it has
    one (not ``stepwise``: no lengths, no further states' outputs), else step by step;
    returns the gradient carried into step ``start - 1``. ``dS``: the chunk's upstream
    gradients per step, (k, n_a, m) time-major, the hidden state's then each further state's
    (or None); ``dead`` (T, 1, m): ``1 - live``, with lengths."""
    xp, ops, live, saved = ctx.xp, get_ops(ctx.xp), trace.live, trace.saved
    dA = dS[0]
    if not stepwise:
        stepped = ops.backward_steps(cell, W, trace, dA, start, g, store)
        if stepped is not None:
            return stepped
    WaT = W.Wa.T
    for t in reversed(range(start, start + int(dA.shape[0]))):
        j = t - start
        up = tuple(gi if d is None else gi + d[j, ...] for gi, d in zip(g, dS, strict=False))
        up = (*up, *g[len(dS) :])
        up_live = up if live is None else tuple(u * live[t, ...] for u in up)
        prev = tuple(s[t, ...] for s in trace.states)
        new = tuple(s[t + 1, ...] for s in trace.states)
        saved_t = None if saved is None else saved[t, ...]
        dgx, dra, direct = ops.backward_step(cell, saved_t, prev, new, up_live, store.slot(j), W)
        store.put(j, dgx, dra)
        if cell.vectors:  # the vectors' rows stay in the store, summed with the chunk
            dra = dra[: int(WaT.shape[1]), :]
        da_prev = xp.matmul(WaT, dra)
        if direct[0] is not None:
            da_prev = da_prev + direct[0]
        g = (da_prev, *direct[1:])
        if live is not None:  # a finished sequence passes its gradient straight through
            g = tuple(gi + u * dead[t, ...] for gi, u in zip(g, up, strict=True))
    return g


def _add(a: Any, b: Any) -> Any:
    return None if a is None else a + b


# --- the exercise's compact caches ---------------------------------------------------------


class StepCaches(Sequence):
    """The ``step_caches`` of ``caches = (step_caches, x)``: ``[t]`` is the exercise's cache
    tuple of the ``t``-th step the loop ran, built on demand from views of the trace's stacked
    buffers (with ``reverse``, step ``t`` of the loop read the sequence's ``t``-th step from
    its end).

    Attributes
    ----------
    trace : Trace
    parameters : dict of arrays
    stacked : Stacked or None
        The weights as the forward stacked them, which the backward reads again (None: it
        stacks ``parameters``).
    """

    def __init__(
        self,
        trace: Trace,
        parameters: Mapping[str, Any],
        finals: Any = None,
        stacked: Stacked | None = None,
    ) -> None:
        self.trace, self.parameters, self._finals = trace, parameters, finals
        self.stacked = stacked

    @property
    def cell(self) -> Cell:
        return self.trace.cell

    def final_states(self) -> tuple:
        """Each state component after each sequence's last step: ``(a_T,)`` or
        ``(a_T, c_T)``, each (n_a, m) — with ``lengths``, the state at the sequence's own end.
        (Where autograd recorded the forward, these are the ones it differentiates.)"""
        return self.trace.final_states() if self._finals is None else self._finals

    def __len__(self) -> int:
        return self.trace.T

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[t] for t in range(*index.indices(len(self)))]
        T = len(self)
        t = int(index)
        if t < 0:
            t += T
        if not 0 <= t < T:
            raise IndexError(f"step {index} is out of range for {T} time steps")
        tr = self.trace
        return tr.cell.cache_tuple(
            tuple(s[t, ...] for s in tr.states),
            tuple(s[t + 1, ...] for s in tr.states),
            None if tr.saved is None else tr.saved[t, ...],
            tr.x[:, :, t],
            self.parameters,
        )

    @classmethod
    def from_tuples(cls, cell: Cell, steps: Any, x: Any) -> StepCaches:
        """Stack a list of exercise-style per-step cache tuples (the exercise's own loop)."""
        if not isinstance(steps, Sequence) or isinstance(steps, str) or len(steps) == 0:
            raise ValueError(
                "caches[0] must be the step caches returned by the forward function "
                f"(or a non-empty list of {cell.cache_layout} tuples)"
            )
        parts = []
        for t, s in enumerate(steps):
            if not isinstance(s, tuple) or len(s) != cell.cache_size:
                raise ValueError(
                    f"caches[0][{t}] must be a {cell.cache_size}-tuple {cell.cache_layout}"
                )
            parts.append(cell.cache_parts(s))
            # every step's arrays must match step 0's (else a raw stacking error later)
            for what, got, first in (
                ("states", (*parts[t][0], *parts[t][1]), (*parts[0][0], *parts[0][1])),
                ("x", (parts[t][3],), (parts[0][3],)),
            ):
                for a, b in zip(got, first, strict=True):
                    if getattr(a, "shape", None) != getattr(b, "shape", None):
                        raise ValueError(
                            f"caches[0][{t}] has {what} of shape {getattr(a, 'shape', None)} "
                            f"but caches[0][0] has {getattr(b, 'shape', None)}: the step "
                            f"caches must come from one forward pass"
                        )
        xp = resolve([("caches[1] (x)", x)]).xp
        states = tuple(
            xp.stack([parts[0][0][i]] + [p[1][i] for p in parts], axis=0)
            for i in range(len(cell.states))
        )
        saved = xp.stack([p[2] for p in parts], axis=0) if cell.saved_blocks else None
        return cls(Trace(cell, states, saved, x, None, None), parts[0][4])


# --- the public functions' bodies ------------------------------------------------------------


def check_lengths(ctx: Context, lengths: Any, m: int, T: int) -> tuple[Any, Any]:
    """``lengths`` as an integer array of shape (m,) in the inputs' library and device, and
    the condition ``1 ≤ length ≤ T`` for :func:`xrnn.backends.check_values` (a 0-d boolean
    array and its message, computed on the device: the caller reads it with its other checks,
    in one host read). ``(None, None)`` without lengths.

    A Python sequence of ints is converted; an array must already be the inputs' library and
    device (no silent copies).
    """
    if lengths is None:
        return None, None
    xp = ctx.xp
    if array_api_compat.is_array_api_obj(lengths):
        if array_api_compat.array_namespace(lengths) is not xp:
            raise TypeError(
                f"lengths must be an array of the inputs' library; got "
                f"{type(lengths).__module__}.{type(lengths).__qualname__}"
            )
        where = array_api_compat.device(lengths)
        # None: a value being traced (jax.jit, jax.grad) has no device yet
        if where != ctx.device and None not in (where, ctx.device):
            raise ValueError(
                f"lengths is on device {where} but x is on device {ctx.device}; move one of them"
            )
    elif isinstance(lengths, Sequence) and not isinstance(lengths, str):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in lengths):
            raise TypeError("lengths must hold integers")
        if not all(1 <= v <= T for v in lengths):  # host values: checked here, whatever size
            raise ValueError(f"lengths must lie in [1, {T}] (1 ≤ length ≤ T_x)")
        lengths = xp.asarray(list(lengths), device=ctx.device)  # the default integer dtype
    else:
        raise TypeError(
            f"lengths must be an integer array of shape (m,) or a list of ints; got "
            f"{type(lengths).__name__}"
        )
    if not xp.isdtype(lengths.dtype, "integral"):
        raise TypeError(f"lengths must have an integer dtype, got {lengths.dtype}")
    if tuple(map(int, lengths.shape)) != (m,):
        raise ValueError(
            f"lengths has shape {tuple(lengths.shape)}; expected ({m},), one length per "
            f"sequence of the batch"
        )
    if array_api_compat.is_dask_array(lengths):
        return lengths, None  # lazy: checked inside each batch chunk's task, no compute here
    in_range = xp.all((lengths >= 1) & (lengths <= T))
    return lengths, (in_range, f"lengths must lie in [1, {T}] (1 ≤ length ≤ T_x)")


def _state_names(cell: Cell, suffix: str) -> tuple[str, ...]:
    return labels(tuple(cell.states), "{}" + suffix)


def _output_names(cell: Cell) -> tuple[str, ...]:
    return labels(tuple(cell.states), "the output {}")


@lru_cache(maxsize=256)
def labels(items: tuple[str, ...], template: str) -> tuple[str, ...]:
    """Each of ``items`` (state components, parameter keys) in ``template``, such as
    ``"d{}0"``: made once, as calls ask for them several times each."""
    return tuple(template.format(s) for s in items)


def call_scope(ctx: Context, check_finite: bool) -> contextlib.AbstractContextManager:
    """What a call runs under: its arrays' device (CuPy launches on the current device), and
    with ``check_finite`` no floating-point warnings of the library's (non-finite results
    raise instead)."""
    ops = get_ops(ctx.xp)
    device = ops.on_device(ctx.device)
    if not check_finite:
        return device
    if isinstance(device, contextlib.nullcontext):  # no device to enter (an ExitStack costs)
        return ops.quiet()
    scope = contextlib.ExitStack()
    scope.enter_context(device)
    scope.enter_context(ops.quiet())
    return scope


def forward_arrays(cell: Cell, x: Any, initial: tuple, parameters: Any) -> list:
    """A sequence forward's array arguments with the names its messages give them."""
    return [
        ("x", x),
        *zip(_state_names(cell, "0"), initial, strict=True),
        *parameter_items(parameters, cell.keys + cell.output_keys),
    ]


def check_forward(
    cell: Cell, x: Any, initial: tuple, parameters: Any
) -> tuple[list, Context, tuple[int, int, int, int, int | None]]:
    """A sequence forward's arguments checked (library, device, dtype, shapes and keys, not
    values): the named arrays, the call's context and its sizes ``(n_x, m, T, n_a, n_y)``."""
    names = _state_names(cell, "0")
    named = forward_arrays(cell, x, initial, parameters)
    ctx = resolve(named)
    n_x, m, T = sequence_shape(x)
    n_a, _ = shape_of(names[0], initial[0], ("n_a", "m"))
    check_shape(names[0], initial[0], (n_a, m), f"m={m} from x")
    for name, s in zip(names[1:], initial[1:], strict=True):
        if s is not None:
            check_shape(name, s, (n_a, m), f"the shape of {names[0]}")
    n_y = cell.validate(parameters, n_x, n_a)
    return named, ctx, (n_x, m, T, n_a, n_y)


def run_forward(
    cell: Cell,
    x: Any,
    initial: tuple,
    parameters: Any,
    *,
    lengths: Any = None,
    reverse: bool = False,
    check_finite: bool = True,
    return_caches: bool = True,
    private: bool = True,
) -> tuple[tuple, Any, Any]:
    """The body of ``<cell>_forward``.

    ``initial`` holds the initial state components (``a0`` first; a later one may be None for
    zeros). Returns ``(outputs, y, caches)``: ``outputs`` each state component of every step
    (n_a, m, T) — zero past each length —, ``y`` the output layer's softmax (n_y, m, T) or None,
    ``caches = (StepCaches, x)``, or None with ``return_caches=False``. ``private=False`` (a
    caller that only reads the outputs, such as a lower layer of a stack) may receive views of
    the caches instead of copies.

    PyTorch tensors that autograd records (or that ``torch.compile`` or ``torch.func``
    transforms) run as one operator whose backward is xrnn's (:mod:`xrnn.torch.autograd`).
    """
    names = _state_names(cell, "0")
    required(("x", x), (names[0], initial[0]))
    if differentiable.records(x, *initial, lengths, parameters=parameters):
        from xrnn.torch.autograd import sequence_forward

        return sequence_forward(
            cell, x, initial, parameters, lengths=lengths, reverse=reverse,
            check_finite=check_finite, return_caches=return_caches,
        )  # fmt: skip
    if sharded.is_dask_call(x, *initial, lengths, parameters=parameters):
        return sharded.forward(
            cell, x, initial, parameters, lengths=lengths, reverse=reverse,
            check_finite=check_finite,
        )  # fmt: skip
    if differentiable.hosted(x):  # CPU tensors: the whole call on NumPy views of them
        from xrnn.torch.host import sequence_forward as host_forward

        hosted = host_forward(
            cell, x, initial, parameters, lengths=lengths, reverse=reverse,
            check_finite=check_finite, return_caches=return_caches, private=private,
        )  # fmt: skip
        if hosted is not None:
            return hosted
    named, ctx, sizes = check_forward(cell, x, initial, parameters)
    return run_checked_forward(
        cell, named, ctx, sizes, x, initial, parameters, lengths=lengths, reverse=reverse,
        check_finite=check_finite, return_caches=return_caches, private=private,
    )  # fmt: skip


def run_checked_forward(
    cell: Cell,
    named: list,
    ctx: Context,
    sizes: tuple[int, int, int, int, int | None],
    x: Any,
    initial: tuple,
    parameters: Any,
    *,
    lengths: Any,
    reverse: bool,
    check_finite: bool,
    return_caches: bool,
    private: bool,
) -> tuple[tuple, Any, Any]:
    """:func:`run_forward` on arguments :func:`check_forward` has checked (its ``named``,
    ``ctx`` and ``sizes``), such as the PyTorch operator's NumPy views of tensors it checked
    itself. The values (finiteness, the lengths' range) are checked here."""
    _, m, T, n_a, n_y = sizes
    xp = ctx.xp
    ops = get_ops(xp)
    with call_scope(ctx, check_finite):
        lengths, in_range = check_lengths(ctx, lengths, m, T)
        if check_finite and in_range is not None:
            # their range is read with everything else, after the loop (one host read); the
            # loop meanwhile runs on lengths held to [1, T], so that none indexes outside x
            lengths = xp.clip(lengths, 1, T)
        state0 = tuple(ops.zeros((n_a, m), ctx) if s is None else s for s in initial)
        if array_api_compat.is_jax_namespace(xp):  # the loop as lax.scan (xrnn.jax.scan)
            result = _scanned_forward(
                ctx, cell, x, state0, parameters, lengths, reverse, return_caches, n_y
            )
            if check_finite:
                outputs, y = result[0], result[1]
                produced = [*zip(_output_names(cell), outputs, strict=True), ("the output y", y)]
                check_values(ctx, named, [in_range], produced)
            return result
        # without caches, stacked only where a backend reads the stacked weights (the compiled
        # NumPy loops read each gate's rows where the parameters hold them: no copy beside the
        # outputs); the caching forward's copy is small beside its caches, and its loops read
        # each thread's rows in one GEMM
        W = cell.stack(xp, parameters, n_a, apart=not return_caches)
        trace = forward(
            ctx, cell, W, x, state0, lengths=lengths, reverse=reverse, keep=return_caches
        )
        steps = [s[1:, ...] for s in trace.states]  # (T, n_a, m) each
        if trace.live is not None and trace.owned:  # zero past each length, in place
            for s in steps:
                s *= trace.live
        elif trace.live is not None:
            steps = [s * trace.live for s in steps]
        y = None
        if n_y is not None:
            w, b = cell.output_keys
            y = ops.output_layer(parameters[w], parameters[b], steps[0])
            if trace.live is not None:
                y = y * public(xp, trace.live)
            y = reorder(xp, y, trace.order)
        if check_finite:  # the inputs, the lengths' range and what the loop made: one read
            produced = [*zip(_output_names(cell), trace.states, strict=True), ("the output y", y)]
            check_values(ctx, named, [in_range], produced)
        outputs = tuple(reorder(xp, public(xp, s), trace.order) for s in steps)
        if not return_caches:
            return outputs, y, None
        # Without lengths (or with a plain flip) the outputs are views of the trace's states,
        # which the backward pass reads: the caller gets copies it may write into
        if private and trace.live is None and (trace.order is None or isinstance(trace.order, str)):
            outputs = tuple(get_ops(xp).private(o) for o in outputs)
        return outputs, y, (StepCaches(trace, parameters, stacked=W), x)


def _scanned_forward(
    ctx: Context,
    cell: Cell,
    x: Any,
    state0: tuple,
    parameters: Any,
    lengths: Any,
    reverse: bool,
    return_caches: bool,
    n_y: int | None,
) -> tuple[tuple, Any, Any]:
    """:func:`run_forward` on JAX arrays: one ``lax.scan`` differentiable through xrnn's own
    backward (:mod:`xrnn.jax.scan`)."""
    from xrnn.jax.scan import sequence

    xp = ctx.xp
    weights = tuple(parameters[k] for k in cell.keys)
    outputs, _, states, saved = sequence(
        cell, bool(reverse), x, state0, weights, lengths, bool(return_caches)
    )
    xe, order, _, live = loop_inputs(ctx, x, lengths, reverse)
    y = None
    if n_y is not None:
        w, b = cell.output_keys
        H = xp.permute_dims(outputs[0], (2, 0, 1))
        y = get_ops(xp).output_layer(parameters[w], parameters[b], H)
        if live is not None:  # zero past each length (where, is the same in either order)
            y = y * public(xp, live)
    if not return_caches:
        return outputs, y, None
    return outputs, y, (StepCaches(Trace(cell, states, saved, xe, live, order), parameters), x)


def final_states(xp: Any, outputs: tuple, lengths: Any, reverse: bool) -> tuple:
    """Each state component after each sequence's last step, ``(n_a, m)``, from its outputs
    ``(n_a, m, T)`` (a forward without caches): the loop ends at a sequence's last step going
    forward (``lengths[j] - 1``), at its first going backward."""
    if reverse:
        return tuple(o[:, :, 0] for o in outputs)
    if lengths is None:
        return tuple(o[:, :, -1] for o in outputs)
    n_a, m, T = map(int, outputs[0].shape)
    where = xp.arange(m, dtype=lengths.dtype, device=array_api_compat.device(lengths)) * T
    where = where + lengths - 1
    return tuple(xp.take(xp.reshape(o, (n_a, m * T)), where, axis=1) for o in outputs)


def recorded_cell(caches: Any) -> Cell | None:
    """The cell whose forward pass made ``caches`` (None for an exercise-style list of step
    tuples, which records none, or for something that is not caches at all)."""
    if isinstance(caches, tuple | list) and len(caches) == 2:
        steps = caches[0]
        if isinstance(steps, StepCaches | sharded.DaskCaches):
            return steps.cell
    return None


def run_backward(
    cell: Cell,
    da: Any,
    caches: Any,
    forward_name: str,
    *,
    dfinal: tuple | None = None,
    dfurther: tuple | None = None,
    check_finite: bool = True,
) -> dict[str, Any]:
    """The body of ``<cell>_backward``: ``dx``, the initial-state gradients (``da0``,
    ``dc0``) and every parameter gradient (``"d" + key``). ``dfurther``: the upstream
    gradients of the further state components' outputs (n_a, m, T) or None, as
    :func:`backward` takes them."""
    required(("da", da))
    steps, x = unpack_caches(caches, forward_name)
    lazy = isinstance(steps, sharded.DaskCaches)
    if sharded.is_dask_call(da, x) and not lazy:
        raise TypeError(
            "da is a Dask array but the caches come from an in-memory forward call; pass Dask "
            "arrays to both or to neither"
        )
    T_x = int(x.shape[-1]) if len(getattr(x, "shape", ())) == 3 else None
    if not lazy and T_x is not None and isinstance(steps, Sequence) and len(steps) != T_x:
        raise ValueError(
            f"caches[0] holds {len(steps)} step caches but caches[1] (x) has T_x={T_x} steps: "
            f"pass the caches of one {forward_name} call unchanged"
        )
    if not isinstance(steps, StepCaches | sharded.DaskCaches):
        steps = StepCaches.from_tuples(cell, steps, x)
    if steps.cell is not cell:
        raise ValueError(
            f"caches come from {steps.cell.forward_name}, not {forward_name}; pass them to "
            f"{steps.cell.backward_name}"
        )
    if lazy:
        return sharded.backward(
            cell, da, steps, forward_name, dfinal=dfinal, check_finite=check_finite
        )
    trace, parameters = steps.trace, steps.parameters
    final_names = _state_names(cell, "_final")
    further_names = [f"d{n}" for n in cell.states[1:]]
    named = [
        ("da", da),
        ("caches[1] (x)", x),
        *((f"caches[0] ({n} states)", s) for n, s in zip(cell.states, trace.states, strict=True)),
        ("caches[0] (saved gates)", trace.saved),
        *(() if dfinal is None else zip(final_names, dfinal, strict=True)),
        *(() if dfurther is None else zip(further_names, dfurther, strict=True)),
        *parameter_items(parameters, cell.keys),
    ]
    ctx = resolve(named)
    n_x, m, T = sequence_shape(x)
    n_a = int(trace.states[0].shape[1])
    cell.validate(parameters, n_x, n_a)
    for s in trace.states:
        check_shape("caches[0] states", s, (T + 1, n_a, m), "(T_x+1, n_a, m) of caches[1] (x)")
    check_da(da, n_a, m, T)
    if dfinal is not None:
        for name, d in zip(final_names, dfinal, strict=True):
            check_shape(name, d, (n_a, m), "(n_a, m) of the final state")
    for name, d in zip(cell.states[1:], dfurther or (), strict=False):
        if d is not None:
            check_shape(f"d{name}", d, (n_a, m, T), "(n_a, m, T_x) of the outputs")
    arrays = [a for _, a in named]
    if differentiable.hosted(x) and not differentiable.records(*arrays, trace.x):
        from xrnn.torch.host import sequence_backward as host_backward

        # CPU tensors: the whole call on NumPy views of them
        grads = host_backward(
            cell, named, trace, parameters, da, dfinal, dfurther, check_finite=check_finite
        )
        if grads is not None:
            return grads
    return run_checked_backward(
        cell, named, ctx, trace, parameters, da, dfinal, dfurther, check_finite=check_finite,
        stacked=steps.stacked,
    )  # fmt: skip


def run_checked_backward(
    cell: Cell,
    named: list,
    ctx: Context,
    trace: Trace,
    parameters: Any,
    da: Any,
    dfinal: tuple | None,
    dfurther: tuple | None,
    *,
    check_finite: bool,
    stacked: Stacked | None = None,
) -> dict[str, Any]:
    """:func:`run_backward` on arguments it has checked (``named``: the arrays whose values
    ``check_finite`` checks, with their names; ``ctx``: their context), such as the PyTorch
    operator's NumPy views of what its forward made; ``stacked``: the weights as the forward
    stacked them (None: stacked here)."""
    n_a = int(trace.states[0].shape[1])
    with call_scope(ctx, check_finite):
        if array_api_compat.is_jax_namespace(ctx.xp):
            grads = _scanned_backward(ctx, cell, trace, parameters, da, dfinal, dfurther)
        else:
            W = cell.stack(ctx.xp, parameters, n_a) if stacked is None else stacked
            grads = gradients(cell, backward(ctx, W, trace, da, dfinal, dfurther))
        if check_finite:  # the inputs and the gradients they gave: one host read
            check_values(ctx, named, (), _gradient_items(grads))
    return grads


def gradients(cell: Cell, made: tuple) -> dict[str, Any]:
    """:func:`run_backward`'s dictionary from what :func:`backward` returns."""
    dx, dstate0, dWa, dWx, db, dV = made
    n_a = int(dstate0[0].shape[0])
    grads = {"dx": dx}
    grads.update({"d" + n: d for n, d in zip(_state_names(cell, "0"), dstate0, strict=True)})
    grads.update(cell.unstack(dWa, dWx, db, n_a))
    if dV is not None:
        grads.update(cell.unstack_vectors(dV, n_a))
    return grads


def _gradient_items(grads: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(f"the gradient {k}", g) for k, g in grads.items()]


def _scanned_backward(
    ctx: Context,
    cell: Cell,
    trace: Trace,
    parameters: Any,
    da: Any,
    dfinal: tuple | None,
    dfurther: tuple | None,
) -> dict[str, Any]:
    """:func:`run_backward` on JAX arrays: one reverse ``lax.scan`` (:mod:`xrnn.jax.scan`)."""
    from xrnn.jax.scan import sequence_backward

    xp = ctx.xp
    zeros = xp.zeros_like(da)
    further = dfurther or (None,) * (len(trace.states) - 1)
    further = tuple(zeros if d is None else d for d in further)
    finals = tuple(xp.zeros_like(s[0]) for s in trace.states) if dfinal is None else tuple(dfinal)
    flip = isinstance(trace.order, str)
    dx, dinitial, dweights = sequence_backward(
        cell, flip, trace.x, {k: parameters[k] for k in cell.keys}, trace.live,
        None if flip else trace.order, trace.states, trace.saved, (da, *further), finals,
    )  # fmt: skip
    grads = {"dx": dx}
    grads.update({"d" + n: d for n, d in zip(_state_names(cell, "0"), dinitial, strict=True)})
    grads.update({"d" + k: d for k, d in zip(cell.keys, dweights, strict=True)})
    return grads


def run_cell_forward(
    cell: Cell, xt: Any, prev: tuple, parameters: Any, *, check_finite: bool = True
) -> tuple[tuple, Any, tuple]:
    """The body of ``<cell>_cell_forward``: ``(new_state, yt_pred, cache)``."""
    names = _state_names(cell, "_prev")
    required(("xt", xt), *zip(names, prev, strict=True))
    named = [
        ("xt", xt),
        *zip(names, prev, strict=True),
        *parameter_items(parameters, cell.keys + cell.output_keys),
    ]
    ctx = resolve(named)
    with call_scope(ctx, check_finite):
        return _cell_forward(ctx, cell, xt, prev, parameters, named, check_finite)


def _cell_forward(
    ctx: Context, cell: Cell, xt: Any, prev: tuple, parameters: Any, named: list, check: bool
) -> tuple[tuple, Any, tuple]:
    xp, names = ctx.xp, _state_names(cell, "_prev")
    n_x, m = shape_of("xt", xt, ("n_x", "m"))
    n_a, _ = shape_of(names[0], prev[0], ("n_a", "m"))
    check_shape(names[0], prev[0], (n_a, m), f"m={m} from xt")
    for name, s in zip(names[1:], prev[1:], strict=True):
        check_shape(name, s, (n_a, m), f"the shape of {names[0]}")
    n_y = cell.validate(parameters, n_x, n_a)
    W = cell.stack(xp, parameters, n_a)
    gx = xp.matmul(W.Wx, xt) + W.b
    new, saved = cell.forward_pointwise(xp, gx, xp.matmul(W.Wa, prev[0]), tuple(prev), W)
    yt = None
    if n_y is not None:
        w, b = cell.output_keys
        yt = softmax(xp.matmul(parameters[w], new[0]) + parameters[b])
    if check:  # the inputs and the new state: one host read
        states = zip(cell.states, new, strict=True)
        produced = [*((f"the new state {s}", v) for s, v in states), ("yt", yt)]
        check_values(ctx, named, (), produced)
    cache = cell.cache_tuple(tuple(prev), new, saved, xt, parameters)
    # the cell backward reads the new state from the cache: the caller gets copies
    return tuple(get_ops(xp).private(s) for s in new), yt, cache


def run_cell_backward(
    cell: Cell, dnew: tuple, cache: Any, *, check_finite: bool = True
) -> dict[str, Any]:
    """The body of ``<cell>_cell_backward``: ``dxt``, ``da_prev`` (``dc_prev``) and every
    parameter gradient."""
    if not isinstance(cache, tuple | list) or len(cache) != cell.cache_size:
        raise ValueError(
            f"cache must be the {cell.cache_size}-tuple {cell.cache_layout} from "
            f"{cell.name}_cell_forward"
        )
    prev, new, saved, xt, parameters = cell.cache_parts(tuple(cache))
    next_names = _state_names(cell, "_next")
    required(*(("d" + n, d) for n, d in zip(next_names, dnew, strict=True)))
    named = [
        *(("d" + n, d) for n, d in zip(next_names, dnew, strict=True)),
        *((f"cache {n}", s) for n, s in zip(next_names, new, strict=True)),
        *((f"cache {n}", s) for n, s in zip(_state_names(cell, "_prev"), prev, strict=True)),
        ("cache xt", xt),
        *(() if saved is None else (("cache gates", saved),)),
        *parameter_items(parameters, cell.keys),
    ]
    ctx = resolve(named)
    with call_scope(ctx, check_finite):
        grads = _cell_backward(ctx, cell, dnew, prev, new, saved, xt, parameters)
        if check_finite:  # the inputs and the gradients they gave: one host read
            check_values(ctx, named, (), _gradient_items(grads))
        return grads


def _cell_backward(
    ctx: Context,
    cell: Cell,
    dnew: tuple,
    prev: tuple,
    new: tuple,
    saved: Any,
    xt: Any,
    parameters: Any,
) -> dict[str, Any]:
    xp, next_names = ctx.xp, _state_names(cell, "_next")
    n_a, m = shape_of(f"cache {next_names[0]}", new[0], ("n_a", "m"))
    for n, d in zip(next_names, dnew, strict=True):
        check_shape("d" + n, d, (n_a, m), f"the shape of {n}")
    n_x, _ = shape_of("cache xt", xt, ("n_x", "m"))
    cell.validate(parameters, n_x, n_a)
    W = cell.stack(xp, parameters, n_a)
    dgx, dra, direct = cell.backward_pointwise(xp, saved, tuple(prev), tuple(new), tuple(dnew), W)
    dgx, dra, dV = vector_rows(xp, cell, dgx, dra)
    da_prev = xp.matmul(W.Wa.T, dra)
    if direct[0] is not None:
        da_prev = da_prev + direct[0]
    grads = {"dxt": xp.matmul(W.Wx.T, dgx), "da_prev": da_prev}
    grads.update({f"d{n}_prev": d for n, d in zip(cell.states[1:], direct[1:], strict=True)})
    weights = weight_gradients(xp, dgx, dra, prev[0], xt)
    grads.update(cell.unstack(*weights, n_a))
    if dV is not None:
        grads.update(cell.unstack_vectors(dV, n_a))
    return grads
