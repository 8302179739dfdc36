"""What Dask costs and gives: the LSTM batch-sharded on a LocalCluster against plain NumPy.

``python benchmarks/dask_scaling.py [--m 4096] [--T 50] [--chunk 1024] [--workers 1,2]``
times, in float32:

1. forward+backward of ``lstm_forward``/``lstm_backward`` (n_x 64, n_a 128) on a batch of
   ``m`` sequences: plain NumPy in this process, then Dask on a LocalCluster of each worker
   count (worker processes sharing the cores out), the input made on the workers and
   persisted first so that only the computation is timed; the parameter gradients and a
   checksum of ``dx`` come back;
2. the graph: tasks per call and the seconds to build it at T = 200;
3. a training step of the character model with a batch of ``m`` names: ``charlm.train`` in
   this process and with ``client=`` (data-parallel, one shard per worker).

Medians of ``--runs`` calls. NumPy runs with this machine's BLAS setting (two OpenBLAS threads
here); Dask pins each worker's BLAS to one thread and runs chunks side by side on the worker's
threads instead, so "1 worker" against NumPy is the overhead of Dask itself plus that
difference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import xrnn
from xrnn import charlm

N_X, N_A = 64, 128


def median_s(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def numpy_fb(x, a0, p, d):
    def run():
        _, _, _, caches = xrnn.lstm_forward(x, a0, p)
        g = xrnn.lstm_backward(d, caches)
        return float(g["dx"].sum())

    return run


def dask_fb(client, m, T, chunk, p):
    import dask
    import dask.array as da

    rng = da.random.default_rng(0)
    x = rng.standard_normal((N_X, m, T), chunks=(N_X, chunk, T), dtype=np.float32).persist()
    d = rng.standard_normal((N_A, m, T), chunks=(N_A, chunk, T), dtype=np.float32).persist()
    a0 = da.zeros((N_A, m), chunks=(N_A, chunk), dtype=np.float32).persist()

    def build():  # NumPy parameters: one key in the graph, sent once per compute
        _, _, _, caches = xrnn.lstm_forward(x, a0, p)
        g = xrnn.lstm_backward(d, caches)
        return [g[k] for k in g if k not in ("dx", "da0", "dc0")] + [g["dx"].sum()]

    def run():
        return dask.compute(*build(), scheduler=client)

    return run


def train_step(names, batch, steps, client=None) -> float:
    kw = dict(hidden=128, layers=2, dropout=0.0, steps=steps, batch_size=batch, validation=0)
    _, history = charlm.train(names, client=client, **kw)
    return history["seconds"] / history["steps"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--m", type=int, default=4096)
    ap.add_argument("--T", type=int, default=50)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--train-steps", type=int, default=5)
    args = ap.parse_args()

    import dask
    import dask.array as da
    from distributed import Client, LocalCluster

    m, T = args.m, args.T
    rng = np.random.default_rng(0)
    p = {k: v.astype(np.float32) for k, v in xrnn.initialize_lstm(N_X, N_A, seed=0).items()}
    x = rng.standard_normal((N_X, m, T), dtype=np.float32)
    d = rng.standard_normal((N_A, m, T), dtype=np.float32)
    a0 = np.zeros((N_A, m), np.float32)
    names = charlm.bundled_names()
    base = median_s(numpy_fb(x, a0, p, d), args.runs)
    base_train = train_step(names, m, args.train_steps)
    print(f"LSTM float32 (n_x {N_X}, n_a {N_A}, m {m}, T {T}), forward+backward, medians:")
    print(f"  numpy, this process:      {base * 1e3:8.1f} ms  ({m / base:,.0f} sequences/s)")
    print(f"  charlm step, batch {m}: numpy {base_train * 1e3:.0f} ms")

    # graph size and build time, no cluster needed
    for steps in (T, 200):
        X = da.zeros((N_X, m, steps), chunks=(N_X, args.chunk, steps), dtype=np.float32)
        A0 = da.zeros((N_A, m), chunks=(N_A, args.chunk), dtype=np.float32)
        start = time.perf_counter()
        _, _, _, caches = xrnn.lstm_forward(X, A0, p)
        ones = da.ones((N_A, m, steps), chunks=(N_A, args.chunk, steps), dtype=np.float32)
        g = xrnn.lstm_backward(ones, caches)
        built = time.perf_counter() - start
        tasks = len(dask.base.collections_to_expr(list(g.values())).__dask_graph__())
        print(f"  graph at T={steps}: {tasks} tasks for {m // args.chunk} chunks, built in "
              f"{built * 1e3:.0f} ms")  # fmt: skip

    for workers in (int(w) for w in args.workers.split(",")):
        # the machine's cores shared out, as LocalCluster does by default (Dask pins each
        # worker's BLAS to one thread: its threads run chunks side by side instead)
        threads = max(1, (os.cpu_count() or 1) // workers)
        with LocalCluster(
            n_workers=workers, threads_per_worker=threads, processes=True, dashboard_address=None
        ) as cluster, Client(cluster) as client:  # fmt: skip
            run = dask_fb(client, m, T, args.chunk, p)
            t = median_s(run, args.runs)
            step = train_step(names, m, args.train_steps, client)
        print(f"  dask, {workers} worker(s) × {threads} thread(s): {t * 1e3:8.1f} ms  "
              f"({m / t:,.0f} sequences/s, "
              f"{t / base:.2f}× numpy); charlm step {step * 1e3:.0f} ms "
              f"({step / base_train:.2f}× numpy)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
