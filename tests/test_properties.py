"""Property tests over shapes and dtypes: finite outputs of the right shape, dtype and device."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xrnn

dims = st.tuples(
    st.integers(1, 5),
    st.integers(1, 6),
    st.integers(1, 4),
    st.integers(1, 6),
    st.sampled_from(["float32", "float64"]),
    st.booleans(),
    st.integers(0, 2**16),
)
SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _check(xp, arr, shape, dtype):
    assert tuple(arr.shape) == shape
    assert arr.dtype == xp.dtype(dtype)
    import array_api_compat

    assert array_api_compat.device(arr) == xp.device
    assert np.all(np.isfinite(xp.to_numpy(arr)))


@SETTINGS
@given(dims)
def test_lstm_shapes_dtypes_devices(xp, d):
    n_x, n_a, m, T, dtype, with_y, seed = d
    rng = np.random.default_rng(seed)
    n_y = 3 if with_y else None
    p = xp.params(xrnn.initialize_lstm(n_x, n_a, n_y, seed=seed), dtype)
    x = xp.asarray(rng.normal(size=(n_x, m, T)) * 3, dtype)
    a0 = xp.asarray(rng.normal(size=(n_a, m)), dtype)
    a, y, c, caches = xrnn.lstm_forward(x, a0, p)
    for arr in (a, c):
        _check(xp, arr, (n_a, m, T), dtype)
    assert (y is None) == (not with_y)
    if with_y:
        _check(xp, y, (3, m, T), dtype)
        np.testing.assert_allclose(xp.to_numpy(y).sum(axis=0), 1, rtol=1e-5)
    g = xrnn.lstm_backward(xp.asarray(rng.normal(size=(n_a, m, T)), dtype), caches)
    _check(xp, g["dx"], (n_x, m, T), dtype)
    _check(xp, g["da0"], (n_a, m), dtype)
    _check(xp, g["dc0"], (n_a, m), dtype)
    for k in "fico":
        _check(xp, g["dW" + k], (n_a, n_a + n_x), dtype)
        _check(xp, g["db" + k], (n_a, 1), dtype)


@SETTINGS
@given(dims)
def test_rnn_shapes_dtypes_devices(xp, d):
    n_x, n_a, m, T, dtype, with_y, seed = d
    rng = np.random.default_rng(seed)
    p = xp.params(xrnn.initialize_rnn(n_x, n_a, 2 if with_y else None, seed=seed), dtype)
    x = xp.asarray(rng.normal(size=(n_x, m, T)) * 3, dtype)
    a, y, caches = xrnn.rnn_forward(x, xp.asarray(rng.normal(size=(n_a, m)), dtype), p)
    _check(xp, a, (n_a, m, T), dtype)
    if with_y:
        _check(xp, y, (2, m, T), dtype)
    g = xrnn.rnn_backward(xp.asarray(rng.normal(size=(n_a, m, T)), dtype), caches)
    _check(xp, g["dx"], (n_x, m, T), dtype)
    _check(xp, g["da0"], (n_a, m), dtype)
    _check(xp, g["dWax"], (n_a, n_x), dtype)
    _check(xp, g["dWaa"], (n_a, n_a), dtype)
    _check(xp, g["dba"], (n_a, 1), dtype)
