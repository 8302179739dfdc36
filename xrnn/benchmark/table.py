"""Time xrnn against the exercise's loop and torch.nn, each in its own process; report ratios.

Usage: ``xrnn bench [--quick] [--cells lstm,rnn,gru] [--dtypes float32,float64]
[--configs A,B,charlm,long] [--out DIR]`` (also ``python benchmarks/bench.py`` and
``nox -s bench``); ``xrnn bench --device gpu`` is the GPU table (:mod:`xrnn.benchmark.gpu`).

For every config, dtype and cell it first checks that the implementations agree, then times
forward and forward+backward with warm-up and reports medians: xrnn on every available backend
(NumPy; PyTorch tensors; CuPy, synchronised, where a GPU is present), ``reference.py`` (the
exercise's loop) and ``torch.nn.LSTM``/``nn.RNN``. It prints a table (ms, GFLOP/s of the
GEMMs, ratios), writes ``bench.json``, ``bench.md`` (the tables as Markdown) and, with
matplotlib, ``bench.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

import xrnn
from xrnn.benchmark import reference
from xrnn.benchmark.worker import IMPLS, INFERENCE

CONFIGS = {
    "A": (128, 128, 64, 100),
    "B": (256, 512, 128, 50),
    "charlm": (27, 50, 1, 25),
    "long": (64, 128, 16, 200),
}


def gemm_flops(cell: str, n_x: int, n_a: int, m: int, T: int) -> tuple[float, float]:
    """GEMM FLOPs of the forward pass and of forward+backward (backward ≈ 2× forward)."""
    fwd = 2.0 * xrnn.CELLS[cell].blocks * n_a * (n_a + n_x) * m * T
    return fwd, 3 * fwd


def timeit(fn, *, sync=None, min_runs: int, budget_s: float) -> list[float]:
    """Seconds per call: two warm-up calls, then at least ``min_runs`` timed calls and more
    while the budget lasts (at most 50)."""
    for _ in range(2):
        fn()
        if sync:
            sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < budget_s and len(times) < 50):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return times


def make_inputs(cell, n_x, n_a, m, T, dtype, seed=0):
    rng = np.random.default_rng(seed)
    p = {k: v.astype(dtype) for k, v in xrnn.initialize(cell, n_x, n_a, seed=seed).items()}
    x = rng.normal(size=(n_x, m, T)).astype(dtype)
    a0 = (0.1 * rng.normal(size=(n_a, m))).astype(dtype)
    da = rng.normal(size=(n_a, m, T)).astype(dtype)
    return x, a0, p, da


def xrnn_fns(cell, x, a0, p, da):
    """xrnn's forward and forward+backward of any registered cell (the generic API, which
    runs what ``<cell>_forward``/``<cell>_backward`` run)."""

    def fwd():
        return xrnn.forward(cell, x, a0, p)

    def both():
        return xrnn.backward(da, xrnn.forward(cell, x, a0, p)[-1])

    return fwd, both


def reference_fns(cell, x, a0, p, da):
    """The exercise's loop (RNN and LSTM only: the exercise has no GRU), or None."""
    if not hasattr(reference, f"{cell}_forward"):
        return None
    fwd_f, bwd_f = getattr(reference, f"{cell}_forward"), getattr(reference, f"{cell}_backward")
    return (lambda: fwd_f(x, a0, p)), (lambda: bwd_f(da, fwd_f(x, a0, p)[-1]))


def torch_nn_fns(torch, cell, x, a0, p, da, device="cpu"):
    """``torch.nn.LSTM``/``RNN``/``GRU`` with xrnn's weights on ``device`` (cuDNN on CUDA)."""
    n_x, m, T = x.shape
    n_a = a0.shape[0]
    dt = torch.float32 if x.dtype == np.float32 else torch.float64
    mod = getattr(torch.nn, cell.upper())(n_x, n_a, dtype=dt, device=device)
    weights = xrnn.CELLS[cell].to_torch(np, p, n_a)  # the cell spec's own gate-order mapping

    def tensor(a):
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    with torch.no_grad():
        for name, value in weights.items():
            getattr(mod, name + "_l0").copy_(tensor(value))
    tx = tensor(x.transpose(2, 1, 0)).requires_grad_(True)
    h0 = tensor(a0.T[None])
    state = (h0, torch.zeros_like(h0)) if cell == "lstm" else h0
    R = tensor(da.transpose(2, 1, 0))

    def fwd():  # the training forward (autograd on), the half of forward+backward
        return mod(tx, state)[0]

    def both():
        mod.zero_grad(set_to_none=True)
        tx.grad = None
        out = mod(tx, state)[0]
        (out * R).sum().backward()
        return out

    return fwd, both


