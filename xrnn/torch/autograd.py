"""The sequence forward as one PyTorch operator whose backward is xrnn's own.

``torch.ops.xrnn.sequence`` runs a cell over a whole sequence (the engine's forward, on CPU
tensors the compiled kernels, on CUDA tensors the GPU kernels) and ``torch.ops.xrnn.
sequence_backward`` is its gradient (the engine's backward: fused steps, chunked GEMMs). They
are registered with :func:`torch.library.custom_op`, so that

- autograd records one node per sequence whatever ``T_x`` is, and its backward is xrnn's;
- ``torch.compile(..., fullgraph=True)`` traces them without a graph break: each has a fake
  (shape-only) implementation, and the finiteness checks run inside the operator, on the real
  tensors, where tracing never sees them;
- ``torch.func.vmap`` maps them: with unbatched weights the mapped axis joins the batch axis
  ``m`` (one call), otherwise (and for the backward, whose weight gradients are per example)
  one call per example.

Double backward (a gradient of a gradient) is refused with a ``RuntimeError`` when the second
backward runs: the backward operator has no derivative of its own.

The forward returns, per state component, its outputs time-major ``(T_x, n_a, m)`` (public
order, zero past each length), its final value ``(n_a, m)``, and its whole loop-order trace
``(T_x+1, n_a, m)``; then the saved blocks ``(T_x, saved_blocks·n_a, m)``. The traces and
saved blocks are what the backward reads; they carry no gradient.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any, NamedTuple

import array_api_compat
import torch
from torch import Tensor

from xrnn.backends import Context, check_values, get_ops, resolve
from xrnn.cells.base import CELLS, Cell, Stacked, get_cell
from xrnn.core.engine import (
    StepCaches,
    Trace,
    check_forward,
    check_lengths,
    forward_arrays,
    gradients,
    labels,
    loop_inputs,
    run_checked_backward,
    run_checked_forward,
    run_forward,
    small_backward,
    small_forward,
)
from xrnn.core.host import c_contiguous
from xrnn.torch import hosted
from xrnn.torch.host import view

__all__ = ["sequence_forward"]

# Cells passed as objects without being registered, by the token the operators carry
_UNREGISTERED: dict[str, Cell] = {}


def _token(cell: Cell) -> str:
    """The string naming ``cell`` in the operators' arguments."""
    if CELLS.get(cell.name) is cell:
        return cell.name
    token = f"{cell.name}@{id(cell):x}"
    _UNREGISTERED[token] = cell
    return token


def _cell(token: str) -> Cell:
    return _UNREGISTERED.get(token) or get_cell(token)


# --- the forward operator ----------------------------------------------------------------------


def _sequence_impl(
    cell: str,
    x: Tensor,
    initial: list[Tensor],
    weights: list[Tensor],
    lengths: Tensor | None,
    reverse: bool,
    check_finite: bool,
) -> list[Tensor]:
    return _run_sequence(cell, x, initial, weights, lengths, reverse, check_finite, False)[0]


_sequence = torch.library.custom_op("xrnn::sequence", mutates_args=())(_sequence_impl)


def _run_sequence(
    cell: str,
    x: Tensor,
    initial: list[Tensor] | tuple,
    weights: list[Tensor] | tuple,
    lengths: Tensor | None,
    reverse: bool,
    check_finite: bool,
    checked: bool,
    operator: bool = True,
) -> tuple[list[Tensor], _Replay]:
    """The forward operator's body: its outputs, and what its backward reads in the library it
    ran in (:class:`XrnnSequence` keeps it). ``checked``: the caller checked the arguments'
    library, device, dtype and shapes (:func:`sequence_forward` does, except under
    ``torch.compile``, where the operator's arguments are only known when the compiled graph
    runs); ``operator=False``: the outputs, in the public layout (n_a, m, T), and final states
    alone."""
    spec = _cell(cell)
    if hosted(x):  # the NumPy backend's compiled kernels on the tensors' memory
        parameters = dict(zip(spec.keys, map(view, weights), strict=True))
        xv, views = view(x), tuple(map(view, initial))
        small = None
        if checked and lengths is None:  # small steps: the backend's whole call, if it runs it
            small = _small_outputs(spec, xv, views, parameters, reverse, check_finite, operator)
        got, replay = small or _sequence_outputs(
            spec, xv, views, parameters, view(lengths), reverse, check_finite, checked,
            operator,
        )  # fmt: skip
        return [torch.from_numpy(a) for a in got], replay
    parameters = dict(zip(spec.keys, (w.detach() for w in weights), strict=True))
    with torch.no_grad():
        return _sequence_outputs(
            spec, x.detach(), tuple(None if s is None else s.detach() for s in initial),
            parameters, lengths, reverse, check_finite, checked, operator,
        )  # fmt: skip


