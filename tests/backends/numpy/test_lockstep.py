"""The LSTM's loops on two threads in lockstep (xrnn/backends/numpy/lockstep.py and its
loops in xrnn/backends/numpy/jit.py) and the private one-thread OpenBLAS they call
(xrnn/backends/numpy/cblas.py):
BLAS's GEMM called from compiled code, the lockstep forward, backward, input side and whole
backward chunks against the one-thread path, the XRNN_LOCKSTEP switch, concurrent calls (one
helper each, bit-identical results), a failing or interrupted half, NumPy's OpenBLAS never
touched, helpers joined, a forked child, and torch CPU tensors running the same compiled
code."""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import threading
import time

import numpy as np
import pytest

import xrnn
from xrnn.backends import jit_enabled
from xrnn.core import tuning

pytestmark = pytest.mark.skipif(not jit_enabled(), reason="compiled kernels off (XRNN_JIT=0)")


def _usable() -> tuple[bool, str]:
    if not jit_enabled():
        return False, "compiled kernels off"
    from xrnn.backends.numpy import cblas, lockstep

    if cblas.private() is None:
        return False, "no private copy of NumPy's BLAS (not an OpenBLAS with C GEMM entry points)"
    if not lockstep.available("float32"):
        return False, "fewer than two CPUs, or BLAS held to one thread"
    return True, ""


USABLE, WHY = _usable()
needs_lockstep = pytest.mark.skipif(not USABLE, reason=WHY)


@pytest.fixture
def lockstep():
    from xrnn.backends.numpy import lockstep

    return lockstep


@pytest.fixture
def counted(lockstep, monkeypatch):
    """Every call of lockstep.run that ran (True), by kernel name; the loops at any size."""

    ran: list[str] = []
    run = lockstep.run

    def counting(kernel, mine, helpers, flags):
        done = run(kernel, mine, helpers, flags)
        if done:
            ran.append(kernel.__name__)
        return done

    monkeypatch.setattr(lockstep, "run", counting)
    monkeypatch.setattr(tuning, "LOCKSTEP_MIN_FLOPS", 0)
    return ran


# --- BLAS's GEMM from compiled code ------------------------------------------------------------


@needs_lockstep
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("ta", "tb"), [(False, False), (True, False), (False, True)])
def test_gemm_equals_numpy_on_offset_blocks(dtype, ta, tb):
    import numba

    from xrnn.backends.numpy import cblas

    @numba.njit
    def call(blas, ta, tb, M, N, K, A, a0, lda, B, b0, ldb, beta, C, c0, ldc):
        cblas.gemm(blas, ta, tb, M, N, K, A, a0, lda, B, b0, ldb, beta, C, c0, ldc)

    rng = np.random.default_rng(3)
    M, N, K = 7, 5, 6
    A = rng.normal(size=(12, 9)).astype(dtype)  # blocks inside bigger arrays, offset
    B = rng.normal(size=(11, 8)).astype(dtype)
    C = rng.normal(size=(10, 7)).astype(dtype)
    a_block = A[2 : 2 + (K if ta else M), 1 : 1 + (M if ta else K)]
    b_block = B[3 : 3 + (N if tb else K), 2 : 2 + (K if tb else N)]
    opA = a_block.T if ta else a_block
    opB = b_block.T if tb else b_block
    want = C.copy()
    want[1 : 1 + M, 1 : 1 + N] = opA @ opB + 0.5 * C[1 : 1 + M, 1 : 1 + N]
    blas = cblas.private().handle(dtype)
    got = C.copy()
    call(blas, ta, tb, M, N, K, A, 2 * 9 + 1, 9, B, 3 * 8 + 2, 8, 0.5, got, 1 * 7 + 1, 7)
    tol = {"float32": 1e-5, "float64": 1e-13}[dtype]
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@needs_lockstep
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matmul_into_equals_numpy_on_any_layout(dtype):
    """Views BLAS takes (offset blocks, transposes, single rows or columns) go through the
    private GEMM; the others (reversed, overlapping, strided rows) fall back to NumPy's."""
    from xrnn.backends.numpy import cblas

    rng = np.random.default_rng(1)
    big = rng.normal(size=(20, 30)).astype(dtype)
    handle = cblas.private().handle(dtype)
    lhs = [
        big[:5, :7], big[:7, :5].T, big[:1, :7], big[:7, :1], big[::-1][:5, :7],
        big[:5, ::2][:, :7], np.broadcast_to(big[:1, :7], (5, 7)),
    ]  # fmt: skip
    tol = {"float32": 1e-5, "float64": 1e-13}[dtype]
    for A in lhs:
        K = A.shape[1]
        for B in (big[2 : 2 + K, 3:6], big[:K, :1], big[:K, ::3][:, :4]):
            out = np.zeros((A.shape[0], 2 * B.shape[1]), dtype)[:, ::2]  # a strided output
            cblas.matmul_into(handle, A, B, out)
            np.testing.assert_allclose(out, A @ B, rtol=tol, atol=tol)
            assert cblas.matmul_into(None, A, B, np.empty_like(out)).dtype == np.dtype(dtype)


