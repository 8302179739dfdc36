"""Parity with PyTorch autograd: nn.RNN (tanh) and nn.LSTM with converted weights.

PyTorch stacks its gates as (i, f, g, o), splits each weight into an input part and a hidden
part, and has two biases; xrnn's ``W·`` act on ``[a_prev; x]`` (hidden columns first) with one
bias. The conversion puts xrnn's bias in ``bias_ih`` and zeros in ``bias_hh``.
"""

import numpy as np
import pytest

import xrnn

torch = pytest.importorskip("torch")

SHAPES = [(4, 5, 3, 6), (1, 2, 1, 1)]


def _tensor(a, grad=False):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_lstm_matches_torch_autograd(shape, xp, rng):
    n_x, n_a, m, T = shape
    p = {
        k: rng.normal(size=(n_a, n_a + n_x) if k[0] == "W" else (n_a, 1))
        for k in ("Wf", "bf", "Wi", "bi", "Wc", "bc", "Wo", "bo")
    }
    x, a0, c0 = rng.normal(size=(n_x, m, T)), rng.normal(size=(n_a, m)), rng.normal(size=(n_a, m))
    R = rng.normal(size=(n_a, m, T))

    lstm = torch.nn.LSTM(n_x, n_a, dtype=torch.float64)
    order = ("i", "f", "c", "o")  # PyTorch's i, f, g, o
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(_tensor(np.concatenate([p["W" + g][:, n_a:] for g in order])))
        lstm.weight_hh_l0.copy_(_tensor(np.concatenate([p["W" + g][:, :n_a] for g in order])))
        lstm.bias_ih_l0.copy_(_tensor(np.concatenate([p["b" + g][:, 0] for g in order])))
        lstm.bias_hh_l0.zero_()
    tx = _tensor(np.transpose(x, (2, 1, 0)), grad=True)  # (T, m, n_x)
    th0 = _tensor(a0.T[None], grad=True)
    tc0 = _tensor(c0.T[None], grad=True)
    out, (_, cn) = lstm(tx, (th0, tc0))
    (out * _tensor(np.transpose(R, (2, 1, 0)))).sum().backward()

    a, _, c, caches = xrnn.lstm_forward(
        xp.asarray(x), xp.asarray(a0), xp.params(p), c0=xp.asarray(c0)
    )
    g = xrnn.lstm_backward(xp.asarray(R), caches)

    close = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(xp.to_numpy(a), out.detach().numpy().transpose(2, 1, 0), **close)
    np.testing.assert_allclose(xp.to_numpy(c)[:, :, -1], cn.detach().numpy()[0].T, **close)
    np.testing.assert_allclose(xp.to_numpy(g["dx"]), tx.grad.numpy().transpose(2, 1, 0), **close)
    np.testing.assert_allclose(xp.to_numpy(g["da0"]), th0.grad.numpy()[0].T, **close)
    np.testing.assert_allclose(xp.to_numpy(g["dc0"]), tc0.grad.numpy()[0].T, **close)
    gih, ghh = lstm.weight_ih_l0.grad.numpy(), lstm.weight_hh_l0.grad.numpy()
    gb = lstm.bias_ih_l0.grad.numpy()
    for k, gate in enumerate(order):
        rows = slice(k * n_a, (k + 1) * n_a)
        expected = np.concatenate([ghh[rows], gih[rows]], axis=1)
        np.testing.assert_allclose(xp.to_numpy(g["dW" + gate]), expected, **close)
        np.testing.assert_allclose(xp.to_numpy(g["db" + gate])[:, 0], gb[rows], **close)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_rnn_matches_torch_autograd(shape, xp, rng):
    n_x, n_a, m, T = shape
    p = {
        "Wax": rng.normal(size=(n_a, n_x)),
        "Waa": rng.normal(size=(n_a, n_a)) / n_a,
        "ba": rng.normal(size=(n_a, 1)),
    }
    x, a0, R = rng.normal(size=(n_x, m, T)), rng.normal(size=(n_a, m)), rng.normal(size=(n_a, m, T))

    rnn = torch.nn.RNN(n_x, n_a, nonlinearity="tanh", dtype=torch.float64)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(_tensor(p["Wax"]))
        rnn.weight_hh_l0.copy_(_tensor(p["Waa"]))
        rnn.bias_ih_l0.copy_(_tensor(p["ba"][:, 0]))
        rnn.bias_hh_l0.zero_()
    tx = _tensor(np.transpose(x, (2, 1, 0)), grad=True)
    th0 = _tensor(a0.T[None], grad=True)
    out, _ = rnn(tx, th0)
    (out * _tensor(np.transpose(R, (2, 1, 0)))).sum().backward()

    a, _, caches = xrnn.rnn_forward(xp.asarray(x), xp.asarray(a0), xp.params(p))
    g = xrnn.rnn_backward(xp.asarray(R), caches)

    close = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(xp.to_numpy(a), out.detach().numpy().transpose(2, 1, 0), **close)
    np.testing.assert_allclose(xp.to_numpy(g["dx"]), tx.grad.numpy().transpose(2, 1, 0), **close)
    np.testing.assert_allclose(xp.to_numpy(g["da0"]), th0.grad.numpy()[0].T, **close)
    np.testing.assert_allclose(xp.to_numpy(g["dWax"]), rnn.weight_ih_l0.grad.numpy(), **close)
    np.testing.assert_allclose(xp.to_numpy(g["dWaa"]), rnn.weight_hh_l0.grad.numpy(), **close)
    np.testing.assert_allclose(xp.to_numpy(g["dba"])[:, 0], rnn.bias_ih_l0.grad.numpy(), **close)
