"""``xrnn bench --device gpu``: without a GPU one line and exit 2; the table's machinery (check
against NumPy, timing, rows, the summary lines) on CPU stand-ins. The CUDA timers and the
kernel counter run only where a GPU is (the first such run fills docs/performance.md's GPU
table)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from xrnn.benchmark import gpu
from xrnn.benchmark.table import make_inputs, xrnn_fns
from xrnn.cli import main


def _gpu_present() -> bool:
    for name, probe in (("cupy", "is_available"), ("torch", None)):
        if importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(name)
        if module.is_available() if probe else module.cuda.is_available():
            return True
    return False


@pytest.mark.skipif(_gpu_present(), reason="a GPU is present: the benchmark would run")
def test_without_a_gpu_it_says_so_in_one_line(capsys):
    assert main(["bench", "--device", "gpu", "--quick"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs a GPU" in err, err


def _impl(name, cell, arrays, *, wrong=False):
    fwd, both = xrnn_fns(cell, *arrays)

    def output():
        a = np.asarray(fwd()[0])
        return a + 1 if wrong else a

    return gpu.Impl(name, "CPU", fwd, both, gpu.cpu_timer, output, lambda fn: 7 * 5)


def test_rows_compare_time_and_format_each_implementation():
    shape = (3, 4, 2, 5)
    arrays = make_inputs("lstm", *shape, "float32")
    impls = [_impl("xrnn-numpy", "lstm", arrays), _impl("stand-in", "lstm", arrays)]
    rows = gpu.measure("lstm", shape, "float32", impls, min_runs=2, budget_s=0.01)
    assert [r["impl"] for r in rows] == ["xrnn-numpy", "stand-in"]
    for r in rows:
        assert r["fwd_ms"] > 0 and r["fb_ms"] > 0 and r["fb_gflops"] > 0
        assert r["kernels_per_step"] == 7.0  # 35 launches over T = 5 steps
        assert r["max_abs_diff"] == 0
    assert rows[0]["fb_speedup_vs_cpu"] == 1
    line = gpu.format_row("tiny", rows[1])
    assert line.startswith("| lstm | tiny (3, 4, 2, 5) | float32 | stand-in (CPU) |")
    assert line.count("|") == gpu.HEADER.splitlines()[0].count("|")


def test_an_implementation_that_disagrees_stops_the_run():
    shape = (3, 4, 2, 5)
    arrays = make_inputs("gru", *shape, "float64")
    impls = [_impl("xrnn-numpy", "gru", arrays), _impl("broken", "gru", arrays, wrong=True)]
    with pytest.raises(SystemExit, match="broken disagrees with NumPy"):
        gpu.measure("gru", shape, "float64", impls, min_runs=2, budget_s=0.01)
