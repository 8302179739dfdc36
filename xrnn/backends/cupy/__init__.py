"""CuPy step kernels: one GEMM plus one fused elementwise kernel per step and direction, the
kernel written from the cell's elementwise math (:func:`traced_sources`).

Per step the forward pass launches the recurrent GEMM ``Wa a⟨t-1⟩`` and one fused kernel that
writes the gates and the new state straight into xrnn's stacked buffers; the backward pass one
fused kernel (writing into the chunk's gradient columns, and the carried state gradient into
the engine's temporary in place: no allocation per step) and the engine's GEMM ``Waᵀ dra``.
Nothing in the loop reads a value back to the host, so the loop never synchronises with the
GPU, and every call runs under its arrays' own device (:meth:`CupyOps.on_device`).

Each kernel computes what its cell's ``forward_pointwise``/``backward_pointwise`` computes (the
reference). Float literals are cast to ``T`` so float32 kernels never promote to double. Where
this is proven (``nox -s gpu-build`` on any machine, ``nox -s cupy`` on a GPU):

- every registered cell's kernels (:func:`all_sources`) are compiled by NVRTC for two GPU
  architectures, both dtypes and CuPy's argument layouts, and a float32 kernel with a
  double-precision instruction fails
  (``tests/backends/cupy/test_cuda_build.py``);
- the real :class:`CupyOps` runs on the CPU with each kernel body compiled as C++ and called
  element by element the way CuPy calls it (``tests/cupy_emulator.py``), against the reference;
- on a GPU, ``tests/backends/test_backends.py`` runs the same comparison on real CuPy arrays.

The kernels are built on first use, so importing this module needs no GPU (nor CuPy).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from xrnn.core.ops import InPlaceOps

__all__ = ["CupyOps", "KernelSource", "all_sources", "traced_sources"]


class KernelSource(NamedTuple):
    """The arguments of one ``cupy.ElementwiseKernel``."""

    in_params: str
    out_params: str
    operation: str
    name: str


# --- kernels generated from a cell's traced elementwise math (xrnn.cells.trace) -----------------


def traced_sources(cell: Any) -> dict[str, KernelSource]:
    """``{"forward": ..., "backward": ...}``: the fused step kernels of a cell with traced
    elementwise math, written from its programs. Each input the math uses is a parameter
    ``<name>_`` copied into a local first (an output may be the same array as an input: the
    upstream gradient ``u1_`` and the direct gradient ``w1`` the backward writes over it);
    outputs ``n<q>``/``s<q>`` (new states, saved values) forward, ``dz<q>``/``dv<q>`` (the
    chunk buffer's gate and vector rows) and ``w<q>`` (direct state gradients) backward."""
    forward, backward = cell.programs
    sig, v = cell.signature, len(cell.vectors)
    n, kz = len(cell.states), len(cell.pre_activations)
    f_sig = sig["forward"]
    ins: list[str] = []
    head = []
    sides = {"both": ("gx{0}_", "r{0}_"), "input": ("gx{0}_",), "recurrent": ("r{0}_",)}
    for z, (q, side) in zip(f_sig[:kz], cell.pre_activations, strict=True):
        if z in forward.used:
            read = [name.format(q) for name in sides[side]]
            ins += [name for name in read if name not in ins]
            head.append(f"T {z} = {' + '.join(read)};")
    for name in f_sig[kz:]:
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
    # the input side's gradient of gate q into dz<q>; its recurrent side's into dh<q>, where
    # a gate takes its two sides apart (then every gate has a dh<q>: Waᵀ multiplies those)
    split = cell.split_recurrent
    into = {"input": ("dz{0}",), "recurrent": ("dh{0}",), "both": ("dz{0}", "dh{0}")}
    gates = [
        tuple(t.format(q) for t in into[side][: None if split else 1])
        for q, side in cell.pre_activations
    ]
    results = (gates, [f"dv{q}" for q in range(v)], direct)
    body = backward.c({x: x for x in b_sig}, results)
    written = sorted({t for ts in gates for t in ts}, key=lambda t: (t[1], int(t[2:])))
    outs = [*written, *results[1], *(w for w in direct if w is not None)]
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
    """The generated kernels of every registered cell with traced math (``<cell>_fwd``,
    ``<cell>_bwd``): what ``nox -s gpu-build`` compiles."""
    from xrnn.cells.base import CELLS

    out: dict[str, KernelSource] = {}
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
    dra = slot[1] if cell.split_recurrent else dp
    for q in range(k):
        pieces[f"dh{q}"] = dra[q * n_a : (q + 1) * n_a]
    kernel(*(pieces[name] for name in kernel.params))
    direct = up[0] if "w0" in kernel.params else None
    return dp, dra, (direct, *up[1:])


class CupyOps(InPlaceOps):
    """CuPy storage and fused step kernels; same math as :class:`xrnn.core.ops.Ops`.

    ``lib`` is the ``cupy`` module (the default) or a stand-in with the same interface: the
    CPU emulation in the tests passes one.
    """

    def __init__(self, xp: Any, lib: Any = None) -> None:
        super().__init__(xp)
        if lib is None:
            import cupy

            lib = cupy
        self.lib = lib  # the library itself: matmul with out=, copyto with where=
        self._traced: dict[tuple, _Traced] = {}

    def on_device(self, device: Any) -> Any:
        # CuPy launches kernels and allocates on the *current* device: enter the arrays' own
        return self.lib.cuda.Device(getattr(device, "id", device))

    def traced(self, cell: Any, direction: str) -> Any:
        """The generated kernel of a cell with traced math (:func:`traced_sources`) as a
        ``lib.ElementwiseKernel``, built on first use, with ``.params``: its parameter names
        in order. CuPy compiles each on its first call per dtype and layout, and caches it
        on disk."""
        key = (type(cell), cell.name, direction)
        made = self._traced.get(key)
        if made is None:
            source = traced_sources(cell)[direction]
            made = self.lib.ElementwiseKernel(*source)
            names = [p.split()[1] for p in f"{source.in_params}, {source.out_params}".split(",")]
            made = self._traced[key] = _Traced(made, tuple(names))
        return made

    def kernel(self, cell: Any, direction: str) -> Any:
        if direction == "forward" and hasattr(type(cell), "programs"):
            return _traced_forward
        return None

    def backward_step(
        self, cell: Any, saved: Any, prev: tuple, new: tuple, up: tuple, slot: Any, W: Any = None
    ) -> tuple:
        if slot is not None and hasattr(type(cell), "programs"):
            return _traced_backward(self, cell, saved, prev, new, up, slot, W)
        return super().backward_step(cell, saved, prev, new, up, slot, W)


class _Traced(NamedTuple):
    kernel: Any
    params: tuple[str, ...]

    def __call__(self, *args: Any) -> Any:
        return self.kernel(*args)
