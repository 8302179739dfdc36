"""The layers (``xrnn.RNN``/``LSTM``/``GRU``): finite differences of the whole layer API, dropout,
the functional calls they are made of, truncated BPTT and bad input. PyTorch parity is in
``tests/test_interop.py``."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest

import xrnn

N_X, N_A, M, T = 3, 4, 3, 5


# --- finite differences of the layer API ---------------------------------------------------


LAYERS = {
    "rnn": lambda **kw: xrnn.RNN(N_X, N_A, **kw),
    "rnn_relu": lambda **kw: xrnn.RNN(N_X, N_A, nonlinearity="relu", **kw),
    "lstm": lambda **kw: xrnn.LSTM(N_X, N_A, **kw),
    "gru": lambda **kw: xrnn.GRU(N_X, N_A, **kw),
}


@pytest.mark.parametrize("kind", list(LAYERS))
def test_layer_gradients_match_finite_differences(kind, xp):
    """dx, the initial-state gradient and parameter gradients of a 2-layer bidirectional
    layer with dropout (the same mask in every call) over mixed lengths."""
    layer = LAYERS[kind](num_layers=2, bidirectional=True, dropout=0.3, seed=3)
    rng = np.random.default_rng(11)
    host = [
        [{k: v + 0.1 * rng.normal(size=v.shape) for k, v in p.items()} for p in row]
        for row in layer.parameters
    ]  # fmt: skip  (nonzero biases: away from ReLU's kink)
    n_states = len(layer.cell.states)
    x = rng.normal(size=(N_X, M, T))
    state0 = [rng.normal(size=(4, N_A, M)) for _ in range(n_states)]
    R = rng.normal(size=(2 * N_A, M, T))
    S = [rng.normal(size=(4, N_A, M)) for _ in range(n_states)]
    lengths = xp.xp.asarray([T, 2, 4], device=xp.device)

    def pack(states):
        arrays = tuple(xp.asarray(s) for s in states)
        return arrays[0] if n_states == 1 else arrays

    def loss(params, x, state0):
        layer.parameters = [[xp.params(p) for p in row] for row in params]
        layer.generator = np.random.default_rng(5)  # the same dropout mask every time
        out, final = layer(xp.asarray(x), lengths=lengths, state=pack(state0))
        finals = (final,) if n_states == 1 else final
        total = float(np.sum(xp.to_numpy(out) * R))
        return total + sum(
            float(np.sum(xp.to_numpy(f) * s)) for f, s in zip(finals, S, strict=True)
        )

    loss(host, x, state0)
    g = layer.backward(xp.asarray(R), pack(S))
    eps = 1e-6

    def numeric(perturb):
        plus, minus = perturb(eps), perturb(-eps)
        return (loss(*plus) - loss(*minus)) / (2 * eps)

    def check(analytic, array, build, what):
        for idx in [tuple(rng.integers(0, s) for s in array.shape) for _ in range(4)]:

            def perturb(step, idx=idx):
                return build(idx, step)

            got = xp.to_numpy(analytic)[idx]
            assert np.isclose(got, numeric(perturb), rtol=1e-5, atol=1e-7), (what, idx)

    def with_x(idx, step):
        xx = x.copy()
        xx[idx] += step
        return host, xx, state0

    check(g["dx"], x, with_x, "dx")
    dstate = (g["dstate"],) if n_states == 1 else g["dstate"]
    for i in range(n_states):

        def with_state(idx, step, i=i):
            ss = [s.copy() for s in state0]
            ss[i][idx] += step
            return host, x, ss

        check(dstate[i], state0[i], with_state, f"dstate[{i}]")
    for lay, d in itertools.product(range(2), range(2)):
        for k, v in host[lay][d].items():

            def with_param(idx, step, lay=lay, d=d, k=k, v=v):
                pp = [[dict(p) for p in row] for row in host]
                pp[lay][d][k] = v.copy()
                pp[lay][d][k][idx] += step
                return pp, x, state0

            check(g["parameters"][lay][d]["d" + k], v, with_param, (lay, d, k))


def test_dropout_only_in_training_and_as_pytorch_scales_it():
    layer = xrnn.LSTM(N_X, N_A, num_layers=2, dropout=0.5, seed=1)
    x = np.random.default_rng(0).normal(size=(N_X, M, T))
    a, _ = layer(x)
    b, _ = layer(x)
    assert not np.allclose(a, b)  # a new mask per call
    layer.eval()
    c, _ = layer(x)
    d, _ = layer(x)
    np.testing.assert_array_equal(c, d)
    layer.dropout = 0.0
    layer.train()
    np.testing.assert_array_equal(layer(x)[0], c)


def test_a_stacked_layer_is_its_layers_through_the_functional_api():
    layer = xrnn.GRU(N_X, N_A, num_layers=2, bidirectional=True, seed=4)
    x = np.random.default_rng(0).normal(size=(N_X, M, T))
    zeros = np.zeros((N_A, M))
    outs = [xrnn.gru_forward(x, zeros, layer.parameters[0][d], reverse=d == 1)[0] for d in (0, 1)]
    mid = np.concatenate(outs, axis=0)
    outs = [xrnn.gru_forward(mid, zeros, layer.parameters[1][d], reverse=d == 1)[0] for d in (0, 1)]
    np.testing.assert_allclose(layer(x)[0], np.concatenate(outs, axis=0), rtol=1e-14)


# --- truncated backpropagation through time -------------------------------------------------


def test_truncated_bptt_carries_the_state_and_matches_one_long_pass():
    """Chunks that carry the final state (and hand back its gradient) reproduce one pass."""
    rng = np.random.default_rng(2)
    layer = xrnn.LSTM(N_X, N_A, num_layers=2, seed=0)
    x = rng.normal(size=(N_X, M, 12))
    R = rng.normal(size=(N_A, M, 12))
    out, _ = layer(x)
    whole = layer.backward(R)
    chunks, state = [], None
    for start in range(0, 12, 4):
        o, state = layer(x[:, :, start : start + 4], state=state)
        chunks.append(o)
        layer.backward(R[:, :, start : start + 4])  # truncated: no gradient into the past
    np.testing.assert_allclose(np.concatenate(chunks, axis=2), out, rtol=1e-13)
    # exact BPTT across chunks: one layer object per chunk (sharing the parameters), then
    # backward from the last chunk, handing each chunk's initial-state gradient down
    chunk_layers, state = [], None
    for start in range(0, 12, 4):
        chunk = copy.copy(layer)
        _, state = chunk(x[:, :, start : start + 4], state=state)
        chunk_layers.append(chunk)
    dstate, total = None, None
    for chunk, start in reversed(list(zip(chunk_layers, range(0, 12, 4), strict=True))):
        g = chunk.backward(R[:, :, start : start + 4], dstate)
        dstate = g["dstate"]
        total = g["parameters"] if total is None else [
            [{n: t[n] + v for n, v in gd.items()} for t, gd in zip(trow, grow, strict=True)]
            for trow, grow in zip(total, g["parameters"], strict=True)
        ]  # fmt: skip
    for lay in range(2):
        for k, v in whole["parameters"][lay][0].items():
            np.testing.assert_allclose(total[lay][0][k], v, rtol=1e-10, atol=1e-12)


# --- bad input --------------------------------------------------------------------------------


def test_bad_layer_inputs_are_named(xp):
    layer = xrnn.LSTM(N_X, N_A, num_layers=2, like=xp.asarray(np.zeros(1)))
    x = xp.asarray(np.zeros((N_X, M, T)))
    with pytest.raises(ValueError, match="backward\\(\\) needs a forward pass first"):
        layer.backward(xp.asarray(np.zeros((N_A, M, T))))
    with pytest.raises(ValueError, match="x has n_x=2 features; this layer takes n_x=3"):
        layer(xp.asarray(np.zeros((2, M, T))))
    with pytest.raises(ValueError, match="lengths must lie in"):
        layer(x, lengths=[T, 0, 1])
    with pytest.raises(ValueError, match="lengths must lie in"):
        layer(x, lengths=[T + 1, 1, 1])
    with pytest.raises(ValueError, match="lengths has shape \\(2,\\); expected \\(3,\\)"):
        layer(x, lengths=[T, 1])
    with pytest.raises(TypeError, match="lengths must have an integer dtype"):
        layer(x, lengths=xp.asarray(np.ones(M)))
    with pytest.raises(ValueError, match="state\\[1\\] has shape"):
        layer(x, state=(xp.asarray(np.zeros((2, N_A, M))), xp.asarray(np.zeros((1, N_A, M)))))
    with pytest.raises(TypeError, match="state must be a tuple of 2"):
        layer(x, state=xp.asarray(np.zeros((2, N_A, M))))
    out, _ = layer(x)
    with pytest.raises(ValueError, match="dout has shape \\(4, 3, 4\\); expected \\(4, 3, 5\\)"):
        layer.backward(xp.asarray(np.zeros((N_A, M, T - 1))))
    with pytest.raises(ValueError, match="dstate\\[0\\] has shape"):
        layer.backward(out, (xp.asarray(np.zeros((1, N_A, M))),) * 2)
    layer.backward(out)
    with pytest.raises(ValueError, match="once per forward call"):
        layer.backward(out)  # the first backward released the caches


def test_bad_layer_settings_are_named():
    with pytest.raises(ValueError, match="dropout must lie in \\[0, 1\\)"):
        xrnn.GRU(3, 4, dropout=1.0)
    with pytest.raises(ValueError, match="num_layers must be a positive integer"):
        xrnn.GRU(3, 4, num_layers=0)
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu'"):
        xrnn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match="bidirectional must be True or False"):
        xrnn.LSTM(3, 4, bidirectional="yes")
    with pytest.raises(TypeError, match="generator must be a numpy.random.Generator"):
        xrnn.LSTM(3, 4, generator=0)


@pytest.mark.parametrize("lengths", [None, [5, 2, 4]])
def test_evaluation_mode_keeps_no_caches(xp, lengths):
    """layer.eval(): the training mode's outputs and final states (dropout 0) from a forward
    that keeps no caches; a backward after it says why it cannot run."""
    layer = xrnn.LSTM(N_X, N_A, num_layers=2, bidirectional=True, seed=2, like=xp.asarray(0.0))
    x = xp.asarray(np.random.default_rng(0).normal(size=(N_X, 3, 5)))
    a, (h, c) = layer.train()(x, lengths=lengths)
    b, (g, d) = layer.eval()(x, lengths=lengths)
    for got, want in ((b, a), (g, h), (d, c)):
        np.testing.assert_allclose(xp.to_numpy(got), xp.to_numpy(want), rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="training mode"):
        layer.backward(b)
