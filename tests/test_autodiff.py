"""The generic path is functional: the host library's own autodiff differentiates through every
forward function and agrees with xrnn's backward, and ``jax.jit`` compiles every forward
function to the eager result.

The reference engine never writes into an array it created (``xrnn.core.ops``), so ``jax.grad`` and
``torch.autograd`` see an ordinary computation graph; both must equal xrnn's own backward to
1e-10 in float64.
"""

import numpy as np
import pytest

from tests.cell_cases import NAMES, backward, forward, random_parameters, spec

MODES = [{}, {"lengths": [5, 2, 4]}, {"reverse": True}, {"lengths": [1, 5, 3], "reverse": True}]
IDS = ["plain", "mixed", "reverse", "mixed-reverse"]


def _case(cell, seed=0):
    rng = np.random.default_rng(seed)
    n_x, n_a, m, T = 3, 4, 3, 5
    return (
        rng.normal(size=(n_x, m, T)),
        tuple(rng.normal(size=(n_a, m)) for _ in spec(cell).states),
        random_parameters(cell, rng, n_x, n_a),
        rng.normal(size=(n_a, m, T)),
    )


def _lengths(xp, kw):
    kw = dict(kw)
    if "lengths" in kw:
        kw["lengths"] = xp.xp.asarray(kw["lengths"], device=xp.device)
    return kw


def _with_expected(xp, cell, kw):
    """The case, ``kw`` on the backend, and xrnn's own gradients of ``Σ a ∗ R``."""
    x, state0, p, R = _case(cell)
    kw = _lengths(xp, kw)
    _, _, caches = forward(
        cell, xp.asarray(x), tuple(xp.asarray(s) for s in state0), xp.params(p), **kw
    )
    return x, state0, p, R, kw, backward(cell, xp.asarray(R), caches)


@pytest.mark.backends("jax")
@pytest.mark.parametrize("kw", MODES, ids=IDS)
@pytest.mark.parametrize("cell", NAMES)
def test_jax_grad_equals_xrnn_backward(cell, kw, xp):
    import jax

    x, state0, p, R, kw, want = _with_expected(xp, cell, kw)

    def loss(x, state0, p):
        states, _, _ = forward(cell, x, state0, p, check_finite=False, **kw)
        return xp.xp.sum(states[0] * xp.asarray(R))

    gx, gs, gp = jax.grad(loss, argnums=(0, 1, 2))(
        xp.asarray(x), tuple(xp.asarray(s) for s in state0), xp.params(p)
    )
    close = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(xp.to_numpy(gx), xp.to_numpy(want["dx"]), **close)
    for s, g in zip(spec(cell).states, gs, strict=True):
        np.testing.assert_allclose(xp.to_numpy(g), xp.to_numpy(want[f"d{s}0"]), **close)
    for k, g in gp.items():
        np.testing.assert_allclose(xp.to_numpy(g), xp.to_numpy(want["d" + k]), **close, err_msg=k)


@pytest.mark.backends("jax")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kw", MODES, ids=IDS)
@pytest.mark.parametrize("cell", NAMES)
def test_jax_jit_equals_eager(cell, kw, dtype, xp):
    import jax

    x, state0, p, _ = _case(cell)
    kw = _lengths(xp, kw)
    args = (xp.asarray(x, dtype), tuple(xp.asarray(s, dtype) for s in state0), xp.params(p, dtype))
    # with an output layer, so y takes the jitted path too
    n_a = state0[0].shape[0]
    w, b = spec(cell).output_keys
    args[2].update(
        {w: xp.asarray(np.ones((2, n_a)) / n_a, dtype), b: xp.asarray(np.ones((2, 1)), dtype)}
    )

    def run(x, state0, p):
        states, y, caches = forward(cell, x, state0, p, check_finite=False, **kw)
        return states, y, caches[0].final_states()

    eager = run(*args)
    jitted = jax.jit(run)(*args)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-12, atol=1e-14)
    for e, j in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
        assert j.dtype == e.dtype == xp.dtype(dtype)
        np.testing.assert_allclose(xp.to_numpy(j), xp.to_numpy(e), **tol)


@pytest.mark.backends("torch")
@pytest.mark.parametrize("kw", MODES, ids=IDS)
@pytest.mark.parametrize("cell", NAMES)
def test_torch_autograd_equals_xrnn_backward(cell, kw, xp):
    import torch

    x, state0, p, R, kw, want = _with_expected(xp, cell, kw)
    leaves = {
        "x": xp.asarray(x),
        **{f"d{s}0": xp.asarray(v) for s, v in zip(spec(cell).states, state0, strict=True)},
    }
    params = xp.params(p)
    tensors = [*leaves.values(), *params.values()]
    for t in tensors:
        t.requires_grad_(True)
    states, _, _ = forward(cell, leaves["x"], tuple(list(leaves.values())[1:]), params, **kw)
    grads = torch.autograd.grad((states[0] * xp.asarray(R)).sum(), tensors)
    names = ["dx", *list(leaves)[1:], *("d" + k for k in params)]
    for name, g in zip(names, grads, strict=True):
        np.testing.assert_allclose(
            xp.to_numpy(g), xp.to_numpy(want[name]), rtol=1e-10, atol=1e-12, err_msg=name
        )


@pytest.mark.backends("torch")
@pytest.mark.parametrize("kw", MODES, ids=IDS)
@pytest.mark.parametrize("cell", NAMES)
def test_torch_autograd_when_only_some_tensors_require_grad(cell, kw, xp):
    """The torch backend's in-place kernels step aside for every step whose inputs require a
    gradient, even when its buffers were chosen from tensors that did not: only a recurrent
    weight requiring one (forward), or only ``da`` (through xrnn's backward)."""
    import torch

    x, state0, p, R, kw, want = _with_expected(xp, cell, kw)
    key = sorted(k for k in spec(cell).keys if k.startswith("W"))[0]
    params = xp.params(p)
    params[key] = params[key].detach().clone().requires_grad_(True)
    states, _, _ = forward(cell, xp.asarray(x), tuple(xp.asarray(s) for s in state0), params, **kw)
    (states[0] * xp.asarray(R)).sum().backward()
    close = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(xp.to_numpy(params[key].grad), xp.to_numpy(want["d" + key]), **close)

    _, _, caches = forward(
        cell, xp.asarray(x), tuple(xp.asarray(s) for s in state0), xp.params(p), **kw
    )
    da = xp.asarray(R).clone().requires_grad_(True)
    grads = backward(cell, da, caches)
    torch.autograd.grad(grads["dx"].sum(), da)  # differentiable, no out= error
    for k, v in grads.items():  # and the same values as without autograd
        np.testing.assert_allclose(xp.to_numpy(v.detach()), xp.to_numpy(want[k]), **close)
