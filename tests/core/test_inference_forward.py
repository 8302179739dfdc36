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
    its outputs ``a`` and ``c`` (with their initial blocks) and a step's scratch (the fused
    loop), or one chunk of work area (``xrnn.core.tuning.FORWARD_CHUNK_SHARE`` of ``a`` at
    most; with lengths) — under 3× the output ``a`` on the compiled loops, which read each
    gate's weights where the parameters hold them. The reference's steps stack the weights
    and make a copy of ``x`` and temporaries per gate besides. The caching forward holds
    every step's gates."""
    n_x, n_a, m, T = 256, 512, 64, 50
    p = xrnn.initialize("lstm", n_x, n_a, seed=0, dtype="float32")
    x = np.random.default_rng(0).normal(size=(n_x, m, T)).astype(np.float32)
    a0 = np.zeros((n_a, m), np.float32)
    a_bytes = T * n_a * m * 4
    gates = T * 4 * n_a * m * 4
    budget = 3 * a_bytes / 1e6
    if not jit_enabled():
        weights = 4 * n_a * (n_a + n_x + 1) * 4
        budget += (weights + x.nbytes + 5 * 4 * n_a * m * 4) / 1e6
    xrnn.lstm_forward(x, a0, p, lengths=lengths, return_caches=False)  # compiled, warm
    lean = bench.peak_memory_mb(
        lambda: xrnn.lstm_forward(x, a0, p, lengths=lengths, return_caches=False)
    )
    full = bench.peak_memory_mb(lambda: xrnn.lstm_forward(x, a0, p, lengths=lengths))
    assert lean <= budget, f"{lean:.1f} MB > {budget:.1f} MB"
    assert full - lean >= 0.5 * gates / 1e6, f"{lean:.1f} MB, caching {full:.1f} MB"
