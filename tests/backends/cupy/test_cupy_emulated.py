"""The real CuPy backend (:class:`xrnn.backends.cupy.CupyOps`: its glue, buffers and fused kernel
bodies) run on the CPU, each kernel body compiled as C++ (``tests/cupy_emulator.py``), against
the generic reference — step by step and end to end, float32 and float64. Runs in the numpy
session; ``tests/backends/cupy/test_cuda_build.py`` compiles the same kernel sources for the GPU."""

from __future__ import annotations

import numpy as np
import pytest

import xrnn
import xrnn.backends.cupy as cupy_backend
import xrnn.core.engine
from tests.cell_cases import NAMES, backward, forward, random_parameters, spec
from tests.cupy_emulator import COMPILER, emulated_ops
from xrnn.core.ops import Ops

pytestmark = pytest.mark.skipif(
    COMPILER is None, reason="no C++ compiler (c++, g++ or clang++) to build the kernel bodies"
)

TOL = {"float64": (1e-12, 1e-14), "float32": (2e-5, 1e-6)}


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cupy-emulator")


@pytest.fixture
def ops(build_dir):
    return emulated_ops(build_dir)


def _host_xp():
    import array_api_compat

    return array_api_compat.array_namespace(np.empty(0))


# --- step by step ----------------------------------------------------------------------------


def _step_mismatches(ops, cell_name: str, dtype: str, seed: int = 0) -> list[str]:
    """Run one forward and one backward step kernel of ``cell_name`` on ``ops`` next to the
    cell's reference pointwise math; return what differs (empty: all equal).

    The forward step writes into a store whose new-state and saved slots hold NaN; the backward
    step into the middle column block of a gradient buffer prefilled with NaN, a strided view:
    an output left unwritten, or written with ``+=``, or into another block, shows up as NaN
    or as a mismatch."""
    xp, cell = _host_xp(), spec(cell_name)
    rng = np.random.default_rng(seed)
    n_x, n_a, m, T, t = 3, 4, 5, 3, 1
    p = {k: v.astype(dtype) for k, v in random_parameters(cell_name, rng, n_x, n_a).items()}
    W = cell.stack(xp, p, n_a)
    GX = rng.normal(size=(T, cell.blocks * n_a, m)).astype(dtype)
    state = tuple(rng.normal(size=(n_a, m)).astype(dtype) for _ in cell.states)
    new_ref, saved_ref = cell.forward_pointwise(xp, GX[t].copy(), W.Wa @ state[0], state, W)
    store = ops.forward_store(cell, state, GX)
    for buf in store.states:
        buf[1:] = np.nan
    if store.saved is not None and store.saved is not GX:
        store.saved[...] = np.nan
    slot = store.slot(t)
    new, saved = ops.forward_step(cell, W, GX[t], state, slot)
    store.put(t, new, saved)
    bad = []
    tol = TOL[dtype]

    def compare(what, got, want):
        if got is None or want is None:
            if (got is None) != (want is None):
                bad.append(f"{what}: {got is None=} {want is None=}")
            return
        if got.dtype != np.dtype(dtype) or got.shape != want.shape:
            bad.append(f"{what}: {got.dtype} {got.shape} vs {want.shape}")
        elif not np.allclose(got, want, rtol=tol[0], atol=tol[1]):
            bad.append(f"{what}: max |diff| {np.nanmax(np.abs(got - want))}")

    for i, (a, b) in enumerate(zip(store.states, new_ref, strict=True)):
        compare(f"forward state {i}", a[t + 1], b)
    compare("forward saved", None if store.saved is None else store.saved[t], saved_ref)

    up = tuple(rng.normal(size=(n_a, m)).astype(dtype) for _ in cell.states)
    dgx_ref, dra_ref, direct_ref = cell.backward_pointwise(
        xp, saved_ref, state, new_ref, tuple(u.copy() for u in up), W
    )
    rows = (cell.gradient_rows(n_a), 3, m, state[0], cell.recurrent_rows(n_a))
    columns = ops.gradient_columns(*rows)
    columns.gx[...] = np.nan
    if columns.ra is not None:
        columns.ra[...] = np.nan
    dgx, dra, direct = ops.backward_step(cell, saved_ref, state, new_ref, up, columns.slot(1), W)
    columns.put(1, dgx, dra)
    compare("backward dgx", columns.gx[:, m : 2 * m], dgx_ref)
    if columns.ra is not None:
        compare("backward dra", columns.ra[:, m : 2 * m], dra_ref)
    for i, (a, b) in enumerate(zip(direct, direct_ref, strict=True)):
        compare(f"backward direct {i}", a, b)
    outside = np.concatenate([columns.gx[:, :m], columns.gx[:, 2 * m :]], axis=1)
    if not np.isnan(outside).all():
        bad.append("backward wrote outside its column block")
    return bad


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cell", NAMES)
def test_each_step_kernel_matches_the_reference(cell, dtype, ops):
    assert _step_mismatches(ops, cell, dtype) == []


