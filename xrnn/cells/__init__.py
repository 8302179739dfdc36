"""Cells defined as elementwise math (:class:`~xrnn.cells.elementwise.ElementwiseCell`), and the
ones xrnn ships in that form. Importing this package registers them."""

from xrnn.cells.elementwise import MATH, ArrayMath, ElementwiseCell
from xrnn.cells.peephole_lstm import PEEPHOLE_LSTM_CELL, PeepholeLSTMCell

__all__ = ["MATH", "PEEPHOLE_LSTM_CELL", "ArrayMath", "ElementwiseCell", "PeepholeLSTMCell"]
