"""The sequence functions on JAX arrays: ``lax.scan`` with xrnn's backward as
``jax.custom_vjp``. Gradients against ``xrnn.backward`` on NumPy (float64, every cell, lengths
and reverse), a jaxpr that does not grow with ``T_x``, and ``jit``, ``grad`` and ``vmap`` with
the default finiteness check."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

import xrnn  # noqa: E402
from tests.contract_cells import CELLS as GENERATED  # noqa: E402  (cells of every contract shape)

CELLS = [xrnn.CELLS[name] for name in sorted(xrnn.CELLS)] + GENERATED[:3]
IDS = [c.name for c in CELLS]
N_X, N_A, M, T = 3, 4, 3, 5
pytestmark = pytest.mark.backends("jax")


def _case(cell, seed=0):
    rng = np.random.default_rng(seed)
    p = xrnn.initialize(cell, N_X, N_A, seed=seed)
    x = rng.normal(size=(N_X, M, T))
    initial = {f"{s}0": rng.normal(size=(N_A, M)) for s in cell.states}
    da = rng.normal(size=(N_A, M, T))
    dfinal = tuple(rng.normal(size=(N_A, M)) for _ in cell.states)
    return p, x, initial, da, dfinal


@pytest.mark.parametrize("kw", [{}, {"lengths": [5, 2, 4], "reverse": True}, {"reverse": True}])
@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_grad_is_xrnn_backward(xp, cell, kw):
    p, x, initial, da, dfinal = _case(cell)
    init = dict(initial)
    ref = xrnn.forward(cell, x, init.pop("a0"), p, **init, **kw)
    want = xrnn.backward(da, ref[-1], dfinal=dfinal)

    def loss(x, initial, p):
        init = dict(initial)
        out = xrnn.forward(cell, x, init.pop("a0"), p, **init, **kw)
        finals = out[-1][0].final_states()
        total = jnp.sum(out[0] * da)
        return total + sum(jnp.sum(f * d) for f, d in zip(finals, dfinal, strict=True))

    args = (jnp.asarray(x), {k: jnp.asarray(v) for k, v in initial.items()}, xp.params(p))
    for fn in (jax.grad(loss, argnums=(0, 1, 2)), jax.jit(jax.grad(loss, argnums=(0, 1, 2)))):
        gx, gi, gp = fn(*args)
        got = {
            "dx": gx,
            **{f"d{k}": v for k, v in gi.items()},
            **{f"d{k}": v for k, v in gp.items()},
        }
        assert set(got) == set(want)
        for key, value in want.items():
            np.testing.assert_allclose(
                np.asarray(got[key]), value, rtol=1e-10, atol=1e-12, err_msg=key
            )


def _equations(fn, *args):
    return len(jax.make_jaxpr(fn)(*args).jaxpr.eqns)


def test_jaxpr_does_not_grow_with_the_steps(xp):
    p = xp.params(xrnn.initialize("lstm", N_X, N_A, n_y=2, seed=0))
    a0 = jnp.zeros((N_A, M))

    def forward(x, p):
        return xrnn.lstm_forward(x, a0, p, lengths=[2, 3, 1], return_caches=False)[:3]

    def loss(p, x):
        a, y, c = forward(x, p)
        return jnp.sum(a**2) + jnp.sum(y) + jnp.sum(c)

    sizes = []
    for steps in (3, 300):
        x = jnp.ones((N_X, M, steps))
        sizes.append((_equations(forward, x, p), _equations(jax.grad(loss), p, x)))
    assert sizes[0] == sizes[1]


def test_defaults_under_jit_grad_and_vmap(xp):
    """``check_finite=True`` (the default) under every transform: nothing to read, no error."""
    p = xp.params(xrnn.initialize("gru", N_X, N_A, seed=0))
    a0 = jnp.zeros((N_A, M))

    def run(x):
        return xrnn.gru_forward(x, a0, p)[0]

    xs = jnp.asarray(np.random.default_rng(0).normal(size=(4, N_X, M, T)))
    mapped = jax.vmap(run)(xs)
    for i in range(4):
        np.testing.assert_allclose(mapped[i], run(xs[i]), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(jax.jit(run)(xs[0]), run(xs[0]), rtol=1e-12, atol=1e-14)
    per_example = jax.vmap(jax.grad(lambda x: jnp.sum(run(x) ** 2)))(xs)
    assert per_example.shape == xs.shape
    # eager calls still check
    with pytest.raises(ValueError, match="x contains NaN"):
        run(xs[0].at[0, 0, 0].set(jnp.nan))
