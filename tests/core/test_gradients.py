"""Every gradient of every cell against float64 central finite differences, on every backend:
sequence functions (plain, with mixed ``lengths``, with ``reverse``, both), and cell functions.

The loss is ``L = Σ_k Σ s_k ∗ R_k`` over every output state component ``s_k`` (``a``, and ``c``
for the LSTM), with fixed random ``R_k``, so the upstream gradients are ``da = R_a`` and (for
the cell functions) ``dc_next = R_c``. The sequence loss reads only ``a``; the LSTM's ``c``
enters through ``a``.
"""

from collections.abc import Callable

import numpy as np
import pytest

import xrnn
from tests.cell_cases import (
    NAMES,
    backward,
    cell_backward,
    cell_forward,
    forward,
    random_parameters,
    spec,
)

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


def split(xp, inputs, data_names):
    data = {k: xp.asarray(v) for k, v in inputs.items() if k in data_names}
    params = xp.params({k: v for k, v in inputs.items() if k not in data_names})
    return data, params


def sequence_case(cell, shape, rng):
    n_x, n_a, m, T = shape
    states = {f"{s}0": rng.normal(size=(n_a, m)) for s in spec(cell).states}
    inputs = {"x": rng.normal(size=(n_x, m, T)), **states, **random_parameters(cell, rng, n_x, n_a)}
    return inputs, rng.normal(size=(n_a, m, T)), {"x", *states}


def check_sequence(xp, cell, shape, rng, **kw):
    inputs, R, names = sequence_case(cell, shape, rng)
    state_names = [f"{s}0" for s in spec(cell).states]

    def run(inp):
        d, p = split(xp, inp, names)
        return forward(cell, d["x"], tuple(d[s] for s in state_names), p, **kw)

    def loss(inp):
        return float(np.sum(xp.to_numpy(run(inp)[0][0]) * R))

    check(xp, loss, lambda inp: backward(cell, xp.asarray(R), run(inp)[2]), inputs)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("cell", NAMES)
def test_sequence_gradients(cell, shape, xp, rng):
    check_sequence(xp, cell, shape, rng)


@pytest.mark.parametrize(
    "lengths, reverse",
    [([4, 1, 3], False), (None, True), ([4, 1, 3], True)],  # plain: test_sequence_gradients
    ids=["mixed-forward", "full-reverse", "mixed-reverse"],
)
@pytest.mark.parametrize("cell", NAMES)
def test_sequence_gradients_with_lengths_and_reverse(cell, lengths, reverse, xp, rng):
    kw = {"reverse": reverse}
    if lengths is not None:
        kw["lengths"] = xp.xp.asarray(lengths, device=xp.device)
    check_sequence(xp, cell, (2, 3, 3, 4), rng, **kw)


@pytest.mark.parametrize("shape", SHAPES[:2], ids=str)
@pytest.mark.parametrize("cell", NAMES)
def test_cell_gradients(cell, shape, xp, rng):
    n_x, n_a, m, _ = shape
    states = [f"{s}_prev" for s in spec(cell).states]
    inputs = {
        "xt": rng.normal(size=(n_x, m)),
        **{s: rng.normal(size=(n_a, m)) for s in states},
        **random_parameters(cell, rng, n_x, n_a),
    }
    R = [rng.normal(size=(n_a, m)) for _ in states]
    names = {"xt", *states}

    def run(inp):
        d, p = split(xp, inp, names)
        return cell_forward(cell, d["xt"], tuple(d[s] for s in states), p)

    def loss(inp):
        new, _ = run(inp)
        return float(sum(np.sum(xp.to_numpy(s) * r) for s, r in zip(new, R, strict=True)))

    def analytic(inp):
        _, cache = run(inp)
        return cell_backward(cell, tuple(xp.asarray(r) for r in R), cache)

    check(xp, loss, analytic, inputs)


def test_lstm_backward_carries_state_gradients(xp, rng):
    """Erratum 2: with da only at the last step, the first step's gradients are not zero."""
    n_x, n_a, m, T = 2, 3, 2, 4
    p = xp.params(random_parameters("lstm", rng, n_x, n_a))
    x = xp.asarray(rng.normal(size=(n_x, m, T)))
    _, _, _, caches = xrnn.lstm_forward(x, xp.asarray(rng.normal(size=(n_a, m))), p)
    da = np.zeros((n_a, m, T))
    da[:, :, -1] = 1.0
    g = xrnn.lstm_backward(xp.asarray(da), caches)
    assert np.all(np.abs(xp.to_numpy(g["dx"])[:, :, 0]) > 0)
    assert np.all(np.abs(xp.to_numpy(g["dc0"])) > 0)
