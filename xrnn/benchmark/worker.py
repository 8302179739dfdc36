"""One benchmark measurement in a process of its own.

``python -m xrnn.benchmark.worker IMPL CELL CONFIG DTYPE [--min-runs N] [--budget S]
[--parts fwd,fb]`` times one implementation's forward and forward+backward calls and prints one
JSON line:
``{"fwd": [seconds, ...], "fb": [...], "peak_mb": ...}``. :mod:`xrnn.benchmark.table` runs one
such process per measurement (and :mod:`xrnn.benchmark.busy` too), so no library's threads
outlive their own measurement: torch's
OpenMP workers keep spinning for a while after each call and slow whatever runs next in the
same process.

``IMPL`` is one of :data:`IMPLS`; ``xrnn-numpy-nojit`` is ``xrnn-numpy`` with the compiled
kernels switched off (``XRNN_JIT=0``, set before xrnn is imported).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

IMPLS = ("xrnn-numpy", "xrnn-numpy-nojit", "xrnn-torch", "torch.nn", "exercise-loop")


def callables(impl: str, cell: str, config: str, dtype: str) -> tuple[Any, Any]:
    """``(fwd, both)`` for ``impl`` on the config's inputs (seeded: the same for every impl)."""
    from xrnn.benchmark import table

    x, a0, p, da = table.make_inputs(cell, *table.CONFIGS[config], dtype)
    if impl in ("xrnn-numpy", "xrnn-numpy-nojit"):
        return table.xrnn_fns(cell, x, a0, p, da)
    if impl == "exercise-loop":
        fns = table.reference_fns(cell, x, a0, p, da)
        if fns is None:
            raise SystemExit(f"the exercise has no {cell}")
        return fns
    import torch

    if impl == "torch.nn":
        return table.torch_nn_fns(torch, cell, x, a0, p, da)
    if impl == "xrnn-torch":
        tp = {k: torch.from_numpy(v) for k, v in p.items()}
        tx, ta0, tda = (torch.from_numpy(v) for v in (x, a0, da))
        return table.xrnn_fns(cell, tx, ta0, tp, tda)
    raise SystemExit(f"unknown implementation {impl!r}; one of {', '.join(IMPLS)}")


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m xrnn.benchmark.worker")
    ap.add_argument("impl", choices=IMPLS)
    ap.add_argument("cell")
    ap.add_argument("config")
    ap.add_argument("dtype")
    ap.add_argument("--min-runs", type=int, default=7)
    ap.add_argument("--budget", type=float, default=2.0)
    ap.add_argument("--memory", action="store_true", help="also the forward's peak memory")
    ap.add_argument(
        "--parts", default="fwd,fb", help="what to time: fwd (forward), fb (forward+backward)"
    )
    args = ap.parse_args(argv)
    if args.impl == "xrnn-numpy-nojit":
        os.environ["XRNN_JIT"] = "0"
    from xrnn.benchmark import table

    fwd, both = callables(args.impl, args.cell, args.config, args.dtype)
    calls = {"fwd": fwd, "fb": both}
    result: dict[str, Any] = {
        part: table.timeit(calls[part], min_runs=args.min_runs, budget_s=args.budget)
        for part in args.parts.split(",")
    }
    if args.memory:
        result["peak_mb"] = table.peak_memory_mb(fwd)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
