"""Test cells of every shape the cell contract allows: a written backward that saves nothing, a
derived one, vectors, a direct path to ``a⟨t-1⟩``, one to three state components (and the
peephole LSTM). The kernel, autograd, scan and inference tests run each of them."""

from __future__ import annotations

import xrnn


class Residual(xrnn.ElementwiseCell):
    """A written backward that saves nothing, a vector and a direct path to a⟨t-1⟩."""

    name = "test_residual"
    gates = (("W", "b"),)
    vectors = ("d",)

    @staticmethod
    def forward(m, z, d, a_prev):
        return (m.tanh(z) + d * a_prev,), ()

    @staticmethod
    def backward(m, d, a_prev, a, da):
        t = a - d * a_prev  # tanh(z)
        return (da * (1 - t * t),), (da * a_prev,), (da * d,)


class ThreeStates(xrnn.ElementwiseCell):
    """A derived backward over three state components."""

    name = "test_three_states"
    gates = (("Wf", "bf"), ("Wg", "bg"), ("Wo", "bo"))
    states = ("a", "c", "h")

    @staticmethod
    def forward(m, zf, zg, zo, a_prev, c_prev, h_prev):
        f = m.sigmoid(zf)
        c = f * c_prev + (1 - f) * m.tanh(zg)
        h = 0.5 * h_prev + 0.5 * c
        return (m.sigmoid(zo) * m.tanh(h), c, h), ()


class Everything(xrnn.ElementwiseCell):
    """Every function of the math namespace, a vector and a direct path; derived backward."""

    name = "test_everything"
    gates = (("Wa", "ba"), ("Wb", "bb"))
    vectors = ("v",)

    @staticmethod
    def forward(m, za, zb, v, a_prev):
        s = m.sigmoid(za) * m.tanh(zb) + m.exp(-(zb * zb)) * v
        r = m.sqrt(1 + za * za) + m.log(2 + m.abs(zb)) - m.maximum(za, 0.25 * zb)
        t = m.minimum(za, zb) / (2 + a_prev * a_prev) + m.where(za > zb, za, -zb) ** 2
        return (s + 0.1 * r - 0.1 * t,), ()


CELLS = [Residual(), ThreeStates(), Everything(), xrnn.CELLS["peephole_lstm"]]