# --- the loops against the one-thread path -------------------------------------------------------


def _lstm_call(n_a, m, T, dtype, seed=0, reverse=False, dfinal=False, xp=np):
    rng = np.random.default_rng(seed)
    n_x = 5
    p = {k: v.astype(dtype) for k, v in xrnn.initialize_lstm(n_x, n_a, seed=seed).items()}
    x = rng.normal(size=(n_x, m, T)).astype(dtype)
    a0 = rng.normal(size=(n_a, m)).astype(dtype)
    c0 = rng.normal(size=(n_a, m)).astype(dtype)
    da = rng.normal(size=(n_a, m, T)).astype(dtype)
    if xp is not np:
        p = {k: xp.from_numpy(v) for k, v in p.items()}
        x, a0, c0, da = (xp.from_numpy(v) for v in (x, a0, c0, da))
    a, _, c, caches = xrnn.lstm_forward(x, a0, p, c0=c0, reverse=reverse)
    kw = {"dfinal": (a0 * 0.5, c0 * 0.25)} if dfinal else {}
    g = xrnn.lstm_backward(da, caches, **kw)
    out = {"a": a, "c": c, **g}
    return {k: np.asarray(v) for k, v in out.items() if v is not None}


@needs_lockstep
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    ("n_a", "m", "T", "kw"),
    [
        (8, 4, 6, {}),
        (7, 3, 300, {"reverse": True}),  # odd halves, several backward chunks
        (12, 1, 40, {"dfinal": True}),  # one column a step
        (33, 17, 9, {}),
    ],
)
def test_lockstep_loops_equal_the_one_thread_path(counted, monkeypatch, dtype, n_a, m, T, kw):
    got = _lstm_call(n_a, m, T, dtype, **kw)
    assert {
        "forward_lockstep",
        "chunk_lockstep",
        "input_side_lockstep",
    } <= set(counted)
    counted.clear()
    monkeypatch.setenv("XRNN_LOCKSTEP", "0")
    want = _lstm_call(n_a, m, T, dtype, **kw)
    assert counted == []  # the switch turns it off
    tol = {"float32": 2e-5, "float64": 1e-12}[dtype]
    for k in want:
        assert got[k].dtype == np.dtype(dtype), k
        np.testing.assert_allclose(got[k], want[k], rtol=tol, atol=tol, err_msg=k)


@needs_lockstep
@pytest.mark.parametrize("callers", [2, 4])
def test_concurrent_calls_each_get_a_helper_and_round_alike(counted, callers):
    """Calls from several Python threads at once all run in lockstep (a helper each) and give
    the lone call's results bit for bit."""
    want = _lstm_call(16, 4, 30, "float32", seed=5)
    counted.clear()
    barrier = threading.Barrier(callers)
    results: list = [None] * callers

    def call(i: int) -> None:
        barrier.wait()
        results[i] = [_lstm_call(16, 4, 30, "float32", seed=5) for _ in range(5)]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert counted.count("forward_lockstep") == 5 * callers
    for repeats in results:
        assert repeats is not None
        for got in repeats:
            for k in want:
                np.testing.assert_array_equal(got[k], want[k], err_msg=k)


