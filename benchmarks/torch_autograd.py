"""xrnn inside PyTorch programs against ``torch.nn``, each library in its own process.

``python benchmarks/torch_autograd.py [--cell lstm] [--configs A,B,charlm,long] [--calls 21]``
times, per config (float32, CPU), in a fresh process each:

- ``torch.nn`` forward+backward under autograd (``nn.LSTM``/``nn.GRU``, ``.sum().backward()``);
- xrnn forward+backward under autograd (one ``torch.ops.xrnn.sequence`` node);
- ``torch.nn`` forward under ``torch.no_grad()``;
- xrnn's forward without caches (``return_caches=False``) on torch CPU tensors and on NumPy;

and prints each one's median (ms) and xrnn's ratio to ``torch.nn``. torch's OpenMP threads keep
spinning after a call and slow whatever runs next in the same process: hence one process per
measurement.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from xrnn.benchmark import table

KINDS = ("torch-autograd", "xrnn-autograd", "torch-no_grad", "xrnn-torch-lean", "xrnn-numpy-lean")


def measure(kind: str, cell: str, config: str, calls: int) -> float:
    """The median of ``calls`` timed calls (after three untimed ones), in ms."""
    import numpy as np
    import torch

    import xrnn

    n_x, n_a, m, T = table.CONFIGS[config]
    torch.manual_seed(0)
    x = torch.randn(T, m, n_x)  # torch.nn's layout
    if kind.startswith("torch"):
        net = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](n_x, n_a)
        if kind == "torch-autograd":
            x.requires_grad_()

            def call() -> None:
                net(x)[0].sum().backward()
        else:

            def call() -> None:
                with torch.no_grad():
                    net(x)
    else:
        host = xrnn.initialize(cell, n_x, n_a, seed=0, dtype="float32")
        xx = x.permute(2, 1, 0).contiguous()  # xrnn's (n_x, m, T_x)
        if kind == "xrnn-numpy-lean":
            p: dict = host
            xx, a0 = xx.numpy(), np.zeros((n_a, m), np.float32)
        else:
            grad = kind == "xrnn-autograd"
            p = {k: torch.tensor(v, requires_grad=grad) for k, v in host.items()}
            xx, a0 = xx.requires_grad_(grad), torch.zeros(n_a, m)

        def call() -> None:
            a = xrnn.forward(cell, xx, a0, p, return_caches=False)[0]
            if kind == "xrnn-autograd":
                a.sum().backward()

    for _ in range(3):
        call()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cell", default="lstm", choices=["lstm", "gru"], help="the cell")
    ap.add_argument("--configs", default="A,B,charlm,long", help="of xrnn.benchmark.table")
    ap.add_argument("--calls", type=int, default=21, help="timed calls per measurement")
    ap.add_argument("--one", nargs=2, metavar=("KIND", "CONFIG"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:  # a child process: one measurement
        print(measure(args.one[0], args.cell, args.one[1], args.calls))
        return
    print(f"{args.cell}, float32, CPU: medians of {args.calls} calls (ms), one process each")
    print(f"{'config':8}" + "".join(f"{k:>18}" for k in KINDS) + "   autograd  no_grad")
    for config in args.configs.split(","):
        got = {}
        for kind in KINDS:
            cmd = [sys.executable, __file__, "--cell", args.cell, "--calls", str(args.calls)]
            out = subprocess.run(
                [*cmd, "--one", kind, config], capture_output=True, text=True, check=True
            )
            got[kind] = float(out.stdout.strip().splitlines()[-1])
        ratios = (
            got["xrnn-autograd"] / got["torch-autograd"],
            got["xrnn-torch-lean"] / got["torch-no_grad"],
        )
        print(
            f"{config:8}"
            + "".join(f"{got[k]:18.2f}" for k in KINDS)
            + f"   {ratios[0]:7.2f}×  {ratios[1]:6.2f}×"
        )


if __name__ == "__main__":
    main()
