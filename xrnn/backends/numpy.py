"""NumPy step kernels: in-place ufuncs writing into xrnn's own buffers (``out=``).

This is the only kernel module that imports NumPy. Each kernel computes what its cell's
``forward_pointwise``/``backward_pointwise`` computes (the reference it is tested against) and
saves most of the reference's temporaries and allocations. Registered per cell with
:meth:`xrnn.ops.Ops.register`; a cell without a kernel here runs its reference math.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from xrnn.ops import InPlaceOps

__all__ = ["NumpyOps"]


class NumpyOps(InPlaceOps):
    """In-place NumPy storage and step kernels; same math as :class:`xrnn.ops.Ops`."""

    lib = np

    def all_finite(self, values: list, conditions: list) -> bool:
        # host arrays: reading a sum back costs nothing, so no stacking into one read
        with np.errstate(all="ignore"):  # a sum of finite values may overflow: caller rechecks
            for value in values:
                if not math.isfinite(np.add.reduce(value, axis=None)):
                    return False
        return all(bool(ok) for ok in conditions)

    def all_full(self, lengths: Any, T: int) -> bool:
        # a host array: reading it costs nothing, and full lengths skip the masking entirely
        return bool(np.all(lengths == T))

    def quiet(self) -> Any:
        return np.errstate(over="ignore", invalid="ignore", divide="ignore")  # this thread's


def _sigmoid_(x: np.ndarray) -> None:
    """In-place ``0.5 * tanh(x / 2) + 0.5`` (no overflow, like :func:`xrnn.sigmoid`)."""
    x *= 0.5
    np.tanh(x, out=x)
    x *= 0.5
    x += 0.5


# --- RNN ---------------------------------------------------------------------------------


@NumpyOps.register("rnn", "forward")
def rnn_forward(ops, cell, W, gx, state, slot):
    h = slot.states[0]
    np.matmul(W.Wa, state[0], out=h)
    h += gx
    np.tanh(h, out=h)
    return (h,), None


@NumpyOps.register("rnn", "backward")
def rnn_backward(ops, cell, saved, prev, new, up, slot):
    a = new[0]
    dp = up[0]
    dp *= 1 - a * a
    return dp, dp, (None,)


@NumpyOps.register("rnn_relu", "forward")
def rnn_relu_forward(ops, cell, W, gx, state, slot):
    h = slot.states[0]
    np.matmul(W.Wa, state[0], out=h)
    h += gx
    np.maximum(h, 0, out=h)
    return (h,), None


@NumpyOps.register("rnn_relu", "backward")
def rnn_relu_backward(ops, cell, saved, prev, new, up, slot):
    dp = up[0]
    dp *= new[0] > 0
    return dp, dp, (None,)


# --- LSTM --------------------------------------------------------------------------------


def lstm_forward(ops, cell, W, gx, state, slot):
    n_a = int(state[0].shape[0])
    g = slot.saved  # GX[t] itself: pre-activations in, gates out
    np.add(gx, W.Wa @ state[0], out=g)
    _sigmoid_(g[: 3 * n_a])
    f, u, o, cct = g[:n_a], g[n_a : 2 * n_a], g[2 * n_a : 3 * n_a], g[3 * n_a :]
    np.tanh(cct, out=cct)
    h, c = slot.states
    np.multiply(f, state[1], out=c)
    c += u * cct
    np.tanh(c, out=h)
    h *= o
    return (h, c), g


lstm_forward.saved_in_gx = True  # type: ignore[attr-defined]
NumpyOps.register("lstm", "forward")(lstm_forward)


@NumpyOps.register("lstm", "backward")
def lstm_backward(ops, cell, saved, prev, new, up, slot):
    n_a = int(prev[0].shape[0])
    g = saved
    f, u, o, cct = g[:n_a], g[n_a : 2 * n_a], g[2 * n_a : 3 * n_a], g[3 * n_a :]
    dp = np.empty_like(g)  # contiguous scratch; the store copies it into its column block
    dpf, dpu, dpo, dpc = dp[:n_a], dp[n_a : 2 * n_a], dp[2 * n_a : 3 * n_a], dp[3 * n_a :]
    da, dc_next = up
    tc = np.tanh(new[1])
    np.multiply(da, tc, out=dpo)  # × Γo(1 − Γo) below, with the other sigmoid gates
    # dc = dc_next + da ∗ Γo ∗ (1 − tanh²(c))
    np.multiply(tc, tc, out=tc)
    np.subtract(1, tc, out=tc)
    tc *= o
    dc = da  # up[0] is the engine's temporary
    dc *= tc
    dc += dc_next
    # dc̃ = dc ∗ Γu ∗ (1 − c̃²)
    np.multiply(cct, cct, out=dpc)
    np.subtract(1, dpc, out=dpc)
    dpc *= u
    dpc *= dc
    # [dΓf; dΓu; dΓo] = [dc ∗ c_prev; dc ∗ c̃; da ∗ tanh(c)] ∗ σ(1 − σ)
    np.multiply(dc, prev[1], out=dpf)
    np.multiply(dc, cct, out=dpu)
    s = g[: 3 * n_a]
    dps = dp[: 3 * n_a]
    dps *= s
    dps *= 1 - s
    dc *= f  # now dc_prev
    return dp, dp, (None, dc)


# --- GRU ---------------------------------------------------------------------------------


@NumpyOps.register("gru", "forward")
def gru_forward(ops, cell, W, gx, state, slot):
    n_a = int(state[0].shape[0])
    S = slot.saved  # [Γr; Γz; ñ; hn]
    ra = W.Wa @ state[0]
    s = S[: 2 * n_a]
    np.add(gx[: 2 * n_a], ra[: 2 * n_a], out=s)
    _sigmoid_(s)
    n, hn = S[2 * n_a : 3 * n_a], S[3 * n_a :]
    np.add(ra[2 * n_a :], W.bh, out=hn)
    np.multiply(s[:n_a], hn, out=n)
    n += gx[2 * n_a :]
    np.tanh(n, out=n)
    h = slot.states[0]
    np.subtract(state[0], n, out=h)
    h *= s[n_a:]
    h += n
    return (h,), S


@NumpyOps.register("gru", "backward")
def gru_backward(ops, cell, saved, prev, new, up, slot):
    n_a = int(prev[0].shape[0])
    r, z = saved[:n_a], saved[n_a : 2 * n_a]
    n, hn = saved[2 * n_a : 3 * n_a], saved[3 * n_a :]
    da = up[0]
    dgx = np.empty((3 * n_a, da.shape[1]), dtype=da.dtype)
    dr, dz, dn = dgx[:n_a], dgx[n_a : 2 * n_a], dgx[2 * n_a :]
    one_minus = 1 - z
    # dñ = da ∗ (1 − Γz) ∗ (1 − ñ²)
    np.multiply(n, n, out=dn)
    np.subtract(1, dn, out=dn)
    dn *= one_minus
    dn *= da
    # dΓz = da ∗ (a⟨t-1⟩ − ñ) ∗ Γz(1 − Γz)
    np.subtract(prev[0], n, out=dz)
    dz *= da
    dz *= z
    dz *= one_minus
    # dΓr = dñ ∗ hn ∗ Γr(1 − Γr)
    np.subtract(1, r, out=one_minus)
    np.multiply(dn, hn, out=dr)
    dr *= r
    dr *= one_minus
    dra = np.empty_like(dgx)
    dra[: 2 * n_a] = dgx[: 2 * n_a]
    np.multiply(dn, r, out=dra[2 * n_a :])
    da *= z  # the direct path to a⟨t-1⟩ (up[0] is the engine's temporary)
    return dgx, dra, (da,)