class _Replay(NamedTuple):
    """What a forward leaves its backward, in the library its loops ran in (NumPy views of CPU
    tensors, or the tensors): the call's context, the trace (its saved blocks alone), the
    weights by key and as the forward stacked them."""

    ctx: Context
    trace: Trace
    parameters: dict
    stacked: Stacked | None


def _copy(a: Any) -> Any:
    """A C-contiguous copy of ``a`` (a NumPy array or a tensor), sharing no memory with it."""
    if isinstance(a, Tensor):
        return a.clone(memory_format=torch.contiguous_format)
    return c_contiguous(a, copy=True)


def _contiguous(a: Any) -> Any:
    if isinstance(a, Tensor):
        return a.contiguous()
    return a if a.flags.c_contiguous else c_contiguous(a, copy=False)


def _sequence_outputs(
    spec: Cell,
    x: Tensor,
    initial: tuple,
    parameters: dict,
    lengths: Tensor | None,
    reverse: bool,
    check_finite: bool,
    checked: bool,
    operator: bool,
) -> tuple[list[Tensor], _Replay]:
    _, m, T = map(int, x.shape)
    n_a = int(initial[0].shape[0])
    sizes = (int(x.shape[0]), m, T, n_a, None)
    ctx = resolve([("x", x)])
    if checked:  # the values are still checked (run_checked_forward)
        outputs, _, caches = run_checked_forward(
            spec, forward_arrays(spec, x, initial, parameters), ctx, sizes, x, initial,
            parameters, lengths=lengths, reverse=reverse, check_finite=check_finite,
            return_caches=True, private=False,
        )  # fmt: skip
    else:
        outputs, _, caches = run_forward(
            spec, x, initial, parameters, lengths=lengths, reverse=reverse,
            check_finite=check_finite, private=False,
        )  # fmt: skip
    outs = [ctx.xp.permute_dims(o, (2, 0, 1)) for o in outputs]
    return _outputs(ctx, caches[0].trace, outs, parameters, caches[0].stacked, operator)


def _small_outputs(
    spec: Cell,
    x: Any,
    initial: tuple,
    parameters: dict,
    reverse: bool,
    check_finite: bool,
    operator: bool,
) -> tuple[list, _Replay] | None:
    """:func:`_sequence_outputs` of a call without lengths whose backend runs it whole
    (:func:`xrnn.core.engine.small_forward`: small steps), on checked arguments; None where it
    declines."""
    ctx = resolve([("x", x)])
    made = small_forward(
        ctx, spec, x, initial, parameters, reverse=reverse, check_finite=check_finite
    )
    if made is None:
        return None
    trace, W = made
    # each state's outputs (T, n_a, m): its steps after block 0, in loop order
    outs = [s[1:, ...] for s in trace.states]
    if trace.order is not None:
        outs = [ctx.xp.flip(o, axis=0) for o in outs]
    return _outputs(ctx, trace, outs, parameters, W, operator)


def _outputs(
    ctx: Context, trace: Trace, outs: list, parameters: dict, stacked: Any, operator: bool
) -> tuple[list, _Replay]:
    """The forward operator's outputs (see :func:`_run_sequence`) from ``trace`` and each
    state's outputs ``outs`` (T, n_a, m) in the public order, and what its backward reads."""
    spec, xp = trace.cell, ctx.xp
    T, n_a, m = map(int, outs[0].shape)
    saved = trace.saved
    if saved is not None:  # the saved blocks lead the rows of each step (the rest is the
        saved = _contiguous(saved[:, : spec.saved_blocks * n_a, :])  # input side's)
    # outputs and finals are views of the traces (or fresh): copies, as an operator's outputs
    # may not share memory, and the backward reads the traces
    outs = [_copy(o) for o in outs]
    finals = [_copy(s[T, ...]) for s in trace.states]
    replay = _Replay(
        ctx, Trace(spec, trace.states, saved, trace.x, trace.live, trace.order), parameters, stacked
    )
    if not operator:  # the outputs in the public layout (n_a, m, T), views
        return [*(xp.permute_dims(o, (1, 2, 0)) for o in outs), *finals], replay
    if saved is None:
        saved = xp.empty((T, 0, m), dtype=ctx.dtype, device=ctx.device)
    return [*outs, *finals, *trace.states, saved], replay


