"""CuPy step kernels: one GEMM plus one fused elementwise kernel per step and direction.

Per step the forward pass launches the recurrent GEMM ``Wa a⟨t-1⟩`` and one fused kernel that
writes the gates and the new state straight into xrnn's stacked buffers; the backward pass one
fused kernel (writing into the chunk's gradient columns, and the carried state gradient into
the engine's temporary in place: no allocation per step) and the engine's GEMM ``Waᵀ dra``.
Nothing in the loop reads a value back to the host, so the loop never synchronises with the
GPU, and every call runs under its arrays' own device (:meth:`CupyOps.on_device`).

Each kernel computes what its cell's ``forward_pointwise``/``backward_pointwise`` computes (the
reference). Float literals are cast to ``T`` so float32 kernels never promote to double. Where
this is proven (``nox -s gpu-build`` on any machine, ``nox -s cupy`` on a GPU):

- :data:`SOURCES` is compiled by NVRTC for two GPU architectures, both dtypes and CuPy's
  argument layouts, and a float32 kernel with a double-precision instruction fails
  (``tests/test_cuda_build.py``);
- the real :class:`CupyOps` runs on the CPU with each kernel body compiled as C++ and called
  element by element the way CuPy calls it (``tests/cupy_emulator.py``), against the reference;
- on a GPU, ``tests/test_backends.py`` runs the same comparison on real CuPy arrays.

The kernels are built on first use, so importing this module needs no GPU (nor CuPy).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from xrnn.ops import InPlaceOps

__all__ = ["SOURCES", "CupyOps", "KernelSource", "all_sources", "traced_sources"]


class KernelSource(NamedTuple):
    """The arguments of one ``cupy.ElementwiseKernel``."""

    in_params: str
    out_params: str
    operation: str
    name: str


# Stable sigmoid, as in xrnn.sigmoid: 0.5 * tanh(x / 2) + 0.5.
_SIG = "(T)0.5 * tanh((T)0.5 * ({0})) + (T)0.5"

#: Every fused kernel, by the name the step functions below use.
SOURCES: dict[str, KernelSource] = {
    # gr, gz, gn: input side; rr, rz, rn: recurrent side Wa a⟨t-1⟩; bhn broadcast (n_a, 1)
    "gru_fwd": KernelSource(
        "T gr, T gz, T gn, T rr, T rz, T rn, T bhn, T a_prev",
        "T r, T z, T n, T hn, T h",
        f"""
        r = {_SIG.format("gr + rr")};
        z = {_SIG.format("gz + rz")};
        hn = rn + bhn;
        n = tanh(gn + r * hn);
        h = n + z * (a_prev - n);
        """,
        "xrnn_gru_forward_step",
    ),
    # da_prev may be da itself (the engine's temporary): da is read before it is written.
    "gru_bwd": KernelSource(
        "T da, T r, T z, T n, T hn, T a_prev",
        "T dxr, T dxz, T dxn, T dhr, T dhz, T dhn, T da_prev",
        """
        T dn = da * ((T)1 - z) * ((T)1 - n * n);
        T dz = da * (a_prev - n) * z * ((T)1 - z);
        T dr = dn * hn * r * ((T)1 - r);
        dxr = dr; dxz = dz; dxn = dn;
        dhr = dr; dhz = dz; dhn = dn * r;
        da_prev = da * z;
        """,
        "xrnn_gru_backward_step",
    ),
}


# --- kernels generated from a cell's traced elementwise math (xrnn.cells.trace) -----------------


def traced_sources(cell: Any) -> dict[str, KernelSource]:
    """``{"forward": ..., "backward": ...}``: the fused step kernels of a cell with traced
    elementwise math, written from its programs. Each input the math uses is a parameter
    ``<name>_`` copied into a local first (an output may be the same array as an input: the
    upstream gradient ``u1_`` and the direct gradient ``w1`` the backward writes over it);
    outputs ``n<q>``/``s<q>`` (new states, saved values) forward, ``dz<q>``/``dv<q>`` (the
    chunk buffer's gate and vector rows) and ``w<q>`` (direct state gradients) backward."""
    forward, backward = cell.programs
    sig, k, v = cell.signature, cell.blocks, len(cell.vectors)
    n = len(cell.states)
    f_sig = sig["forward"]
    z_names = f_sig[:k]
    ins = []
    head = []
    for q, z in enumerate(z_names):
        if z in forward.used:
            ins += [f"gx{q}_", f"r{q}_"]
            head.append(f"T {z} = gx{q}_ + r{q}_;")
    for name in f_sig[k:]:
        if name in forward.used:
            ins.append(f"{name}_")
            head.append(f"T {name} = {name}_;")
    outs = [f"n{q}" for q in range(n)] + [f"s{q}" for q in range(len(forward.outputs[1]))]
    body = forward.c({x: x for x in f_sig}, ([f"n{q}" for q in range(n)], outs[n:]))
    fwd = KernelSource(
        _param_list(ins),
        _param_list(outs),
        "\n".join(head + body),
        f"xrnn_{cell.name}_forward_step",
    )
    b_sig = sig["backward"]
    ins = [f"{name}_" for name in b_sig if name in backward.used]
    head = [f"T {name} = {name}_;" for name in b_sig if name in backward.used]
    direct = ["w0" if backward.outputs[2][0] is not None else None]
    direct += [f"w{q}" for q in range(1, n)]
    results = ([f"dz{q}" for q in range(k)], [f"dv{q}" for q in range(v)], direct)
    body = backward.c({x: x for x in b_sig}, results)
    outs = [*results[0], *results[1], *(w for w in direct if w is not None)]
    bwd = KernelSource(
        _param_list(ins),
        _param_list(outs),
        "\n".join(head + body),
        f"xrnn_{cell.name}_backward_step",
    )
    return {"forward": fwd, "backward": bwd}


def _param_list(names: list[str]) -> str:
    return ", ".join(f"T {name}" for name in names)


def all_sources() -> dict[str, KernelSource]:
    """:data:`SOURCES` and the generated kernels of every registered cell with traced math
    (``<cell>_fwd``, ``<cell>_bwd``): what ``nox -s gpu-build`` compiles."""
    from xrnn.cell import CELLS

    out = dict(SOURCES)
    for cell in CELLS.values():
        if hasattr(type(cell), "programs"):
            made = traced_sources(cell)
            out[f"{cell.name}_fwd"], out[f"{cell.name}_bwd"] = made["forward"], made["backward"]
    return out


def _traced_forward(ops, cell, W, gx, state, slot):
    """A traced cell's forward step: the recurrent GEMM, then its generated kernel."""
    kernel = ops.traced(cell, "forward")
    n_a, k = int(state[0].shape[0]), cell.blocks
    R = ops.lib.matmul(W.Wa, state[0])
    pieces: dict[str, Any] = {}
    for q in range(k):
        pieces[f"gx{q}_"] = gx[q * n_a : (q + 1) * n_a]
        pieces[f"r{q}_"] = R[q * n_a : (q + 1) * n_a]
    for q in range(len(cell.vectors)):
        pieces[f"v{q}_"] = W.V[q * n_a : (q + 1) * n_a]
    for q, s in enumerate(state):
        pieces[f"p{q}_"] = s
        pieces[f"n{q}"] = slot.states[q]
    for q in range(cell.saved_blocks):
        pieces[f"s{q}"] = slot.saved[q * n_a : (q + 1) * n_a]
    kernel(*(pieces[name] for name in kernel.params))
    return slot.states, slot.saved


def _traced_backward(ops, cell, saved, prev, new, up, slot, W):
    """A traced cell's backward step into the chunk's column block."""
    kernel = ops.traced(cell, "backward")
    n_a, k = int(prev[0].shape[0]), cell.blocks
    dp = slot[0]
    names = cell.signature["backward"]
    pieces: dict[str, Any] = {}
    for q in range(cell.saved_blocks):
        pieces[f"{names[q]}_"] = saved[q * n_a : (q + 1) * n_a]
    for q in range(len(cell.vectors)):
        pieces[f"v{q}_"] = W.V[q * n_a : (q + 1) * n_a]
    for q in range(len(cell.states)):
        pieces[f"p{q}_"], pieces[f"n{q}_"] = prev[q], new[q]
        pieces[f"u{q}_"] = pieces[f"w{q}"] = up[q]
    for q in range(k + len(cell.vectors)):
        pieces[f"dz{q}" if q < k else f"dv{q - k}"] = dp[q * n_a : (q + 1) * n_a]
    kernel(*(pieces[name] for name in kernel.params))
    direct = up[0] if "w0" in kernel.params else None
    return dp, dp, (direct, *up[1:])


def _blocks(a: Any, n_a: int, k: int) -> list[Any]:
    return [a[i * n_a : (i + 1) * n_a] for i in range(k)]


class CupyOps(InPlaceOps):
    """CuPy storage and fused step kernels; same math as :class:`xrnn.ops.Ops`.

    ``lib`` is the ``cupy`` module (the default) or a stand-in with the same interface: the
    CPU emulation in the tests passes one.
    """

    def __init__(self, xp: Any, lib: Any = None) -> None:
        super().__init__(xp)
        if lib is None:
            import cupy

            lib = cupy
        self.lib = lib  # the library itself: matmul with out=, copyto with where=
        self._fused: dict[str, Any] | None = None
        self._traced: dict[tuple, _Traced] = {}

    @property
    def fused(self) -> dict[str, Any]:
        """The :data:`SOURCES` as ``lib.ElementwiseKernel`` objects (built on first use; CuPy
        compiles each on its first call per dtype and layout, and caches it on disk)."""
        if self._fused is None:
            self._fused = {
                key: self.lib.ElementwiseKernel(*source) for key, source in SOURCES.items()
            }
        return self._fused

    def on_device(self, device: Any) -> Any:
        # CuPy launches kernels and allocates on the *current* device: enter the arrays' own
        return self.lib.cuda.Device(getattr(device, "id", device))

    def traced(self, cell: Any, direction: str) -> Any:
        """The generated kernel of a cell with traced math (:func:`traced_sources`) as a
        ``lib.ElementwiseKernel``, built on first use, with ``.params``: its parameter names
        in order."""
        key = (type(cell), cell.name, direction)
        made = self._traced.get(key)
        if made is None:
            source = traced_sources(cell)[direction]
            made = self.lib.ElementwiseKernel(*source)
            names = [p.split()[1] for p in f"{source.in_params}, {source.out_params}".split(",")]
            made = self._traced[key] = _Traced(made, tuple(names))
        return made

    def kernel(self, cell: Any, direction: str) -> Any:
        found = super().kernel(cell, direction)
        if found is None and direction == "forward" and hasattr(type(cell), "programs"):
            return _traced_forward
        return found

    def backward_step(
        self, cell: Any, saved: Any, prev: tuple, new: tuple, up: tuple, slot: Any, W: Any = None
    ) -> tuple:
        if super().kernel(cell, "backward") is None and hasattr(type(cell), "programs"):
            return _traced_backward(self, cell, saved, prev, new, up, slot, W)
        return super().backward_step(cell, saved, prev, new, up, slot, W)


class _Traced(NamedTuple):
    kernel: Any
    params: tuple[str, ...]

    def __call__(self, *args: Any) -> Any:
        return self.kernel(*args)


@CupyOps.register("gru", "forward")
def _gru_forward(ops, cell, W, gx, state, slot):
    n_a = int(state[0].shape[0])
    ra = ops.lib.matmul(W.Wa, state[0])
    h = slot.states[0]
    ops.fused["gru_fwd"](
        *_blocks(gx, n_a, 3), *_blocks(ra, n_a, 3), W.bh, state[0], *_blocks(slot.saved, n_a, 4), h
    )
    return (h,), slot.saved


@CupyOps.register("gru", "backward")
def _gru_backward(ops, cell, saved, prev, new, up, slot):
    n_a = int(prev[0].shape[0])
    dgx, dra = slot
    da = up[0]  # the engine's temporary: the direct part of da⟨t-1⟩ overwrites it
    ops.fused["gru_bwd"](
        da, *_blocks(saved, n_a, 4), prev[0], *_blocks(dgx, n_a, 3), *_blocks(dra, n_a, 3), da
    )
    return dgx, dra, (da,)
