"""The compiled NumPy kernels (xrnn/backends/numpy/jit.py): activations accurate to the dtype, no
float64 in float32 code, each step kernel against the pure-NumPy kernels on strided buffers, and
the XRNN_JIT switch. The kernels-vs-reference and end-to-end suites (test_backends.py,
test_gradients.py, …) run on them too, and again without them in tests(backend='numpy-nojit')."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import xrnn
from tests.cell_cases import NAMES, random_parameters, spec
from xrnn.backends import jit_enabled
from xrnn.core import tuning

pytestmark = pytest.mark.skipif(not jit_enabled(), reason="compiled kernels off (XRNN_JIT=0)")


@pytest.fixture(scope="module")
def jit():
    from xrnn.backends.numpy import jit

    return jit


@pytest.fixture(scope="module")
def apply(jit):
    import numba

    @numba.njit(error_model="numpy")
    def tanh_all(x, out):
        for i in range(x.shape[0]):
            out[i] = jit.tanh(x[i])

    @numba.njit(error_model="numpy")
    def sigmoid_all(x, out):
        for i in range(x.shape[0]):
            out[i] = jit.sigmoid(x[i])

    def run(kernel, x):
        out = np.empty_like(x)
        kernel(x, out)
        return out

    return {"tanh": lambda x: run(tanh_all, x), "sigmoid": lambda x: run(sigmoid_all, x)}


def _grid(dtype):
    t = np.float64(10.0) ** np.linspace(-9, 1.2, 200_001)
    return np.concatenate([np.linspace(-12, 12, 1_000_001), t, -t, [0.0, 1e-30]]).astype(dtype)


def test_float32_tanh_is_within_a_few_ulp(apply):
    x = _grid(np.float32)
    got, want = apply["tanh"](x), np.tanh(x)
    assert got.dtype == np.float32
    ulp = np.abs(got.astype(np.float64) - want) / np.spacing(np.abs(want))
    assert ulp.max() <= 6 and ulp.mean() < 1.5, (ulp.max(), ulp.mean())
    assert np.abs(got - want).max() < 4e-7
    assert np.all(np.abs(got) <= 1)
    np.testing.assert_array_equal(apply["tanh"](np.array([-1e30, 1e30], np.float32)), [-1, 1])


def test_float64_tanh_and_sigmoid_to_1e15(apply):
    x = _grid(np.float64)
    np.testing.assert_allclose(apply["tanh"](x), np.tanh(x), rtol=1e-15, atol=0)
    s = apply["sigmoid"](x)
    # the formula cancels for x ≪ 0: absolute accuracy, as the reference has
    np.testing.assert_allclose(s, 0.5 * np.tanh(0.5 * x) + 0.5, rtol=1e-15, atol=1e-16)
    assert apply["sigmoid"](np.array([-1e308, 1e308])).tolist() == [0.0, 1.0]


# the kernels generated from each registered cell's elementwise math (xrnn.backends.numpy.generated)
GENERATED = [
    (name, kernel)
    for name, cell in xrnn.CELLS.items()
    if hasattr(type(cell), "programs")
    for kernel in ("forward_units", "backward_units")
]


def _float32_ir(py_func):
    """The LLVM IR of ``py_func`` compiled afresh (numba cannot show the IR of code loaded from
    its cache) for float32 arrays, its loops running 0 times."""
    import numba

    kernel = numba.njit(nogil=True, error_model="numpy")(py_func)
    code = py_func.__code__
    names = code.co_varnames[: code.co_argcount]
    ints = ("j0", "u0", "u1", "lo", "hi")
    kernel(*(0 if n in ints else np.zeros((0, 3), np.float32) for n in names))
    (ir,) = kernel.inspect_llvm().values()
    return ir.split("define", 1)[1]


def _computes_in_float32(body: str) -> bool:
    arithmetic = re.compile(r"= (fadd|fsub|fmul|fdiv|frem|fneg|call)( \w+)* double\b")
    return "fpext" not in body and not arithmetic.search(body)


@pytest.mark.parametrize(("cell", "kernel"), GENERATED)
def test_generated_float32_kernels_compute_in_float32(cell, kernel, jit):
    """No double-precision arithmetic in the float32 step kernels generated from each cell's
    elementwise math (an unsuffixed constant would promote every operation): the LLVM IR of
    the float32 specialisation neither widens a float (``fpext``) nor computes or calls
    anything in ``double``. (numba's ``reshape`` compares the element count as doubles —
    integers converted, no element is involved — so ``double`` alone may appear.)"""
    from xrnn.backends.numpy import generated

    compiled = generated.compiled(xrnn.get_cell(cell), np.float32)
    step = compiled.forward_step if kernel == "forward_units" else compiled.backward_step
    body = _float32_ir(step.py_func.__globals__[kernel].py_func)
    assert _computes_in_float32(body), (cell, kernel)
    assert "fmul float" in body or "relu" in cell, (cell, kernel)


def _numpy_ops():
    import array_api_compat

    from xrnn.backends.numpy import NumpyOps

    return NumpyOps(array_api_compat.array_namespace(np.empty(0)))


def _jit_ops():
    import array_api_compat

    from xrnn.backends.numpy.jit import JitOps

    return JitOps(array_api_compat.array_namespace(np.empty(0)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", NAMES)
def test_step_kernels_match_the_cells_own_math(cell, dtype):
    """One step each way of the compiled kernels against the NumPy backend (the cell's own math
    on whole arrays), at a size that exercises the vector loops (m = 37, not
    a multiple of the vector width), the backward into a strided column block."""
    import array_api_compat

    xp = array_api_compat.array_namespace(np.empty(0))
    c = spec(cell)
    rng = np.random.default_rng(3)
    n_x, n_a, m, T = 5, 6, 37, 2
    p = {k: v.astype(dtype) for k, v in random_parameters(cell, rng, n_x, n_a).items()}
    W = c.stack(xp, p, n_a)
    GX = rng.normal(size=(T, c.blocks * n_a, m)).astype(dtype)
    state = tuple(rng.normal(size=(n_a, m)).astype(dtype) for _ in c.states)
    up = tuple(rng.normal(size=(n_a, m)).astype(dtype) for _ in c.states)
    results = []
    for ops in (_numpy_ops(), _jit_ops()):
        gx = GX.copy()  # an LSTM kernel turns gx[0] into the gates in place (saved_in_gx)
        store = ops.forward_store(c, state, gx)
        new, saved = ops.forward_step(c, W, gx[0], state, store.slot(0))
        cols = ops.gradient_columns(c.gradient_rows(n_a), 3, m, state[0], c.recurrent_rows(n_a))
        dgx, dra, direct = ops.backward_step(
            c, saved, state, new, tuple(u.copy() for u in up), cols.slot(1), W
        )
        cols.put(1, dgx, dra)
        gx_cols, ra_cols = cols.columns(3)
        results.append(
            [*(s.copy() for s in new), None if saved is None else saved.copy(),
             gx_cols[:, m : 2 * m].copy(), ra_cols[:, m : 2 * m].copy(),
             *(None if d is None else d.copy() for d in direct)]
        )  # fmt: skip
    tol = {"float64": 1e-13, "float32": 3e-6}[dtype]
    for i, (a, b) in enumerate(zip(*results, strict=True)):
        if a is None or b is None:
            assert a is None and b is None, i
            continue
        assert a.dtype == b.dtype == np.dtype(dtype)
        np.testing.assert_allclose(b, a, rtol=tol, atol=tol, err_msg=f"{cell} output {i}")


def test_xrnn_jit_0_selects_the_numpy_kernels():
    code = (
        "import numpy as np, xrnn.backends as b; "
        "print(type(b.get_ops(b.resolve([('x', np.zeros(1))]).xp)).__name__)"
    )
    for value, want in (("0", "NumpyOps"), ("1", "JitOps")):
        env = {**os.environ, "XRNN_JIT": value}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert out.stdout.strip() == want, out.stderr


def test_import_xrnn_does_not_import_numba():
    code = "import sys, xrnn; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize("m", [1, 5])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", NAMES)
def test_the_compiled_forward_loop_equals_stepping(cell, dtype, m, monkeypatch):
    """Small steps run as one compiled loop (hand-written GEMM); the same call with the loop
    switched off steps from Python with BLAS (JitOps' lean loop): the same outputs and caches.
    (The engine's own stepping, with lengths, is checked against the reference in
    test_backends.py.)"""
    from tests.cell_cases import forward
    from xrnn.backends.numpy import jit

    rng = np.random.default_rng(5)
    n_x, n_a, T = 4, 6, 7
    p = {k: v.astype(dtype) for k, v in random_parameters(cell, rng, n_x, n_a).items()}
    x = rng.normal(size=(n_x, m, T)).astype(dtype)
    state0 = tuple(rng.normal(size=(n_a, m)).astype(dtype) for _ in spec(cell).states)
    runs, looped = [], []
    real = jit._generated

    def counting(c, dtype):
        k = real(c, dtype)
        return k._replace(forward_loop=lambda *a: looped.append(1) or k.forward_loop(*a))

    monkeypatch.setattr(jit, "_generated", counting)
    for limit in (2**17, 0):  # the default (loop) and nothing small enough (BLAS per step)
        monkeypatch.setattr(tuning, "SMALL_LOOP_FLOPS", limit)
        states, _, caches = forward(cell, x, state0, p)
        assert len(looped) == 1  # the first run looped, the second stepped
        trace = caches[0].trace
        runs.append([*states, *trace.states, *(() if trace.saved is None else (trace.saved,))])
    tol = {"float64": 1e-13, "float32": 2e-6}[dtype]
    for a, b in zip(*runs, strict=True):
        assert a.dtype == b.dtype == np.dtype(dtype)
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("m", [1, 3])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", NAMES)
def test_whole_small_calls_equal_the_engine_s_loops(cell, dtype, m, reverse, whole_small_calls):
    """A call of small steps runs whole (``JitOps.forward_small``, ``backward_small``: none
    of the engine's bookkeeping); the same call with both declined runs the engine's loop and
    chunks: the same outputs, caches and gradients — with and without the final states'
    gradients, from given further initial states."""
    from tests.cell_cases import backward, forward

    rng = np.random.default_rng(11)
    n_x, n_a, T = 4, 6, 7
    p = {k: v.astype(dtype) for k, v in random_parameters(cell, rng, n_x, n_a).items()}
    x = rng.normal(size=(n_x, m, T)).astype(dtype)
    state0 = tuple(rng.normal(size=(n_a, m)).astype(dtype) for _ in spec(cell).states)
    da = rng.normal(size=(n_a, m, T)).astype(dtype)
    dfinal = tuple(rng.normal(size=(n_a, m)).astype(dtype) for _ in spec(cell).states)
    runs = []
    for whole in (True, False):
        if not whole:
            whole_small_calls.decline()
        states, _, caches = forward(cell, x, state0, p, reverse=reverse)
        trace = caches[0].trace
        got = [*states, *trace.states, *(() if trace.saved is None else (trace.saved,))]
        for finals in (None, dfinal):
            grads = backward(cell, da, caches, **({} if finals is None else {"dfinal": finals}))
            got += [grads[k] for k in sorted(grads)]
        runs.append(got)
    assert whole_small_calls.ran == ["forward", "backward", "backward"]
    tol = {"float64": 1e-12, "float32": 2e-5}[dtype]
    for a, b in zip(*runs, strict=True):
        assert a.dtype == b.dtype == np.dtype(dtype)
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_compiled_finiteness_check_on_every_layout(dtype):
    """``JitOps.all_finite`` (compiled for C- and Fortran-ordered arrays, NumPy's sum for the
    others) finds one NaN or ±inf anywhere, in any layout, and passes finite arrays — also
    ones whose sum overflows."""
    ops = _jit_ops()
    base = np.arange(4 * 5 * 6, dtype=dtype).reshape(4, 5, 6)
    layouts = {
        "C": lambda a: a,
        "F": lambda a: np.asfortranarray(a),
        "transposed": lambda a: a.transpose(2, 0, 1),
        "strided": lambda a: a[:, ::2, 1:],
        "0-d": lambda a: a[1, 2, 3],
    }
    for name, layout in layouts.items():
        assert ops.all_finite([layout(base.copy())], []), name
        for bad in (np.nan, np.inf, -np.inf):
            for index in ((0, 0, 0), (1, 2, 3), (3, 4, 5)):
                a = base.copy()
                a[index] = bad
                view = layout(a)
                assert ops.all_finite([view], []) == bool(np.isfinite(view).all()), (name, bad)
    huge = np.full((3, 3), np.finfo(dtype).max, dtype=dtype)
    assert ops.all_finite([huge, np.empty((0, 2), dtype)], [np.bool_(True)])
    assert not ops.all_finite([huge], [np.bool_(False)])


@pytest.mark.parametrize("apart", [False, True], ids=["stacked", "apart"])
@pytest.mark.parametrize("small", [True, False], ids=["one-call", "numpy-gemm"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("m", "T"), [(1, 9), (3, 400), (16, 70), (1100, 2)])
def test_the_input_side_equals_the_reference(m, T, dtype, small, apart, monkeypatch):
    """``JitOps.input_side`` against the reference, from a strided ``x``, for m = 1 (one GEMM)
    and larger batches (a GEMM per step): for small steps in one compiled call
    (``input_side_small``), else NumPy's GEMM and the compiled bias add; from the stacked
    weights and from each gate's own (stacked apart)."""
    import array_api_compat

    from xrnn.core.ops import Ops

    if not small:
        monkeypatch.setattr(tuning, "SMALL_LOOP_FLOPS", 0)
    xp = array_api_compat.array_namespace(np.empty(0))
    c = spec("lstm")
    rng = np.random.default_rng(8)
    n_x, n_a = 5, 3
    p = {k: v.astype(dtype) for k, v in random_parameters("lstm", rng, n_x, n_a).items()}
    W = c.stack(xp, p, n_a, apart=apart)
    x = rng.normal(size=(n_x, T, m)).astype(dtype).transpose(0, 2, 1)  # (n_x, m, T), strided
    want = Ops(xp).input_side(c, W, x)
    got = _jit_ops().input_side(c, W, x)
    assert got.shape == (T, c.blocks * n_a, m) and got.dtype == np.dtype(dtype)
    assert got.flags.c_contiguous
    tol = {"float64": 1e-13, "float32": 2e-6}[dtype]
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("itemsize", [4, 8])
def test_chunk_buffer_rows_span_an_odd_number_of_cache_lines(itemsize):
    from xrnn.core.ops import _pitch

    for width in (1, 15, 16, 17, 1000, 1024, 2048, 4096):
        pitch = _pitch(width, itemsize)
        lines, rest = divmod(pitch * itemsize, 64)
        assert pitch >= width and rest == 0 and lines % 2 == 1, (width, pitch)
        assert pitch - width <= 2 * 64 // itemsize  # at most two lines of padding