@_sequence.register_fake
def _sequence_fake(
    cell: str,
    x: Tensor,
    initial: list[Tensor],
    weights: list[Tensor],
    lengths: Tensor | None,
    reverse: bool,
    check_finite: bool,
) -> list[Tensor]:
    spec = _cell(cell)
    _, m, T = x.shape
    n_a = initial[0].shape[0]
    S = len(spec.states)
    return [
        *(x.new_empty((T, n_a, m)) for _ in range(S)),
        *(x.new_empty((n_a, m)) for _ in range(S)),
        *(x.new_empty((T + 1, n_a, m)) for _ in range(S)),
        x.new_empty((T, spec.saved_blocks * n_a, m)),
    ]


def _setup_sequence(ctx: Any, inputs: tuple, output: list) -> None:
    cell, x, initial, weights, lengths, reverse, check_finite = inputs
    S = len(initial)
    ctx.cell, ctx.reverse, ctx.check_finite = cell, reverse, check_finite
    ctx.counts = (S, len(weights))
    ctx.save_for_backward(x, lengths, output[3 * S], *weights, *output[2 * S : 3 * S])
    # an output that feeds nothing gets no gradient (not one of zeros, filled by torch's
    # threads, which then spin beside the backward's)
    ctx.set_materialize_grads(False)


def _backward_arguments(ctx: Any, grads: list | tuple) -> tuple:
    """The backward operator's arguments from what :func:`_setup_sequence` saved and the
    upstream gradients of the forward's outputs."""
    S, n_w = ctx.counts
    x, lengths, saved, *rest = ctx.saved_tensors
    weights, states = rest[:n_w], rest[n_w:]
    # none: an empty tensor (the operator's arguments are tensors)
    d_outputs = [x.new_empty(0) if g is None else g for g in grads[:S]]
    d_finals = [x.new_empty(0) if g is None else g for g in grads[S : 2 * S]]
    return (
        ctx.cell, x, list(weights), lengths, ctx.reverse, list(states), saved, d_outputs,
        d_finals, ctx.check_finite,
    )  # fmt: skip


def _sequence_gradient(ctx: Any, grads: list) -> tuple:
    S = ctx.counts[0]
    got = _sequence_backward(*_backward_arguments(ctx, grads))
    dx, dinitial, dweights = got[0], got[1 : 1 + S], got[1 + S :]
    return None, dx, list(dinitial), list(dweights), None, None, None


_sequence.register_autograd(_sequence_gradient, setup_context=_setup_sequence)


# --- the backward operator ---------------------------------------------------------------------


def _sequence_backward_impl(
    cell: str,
    x: Tensor,
    weights: list[Tensor],
    lengths: Tensor | None,
    reverse: bool,
    states: list[Tensor],
    saved: Tensor,
    d_outputs: list[Tensor],
    d_finals: list[Tensor],
    check_finite: bool,
) -> list[Tensor]:
    # an empty tensor: no gradient (the output fed nothing)
    outs = [None if d.numel() == 0 else d for d in d_outputs]
    finals = [None if d.numel() == 0 else d for d in d_finals]
    return _run_backward(
        cell, x, weights, lengths, reverse, states, saved, outs, finals, check_finite, None
    )


_sequence_backward = torch.library.custom_op("xrnn::sequence_backward", mutates_args=())(
    _sequence_backward_impl
)


