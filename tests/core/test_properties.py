"""Property tests over shapes, dtypes, lengths and direction, for every cell: finite outputs
and gradients of the right shape, dtype and device; outputs zero past each length."""

import array_api_compat
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cell_cases import NAMES, backward, forward, initialize, spec

dims = st.tuples(
    st.integers(1, 5),
    st.integers(1, 6),
    st.integers(1, 4),
    st.integers(1, 6),
    st.sampled_from(["float32", "float64"]),
    st.booleans(),  # output layer
    st.booleans(),  # lengths
    st.booleans(),  # reverse
    st.integers(0, 2**16),
)
# Every example is a new shape, and JAX compiles each call's programs anew for a new shape
# (about a second): its session draws fewer (tests/conftest.py, the "jax" profile)
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _check(xp, arr, shape, dtype):
    assert tuple(arr.shape) == shape
    assert arr.dtype == xp.dtype(dtype)
    assert array_api_compat.device(arr) == xp.device
    assert np.all(np.isfinite(xp.to_numpy(arr)))


@pytest.mark.parametrize("cell", NAMES)
@SETTINGS
@given(d=dims)
def test_shapes_dtypes_devices(cell, xp, d):
    n_x, n_a, m, T, dtype, with_y, with_lengths, reverse, seed = d
    rng = np.random.default_rng(seed)
    n_y = 3 if with_y else None
    p = xp.params(initialize(cell, n_x, n_a, n_y, seed=seed), dtype)
    x = xp.asarray(rng.normal(size=(n_x, m, T)) * 3, dtype)
    state0 = tuple(xp.asarray(rng.normal(size=(n_a, m)), dtype) for _ in spec(cell).states)
    lengths = rng.integers(1, T + 1, size=m) if with_lengths else None
    kw = {"reverse": reverse}
    if lengths is not None:
        kw["lengths"] = xp.xp.asarray(lengths, device=xp.device)
    states, y, caches = forward(cell, x, state0, p, **kw)
    for s in states:
        _check(xp, s, (n_a, m, T), dtype)
        if lengths is not None:
            past = np.arange(T)[None, :] >= lengths[:, None]  # (m, T)
            assert np.all(xp.to_numpy(s)[:, past] == 0)
    for s in caches[0].final_states():
        _check(xp, s, (n_a, m), dtype)
    assert (y is None) == (not with_y)
    if with_y:
        _check(xp, y, (3, m, T), dtype)
    g = backward(cell, xp.asarray(rng.normal(size=(n_a, m, T)), dtype), caches)
    _check(xp, g["dx"], (n_x, m, T), dtype)
    for s in spec(cell).states:
        _check(xp, g[f"d{s}0"], (n_a, m), dtype)
    for k, (shape, _) in spec(cell).shapes(n_x, n_a).items():
        _check(xp, g["d" + k], shape, dtype)
