"""The benchmark baseline computes what xrnn computes, and xrnn's forward pass peaks near the
memory of the exercise's loop (tracemalloc sees NumPy's allocations). No timing here."""

import numpy as np
import pytest

import xrnn
from xrnn.benchmark import reference
from xrnn.benchmark import table as bench


def _inputs(cell, n_x=4, n_a=6, m=3, T=5, seed=0):
    rng = np.random.default_rng(seed)
    init = xrnn.initialize_lstm if cell == "lstm" else xrnn.initialize_rnn
    p = init(n_x, n_a, seed=seed)
    return (
        rng.normal(size=(n_x, m, T)),
        rng.normal(size=(n_a, m)),
        p,
        rng.normal(size=(n_a, m, T)),
    )


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_reference_loop_matches_xrnn(cell):
    x, a0, p, da = _inputs(cell)
    fwd = {
        "lstm": (xrnn.lstm_forward, reference.lstm_forward),
        "rnn": (xrnn.rnn_forward, reference.rnn_forward),
    }[cell]
    bwd = {
        "lstm": (xrnn.lstm_backward, reference.lstm_backward),
        "rnn": (xrnn.rnn_backward, reference.rnn_backward),
    }[cell]
    mine, ref = fwd[0](x, a0, p), fwd[1](x, a0, p)
    np.testing.assert_allclose(mine[0], ref[0], rtol=1e-12)
    g, r = bwd[0](da, mine[-1]), bwd[1](da, ref[-1])
    assert set(g) == set(r)
    for k in g:
        np.testing.assert_allclose(g[k], r[k], rtol=1e-10, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", [(64, 64, 16, 50), (128, 128, 16, 40), (32, 64, 8, 40)])
def test_lstm_forward_peak_memory_near_the_exercise_loop(shape, dtype):
    """xrnn holds the gates and states (6 n_a m T numbers), the returned ``a`` and ``c`` as
    copies of its own (2 n_a m T: the caller may write into them without changing a later
    backward), one stacked copy of the weights (4 n_a (n_a + n_x)) and, briefly, a copy of x
    (n_x m T); the exercise's loop about 8 n_a m T. So xrnn peaks a little above it — the
    weight and input copies — on these shapes (configs A, B and long of the benchmark are
    alike), and more on tiny batches of short sequences such as the character model's
    (27, 50, 1, 25), where the weight copy dominates (docs/performance.md: measured)."""
    n_x, n_a, m, T = shape
    x, a0, p, _ = _inputs("lstm", n_x, n_a, m, T)
    x, a0 = x.astype(dtype), a0.astype(dtype)
    p = {k: v.astype(dtype) for k, v in p.items()}
    xrnn.lstm_forward(x, a0, p)  # compiled first: the compiler's own memory is no call's
    mine = bench.peak_memory_mb(lambda: xrnn.lstm_forward(x, a0, p))
    theirs = bench.peak_memory_mb(lambda: reference.lstm_forward(x, a0, p))
    assert mine <= 1.25 * theirs, f"xrnn {mine} MB > 1.25 × exercise loop {theirs} MB"