def _run_backward(
    cell: str,
    x: Tensor,
    weights: list[Tensor] | tuple,
    lengths: Tensor | None,
    reverse: bool,
    states: list[Tensor] | tuple,
    saved: Tensor,
    outs: list,
    finals: list,
    check_finite: bool,
    stacked: Stacked | None,
) -> list[Tensor]:
    """The backward operator's body: ``dx``, each initial state's and each weight's gradient,
    from the upstream gradients ``outs`` (each state component's outputs, (T, n_a, m)) and
    ``finals`` ((n_a, m)), None where there is none; ``stacked``: the weights as the forward
    stacked them (None: stacked again). What the forward left is rebuilt from the operator's
    arguments, then read as :class:`XrnnSequence`'s backward reads its own."""
    spec = _cell(cell)
    # the NumPy backend's compiled kernels on the tensors' memory, else the tensors themselves
    arrays = view if hosted(x) else _itself
    with torch.no_grad():
        ctx = resolve([("x", arrays(x))])
        xe, order, _, live = loop_inputs(ctx, arrays(x), arrays(lengths), reverse)
        blocks = arrays(saved) if spec.saved_blocks else None
        trace = Trace(spec, tuple(arrays(s) for s in states), blocks, xe, live, order)
        parameters = dict(zip(spec.keys, (arrays(w) for w in weights), strict=True))
    replay = _Replay(ctx, trace, parameters, stacked)
    return _replay_gradients(replay, (*outs, *finals), len(spec.states), check_finite, True)


def _itself(t: Tensor | None) -> Tensor | None:
    return t


def _replayed(replay: _Replay, outs: list, finals: list, check_finite: bool, private: bool) -> list:
    """The backward's results, in the replay's library, from what the forward left
    (``replay``) and the upstream gradients (see :func:`_run_backward`); ``private``: each in
    memory of its own (an operator's outputs may share none), else the weights' gradients
    may be views of one array the backward made."""
    ctx, trace, parameters, stacked = replay
    spec, states, xp = trace.cell, trace.states, ctx.xp
    upstream = [*outs, *finals]
    # the upstream gradients (the rest the forward checked or made), named where one is not
    # finite
    if check_finite and not get_ops(xp).all_finite([d for d in upstream if d is not None], []):
        names = _upstream_names(tuple(spec.states))
        check_values(ctx, list(zip(names, upstream, strict=True)))
    # the further states' outputs usually feed nothing: then the backward takes the fast
    # paths, which read the hidden state's gradients only
    further = tuple(
        None if d is None or not bool(xp.any(d != 0)) else xp.permute_dims(d, (1, 2, 0))
        for d in outs[1:]
    )
    da = xp.zeros_like(states[0][1:, ...]) if outs[0] is None else outs[0]
    dfinal = None
    if any(f is not None for f in finals):
        dfinal = tuple(
            xp.zeros_like(s[0, ...]) if f is None else f
            for f, s in zip(finals, states, strict=True)
        )
    # the operator's own outputs and their gradients: shapes right by construction, values
    # checked above (the upstream gradients) or by the forward
    grads = None
    if trace.live is None and stacked is not None and all(d is None for d in further):
        # small steps: the backend's whole backward, if it runs it (all steps in loop order)
        dA = _contiguous(da if trace.order is None else xp.flip(da, axis=0))
        made = small_backward(ctx, stacked, trace, dA, dfinal)
        grads = None if made is None else gradients(spec, made)
    if grads is None:
        da = xp.permute_dims(da, (1, 2, 0))
        grads = run_checked_backward(
            spec, [("da", da), ("x", trace.x)], ctx, trace, parameters, da, dfinal, further,
            check_finite=False, stacked=stacked,
        )  # fmt: skip
    # contiguous, made so here, on the call's threads: autograd takes a gradient of its
    # tensor's layout as it is into .grad, and copies any other (on torch's threads, which
    # then spin beside the next call's); the stacked weights' gradients are views of one
    # array the backward made, copied only for an operator, whose outputs may not share memory
    keep = _copy if private else _contiguous
    dinitial = [keep(grads[name]) for name in labels(tuple(spec.states), "d{}0")]
    dweights = [keep(grads[name]) for name in labels(tuple(spec.keys), "d{}")]
    return [_contiguous(grads["dx"]), *dinitial, *dweights]


@lru_cache(maxsize=64)
def _upstream_names(states: tuple[str, ...]) -> tuple[str, ...]:
    """The upstream gradients' names in messages: each state's outputs', then its final's."""
    return (
        *(f"the gradient of {s}'s outputs" for s in states),
        *(f"the gradient of the final {s}" for s in states),
    )


