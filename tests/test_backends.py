"""Backend kernels against the generic reference, activations, helpers and dispatch."""

import warnings

import numpy as np
import pytest

import xrnn
from xrnn.backends import get_ops
from xrnn.ops import Ops


def _loop_buffers(xp, rng, n_a=3, m=2, T=4, lstm=True):
    """Time-major buffers (xrnn.ops): G (T, k n_a, m), H and C (T+1, n_a, m), dA (T, n_a, m)."""
    k = 4 if lstm else 1
    G = xp.asarray(rng.normal(size=(T, k * n_a, m)))
    H = xp.asarray(np.concatenate([rng.normal(size=(1, n_a, m)), np.zeros((T, n_a, m))]))
    C = xp.asarray(np.concatenate([rng.normal(size=(1, n_a, m)), np.zeros((T, n_a, m))]))
    Wa = xp.asarray(rng.normal(size=(k * n_a, n_a)))
    dA = xp.asarray(rng.normal(size=(T, n_a, m)))
    return G, H, C, Wa, dA


def _run_loops(ops, xp, bufs, m=2, T=4):
    G, H, C, Wa, dA = (xp.asarray(xp.to_numpy(b).copy()) for b in bufs)  # private copies
    n_a = H.shape[1]
    for t in range(T):
        ops.lstm_forward_step(G, H, C, Wa, t)
    dP = xp.asarray(np.zeros((4 * n_a, T * m)))
    da = xp.asarray(np.zeros((n_a, m)))
    dc = xp.asarray(np.ones((n_a, m)))
    for t in reversed(range(T)):
        da, dc = ops.lstm_backward_step(dP, t, dA[t, :, :], G, C, Wa.T, t, da, dc)
    return [xp.to_numpy(v) for v in (G, H, C, dP, da, dc)]


def _run_rnn_loops(ops, xp, bufs, m=2, T=4):
    G, H, _, Wa, dA = (xp.asarray(xp.to_numpy(b).copy()) for b in bufs)
    n_a = H.shape[1]
    for t in range(T):
        ops.rnn_forward_step(H, G, Wa, t)
    dP = xp.asarray(np.zeros((n_a, T * m)))
    da = xp.asarray(np.zeros((n_a, m)))
    for t in reversed(range(T)):
        da = ops.rnn_backward_step(dP, t, dA[t, :, :], H, Wa.T, t, da)
    return [xp.to_numpy(v) for v in (H, dP, da)]


