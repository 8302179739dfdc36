"""What a layer costs over the functional API it is built from.

``python benchmarks/layers.py`` times, on NumPy in float32 (medians of interleaved rounds, so
every variant sees the same machine noise), a stacked bidirectional layer's forward+backward
against the same network written by hand with the functional API — every layer and direction
through ``<cell>_forward``, the directions' outputs joined with ``np.concatenate`` for the next
layer, then every ``<cell>_backward`` top layer first, ``dout`` split and the directions' ``dx``
summed — and against the functional calls alone (each layer from precomputed inputs: no joins,
no splits, no sums; a lower bound no stacked network reaches). ``--functional`` times only
``lstm_forward`` + ``lstm_backward`` on config A, for comparing two checkouts (run each in its
own process: ``PYTHONPATH=<checkout> python benchmarks/layers.py --functional``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import xrnn


def layer_vs_functional(family, n_x, n_a, m, T, layers, rounds):
    rng = np.random.default_rng(0)
    # looked up here: --functional also runs on checkouts that predate the layers
    layer_class = getattr(xrnn, family.upper())
    layer = layer_class(n_x, n_a, num_layers=layers, bidirectional=True, dtype="float32")
    x = rng.standard_normal((n_x, m, T)).astype(np.float32)
    dout = rng.standard_normal((2 * n_a, m, T)).astype(np.float32)
    forward, backward = getattr(xrnn, f"{family}_forward"), getattr(xrnn, f"{family}_backward")
    zeros = np.zeros((n_a, m), np.float32)
    # each layer's input, as the layer computes it (no dropout)
    inputs = [x]
    for lay in range(layers - 1):
        outs = [
            forward(inputs[-1], zeros, layer.parameters[lay][d], reverse=d == 1)[0] for d in (0, 1)
        ]
        inputs.append(np.concatenate(outs, axis=0))
    da = [dout[:n_a], dout[n_a:]]

    def run_layer():
        layer(x)
        layer.backward(dout)

    def run_by_hand():
        caches, inp = [], x
        for lay in range(layers):
            outs = []
            for d in (0, 1):
                a, *_, c = forward(inp, zeros, layer.parameters[lay][d], reverse=d == 1)
                outs.append(a)
                caches.append(c)
            inp = np.concatenate(outs, axis=0)
        g = dout
        for lay in reversed(range(layers)):
            dx = 0
            for d in (0, 1):
                dx = dx + backward(g[d * n_a : (d + 1) * n_a], caches[2 * lay + d])["dx"]
                caches[2 * lay + d] = None
            g = dx

    def run_calls_alone():
        caches = [
            forward(inputs[lay], zeros, layer.parameters[lay][d], reverse=d == 1)[-1]
            for lay in range(layers)
            for d in (0, 1)
        ]
        for k in reversed(range(2 * layers)):
            backward(da[k % 2], caches[k])
            caches[k] = None

    variants = {"layer": run_layer, "by hand": run_by_hand, "calls alone": run_calls_alone}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():
        fn()
    for _ in range(rounds):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def functional_only(rounds):
    rng = np.random.default_rng(0)
    n_x, n_a, m, T = 64, 128, 64, 50  # config A of benchmarks/bench.py
    p = xrnn.initialize_lstm(n_x, n_a, dtype="float32")
    x = rng.standard_normal((n_x, m, T)).astype(np.float32)
    a0 = np.zeros((n_a, m), np.float32)
    da = rng.standard_normal((n_a, m, T)).astype(np.float32)
    times = []
    for _ in range(rounds + 1):
        t0 = time.perf_counter()
        xrnn.lstm_backward(da, xrnn.lstm_forward(x, a0, p)[-1])
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:]) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--functional", action="store_true")
    args = ap.parse_args()
    if args.functional:
        print(f"{xrnn.__file__}: lstm config A fwd+bwd {functional_only(args.rounds):.2f} ms")
        return
    print(
        "| layer | (n_x, n_a, m, T) × layers, bidirectional | layer ms | by hand ms | "
        "calls alone ms | layer / by hand | layer / calls alone |"
    )
    print("|---|---|--:|--:|--:|--:|--:|")
    for family, shape, layers in [
        ("lstm", (64, 128, 64, 50), 2),
        ("gru", (64, 128, 64, 50), 2),
        ("rnn", (64, 128, 64, 50), 3),
        ("lstm", (27, 64, 8, 20), 2),
    ]:
        t = layer_vs_functional(family, *shape, layers, args.rounds)
        print(
            f"| {family} | {shape} × {layers} | {t['layer']:.2f} | {t['by hand']:.2f} "
            f"| {t['calls alone']:.2f} | {t['layer'] / t['by hand']:.3f} "
            f"| {t['layer'] / t['calls alone']:.3f} |"
        )


if __name__ == "__main__":
    main()
