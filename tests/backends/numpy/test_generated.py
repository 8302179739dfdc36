"""The kernels generated from a cell's elementwise math against the generic path, for cells of
every shape the contract allows: a written backward that saves nothing, a derived one, vectors,
a direct path to ``a⟨t-1⟩``, one to three state components. NumPy's compiled kernels (the
small-step loop and the lean BLAS loop) and CuPy's kernels run under the emulation, each
compared with :class:`xrnn.core.ops.Ops` (the cell's math on whole arrays), with lengths, reverse
and final-state gradients."""

from __future__ import annotations

import numpy as np
import pytest

import xrnn
import xrnn.core.engine
import xrnn.core.tuning
from tests.contract_cells import CELLS
from tests.cupy_emulator import COMPILER, emulated_ops
from xrnn.core.ops import Ops

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
    """Small steps: the forward loop and each backward chunk (steps and GEMMs) each one
    compiled call where there is a private BLAS (where the lengths are not all full, the
    engine steps instead); else every step through BLAS and the step kernel."""
    from xrnn.backends.numpy import cblas, generated, jit

    if not small:
        monkeypatch.setattr(xrnn.core.tuning, "SMALL_LOOP_FLOPS", 0)
    whole_chunks = []
    real = jit._generated_chunk_small
    monkeypatch.setattr(
        jit, "_generated_chunk_small", lambda *a: whole_chunks.append(1) or real(*a)
    )
    for m in (1, 4):
        compare(run(cell, None, dtype, m, **kw), run(cell, _reference(), dtype, m, **kw), dtype)
    assert generated.compiled(cell, np.dtype(dtype)) is not None
    assert bool(whole_chunks) == (small and cblas.private() is not None)


@pytest.mark.skipif(COMPILER is None, reason="no C++ compiler to build the kernel bodies")
@pytest.mark.parametrize("kw", KWARGS, ids=["full", "lengths-reverse"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_cupy_generated_kernels_equal_the_generic_path(cell, dtype, kw, tmp_path):
    ops = emulated_ops(tmp_path)
    compare(run(cell, ops, dtype, **kw), run(cell, _reference(), dtype, **kw), dtype)
    names = {name for name, _ in ops.lib.launches}
    assert names == {f"xrnn_{cell.name}_forward_step", f"xrnn_{cell.name}_backward_step"}


@pytest.mark.skipif(not xrnn.backends.jit_enabled(), reason="the compiled kernels are off")
def test_generated_modules_name_the_helpers_they_compile_in():
    """numba's cache notices a change of a kernel module's own file, not of the helpers
    compiled into it (the scalar math, the GEMMs, the lockstep primitives): each generated
    module's text names a digest of those sources, so that a change to one writes the module
    anew and numba compiles it again."""
    from xrnn.backends.numpy import generated

    kernels = generated.compiled(xrnn.CELLS["lstm"], np.dtype("float64"))
    module = kernels.forward_step.py_func.__globals__
    digest = generated._helpers_digest()
    assert len(digest) == 16
    if "__file__" in module:  # written to the kernel cache (else compiled in memory)
        with open(module["__file__"], encoding="utf-8") as source:
            assert f"# The helpers' sources: {digest}" in source.read()
