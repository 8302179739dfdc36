"""Where the LSTM's time goes: input projection, forward loop, backward loop, chunk GEMMs.

``python benchmarks/phases.py`` times, for configs A and B in float32 (medians), the pieces of
``xrnn.lstm_forward``/``lstm_backward`` on NumPy separately, with the same kernels the public
functions call, and the per-step recurrent GEMMs alone; then forward+backward time and page
faults for several BPTT chunk sizes (``xrnn.core.tuning.CHUNK_COLUMNS``). docs/performance.md
quotes it.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

import xrnn
import xrnn.core.engine
from xrnn.backends import resolve
from xrnn.benchmark import table as bench
from xrnn.core.layout import time_major


def median_ms(fn, n=15) -> float:
    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def measure(name: str) -> str:
    n_x, n_a, m, T = bench.CONFIGS[name]
    x, a0, p, da = bench.make_inputs("lstm", n_x, n_a, m, T, "float32")
    cell, ctx = xrnn.CELLS["lstm"], resolve([("x", x)])
    W = cell.stack(np, p, n_a)
    state0 = (a0, np.zeros_like(a0))

    def engine_forward():
        return xrnn.core.engine.forward(ctx, cell, W, x, state0)

    trace = engine_forward()
    fwd = median_ms(lambda: xrnn.lstm_forward(x, a0, p))
    projection = median_ms(lambda: W.Wx @ time_major(np, x) + W.b)
    loop = median_ms(engine_forward) - projection
    gemm = median_ms(lambda: W.Wa @ a0, 200) * 1e3
    caches = xrnn.lstm_forward(x, a0, p)[-1]
    bwd = median_ms(lambda: xrnn.lstm_backward(da, caches))
    engine_bwd = median_ms(lambda: xrnn.core.engine.backward(ctx, W, trace, da))
    dp = np.ones((4 * n_a, m), "float32")
    bgemm = median_ms(lambda: W.Wa.T @ dp, 200) * 1e3
    return (
        f"config {name} {(n_x, n_a, m, T)} float32: forward {fwd:.1f} ms = input projection "
        f"{projection:.1f} + loop {loop:.1f} ({loop / T * 1e3:.0f} us/step, recurrent GEMM "
        f"{gemm:.0f} us) + rest; backward {bwd:.1f} ms, of which the engine's loop and chunk "
        f"GEMMs {engine_bwd:.1f} (recurrent GEMM {bgemm:.0f} us/step)"
    )


def chunk_sizes(name: str = "A") -> None:
    """Forward+backward time and minor page faults per call for several BPTT chunk sizes."""
    import resource

    n_x, n_a, m, T = bench.CONFIGS[name]
    x, a0, p, da = bench.make_inputs("lstm", n_x, n_a, m, T, "float32")
    default = xrnn.core.tuning.CHUNK_COLUMNS
    try:
        for columns in (512, 1024, 2048, 4096):
            xrnn.core.tuning.CHUNK_COLUMNS = columns

            def both():
                return xrnn.lstm_backward(da, xrnn.lstm_forward(x, a0, p)[-1])

            both()
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            ms = median_ms(both, 15)
            faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / 16
            print(
                f"config {name}, CHUNK_COLUMNS={columns}: forward+backward {ms:.1f} ms, "
                f"{faults:.0f} page faults per call",
                flush=True,
            )
    finally:
        xrnn.core.tuning.CHUNK_COLUMNS = default


def main() -> int:
    for name in ("A", "B"):
        print(measure(name), flush=True)
    chunk_sizes()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