def check_agreement(cell, x, a0, p, da, torch=None) -> float:
    """Largest relative difference between xrnn and the reference (dx) and torch.nn (a)."""
    g = xrnn_fns(cell, x, a0, p, da)[1]()
    worst = 0.0
    ref = reference_fns(cell, x, a0, p, da)
    if ref is not None:
        r = ref[1]()
        worst = float(np.abs(np.asarray(g["dx"]) - r["dx"]).max() / (np.abs(r["dx"]).max() or 1))
    if torch is not None:
        a_t = torch_nn_fns(torch, cell, x, a0, p, da)[0]().detach().numpy().transpose(2, 1, 0)
        a_x = np.asarray(xrnn_fns(cell, x, a0, p, da)[0]()[0])
        worst = max(worst, float(np.abs(a_t - a_x).max()))
    return worst


def peak_memory_mb(fn) -> float:
    """Peak traced memory of one call, in MB (tracemalloc sees NumPy's allocations)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del result
    return peak / 1e6


def measure_gemm_peak(dtype) -> float:
    n = 1024
    rng = np.random.default_rng(0)
    a, b = (rng.normal(size=(n, n)).astype(dtype) for _ in range(2))
    t = statistics.median(timeit(lambda: a @ b, min_runs=10, budget_s=1.0))
    return 2 * n**3 / t / 1e9


def optional_module(name: str) -> Any:
    """The module ``name``, or None where it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def measure_in_process(
    impl, cell, config, dtype, *, min_runs, budget, memory=False, parts=("fwd", "fb")
) -> dict:
    """One :mod:`xrnn.benchmark.worker` process: ``{"fwd": [s, ...], "fb": [...]}`` (the
    ``parts`` asked for)."""
    cmd = [sys.executable, "-m", "xrnn.benchmark.worker", impl, cell, config, dtype]
    cmd += ["--min-runs", str(min_runs), "--budget", str(budget), "--parts", ",".join(parts)]
    cmd += ["--memory"] * memory
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[1:])} failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def parser() -> argparse.ArgumentParser:
    """``xrnn bench``'s options."""
    ap = argparse.ArgumentParser(prog="xrnn bench", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--busy", action="store_true", help="idle vs busy machine (xrnn bench --busy --help)"
    )
    ap.add_argument(
        "--device",
        choices=["cpu", "gpu"],
        default="cpu",
        help="gpu: xrnn on CuPy and torch CUDA vs cuDNN (xrnn bench --device gpu --help)",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run of about a minute: cells {QUICK['cells']}, configs "
        f"{QUICK['configs']} unless given, one round, 2 timed calls or 0.2 s per measurement",
    )
    ap.add_argument(
        "--cells", default=None, help="cells to time, comma-separated (default: lstm,gru,rnn)"
    )
    ap.add_argument("--dtypes", default="float32", help="float32 and/or float64, comma-separated")
    ap.add_argument(
        "--configs",
        default=None,
        help=f"configs (n_x, n_a, m, T) to time, comma-separated, of: "
        f"{', '.join(f'{k} {v}' for k, v in CONFIGS.items())} (default: all)",
    )
    ap.add_argument(
        "--impls",
        default=",".join(IMPLS),
        help=f"implementations to time, comma-separated, of: {', '.join(IMPLS)} (default: "
        "all; those whose library is missing are left out)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="alternating rounds of processes per measurement (--quick: 1)",
    )
    ap.add_argument("--out", default="bench-results", help="folder for bench.json and bench.png")
    return ap


