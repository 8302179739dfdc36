"""CuPy specifics: fused elementwise kernels for the pointwise work of each time step.

Per step the forward pass launches one GEMM (the recurrent ``W_a a⟨t-1⟩``) and one fused kernel
(bias-added pre-activations → gates, cell and hidden state, written straight into xrnn's stacked
buffers); the backward pass one fused kernel and one GEMM (``W_aᵀ dp``). Nothing in the loop
reads a value back to the host, so the loop never synchronises with the GPU. The generic kernels
of :mod:`xrnn.ops` are the reference these are tested against (``tests/test_backends.py``, run
where a GPU is present).

The kernels are built on first use, so importing this module needs no GPU.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from xrnn.ops import Ops

__all__ = ["CupyOps"]

# Stable sigmoid, as in xrnn.sigmoid: 0.5 * tanh(x / 2) + 0.5.
_SIG = "(T)0.5 * tanh((T)0.5 * ({0})) + (T)0.5"


@cache
def _kernels() -> dict[str, Any]:
    import cupy as cp

    return {
        "rnn_fwd": cp.ElementwiseKernel("T gx", "T h", "h = tanh(h + gx)", "xrnn_rnn_forward_step"),
        "rnn_bwd": cp.ElementwiseKernel(
            "T da_in, T da_next, T a",
            "T dp",
            "dp = (da_in + da_next) * ((T)1 - a * a)",
            "xrnn_rnn_backward_step",
        ),
        # f, u, o, cc hold the input projection on entry and the activated gates on exit.
        "lstm_fwd": cp.ElementwiseKernel(
            "T rf, T ru, T ro, T rc, T c_prev",
            "T f, T u, T o, T cc, T c, T h",
            f"""
            f = {_SIG.format("f + rf")};
            u = {_SIG.format("u + ru")};
            o = {_SIG.format("o + ro")};
            cc = tanh(cc + rc);
            c = f * c_prev + u * cc;
            h = o * tanh(c);
            """,
            "xrnn_lstm_forward_step",
        ),
        "lstm_bwd": cp.ElementwiseKernel(
            "T da_in, T da_next, T dc_next, T f, T u, T o, T cc, T c, T c_prev",
            "T dpf, T dpu, T dpo, T dpc, T dc_prev",
            """
            T da = da_in + da_next;
            T tc = tanh(c);
            T dc = dc_next + da * o * ((T)1 - tc * tc);
            dpo = da * tc * o * ((T)1 - o);
            dpc = dc * u * ((T)1 - cc * cc);
            dpu = dc * cc * u * ((T)1 - u);
            dpf = dc * c_prev * f * ((T)1 - f);
            dc_prev = dc * f;
            """,
            "xrnn_lstm_backward_step",
        ),
    }


def _gates(a: Any, n_a: int) -> tuple[Any, Any, Any, Any]:
    return a[:n_a], a[n_a : 2 * n_a], a[2 * n_a : 3 * n_a], a[3 * n_a :]


class CupyOps(Ops):
    """Step kernels as one GEMM plus one fused elementwise kernel per step and direction."""

    def __init__(self, xp: Any) -> None:
        super().__init__(xp)
        import cupy

        self.cp = cupy  # the library itself: its matmul takes out=, unlike the array API's

    def rnn_forward_step(self, H, GX, Waa, t):
        h = H[t + 1]
        self.cp.matmul(Waa, H[t], out=h)
        _kernels()["rnn_fwd"](GX[t], h)

    def rnn_backward_step(self, dP, j, da_t, H, WaaT, t, da_next):
        m = da_t.shape[1]
        dp = dP[:, j * m : (j + 1) * m]
        _kernels()["rnn_bwd"](da_t, da_next, H[t + 1], dp)
        return self.cp.matmul(WaaT, dp)

    def lstm_forward_step(self, G, H, C, Wa, t):
        n_a = H.shape[1]
        r = self.cp.matmul(Wa, H[t])
        _kernels()["lstm_fwd"](*_gates(r, n_a), C[t], *_gates(G[t], n_a), C[t + 1], H[t + 1])

    def lstm_backward_step(self, dP, j, da_t, G, C, WaT, t, da_next, dc_next):
        n_a, m = C.shape[1], C.shape[2]
        dp = dP[:, j * m : (j + 1) * m]
        dc_prev = self.cp.empty_like(dc_next)
        _kernels()["lstm_bwd"](
            da_t, da_next, dc_next, *_gates(G[t], n_a), C[t + 1], C[t], *_gates(dp, n_a), dc_prev
        )
        return self.cp.matmul(WaT, dp), dc_prev
