"""The forward that keeps no caches (``return_caches=False``): the caching forward's outputs
on every backend and cell, ``None`` for the caches, and a peak memory of the outputs and one
chunk of work area."""

from __future__ import annotations

import numpy as np
import pytest

import xrnn
import xrnn.core.tuning
from tests.conftest import assert_close
from tests.contract_cells import CELLS as GENERATED
from xrnn.backends import jit_enabled
from xrnn.benchmark import table as bench

CELLS = [xrnn.CELLS[name] for name in sorted(xrnn.CELLS)] + GENERATED[:3]
KWARGS = [{}, {"lengths": [7, 2, 5, 1]}, {"lengths": [7, 2, 5, 1], "reverse": True}]


@pytest.mark.parametrize("kw", KWARGS, ids=["plain", "lengths", "reverse"])
@pytest.mark.parametrize("cell", CELLS, ids=[c.name for c in CELLS])
def test_outputs_are_the_caching_forwards(xp, cell, kw, monkeypatch):
    monkeypatch.setattr(xrnn.core.tuning, "FORWARD_CHUNK_BYTES", 1)  # one step a chunk
    rng = np.random.default_rng(3)
    p = xrnn.initialize(cell, 3, 5, 2, seed=0)
    x = rng.normal(size=(3, 4, 7))
    initial = {f"{s}0": rng.normal(size=(5, 4)) for s in cell.states}
    want = xrnn.forward(cell, x, initial.pop("a0"), p, **initial, **kw)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 4, 7))
    initial = {f"{s}0": xp.asarray(rng.normal(size=(5, 4))) for s in cell.states}
    a0 = initial.pop("a0")
    got = xrnn.forward(
        cell, xp.asarray(x), a0, xp.params(p), **initial, **kw, return_caches=False
    )  # fmt: skip
    assert got[-1] is None
    for g, w in zip(got[:-1], want[:-1], strict=True):
        assert_close(g, w, xp, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lengths", [None, [50] * 63 + [20]])
def test_peak_memory_is_the_outputs_and_a_chunk(lengths):
    """The LSTM (256 → 512, m = 64, T = 50, float32): what it holds beside its arguments is
    its outputs ``a`` and ``c`` (with their initial blocks), the stacked weights and the
    lockstep loop's per-thread rows of ``Wa`` (one more copy), a copy of ``x`` at most and one
    chunk of work area (``xrnn.core.tuning.FORWARD_CHUNK_BYTES``, twice for the chunk's
    temporaries); the caching forward holds every step's gates besides."""
    n_x, n_a, m, T = 256, 512, 64, 50
    p = xrnn.initialize("lstm", n_x, n_a, seed=0, dtype="float32")
    x = np.random.default_rng(0).normal(size=(n_x, m, T)).astype(np.float32)
    a0 = np.zeros((n_a, m), np.float32)
    outputs = 2 * (T + 1) * n_a * m * 4
    weights = 4 * n_a * (n_a + n_x + 1) * 4 + 4 * n_a * n_a * 4
    gates = T * 4 * n_a * m * 4
    budget = (outputs + weights + x.nbytes + 2 * xrnn.core.tuning.FORWARD_CHUNK_BYTES) / 1e6
    if not jit_enabled():  # a step of the cell's math on whole arrays: temporaries per gate
        budget += 5 * 4 * n_a * m * 4 / 1e6
    xrnn.lstm_forward(x, a0, p, lengths=lengths, return_caches=False)  # compiled, warm
    lean = bench.peak_memory_mb(
        lambda: xrnn.lstm_forward(x, a0, p, lengths=lengths, return_caches=False)
    )
    full = bench.peak_memory_mb(lambda: xrnn.lstm_forward(x, a0, p, lengths=lengths))
    assert lean <= budget, f"{lean:.1f} MB > {budget:.1f} MB"
    assert full - lean >= 0.5 * gates / 1e6, f"{lean:.1f} MB, caching {full:.1f} MB"
