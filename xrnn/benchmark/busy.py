"""``xrnn bench --busy``: xrnn against ``torch.nn`` on an idle machine and on a busy one.

"Busy" is one competing process spinning on each core but one (``--competitors``), as when a
user's other programs run. For each mode it times, every measurement in a fresh process of its
own (torch's OpenMP threads keep spinning after a call and would slow whatever ran next in the
same process): the LSTM's float32 forward+backward on the configs (default A and charlm), in
xrnn on NumPy and in ``torch.nn.LSTM``, alternating; and the wall time of the default
``xrnn train`` (``--steps`` shortens it). It reports medians, the xrnn/torch ratio per mode,
and the busy/idle factor of the training time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from xrnn.benchmark.table import measure_in_process, optional_module

# ratios within 5 % of each other are the same: medians of one run move that much on this
# 2-core machine from run to run
NOISE = 0.05
SPIN = "import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass\n"


# busy.py's names for the worker's implementations
_IMPLS = {"xrnn": "xrnn-numpy", "torch": "torch.nn"}


def _timed(impl: str, config: str, runs: int, budget: float) -> float:
    """The median forward+backward seconds of ``impl`` on ``config``, in a process of its own
    (:mod:`xrnn.benchmark.worker`)."""
    out = measure_in_process(
        _IMPLS[impl], "lstm", config, "float32", min_runs=runs, budget=budget, parts=("fb",)
    )
    return statistics.median(out["fb"])


def _train_seconds(steps: int | None) -> float:
    argv = [sys.executable, "-m", "xrnn", "train", "--samples", "0"]
    if steps is not None:
        argv += ["--steps", str(steps)]
    start = time.perf_counter()
    subprocess.run(argv, capture_output=True, text=True, check=True, timeout=3600)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="xrnn bench --busy", description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="A,charlm", help="LSTM configs to time (float32)")
    ap.add_argument("--competitors", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--steps", type=int, default=None, help="xrnn train --steps (default: its own)")
    ap.add_argument("--no-train", action="store_true", help="skip the xrnn train timing")
    ap.add_argument("--runs", type=int, default=7, help="timed calls per measurement, at least")
    ap.add_argument("--budget", type=float, default=2.0, help="seconds per measurement")
    args = ap.parse_args(argv)
    configs = args.configs.split(",")
    impls = ["xrnn", "torch"] if optional_module("torch") is not None else ["xrnn"]
    print(f"{os.cpu_count()} cores; busy = {args.competitors} competing spinning process(es)")
    results: dict[str, dict] = {}
    for mode in ("idle", "busy"):
        spinners = []
        if mode == "busy":
            spin = SPIN.format(seconds=3600)
            spinners = [
                subprocess.Popen([sys.executable, "-c", spin]) for _ in range(args.competitors)
            ]
            time.sleep(0.5)
        try:
            res: dict = {"ms": {}}
            for config in configs:
                for impl in impls:  # alternating, each in its own process
                    res["ms"][(impl, config)] = 1e3 * _timed(impl, config, args.runs, args.budget)
                    print(f"{mode:4} {config:7} {impl:6} f+b {res['ms'][(impl, config)]:9.2f} ms")
            if not args.no_train:
                res["train_s"] = _train_seconds(args.steps)
                print(f"{mode:4} xrnn train{'' if args.steps is None else f' --steps {args.steps}'}"
                      f": {res['train_s']:.1f} s")  # fmt: skip
        finally:
            for s in spinners:
                s.kill()
                s.wait()
        results[mode] = res
    print("\nsummary (LSTM float32 forward+backward, medians; each in its own process):")
    for config in configs:
        if "torch" not in impls:
            break
        ratio = {m: results[m]["ms"][("xrnn", config)] / results[m]["ms"][("torch", config)]
                 for m in results}  # fmt: skip
        change = ratio["busy"] / ratio["idle"] - 1
        verdict = (
            "better" if change < -NOISE else "worse" if change > NOISE else "the same, within noise"
        )
        print(f"  {config}: xrnn/torch idle {ratio['idle']:.2f}×, busy {ratio['busy']:.2f}× "
              f"({verdict} under contention)")  # fmt: skip
    if not args.no_train:
        idle, busy = results["idle"]["train_s"], results["busy"]["train_s"]
        print(f"  xrnn train: idle {idle:.1f} s, busy {busy:.1f} s ({busy / idle:.2f}× idle)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
