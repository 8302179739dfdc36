"""The GRU in the PyTorch/cuDNN form: its spec, and cell and sequence functions in the
exercise's conventions.

With ``z = [a⟨t-1⟩; x⟨t⟩]`` and each ``W·`` split into its hidden part ``W·ᵃ`` (first ``n_a``
columns) and input part ``W·ˣ``::

    Γr = σ(Wr z + br)
    Γz = σ(Wz z + bz)
    ñ  = tanh(Wnˣ x⟨t⟩ + bn + Γr ∗ (Wnᵃ a⟨t-1⟩ + bhn))
    a⟨t⟩ = (1 − Γz) ∗ ñ + Γz ∗ a⟨t-1⟩

``bhn`` is the hidden-side bias of the candidate, inside the reset gate's product: PyTorch's
``b_hn``, which cannot be merged with ``bn`` (``b_in``); ``br``/``bz`` are PyTorch's two biases
of those gates summed.
"""

from __future__ import annotations

from typing import Any

from xrnn.cell import register, torch_bias
from xrnn.cells.elementwise import ElementwiseCell
from xrnn.engine import run_backward, run_cell_backward, run_cell_forward, run_forward
from xrnn.params import initialize

__all__ = [
    "GRU_CELL",
    "gru_backward",
    "gru_cell_backward",
    "gru_cell_forward",
    "gru_forward",
    "initialize_gru",
]

# (weight, input-side bias) per gate, in the stacked order, which is also PyTorch's (r, z, n).
GATES = (("Wr", "br"), ("Wz", "bz"), ("Wn", "bn"))


class GRUCell(ElementwiseCell):
    """The spec of the GRU: gate blocks ``[Γr; Γz; ñ]``, the candidate's input side
    ``Wnˣ x⟨t⟩ + bn`` and recurrent side ``Wnᵃ a⟨t-1⟩`` apart (the reset gate scales the
    latter), ``bhn`` a per-unit vector; saves ``[Γr; Γz; ñ; hn]`` where
    ``hn = Wnᵃ a⟨t-1⟩ + bhn``."""

    name = "gru"
    functions = "gru"
    gates = torch_gates = GATES  # PyTorch's order is the stacked one
    apart = ("Wn",)
    vectors = ("bhn",)
    saves = ("rt", "zt", "nt", "hnt")

    @staticmethod
    def forward(m, zr, zz, xn, hn, bhn, a_prev):
        r, z = m.sigmoid(zr), m.sigmoid(zz)
        hn = hn + bhn
        n = m.tanh(xn + r * hn)
        return (n + z * (a_prev - n),), (r, z, n, hn)  # (1 − Γz) ∗ ñ + Γz ∗ a⟨t-1⟩

    @staticmethod
    def backward(m, r, z, n, hn, bhn, a_prev, a, da):
        """With ``da`` the upstream gradient of ``a⟨t⟩``:
        ``dñ = da∗(1−Γz)∗(1−ñ²)``, ``dΓz = da∗(a⟨t-1⟩−ñ)∗Γz(1−Γz)``,
        ``dΓr = dñ∗hn∗Γr(1−Γr)``, ``dhn = dñ∗Γr`` (the recurrent side's, and ``bhn``'s);
        ``a⟨t-1⟩`` also gets ``da∗Γz`` directly."""
        dn = da * (1 - z) * (1 - n * n)
        dz = da * (a_prev - n) * z * (1 - z)
        dr = dn * hn * r * (1 - r)
        dhn = dn * r
        return (dr, dz, dn, dhn), (dhn,), (da * z,)

    def torch_order(self):
        return self.torch_gates  # bhn is PyTorch's b_hn (to_torch)

    def to_torch(self, xp, parameters, n_a):
        zeros = xp.zeros_like(parameters["br"][:, 0])
        return {
            **self.torch_weights(xp, parameters, n_a),
            "bias_ih": xp.concat([parameters[b][:, 0] for _, b in GATES]),
            "bias_hh": xp.concat([zeros, zeros, parameters["bhn"][:, 0]]),
        }

    def from_torch(self, xp, weight_ih, weight_hh, bias_ih, bias_hh, n_a):
        out = self.weights_from_torch(xp, weight_ih, weight_hh, n_a)
        merged = torch_bias(xp, bias_ih, bias_hh, weight_hh)  # valid for r and z only
        out["br"] = xp.reshape(merged[:n_a], (n_a, 1))
        out["bz"] = xp.reshape(merged[n_a : 2 * n_a], (n_a, 1))
        if bias_ih is None:
            out["bn"] = out["bhn"] = xp.reshape(merged[2 * n_a :], (n_a, 1))
        else:
            out["bn"] = xp.reshape(bias_ih[2 * n_a :], (n_a, 1))
            out["bhn"] = xp.reshape(bias_hh[2 * n_a :], (n_a, 1))
        return out


