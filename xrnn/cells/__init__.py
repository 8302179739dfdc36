"""Cells: the contract every cell meets (:mod:`xrnn.cells.base`), the contract of cells written
as elementwise math (:mod:`xrnn.cells.elementwise`, traced by :mod:`xrnn.cells.trace`), and one
module per cell xrnn ships. Importing this package registers them."""

from xrnn.cells.base import CELLS, Cell, GatedCell, get_cell, register
from xrnn.cells.elementwise import MATH, ArrayMath, ElementwiseCell
from xrnn.cells.gru import GRU_CELL, GRUCell
from xrnn.cells.lstm import LSTM_CELL, LSTMCell
from xrnn.cells.peephole_lstm import PEEPHOLE_LSTM_CELL, PeepholeLSTMCell
from xrnn.cells.rnn import RNN_CELL, RNN_RELU_CELL, ReluRNNCell, RNNCell

__all__ = [
    "CELLS",
    "GRU_CELL",
    "LSTM_CELL",
    "MATH",
    "PEEPHOLE_LSTM_CELL",
    "RNN_CELL",
    "RNN_RELU_CELL",
    "ArrayMath",
    "Cell",
    "ElementwiseCell",
    "GRUCell",
    "GatedCell",
    "LSTMCell",
    "PeepholeLSTMCell",
    "RNNCell",
    "ReluRNNCell",
    "get_cell",
    "register",
]