@needs_lockstep
def test_a_failing_half_stops_the_other_and_is_raised(lockstep):
    flags = lockstep.new_flags()

    def kernel(thread, flags):
        if thread == 1:
            raise RuntimeError("the helper's half failed")
        # the caller's half waits for a step the helper never finishes: the abort ends it
        assert not lockstep.wait_for(flags, 1, 1)

    with pytest.raises(RuntimeError, match="the helper's half failed"):
        lockstep.run(kernel, (0, flags), (1, flags), flags)
    # and the helper serves the next call
    fresh = lockstep.new_flags()
    assert lockstep.run(lambda *a: None, (), (), fresh)


@needs_lockstep
def test_an_interrupted_half_stops_the_other_and_leaks_no_thread(lockstep):
    """A KeyboardInterrupt in the caller's half (as one arriving between its chunks) stops the
    helper's half at its next meeting; the helper goes back to the pool, so repeated
    interrupts start no new threads."""
    assert lockstep.run(lambda *a: None, (), (), lockstep.new_flags())
    before = len(lockstep.helpers())

    def kernel(thread, flags):
        if thread == 0:
            raise KeyboardInterrupt
        assert not lockstep.wait_for(flags, 0, 10**9)  # ends on the abort, not the count

    for _ in range(20):
        flags = lockstep.new_flags()
        with pytest.raises(KeyboardInterrupt):
            lockstep.run(kernel, (0, flags), (1, flags), flags)
    assert len(lockstep.helpers()) == before
    assert all(t.is_alive() for t in lockstep.helpers())


@needs_lockstep
def test_helpers_are_stopped_and_joined(lockstep):
    assert lockstep.run(lambda *a: None, (), (), lockstep.new_flags())
    started = lockstep.helpers()
    assert started
    lockstep._pool.stop()
    assert lockstep.helpers() == []
    assert not any(t.is_alive() for t in started)
    assert lockstep.run(lambda *a: None, (), (), lockstep.new_flags())  # a fresh helper


@needs_lockstep
def test_numpys_openblas_is_never_touched(counted):
    """The loops' GEMMs run on the private copy, held at one thread; NumPy's OpenBLAS keeps its
    thread count throughout a call, as another thread sees it."""
    from xrnn.backends.numpy import cblas

    before = cblas.numpy_threads()
    seen: set = set()
    running = threading.Event()
    done = threading.Event()

    def watch() -> None:
        running.set()
        while not done.is_set():
            seen.add(cblas.numpy_threads())

    watcher = threading.Thread(target=watch)
    watcher.start()
    running.wait()
    try:
        for _ in range(3):
            _lstm_call(16, 4, 40, "float32")
    finally:
        done.set()
        watcher.join()
    assert counted
    assert seen == {before}
    assert cblas.numpy_threads() == before


def _child(queue):
    try:
        out = _lstm_call(8, 4, 6, "float64")
        queue.put(float(out["dWf"].sum()))
    except BaseException as exc:  # reported to the parent
        queue.put(repr(exc))


@needs_lockstep
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # JAX's, where it is imported
# Python 3.12+'s: forking a process with threads (the helpers: what this test is about)
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_gets_its_own_helper(counted):
    want = float(_lstm_call(8, 4, 6, "float64")["dWf"].sum())  # the parent's helper runs
    assert counted
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(queue,))
    child.start()
    child.join(120)
    if child.is_alive():  # hung waiting for a helper thread it does not have
        child.kill()
    assert child.exitcode == 0, "the forked child hung or failed"
    got = queue.get(timeout=5)
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12), got


# --- torch CPU tensors ---------------------------------------------------------------------------


@needs_lockstep
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
def test_torch_cpu_tensors_run_the_compiled_kernels(counted):
    import torch

    threads = torch.get_num_threads()
    want = _lstm_call(9, 4, 7, "float32")
    counted.clear()
    got = _lstm_call(9, 4, 7, "float32", xp=torch)
    assert {"forward_lockstep", "chunk_lockstep"} <= set(counted)
    assert torch.get_num_threads() == threads  # untouched: the calls ran on NumPy views
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-6, err_msg=k)


# --- the generated cells' loops (xrnn.backends.numpy.generated) -----------------------------------