@_sequence_backward.register_fake
def _sequence_backward_fake(
    cell: str,
    x: Tensor,
    weights: list[Tensor],
    lengths: Tensor | None,
    reverse: bool,
    states: list[Tensor],
    saved: Tensor,
    d_outputs: list[Tensor],
    d_finals: list[Tensor],
    check_finite: bool,
) -> list[Tensor]:
    return [
        torch.empty_like(x),
        *(torch.empty_like(s[0]) for s in states),
        *(torch.empty_like(w) for w in weights),
    ]


def _no_double_backward(ctx: Any, grads: list) -> tuple:
    raise RuntimeError(
        "xrnn's sequence backward has no derivative of its own: a gradient of a gradient "
        "(double backward, torch.func.hessian) through xrnn is not supported"
    )


def _no_setup(ctx: Any, inputs: tuple, output: list) -> None:
    return None


_sequence_backward.register_autograd(_no_double_backward, setup_context=_no_setup)


# --- eager calls on CPU tensors ----------------------------------------------------------------


class XrnnSequence(torch.autograd.Function):
    """The forward operator as one :class:`torch.autograd.Function`, for eager calls on CPU
    tensors outside any ``torch.func`` transform: the same forward and backward without the
    custom operators' dispatch (their argument handling cost as much as the whole
    forward+backward of a character-model-sized call). Its outputs are the outputs, in the
    public layout (n_a, m, T), and final states alone; what the backward reads stays in the
    arrays the forward made (:class:`_Replay`), and a list passed as ``keep`` receives them as
    tensors (the states' traces, then the saved blocks) for the caller's caches.
    ``torch.compile``, fake and meta tensors, CUDA tensors and ``torch.func.vmap`` take the
    operators."""

    @staticmethod
    def forward(ctx: Any, call: tuple, *tensors: Any) -> tuple:
        # the call's other arguments in one (torch's apply handles each argument apart)
        cell, reverse, check_finite, S, keep = call
        x, lengths, initial, weights = tensors[0], tensors[1], tensors[2 : 2 + S], tensors[2 + S :]
        out, ctx.replay = _run_sequence(
            cell, x, initial, weights, lengths, reverse, check_finite, checked=True,
            operator=False,
        )  # fmt: skip
        ctx.cell, ctx.reverse, ctx.check_finite, ctx.S = cell, reverse, check_finite, S
        # saved for torch's check, when the backward unpacks them, that none of them was
        # modified in place since (the replay holds views of their memory)
        ctx.save_for_backward(x, lengths, *weights)
        # an output that feeds nothing gets no gradient (not one of zeros)
        ctx.set_materialize_grads(False)
        if keep is not None:
            keep.extend(_replay_tensors(ctx.replay))
        return tuple(out)

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> tuple:
        S = ctx.S
        x, lengths, *weights = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: the operator, whose own backward refuses
            *states, saved = _replay_tensors(ctx.replay)  # a second derivative
            # the outputs' gradients time-major (T, n_a, m), as the operator takes them
            d_outputs = [x.new_empty(0) if g is None else g.permute(2, 0, 1) for g in grads[:S]]
            d_finals = [x.new_empty(0) if g is None else g for g in grads[S : 2 * S]]
            got = _sequence_backward(
                ctx.cell, x, weights, lengths, ctx.reverse, states, saved, d_outputs, d_finals,
                ctx.check_finite,
            )  # fmt: skip
        else:
            got = _replay_gradients(ctx.replay, grads, S, ctx.check_finite, False, public=True)
        # an initial state passed as None (zeros) gets none
        wanted = ctx.needs_input_grad[3 : 3 + S]
        dinitial = [d if want else None for d, want in zip(got[1 : 1 + S], wanted, strict=True)]
        return (None, got[0], None, *dinitial, *got[1 + S :])


def _replay_tensors(replay: _Replay) -> list[Tensor]:
    """The states' traces ``(T_x+1, n_a, m)`` and the saved blocks ``(T_x, saved_blocks·n_a,
    m)`` of a replay, as tensors (views of its arrays)."""
    trace = replay.trace
    saved = trace.saved
    if saved is None:
        T, n_a, m = map(int, trace.states[0].shape)
        saved = replay.ctx.xp.empty((T - 1, 0, m), dtype=replay.ctx.dtype)
    arrays = [*trace.states, saved]
    if array_api_compat.is_torch_namespace(replay.ctx.xp):
        return arrays
    return [torch.from_numpy(a) for a in arrays]