GRU_CELL = register(GRUCell())


def initialize_gru(
    n_x: int,
    n_a: int,
    n_y: int | None = None,
    *,
    seed: int = 0,
    dtype: Any = None,
    like: Any = None,
) -> dict[str, Any]:
    """Random GRU parameters ``Wr, Wz, Wn (n_a, n_a + n_x)``, ``br, bz, bn, bhn (n_a, 1)``
    and, when ``n_y`` is given, ``Wy (n_y, n_a)``, ``by (n_y, 1)``.

    Weights are uniform in ``±1/sqrt(n_a)`` (PyTorch's ``nn.GRU`` default) from a NumPy
    ``Generator`` seeded with ``seed``; biases start at zero. ``like`` and ``dtype`` as in
    :func:`xrnn.initialize_rnn`.
    """
    return initialize(
        GRU_CELL.draw, GRU_CELL.output_keys, n_x, n_a, n_y, seed=seed, dtype=dtype, like=like
    )


def gru_cell_forward(
    xt: Any, a_prev: Any, parameters: dict[str, Any], *, check_finite: bool = True
) -> tuple[Any, Any, tuple]:
    """One step of the GRU.

    Parameters
    ----------
    xt : array of shape (n_x, m)
    a_prev : array of shape (n_a, m)
    parameters : dict of arrays
        ``Wr, Wz, Wn (n_a, n_a + n_x)`` acting on ``[a_prev; xt]``, ``br, bz, bn, bhn
        (n_a, 1)``; optionally the output layer ``Wy (n_y, n_a)``, ``by (n_y, 1)``.
    check_finite : bool, default True
        Refuse NaN/inf in the inputs and parameters with a ``ValueError``.

    Returns
    -------
    a_next : array of shape (n_a, m)
    yt_pred : array of shape (n_y, m), or None without an output layer
    cache : tuple ``(a_next, a_prev, rt, zt, nt, hnt, xt, parameters)``
        ``hnt = Wnᵃ a_prev + bhn``, each gate (n_a, m).

    Notes
    -----
    ``Γr = σ(Wr z + br)``, ``Γz = σ(Wz z + bz)``,
    ``ñ = tanh(Wnˣ x⟨t⟩ + bn + Γr ∗ (Wnᵃ a⟨t-1⟩ + bhn))``, ``a⟨t⟩ = (1 − Γz)∗ñ + Γz∗a⟨t-1⟩``.
    """
    (a_next,), yt, cache = run_cell_forward(
        GRU_CELL, xt, (a_prev,), parameters, check_finite=check_finite
    )
    return a_next, yt, cache


