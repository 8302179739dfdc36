"""xrnn on a GPU — CuPy and PyTorch CUDA tensors — against cuDNN (``torch.nn`` on CUDA), with
xrnn on NumPy (CPU) beside them: the CPU-vs-GPU table.

Usage: ``xrnn bench --device gpu [--quick] [--cells lstm,gru] [--configs A,B,charlm,long]
[--dtypes float32,float64] [--out DIR]``.

Timing is GPU time, synchronised: CuPy calls through ``cupyx.profiler.benchmark`` (CUDA events
around each call, every stream synchronised), torch calls between two
``torch.cuda.Event(enable_timing=True)`` records and ``torch.cuda.synchronize()``; CPU calls by
the wall clock. Medians over the repetitions. The CPU rows are timed first, before torch has
started its thread pool. Kernel launches per time step come from ``torch.profiler`` (CUPTI sees
every kernel the process launches, CuPy's included): CUDA kernels of one forward+backward call
divided by ``T``. Every implementation's forward output is first checked against NumPy's.

Without a GPU (``cupy.is_available()`` and ``torch.cuda.is_available()`` both false) it says so
in one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import xrnn
from xrnn.benchmark.table import (
    CONFIGS,
    gemm_flops,
    make_inputs,
    optional_module,
    timeit,
    torch_nn_fns,
    xrnn_fns,
)
from xrnn.core.host import to_numpy

Timer = Callable[[Callable[[], Any], int, float], float]  # (fn, min_runs, budget_s) -> seconds


def no_counter(fn: Callable[[], Any]) -> None:
    """No kernel count (a CPU implementation, or no profiler)."""
    return None


@dataclass
class Impl:
    """One implementation of a cell call: its two callables and how to time them."""

    name: str
    device: str  # "CPU" or "GPU"
    fwd: Callable[[], Any]
    both: Callable[[], Any]
    timer: Timer
    output: Callable[[], np.ndarray]  # the forward output a (n_a, m, T) on the host
    kernels: Callable[[Callable[[], Any]], int | None] = no_counter


def first_output(fwd: Callable[[], Any]) -> Callable[[], np.ndarray]:
    """xrnn's forward ``a`` (n_a, m, T) on the host."""
    return lambda: np.asarray(to_numpy(fwd()[0]))


def torch_output(fwd: Callable[[], Any]) -> Callable[[], np.ndarray]:
    """torch.nn's output (T, m, n_a) as xrnn's (n_a, m, T) on the host."""
    return lambda: fwd().detach().cpu().numpy().transpose(2, 1, 0)


def cpu_timer(fn: Callable[[], Any], min_runs: int, budget_s: float) -> float:
    return statistics.median(timeit(fn, min_runs=min_runs, budget_s=budget_s))


def cupy_timer(cupyx_profiler: Any) -> Timer:
    def run(fn: Callable[[], Any], min_runs: int, budget_s: float) -> float:
        result = cupyx_profiler.benchmark(
            fn, n_repeat=50, n_warmup=2, max_duration=max(budget_s, 1e-3)
        )
        gpu = np.asarray(result.gpu_times)[0]
        return float(np.median(gpu[: max(min_runs, len(gpu))]))

    return run


def torch_cuda_timer(torch: Any) -> Timer:
    def run(fn: Callable[[], Any], min_runs: int, budget_s: float) -> float:
        for _ in range(2):
            fn()
        torch.cuda.synchronize()
        times: list[float] = []
        while len(times) < min_runs or (sum(times) < budget_s and len(times) < 50):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        return statistics.median(times)

    return run


def kernel_counter(torch: Any) -> Callable[[Callable[[], Any]], int | None]:
    """CUDA kernels launched by one call of ``fn``, as CUPTI (torch.profiler) records them."""

    def count(fn: Callable[[], Any]) -> int | None:
        from torch.profiler import ProfilerActivity, profile

        fn()  # compiled and cached before counting
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        cuda = torch.autograd.DeviceType.CUDA
        names = [e.name for e in prof.events() if e.device_type == cuda]
        return sum(not n.startswith(("Memcpy", "Memset")) for n in names)

    return count


def gpu_impls(cell, x, a0, p, da, *, cupy, torch) -> list[Impl]:
    """xrnn on CuPy, xrnn on torch CUDA tensors and torch.nn (cuDNN), as available."""
    impls = []
    counter = kernel_counter(torch) if torch is not None and torch.cuda.is_available() else None
    if cupy is not None:
        import cupyx.profiler

        cx, ca0, cda = cupy.asarray(x), cupy.asarray(a0), cupy.asarray(da)
        cp = {k: cupy.asarray(v) for k, v in p.items()}
        fwd, both = xrnn_fns(cell, cx, ca0, cp, cda)
        impls.append(
            Impl("xrnn-cupy", "GPU", fwd, both, cupy_timer(cupyx.profiler),
                 first_output(fwd), counter or no_counter)
        )  # fmt: skip
    if counter is not None:
        dev = torch.device("cuda")
        tx, ta0, tda = (torch.asarray(v, device=dev) for v in (x, a0, da))
        tp = {k: torch.asarray(v, device=dev) for k, v in p.items()}
        fwd, both = xrnn_fns(cell, tx, ta0, tp, tda)
        impls.append(
            Impl("xrnn-torch-cuda", "GPU", fwd, both, torch_cuda_timer(torch),
                 first_output(fwd), counter)
        )  # fmt: skip
        nfwd, nboth = torch_nn_fns(torch, cell, x, a0, p, da, device="cuda")
        impls.append(
            Impl("torch.nn-cudnn", "GPU", nfwd, nboth, torch_cuda_timer(torch),
                 torch_output(nfwd), counter)
        )  # fmt: skip
    return impls


