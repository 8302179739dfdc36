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
kernels switched off (``XRNN_JIT=0``, set before xrnn is imported); ``xrnn-torch-autograd`` is
xrnn on torch tensors that require gradients (forward as autograd records it, forward+backward
through ``.backward()``); ``xrnn-jax`` is ``jax.jit`` of xrnn's forward and of ``jax.grad``;
the :data:`INFERENCE` ones time a forward only: xrnn's without caches
(``return_caches=False``) and ``torch.nn``'s under ``torch.no_grad()``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

IMPLS = (
    "xrnn-numpy",
    "xrnn-numpy-nojit",
    "xrnn-torch",
    "xrnn-torch-autograd",
    "xrnn-jax",
    "torch.nn",
    "exercise-loop",
    "xrnn-numpy-lean",
    "torch.nn-no_grad",
)
# forward-only implementations (inference: no caches, no autograd): compared with
# torch.nn-no_grad; they time no forward+backward
INFERENCE = ("xrnn-numpy-lean", "torch.nn-no_grad")


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
    if impl == "xrnn-numpy-lean":
        return (lambda: xrnn_lean(cell, x, a0, p)), None
    if impl == "xrnn-jax":
        return jax_fns(cell, x, a0, p, da)
    import torch

    if impl == "torch.nn":
        return table.torch_nn_fns(torch, cell, x, a0, p, da)
    if impl == "torch.nn-no_grad":
        fwd = table.torch_nn_fns(torch, cell, x, a0, p, da)[0]

        def no_grad():
            with torch.no_grad():
                return fwd()

        return no_grad, None
    if impl == "xrnn-torch-autograd":
        return torch_autograd_fns(torch, cell, x, a0, p, da)
    if impl == "xrnn-torch":
        tp = {k: torch.from_numpy(v) for k, v in p.items()}
        tx, ta0, tda = (torch.from_numpy(v) for v in (x, a0, da))
        return table.xrnn_fns(cell, tx, ta0, tp, tda)
    raise SystemExit(f"unknown implementation {impl!r}; one of {', '.join(IMPLS)}")


def xrnn_lean(cell: str, x: Any, a0: Any, p: dict) -> Any:
    import xrnn

    return xrnn.forward(cell, x, a0, p, return_caches=False)


def torch_autograd_fns(torch: Any, cell: str, x: Any, a0: Any, p: dict, da: Any) -> tuple:
    """xrnn on torch tensors that require gradients: one autograd operator per call."""
    import xrnn

    tp = {k: torch.from_numpy(v).requires_grad_(True) for k, v in p.items()}
    tx = torch.from_numpy(x).requires_grad_(True)
    ta0, tda = torch.from_numpy(a0), torch.from_numpy(da)

    def fwd():
        return xrnn.forward(cell, tx, ta0, tp, return_caches=False)[0]

    def both():
        for t in (tx, *tp.values()):
            t.grad = None
        a = fwd()
        (a * tda).sum().backward()
        return a

    return fwd, both


def jax_fns(cell: str, x: Any, a0: Any, p: dict, da: Any) -> tuple:
    """``jax.jit`` of xrnn's forward and of ``jax.grad`` of a loss on it (compiled by a first
    call, outside the timing), each synchronised (``block_until_ready``)."""
    import jax
    import jax.numpy as jnp

    import xrnn

    if x.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    jp = {k: jnp.asarray(v) for k, v in p.items()}
    jx, ja0, jda = jnp.asarray(x), jnp.asarray(a0), jnp.asarray(da)

    def forward(params, x):
        return xrnn.forward(cell, x, ja0, params, return_caches=False)[0]

    fwd_jit = jax.jit(forward)
    grad_jit = jax.jit(jax.grad(lambda params, x: jnp.sum(forward(params, x) * jda)))
    for f in (fwd_jit, grad_jit):
        jax.block_until_ready(f(jp, jx))
    return (
        lambda: jax.block_until_ready(fwd_jit(jp, jx)),
        lambda: jax.block_until_ready(grad_jit(jp, jx)),
    )


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
        part: []
        if calls[part] is None
        else table.timeit(calls[part], min_runs=args.min_runs, budget_s=args.budget)
        for part in args.parts.split(",")
    }
    if args.memory:
        result["peak_mb"] = table.peak_memory_mb(fwd)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
