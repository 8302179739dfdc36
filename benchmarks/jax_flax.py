"""xrnn on JAX against flax's ``nn.RNN(nn.OptimizedLSTMCell)``, each in its own process.

``python benchmarks/jax_flax.py [--configs A,B] [--calls 15]`` (needs ``flax``: ``pip install
flax``) times, per config (float32, CPU), ``jax.jit`` of the LSTM forward and of ``jax.grad``
of a loss on it — steady state, after a first call that compiles — and reports the time to trace
and compile each, and that of ``jax.jit(jax.grad(...))`` for xrnn at
``T_x = 10`` and ``T_x = 2000`` (a ``lax.scan``: it should not grow with the steps).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from xrnn.benchmark import table


def measure(which: str, phase: str, config: str, calls: int, steps: int | None) -> tuple:
    """``(median ms, first call s)`` of one implementation and phase."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    n_x, n_a, m, T = table.CONFIGS[config]
    T = steps or T
    x = jnp.asarray(np.random.default_rng(0).normal(size=(m, T, n_x)).astype(np.float32))
    if which == "flax":
        import flax.linen as nn

        model = nn.RNN(nn.OptimizedLSTMCell(n_a))
        params = model.init(jax.random.PRNGKey(0), x)

        def forward(params, x):
            return model.apply(params, x)
    else:
        import xrnn

        host = xrnn.initialize("lstm", n_x, n_a, seed=0, dtype="float32")
        params = {k: jnp.asarray(v) for k, v in host.items()}
        a0 = jnp.zeros((n_a, m), jnp.float32)
        x = jnp.transpose(x, (2, 0, 1))  # xrnn's (n_x, m, T_x)

        def forward(params, x):
            return xrnn.lstm_forward(x, a0, params, return_caches=False)[0]

    if phase == "fwd":
        fn = jax.jit(forward)
    else:
        fn = jax.jit(jax.grad(lambda p, x: jnp.sum(forward(p, x) ** 2)))
    t0 = time.perf_counter()
    fn = fn.lower(params, x).compile()  # tracing and compiling, no run
    first = time.perf_counter() - t0
    jax.block_until_ready(fn(params, x))
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(params, x))
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times), first


def _child(*args: str) -> tuple[float, float]:
    cmd = [sys.executable, __file__, "--one", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    ms, first = out.strip().splitlines()[-1].split()
    return float(ms), float(first)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="A,B", help="of xrnn.benchmark.table.CONFIGS")
    ap.add_argument("--calls", type=int, default=15, help="timed calls per measurement")
    ap.add_argument("--one", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:  # a child process: which, phase, config, calls, steps (0: the config's)
        which, phase, config, calls, steps = args.one
        print(*measure(which, phase, config, int(calls), int(steps) or None))
        return
    print("LSTM, float32, CPU: medians (ms), one process each; xrnn / flax")
    for config in args.configs.split(","):
        for phase in ("fwd", "grad"):
            got = {w: _child(w, phase, config, str(args.calls), "0") for w in ("flax", "xrnn")}
            print(
                f"{config:4} {phase:5} flax {got['flax'][0]:8.2f}  xrnn {got['xrnn'][0]:8.2f}  "
                f"{got['xrnn'][0] / got['flax'][0]:5.2f}×   compile flax "
                f"{got['flax'][1]:.2f} s, xrnn {got['xrnn'][1]:.2f} s"
            )
    first = {T: _child("xrnn", "grad", "A", "1", str(T))[1] for T in (10, 2000)}
    print(f"xrnn jit(grad) compile, config A: T=10 {first[10]:.2f} s, T=2000 {first[2000]:.2f} s")


if __name__ == "__main__":
    main()