# odd halves, several chunks, one column a step
CELL_SHAPES = [(8, 4, 6), (7, 3, 300), (12, 1, 40)]


def _cell_call(cell, n_a, m, T, dtype, seed=0, to=None, **kw):
    """Outputs and gradients of one call of ``cell`` (a cell object), every state given, as
    NumPy arrays (``to``: how the inputs are made another library's, e.g. torch.from_numpy)."""
    rng = np.random.default_rng(seed)
    n_x = 5
    p = {
        k: (rng.normal(size=shape) / np.sqrt(shape[1])).astype(dtype)
        for k, (shape, _) in cell.shapes(n_x, n_a).items()
    }
    for k in cell.vectors:  # |d| < 1: the residual cell's state stays bounded over 300 steps
        p[k] = rng.uniform(-0.5, 0.5, size=(n_a, 1)).astype(dtype)
    x = rng.normal(size=(n_x, m, T)).astype(dtype)
    initial = {f"{s}0": rng.normal(size=(n_a, m)).astype(dtype) for s in cell.states}
    a0 = initial.pop("a0")
    dfinal = tuple(rng.normal(size=(n_a, m)).astype(dtype) for _ in cell.states)
    da = rng.normal(size=(n_a, m, T)).astype(dtype)
    if to is not None:
        p = {k: to(v) for k, v in p.items()}
        x, a0, da = to(x), to(a0), to(da)
        initial = {k: to(v) for k, v in initial.items()}
        dfinal = tuple(to(d) for d in dfinal)
    out = xrnn.forward(cell, x, a0, p, **initial, **kw)
    g = xrnn.backward(da, out[-1], dfinal=dfinal)
    got = {**{f"out{i}": o for i, o in enumerate((out[0], *out[2:-1]))}, **g}
    return {k: np.asarray(v) for k, v in got.items()}


@needs_lockstep
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("n_a", "m", "T"), CELL_SHAPES)
@pytest.mark.parametrize("name", ["residual", "three_states", "everything", "peephole_lstm", "gru"])
def test_generated_lockstep_loops_equal_the_one_thread_path(
    counted, monkeypatch, name, dtype, n_a, m, T
):
    """The generated cells' loops in lockstep (forward, whole backward chunks, input side)
    against the same call on one thread: odd halves, several chunks, one column a step; a
    direct path to a⟨t-1⟩, vectors, three states, a gate's two sides apart, reverse."""
    from tests import contract_cells

    cell = {
        "residual": contract_cells.Residual(),
        "three_states": contract_cells.ThreeStates(),
        "everything": contract_cells.Everything(),
        "peephole_lstm": xrnn.CELLS["peephole_lstm"],
        "gru": xrnn.CELLS["gru"],  # a gate's two sides apart: the recurrent side's own buffer
    }[name]
    got = _cell_call(cell, n_a, m, T, dtype, reverse=True)
    assert {"forward_lockstep", "chunk_lockstep", "input_side_lockstep"} <= set(counted)
    counted.clear()
    monkeypatch.setenv("XRNN_LOCKSTEP", "0")
    want = _cell_call(cell, n_a, m, T, dtype, reverse=True)
    assert counted == []
    tol = {"float32": 3e-5, "float64": 1e-12}[dtype]
    for k in want:
        assert got[k].dtype == np.dtype(dtype), k
        np.testing.assert_allclose(got[k], want[k], rtol=tol, atol=tol, err_msg=k)


# the lockstep loops a late helper's caller takes over
TAKEN_OVER = ("forward_lockstep", "chunk_lockstep")


def _chunks_taken(lockstep, monkeypatch, helper_delay=0.0):
    """``(kernel name, flags)`` of every forward span's and backward chunk's lockstep call,
    after it (the helper's half delayed by ``helper_delay`` seconds before it starts)."""
    flagged: list = []
    run = lockstep.run

    def watching(kernel, mine, helpers, flags):
        if kernel.__name__ not in TAKEN_OVER:
            return run(kernel, mine, helpers, flags)

        def late(*args):
            if args[1] == 1:  # the helper's half
                time.sleep(helper_delay)
            kernel(*args)

        late.__name__ = kernel.__name__
        done = run(late if helper_delay else kernel, mine, helpers, flags)
        flagged.append((kernel.__name__, flags.copy()))
        return done

    monkeypatch.setattr(lockstep, "run", watching)
    return flagged