def _replay_gradients(
    replay: _Replay, grads: tuple, S: int, check_finite: bool, private: bool, public: bool = False
) -> list:
    """The backward operator's results from what the forward left and the upstream gradients
    ``grads`` (None where an output fed nothing): those of the outputs time-major (T, n_a, m),
    or with ``public`` in the public layout (n_a, m, T); ``private`` as for :func:`_replayed`."""
    outs, finals = list(grads[:S]), list(grads[S : 2 * S])
    hosted = not array_api_compat.is_torch_namespace(replay.ctx.xp)
    if hosted:  # NumPy views of CPU tensors
        outs, finals = list(map(view, outs)), list(map(view, finals))
    if public:
        xp = replay.ctx.xp
        outs = [None if d is None else xp.permute_dims(d, (2, 0, 1)) for d in outs]
    if hosted:
        got = _replayed(replay, outs, finals, check_finite, private)
        return [torch.from_numpy(a) for a in got]
    with torch.no_grad():
        return _replayed(replay, outs, finals, check_finite, private)


_TRANSFORMS_ACTIVE = getattr(torch._C, "_are_functorch_transforms_active", None)


def _eager(x: Tensor) -> bool:
    """Whether a call on ``x`` runs as :class:`XrnnSequence`: eager (no compiler tracing it),
    on CPU tensors, outside every ``torch.func`` transform."""
    transforms = _TRANSFORMS_ACTIVE
    return x.is_cpu and transforms is not None and not transforms()


# --- torch.func.vmap ----------------------------------------------------------------------------


def _per_example(op: Any, info: Any, in_dims: tuple, *args: Any) -> tuple[list, list]:
    """``op`` once per example of the mapped axis, its outputs stacked along axis 0."""

    def pick(a: Any, d: Any, b: int) -> Any:
        if a is None or d is None:
            return a
        if isinstance(a, list):
            return [pick(ai, di, b) for ai, di in zip(a, d, strict=True)]
        return a.select(d, b)

    results = [
        op(*(pick(a, d, b) for a, d in zip(args, in_dims, strict=True)))
        for b in range(info.batch_size)
    ]
    stacked = [torch.stack([r[i] for r in results]) for i in range(len(results[0]))]
    return stacked, [0] * len(stacked)


def _batched(d: Any) -> bool:
    return d is not None and (not isinstance(d, list) or any(e is not None for e in d))


def _sequence_vmap(
    info: Any,
    in_dims: tuple,
    cell: str,
    x: Tensor,
    initial: list[Tensor],
    weights: list[Tensor],
    lengths: Tensor | None,
    reverse: bool,
    check_finite: bool,
) -> tuple[list, list]:
    args = (cell, x, initial, weights, lengths, reverse, check_finite)
    if _batched(in_dims[3]):  # per-example weights: one call each
        return _per_example(_sequence, info, in_dims, *args)
    B = info.batch_size

    def joined(a: Tensor, d: int | None, axis: int) -> Tensor:
        """The mapped axis joined to the batch axis ``axis`` (examples outermost in it)."""
        if d is None:
            a = a.unsqueeze(axis).expand(*a.shape[:axis], B, *a.shape[axis:])
        else:
            a = a.movedim(d, axis)
        return a.flatten(axis, axis + 1)

    dims = in_dims[2] if isinstance(in_dims[2], list) else [in_dims[2]] * len(initial)
    xj = joined(x, in_dims[1], 1)
    initial_j = [joined(s, d, 1) for s, d in zip(initial, dims, strict=True)]
    lengths_j = None if lengths is None else joined(lengths, in_dims[4], 0)
    out = _sequence(cell, xj, initial_j, weights, lengths_j, reverse, check_finite)
    m = int(xj.shape[1]) // B
    S = len(initial)

    def split(a: Tensor, axis: int) -> Tensor:
        return a.reshape(*a.shape[:axis], B, m, *a.shape[axis + 1 :])

    results = [
        *(split(o, 2) for o in out[:S]),
        *(split(f, 1) for f in out[S : 2 * S]),
        *(split(s, 2) for s in out[2 * S :]),
    ]
    return results, [2] * S + [1] * S + [2] * (S + 1)