def gru_forward(
    x: Any,
    a0: Any,
    parameters: dict[str, Any],
    *,
    lengths: Any = None,
    reverse: bool = False,
    check_finite: bool = True,
    return_caches: bool = True,
) -> tuple[Any, Any, tuple]:
    """The GRU over a whole sequence.

    Parameters
    ----------
    x : array of shape (n_x, m, T_x)
    a0 : array of shape (n_a, m)
    parameters : dict of arrays
        As in :func:`gru_cell_forward`.
    lengths : integer array of shape (m,), optional
        Each sequence's length (1 ≤ length ≤ T_x); see :func:`xrnn.rnn_forward`.
    reverse : bool, default False
        Run each sequence backwards over its own length; see :func:`xrnn.rnn_forward`.
    check_finite : bool, default True
        Refuse NaN/inf and lengths out of range with a ``ValueError``.
    return_caches : bool, default True
        False for a forward whose backward never runs (sampling, evaluation): ``caches``
        is then None and no per-step state is kept for it.

    Returns
    -------
    a : array of shape (n_a, m, T_x)
    y : array of shape (n_y, m, T_x), or None without an output layer
    caches : tuple ``(step_caches, x)``
        ``step_caches[t]`` is step t's 8-tuple cache (views of stacked buffers);
        ``step_caches.final_states()`` is ``(a_T,)``.

    Examples
    --------
    >>> import numpy as np, xrnn
    >>> p = xrnn.initialize_gru(3, 5, seed=0)
    >>> x = np.random.default_rng(0).normal(size=(3, 4, 6))
    >>> a, y, caches = xrnn.gru_forward(x, np.zeros((5, 4)), p, reverse=True)
    >>> g = xrnn.gru_backward(np.ones_like(a), caches)
    >>> g["dx"].shape, g["dbhn"].shape
    ((3, 4, 6), (5, 1))
    """
    (a,), y, caches = run_forward(
        GRU_CELL,
        x,
        (a0,),
        parameters,
        lengths=lengths,
        reverse=reverse,
        check_finite=check_finite,
        return_caches=return_caches,
    )
    return a, y, caches


def gru_cell_backward(da_next: Any, cache: tuple, *, check_finite: bool = True) -> dict[str, Any]:
    """Backward pass of one GRU step.

    Parameters
    ----------
    da_next : array of shape (n_a, m)
    cache : tuple
        The 8-tuple from :func:`gru_cell_forward`.

    Returns
    -------
    dict
        ``dxt (n_x, m)``, ``da_prev (n_a, m)``, ``dWr, dWz, dWn (n_a, n_a + n_x)``,
        ``dbr, dbz, dbn, dbhn (n_a, 1)``.

    Notes
    -----
    ``dñ = da∗(1−Γz)∗(1−ñ²)``, ``dΓz = da∗(a⟨t-1⟩−ñ)∗Γz(1−Γz)``, ``dΓr = dñ∗hn∗Γr(1−Γr)``;
    the hidden part of ``Wn`` and ``bhn`` see ``dñ∗Γr``; ``da_prev`` adds ``da∗Γz``.
    """
    return run_cell_backward(GRU_CELL, (da_next,), cache, check_finite=check_finite)


def gru_backward(
    da: Any, caches: tuple, *, dfinal: tuple | None = None, check_finite: bool = True
) -> dict[str, Any]:
    """Backpropagation through time for :func:`gru_forward`.

    Parameters
    ----------
    da : array of shape (n_a, m, T_x)
    caches : tuple
        ``(step_caches, x)`` from :func:`gru_forward` (or a list of 8-tuples in place of
        ``step_caches``).
    dfinal : tuple ``(da_T,)`` of arrays of shape (n_a, m), optional
        Upstream gradient of the final states ``caches[0].final_states()`` (from a later
        chunk of a long sequence, or a loss on the final state). Default: none.

    Returns
    -------
    dict
        ``dx (n_x, m, T_x)``, ``da0 (n_a, m)``, ``dWr, dWz, dWn (n_a, n_a + n_x)``,
        ``dbr, dbz, dbn, dbhn (n_a, 1)``.
    """
    return run_backward(
        GRU_CELL, da, caches, "gru_forward", dfinal=dfinal, check_finite=check_finite
    )
