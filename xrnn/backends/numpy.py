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
