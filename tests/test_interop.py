"""``xrnn.interop``: layers from PyTorch modules and back, checked against PyTorch autograd.

PyTorch parity goes through ``from_torch``: a torch module with its own random weights is
converted and both run the same padded batch from the same non-zero initial state. The loss
``Σ out ∗ R + Σ state ∗ S`` exercises the output, final-state and initial-state gradients.
Every CPU session installs torch, so this runs for every backend of the matrix.
"""

from __future__ import annotations

import itertools

import array_api_compat.numpy as xnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from xrnn.interop import from_torch, to_torch  # noqa: E402 (after the torch skip)

N_X, N_A, M, T = 3, 4, 3, 5

MODULES = {  # name -> (torch.nn class, keywords, xrnn cell name)
    "rnn": ("RNN", {}, "rnn"),
    "rnn_relu": ("RNN", {"nonlinearity": "relu"}, "rnn_relu"),
    "lstm": ("LSTM", {}, "lstm"),
    "gru": ("GRU", {}, "gru"),
}
TOLERANCE = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-5, atol=1e-5)}
LENGTHS = {"equal": [T] * M, "mixed": [T, 2, 4]}


def make_module(kind, num_layers, bidirectional, bias, seed=0):
    name, kw, _ = MODULES[kind]
    torch.manual_seed(seed)
    module = getattr(torch.nn, name)(
        N_X, N_A, num_layers=num_layers, bidirectional=bidirectional, bias=bias, **kw
    )
    return module.double()


def merged_rows(kind):
    """Rows of PyTorch's bias vectors that xrnn sums into one bias (the GRU: r and z only)."""
    return 2 * N_A if kind == "gru" else None


def torch_run(module, x, lengths, state0, R, S):
    """out, final states and the gradients of Σ out ∗ R + Σ state ∗ S, in xrnn's layouts."""
    tx = torch.tensor(x.transpose(2, 1, 0), requires_grad=True)  # (T, m, n_x)
    ts0 = [torch.tensor(s.transpose(0, 2, 1), requires_grad=True) for s in state0]
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        tx, torch.tensor(lengths), enforce_sorted=False
    )
    out, final = module(packed, tuple(ts0) if len(ts0) == 2 else ts0[0])
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    finals = final if isinstance(final, tuple) else (final,)
    loss = (out * torch.tensor(R.transpose(2, 1, 0))).sum()
    for f, s in zip(finals, S, strict=True):
        loss = loss + (f * torch.tensor(s.transpose(0, 2, 1))).sum()
    loss.backward()
    grads = {n: p.grad.numpy().copy() for n, p in module.named_parameters()}
    return {
        "out": out.detach().numpy().transpose(2, 1, 0),
        "state": [f.detach().numpy().transpose(0, 2, 1) for f in finals],
        "dx": tx.grad.numpy().transpose(2, 1, 0),
        "dstate": [s.grad.numpy().transpose(0, 2, 1) for s in ts0],
        "grads": grads,
    }


def torch_grads_as_xrnn(kind, layer, grads):
    """PyTorch's parameter gradients in xrnn's keys: a summed bias gets one copy of the
    (equal) gradients of its two PyTorch halves."""
    cell, out = layer.cell, []
    rows = merged_rows(kind)
    for lay in range(layer.num_layers):
        row = []
        for d in range(layer.num_directions):
            s = f"_l{lay}" + ("_reverse" if d else "")
            g_ih, g_hh = grads.get("bias_ih" + s), grads.get("bias_hh" + s)
            if g_ih is not None:
                g_hh = g_hh.copy()
                g_hh[:rows] = 0  # the summed blocks: count the gradient once
            host = cell.from_torch(
                xnp, grads["weight_ih" + s], grads["weight_hh" + s], g_ih, g_hh, N_A
            )
            row.append({"d" + k: v for k, v in host.items() if k in layer.parameters[lay][d]})
        out.append(row)
    return out


