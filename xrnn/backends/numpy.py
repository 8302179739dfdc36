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
    """Step kernels with in-place ufuncs; same math as :class:`xrnn.ops.Ops`.

    Why it is faster: each step works on one *contiguous* ``(k n_a, m)`` scratch block (the
    recurrent GEMM's fresh output) with in-place ufuncs, and touches the strided time-blocked
    buffers only once to read and once to write — ufuncs on the strided column blocks run at
    about half speed, and the generic kernels' temporaries cost an allocation each.
    """

    def rnn_forward_step(self, H, GX, Waa, t, m):
        p = Waa @ H[:, _block(t, m)]
        p += GX[:, _block(t, m)]
        np.tanh(p, out=p)
        H[:, _block(t + 1, m)] = p

    def rnn_backward_step(self, dP, j, da_t, H, WaaT, t, m, da_next):
        dp = da_t + da_next
        a = H[:, _block(t + 1, m)]
        dp *= 1 - a * a
        dP[:, _block(j, m)] = dp
        return WaaT @ dp

    def lstm_forward_step(self, G, H, C, Wa, t, m):
        n_a = H.shape[0]
        cur, nxt = _block(t, m), _block(t + 1, m)
        p = Wa @ H[:, cur]  # contiguous (4n_a, m) scratch
        p += G[:, cur]
        _sigmoid_(p[: 3 * n_a, :])
        f, u, o, cct = p[:n_a, :], p[n_a : 2 * n_a, :], p[2 * n_a : 3 * n_a, :], p[3 * n_a :, :]
        np.tanh(cct, out=cct)
        c = f * C[:, cur]
        c += u * cct
        C[:, nxt] = c
        np.tanh(c, out=c)
        c *= o
        H[:, nxt] = c
        G[:, cur] = p

    def lstm_backward_step(self, dP, j, da_t, G, C, WaT, t, m, da_next, dc_next):
        n_a = C.shape[0]
        cur, nxt = _block(t, m), _block(t + 1, m)
        g = np.ascontiguousarray(G[:, cur])
        f, u, o, cct = g[:n_a, :], g[n_a : 2 * n_a, :], g[2 * n_a : 3 * n_a, :], g[3 * n_a :, :]
        da = da_t + da_next
        tc = np.tanh(C[:, nxt])
        dp = np.empty_like(g)
        dpf, dpu, dpo, dpc = (dp[k * n_a : (k + 1) * n_a, :] for k in range(4))
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
        np.multiply(dc, C[:, cur], out=dpf)
        np.multiply(dc, cct, out=dpu)
        s = g[: 3 * n_a, :]
        dp[: 3 * n_a, :] *= s
        dp[: 3 * n_a, :] *= 1 - s
        dP[:, _block(j, m)] = dp
        dc *= f  # now dc_prev
        return WaT @ dp, dc