def test_backend_step_kernels_match_the_generic_reference(xp, rng):
    """NumPy's in-place and CuPy's fused kernels compute what xrnn.ops.Ops computes."""
    ops = get_ops(xp.xp)
    reference = Ops(xp.xp)
    bufs = _loop_buffers(xp, rng)
    for got, want in zip(_run_loops(ops, xp, bufs), _run_loops(reference, xp, bufs), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    bufs = _loop_buffers(xp, rng, lstm=False)
    for got, want in zip(
        _run_rnn_loops(ops, xp, bufs), _run_rnn_loops(reference, xp, bufs), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_numpy_and_cupy_get_their_own_ops(xp):
    name = type(get_ops(xp.xp)).__name__
    assert name == {"numpy": "NumpyOps", "cupy": "CupyOps"}.get(xp.name, "Ops")


def test_available_backends_lists_numpy_first():
    found = xrnn.available_backends()
    assert found[0] == "numpy"
    assert len(set(found)) == len(found)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_activations_are_stable_at_extremes(xp, dtype):
    z = xp.asarray(np.array([[-1000.0, 0.0, 1000.0], [1000.0, 0.0, -1000.0]]), dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = xp.to_numpy(xrnn.sigmoid(z))
        p = xp.to_numpy(xrnn.softmax(z))
    np.testing.assert_allclose(s, [[0, 0.5, 1], [1, 0.5, 0]], atol=1e-7)
    np.testing.assert_allclose(p, [[0, 0.5, 1], [1, 0.5, 0]], atol=1e-7)
    assert xrnn.sigmoid(z).dtype == xp.dtype(dtype)


def test_initialize_is_seeded_and_follows_like(xp):
    host = xrnn.initialize_lstm(3, 4, 2, seed=7)
    assert host["Wf"].shape == (4, 7) and host["by"].shape == (2, 1)
    assert host["Wf"].dtype == np.float64
    np.testing.assert_array_equal(host["bf"], np.ones((4, 1)))
    like = xp.asarray(np.zeros((1, 1)), "float32")
    p = xrnn.initialize_lstm(3, 4, 2, seed=7, like=like)
    for k, v in p.items():
        assert v.dtype == xp.dtype("float32")
        np.testing.assert_allclose(xp.to_numpy(v), host[k], rtol=1e-6, err_msg=k)
    r = xrnn.initialize_rnn(3, 4, seed=7, like=like)
    assert set(r) == {"Wax", "Waa", "ba"}
    with pytest.raises(ValueError, match="n_a must be a positive integer, got 0"):
        xrnn.initialize_rnn(3, 0)


def test_to_device_moves_every_array(xp):
    host = xrnn.initialize_rnn(3, 4, 2, seed=1)
    like = xp.asarray(np.zeros((1, 1)), "float32")
    moved = xrnn.to_device(host, like)
    assert set(moved) == set(host)
    for k, v in moved.items():
        assert v.dtype == xp.dtype("float32")
        np.testing.assert_allclose(xp.to_numpy(v), host[k], rtol=1e-6)
    back = xrnn.to_device(moved, np.zeros(1))
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float64 for v in back.values())


def test_exercise_style_list_caches_are_accepted(xp, rng):
    """Backward accepts per-step tuples built by the exercise's own loop (cell by cell)."""
    n_x, n_a, m, T = 2, 3, 2, 4
    p = xp.params(xrnn.initialize_lstm(n_x, n_a, seed=3))
    x = xp.asarray(rng.normal(size=(n_x, m, T)))
    a0 = xp.asarray(rng.normal(size=(n_a, m)))
    da = xp.asarray(rng.normal(size=(n_a, m, T)))
    a_prev, c_prev = a0, xp.asarray(np.zeros((n_a, m)))
    steps = []
    for t in range(T):
        a_prev, c_prev, _, cache = xrnn.lstm_cell_forward(x[:, :, t], a_prev, c_prev, p)
        steps.append(cache)
    g_list = xrnn.lstm_backward(da, (steps, x))
    g = xrnn.lstm_backward(da, xrnn.lstm_forward(x, a0, p)[3])
    for k in g:
        np.testing.assert_allclose(xp.to_numpy(g_list[k]), xp.to_numpy(g[k]), rtol=1e-12)

    pr = xp.params(xrnn.initialize_rnn(n_x, n_a, seed=3))
    a_prev, steps = a0, []
    for t in range(T):
        a_prev, _, cache = xrnn.rnn_cell_forward(x[:, :, t], a_prev, pr)
        steps.append(cache)
    g_list = xrnn.rnn_backward(da, (steps, x))
    g = xrnn.rnn_backward(da, xrnn.rnn_forward(x, a0, pr)[2])
    for k in g:
        np.testing.assert_allclose(xp.to_numpy(g_list[k]), xp.to_numpy(g[k]), rtol=1e-12)


@pytest.mark.parametrize("chunk", [1, 3, 5])
def test_chunked_backward_equals_one_chunk(chunk, xp, rng, monkeypatch):
    """Chunks of 1 step, of 3 steps with a partial last chunk, or one step short of T: the
    same gradients as one chunk holding every step."""
    import xrnn.bptt

    n_x, n_a, m, T = 2, 3, 2, 7
    x = xp.asarray(rng.normal(size=(n_x, m, T)))
    a0 = xp.asarray(rng.normal(size=(n_a, m)))
    da = xp.asarray(rng.normal(size=(n_a, m, T)))
    pl = xp.params(xrnn.initialize_lstm(n_x, n_a, seed=4))
    pr = xp.params(xrnn.initialize_rnn(n_x, n_a, seed=4))
    whole = (
        xrnn.lstm_backward(da, xrnn.lstm_forward(x, a0, pl)[3]),
        xrnn.rnn_backward(da, xrnn.rnn_forward(x, a0, pr)[2]),
    )
    monkeypatch.setattr(xrnn.bptt, "CHUNK_COLUMNS", chunk * m)
    parts = (
        xrnn.lstm_backward(da, xrnn.lstm_forward(x, a0, pl)[3]),
        xrnn.rnn_backward(da, xrnn.rnn_forward(x, a0, pr)[2]),
    )
    for w, p in zip(whole, parts, strict=True):
        for k in w:
            np.testing.assert_allclose(
                xp.to_numpy(p[k]), xp.to_numpy(w[k]), rtol=1e-12, atol=1e-14, err_msg=k
            )
