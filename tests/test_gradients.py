"""Every gradient of every function against float64 central finite differences, on every backend.

The loss is ``L = Σ a ∗ R`` (plus ``Σ c_next ∗ S`` for the LSTM cell) with fixed random ``R``,
``S``, so the upstream gradients are ``da = R`` (and ``dc_next = S``).
"""

from collections.abc import Callable

import numpy as np
import pytest

import xrnn

# (n_x, n_a, m, T_x): the general case plus the edge cases m=1, T=1, n_x=1.
SHAPES = [(2, 3, 2, 3), (1, 2, 1, 1), (3, 2, 1, 4), (1, 3, 3, 1)]
EPS = 1e-6


def numeric_gradient(loss: Callable[[dict], float], inputs: dict, name: str) -> np.ndarray:
    grad = np.zeros_like(inputs[name])
    for idx in np.ndindex(*grad.shape):
        plus = {**inputs, name: inputs[name].copy()}
        minus = {**inputs, name: inputs[name].copy()}
        plus[name][idx] += EPS
        minus[name][idx] -= EPS
        grad[idx] = (loss(plus) - loss(minus)) / (2 * EPS)
    return grad


def check(xp, loss, analytic, inputs):
    grads = analytic(inputs)
    for name in inputs:
        assert "d" + name in grads, f"no gradient for {name}"
        expected = numeric_gradient(loss, inputs, name)
        got = grads["d" + name]
        assert got.dtype == xp.dtype("float64")
        np.testing.assert_allclose(
            xp.to_numpy(got), expected, rtol=1e-5, atol=1e-7, err_msg=f"d{name}"
        )


def lstm_params(rng, n_x, n_a):
    return {
        k: rng.normal(size=(n_a, n_a + n_x) if k[0] == "W" else (n_a, 1))
        for k in ("Wf", "bf", "Wi", "bi", "Wc", "bc", "Wo", "bo")
    }


def rnn_params(rng, n_x, n_a):
    return {
        "Wax": rng.normal(size=(n_a, n_x)),
        "Waa": rng.normal(size=(n_a, n_a)),
        "ba": rng.normal(size=(n_a, 1)),
    }


def split(xp, inputs, data_names):
    data = {k: xp.asarray(v) for k, v in inputs.items() if k in data_names}
    params = xp.params({k: v for k, v in inputs.items() if k not in data_names})
    return data, params


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_lstm_forward_backward_gradients(shape, xp, rng):
    n_x, n_a, m, T = shape
    inputs = {
        "x": rng.normal(size=(n_x, m, T)),
        "a0": rng.normal(size=(n_a, m)),
        "c0": rng.normal(size=(n_a, m)),
        **lstm_params(rng, n_x, n_a),
    }
    R = rng.normal(size=(n_a, m, T))
    names = {"x", "a0", "c0"}

    def loss(inp):
        d, p = split(xp, inp, names)
        a, _, _, _ = xrnn.lstm_forward(d["x"], d["a0"], p, c0=d["c0"])
        return float(np.sum(xp.to_numpy(a) * R))

    def analytic(inp):
        d, p = split(xp, inp, names)
        _, _, _, caches = xrnn.lstm_forward(d["x"], d["a0"], p, c0=d["c0"])
        return xrnn.lstm_backward(xp.asarray(R), caches)

    check(xp, loss, analytic, inputs)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_rnn_forward_backward_gradients(shape, xp, rng):
    n_x, n_a, m, T = shape
    inputs = {
        "x": rng.normal(size=(n_x, m, T)),
        "a0": rng.normal(size=(n_a, m)),
        **rnn_params(rng, n_x, n_a),
    }
    R = rng.normal(size=(n_a, m, T))
    names = {"x", "a0"}

    def loss(inp):
        d, p = split(xp, inp, names)
        a, _, _ = xrnn.rnn_forward(d["x"], d["a0"], p)
        return float(np.sum(xp.to_numpy(a) * R))

    def analytic(inp):
        d, p = split(xp, inp, names)
        return xrnn.rnn_backward(xp.asarray(R), xrnn.rnn_forward(d["x"], d["a0"], p)[2])

    check(xp, loss, analytic, inputs)


@pytest.mark.parametrize("shape", SHAPES[:2], ids=str)
def test_lstm_cell_gradients(shape, xp, rng):
    n_x, n_a, m, _ = shape
    inputs = {
        "xt": rng.normal(size=(n_x, m)),
        "a_prev": rng.normal(size=(n_a, m)),
        "c_prev": rng.normal(size=(n_a, m)),
        **lstm_params(rng, n_x, n_a),
    }
    R, S = rng.normal(size=(n_a, m)), rng.normal(size=(n_a, m))
    names = {"xt", "a_prev", "c_prev"}

    def loss(inp):
        d, p = split(xp, inp, names)
        a, c, _, _ = xrnn.lstm_cell_forward(d["xt"], d["a_prev"], d["c_prev"], p)
        return float(np.sum(xp.to_numpy(a) * R) + np.sum(xp.to_numpy(c) * S))

    def analytic(inp):
        d, p = split(xp, inp, names)
        cache = xrnn.lstm_cell_forward(d["xt"], d["a_prev"], d["c_prev"], p)[3]
        return xrnn.lstm_cell_backward(xp.asarray(R), xp.asarray(S), cache)

    check(xp, loss, analytic, inputs)


@pytest.mark.parametrize("shape", SHAPES[:2], ids=str)
def test_rnn_cell_gradients(shape, xp, rng):
    n_x, n_a, m, _ = shape
    inputs = {
        "xt": rng.normal(size=(n_x, m)),
        "a_prev": rng.normal(size=(n_a, m)),
        **rnn_params(rng, n_x, n_a),
    }
    R = rng.normal(size=(n_a, m))
    names = {"xt", "a_prev"}

    def loss(inp):
        d, p = split(xp, inp, names)
        return float(np.sum(xp.to_numpy(xrnn.rnn_cell_forward(d["xt"], d["a_prev"], p)[0]) * R))

    def analytic(inp):
        d, p = split(xp, inp, names)
        cache = xrnn.rnn_cell_forward(d["xt"], d["a_prev"], p)[2]
        return xrnn.rnn_cell_backward(xp.asarray(R), cache)

    check(xp, loss, analytic, inputs)


def test_lstm_backward_carries_state_gradients(xp, rng):
    """Erratum 2: with da only at the last step, the first step's gradients are not zero."""
    n_x, n_a, m, T = 2, 3, 2, 4
    p = xp.params(lstm_params(rng, n_x, n_a))
    x = xp.asarray(rng.normal(size=(n_x, m, T)))
    _, _, _, caches = xrnn.lstm_forward(x, xp.asarray(rng.normal(size=(n_a, m))), p)
    da = np.zeros((n_a, m, T))
    da[:, :, -1] = 1.0
    g = xrnn.lstm_backward(xp.asarray(da), caches)
    assert np.all(np.abs(xp.to_numpy(g["dx"])[:, :, 0]) > 0)
    assert np.all(np.abs(xp.to_numpy(g["dc0"])) > 0)
