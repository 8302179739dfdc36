"""A cell written as elementwise math against the built-in LSTM, in one process.

``python benchmarks/cells.py [--cell peephole_lstm] [--configs A,B] [--rounds 5]`` times
forward+backward (float32, NumPy, the compiled kernels) of the built-in LSTM and of ``--cell``
— whose kernels are generated from its elementwise definition (``xrnn/cells/``) — in
alternating rounds, and prints each one's median and their ratio per config. The first call of
each is a warm-up (it compiles the generated kernels).
"""

from __future__ import annotations

import argparse
import statistics
import time

from xrnn.benchmark import table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cell", default="peephole_lstm", help="the cell to compare with the LSTM")
    ap.add_argument("--configs", default="A,B", help="configs of xrnn.benchmark.table.CONFIGS")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds per config")
    ap.add_argument("--calls", type=int, default=5, help="timed calls per round")
    args = ap.parse_args()
    print(f"forward+backward, float32, NumPy: lstm vs {args.cell} (medians, ms)")
    for config in args.configs.split(","):
        shape = table.CONFIGS[config]
        calls = {}
        for cell in ("lstm", args.cell):
            x, a0, p, da = table.make_inputs(cell, *shape, "float32")
            _, both = table.xrnn_fns(cell, x, a0, p, da)
            both()  # warm-up: compiles on a first call
            calls[cell] = both
        times: dict[str, list[float]] = {cell: [] for cell in calls}
        for _ in range(args.rounds):
            for cell, both in calls.items():
                for _ in range(args.calls):
                    t0 = time.perf_counter()
                    both()
                    times[cell].append(time.perf_counter() - t0)
        med = {cell: statistics.median(t) * 1e3 for cell, t in times.items()}
        ratio = med[args.cell] / med["lstm"]
        print(
            f"{config} {shape}: lstm {med['lstm']:.2f}  {args.cell} {med[args.cell]:.2f}  "
            f"ratio {ratio:.2f}"
        )


if __name__ == "__main__":
    main()