def measure(cell, shape, dtype, impls: list[Impl], *, min_runs: int, budget_s: float) -> list:
    """One row per implementation: checked against the first (the NumPy run), then timed."""
    T = shape[3]
    _, fb_flops = gemm_flops(cell, *shape)
    want = impls[0].output()
    tol = 1e-3 if dtype == "float32" else 1e-9
    rows = []
    for impl in impls:
        err = float(np.abs(np.asarray(impl.output(), dtype=np.float64) - want).max())
        if err > tol:
            raise SystemExit(f"{impl.name} disagrees with NumPy on {cell} {shape} {dtype}: {err}")
        tf = impl.timer(impl.fwd, min_runs, budget_s)
        tb = impl.timer(impl.both, min_runs, budget_s)
        launches = impl.kernels(impl.both)
        rows.append(
            dict(cell=cell, shape=shape, dtype=dtype, impl=impl.name, device=impl.device,
                 fwd_ms=tf * 1e3, fb_ms=tb * 1e3, fb_gflops=fb_flops / tb / 1e9,
                 kernels_per_step=None if launches is None else launches / T, max_abs_diff=err)
        )  # fmt: skip
    base = rows[0]["fb_ms"]
    for row in rows:
        row["fb_speedup_vs_cpu"] = base / row["fb_ms"]
    return rows


def format_row(config: str, row: dict) -> str:
    k = row["kernels_per_step"]
    return (
        f"| {row['cell']} | {config} {tuple(row['shape'])} | {row['dtype']} | {row['impl']} "
        f"({row['device']}) | {row['fwd_ms']:.2f} | {row['fb_ms']:.2f} | "
        f"{row['fb_gflops']:.0f} | {'—' if k is None else f'{k:.1f}'} | "
        f"{row['fb_speedup_vs_cpu']:.1f}× |"
    )


HEADER = (
    "| cell | config (n_x, n_a, m, T) | dtype | implementation | fwd ms | f+b ms | f+b GFLOP/s "
    "| kernels/step (f+b) | f+b vs xrnn-numpy |\n|---|---|---|---|--:|--:|--:|--:|--:|"
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="xrnn bench --device gpu", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--device", choices=["gpu"], default="gpu")
    ap.add_argument("--quick", action="store_true", help="fewer timed runs (a smoke run)")
    ap.add_argument("--cells", default="lstm,gru")
    ap.add_argument("--dtypes", default="float32")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--out", default="bench-results")
    args = ap.parse_args(argv)
    cupy = optional_module("cupy")
    if cupy is not None and not cupy.is_available():
        cupy = None
    torch = optional_module("torch")
    if cupy is None and (torch is None or not torch.cuda.is_available()):
        print(
            "xrnn bench: error: --device gpu needs a GPU: cupy.is_available() and "
            "torch.cuda.is_available() are both false (or neither library is installed)",
            file=sys.stderr,
        )
        return 2
    for name in args.cells.split(","):
        if name not in xrnn.CELLS:
            ap.error(f"--cells: unknown cell {name!r}")
    min_runs, budget = (3, 0.2) if args.quick else (10, 2.0)
    rows, lines = [], [HEADER]
    print(HEADER)
    for cell in args.cells.split(","):
        for config in args.configs.split(","):
            shape = CONFIGS[config]
            for dtype in args.dtypes.split(","):
                x, a0, p, da = make_inputs(cell, *shape, dtype)
                fwd, both = xrnn_fns(cell, x, a0, p, da)
                cpu = Impl("xrnn-numpy", "CPU", fwd, both, cpu_timer, first_output(fwd))
                impls = [cpu, *gpu_impls(cell, x, a0, p, da, cupy=cupy, torch=torch)]
                for row in measure(cell, shape, dtype, impls, min_runs=min_runs, budget_s=budget):
                    row["config"] = config
                    rows.append(row)
                    lines.append(format_row(config, row))
                    print(lines[-1], flush=True)
    machine = {
        "cupy": getattr(cupy, "__version__", None),
        "torch": getattr(torch, "__version__", None),
        "gpu": torch.cuda.get_device_name() if torch is not None and torch.cuda.is_available()
        else None,
    }  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench-gpu.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    (out / "bench-gpu.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'bench-gpu.json'} and {out / 'bench-gpu.md'}")
    return 0