# Bugs planted in the kernel sources generated from each cell's elementwise math
# ("<cell>_fwd"/"<cell>_bwd" of all_sources()): each must make the step comparison fail.
PLANTED = {
    "lstm forward: wrong gate (Γf from the update block)": (
        "lstm_fwd", "T z0 = gx0_ + r0_;", "T z0 = gx0_ + r1_;"),
    "lstm backward: c⟨t-1⟩ for c⟨t⟩": ("lstm_bwd", "tanh(n1);", "tanh(p1);"),
    "lstm backward: += into dP": ("lstm_bwd", "dz0 = ", "dz0 += "),
    "lstm backward: dc⟨t-1⟩ unwritten": ("lstm_bwd", "w1 = ", "T unused = "),
    "gru forward: wrong gate (z from the reset block)": (
        "gru_fwd", "T z1 = gx1_ + r1_;", "T z1 = gx0_ + r1_;"),
    "gru forward: the recurrent side unscaled": ("gru_fwd", "T z3 = r2_;", "T z3 = gx2_;"),
    "gru backward: the recurrent side's gradient as the input side's": (
        "gru_bwd", "dh2 = ", "T unused = "),
    "rnn backward: tanh' of the wrong sign": ("rnn_bwd", "((T)1.0 - t3)", "((T)1.0 + t3)"),
    "relu forward: no clamp": ("rnn_relu_fwd", "max(z0, (T)0.0)", "z0"),
}  # fmt: skip


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("bug", list(PLANTED))
def test_a_planted_kernel_bug_is_caught(bug, dtype, build_dir, monkeypatch):
    key, old, new = PLANTED[bug]
    source = cupy_backend.all_sources()[key]
    assert old in source.operation, f"the planted bug no longer applies to {key}"
    broken = source._replace(operation=source.operation.replace(old, new))
    cell, direction = key.rsplit("_", 1)  # "lstm_bwd" -> "lstm", "bwd"
    made = cupy_backend.traced_sources
    which = {"fwd": "forward", "bwd": "backward"}[direction]

    def planted(c):
        out = made(c)
        return {**out, which: broken} if c.name == cell else out

    monkeypatch.setattr(cupy_backend, "traced_sources", planted)
    assert _step_mismatches(emulated_ops(build_dir), cell, dtype) != []


# --- end to end -------------------------------------------------------------------------------


