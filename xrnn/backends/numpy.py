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

from xrnn.ops import Ops, _block

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
    """Step kernels with in-place ufuncs on NumPy arrays; same math as :class:`xrnn.ops.Ops`."""

    def rnn_forward_step(self, H, GX, Waa, t, m):
        h = H[:, _block(t + 1, m)]
        np.matmul(Waa, H[:, _block(t, m)], out=h)
        h += GX[:, _block(t, m)]
        np.tanh(h, out=h)

    def rnn_backward_step(self, dP, dA, H, WaaT, t, m, da_next):
        dp = dP[:, _block(t, m)]
        a = H[:, _block(t + 1, m)]
        np.add(dA[:, _block(t, m)], da_next, out=dp)
        dp *= 1 - a * a
        return WaaT @ dp

    def lstm_forward_step(self, G, H, C, Wa, t, m):
        n_a = H.shape[0]
        cur, nxt = _block(t, m), _block(t + 1, m)
        g = G[:, cur]
        g += Wa @ H[:, cur]
        _sigmoid_(g[: 3 * n_a])
        cct = g[3 * n_a :]
        np.tanh(cct, out=cct)
        c = C[:, nxt]
        np.multiply(g[:n_a], C[:, cur], out=c)
        c += g[n_a : 2 * n_a] * cct
        h = H[:, nxt]
        np.tanh(c, out=h)
        h *= g[2 * n_a : 3 * n_a]

    def lstm_backward_step(self, dP, dA, G, C, WaT, t, m, da_next, dc_next):
        n_a = C.shape[0]
        cur, nxt = _block(t, m), _block(t + 1, m)
        g = G[:, cur]
        f, u, o, cct = g[:n_a], g[n_a : 2 * n_a], g[2 * n_a : 3 * n_a], g[3 * n_a :]
        dp = dP[:, cur]
        dpf, dpu, dpo, dpc = dp[:n_a], dp[n_a : 2 * n_a], dp[2 * n_a : 3 * n_a], dp[3 * n_a :]
        da = dA[:, cur] + da_next
        tc = np.tanh(C[:, nxt])
        # dΓo = da ∗ tanh(c) ∗ Γo(1 − Γo)
        np.multiply(da, tc, out=dpo)
        dpo *= o
        dpo *= 1 - o
        # dc = dc_next + da ∗ Γo ∗ (1 − tanh²(c))   (reuses tc and da as scratch)
        np.multiply(tc, tc, out=tc)
        np.subtract(1, tc, out=tc)
        da *= o
        da *= tc
        dc = da
        dc += dc_next
        # dc̃ = dc ∗ Γu ∗ (1 − c̃²);  dΓu = dc ∗ c̃ ∗ Γu(1 − Γu);  dΓf = dc ∗ c_prev ∗ Γf(1 − Γf)
        np.multiply(cct, cct, out=dpc)
        np.subtract(1, dpc, out=dpc)
        dpc *= u
        dpc *= dc
        np.multiply(dc, cct, out=dpu)
        dpu *= u
        dpu *= 1 - u
        np.multiply(dc, C[:, cur], out=dpf)
        dpf *= f
        dpf *= 1 - f
        dc *= f  # now dc_prev
        return WaT @ dp, dc
