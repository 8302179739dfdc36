"""The kernels generated from a cell's elementwise math against the generic path, for cells of
every shape the contract allows: a written backward that saves nothing, a derived one, vectors,
a direct path to ``a⟨t-1⟩``, one to three state components. NumPy's compiled kernels (the
small-step loop and the lean BLAS loop) and CuPy's kernels run under the emulation, each
compared with :class:`xrnn.core.ops.Ops` (the cell's math on whole arrays), with lengths, reverse
and final-state gradients."""

from __future__ import annotations

import numpy as np
import pytest
from cupy_emulator import COMPILER, emulated_ops

import xrnn
import xrnn.core.engine
import xrnn.core.tuning
from xrnn.core.ops import Ops


class Residual(xrnn.ElementwiseCell):
    """A written backward that saves nothing, a vector and a direct path to a⟨t-1⟩."""

    name = "test_residual"
    gates = (("W", "b"),)
    vectors = ("d",)

    @staticmethod
    def forward(m, z, d, a_prev):
        return (m.tanh(z) + d * a_prev,), ()

    @staticmethod
    def backward(m, d, a_prev, a, da):
        t = a - d * a_prev  # tanh(z)
        return (da * (1 - t * t),), (da * a_prev,), (da * d,)


class ThreeStates(xrnn.ElementwiseCell):
    """A derived backward over three state components."""

    name = "test_three_states"
    gates = (("Wf", "bf"), ("Wg", "bg"), ("Wo", "bo"))
    states = ("a", "c", "h")

    @staticmethod
    def forward(m, zf, zg, zo, a_prev, c_prev, h_prev):
        f = m.sigmoid(zf)
        c = f * c_prev + (1 - f) * m.tanh(zg)
        h = 0.5 * h_prev + 0.5 * c
        return (m.sigmoid(zo) * m.tanh(h), c, h), ()


class Everything(xrnn.ElementwiseCell):
    """Every function of the math namespace, a vector and a direct path; derived backward."""

    name = "test_everything"
    gates = (("Wa", "ba"), ("Wb", "bb"))
    vectors = ("v",)

    @staticmethod
    def forward(m, za, zb, v, a_prev):
        s = m.sigmoid(za) * m.tanh(zb) + m.exp(-(zb * zb)) * v
        r = m.sqrt(1 + za * za) + m.log(2 + m.abs(zb)) - m.maximum(za, 0.25 * zb)
        t = m.minimum(za, zb) / (2 + a_prev * a_prev) + m.where(za > zb, za, -zb) ** 2
        return (s + 0.1 * r - 0.1 * t,), ()


CELLS = [Residual(), ThreeStates(), Everything(), xrnn.CELLS["peephole_lstm"]]
IDS = [c.name for c in CELLS]
KWARGS = [{}, {"lengths": [5, 2, 4, 1], "reverse": True}]


def run(cell, ops, dtype, m=4, **kw):
    """Every output and gradient of one sequence call with the engine on ``ops`` (None: the
    backend xrnn chooses)."""
    rng = np.random.default_rng(11)
    n_x, n_a, T = 3, 5, 5
    p = {
        k: (rng.normal(size=shape) / np.sqrt(shape[1])).astype(dtype)
        for k, (shape, _) in cell.shapes(n_x, n_a).items()
    }
    x = rng.normal(size=(n_x, m, T)).astype(dtype)
    initial = {f"{s}0": rng.normal(size=(n_a, m)).astype(dtype) for s in cell.states}
    a0 = initial.pop("a0")
    if "lengths" in kw:
        kw = {**kw, "lengths": np.asarray(kw["lengths"][:m])}
    dfinal = tuple(rng.normal(size=(n_a, m)).astype(dtype) for _ in cell.states)
    da = rng.normal(size=(n_a, m, T)).astype(dtype)
    with pytest.MonkeyPatch.context() as mp:
        if ops is not None:
            mp.setattr(xrnn.core.engine, "get_ops", lambda _: ops)
        out = xrnn.forward(cell, x, a0, p, **initial, **kw)
        grads = xrnn.backward(da, out[-1], dfinal=dfinal)
    result = {f"out{i}": o for i, o in enumerate((out[0], *out[2:-1]))}
    result.update({f"final{i}": s for i, s in enumerate(out[-1][0].final_states())})
    result.update(grads)
    return result


def compare(got, want, dtype):
    assert set(got) == set(want)
    tol = {"float64": (1e-12, 1e-13), "float32": (3e-5, 3e-6)}[dtype]
    for k in want:
        assert got[k].dtype == np.dtype(dtype), k
        np.testing.assert_allclose(got[k], want[k], rtol=tol[0], atol=tol[1], err_msg=k)


def _reference():
    import array_api_compat

    return Ops(array_api_compat.array_namespace(np.empty(0)))


@pytest.mark.skipif(not xrnn.backends.jit_enabled(), reason="the compiled kernels are off")
@pytest.mark.parametrize("small", [True, False], ids=["one-loop", "blas-loop"])
@pytest.mark.parametrize("kw", KWARGS, ids=["full", "lengths-reverse"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_numpy_generated_kernels_equal_the_generic_path(cell, dtype, kw, small, monkeypatch):
    from xrnn.backends.numpy import generated

    if not small:  # every step through BLAS and the step kernel
        monkeypatch.setattr(xrnn.core.tuning, "SMALL_LOOP_FLOPS", 0)
    for m in (1, 4):
        compare(run(cell, None, dtype, m, **kw), run(cell, _reference(), dtype, m, **kw), dtype)
    assert generated.compiled(cell, np.dtype(dtype)) is not None


@pytest.mark.skipif(COMPILER is None, reason="no C++ compiler to build the kernel bodies")
@pytest.mark.parametrize("kw", KWARGS, ids=["full", "lengths-reverse"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_cupy_generated_kernels_equal_the_generic_path(cell, dtype, kw, tmp_path):
    ops = emulated_ops(tmp_path)
    compare(run(cell, ops, dtype, **kw), run(cell, _reference(), dtype, **kw), dtype)
    names = {name for name, _ in ops.lib.launches}
    assert names == {f"xrnn_{cell.name}_forward_step", f"xrnn_{cell.name}_backward_step"}
