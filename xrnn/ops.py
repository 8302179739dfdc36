"""Generic per-step kernels of the sequence functions, written against the array API.

The sequence functions keep their state in stacked 3-D buffers, time-major with a
feature-major ``(features, m)`` block per step, so every per-step read and write is one
contiguous block and each gate is a contiguous slab of it:

- ``G`` (T, 4n_a, m): LSTM gate pre-activations for all steps (input projection plus bias,
  computed before the loop), overwritten step by step with the activated gates
  ``[Γf; Γu; Γo; c̃]`` — the three sigmoid gates first so one sigmoid covers them.
- ``H`` and ``C`` (T+1, n_a, m): hidden and cell states, block 0 holding ``a0``/``c0``.
- ``dP`` (k*n_a, K*m): gradients of the pre-activations of a chunk of K steps, column block
  ``j`` for its step ``j``; reduced into ``dW``, ``db`` and ``dx`` by 2-D GEMMs after each
  chunk (:mod:`xrnn.bptt`).

``Ops`` is the reference: every backend can run it. ``xrnn.backends`` picks a subclass that
overrides only the step methods (in-place NumPy ufuncs, fused CuPy kernels); the subclasses are
tested against this class.
"""

from __future__ import annotations

from typing import Any

from xrnn.activations import sigmoid

__all__ = [
    "Ops",
    "lstm_pointwise_backward",
    "lstm_pointwise_forward",
    "rnn_pointwise_backward",
    "rnn_pointwise_forward",
]


# --- pointwise math, one function per cell and direction ------------------------------------
# Feature-major blocks: rows are units, columns are batch entries; gates are row ranges.


def rnn_pointwise_forward(xp: Any, p: Any) -> Any:
    """``a⟨t⟩ = tanh(p)`` for the pre-activation ``p = Waa a⟨t-1⟩ + Wax x⟨t⟩ + ba``."""
    return xp.tanh(p)


def rnn_pointwise_backward(xp: Any, a_next: Any, da: Any) -> Any:
    """Gradient of the pre-activation: ``dp = da ∗ (1 − a⟨t⟩²)``."""
    return da * (1 - a_next * a_next)


def lstm_pointwise_forward(xp: Any, p: Any, c_prev: Any, n_a: int) -> tuple[Any, Any, Any]:
    """Activate stacked gate pre-activations and advance the cell.

    Parameters
    ----------
    p : array of shape (4 n_a, m)
        Pre-activations in the stacked order ``[f; u; o; c̃]``.
    c_prev : array of shape (n_a, m)

    Returns
    -------
    gates : array of shape (4 n_a, m)
        ``[Γf; Γu; Γo; c̃]``.
    c_next, a_next : arrays of shape (n_a, m)
        ``c⟨t⟩ = Γf∗c⟨t-1⟩ + Γu∗c̃`` and ``a⟨t⟩ = Γo∗tanh(c⟨t⟩)``.
    """
    s = sigmoid(p[: 3 * n_a, :])
    cct = xp.tanh(p[3 * n_a :, :])
    c_next = s[:n_a, :] * c_prev + s[n_a : 2 * n_a, :] * cct
    a_next = s[2 * n_a :, :] * xp.tanh(c_next)
    return xp.concat([s, cct], axis=0), c_next, a_next