def _run_all(ops_for, cell, dtype, **kw):
    """Every output and gradient of one sequence call, with ``xrnn.core.engine`` on ``ops_for``."""
    rng = np.random.default_rng(7)
    n_x, n_a, m, T = 3, 4, 3, 5
    p = {k: v.astype(dtype) for k, v in random_parameters(cell, rng, n_x, n_a).items()}
    x = rng.normal(size=(n_x, m, T)).astype(dtype)
    state0 = tuple(rng.normal(size=(n_a, m)).astype(dtype) for _ in spec(cell).states)
    if "lengths" in kw:
        kw["lengths"] = np.asarray(kw["lengths"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(xrnn.core.engine, "get_ops", lambda _: ops_for)
        states, _, caches = forward(cell, x, state0, p, **kw)
        dfinal = tuple(rng.normal(size=(n_a, m)).astype(dtype) for _ in spec(cell).states)
        kept = tuple(d.copy() for d in dfinal)
        da = rng.normal(size=(n_a, m, T)).astype(dtype)
        g = backward(cell, da, caches, dfinal=dfinal)
        for d, k in zip(dfinal, kept, strict=True):  # the user's dfinal is never written
            np.testing.assert_array_equal(d, k)
        out = {f"out{i}": s for i, s in enumerate(states)}
        out.update({f"final{i}": s for i, s in enumerate(caches[0].final_states())})
    out.update(g)
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize(
    "kw", [{}, {"lengths": [5, 2, 4]}, {"reverse": True}, {"lengths": [1, 5, 3], "reverse": True}]
)
@pytest.mark.parametrize("cell", NAMES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_emulated_cupy_matches_the_reference_end_to_end(dtype, cell, kw, ops):
    """Forward and backward through the engine with the CuPy backend's storage, glue and kernel
    bodies; results stay in the input's dtype; every kernel launches under the arrays' own
    device (the emulator records the current device per launch: "cpu" for NumPy arrays)."""
    got = _run_all(ops, cell, dtype, **kw)
    want = _run_all(Ops(_host_xp()), cell, dtype, **kw)
    assert set(got) == set(want)
    for k in want:
        assert got[k].dtype == np.dtype(dtype), k
        np.testing.assert_allclose(
            got[k], want[k], rtol=TOL[dtype][0], atol=TOL[dtype][1], err_msg=k
        )
    kernels = {f"xrnn_{cell}_forward_step", f"xrnn_{cell}_backward_step"}
    assert {name for name, _ in ops.lib.launches} == kernels
    assert {device for _, device in ops.lib.launches} == {"cpu"}


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_backward_loop_allocates_nothing_per_step(cell, ops, monkeypatch):
    """The step kernels write their outputs into the chunk's column buffers and the engine's
    temporaries: no array from ``lib`` (CuPy) per backward step."""
    rng = np.random.default_rng(1)
    n_x, n_a, m, T = 3, 4, 2, 6
    p = random_parameters(cell, rng, n_x, n_a)
    x = rng.normal(size=(n_x, m, T))
    state0 = tuple(np.zeros((n_a, m)) for _ in spec(cell).states)
    monkeypatch.setattr(xrnn.core.engine, "get_ops", lambda _: ops)
    _, _, caches = forward(cell, x, state0, p)
    made = []
    for name in ("empty", "empty_like", "zeros"):
        real = getattr(ops.lib, name)
        monkeypatch.setattr(
            ops.lib, name, lambda *a, _real=real, **k: made.append(1) or _real(*a, **k)
        )
    backward(cell, rng.normal(size=(n_a, m, T)), caches)
    assert made == []
    assert sum(name.endswith("backward_step") for name, _ in ops.lib.launches) == T


def test_the_emulator_enforces_cupys_calling_rules(ops):
    """The rules that make a kernel call fail on CuPy fail here too."""
    kernel = ops.lib.ElementwiseKernel("T a, T b", "T c", "c = a + b", "xrnn_test_add")
    a = np.ones((2, 3))
    with pytest.raises(TypeError, match="Type is mismatched"):
        kernel(a, a.astype(np.float32), np.empty((2, 3)))
    with pytest.raises(ValueError, match="Out shape is mismatched"):
        kernel(a, np.ones((2, 1)), np.empty((2, 1)))
    out = np.empty((2, 3))
    kernel(a, np.arange(3.0), out)  # inputs broadcast into the output's shape
    np.testing.assert_array_equal(out, 1 + np.arange(3.0) + np.zeros((2, 1)))
    shift = ops.lib.ElementwiseKernel("T a", "T c", "c = a * (T)2", "xrnn_test_double")
    buf = np.arange(4.0)
    shift(buf[:3], buf[1:])  # overlapping but not the same array: the input is copied first
    np.testing.assert_array_equal(buf, [0, 0, 2, 4])