def _sequence_backward_vmap(info: Any, in_dims: tuple, *args: Any) -> tuple[list, list]:
    # per example: the weight gradients of a mapped backward are each example's own
    return _per_example(_sequence_backward, info, in_dims, *args)


_sequence.register_vmap(_sequence_vmap)
_sequence_backward.register_vmap(_sequence_backward_vmap)


# --- the call -------------------------------------------------------------------------------------


def _refuse_grad_transforms(*arrays: Any) -> None:
    tracked = torch._C._functorch.is_gradtrackingtensor
    if any(isinstance(t, Tensor) and tracked(t) for t in arrays):
        raise RuntimeError(
            "torch.func.grad, vjp, jacrev and jacfwd cannot differentiate xrnn's sequence "
            "operator (a PyTorch custom operator); use torch.autograd.grad or .backward() — "
            "around torch.func.vmap too"
        )


def sequence_forward(
    cell: Cell,
    x: Tensor,
    initial: tuple,
    parameters: Mapping[str, Any],
    *,
    lengths: Any = None,
    reverse: bool = False,
    check_finite: bool = True,
    return_caches: bool = True,
) -> tuple[tuple, Any, Any]:
    """:func:`xrnn.core.engine.run_forward` for tensors autograd records (or that a compiler or
    transform traces): ``(outputs, y, caches)`` as there, computed by ``xrnn::sequence``; the
    output layer, if any, is torch's own ops (autograd differentiates it)."""
    compiling = torch.compiler.is_compiling()
    eager = not compiling and _eager(x)
    if not compiling and not eager:  # a torch.func transform may be active
        _refuse_grad_transforms(x, *initial, *parameters.values())
    _, m, T = map(int, x.shape)
    n_a = int(initial[0].shape[0])
    if compiling:  # traced: shapes are known from the fake tensors, values only at run time
        n_y = (
            None
            if cell.output_keys[0] not in parameters
            else int(parameters[cell.output_keys[0]].shape[0])
        )
        if lengths is not None and not isinstance(lengths, Tensor):
            lengths = torch.tensor(list(lengths), dtype=torch.int64, device=x.device)
    else:  # library, device, dtype, shapes and keys here; values inside the operator
        _, ctx, (_, m, T, n_a, n_y) = check_forward(cell, x, initial, parameters)
        lengths, _ = check_lengths(ctx, lengths, m, T)
    weights = [parameters[k] for k in cell.keys]
    S = len(cell.states)
    if eager:
        keep: list | None = [] if return_caches else None
        call = (_token(cell), reverse, check_finite, S, keep)
        got = XrnnSequence.apply(call, x, lengths, *initial, *weights)
        traced = keep or []
        outputs = tuple(got[:S])  # (n_a, m, T) each
    else:
        initial_full = [
            torch.zeros((n_a, m), dtype=x.dtype, device=x.device) if s is None else s
            for s in initial
        ]
        got = _sequence(_token(cell), x, initial_full, weights, lengths, reverse, check_finite)
        traced = got[2 * S :]
        outputs = tuple(o.permute(1, 2, 0) for o in got[:S])
    finals = got[S : 2 * S]
    y = None
    if n_y is not None:
        w, b = cell.output_keys
        z = torch.matmul(parameters[w], outputs[0].permute(2, 0, 1)) + parameters[b]  # (T, n_y, m)
        y = torch.softmax(z, dim=1).permute(1, 2, 0)
        if lengths is not None:  # zero past each length, as the outputs
            steps = torch.arange(T, device=x.device)
            y = y * (steps[None, None, :] < lengths[None, :, None]).to(y.dtype)
    if not return_caches:
        return outputs, y, None
    if compiling:
        raise ValueError(
            "return_caches must be False under torch.compile: the caches are Python objects a "
            "compiled graph cannot return (autograd differentiates the outputs without them)"
        )
    states, saved = traced[:S], traced[S]
    ctx = resolve([("x", x)])
    xe, order, _, live = loop_inputs(ctx, x.detach(), lengths, reverse)
    trace = Trace(
        cell,
        tuple(s.detach() for s in states),
        saved.detach() if cell.saved_blocks else None,
        xe,
        live,
        order,
    )
    return outputs, y, (StepCaches(trace, parameters, tuple(finals)), x)