def lstm_pointwise_backward(
    xp: Any, gates: Any, c_next: Any, c_prev: Any, da: Any, dc_next: Any, n_a: int
) -> tuple[Any, Any]:
    """Gradients of the stacked pre-activations and of ``c⟨t-1⟩`` for one step.

    Parameters
    ----------
    gates : array of shape (4 n_a, m)
        ``[Γf; Γu; Γo; c̃]`` from the forward step.
    c_next, c_prev : arrays of shape (n_a, m)
    da, dc_next : arrays of shape (n_a, m)
        Total upstream gradients of ``a⟨t⟩`` and ``c⟨t⟩``.

    Returns
    -------
    dp : array of shape (4 n_a, m)
        ``[dΓf; dΓu; dΓo; dc̃]`` with respect to the pre-activations (σ′, tanh′ applied once).
    dc_prev : array of shape (n_a, m)

    Notes
    -----
    With ``dc = dc_next + da∗Γo∗(1 − tanh²(c⟨t⟩))`` (the σ′/tanh′ factor multiplies the whole
    sum — erratum 1 of the exercise):
    ``dΓo = da∗tanh(c⟨t⟩)∗Γo(1−Γo)``, ``dc̃ = dc∗Γu∗(1−c̃²)``, ``dΓu = dc∗c̃∗Γu(1−Γu)``,
    ``dΓf = dc∗c⟨t-1⟩∗Γf(1−Γf)``, ``dc_prev = dc∗Γf``.
    """
    f = gates[:n_a, :]
    u = gates[n_a : 2 * n_a, :]
    o = gates[2 * n_a : 3 * n_a, :]
    cct = gates[3 * n_a :, :]
    tc = xp.tanh(c_next)
    dc = dc_next + da * o * (1 - tc * tc)
    dp = xp.concat(
        [
            dc * c_prev * f * (1 - f),
            dc * cct * u * (1 - u),
            da * tc * o * (1 - o),
            dc * u * (1 - cct * cct),
        ],
        axis=0,
    )
    return dp, dc * f


# --- step drivers ----------------------------------------------------------------------------


class Ops:
    """Per-step kernels of the time loops; backends override these and nothing else.

    Every method only writes into xrnn's own buffers (``H``, ``C``, ``G``, ``dP``), never into
    an array the user passed.
    """

    def __init__(self, xp: Any) -> None:
        self.xp = xp

    def rnn_forward_step(self, H: Any, GX: Any, Waa: Any, t: int) -> None:
        """``H[t+1] = tanh(GX[t] + Waa @ H[t])``."""
        xp = self.xp
        p = GX[t, :, :] + xp.matmul(Waa, H[t, :, :])
        H[t + 1, :, :] = rnn_pointwise_forward(xp, p)

    def rnn_backward_step(
        self, dP: Any, j: int, da_t: Any, H: Any, WaaT: Any, t: int, da_next: Any
    ) -> Any:
        """Step ``t`` with upstream ``da_t`` (n_a, m): fill ``dP[:, block j]``, return
        ``da_prev = Waaᵀ dp`` (n_a, m)."""
        xp = self.xp
        dp = rnn_pointwise_backward(xp, H[t + 1, :, :], da_t + da_next)
        m = int(dp.shape[1])
        dP[:, j * m : (j + 1) * m] = dp
        return xp.matmul(WaaT, dp)

    def lstm_forward_step(self, G: Any, H: Any, C: Any, Wa: Any, t: int) -> None:
        """Activate ``G[t]`` in place and write ``C[t+1]`` and ``H[t+1]``."""
        xp = self.xp
        n_a = H.shape[1]
        p = G[t, :, :] + xp.matmul(Wa, H[t, :, :])
        gates, c_next, a_next = lstm_pointwise_forward(xp, p, C[t, :, :], n_a)
        G[t, :, :] = gates
        C[t + 1, :, :] = c_next
        H[t + 1, :, :] = a_next

    def lstm_backward_step(
        self,
        dP: Any,
        j: int,
        da_t: Any,
        G: Any,
        C: Any,
        WaT: Any,
        t: int,
        da_next: Any,
        dc_next: Any,
    ) -> tuple[Any, Any]:
        """Step ``t`` with upstream ``da_t`` (n_a, m): fill ``dP[:, block j]``, return
        ``(da_prev, dc_prev)``, each (n_a, m)."""
        xp = self.xp
        n_a, m = int(C.shape[1]), int(C.shape[2])
        dp, dc_prev = lstm_pointwise_backward(
            xp, G[t, :, :], C[t + 1, :, :], C[t, :, :], da_t + da_next, dc_next, n_a
        )
        dP[:, j * m : (j + 1) * m] = dp
        return xp.matmul(WaT, dp), dc_prev