@needs_lockstep
@pytest.mark.parametrize("helper_delay", [0.0, 0.05])
@pytest.mark.parametrize("name", ["lstm", "three_states", "gru"])
def test_a_late_helper_is_taken_over_with_the_same_results(
    counted, lockstep, monkeypatch, name, helper_delay
):
    """The caller takes a forward span and a backward chunk over from a helper it waited for
    too long — midway (no wait allowed at all: the first meeting the caller reaches first), or
    before the helper started (its start delayed) — and gives the lockstep call's results bit
    for bit: the same halves, in the same order. Midway takeovers need the caller to reach a
    meeting first, which a loaded machine may never let happen: only the delayed start is
    sure to be taken over, and every call's results are checked either way."""
    from tests import contract_cells

    cell = xrnn.CELLS[name] if name != "three_states" else contract_cells.ThreeStates()
    shape = (9, 3, 120)
    want = _cell_call(cell, *shape, "float64", reverse=True)
    flagged = _chunks_taken(lockstep, monkeypatch, helper_delay)
    monkeypatch.setattr(tuning, "LOCKSTEP_TAKEOVER_CHECKS", 0)
    taken: dict = {}
    for _ in range(50):  # midway, a takeover needs the caller first at a meeting: most calls
        got = _cell_call(cell, *shape, "float64", reverse=True)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)
        for kernel, f in flagged:
            if f[lockstep.ENTERED] == lockstep.TAKEN:
                taken.setdefault(kernel, []).append(f)
        if set(taken) == set(TAKEN_OVER):
            break
        flagged.clear()
    if helper_delay:
        assert set(taken) == set(TAKEN_OVER), f"taken over: {sorted(taken)}"
    for kernel, flags in taken.items():
        if kernel == "chunk_lockstep":  # each helper stopped and said so
            assert all(f[8] == lockstep.DONE for f in flags)
        if helper_delay:  # taken before the helper's first step: the caller ran every step
            assert all(f[0] == 1 for f in flags), kernel


@needs_lockstep
def test_a_negative_patience_never_takes_over(counted, lockstep, monkeypatch):
    """``LOCKSTEP_TAKEOVER_CHECKS < 0``: the caller waits for its helper, however late."""
    monkeypatch.setattr(tuning, "LOCKSTEP_TAKEOVER_CHECKS", -1)
    flagged = _chunks_taken(lockstep, monkeypatch, helper_delay=0.01)
    want = _cell_call(xrnn.CELLS["lstm"], 9, 3, 40, "float64")
    assert flagged and all(f[lockstep.ENTERED] != lockstep.TAKEN for _, f in flagged)
    monkeypatch.setenv("XRNN_LOCKSTEP", "0")
    got = _cell_call(xrnn.CELLS["lstm"], 9, 3, 40, "float64")
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-12, err_msg=k)


@needs_lockstep
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
@pytest.mark.parametrize("name", ["three_states", "peephole_lstm"])
def test_torch_cpu_tensors_run_the_generated_kernels(counted, name):
    """Torch CPU tensors of a generated cell borrow its compiled kernels (lockstep loops
    included) on their own memory, as the LSTM's do: the same results as NumPy's."""
    import torch

    from tests import contract_cells

    cell = contract_cells.ThreeStates() if name == "three_states" else xrnn.CELLS[name]
    want = _cell_call(cell, 9, 4, 7, "float32")
    counted.clear()
    threads = torch.get_num_threads()
    got = _cell_call(cell, 9, 4, 7, "float32", to=torch.from_numpy)
    assert {"forward_lockstep", "chunk_lockstep"} <= set(counted)
    assert torch.get_num_threads() == threads  # untouched: the calls ran on NumPy views
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=2e-5, atol=2e-5, err_msg=k)


