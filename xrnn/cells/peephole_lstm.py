"""The peephole LSTM (Gers & Schmidhuber, 2000; TensorFlow's ``PeepholeLSTMCell``).

With ``z = [a⟨t-1⟩; x⟨t⟩]`` and per-unit peephole weights ``pf``, ``pi``, ``po``::

    Γf = σ(Wf z + bf + pf ∗ c⟨t-1⟩)
    Γu = σ(Wi z + bi + pi ∗ c⟨t-1⟩)
    c̃  = tanh(Wc z + bc)
    c⟨t⟩ = Γf ∗ c⟨t-1⟩ + Γu ∗ c̃
    Γo = σ(Wo z + bo + po ∗ c⟨t⟩)
    a⟨t⟩ = Γo ∗ tanh(c⟨t⟩)

Keys as the LSTM's (``Wf, bf, Wi, bi, Wc, bc, Wo, bo``) plus ``pf, pi, po`` of shape
``(n_a, 1)``, initialised to zero (where the cell is the LSTM exactly); ``bf`` starts at 1.
"""

from __future__ import annotations

from xrnn.cells.base import register
from xrnn.cells.elementwise import ElementwiseCell

__all__ = ["PEEPHOLE_LSTM_CELL", "PeepholeLSTMCell"]


class PeepholeLSTMCell(ElementwiseCell):
    """The peephole LSTM's spec: gate blocks ``[Γf; Γu; Γo; c̃]``, vectors ``pf, pi, po``;
    saves the activated gates."""

    name = "peephole_lstm"
    gates = (("Wf", "bf"), ("Wi", "bi"), ("Wo", "bo"), ("Wc", "bc"))
    vectors = ("pf", "pi", "po")
    states = ("a", "c")
    saves = ("ft", "it", "ot", "cct")
    bias_init = {"bf": 1.0}

    @staticmethod
    def forward(m, zf, zi, zo, zc, pf, pi, po, a_prev, c_prev):
        f = m.sigmoid(zf + pf * c_prev)
        i = m.sigmoid(zi + pi * c_prev)
        cc = m.tanh(zc)
        c = f * c_prev + i * cc
        o = m.sigmoid(zo + po * c)
        return (o * m.tanh(c), c), (f, i, o, cc)

    @staticmethod
    def backward(m, f, i, o, cc, pf, pi, po, a_prev, c_prev, a, c, da, dc):
        tc = m.tanh(c)
        dzo = da * tc * o * (1 - o)
        dct = dc + da * o * (1 - tc * tc) + dzo * po  # c⟨t⟩ also reaches Γo through po
        dzi = dct * cc * i * (1 - i)
        dzc = dct * i * (1 - cc * cc)
        dzf = dct * c_prev * f * (1 - f)
        dc_prev = dct * f + dzf * pf + dzi * pi
        return (dzf, dzi, dzo, dzc), (dzf * c_prev, dzi * c_prev, dzo * c), (None, dc_prev)


PEEPHOLE_LSTM_CELL = register(PeepholeLSTMCell())
