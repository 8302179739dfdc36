"""The LSTM cell: its keys, gate layout, initialisation, PyTorch layout, exercise cache and
pointwise math.

With ``z = [a⟨t-1⟩; x⟨t⟩]``: ``Γf = σ(Wf z + bf)``, ``Γu = σ(Wi z + bi)``,
``c̃ = tanh(Wc z + bc)``, ``Γo = σ(Wo z + bo)``, ``c⟨t⟩ = Γf∗c⟨t-1⟩ + Γu∗c̃``,
``a⟨t⟩ = Γo∗tanh(c⟨t⟩)``. The exercise's functions over it are in :mod:`xrnn.lstm`.
"""

from __future__ import annotations

import array_api_compat

from xrnn.cells.base import register
from xrnn.cells.elementwise import ElementwiseCell

__all__ = ["GATES", "LSTM_CELL", "TORCH_GATES", "LSTMCell"]

# (weight, bias) per gate in the stacked order: the three sigmoid gates first, then c̃.
GATES = (("Wf", "bf"), ("Wi", "bi"), ("Wo", "bo"), ("Wc", "bc"))
# PyTorch stacks (i, f, g, o): our keys in its order.
TORCH_GATES = (("Wi", "bi"), ("Wf", "bf"), ("Wc", "bc"), ("Wo", "bo"))


class LSTMCell(ElementwiseCell):
    """The spec of the LSTM: four gate blocks ``[Γf; Γu; Γo; c̃]``; saves the activated gates."""

    name = "lstm"
    functions = "lstm"
    gates = GATES
    torch_gates = TORCH_GATES
    keys = ("Wf", "bf", "Wi", "bi", "Wc", "bc", "Wo", "bo")
    states = ("a", "c")
    saves = ("ft", "it", "ot", "cct")
    cache_layout = "(a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)"

    @staticmethod
    def forward(m, zf, zi, zo, zc, a_prev, c_prev):
        f, i, o = m.sigmoid(zf), m.sigmoid(zi), m.sigmoid(zo)
        cct = m.tanh(zc)
        c = f * c_prev + i * cct
        return (o * m.tanh(c), c), (f, i, o, cct)

    @staticmethod
    def backward(m, f, i, o, cct, a_prev, c_prev, a, c, da, dc):
        """The corrected equations (erratum 1): with ``dc = dc⟨t⟩ + da∗Γo∗(1 − tanh²(c⟨t⟩))``
        (the tanh′ factor multiplies only the ``da`` term),
        ``dΓo = da∗tanh(c⟨t⟩)∗Γo(1−Γo)``, ``dc̃ = dc∗Γu∗(1−c̃²)``, ``dΓu = dc∗c̃∗Γu(1−Γu)``,
        ``dΓf = dc∗c⟨t-1⟩∗Γf(1−Γf)``, ``dc⟨t-1⟩ = dc∗Γf``."""
        tc = m.tanh(c)
        dct = dc + da * o * (1 - tc * tc)
        dzf = dct * c_prev * f * (1 - f)
        dzi = dct * cct * i * (1 - i)
        dzo = da * tc * o * (1 - o)
        dzc = dct * i * (1 - cct * cct)
        return (dzf, dzi, dzo, dzc), (), (None, dct * f)

    def draw(self, uniform, zeros, n_x, n_a):
        # Biases zero except the forget gate's bf = 1, which keeps the cell's memory open early
        # in training (Jozefowicz et al., 2015). Draw order fixed: seeds stay reproducible.
        out = {}
        for w, b in (("Wf", "bf"), ("Wi", "bi"), ("Wc", "bc"), ("Wo", "bo")):
            out[w] = uniform((n_a, n_a + n_x))
            out[b] = zeros((n_a, 1)) + (1.0 if w == "Wf" else 0.0)
        return out

    def cache_tuple(self, prev, new, saved, xt, parameters):
        n_a = int(prev[0].shape[0])
        f, u = saved[:n_a, :], saved[n_a : 2 * n_a, :]
        o, cct = saved[2 * n_a : 3 * n_a, :], saved[3 * n_a :, :]
        return (new[0], new[1], prev[0], prev[1], f, u, cct, o, xt, parameters)

    def cache_parts(self, cache):
        a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters = cache
        xp = array_api_compat.array_namespace(ft, it, cct, ot)
        saved = xp.concat([ft, it, ot, cct], axis=0)
        return (a_prev, c_prev), (a_next, c_next), saved, xt, parameters


LSTM_CELL = register(LSTMCell())
