"""The GRU cell in the PyTorch/cuDNN form: its keys, gate layout, initialisation, PyTorch
layout, exercise cache and pointwise math (the exercise-style functions are in :mod:`xrnn.gru`).

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

from xrnn.cells.base import register, torch_bias
from xrnn.cells.elementwise import ElementwiseCell

__all__ = ["GATES", "GRU_CELL", "GRUCell"]

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
