"""Where the LSTM's time goes: input projection, forward loop, backward loop, chunk GEMMs.

``python benchmarks/phases.py`` times, for configs A and B in float32 (medians), the pieces of
``xrnn.lstm_forward``/``lstm_backward`` on NumPy separately, with the same kernels the public
functions call, and the per-step recurrent GEMMs alone; then forward+backward time and page
faults for several BPTT chunk sizes (``xrnn.bptt.CHUNK_COLUMNS``). The README quotes it.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

import xrnn  # noqa: E402
from xrnn.backends import get_ops  # noqa: E402
from xrnn.layout import time_major  # noqa: E402
from xrnn.lstm import _stacked_split  # noqa: E402


def median_ms(fn, n=15) -> float:
    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def measure(name: str) -> str:
    ops = get_ops(np)
    n_x, n_a, m, T = bench.CONFIGS[name]
    x, a0, p, da = bench.make_inputs("lstm", n_x, n_a, m, T, "float32")
    Wa, Wx, b = _stacked_split(np, p, n_a)
    G0 = Wx @ time_major(np, x) + b
    fresh = (T + 1, n_a, m)

    def buffers():
        return G0.copy(), np.zeros(fresh, "float32"), np.zeros(fresh, "float32")

    def forward_loop():
        G, H, C = buffers()
        for t in range(T):
            ops.lstm_forward_step(G, H, C, Wa, t)

    caches = xrnn.lstm_forward(x, a0, p)[-1]
    steps, WaT = caches[0], Wa.T

    def backward_loop():
        dP = np.empty((4 * n_a, T * m), "float32")
        state = (np.zeros((n_a, m), "float32"),) * 2
        dA = time_major(np, da)
        for t in reversed(range(T)):
            state = ops.lstm_backward_step(dP, t, dA[t], steps.G, steps.C, WaT, t, *state)

    fwd = median_ms(lambda: xrnn.lstm_forward(x, a0, p))
    projection = median_ms(lambda: Wx @ time_major(np, x))
    loop = median_ms(forward_loop) - median_ms(buffers)
    gemm = median_ms(lambda: Wa @ a0, 200) * 1e3
    bwd = median_ms(lambda: xrnn.lstm_backward(da, caches))
    bloop = median_ms(backward_loop)
    dp = np.ones((4 * n_a, m), "float32")
    bgemm = median_ms(lambda: WaT @ dp, 200) * 1e3
    return (
        f"config {name} {(n_x, n_a, m, T)} float32: forward {fwd:.1f} ms = input projection "
        f"{projection:.1f} + loop {loop:.1f} ({loop / T * 1e3:.0f} us/step, recurrent GEMM "
        f"{gemm:.0f} us) + rest; backward {bwd:.1f} ms = loop {bloop:.1f} "
        f"({bloop / T * 1e3:.0f} us/step, GEMM {bgemm:.0f} us) + chunk GEMMs, copies "
        f"{bwd - bloop:.1f}"
    )


def chunk_sizes(name: str = "A") -> None:
    """Forward+backward time and minor page faults per call for several BPTT chunk sizes."""
    import resource

    import xrnn.bptt

    n_x, n_a, m, T = bench.CONFIGS[name]
    x, a0, p, da = bench.make_inputs("lstm", n_x, n_a, m, T, "float32")
    default = xrnn.bptt.CHUNK_COLUMNS
    try:
        for columns in (512, 1024, 2048, 4096):
            xrnn.bptt.CHUNK_COLUMNS = columns

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
        xrnn.bptt.CHUNK_COLUMNS = default


def main() -> int:
    for name in ("A", "B"):
        print(measure(name), flush=True)
    chunk_sizes()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
