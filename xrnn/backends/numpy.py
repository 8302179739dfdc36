"""NumPy specifics: host-side helpers and in-place step kernels.

This is the only module of xrnn's kernels that imports NumPy. ``NumpyOps`` overrides the generic
step kernels of :mod:`xrnn.ops` with ufuncs that write into xrnn's own buffers (``out=``), which
saves most temporaries of the time loop; the generic kernels remain the reference it is tested
against.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from xrnn.ops import Ops

__all__ = ["NumpyOps", "cast", "cast_all", "to_numpy", "uniform_sampler", "zeros"]


def to_numpy(a: Any) -> np.ndarray:
    """A host NumPy copy of an array of any supported library (explicit, for ``to_device``)."""
    if hasattr(a, "get") and type(a).__module__.startswith("cupy"):
        return a.get()
    if type(a).__module__.startswith("torch"):
        return a.detach().cpu().numpy()
    try:
        return np.asarray(a)
    except (TypeError, ValueError, RuntimeError):
        return np.from_dlpack(a)


def zeros(shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros(shape)


def uniform_sampler(seed: int, n_a: int) -> Callable[[tuple[int, ...]], np.ndarray]:
    """Draws of ``U(-1/sqrt(n_a), 1/sqrt(n_a))`` from one seeded generator, in call order."""
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(n_a)
    return lambda shape: rng.uniform(-bound, bound, size=shape)


def cast(a: np.ndarray, dtype: Any) -> np.ndarray:
    """``a`` as ``dtype``; ``dtype`` may be another library's dtype object (torch.float32)."""
    if dtype is None:
        return a
    name = str(dtype).rsplit(".", 1)[-1]
    return a.astype(np.dtype(name))


def cast_all(arrays: dict[str, np.ndarray], dtype: Any) -> dict[str, np.ndarray]:
    return {k: cast(v, dtype) for k, v in arrays.items()}


def _sigmoid_(x: np.ndarray) -> None:
    """In-place ``0.5 * tanh(x / 2) + 0.5`` (no overflow, like :func:`xrnn.sigmoid`)."""
    x *= 0.5
    np.tanh(x, out=x)
    x *= 0.5
    x += 0.5


class NumpyOps(Ops):
    """Step kernels with in-place ufuncs; same math as :class:`xrnn.ops.Ops`.

    Each step works in place on its contiguous ``(features, m)`` block of xrnn's buffers
    (``out=``), which saves the generic kernels' temporaries and their allocations.
    """

    def rnn_forward_step(self, H, GX, Waa, t):
        h = H[t + 1]
        np.matmul(Waa, H[t], out=h)
        h += GX[t]
        np.tanh(h, out=h)

    def rnn_backward_step(self, dP, j, da_t, H, WaaT, t, da_next):
        dp = da_t + da_next
        a = H[t + 1]
        dp *= 1 - a * a
        m = dp.shape[1]
        dP[:, j * m : (j + 1) * m] = dp
        return WaaT @ dp

    def lstm_forward_step(self, G, H, C, Wa, t):
        n_a = H.shape[1]
        g = G[t]  # pre-activations in, gates out
        g += Wa @ H[t]
        _sigmoid_(g[: 3 * n_a])
        f, u, o, cct = g[:n_a], g[n_a : 2 * n_a], g[2 * n_a : 3 * n_a], g[3 * n_a :]
        np.tanh(cct, out=cct)
        c = C[t + 1]
        np.multiply(f, C[t], out=c)
        c += u * cct
        h = H[t + 1]
        np.tanh(c, out=h)
        h *= o

    def lstm_backward_step(self, dP, j, da_t, G, C, WaT, t, da_next, dc_next):
        n_a = C.shape[1]
        g = G[t]
        f, u, o, cct = g[:n_a], g[n_a : 2 * n_a], g[2 * n_a : 3 * n_a], g[3 * n_a :]
        dp = np.empty_like(g)  # contiguous scratch; copied into dP's column block at the end
        dpf, dpu, dpo, dpc = dp[:n_a], dp[n_a : 2 * n_a], dp[2 * n_a : 3 * n_a], dp[3 * n_a :]
        da = da_t + da_next
        tc = np.tanh(C[t + 1])
        np.multiply(da, tc, out=dpo)  # × Γo(1 − Γo) below, with the other sigmoid gates
        # dc = dc_next + da ∗ Γo ∗ (1 − tanh²(c))
        np.multiply(tc, tc, out=tc)
        np.subtract(1, tc, out=tc)
        tc *= o
        dc = da
        dc *= tc
        dc += dc_next
        # dc̃ = dc ∗ Γu ∗ (1 − c̃²)
        np.multiply(cct, cct, out=dpc)
        np.subtract(1, dpc, out=dpc)
        dpc *= u
        dpc *= dc
        # [dΓf; dΓu; dΓo] = [dc ∗ c_prev; dc ∗ c̃; da ∗ tanh(c)] ∗ σ(1 − σ)
        np.multiply(dc, C[t], out=dpf)
        np.multiply(dc, cct, out=dpu)
        s = g[: 3 * n_a]
        dps = dp[: 3 * n_a]
        dps *= s
        dps *= 1 - s
        dc *= f  # now dc_prev
        m = dp.shape[1]
        dP[:, j * m : (j + 1) * m] = dp
        return WaT @ dp, dc