def _outputs(cell, n_a, m, T, dtype, *, caches, reverse=False, to=None):
    rng = np.random.default_rng(7)
    n_x = 6
    p = {k: v.astype(dtype) for k, v in xrnn.initialize(cell, n_x, n_a, seed=7).items()}
    x = rng.normal(size=(n_x, m, T)).astype(dtype)
    initial = {f"{s}0": rng.normal(size=(n_a, m)).astype(dtype) for s in cell.states}
    if to is not None:
        p, x = {k: to(v) for k, v in p.items()}, to(x)
        initial = {k: to(v) for k, v in initial.items()}
    a0 = initial.pop("a0")
    out = xrnn.forward(cell, x, a0, p, **initial, reverse=reverse, return_caches=caches)
    assert (out[-1] is None) is not caches
    return [np.asarray(o) for o in (out[0], *out[2:-1])]


@needs_lockstep
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("n_a", "m", "T"), CELL_SHAPES)
@pytest.mark.parametrize("name", ["lstm", "peephole_lstm", "residual", "everything", "gru"])
def test_fused_forward_without_caches_equals_the_caching_forward(
    counted, monkeypatch, name, dtype, n_a, m, T
):
    """The forward without caches runs every step, input side included, in one fused loop
    (``forward_fused``: one GEMM per gate over ``[a⟨t-1⟩; x⟨t⟩]``) for a cell whose every
    pre-activation adds both sides of its gate — the caching forward's outputs, reversed
    too, over spans of one step, and on this thread alone where no helper starts; a cell
    with a gate's sides apart (the GRU) runs the input side first, as before."""
    from tests import contract_cells

    cell = {
        "residual": contract_cells.Residual(),
        "everything": contract_cells.Everything(),
    }.get(name) or xrnn.CELLS[name]
    fusable = all(side == "both" for _, side in cell.pre_activations)
    tol = {"float32": 3e-5, "float64": 1e-12}[dtype]
    want = _outputs(cell, n_a, m, T, dtype, caches=True, reverse=True)
    counted.clear()
    got = _outputs(cell, n_a, m, T, dtype, caches=False, reverse=True)
    assert ("forward_fused" in counted) is fusable
    for g, w in zip(got, want, strict=True):
        assert g.dtype == np.dtype(dtype)
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)
    if not fusable:
        return
    from xrnn.backends.numpy import lockstep

    monkeypatch.setattr(tuning, "INTERRUPT_CHECK_FLOPS", 1)  # a span a step
    counted.clear()
    spans = _outputs(cell, n_a, m, T, dtype, caches=False, reverse=True)
    assert counted.count("forward_fused") == T
    run = lockstep.run
    monkeypatch.setattr(
        lockstep,
        "run",
        lambda kernel, *a: False if kernel.__name__ == "forward_fused" else run(kernel, *a),
    )
    alone = _outputs(cell, n_a, m, T, dtype, caches=False, reverse=True)
    for g, s, one in zip(got, spans, alone, strict=True):
        np.testing.assert_array_equal(s, g)
        np.testing.assert_allclose(one, g, rtol=tol, atol=tol)


@needs_lockstep
def test_fused_forward_reads_the_parameters_in_place(counted, monkeypatch):
    """The fused forward's GEMMs read each gate's weight where the parameters hold it: the
    stacked weights are never made (a C-contiguous copy of a Fortran-ordered parameter set
    takes the stacked path instead, with the same outputs)."""
    from xrnn.cells.base import Stacked

    made: list[str] = []
    for name in ("Wa", "Wx"):
        prop = getattr(Stacked, name)
        monkeypatch.setattr(
            Stacked, name, property(lambda self, p=prop, n=name: made.append(n) or p.fget(self))
        )
    cell = xrnn.CELLS["lstm"]
    got = _outputs(cell, 16, 4, 9, "float64", caches=False)
    assert "forward_fused" in counted and made == []
    want = _outputs(cell, 16, 4, 9, "float64", caches=True)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


@needs_lockstep
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
def test_torch_cpu_tensors_run_the_fused_forward(counted):
    """Torch CPU tensors' forward without caches borrows the fused loop on their memory."""
    import torch

    cell = xrnn.CELLS["lstm"]
    want = _outputs(cell, 9, 4, 7, "float32", caches=False)
    counted.clear()
    got = _outputs(cell, 9, 4, 7, "float32", caches=False, to=torch.from_numpy)
    assert "forward_fused" in counted
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
