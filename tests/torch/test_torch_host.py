"""Sequence calls on CPU tensors that autograd does not record: the whole forward, and the
backward over its caches, on NumPy views of the tensors (:mod:`xrnn.torch.host`), against the
same calls on NumPy arrays, for every cell with lengths, reverse, an output layer and without
caches; tensors back, float32 kept, and no torch thread setting touched."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import xrnn  # noqa: E402
import xrnn.torch.host  # noqa: E402
from xrnn.backends import jit_enabled  # noqa: E402

pytestmark = pytest.mark.skipif(not jit_enabled(), reason="the compiled kernels are off")

KWARGS = [{}, {"reverse": True}, {"lengths": [6, 2, 4]}, {"lengths": [6, 2, 4], "reverse": True}]
N_X, N_A, M, T = 5, 7, 3, 6


def _call(cell, dtype, to, *, return_caches=True, **kw):
    """A forward (with an output layer) and, with caches, the backward, from seeded inputs in
    the library ``to`` makes."""
    p = xrnn.initialize(cell, N_X, N_A, 4, seed=3, dtype=dtype)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(N_X, M, T)).astype(dtype)
    a0 = rng.normal(size=(N_A, M)).astype(dtype)
    da = rng.normal(size=(N_A, M, T)).astype(dtype)
    if "lengths" in kw:
        kw = {**kw, "lengths": to(np.asarray(kw["lengths"]))}
    p = {k: to(v) for k, v in p.items()}
    out = xrnn.forward(cell, to(x), to(a0), p, return_caches=return_caches, **kw)
    grads = xrnn.backward(to(da), out[-1]) if return_caches else {}
    return out, grads


@pytest.mark.parametrize("return_caches", [True, False], ids=["caches", "no-caches"])
@pytest.mark.parametrize("kw", KWARGS, ids=["plain", "reverse", "lengths", "lengths-reverse"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cell", sorted(xrnn.CELLS))
def test_a_forward_on_cpu_tensors_runs_whole_on_numpy_views(
    cell, dtype, kw, return_caches, monkeypatch
):
    ran, thread_settings = [], []
    for name in ("run_checked_forward", "run_checked_backward"):
        real = getattr(xrnn.torch.host, name)
        counted = lambda *a, _real=real, _name=name, **k: ran.append(_name) or _real(*a, **k)  # noqa: E731
        monkeypatch.setattr(xrnn.torch.host, name, counted)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: thread_settings.append(n))
    with torch.no_grad():  # nothing recorded, even where a tensor requires a gradient
        got, got_grads = _call(
            cell, dtype, lambda a: torch.from_numpy(a.copy()).requires_grad_(a.ndim == 2),
            return_caches=return_caches, **kw,
        )  # fmt: skip
    assert ran == ["run_checked_forward", "run_checked_backward"][: 1 + return_caches]
    assert thread_settings == []
    want, want_grads = _call(cell, dtype, lambda a: a, return_caches=return_caches, **kw)
    tol = {"float64": 1e-12, "float32": 2e-6}[dtype]
    for g, w in zip(got[:-1], want[:-1], strict=True):
        assert isinstance(g, torch.Tensor) and g.dtype == getattr(torch, dtype)
        np.testing.assert_allclose(g.numpy(), w, rtol=tol, atol=tol)
    assert (got[-1] is None) == (not return_caches)
    assert set(got_grads) == set(want_grads)
    for k, w in want_grads.items():
        assert isinstance(got_grads[k], torch.Tensor), k
        np.testing.assert_allclose(got_grads[k].numpy(), w, rtol=10 * tol, atol=10 * tol)


def test_the_outputs_are_the_callers_own():
    """Writing into the returned outputs changes neither the caches nor their backward."""
    to = lambda a: torch.from_numpy(a.copy())  # noqa: E731
    out, _ = _call("lstm", "float64", to)
    before = xrnn.backward(torch.ones(N_A, M, T, dtype=torch.float64), out[-1])
    out[0].mul_(0.0)
    out[2].mul_(0.0)
    after = xrnn.backward(torch.ones(N_A, M, T, dtype=torch.float64), out[-1])
    for k in before:
        assert torch.equal(before[k], after[k]), k


def test_bad_cpu_tensors_are_refused_by_name():
    p = {k: torch.from_numpy(v) for k, v in xrnn.initialize("lstm", N_X, N_A, seed=0).items()}
    x, a0 = torch.zeros(N_X, M, T, dtype=torch.float64), torch.zeros(N_A, M, dtype=torch.float64)
    with pytest.raises(TypeError, match="parameters\\['Wf'\\] has dtype"):
        xrnn.forward("lstm", x, a0, {**p, "Wf": p["Wf"].float()})
    with pytest.raises(ValueError, match="a0 has shape"):
        xrnn.forward("lstm", x, a0[:, :2], p)
    x[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        xrnn.forward("lstm", x, a0, p)
