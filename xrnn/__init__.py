"""xrnn: RNN, LSTM, GRU and your own recurrent cells, written once against the array API.

The functional API of the classic "Building your Recurrent Neural Network – Step by Step"
exercise — same names, argument order, return tuples and cache layouts — with the exercise's
LSTM-backward errata corrected, a GRU in the same conventions, variable-length batches and
reverse time, a fast batched time loop, and every array-API backend: NumPy, CuPy, PyTorch
tensors, JAX, array-api-strict. Results keep the input's library, device and dtype.
"""

from xrnn.api import backward, cell_backward, cell_forward, forward, initialize
from xrnn.backends import available_backends
from xrnn.cells import ElementwiseCell
from xrnn.cells.base import CELLS, get_cell, register
from xrnn.core.activations import sigmoid, softmax
from xrnn.core.params import to_device
from xrnn.gru import gru_backward, gru_cell_backward, gru_cell_forward, gru_forward, initialize_gru
from xrnn.layers import GRU, LSTM, RNN, RecurrentLayer
from xrnn.lstm import (
    initialize_lstm,
    lstm_backward,
    lstm_cell_backward,
    lstm_cell_forward,
    lstm_forward,
)
from xrnn.rnn import initialize_rnn, rnn_backward, rnn_cell_backward, rnn_cell_forward, rnn_forward

__version__ = "0.1.0"


def __getattr__(name: str):
    # ``xrnn.charlm``, ``xrnn.exercise``, ``xrnn.interop`` without an explicit import, loaded
    # when first used (``xrnn.dask`` is always loaded: the engine dispatches to it; it imports
    # Dask itself only when given Dask arrays)
    if name in ("charlm", "exercise", "interop"):
        import importlib

        return importlib.import_module(f"xrnn.{name}")
    raise AttributeError(f"module 'xrnn' has no attribute {name!r}")


__all__ = [
    "CELLS",
    "ElementwiseCell",
    "GRU",
    "LSTM",
    "RNN",
    "RecurrentLayer",
    "available_backends",
    "backward",
    "cell_backward",
    "cell_forward",
    "charlm",
    "dask",
    "exercise",
    "forward",
    "get_cell",
    "gru_backward",
    "gru_cell_backward",
    "gru_cell_forward",
    "gru_forward",
    "initialize",
    "initialize_gru",
    "initialize_lstm",
    "initialize_rnn",
    "interop",
    "lstm_backward",
    "lstm_cell_backward",
    "lstm_cell_forward",
    "lstm_forward",
    "register",
    "rnn_backward",
    "rnn_cell_backward",
    "rnn_cell_forward",
    "rnn_forward",
    "sigmoid",
    "softmax",
    "to_device",
]
