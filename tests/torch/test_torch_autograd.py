"""The sequence forward inside PyTorch programs: one autograd node whose backward is xrnn's.

Gradients through ``torch.autograd`` against ``xrnn.backward`` on NumPy (float64, every cell,
lengths and reverse), finite differences where ``xrnn.backward`` has no argument for what
the loss reads (every state component's outputs, the output layer), a graph whose size does
not grow with ``T_x``, ``torch.compile(fullgraph=True)`` against eager, ``torch.func.vmap``,
and the refusals (double backward, ``torch.func.grad``, caches under ``torch.compile``).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import xrnn  # noqa: E402
from tests.contract_cells import CELLS as GENERATED  # noqa: E402  (cells of every contract shape)

CELLS = [xrnn.CELLS[name] for name in sorted(xrnn.CELLS)] + GENERATED[:3]
IDS = [c.name for c in CELLS]
N_X, N_A, M, T = 3, 4, 3, 5


def _inputs(cell, dtype=torch.float64, n_y=None, seed=0):
    p = xrnn.initialize(cell, N_X, N_A, n_y, seed=seed, dtype="float64")
    gen = torch.Generator().manual_seed(seed)
    params = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in p.items()}
    x = torch.randn(N_X, M, T, generator=gen, dtype=dtype, requires_grad=True)
    initial = {
        f"{s}0": torch.randn(N_A, M, generator=gen, dtype=dtype, requires_grad=True)
        for s in cell.states
    }
    return x, initial, params


def _forward(cell, x, initial, params, **kw):
    """``(outputs, y, caches)``: every state component's outputs, whatever the cell."""
    init = dict(initial)
    out = xrnn.forward(cell, x, init.pop("a0"), params, **init, **kw)
    return (out[0], *out[2:-1]), out[1], out[-1]


