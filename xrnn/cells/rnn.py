"""The vanilla RNN cell, tanh and ReLU: keys, layout, initialisation, PyTorch layout, exercise
cache and pointwise math.

``a⟨t⟩ = tanh(Waa a⟨t-1⟩ + Wax x⟨t⟩ + ba)`` (or ``max(0, ·)``). The exercise's functions over it
are in :mod:`xrnn.rnn`.
"""

from __future__ import annotations

from xrnn.cells.base import Stacked, register, torch_bias
from xrnn.cells.elementwise import ElementwiseCell

__all__ = ["NONLINEARITIES", "RNN_CELL", "RNN_RELU_CELL", "ReluRNNCell", "RNNCell"]


class RNNCell(ElementwiseCell):
    """The spec of the vanilla (tanh) RNN: one gate block, nothing saved beyond the state; its
    weight kept as the exercise's two matrices ``Waa``, ``Wax`` rather than one on
    ``[a⟨t-1⟩; x⟨t⟩]``."""

    name = "rnn"
    functions = "rnn"
    gates = torch_gates = (("Waa", "ba"),)  # one block: Waa acts on a⟨t-1⟩, Wax on x⟨t⟩
    keys = ("Wax", "Waa", "ba")
    output_keys = ("Wya", "by")
    cache_layout = "(a_next, a_prev, xt, parameters)"

    @staticmethod
    def forward(m, z, a_prev):
        return (m.tanh(z),), ()

    @staticmethod
    def backward(m, a_prev, a, da):
        return (da * (1 - a * a),), (), (None,)

    def shapes(self, n_x, n_a):
        return {
            "Wax": ((n_a, n_x), f"n_a={n_a}, n_x={n_x}"),
            "Waa": ((n_a, n_a), f"n_a={n_a}"),
            "ba": ((n_a, 1), f"n_a={n_a}"),
        }

    def draw(self, uniform, zeros, n_x, n_a):
        return {"Wax": uniform((n_a, n_x)), "Waa": uniform((n_a, n_a)), "ba": zeros((n_a, 1))}

    def stack(self, xp, parameters, n_a, *, apart=False):  # the parameters themselves
        return Stacked(parameters["Waa"], parameters["Wax"], parameters["ba"])

    def unstack(self, dWa, dWx, db, n_a):
        return {"dWax": dWx, "dWaa": dWa, "dba": db}

    def to_torch(self, xp, parameters, n_a):
        b = parameters["ba"][:, 0]
        return {
            "weight_ih": parameters["Wax"],
            "weight_hh": parameters["Waa"],
            "bias_ih": b,
            "bias_hh": xp.zeros_like(b),
        }

    def from_torch(self, xp, weight_ih, weight_hh, bias_ih, bias_hh, n_a):
        b = torch_bias(xp, bias_ih, bias_hh, weight_hh)
        return {"Wax": weight_ih, "Waa": weight_hh, "ba": xp.reshape(b, (n_a, 1))}


class ReluRNNCell(RNNCell):
    """The ReLU RNN (PyTorch's ``nonlinearity="relu"``): ``a⟨t⟩ = max(0, Waa a⟨t-1⟩ + Wax
    x⟨t⟩ + ba)``; same keys, shapes and caches as the tanh RNN."""

    name = "rnn_relu"

    @staticmethod
    def forward(m, z, a_prev):
        return (m.maximum(z, 0),), ()

    @staticmethod
    def backward(m, a_prev, a, da):
        return (m.where(a > 0, da, 0),), (), (None,)  # the subgradient 0 at a = 0, as PyTorch


RNN_CELL = RNNCell()
RNN_RELU_CELL = ReluRNNCell()
register(RNN_CELL)
register(RNN_RELU_CELL)
NONLINEARITIES: dict[str, RNNCell] = {"tanh": RNN_CELL, "relu": RNN_RELU_CELL}
