"""The spec's golden values, on every backend, float64 and float32 (one protocol: golden.py).

The published values are printed to 8 decimals, hence the absolute tolerance of 6e-9 in float64.
"""

import numpy as np
import pytest

import xrnn
from tests.golden import CASES, PARAMETER_KEYS, draws, pick, run

TOLERANCE = {"float64": dict(rtol=1e-7, atol=6e-9), "float32": dict(rtol=2e-4, atol=2e-4)}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden_values(case, dtype, xp):
    outputs = run(case, xp, dtype)
    for expected in case["expected"]:
        value = pick(outputs, expected)
        assert value.dtype == xp.dtype(dtype), f"{expected['output']} is {value.dtype}"
        np.testing.assert_allclose(
            xp.to_numpy(value),
            expected["value"],
            **TOLERANCE[dtype],
            err_msg=f"{case['name']}: {expected}",
        )


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden_layouts(case, xp):
    """Return tuples and cache layouts of the spec: 4-/10-tuples, (step_caches, x) pairs."""
    outputs = run(case, xp)
    if "cache" in outputs:
        size = _cell(case).cache_size
        assert len(outputs["cache"]) == size
        assert outputs["cache"][-1] is not None
    if "caches" in outputs:
        steps, x = outputs["caches"]
        assert len(outputs["caches"]) == 2
        assert len(steps) == x.shape[2]
        size = _cell(case).cache_size
        assert all(len(steps[t]) == size for t in range(len(steps)))
        # step t's cache holds that step's input and hidden state
        a = outputs["a"]
        last = len(steps) - 1
        np.testing.assert_array_equal(xp.to_numpy(steps[last][0]), xp.to_numpy(a[:, :, last]))
        np.testing.assert_array_equal(xp.to_numpy(steps[-1][-2]), xp.to_numpy(x[:, :, last]))


def _cell(case):
    """The cell a case runs: the longest registered name its name starts with."""
    return xrnn.CELLS[max((n for n in xrnn.CELLS if case["name"].startswith(n)), key=len)]


def test_lstm_forward_without_output_layer(xp):
    """Erratum 4: the exercise's lstm_forward test defines no Wy/by; y is then None."""
    case = next(c for c in CASES if c["name"] == "lstm_forward")
    full = run(case, xp)
    host = draws(case)
    params = xp.params({k: v for k, v in host.items() if k in PARAMETER_KEYS - {"Wy", "by"}})
    a, y, c, caches = xrnn.lstm_forward(xp.asarray(host["x"]), xp.asarray(host["a0"]), params)
    assert y is None
    np.testing.assert_allclose(xp.to_numpy(a), xp.to_numpy(full["a"]), rtol=1e-12)