# --quick's matrix where --cells/--configs are not given: one cell, the smallest config and a
# mid-sized one (each measurement is a process of its own, most of it start-up)
QUICK = {"cells": "lstm", "configs": "charlm,long"}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--busy" in argv:
        from xrnn.benchmark import busy

        return busy.main([a for a in argv if a != "--busy"])
    if "--device=gpu" in argv or any(
        a == "--device" and b == "gpu" for a, b in zip(argv, argv[1:], strict=False)
    ):
        from xrnn.benchmark import gpu

        return gpu.main(argv)
    ap = parser()
    args = ap.parse_args(argv)
    defaults = QUICK if args.quick else {"cells": "lstm,gru,rnn", "configs": ",".join(CONFIGS)}
    args.cells = args.cells or defaults["cells"]
    args.configs = args.configs or defaults["configs"]
    for name in args.configs.split(","):
        if name not in CONFIGS:
            ap.error(f"--configs: unknown {name!r}; one of {', '.join(CONFIGS)}")
    min_runs, budget = (2, 0.2) if args.quick else (7, 1.5)
    rounds = 1 if args.quick else max(1, args.rounds)

    torch = optional_module("torch")
    blas: Any
    try:
        from threadpoolctl import threadpool_info

        blas = [(i.get("internal_api"), i.get("num_threads")) for i in threadpool_info()]
    except ImportError:
        blas = "threadpoolctl not installed"
    machine = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": getattr(optional_module("numba"), "__version__", None),
        "torch": getattr(torch, "__version__", None),
        "torch_threads": torch.get_num_threads() if torch else None,
        "blas": blas,
    }
    peaks = {dt: measure_gemm_peak(dt) for dt in args.dtypes.split(",")}
    print(f"machine: {machine}")
    print(
        "GEMM peak (1024³ matmul, NumPy): "
        + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items())
    )
    print(
        f"each implementation in its own process, {rounds} alternating round(s); "
        "medians over every timed call, spread = the rounds' medians (min–max)"
    )
    wanted = [i for i in args.impls.split(",") if i]
    for impl in wanted:
        if impl not in IMPLS:
            ap.error(f"--impls: unknown {impl!r}; one of {', '.join(IMPLS)}")
    if torch is None:
        wanted = [i for i in wanted if "torch" not in i]
    if optional_module("jax") is None:
        wanted = [i for i in wanted if i != "xrnn-jax"]

    rows = []
    per_config = [
        len([i for i in wanted if i != "exercise-loop" or hasattr(reference, f"{cell}_forward")])
        for cell in args.cells.split(",")
    ]
    bar = _Bar(
        sum(per_config) * rounds * len(args.configs.split(",")) * len(args.dtypes.split(","))
    )
    header = (
        f"{'cell':4} {'config':7} {'(n_x,n_a,m,T)':19} {'dtype':7} {'impl':16} "
        f"{'fwd ms':>9} {'f+b ms':>9} {'spread':>7} {'f+b GF/s':>8} "
        f"{'fwd/torch':>9} {'f+b/torch':>9} {'vs exercise':>11}"
    )
    print(header)
    print("-" * len(header))
    for cell in args.cells.split(","):
        for cname in args.configs.split(","):
            shape = CONFIGS[cname]
            for dtype in args.dtypes.split(","):
                x, a0, p, da = make_inputs(cell, *shape, dtype)
                err = check_agreement(cell, x, a0, p, da, torch)
                tol = 1e-3 if dtype == "float32" else 1e-9
                if err > tol:
                    raise SystemExit(f"implementations disagree on {cell} {cname} {dtype}: {err}")
                impls = [
                    i
                    for i in wanted
                    if i != "exercise-loop" or hasattr(reference, f"{cell}_forward")
                ]
                samples: dict[str, dict[str, list]] = {
                    i: {"fwd": [], "fb": [], "med": []} for i in impls
                }
                memory: dict[str, float] = {}
                for k in range(rounds):
                    for impl in impls if k % 2 == 0 else impls[::-1]:
                        mem = k == 0 and impl in ("xrnn-numpy", "exercise-loop")
                        got = measure_in_process(
                            impl, cell, cname, dtype, min_runs=min_runs, budget=budget, memory=mem
                        )
                        bar.step(f"{cell} {cname} {dtype} {impl}")
                        samples[impl]["fwd"] += got["fwd"]
                        samples[impl]["fb"] += got["fb"]
                        samples[impl]["med"].append(_median(got["fb"]))
                        if "peak_mb" in got:
                            memory[impl] = got["peak_mb"]
                result = {
                    i: (statistics.median(v["fwd"]), _median(v["fb"]), v["med"])
                    for i, v in samples.items()
                }
                fl_f, fl_b = gemm_flops(cell, *shape)
                nan = float("nan")
                for name, (tf, tb, meds) in result.items():
                    spread = (max(meds) - min(meds)) / tb if len(meds) > 1 else 0.0
                    if name in INFERENCE:  # forward only: spread over the forward medians
                        spread = 0.0
                    torch_f, torch_b = result.get("torch.nn", (nan, nan, None))[:2]
                    if name in INFERENCE:  # compared with torch.nn's inference forward
                        torch_f = result.get("torch.nn-no_grad", (nan, nan, None))[0]
                    ex_b = result.get("exercise-loop", (nan, nan, None))[1]
                    row = dict(
                        cell=cell,
                        config=cname,
                        shape=shape,
                        dtype=dtype,
                        impl=name,
                        fwd_ms=tf * 1e3,
                        fb_ms=tb * 1e3,
                        fb_round_medians_ms=[t * 1e3 for t in meds],
                        spread=spread,
                        fwd_gflops=fl_f / tf / 1e9,
                        fb_gflops=fl_b / tb / 1e9,
                        fwd_vs_torch=tf / torch_f,
                        fb_vs_torch=tb / torch_b,
                        speedup_vs_exercise=ex_b / tb,
                        fwd_peak_mb=memory.get(name),
                    )
                    rows.append(row)
                    print(
                        f"{cell:4} {cname:7} {str(shape):19} {dtype:7} {name:16} "
                        f"{row['fwd_ms']:9.2f} {row['fb_ms']:9.2f} {100 * spread:6.1f}% "
                        f"{row['fb_gflops']:8.1f} {row['fwd_vs_torch']:8.2f}x "
                        f"{row['fb_vs_torch']:8.2f}x {row['speedup_vs_exercise']:10.2f}x",
                        flush=True,
                    )

    bar.close()
    summary = summarise(rows, peaks)
    for line in summary["lines"]:
        print(line)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(
        json.dumps(
            {"machine": machine, "gemm_peak_gflops": peaks, "rows": rows, "summary": summary},
            indent=1,
        )
    )
    print(f"wrote {out / 'bench.json'}")
    (out / "bench.md").write_text(markdown(rows, machine))
    print(f"wrote {out / 'bench.md'}")
    plot(rows, out / "bench.png")
    return 0


