"""Dask arrays (issue #10): the sequence functions and the layers batch-sharded on a
dask.distributed LocalCluster equal NumPy's, lazily, with a graph that does not grow with T;
bad chunking and mixed inputs are clear errors; the character model trains data-parallel."""

from __future__ import annotations

import doctest
import time

import numpy as np
import pytest

import xrnn
from tests.cell_cases import NAMES, backward, forward, initialize, spec

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

N_X, N_A, M, T = 3, 4, 8, 6
LENGTHS = [6, 3, 1, 6, 2, 5, 6, 4]


@pytest.fixture(scope="module")
def client():
    """Two worker processes: the chunks' tasks and everything they carry are pickled."""
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as c:  # fmt: skip
        yield c


def _case(cell, rng):
    x = rng.normal(size=(N_X, M, T))
    state0 = tuple(rng.normal(size=(N_A, M)) for _ in spec(cell).states)
    p = initialize(cell, N_X, N_A, 2, seed=1)
    da_ = rng.normal(size=(N_A, M, T))
    dfinal = tuple(rng.normal(size=(N_A, M)) for _ in spec(cell).states)
    return x, state0, p, da_, dfinal


def _sharded(x, state0, p, da_, dfinal, chunks=2):
    """x, the states, the upstream gradients as 4 batch chunks; parameters single-chunk."""
    names = {f"s{i}": s for i, s in enumerate(state0)}
    X, P, S = xrnn.dask.shard(x, p, chunks=chunks, **names)
    D = da.from_array(da_, chunks=(N_A, chunks, T))
    F = tuple(da.from_array(f, chunks=(N_A, chunks)) for f in dfinal)
    return X, tuple(S[k] for k in names), P, D, F


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("cell", NAMES)
def test_every_output_and_gradient_equals_numpy(cell, lengths, client, rng):
    x, state0, p, da_, dfinal = _case(cell, rng)
    states, y, caches = forward(cell, x, state0, p, lengths=lengths, reverse=True)
    grads = backward(cell, da_, caches, dfinal=dfinal)
    finals = caches[0].final_states()

    X, S, P, D, F = _sharded(x, state0, p, da_, dfinal)
    d_states, d_y, d_caches = forward(cell, X, S, P, lengths=lengths, reverse=True)
    d_grads = backward(cell, D, d_caches, dfinal=F)
    assert all(isinstance(a, da.Array) for a in (*d_states, d_y, *d_grads.values()))
    assert d_states[0].chunks[1] == (2, 2, 2, 2)  # sharded like x
    got = dask.compute(d_states, d_y, d_grads, d_caches[0].final_states(), scheduler=client)
    for mine, want in [
        *zip(got[0], states, strict=True),
        (got[1], y),
        *zip(got[3], finals, strict=True),
    ]:
        np.testing.assert_allclose(mine, want, rtol=0, atol=1e-12)
    assert set(got[2]) == set(grads)
    for k, g in grads.items():
        np.testing.assert_allclose(got[2][k], g, rtol=0, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_stacked_bidirectional_layers_equal_numpy(cell, client, rng):
    layer = xrnn.layers.layer_for(cell, N_X, N_A, num_layers=2, bidirectional=True, seed=2)
    x = rng.normal(size=(N_X, M, T))
    out, _ = layer(x, lengths=LENGTHS)
    dout = rng.normal(size=out.shape)
    grads = layer.backward(dout)
    X = da.from_array(x, chunks=(N_X, 2, T))
    d_out, _ = layer(X, lengths=LENGTHS)
    d_grads = layer.backward(da.from_array(dout, chunks=(2 * N_A, 2, T)))
    got_out, got = dask.compute(d_out, d_grads, scheduler=client)
    np.testing.assert_allclose(got_out, out, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got["dx"], grads["dx"], rtol=0, atol=1e-12)
    for n in range(2):
        for d in range(2):
            for k, g in grads["parameters"][n][d].items():
                np.testing.assert_allclose(got["parameters"][n][d][k], g, rtol=0, atol=1e-12)


class _CountingScheduler:
    """A scheduler that counts the computes it is asked for (and runs them synchronously)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, dsk, keys, **kwargs):
        self.calls += 1
        return dask.get(dsk, keys, **kwargs)


@pytest.mark.parametrize("cell", NAMES)
def test_calls_are_lazy_and_checks_run_inside_the_tasks(cell, rng):
    x, state0, p, da_, dfinal = _case(cell, rng)
    x[0, 5, 2] = np.nan  # in the third chunk
    X, S, P, D, F = _sharded(x, state0, p, da_, dfinal)
    counter = _CountingScheduler()
    with dask.config.set(scheduler=counter):
        d_states, _, caches = forward(cell, X, S, P, lengths=LENGTHS)
        grads = backward(cell, D, caches, dfinal=F)
        caches[0].final_states()
        assert counter.calls == 0  # nothing computed: the finiteness check is in the tasks
        with pytest.raises(ValueError, match="x contains NaN or infinity"):
            grads["dWa" if "Wa" in spec(cell).keys else "dx"].compute()
        assert counter.calls == 1


def test_the_graph_grows_with_chunks_not_with_T():
    p = xrnn.initialize_lstm(N_X, N_A, seed=0)

    def tasks(m_chunks: int, steps: int) -> tuple[int, float]:
        x = da.zeros((N_X, 4 * m_chunks, steps), chunks=(N_X, 4, steps))
        a0 = da.zeros((N_A, 4 * m_chunks), chunks=(N_A, 4))
        start = time.perf_counter()
        a, _, _, caches = xrnn.lstm_forward(x, a0, p)
        g = xrnn.lstm_backward(da.ones_like(a), caches)
        built = time.perf_counter() - start
        return len(dask.base.collections_to_expr([a, *g.values()]).__dask_graph__()), built

    small, _ = tasks(4, 5)
    long, built = tasks(4, 200)
    assert small == long  # T does not appear in the graph
    assert built < 1.0  # seconds, at T = 200
    eight, _ = tasks(8, 5)
    assert eight - small == tasks(12, 5)[0] - eight  # linear in the chunks


def test_bad_chunking_and_mixed_inputs_are_named(rng):
    x, (a0,), p, da_, _ = _case("rnn", rng)
    X, P, S = xrnn.dask.shard(x, p, chunks=2, a0=a0)
    for bad, axis in [(X.rechunk((N_X, 2, 3)), 2), (X.rechunk((1, 2, T)), 0)]:
        with pytest.raises(ValueError, match=f"x is chunked along axis {axis} .* rechunk it"):
            xrnn.rnn_forward(bad, S["a0"], P)
    with pytest.raises(ValueError, match="a0 is chunked along axis 0"):
        xrnn.rnn_forward(X, S["a0"].rechunk((2, 2)), P)
    with pytest.raises(TypeError, match="a0 is a numpy.ndarray but x is a Dask array"):
        xrnn.rnn_forward(X, a0, P)
    with pytest.raises(TypeError, match="x must be a Dask array when another argument is one"):
        xrnn.rnn_forward(x, S["a0"], P)
    with pytest.raises(ValueError, match="parameters\\['Waa'\\] is chunked .*\\.rechunk\\(-1\\)"):
        xrnn.rnn_forward(X, S["a0"], {**P, "Waa": P["Waa"].rechunk((2, 4))})
    with pytest.raises(TypeError, match="dtype float32"):
        xrnn.rnn_forward(X, S["a0"], {**p, "Waa": p["Waa"].astype(np.float32)})
    _, _, caches = xrnn.rnn_forward(X, S["a0"], P)
    with pytest.raises(TypeError, match="da must be a Dask array"):
        xrnn.rnn_backward(da_, caches)
    with pytest.raises(TypeError, match="pass Dask arrays to both or to neither"):
        xrnn.rnn_backward(da.from_array(da_), xrnn.rnn_forward(x, a0, p)[2])


def test_data_parallel_training_follows_the_single_process_run(client):
    names = xrnn.charlm.bundled_names()[:300]
    kw = dict(hidden=16, layers=2, dropout=0.0, steps=25, seed=3, like=np.zeros(1))
    _, alone = xrnn.charlm.train(names, **kw)
    _, sharded = xrnn.charlm.train(names, client=client, **kw)
    np.testing.assert_allclose(sharded["loss"], alone["loss"], rtol=1e-10)
    np.testing.assert_allclose(sharded["val_bpc"], alone["val_bpc"], rtol=1e-10)


def test_the_module_examples_run():
    result = doctest.testmod(xrnn.dask, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def _gpu() -> bool:
    try:
        import cupy
    except ImportError:
        return False
    return bool(cupy.is_available())


@pytest.mark.skipif(not _gpu(), reason="needs CuPy and a GPU (cupy.is_available() is false)")
@pytest.mark.parametrize("cell", NAMES)
def test_cupy_backed_chunks_take_the_same_path(cell, rng):
    import cupy

    x, state0, p, da_, dfinal = _case(cell, rng)
    states, _, caches = forward(cell, x, state0, p, lengths=LENGTHS)
    grads = backward(cell, da_, caches)
    X = da.from_array(cupy.asarray(x), chunks=(N_X, 2, T))
    S = tuple(da.from_array(cupy.asarray(s), chunks=(N_A, 2)) for s in state0)
    P = {k: cupy.asarray(v) for k, v in p.items()}
    d_states, _, d_caches = forward(cell, X, S, P, lengths=LENGTHS)
    d_grads = backward(cell, da.from_array(cupy.asarray(da_), chunks=(N_A, 2, T)), d_caches)
    got_states, got = dask.compute(d_states, d_grads, scheduler="sync")
    assert isinstance(got_states[0], cupy.ndarray)  # the chunks stayed on the GPU
    np.testing.assert_allclose(cupy.asnumpy(got_states[0]), states[0], rtol=0, atol=1e-12)
    for k, g in grads.items():
        np.testing.assert_allclose(cupy.asnumpy(got[k]), g, rtol=0, atol=1e-12, err_msg=k)