CONFIGS = list(
    itertools.product(MODULES, [1, 2, 3], [False, True], ["equal", "mixed"], [True, False])
)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "kind, num_layers, bidirectional, lengths, bias",
    CONFIGS,
    ids=[
        f"{k}-L{n}-{'bi' if b else 'uni'}-{ln}-{'bias' if bs else 'nobias'}"
        for k, n, b, ln, bs in CONFIGS
    ],
)
def test_from_torch_matches_pytorch(kind, num_layers, bidirectional, lengths, bias, dtype, xp):
    CLOSE = TOLERANCE[dtype]
    module = make_module(kind, num_layers, bidirectional, bias, seed=num_layers)
    rng = np.random.default_rng(7)
    D = 2 if bidirectional else 1
    n_states = 2 if kind == "lstm" else 1
    x = rng.normal(size=(N_X, M, T))
    state0 = [rng.normal(size=(num_layers * D, N_A, M)) for _ in range(n_states)]
    R = rng.normal(size=(D * N_A, M, T))
    S = [rng.normal(size=(num_layers * D, N_A, M)) for _ in range(n_states)]
    want = torch_run(module, x, LENGTHS[lengths], state0, R, S)

    layer = from_torch(module, like=xp.asarray(np.zeros(1), dtype))
    state = tuple(xp.asarray(s, dtype) for s in state0)
    out, final = layer(
        xp.asarray(x, dtype),
        lengths=xp.xp.asarray(LENGTHS[lengths], device=xp.device),
        state=state[0] if n_states == 1 else state,
    )
    dS = tuple(xp.asarray(s, dtype) for s in S)
    g = layer.backward(xp.asarray(R, dtype), dS[0] if n_states == 1 else dS)

    def close(actual, expected, what):
        assert actual.dtype == xp.dtype(dtype), what
        np.testing.assert_allclose(xp.to_numpy(actual), expected, **CLOSE, err_msg=what)

    close(out, want["out"], "out")
    finals = (final,) if n_states == 1 else final
    dstate = (g["dstate"],) if n_states == 1 else g["dstate"]
    for i in range(n_states):
        close(finals[i], want["state"][i], f"state[{i}]")
        close(dstate[i], want["dstate"][i], f"dstate[{i}]")
    close(g["dx"], want["dx"], "dx")
    expected = torch_grads_as_xrnn(kind, layer, want["grads"])
    for lay, d in itertools.product(range(num_layers), range(D)):
        mine = g["parameters"][lay][d]
        assert set(mine) == set(expected[lay][d])
        assert set(mine) == {"d" + k for k in layer.parameters[lay][d]}
        for k, v in expected[lay][d].items():
            close(mine[k], v, f"layer {lay} direction {d} {k}")


@pytest.mark.parametrize("kind", list(MODULES))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_to_torch_of_from_torch_is_the_same_state_dict(kind, bias, dtype):
    module = make_module(kind, 3, True, bias).to(dtype)
    module.dropout = 0.25
    back = to_torch(from_torch(module))
    assert type(back) is type(module)
    for attr in ("input_size", "hidden_size", "num_layers", "bias", "bidirectional", "dropout"):
        assert getattr(back, attr) == getattr(module, attr), attr
    if kind.startswith("rnn"):
        assert back.nonlinearity == module.nonlinearity
    want, got = module.state_dict(), back.state_dict()
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == dtype and torch.equal(got[k], want[k]), k


def test_to_torch_after_training_keeps_the_function():
    module = make_module("gru", 2, True, True)
    layer = from_torch(module)
    for row in layer.parameters:
        for p in row:
            for k in ("br", "bn", "bhn"):
                p[k] = p[k] + 0.5
    back = to_torch(layer)
    x = np.random.default_rng(0).normal(size=(N_X, M, T))
    out, _ = layer(x)
    t_out, _ = back(torch.tensor(x.transpose(2, 1, 0)))
    np.testing.assert_allclose(out, t_out.detach().numpy().transpose(2, 1, 0), rtol=1e-12)


def test_from_torch_copies_and_keeps_the_mode():
    module = make_module("lstm", 1, False, True).eval()
    layer = from_torch(module)
    assert not layer.training
    before = layer.parameters[0][0]["Wf"].copy()
    with torch.no_grad():
        module.weight_ih_l0.add_(1.0)
    np.testing.assert_array_equal(layer.parameters[0][0]["Wf"], before)


def test_unsupported_torch_modules_get_clear_errors():
    with pytest.raises(TypeError, match="module must be a torch.nn.RNN, torch.nn.LSTM or"):
        from_torch(torch.nn.LSTMCell(3, 4))
    with pytest.raises(TypeError, match="module must be"):
        from_torch(torch.nn.Linear(3, 4))
    with pytest.raises(ValueError, match="batch_first=True"):
        from_torch(torch.nn.GRU(3, 4, batch_first=True))
    with pytest.raises(ValueError, match="proj_size=2"):
        from_torch(torch.nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(TypeError, match="float16"):
        from_torch(torch.nn.RNN(3, 4).half())
    with pytest.raises(TypeError, match="layer must be an xrnn.RNN, LSTM or GRU"):
        to_torch(torch.nn.RNN(3, 4))