class _Bar:
    """Progress over the measurements on stderr: tqdm when installed, else one line each."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.bar = total, 0, None
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self.bar = tqdm(total=total, unit="measurement", file=sys.stderr, dynamic_ncols=True)

    def step(self, what: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix_str(what, refresh=False)
            self.bar.update(1)
        else:
            print(f"[{self.done}/{self.total}] {what}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _median(times: list[float]) -> float:
    """The median of the timed calls, NaN where none were timed (a forward-only impl's
    forward+backward)."""
    return statistics.median(times) if times else float("nan")


def _geomean(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(values))))


def summarise(rows, peaks) -> dict:
    """The summary lines: per cell the worst ratio to torch.nn (float32), xrnn on
    torch tensors against xrnn on NumPy, and the speed-up over the exercise's loop."""
    by = {(r["cell"], r["config"], r["dtype"], r["impl"]): r for r in rows}
    lines = []
    worst = {}
    for cell in dict.fromkeys(r["cell"] for r in rows):
        for dtype in dict.fromkeys(r["dtype"] for r in rows):
            mine = [
                r for r in rows
                if (r["cell"], r["dtype"], r["impl"]) == (cell, dtype, "xrnn-numpy")
                and not np.isnan(r["fb_vs_torch"])
            ]  # fmt: skip
            if not mine:
                continue
            wf = max(mine, key=lambda r: r["fwd_vs_torch"])
            wb = max(mine, key=lambda r: r["fb_vs_torch"])
            worst[f"{cell}/{dtype}"] = {"fwd": wf["fwd_vs_torch"], "fb": wb["fb_vs_torch"]}
            lines.append(
                f"{cell} {dtype}: worst xrnn-numpy/torch.nn ratio forward "
                f"{wf['fwd_vs_torch']:.2f}x "
                f"(config {wf['config']}), forward+backward {wb['fb_vs_torch']:.2f}x "
                f"(config {wb['config']}) over {len(mine)} configs"
            )
    for (cell, config, dtype, impl), r in by.items():
        base = by.get((cell, config, dtype, "xrnn-numpy"))
        if impl in ("xrnn-torch", "xrnn-numpy-nojit") and base is not None:
            lines.append(
                f"{cell} {config} {dtype}: {impl} takes {r['fb_ms'] / base['fb_ms']:.2f}x "
                f"xrnn-numpy's forward+backward time ({r['fwd_ms'] / base['fwd_ms']:.2f}x forward)"
            )
    geomeans = {}
    for cell in ("lstm", "rnn"):
        for dtype in dict.fromkeys(r["dtype"] for r in rows):
            sel = [
                r["speedup_vs_exercise"]
                for r in rows
                if (r["cell"], r["dtype"], r["impl"]) == (cell, dtype, "xrnn-numpy")
                and not np.isnan(r["speedup_vs_exercise"])
            ]
            if sel:
                geomeans[f"{cell}/{dtype}"] = _geomean(sel)
                lines.append(
                    f"xrnn-numpy vs the exercise's loop, {cell} {dtype}, forward+backward: "
                    f"geometric mean speed-up {geomeans[f'{cell}/{dtype}']:.2f}x over "
                    f"{len(sel)} configs"
                )
    return {"worst_ratio_to_torch": worst, "geomean_speedup_vs_exercise": geomeans, "lines": lines}