def _nodes(t):
    seen, todo = set(), [t.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and node not in seen:
            seen.add(node)
            todo.extend(f for f, _ in node.next_functions)
    return len(seen)


@pytest.mark.parametrize("kw", [{}, {"lengths": [5, 2, 4], "reverse": True}, {"reverse": True}])
@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_gradients_are_xrnn_backward(cell, kw):
    x, initial, params = _inputs(cell)
    outputs, _, caches = _forward(cell, x, initial, params, **kw)
    gen = torch.Generator().manual_seed(1)
    da = torch.randn(N_A, M, T, generator=gen, dtype=torch.float64)
    dfinal = tuple(torch.randn(N_A, M, generator=gen, dtype=torch.float64) for _ in cell.states)
    finals = caches[0].final_states()
    loss = (outputs[0] * da).sum() + sum((f * d).sum() for f, d in zip(finals, dfinal, strict=True))
    leaves = [x, *initial.values(), *params.values()]
    names = ["dx", *(f"d{k}" for k in initial), *(f"d{k}" for k in params)]
    got = dict(zip(names, torch.autograd.grad(loss, leaves), strict=True))

    def host(t):
        return t.detach().numpy()

    init = {k: host(v) for k, v in initial.items()}
    ref = xrnn.forward(
        cell, host(x), init.pop("a0"), {k: host(v) for k, v in params.items()}, **init, **kw
    )
    want = xrnn.backward(host(da), ref[-1], dfinal=tuple(host(d) for d in dfinal))
    assert set(got) == set(want)
    for key, value in want.items():
        np.testing.assert_allclose(host(got[key]), value, rtol=1e-10, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_small_calls_run_whole_and_equal_the_engine_s_loops(cell, reverse, whole_small_calls):
    """Eager calls of small steps on CPU tensors run the NumPy backend's whole forward and
    backward (``JitOps.forward_small``, ``backward_small``); declined, the engine's loops: the
    same gradients, of the outputs and of the final states."""
    grads = []
    for whole in (True, False):
        if not whole:
            whole_small_calls.decline()
        x, initial, params = _inputs(cell)
        outputs, _, caches = _forward(cell, x, initial, params, reverse=reverse)
        finals = caches[0].final_states()
        loss = (outputs[0].sin()).sum() + sum((f * f).sum() for f in finals)
        grads.append(torch.autograd.grad(loss, [x, *initial.values(), *params.values()]))
    assert whole_small_calls.ran == ["forward", "backward"]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", ["lstm", "gru", "test_three_states"])
def test_every_output_by_finite_differences(name):
    """A loss on every state component's outputs, the final states and the output layer."""
    cell = next(c for c in CELLS if c.name == name)
    x, initial, params = _inputs(cell, n_y=2)
    keys = list(params)

    def loss(x, *rest):
        init = dict(zip(initial, rest[: len(initial)], strict=True))
        p = dict(zip(keys, rest[len(initial) :], strict=True))
        outputs, y, caches = _forward(cell, x, init, p, lengths=[5, 2, 4], reverse=True)
        finals = caches[0].final_states()
        total = (y**2).sum() + sum((o.sin() * (i + 1)).sum() for i, o in enumerate(outputs))
        return total + sum((f * f).sum() for f in finals)

    assert torch.autograd.gradcheck(loss, (x, *initial.values(), *params.values()))


def test_one_node_whatever_the_length():
    cell = xrnn.CELLS["lstm"]
    sizes = []
    for steps in (4, 64):
        _, initial, params = _inputs(cell)
        x = torch.randn(N_X, M, steps, dtype=torch.float64, requires_grad=True)
        a, _, c, _ = xrnn.lstm_forward(x, initial["a0"], params, c0=initial["c0"])
        sizes.append(_nodes(a.sum() + c.sum()))
        assert sum("xrnn" in type(n).__name__.lower() for n in _graph(a)) == 1
    assert sizes[0] == sizes[1]


def _graph(t):
    seen, todo = [], [t.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and node not in seen:
            seen.append(node)
            todo.extend(f for f, _ in node.next_functions)
    return seen


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph_matches_eager(backend):
    cell = xrnn.CELLS["gru"]
    x, initial, params = _inputs(cell, dtype=torch.float32, n_y=2)
    lengths = torch.tensor([5, 2, 4])

    def loss(x, a0, p):
        a, y, _ = xrnn.gru_forward(
            x, a0, p, lengths=lengths, reverse=True, return_caches=False
        )  # fmt: skip
        return a.sin().sum() + (y**2).sum()

    torch._dynamo.reset()
    compiled = torch.compile(loss, fullgraph=True, backend=backend)
    leaves = [x, initial["a0"], *params.values()]
    eager = torch.autograd.grad(loss(x, initial["a0"], params), leaves)
    traced = torch.autograd.grad(compiled(x, initial["a0"], params), leaves)
    for e, t in zip(eager, traced, strict=True):
        torch.testing.assert_close(t, e, rtol=1e-5, atol=1e-6)


def test_compile_refuses_caches():
    cell = xrnn.CELLS["rnn"]
    x, initial, params = _inputs(cell)
    torch._dynamo.reset()
    compiled = torch.compile(
        lambda x: xrnn.rnn_forward(x, initial["a0"], params)[0], fullgraph=True, backend="eager"
    )
    with pytest.raises(Exception, match="return_caches must be False under torch.compile"):
        compiled(x)


def test_vmap_joins_the_batch():
    cell = xrnn.CELLS["lstm"]
    _, initial, params = _inputs(cell)
    xs = torch.randn(6, N_X, M, T, dtype=torch.float64, requires_grad=True)

    def run(x):
        return xrnn.lstm_forward(x, initial["a0"], params, return_caches=False)[0]

    mapped = torch.func.vmap(run)(xs)
    looped = torch.stack([run(x) for x in xs])
    torch.testing.assert_close(mapped, looped, rtol=1e-12, atol=1e-12)
    # autograd through the mapped operator
    leaves = [xs, *params.values()]
    g_mapped = torch.autograd.grad(mapped.sin().sum(), leaves)
    g_looped = torch.autograd.grad(looped.sin().sum(), leaves)
    for a, b in zip(g_mapped, g_looped, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_vmap_over_weights_runs_each():
    cell = xrnn.CELLS["rnn"]
    x, initial, params = _inputs(cell)
    stacked = {k: torch.stack([v.detach(), 2 * v.detach()]) for k, v in params.items()}

    def run(p):
        return xrnn.rnn_forward(x.detach(), initial["a0"].detach(), p, return_caches=False)[0]

    mapped = torch.func.vmap(run)(stacked)
    for i in range(2):
        torch.testing.assert_close(mapped[i], run({k: v[i] for k, v in stacked.items()}))


def test_double_backward_and_func_grad_are_refused():
    cell = xrnn.CELLS["lstm"]
    x, initial, params = _inputs(cell)
    a = xrnn.lstm_forward(x, initial["a0"], params)[0]
    (g,) = torch.autograd.grad(a.sin().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        g.sum().backward()
    with pytest.raises(RuntimeError, match="torch.autograd.grad"):
        torch.func.grad(lambda x: xrnn.lstm_forward(x, initial["a0"], params)[0].sum())(x)


def test_inputs_checked_before_and_inside_the_operator():
    cell = xrnn.CELLS["lstm"]
    x, initial, params = _inputs(cell)
    with pytest.raises(ValueError, match="a0"):
        xrnn.lstm_forward(x, initial["a0"][:, :2], params)
    with pytest.raises(TypeError, match="float32 or float64|dtype"):
        xrnn.lstm_forward(x.float(), initial["a0"], params)
    bad = x.detach().clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        xrnn.lstm_forward(bad.requires_grad_(), initial["a0"], params)
    a = xrnn.lstm_forward(x, initial["a0"], params, return_caches=False)[0]
    with pytest.raises(ValueError, match="NaN"):
        a.backward(torch.full_like(a, float("nan")))


def test_caches_of_a_recorded_forward():
    """The caches still serve ``xrnn.backward``; nothing returned aliases them."""
    cell = xrnn.CELLS["lstm"]
    x, initial, params = _inputs(cell)
    a, _, c, caches = xrnn.lstm_forward(x, initial["a0"], params, c0=initial["c0"])
    assert xrnn.lstm_forward(x, initial["a0"], params, return_caches=False)[3] is None
    da = torch.ones_like(a)
    grads = xrnn.lstm_backward(da.detach(), caches)
    (gx,) = torch.autograd.grad(a.sum(), x)
    torch.testing.assert_close(grads["dx"], gx, rtol=1e-12, atol=1e-12)
    a.detach().mul_(0)  # the caller's outputs are its own
    torch.testing.assert_close(xrnn.lstm_backward(da.detach(), caches)["dx"], gx)


def test_inputs_modified_in_place_before_the_backward_are_refused():
    """The backward reads the forward's views of ``x`` and the weights: torch's own check of
    saved tensors refuses a backward after one of them changed in place."""
    cell = xrnn.CELLS["lstm"]
    for name in ("x", "Wf"):
        x, initial, params = _inputs(cell)
        a = xrnn.lstm_forward(x, initial["a0"], params, return_caches=False)[0]
        with torch.no_grad():
            (x if name == "x" else params[name]).add_(1.0)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            a.sum().backward()


def test_initial_memory_cell_omitted():
    """``c0`` omitted (zeros): gradients of ``a0`` and the weights as with explicit zeros."""
    cell = xrnn.CELLS["lstm"]
    x, initial, params = _inputs(cell)
    zeros = torch.zeros_like(initial["c0"], requires_grad=True)
    got, want = (
        torch.autograd.grad(
            xrnn.lstm_forward(x, initial["a0"], params, **c0)[0].sin().sum(),
            [x, initial["a0"], *params.values()],
        )
        for c0 in ({}, {"c0": zeros})
    )
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_meta_tensors_through_the_operator(cell):
    """The operator and its backward on ``meta`` tensors (shapes, dtypes and devices only; a
    read of a value fails): what runs on a CUDA device without one at hand."""
    p = {
        k: torch.empty(shape, device="meta", requires_grad=True)
        for k, (shape, _) in cell.shapes(N_X, N_A).items()
    }
    x = torch.empty(N_X, M, T, device="meta", requires_grad=True)
    init = {f"{s}0": torch.empty(N_A, M, device="meta") for s in cell.states}
    a = xrnn.forward(cell, x, init.pop("a0"), p, **init, check_finite=False)[0]
    a.backward(torch.empty_like(a))
    assert a.device.type == x.grad.device.type == "meta"
    assert x.grad.shape == x.shape
    assert all(v.grad.shape == v.shape for v in p.values())
