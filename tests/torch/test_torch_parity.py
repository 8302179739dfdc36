"""Parity with PyTorch autograd for every cell PyTorch has: ``nn.RNN`` (tanh, relu),
``nn.LSTM``, ``nn.GRU``, with weights converted by the cell spec's own ``to_torch``; every
length mode and direction. (Cells PyTorch lacks are checked against autograd through a
hand-written torch loop of their math: ``test_peephole_lstm.py``.)

Mixed lengths go through ``pack_padded_sequence(..., enforce_sorted=False)``; reverse time is
the backward half of a bidirectional module. Outputs, final states, the input and initial-state
gradients and every parameter gradient must agree: float64 to 1e-10, and float32 (xrnn in float32
against the float64 reference) to 1e-5.
"""

import array_api_compat.numpy as xnp
import numpy as np
import pytest

from tests.cell_cases import backward, forward, random_parameters, spec

torch = pytest.importorskip("torch")
rnn_utils = pytest.importorskip("torch.nn.utils.rnn")

MODULES = {  # cell -> (torch.nn module, its keywords)
    "rnn": ("RNN", {}),
    "rnn_relu": ("RNN", {"nonlinearity": "relu"}),
    "lstm": ("LSTM", {}),
    "gru": ("GRU", {}),
}
TOLERANCE = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-5, atol=1e-5)}


def _t(a, grad=False):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


def torch_reference(cell, p, x, state0, R, lengths, reverse):
    """Outputs, final states and gradients of ``Σ out ∗ R`` from the PyTorch module."""
    n_x, m, T = x.shape
    n_a = state0[0].shape[0]
    name, kw = MODULES[cell]
    module = getattr(torch.nn, name)(n_x, n_a, bidirectional=reverse, dtype=torch.float64, **kw)
    weights = spec(cell).to_torch(xnp, p, n_a)
    suffix = "_l0_reverse" if reverse else "_l0"
    with torch.no_grad():
        for name, value in weights.items():
            getattr(module, name + suffix).copy_(_t(value))
    directions = 2 if reverse else 1
    tx = _t(np.transpose(x, (2, 1, 0)), grad=True)  # (T, m, n_x)
    # one initial state per direction; the forward half gets zeros and is ignored
    ts0 = [_t(np.stack([s.T] * directions), grad=True) for s in state0]
    inp = tx
    if lengths is not None:
        inp = rnn_utils.pack_padded_sequence(tx, torch.tensor(lengths), enforce_sorted=False)
    out, final = module(inp, ts0[0] if cell != "lstm" else tuple(ts0))
    if lengths is not None:
        out, _ = rnn_utils.pad_packed_sequence(out, total_length=T)
    out = out[:, :, -n_a:]  # our direction's half
    (out * _t(np.transpose(R, (2, 1, 0)))).sum().backward()
    finals = final if cell == "lstm" else (final,)
    grads = {name: getattr(module, name + suffix).grad.numpy() for name in weights}
    return {
        "out": out.detach().numpy().transpose(2, 1, 0),
        "final": [f.detach().numpy()[-1].T for f in finals],
        "dx": tx.grad.numpy().transpose(2, 1, 0),
        "dstate0": [s.grad.numpy()[-1].T for s in ts0],
        "params": grads,
    }


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("lengths", [None, [6, 6, 6], [6, 2, 5]], ids=["none", "equal", "mixed"])
@pytest.mark.parametrize("shape", [(4, 5, 3, 6), (1, 2, 3, 6)], ids=str)
@pytest.mark.parametrize("cell", sorted(MODULES))
def test_matches_torch_autograd(cell, shape, lengths, reverse, dtype, xp, rng):
    CLOSE = TOLERANCE[dtype]
    n_x, n_a, m, T = shape
    p = random_parameters(cell, rng, n_x, n_a)
    x = rng.normal(size=(n_x, m, T))
    state0 = tuple(rng.normal(size=(n_a, m)) for _ in spec(cell).states)
    R = rng.normal(size=(n_a, m, T))
    want = torch_reference(cell, p, x, state0, R, lengths, reverse)

    kw = {"reverse": reverse}
    if lengths is not None:
        kw["lengths"] = xp.xp.asarray(lengths, device=xp.device)
    states, _, caches = forward(
        cell,
        xp.asarray(x, dtype),
        tuple(xp.asarray(s, dtype) for s in state0),
        xp.params(p, dtype),
        **kw,
    )
    g = backward(cell, xp.asarray(R, dtype), caches)
    assert g["dx"].dtype == xp.dtype(dtype)

    np.testing.assert_allclose(xp.to_numpy(states[0]), want["out"], **CLOSE)
    for got, final in zip(caches[0].final_states(), want["final"], strict=True):
        np.testing.assert_allclose(xp.to_numpy(got), final, **CLOSE)
    np.testing.assert_allclose(xp.to_numpy(g["dx"]), want["dx"], **CLOSE)
    for s, d in zip(spec(cell).states, want["dstate0"], strict=True):
        np.testing.assert_allclose(xp.to_numpy(g[f"d{s}0"]), d, **CLOSE, err_msg=f"d{s}0")
    ours = spec(cell).to_torch(xnp, {k: xp.to_numpy(g["d" + k]) for k in spec(cell).keys}, n_a)
    theirs = want["params"]
    for name in ("weight_ih", "weight_hh", "bias_ih"):
        np.testing.assert_allclose(ours[name], theirs[name], **CLOSE, err_msg=name)
    # PyTorch's second bias has the first one's gradient, except the GRU's n block (bhn)
    bias_hh = ours["bias_ih"].copy()
    if spec(cell).split_recurrent:
        bias_hh[2 * n_a :] = ours["bias_hh"][2 * n_a :]
    np.testing.assert_allclose(bias_hh, theirs["bias_hh"], **CLOSE, err_msg="bias_hh")