def _ms(row: dict | None, key: str) -> str:
    value = float("nan") if row is None else row[key]
    return "—" if np.isnan(value) else f"{value:.2f}"


def _ratio(value: float, worse: float) -> str:
    """A ratio to torch.nn, in bold from ``worse`` up."""
    if np.isnan(value):
        return "—"
    text = f"{value:.2f}×"
    return f"**{text}**" if value >= worse else text


def markdown(rows: list[dict], machine: dict) -> str:
    """``bench.md``: the run's tables as Markdown (the performance docs include it as is).

    Training: xrnn on NumPy against torch.nn, forward and forward+backward, with the other
    implementations' times beside. Inside programs: forward+backward under PyTorch autograd,
    JAX's ``jit``/``grad``, and the inference forwards. Ratios at or above 1.3× forward or
    1.2× forward+backward are in bold."""
    by = {(r["cell"], r["config"], r["dtype"], r["impl"]): r for r in rows}
    groups = list(dict.fromkeys((r["cell"], r["config"], r["dtype"]) for r in rows))
    torch = machine.get("torch") or "not installed"
    rounds = max((len(r["fb_round_medians_ms"]) for r in rows), default=0)
    lines = [
        f"Measured on {machine['cpu']}, {machine['cores']} cores; Python {machine['python']}, "
        f"NumPy {machine['numpy']}, numba {machine['numba']}, PyTorch {torch}. Each implementation "
        f"in its own process, {rounds} alternating round(s); milliseconds, medians over every "
        "timed call; spread: the rounds' forward+backward medians, (max − min) / median.",
        "",
        "| cell | config (n_x, n_a, m, T) | dtype | xrnn fwd | xrnn f+b (spread) "
        "| torch.nn fwd / f+b | fwd vs torch.nn | f+b vs torch.nn | f+b, XRNN_JIT=0 "
        "| xrnn on torch tensors fwd / f+b | exercise's loop f+b (xrnn's speed-up) "
        "| fwd peak MB, xrnn / exercise |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for group in groups:
        cell, config, dtype = group
        row, nn, on_torch, nojit, loop = (
            by.get((*group, impl))
            for impl in (
                "xrnn-numpy",
                "torch.nn",
                "xrnn-torch",
                "xrnn-numpy-nojit",
                "exercise-loop",
            )
        )
        if row is None:
            continue
        peak = row.get("fwd_peak_mb")
        loop_peak = None if loop is None else loop.get("fwd_peak_mb")
        lines.append(
            f"| {cell} | {config} {tuple(row['shape'])} | {dtype} | {_ms(row, 'fwd_ms')} "
            f"| {_ms(row, 'fb_ms')} ({100 * row['spread']:.0f} %) "
            f"| {_ms(nn, 'fwd_ms')} / {_ms(nn, 'fb_ms')} "
            f"| {_ratio(row['fwd_vs_torch'], 1.3)} | {_ratio(row['fb_vs_torch'], 1.2)} "
            f"| {_ms(nojit, 'fb_ms')} | {_ms(on_torch, 'fwd_ms')} / {_ms(on_torch, 'fb_ms')} "
            f"| {_ms(loop, 'fb_ms')}"
            + ("" if loop is None else f" ({row['speedup_vs_exercise']:.2f}×)")
            + f" | {'—' if peak is None else f'{peak:.2f}'}"
            f" / {'—' if loop_peak is None else f'{loop_peak:.2f}'} |"
        )
    inside = [
        g
        for g in groups
        if any(g + (i,) in by for i in ("xrnn-torch-autograd", "xrnn-jax", "xrnn-numpy-lean"))
    ]
    if inside:
        lines += [
            "",
            "| cell | config | dtype | torch.nn f+b | xrnn under torch autograd f+b (vs torch.nn) "
            "| xrnn, jax.jit fwd / jax.grad | torch.nn no_grad fwd "
            "| xrnn without caches fwd (vs torch.nn no_grad) |",
            "|---|---|---|--:|--:|--:|--:|--:|",
        ]
        for group in inside:
            cell, config, dtype = group
            nn, auto, jax, no_grad, lean = (
                by.get((*group, impl))
                for impl in (
                    "torch.nn",
                    "xrnn-torch-autograd",
                    "xrnn-jax",
                    "torch.nn-no_grad",
                    "xrnn-numpy-lean",
                )
            )
            lines.append(
                f"| {cell} | {config} | {dtype} | {_ms(nn, 'fb_ms')} "
                f"| {_ms(auto, 'fb_ms')}"
                + ("" if auto is None else f" ({_ratio(auto['fb_vs_torch'], 1.2)})")
                + f" | {_ms(jax, 'fwd_ms')} / {_ms(jax, 'fb_ms')} | {_ms(no_grad, 'fwd_ms')} "
                f"| {_ms(lean, 'fwd_ms')}"
                + ("" if lean is None else f" ({_ratio(lean['fwd_vs_torch'], 1.3)})")
                + " |"
            )
    return "\n".join(lines) + "\n"


def plot(rows, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no chart")
        return
    groups = sorted({(r["cell"], r["config"], r["dtype"]) for r in rows})
    impls = [i for i in dict.fromkeys(r["impl"] for r in rows) if i not in INFERENCE]  # f+b only
    fig, ax = plt.subplots(figsize=(max(8, len(groups) * 0.9), 4.5))
    width = 0.8 / len(impls)
    for k, impl in enumerate(impls):
        vals = []
        for g in groups:
            match = [
                r["fb_ms"]
                for r in rows
                if (r["cell"], r["config"], r["dtype"]) == g and r["impl"] == impl
            ]
            vals.append(match[0] if match else np.nan)
        ax.bar(np.arange(len(groups)) + k * width, vals, width, label=impl)
    ax.set_yscale("log")
    ax.set_ylabel("forward+backward, ms (median, log scale)")
    ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2)
    ax.set_xticklabels([f"{c} {n}\n{d}" for c, n, d in groups], fontsize=7)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
